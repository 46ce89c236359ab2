/// gRPC status codes (grpc/grpc doc/statuscodes.md).
public enum StatusCode: Int, Sendable, Hashable, CustomStringConvertible {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    public var description: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }

    /// Codes outside 0...16 are treated as UNKNOWN, as the spec asks of clients.
    public init(wireValue: Int) {
        self = StatusCode(rawValue: wireValue) ?? .unknown
    }
}

/// What a call ended with: what a client sees, and what a service throws to refuse a call.
///
/// `details` is carried in `grpc-status-details-bin` (a serialized google.rpc.Status, so stock clients
/// can decode field-level refusals); `metadata` becomes trailing metadata. `cause` is the failure
/// underneath (a storage error, an unexpected throw): the server logs it with the call and never
/// sends it, so internals stay out of callers' hands. Two errors are equal when what the caller sees
/// is equal; the cause is not compared.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    public var details: [UInt8]?
    public var metadata: Metadata
    public var cause: (any Error)?

    public init(
        _ code: StatusCode, _ message: String, details: [UInt8]? = nil, metadata: Metadata = Metadata(), cause: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.details = details
        self.metadata = metadata
        self.cause = cause
    }

    public var description: String { message.isEmpty ? "\(code)" : "\(code): \(message)" }

    public static func == (a: RPCError, b: RPCError) -> Bool {
        a.code == b.code && a.message == b.message && a.details == b.details && a.metadata == b.metadata
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
        hasher.combine(details)
        hasher.combine(metadata)
    }
}

/// A service's own error type conforms to this to choose the status a caller sees. Anything thrown
/// that neither is an `RPCError` nor conforms becomes UNKNOWN with no internal detail.
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

extension RPCError {
    /// What a caller sees for `error`: itself, its conversion, CANCELLED, or UNKNOWN with no detail
    /// (the error itself kept as the cause, for the log).
    public static func from(_ error: any Error) -> RPCError {
        if let e = error as? RPCError { return e }
        if let e = error as? any RPCErrorConvertible { return e.rpcError }
        if error is CancellationError { return RPCError(.cancelled, "the call was cancelled") }
        return RPCError(.unknown, "the server failed to handle the call", cause: error)
    }
}

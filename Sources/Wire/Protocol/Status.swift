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
/// can decode field-level refusals); `metadata` becomes trailing metadata.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    public var details: [UInt8]?
    public var metadata: Metadata

    public init(_ code: StatusCode, _ message: String, details: [UInt8]? = nil, metadata: Metadata = Metadata()) {
        self.code = code
        self.message = message
        self.details = details
        self.metadata = metadata
    }

    public var description: String { message.isEmpty ? "\(code)" : "\(code): \(message)" }
}

/// A service's own error type conforms to this to choose the status a caller sees. Anything thrown
/// that neither is an `RPCError` nor conforms becomes UNKNOWN with no internal detail.
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

extension RPCError {
    /// What a caller sees for `error`: itself, its conversion, CANCELLED, or UNKNOWN with no detail.
    public static func from(_ error: any Error) -> RPCError {
        if let e = error as? RPCError { return e }
        if let e = error as? any RPCErrorConvertible { return e.rpcError }
        if error is CancellationError { return RPCError(.cancelled, "the call was cancelled") }
        return RPCError(.unknown, "the server failed to handle the call")
    }
}

/// Refusals a caller can act on field by field: a google.rpc.Status carried in
/// `grpc-status-details-bin`, with BadRequest or PreconditionFailure details (the googleapis error
/// model, which stock clients decode), plus a readable message.
extension RPCError {
    public struct FieldViolation: Sendable, Hashable {
        public var field: String
        public var description: String

        public init(field: String, description: String) {
            self.field = field
            self.description = description
        }
    }

    public struct PreconditionViolation: Sendable, Hashable {
        public var type: String
        public var subject: String
        public var description: String

        public init(type: String, subject: String, description: String) {
            self.type = type
            self.subject = subject
            self.description = description
        }
    }

    /// INVALID_ARGUMENT listing every wrong field; the message names them all too.
    public static func invalidArgument(_ summary: String, violations: [FieldViolation]) -> RPCError {
        badRequest(.invalidArgument, summary, violations: violations)
    }

    /// A status with field violations (google.rpc.BadRequest): INVALID_ARGUMENT, or NOT_FOUND for a
    /// field naming something that does not exist. The code is set here, once: the details carry
    /// it too, and clients check the two agree.
    public static func badRequest(_ code: StatusCode, _ summary: String, violations: [FieldViolation]) -> RPCError {
        // A request with 100,000 wrong fields gets the first ones named and a count of the rest: at
        // most 50 and about 2 KB of text, so the details fit the 8 KiB of trailers a client
        // accepts beside the message.
        var shown = 0
        var bytes = 0
        for v in violations {
            let size = v.field.utf8.count + v.description.utf8.count + 8
            if shown == 50 || (shown > 0 && bytes + size > 2000) { break }
            shown += 1
            bytes += size
        }
        var violations = violations
        if violations.count > shown {
            let more = violations.count - shown
            violations = Array(violations.prefix(shown))
            violations.append(FieldViolation(field: "…", description: "and \(more) more"))
        }
        var bad = Google_Rpc_BadRequest()
        bad.fieldViolations = violations.map {
            var v = Google_Rpc_BadRequest.FieldViolation()
            v.field = $0.field
            v.description = $0.description
            return v
        }
        // The same text goes into grpc-message and the details' Status (clients check they match),
        // short enough that both fit the trailers unchanged. A violation that only repeats the
        // summary adds its field's name to it rather than the sentence a second time.
        let repeating = violations.filter { $0.description == summary }.map(\.field)
        let head = repeating.isEmpty ? summary : "\(summary) (\(repeating.joined(separator: ", ")))"
        let rest = violations.filter { $0.description != summary }.map { "\($0.field): \($0.description)" }
        let text = Clip.bytes(([head] + rest).joined(separator: "; "), maxBytes: 800)
        return withDetails(code, text, typeName: "google.rpc.BadRequest", detail: ProtoCodec.encode(bad))
    }

    /// FAILED_PRECONDITION naming the rule that refused the call.
    public static func failedPrecondition(_ message: String, violations: [PreconditionViolation]) -> RPCError {
        var pf = Google_Rpc_PreconditionFailure()
        pf.violations = violations.map {
            var v = Google_Rpc_PreconditionFailure.Violation()
            v.type = $0.type
            v.subject = $0.subject
            v.description = $0.description
            return v
        }
        return withDetails(.failedPrecondition, message, typeName: "google.rpc.PreconditionFailure", detail: ProtoCodec.encode(pf))
    }

    private static func withDetails(_ code: StatusCode, _ message: String, typeName: String, detail: [UInt8]) -> RPCError {
        var any = Google_Protobuf_Any()
        any.typeUrl = "type.googleapis.com/" + typeName
        any.value = detail
        var status = Google_Rpc_Status()
        status.code = Int32(code.rawValue)
        status.message = message
        status.details = [any]
        return RPCError(code, message, details: ProtoCodec.encode(status))
    }
}

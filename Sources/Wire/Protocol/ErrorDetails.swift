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
        // A request with 100,000 wrong fields gets the first ones named and a count of the rest, so
        // the refusal fits in the trailers a client accepts.
        let shown = 50
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
        let text = ([summary] + violations.map { "\($0.field): \($0.description)" }).joined(separator: "; ")
        return withDetails(.invalidArgument, text, typeName: "google.rpc.BadRequest", detail: ProtoCodec.encode(bad))
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

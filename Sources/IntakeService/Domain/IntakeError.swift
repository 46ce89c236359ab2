import LeadwireAPI
import Store
import Wire

/// Everything the intake service refuses, each mapped to the status and details a caller can act on.
enum IntakeError: Error, RPCErrorConvertible, Equatable {
    case invalid(String, [RPCError.FieldViolation])
    case notFound(String)
    case categoryNotAccepted(category: String, source: String, accepted: [String])
    case illegalTransition(lead: String, current: Intake_LeadStatus, action: String, allowedFrom: [Intake_LeadStatus])
    case clientHasDebt(clientID: String, debt: String)
    case idempotencyConflict(key: String, registrationNumber: String)
    case sourceNameTaken(String)
    case intakeClosed(reason: String, since: Int64)
    case missingInDirectory(field: String, value: String)
    /// Fields naming things that do not exist (catalogue items of order lines).
    case missingReferences(String, [RPCError.FieldViolation])
    case routingUnavailable(String)

    var rpcError: RPCError {
        switch self {
        case .invalid(let summary, let violations):
            return .invalidArgument(summary, violations: violations)
        case .notFound(let what):
            return RPCError(.notFound, what)
        case .categoryNotAccepted(let category, let source, let accepted):
            return .failedPrecondition(
                "source \(source) does not handle category \"\(category)\"; it accepts: \(accepted.joined(separator: ", ")). The lead was not registered.",
                violations: [
                    .init(
                        type: "CATEGORY_NOT_ACCEPTED", subject: "category:\(category)",
                        description: "accepted: \(accepted.joined(separator: ", "))")
                ])
        case .illegalTransition(let lead, let current, let action, let allowedFrom):
            let allowed = allowedFrom.map(LeadLifecycle.name).joined(separator: " or ")
            return .failedPrecondition(
                "lead \(lead) is \(LeadLifecycle.name(current)); \(action) applies only to a lead that is \(allowed)",
                violations: [
                    .init(type: "ILLEGAL_TRANSITION", subject: "lead:\(lead)", description: "current state: \(LeadLifecycle.name(current))")
                ])
        case .clientHasDebt(let clientID, let debt):
            return .failedPrecondition(
                "client \(clientID) owes \(debt) on earlier requests; a lead cannot be accepted until the debt is settled",
                violations: [.init(type: "CLIENT_HAS_DEBT", subject: "client:\(clientID)", description: "debt: \(debt)")])
        case .idempotencyConflict(let key, let reg):
            return RPCError(
                .alreadyExists,
                "idempotency key \"\(key)\" was already used for lead \(reg) with different content; use a new key for a new lead")
        case .sourceNameTaken(let name):
            return RPCError(.alreadyExists, "a source named \"\(name)\" already exists")
        case .intakeClosed(let reason, let since):
            let when = since > 0 ? " since \(CalendarDate.format(day: CalendarDate.day(ofMillis: since)))" : ""
            return .failedPrecondition(
                "intake is closed\(when): new leads are not accepted (\(reason)); reads and processing of existing leads go on. Submit again once it reopens.",
                violations: [.init(type: "INTAKE_OFF", subject: "intake", description: reason)])
        case .missingInDirectory(let field, let value):
            let what = field.hasSuffix("role") ? "role" : "person"
            return .badRequest(
                .notFound, "\(field): no \(what) \"\(value)\" in routing's directory; create it first or name another",
                violations: [
                    .init(field: field, description: "no \(what) \"\(value)\" in routing's directory")
                ])
        case .missingReferences(let summary, let violations):
            return .badRequest(.notFound, summary, violations: violations)
        case .routingUnavailable(let why):
            return RPCError(.unavailable, why)
        }
    }
}

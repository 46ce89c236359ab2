import Wire

/// Everything the catalogue and proposals refuse, each mapped to the status a caller can act on.
public enum CatalogError: Error, RPCErrorConvertible, Equatable {
    case invalid(String, [RPCError.FieldViolation])
    case notFound(String)
    /// The file cannot be read as the format it claims (or was guessed to be).
    case unreadable(String)
    /// Neither the request nor the supplier's stored mapping says which column is which.
    case noMapping(supplier: String)
    /// The mapping names columns the file's header row does not have.
    case columnsMissing(summary: String, [RPCError.FieldViolation])
    case tooLarge(String)
    /// Order lines short of stock at acceptance, each named.
    case stockShort(lead: String, [Shortage])
    case illegalProposalStep(proposal: String, current: String, action: String, allowedFrom: [String])
    case permissionDenied(String)

    public struct Shortage: Equatable, Sendable {
        public var line: Int
        public var itemID: String
        public var sku: String
        public var name: String
        public var needed: String
        public var available: String
    }

    public static func invalid(_ summary: String, field: String) -> CatalogError {
        .invalid(summary, [.init(field: field, description: summary)])
    }

    public var rpcError: RPCError {
        switch self {
        case .invalid(let summary, let violations):
            return .invalidArgument(summary, violations: violations)
        case .notFound(let what):
            return RPCError(.notFound, what)
        case .unreadable(let why):
            return .invalidArgument(why, violations: [.init(field: "data", description: why)])
        case .noMapping(let supplier):
            return .failedPrecondition(
                "no column mapping is stored for supplier \"\(supplier)\": give one with this import (start.mapping: which column is SKU, name, price, stock) and it is kept for the next",
                violations: [.init(type: "NO_MAPPING", subject: "supplier:\(supplier)", description: "no stored column mapping")])
        case .columnsMissing(let summary, let violations):
            return .invalidArgument(summary, violations: violations)
        case .tooLarge(let why):
            return RPCError(.resourceExhausted, why)
        case .stockShort(let lead, let lines):
            let list = lines.map { "line \($0.line + 1) \($0.name) (\($0.sku)): needs \($0.needed), available \($0.available)" }
            return .failedPrecondition(
                "lead \(lead) cannot be accepted: not enough stock for \(lines.count == 1 ? "one line" : "\(lines.count) lines") — \(list.joined(separator: "; ")). Restock, change the lines, or accept with stock_override_reason",
                violations: lines.map {
                    .init(
                        type: "STOCK_SHORT", subject: "order_lines[\($0.line)]",
                        description: "item \($0.itemID) \($0.sku) \"\($0.name)\": needs \($0.needed), available \($0.available)")
                })
        case .illegalProposalStep(let proposal, let current, let action, let allowedFrom):
            return .failedPrecondition(
                "proposal \(proposal) is \(current); \(action) applies only to a proposal that is \(allowedFrom.joined(separator: " or "))",
                violations: [.init(type: "ILLEGAL_TRANSITION", subject: "proposal:\(proposal)", description: "current state: \(current)")])
        case .permissionDenied(let why):
            return RPCError(.permissionDenied, why)
        }
    }
}

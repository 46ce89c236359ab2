import Auth
import LeadwireAPI
import Wire

/// Everything the routing service refuses, each mapped to the status a caller can act on.
enum RoutingError: Error, RPCErrorConvertible, Equatable {
    case invalid(String, [RPCError.FieldViolation])
    case notFound(String)
    case loginTaken(login: String, holder: String, name: String)
    case staleRules(expected: Int64, actual: Int64)
    case released(lead: String)

    var rpcError: RPCError {
        switch self {
        case .invalid(let summary, let violations):
            return .invalidArgument(summary, violations: violations)
        case .notFound(let what):
            return RPCError(.notFound, what)
        case .loginTaken(let login, let holder, let name):
            return RPCError(
                .alreadyExists,
                "the login \"\(login)\" already exists: \(holder) (\(name)); see it with GetPerson id \(holder) (leadctl person list), "
                    + "change it with UpdatePerson, or pick another login")
        case .staleRules(let expected, let actual):
            return .failedPrecondition(
                "the rule set changed since version \(expected) (now \(actual)); read it again and reapply your change",
                violations: [.init(type: "STALE_RULES", subject: "rules", description: "stored version \(actual)")])
        case .released(let lead):
            return .failedPrecondition(
                "lead \(lead) was already released (finished); a finished lead cannot be reassigned",
                violations: [.init(type: "LEAD_RELEASED", subject: "lead:\(lead)", description: "released")])
        }
    }
}

/// Checks and translations between the wire messages and the pure decision model.
enum RoutingModel {
    static let stockRoles: [Routing_Role] = [
        role("Sales manager", "Handles incoming leads and turns them into deals."),
        role("Marketer", "Handles leads from campaigns and social channels."),
        role("Head of sales", "Receives escalations; oversees the sales managers."),
    ]

    private static func role(_ name: String, _ description: String) -> Routing_Role {
        var r = Routing_Role()
        r.name = name
        r.description = description
        // Every stock role may add and change leads.
        r.permissions = [Permission.leadsWrite]
        return r
    }

    // MARK: Validation (every problem at once, each naming the part of the request)

    static func personProblems(_ p: Routing_Person, path: String = "person") -> [RPCError.FieldViolation] {
        var out = [RPCError.FieldViolation]()
        if p.name.trimmingSpaces.isEmpty { out.append(.init(field: "\(path).name", description: "required")) }
        if p.login.trimmingSpaces.isEmpty {
            out.append(.init(field: "\(path).login", description: "required"))
        } else if !p.login.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" }) {
            out.append(.init(field: "\(path).login", description: "use letters, digits, '.', '_' or '-' (got \"\(p.login)\")"))
        }
        if !p.email.isEmpty, !isEmail(p.email) {
            out.append(.init(field: "\(path).email", description: "not an e-mail address: \"\(p.email)\""))
        }
        if p.capacity < 0 { out.append(.init(field: "\(path).capacity", description: "must be 0 (no cap) or more, got \(p.capacity)")) }
        for (i, a) in p.absences.enumerated() where a.untilMs <= a.fromMs {
            out.append(.init(field: "\(path).absences[\(i)].until_ms", description: "must be after from_ms (\(a.fromMs))"))
        }
        for (i, a) in p.absences.enumerated() where !a.substituteId.isEmpty && a.substituteId == p.id {
            out.append(.init(field: "\(path).absences[\(i)].substitute_id", description: "a person cannot substitute for themselves"))
        }
        var seen = Set<String>()
        for (i, r) in p.roles.enumerated() {
            if r.trimmingSpaces.isEmpty { out.append(.init(field: "\(path).roles[\(i)]", description: "empty role name")) }
            if !seen.insert(r).inserted { out.append(.init(field: "\(path).roles[\(i)]", description: "\"\(r)\" listed twice")) }
        }
        return out
    }

    static func roleProblems(_ r: Routing_Role) -> [RPCError.FieldViolation] {
        var out = [RPCError.FieldViolation]()
        if r.name.trimmingSpaces.isEmpty { out.append(.init(field: "role.name", description: "required")) }
        if r.strategy.rawValue < 0 || r.strategy.rawValue > 2 {
            out.append(
                .init(
                    field: "role.strategy",
                    description: "unknown strategy \(r.strategy.rawValue); use STRATEGY_ROUND_ROBIN or STRATEGY_LEAST_LOADED"))
        }
        return out
    }

    static let standardFields: Set<String> = ["source", "channel", "category"]

    /// Structural problems of a rule set; references to people and roles are checked against the
    /// directory by the caller (NOT_FOUND).
    static func ruleProblems(_ set: Routing_RuleSet) -> [RPCError.FieldViolation] {
        var out = [RPCError.FieldViolation]()
        var names = Set<String>()
        for (i, rule) in set.rules.enumerated() {
            let path = "rules[\(i)]"
            if rule.name.trimmingSpaces.isEmpty {
                out.append(.init(field: "\(path).name", description: "required: explanations quote it"))
            } else if !names.insert(rule.name).inserted {
                out.append(.init(field: "\(path).name", description: "\"\(rule.name)\" is used by an earlier rule"))
            }
            switch rule.target {
            case nil: out.append(.init(field: "\(path).target", description: "set person_id or role"))
            case .personId(let p) where p.trimmingSpaces.isEmpty: out.append(.init(field: "\(path).person_id", description: "empty"))
            case .role(let r) where r.trimmingSpaces.isEmpty: out.append(.init(field: "\(path).role", description: "empty"))
            default: break
            }
            for (j, c) in rule.conditions.enumerated() {
                let cp = "\(path).conditions[\(j)]"
                if c.field.trimmingSpaces.isEmpty {
                    out.append(
                        .init(
                            field: "\(cp).field",
                            description: "required: \"source\", \"channel\", \"category\" or an additional field's name"))
                }
                switch c.test {
                case nil:
                    out.append(.init(field: "\(cp).test", description: "set one of equals, one_of, prefix, range"))
                case .oneOf(let list) where list.values.isEmpty:
                    out.append(.init(field: "\(cp).one_of.values", description: "at least one value"))
                case .prefix(let p) where p.isEmpty:
                    out.append(.init(field: "\(cp).prefix", description: "empty prefix matches everything; drop the condition instead"))
                case .range(let r):
                    let lo = r.min.isEmpty ? nil : Double(r.min)
                    let hi = r.max.isEmpty ? nil : Double(r.max)
                    if !r.min.isEmpty && lo == nil {
                        out.append(.init(field: "\(cp).range.min", description: "not a number: \"\(r.min)\""))
                    }
                    if !r.max.isEmpty && hi == nil {
                        out.append(.init(field: "\(cp).range.max", description: "not a number: \"\(r.max)\""))
                    }
                    if r.min.isEmpty && r.max.isEmpty { out.append(.init(field: "\(cp).range", description: "give min, max or both")) }
                    if let lo, let hi, lo > hi {
                        out.append(.init(field: "\(cp).range.min", description: "\(r.min) is above max \(r.max)"))
                    }
                default: break
                }
            }
        }
        return out
    }

    // MARK: Wire -> model

    static func person(_ p: Routing_Person) -> Person {
        Person(
            id: p.id, name: p.name, login: p.login, email: p.email, roles: p.roles, active: p.active,
            capacity: p.capacity > 0 ? Int(p.capacity) : nil,
            absences: p.absences.map {
                Absence(from: $0.fromMs, until: $0.untilMs, substitute: $0.substituteId.isEmpty ? nil : $0.substituteId)
            })
    }

    static func role(_ r: Routing_Role) -> Role {
        Role(name: r.name, head: r.headId.isEmpty ? nil : r.headId, strategy: r.strategy == .leastLoaded ? .leastLoaded : .roundRobin)
    }

    /// Only called on a rule set that passed `ruleProblems`.
    static func rules(_ set: Routing_RuleSet) -> [RoutingRule] {
        set.rules.map { r in
            RoutingRule(
                name: r.name,
                conditions: r.conditions.map { c in
                    let test: Condition.Test
                    switch c.test {
                    case .equals(let v): test = .equals(v)
                    case .oneOf(let l): test = .oneOf(l.values)
                    case .prefix(let p): test = .prefix(p)
                    case .range(let rg): test = .range(min: Double(rg.min), max: Double(rg.max))
                    case nil: test = .oneOf([])
                    }
                    return Condition(field: c.field, test: test)
                },
                target: {
                    if case .personId(let p) = r.target { return .person(p) }
                    if case .role(let ro) = r.target { return .role(ro) }
                    return .role("")
                }())
        }
    }

    static func lead(_ l: Routing_LeadSummary) -> LeadSummary {
        var fields = [String: String]()
        for f in l.fields { fields[f.name] = f.value }
        return LeadSummary(
            id: l.leadId, sourceID: l.sourceId, channel: l.channel, category: l.category, fields: fields,
            sourceDefaultOwner: l.sourceDefaultOwnerId.isEmpty ? nil : l.sourceDefaultOwnerId,
            sourceDefaultRole: l.sourceDefaultRole.isEmpty ? nil : l.sourceDefaultRole)
    }

    static func leadProblems(_ l: Routing_LeadSummary, path: String = "lead") -> [RPCError.FieldViolation] {
        var out = [RPCError.FieldViolation]()
        if l.leadId.trimmingSpaces.isEmpty {
            out.append(.init(field: "\(path).lead_id", description: "required: decisions are stored by lead id"))
        }
        return out
    }

    // MARK: Model -> wire

    static func assignment(_ a: Assignment, lead: Routing_LeadSummary, now: Int64) -> Routing_Assignment {
        var w = Routing_Assignment()
        w.leadId = a.leadID
        w.registrationNumber = lead.registrationNumber
        w.personId = a.person ?? ""
        w.role = a.role ?? ""
        switch a.reason {
        case .sourceDefaultOwner: w.reason = .sourceDefaultOwner
        case .substituteFor(let p):
            w.reason = .substitute
            w.substituteFor = p
        case .rule(let name):
            w.reason = .rule
            w.ruleName = name
        case .sourceDefaultRole: w.reason = .sourceDefaultRole
        case .defaultRole: w.reason = .defaultRole
        case .queued: w.reason = .queued
        }
        w.candidates = a.candidates
        w.skipped = a.skipped.map { s in
            var k = Routing_Skip()
            k.personId = s.person
            k.why = why(s.why)
            return k
        }
        w.tieBreak = a.tieBreak ?? ""
        w.notifiedId = a.notified ?? ""
        w.routedAtMs = now
        w.replyDeadlineMs = lead.replyDeadlineMs
        w.explanation = explain(w)
        return w
    }

    static func why(_ w: Assignment.Skip.Why) -> String {
        switch w {
        case .away: return "away"
        case .overCapacity(let open, let cap): return "over capacity (\(open) of \(cap) open)"
        case .inactive: return "inactive"
        case .unknown: return "unknown person"
        }
    }

    /// One sentence a person can read in a CRM: who, through what, who was passed over and why.
    static func explain(_ a: Routing_Assignment) -> String {
        var s: String
        switch a.reason {
        case .sourceDefaultOwner: s = "\(a.personId) is the source's default owner"
        case .substitute: s = "\(a.personId) substitutes for \(a.substituteFor), who is away"
        case .rule:
            s = "rule \"\(a.ruleName)\" matched"
            s += a.role.isEmpty ? "; it names \(a.personId)" : "; role \(a.role) -> \(a.personId)"
        case .sourceDefaultRole: s = "no rule matched; the source's default role \(a.role) -> \(a.personId)"
        case .defaultRole: s = "no rule matched; the rule set's default role \(a.role) -> \(a.personId)"
        case .queued:
            s =
                a.role.isEmpty
                ? "no rule matched and the source names no role or owner: the lead waits unassigned"
                : "nobody in \(a.role) can take it: queued"
            if !a.notifiedId.isEmpty { s += ", head \(a.notifiedId) notified" }
        case .manual: s = "reassigned by hand to \(a.personId)"
        default: s = "decided"
        }
        guard !a.skipped.isEmpty || !a.tieBreak.isEmpty else { return s }
        // Gathered as bytes and made a String once: a decision in a busy role passes over many
        // people, and five String appends per person (each checking capacity and encoding) were
        // ~22,000 instructions of a decision with fourteen passed over.
        var text = [UInt8]()
        text.reserveCapacity(s.utf8.count + a.tieBreak.utf8.count + 2 + a.skipped.count * 40)
        text += s.utf8
        for (i, skip) in a.skipped.enumerated() {
            text += (i == 0 ? "; skipped " : ", ").utf8
            text += skip.personId.utf8
            text += " (".utf8
            text += skip.why.utf8
            text.append(UInt8(ascii: ")"))
        }
        if !a.tieBreak.isEmpty {
            text += "; ".utf8
            text += a.tieBreak.utf8
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func isEmail(_ s: String) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !s.contains(" ")
    }
}

/// Ranks people for an @mention: what follows '@' as a case-insensitive prefix of the login, a word
/// of the full name, the e-mail or its domain. Lower-casing is Unicode-aware, so "@ир" finds
/// "Ирина".
enum MentionSearch {
    struct Match: Sendable {
        var person: Routing_Person
        var matched: String
        var rank: Int
    }

    static func search(_ query: String, in people: [Routing_Person], limit: Int) -> [Match] {
        var q = query.trimmingSpaces.lowercased()
        if q.hasPrefix("@") { q.removeFirst() }
        guard !q.isEmpty else { return [] }
        var out = [Match]()
        for p in people {
            let login = p.login.lowercased()
            let email = p.email.lowercased()
            let domain = email.split(separator: "@").last.map(String.init) ?? ""
            let words = p.name.lowercased().split(whereSeparator: { $0.isWhitespace || $0 == "-" }).map(String.init)
            var best: (Int, String)?
            if login == q {
                best = (0, "login")
            } else if login.hasPrefix(q) {
                best = (1, "login")
            } else if p.name.lowercased().hasPrefix(q) {
                best = (2, "name")
            } else if words.contains(where: { $0.hasPrefix(q) }) {
                best = (3, "name")
            } else if email.hasPrefix(q) {
                best = (4, "email")
            } else if !domain.isEmpty, domain.hasPrefix(q) || domain.split(separator: ".").contains(where: { $0.hasPrefix(q) }) {
                best = (5, "domain")
            }
            if let (rank, what) = best {
                // Inactive people still match (they may be mentioned) but after active ones.
                out.append(Match(person: p, matched: what, rank: rank + (p.active ? 0 : 10)))
            }
        }
        out.sort { ($0.rank, $0.person.name, $0.person.id) < ($1.rank, $1.person.name, $1.person.id) }
        return Array(out.prefix(limit))
    }
}

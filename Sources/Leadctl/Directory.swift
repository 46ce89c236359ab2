import ArgumentParser
import LeadwireAPI
import Wire

struct PersonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "person", abstract: "People who handle leads.", subcommands: [Add.self, List.self, Away.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a person who handles leads.")
        @OptionGroup var c: Connection
        @Option(help: "Full name, e.g. \"Анна Орлова\".") var name: String
        @Option(help: "A unique login; @login mentions them.") var login: String
        @Option(help: "Work e-mail (for notifications and @mentions).") var email: String = ""
        @Option(help: "Work phone.") var phone: String = ""
        @Option(name: .customLong("role"), help: "Repeatable.") var roles: [String] = []
        @Option(help: "Most open leads at once; 0 = no cap.") var capacity: Int32 = 0

        func run() async throws {
            var p = Routing_Person()
            p.name = name
            p.login = login
            p.email = email
            p.phone = phone
            p.roles = roles
            p.capacity = capacity
            var req = Routing_CreatePersonRequest()
            req.person = p
            let client = try c.routingClient()
            let made = try await call { try await client.createPerson(req, options: c.options) }
            print(made.id)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List people, with their open leads.")
        @OptionGroup var c: Connection
        @Option(help: "Only members of this role.") var role: String = ""
        @Flag(help: "Print CSV instead of a table.") var csv = false

        func run() async throws {
            var req = Routing_ListPeopleRequest()
            req.role = role
            req.includeInactive = true
            let client = try c.routingClient()
            let r = try await call { try await client.listPeople(req, options: c.options) }
            printTable(
                ["id", "name", "login", "roles", "open", "capacity", "active"],
                r.people.map {
                    [
                        $0.id, $0.name, $0.login, $0.roles.joined(separator: "; "), "\($0.openLeads)",
                        $0.capacity == 0 ? "-" : "\($0.capacity)", $0.active ? "yes" : "no",
                    ]
                }, csv: csv)
        }
    }

    struct Away: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record an absence (from/until as YYYY-MM-DD, UTC), optionally with a substitute.")
        @OptionGroup var c: Connection
        @Argument(help: "The person id (person-1).") var id: String
        @Option(help: "First day away, YYYY-MM-DD.") var from: String
        @Option(help: "Last day away, YYYY-MM-DD.") var until: String
        @Option(help: "A person id who takes their leads meanwhile.") var substitute: String = ""

        func run() async throws {
            guard let f = CalendarDate.dayNumber(from), let u = CalendarDate.dayNumber(until) else {
                throw ValidationError("dates are YYYY-MM-DD")
            }
            let client = try c.routingClient()
            var get = Routing_GetPersonRequest()
            get.id = id
            var p = try await call { try await client.getPerson(get, options: c.options) }
            var a = Routing_Absence()
            a.fromMs = Int64(f) * 86_400_000
            a.untilMs = Int64(u + 1) * 86_400_000
            a.substituteId = substitute
            p.absences.append(a)
            var req = Routing_UpdatePersonRequest()
            req.person = p
            _ = try await call { try await client.updatePerson(req, options: c.options) }
            print("\(id) away \(from) to \(until)\(substitute.isEmpty ? "" : ", \(substitute) substitutes")")
        }
    }
}

struct RoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "role", abstract: "Roles leads are distributed through.", subcommands: [Put.self, List.self])

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create or replace a role.")
        @OptionGroup var c: Connection
        @Option(help: "The role's name, e.g. \"Sales manager\".") var name: String
        @Option(help: "Person id who receives escalations.") var head: String = ""
        @Option(help: "round-robin or least-loaded.") var strategy: String = "round-robin"
        @Option(name: .customLong("permission"), help: "Repeatable, e.g. leads.write.") var permissions: [String] = []

        func run() async throws {
            var r = Routing_Role()
            r.name = name
            r.headId = head
            switch strategy {
            case "round-robin": r.strategy = .roundRobin
            case "least-loaded": r.strategy = .leastLoaded
            default: throw ValidationError("--strategy is round-robin or least-loaded")
            }
            r.permissions = permissions
            var req = Routing_PutRoleRequest()
            req.role = r
            let client = try c.routingClient()
            let made = try await call { try await client.putRole(req, options: c.options) }
            print("\(made.name): \(made.memberIds.count) members")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List roles with their members.")
        @OptionGroup var c: Connection
        @Flag(help: "Print CSV instead of a table.") var csv = false
        func run() async throws {
            let client = try c.routingClient()
            let r = try await call { try await client.listRoles(Routing_ListRolesRequest(), options: c.options) }
            let people = await PeopleNames.load(c)
            printTable(
                ["name", "head", "strategy", "members", "permissions"],
                r.roles.map {
                    [
                        $0.name, people.label($0.headId), $0.strategy == .leastLoaded ? "least-loaded" : "round-robin",
                        $0.memberIds.joined(separator: " "), $0.permissions.joined(separator: " "),
                    ]
                }, csv: csv)
        }
    }
}

struct RulesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules", abstract: "The ordered routing rules.",
        subcommands: [Show.self, Add.self, Remove.self, Default.self, Route.self])

    static func describe(_ c: Routing_Condition) -> String {
        switch c.test {
        case .equals(let v): return "\(c.field)=\(v)"
        case .oneOf(let l): return "\(c.field) in \(l.values.joined(separator: ","))"
        case .prefix(let p): return "\(c.field)~\(p)"
        case .range(let r): return "\(c.field):\(r.min)..\(r.max)"
        case nil: return c.field
        }
    }

    /// "Region=North", "Region in North,East", "Phone~+7", "Employees:100..500".
    static func parse(_ s: String) throws -> Routing_Condition {
        var c = Routing_Condition()
        if let r = s.range(of: " in ") {
            c.field = String(s[..<r.lowerBound])
            var l = Routing_StringList()
            l.values = s[r.upperBound...].split(separator: ",").map(String.init)
            c.test = .oneOf(l)
        } else if let i = s.firstIndex(of: "=") {
            c.field = String(s[..<i])
            c.test = .equals(String(s[s.index(after: i)...]))
        } else if let i = s.firstIndex(of: "~") {
            c.field = String(s[..<i])
            c.test = .prefix(String(s[s.index(after: i)...]))
        } else if let i = s.firstIndex(of: ":"), let dots = s.range(of: "..") {
            c.field = String(s[..<i])
            var r = Routing_Range()
            r.min = String(s[s.index(after: i)..<dots.lowerBound])
            r.max = String(s[dots.upperBound...])
            c.test = .range(r)
        } else {
            throw ValidationError("--when takes FIELD=VALUE, \"FIELD in A,B\", FIELD~PREFIX or FIELD:MIN..MAX, got \"\(s)\"")
        }
        return c
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the rules in the order they are tried.")
        @OptionGroup var c: Connection
        func run() async throws {
            let client = try c.routingClient()
            let rs = try await call { try await client.getRules(Routing_GetRulesRequest(), options: c.options) }
            print("version \(rs.version); default role: \(rs.defaultRole.isEmpty ? "-" : rs.defaultRole)")
            printTable(
                ["#", "name", "when", "to"],
                rs.rules.enumerated().map { i, r in
                    let to: String
                    switch r.target {
                    case .role(let x): to = "role " + x
                    case .personId(let x): to = "person " + x
                    case nil: to = "-"
                    }
                    return ["\(i + 1)", r.name, r.conditions.map(RulesCommand.describe).joined(separator: " and "), to]
                })
        }
    }

    /// Reads the rule set, changes it, and writes it back only if nobody changed it meanwhile.
    static func edit(_ c: Connection, _ change: (inout Routing_RuleSet) throws -> Void) async throws -> Routing_RuleSet {
        let client = try c.routingClient()
        var rs = try await call { try await client.getRules(Routing_GetRulesRequest(), options: c.options) }
        let version = rs.version
        try change(&rs)
        var req = Routing_SetRulesRequest()
        req.rules = rs
        req.expectedVersion = version
        return try await call { try await client.setRules(req, options: c.options) }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a rule (at the end, or at --position).")
        @OptionGroup var c: Connection
        @Option(help: "The rule's name.") var name: String
        @Option(
            name: .customLong("when"),
            help: "A condition (repeatable; all must hold): FIELD=VALUE, \"FIELD in A,B\", FIELD~PREFIX or FIELD:MIN..MAX.") var conditions:
            [String] = []
        @Option(help: "Send matching leads to this role.") var role: String = ""
        @Option(help: "Send matching leads to this person id.") var person: String = ""
        @Option(help: "1-based position.") var position: Int?

        func run() async throws {
            guard role.isEmpty != person.isEmpty else { throw ValidationError("give --role or --person") }
            var r = Routing_Rule()
            r.name = name
            r.conditions = try conditions.map(RulesCommand.parse)
            r.target = role.isEmpty ? .personId(person) : .role(role)
            let rs = try await RulesCommand.edit(c) { rs in
                let at = min(max((position ?? rs.rules.count + 1) - 1, 0), rs.rules.count)
                rs.rules.insert(r, at: at)
            }
            print("rules version \(rs.version): \(rs.rules.count) rules")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a rule by name.")
        @OptionGroup var c: Connection
        @Argument(help: "The rule's name.") var name: String
        func run() async throws {
            let rs = try await RulesCommand.edit(c) { rs in
                guard let i = rs.rules.firstIndex(where: { $0.name == name }) else { throw ValidationError("no rule named \"\(name)\"") }
                rs.rules.remove(at: i)
            }
            print("rules version \(rs.version): \(rs.rules.count) rules")
        }
    }

    struct Default: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The role used when no rule matches and the source names none.")
        @OptionGroup var c: Connection
        @Option(help: "The role's name.") var role: String
        func run() async throws {
            let rs = try await RulesCommand.edit(c) { $0.defaultRole = role }
            print("rules version \(rs.version): default role \(rs.defaultRole)")
        }
    }

    struct Route: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the routing decision stored for a lead, and why.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead id (lead-17).") var leadID: String
        func run() async throws {
            var req = Routing_GetAssignmentRequest()
            req.leadId = leadID
            let client = try c.routingClient()
            let a = try await call { try await client.getAssignment(req, options: c.options) }
            print("\(a.leadId): \(a.personId.isEmpty ? "queued" : a.personId)\(a.role.isEmpty ? "" : " via \(a.role)")")
            print(a.explanation)
            for h in a.history { print("  \(when(h.atMs)) \(h.kind) \(h.personId) \(h.note)") }
        }
    }
}

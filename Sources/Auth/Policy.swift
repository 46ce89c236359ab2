import LeadwireAPI
import Wire

/// What each RPC of the three services needs: the one source of truth for access. The services
/// enforce it (AuthInterceptor), `leadctl access-table` prints it, and the access table in
/// docs/rpc-catalogue.md is generated from it (a test fails when the two differ).
///
/// A rule lists permissions of which any one will do. Health and reflection are open; a method
/// missing here is refused (deny by default).
public enum AccessPolicy {
    /// What a method needs: any one of `permissions`; `note` names what the handler checks beyond it.
    public struct Rule: Sendable, Hashable {
        public let permissions: [String]
        public let note: String?

        init(_ permissions: String..., note: String? = nil) {
            self.permissions = permissions
            self.note = note
        }
    }

    public struct Service: Sendable {
        public let name: String
        /// Every method of the service in proto order, with its rule.
        public let methods: [(name: String, path: String, rule: Rule)]

        /// One rule per method: `rule` switches over the generated method enum, so a method added
        /// to or renamed in the proto does not compile until it has a rule here.
        init<M: WireMethod>(_ name: String, _ type: M.Type, rule: (M) -> Rule) {
            self.name = name
            methods = M.allCases.map { ($0.rawValue, $0.path, rule($0)) }
        }

        /// Path -> rule, the form AuthInterceptor looks methods up in.
        public var byPath: [String: Rule] { Dictionary(uniqueKeysWithValues: methods.map { ($0.path, $0.rule) }) }
    }

    public static let intake = Service("Intake", Intake_Method.self) { method in
        switch method {
        case .createSource, .updateSource, .setSourceEnabled: Rule(Permission.sourcesWrite)
        case .getSource, .listSources, .getLead, .lookupStatus, .listLeads, .watchLeads, .getClient, .getIntakeSettings:
            Rule(Permission.leadsRead)
        case .submitLead, .importLeads, .submitEmail, .acceptLead, .deferLead, .rejectLead, .completeLead, .requireInspection, .addComment,
            .rateLead:
            Rule(Permission.leadsWrite)
        case .setClientDebt: Rule(Permission.clientsWrite)
        case .takeReplies, .confirmReplies: Rule(Permission.repliesSend)
        case .setIntakeOpen: Rule(Permission.intakeAdmin)
        }
    }

    public static let routing = Service("Routing", Routing_Method.self) { method in
        switch method {
        case .createPerson, .updatePerson, .putRole, .setRules: Rule(Permission.directoryWrite)
        case .getPerson, .listPeople, .searchPeople, .getRole, .listRoles, .getRules, .getAssignment, .simulate, .listOwnerChanges:
            Rule(Permission.routingRead)
        case .routeLead, .reassign, .release, .markDecided, .escalate: Rule(Permission.routingWrite)
        }
    }

    public static let report = Service("Report", Report_Method.self) { method in
        let ownContractor = "only for the token's own contractor"
        let ownPlans = "a contractor token sees only its own contractor's plans"
        switch method {
        case .ingestEvents: return Rule(Permission.eventsWrite)
        case .createPlan, .updatePlan: return Rule(Permission.plansWrite)
        case .getPlan, .listPlans, .comparePlan: return Rule(Permission.plansRead)
        case .actOnPlan:
            return Rule(
                Permission.plansWrite, Permission.plansApproveHead, Permission.plansApproveManagement,
                note:
                    "each action checks its own permission: approve as head `plans.approve.head`, as management `plans.approve.management`, return either, the rest `plans.write`"
            )
        case .listWorkPlans, .getWorkPlan, .followWorkPlans: return Rule(Permission.contractorSelf, Permission.plansRead, note: ownPlans)
        case .acknowledge, .reportProgress, .submitAct: return Rule(Permission.contractorSelf, note: ownContractor)
        case .executionControl: return Rule(Permission.reportsRead, Permission.plansRead)
        case .requestProgress, .putContractor: return Rule(Permission.plansWrite)
        case .getContractor: return Rule(Permission.plansRead)
        case .leadSummary, .leadFunnel, .employeeKpis, .planFigures, .exportCsv: return Rule(Permission.reportsRead)
        }
    }

    /// Served by intake (applicant and staff messages) and report (contractor messages).
    public static let messages = Service("Messages", Messages_Method.self) { method in
        switch method {
        case .listTemplates, .getTemplate, .previewTemplate, .listMessages: Rule(Permission.messagesRead)
        case .putTemplate, .resetTemplate, .retryMessage: Rule(Permission.messagesAdmin)
        }
    }

    /// Served by intake: the catalogue and commercial proposals.
    public static let catalog = Service("Catalog", Catalog_Method.self) { method in
        switch method {
        case .searchItems, .getItem, .getMapping, .getProposal, .listProposals, .renderProposal: Rule(Permission.catalogRead)
        case .importPriceList, .putMapping: Rule(Permission.catalogWrite)
        case .createProposal, .reviseProposal: Rule(Permission.proposalsWrite)
        case .actOnProposal:
            Rule(Permission.proposalsWrite, Permission.proposalsApprove, note: "APPROVE and RETURN need proposals.approve")
        case .proposalFigures: Rule(Permission.reportsRead, Permission.catalogRead)
        }
    }

    public static let services = [intake, routing, report, messages, catalog]

    /// Whether a token with `roles` passes the method's rule (before any check the handler makes).
    public static func allows(_ roles: [String], _ rule: Rule) -> Bool {
        allows(granted: Roles.permissions(roles), rule)
    }

    /// Whether these permissions pass the rule.
    public static func allows(granted: Set<String>, _ rule: Rule) -> Bool {
        granted.contains(Permission.all) || rule.permissions.contains { granted.contains($0) }
    }

    /// Roles in the order the table shows them.
    public static let roleOrder = [
        "admin", "service", "Sales manager", "Marketer", "Head of sales", "intake-gateway", "planner",
        "department-head", "management", "accounting", "dashboard", "contractor",
    ]

    /// The markdown access table: one row per method, one column per role, ✓ where the role may call.
    public static func markdownTable() -> String {
        precondition(Set(roleOrder) == Set(Roles.grants.keys), "AccessPolicy.roleOrder must list every role")
        var out = "| role | permissions |\n|---|---|\n"
        for role in roleOrder {
            let p = Roles.grants[role]!.sorted().map { $0 == Permission.all ? "everything" : "`\($0)`" }
            out += "| `\(role)` | " + p.joined(separator: ", ") + " |\n"
        }
        out += "\n| method | needs (any of) | " + roleOrder.map { "`\($0)`" }.joined(separator: " | ") + " |\n"
        out += "|---|---|" + String(repeating: ":-:|", count: roleOrder.count) + "\n"
        for s in services {
            for (method, _, rule) in s.methods {
                let cells = roleOrder.map { allows([$0], rule) ? "✓" : "" }
                let needs = rule.permissions.map { "`\($0)`" }.joined(separator: ", ") + (rule.note.map { " (\($0))" } ?? "")
                out += "| \(s.name).\(method) | \(needs) | " + cells.joined(separator: " | ") + " |\n"
            }
        }
        return out
    }
}

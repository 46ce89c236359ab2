/// What each RPC of the three services needs: the one source of truth for access. The services
/// enforce it (AuthInterceptor), `leadctl access-table` prints it, and the access table in
/// docs/rpc-catalogue.md is generated from it (a test fails when the two differ).
///
/// A rule lists permissions of which any one will do. Health and reflection are open; a method
/// missing here is refused (deny by default).
public enum AccessPolicy {
    public struct Service: Sendable {
        public let name: String
        public let prefix: String
        /// Method name -> permissions, any of which grants the call; in proto order.
        public let rules: KeyValuePairs<String, [String]>
        /// Checks the handler makes beyond the method's rule, by method name.
        public let notes: [String: String]

        /// Path -> "a|b" (the form AuthInterceptor takes).
        public var byPath: [String: String] {
            Dictionary(uniqueKeysWithValues: rules.map { (prefix + $0.key, $0.value.joined(separator: "|")) })
        }
    }

    public static let intake = Service(
        name: "Intake", prefix: "/leadwire.intake.v1.Intake/",
        rules: [
            "CreateSource": [Permission.sourcesWrite],
            "UpdateSource": [Permission.sourcesWrite],
            "GetSource": [Permission.leadsRead],
            "ListSources": [Permission.leadsRead],
            "SetSourceEnabled": [Permission.sourcesWrite],
            "SubmitLead": [Permission.leadsWrite],
            "ImportLeads": [Permission.leadsWrite],
            "SubmitEmail": [Permission.leadsWrite],
            "GetLead": [Permission.leadsRead],
            "LookupStatus": [Permission.leadsRead],
            "ListLeads": [Permission.leadsRead],
            "WatchLeads": [Permission.leadsRead],
            "AcceptLead": [Permission.leadsWrite],
            "DeferLead": [Permission.leadsWrite],
            "RejectLead": [Permission.leadsWrite],
            "CompleteLead": [Permission.leadsWrite],
            "AddComment": [Permission.leadsWrite],
            "SetClientDebt": [Permission.clientsWrite],
            "GetClient": [Permission.leadsRead],
            "RateLead": [Permission.leadsWrite],
            "TakeReplies": [Permission.repliesSend],
            "ConfirmReplies": [Permission.repliesSend],
            "SetIntakeOpen": [Permission.intakeAdmin],
            "GetIntakeSettings": [Permission.leadsRead],
        ],
        notes: [:])

    public static let routing = Service(
        name: "Routing", prefix: "/leadwire.routing.v1.Routing/",
        rules: [
            "CreatePerson": [Permission.directoryWrite],
            "UpdatePerson": [Permission.directoryWrite],
            "GetPerson": [Permission.routingRead],
            "ListPeople": [Permission.routingRead],
            "SearchPeople": [Permission.routingRead],
            "PutRole": [Permission.directoryWrite],
            "GetRole": [Permission.routingRead],
            "ListRoles": [Permission.routingRead],
            "SetRules": [Permission.directoryWrite],
            "GetRules": [Permission.routingRead],
            "RouteLead": [Permission.routingWrite],
            "GetAssignment": [Permission.routingRead],
            "Reassign": [Permission.routingWrite],
            "Release": [Permission.routingWrite],
            "MarkDecided": [Permission.routingWrite],
            "Simulate": [Permission.routingRead],
            "Escalate": [Permission.routingWrite],
            "ListOwnerChanges": [Permission.routingRead],
        ],
        notes: [:])

    public static let report = Service(
        name: "Report", prefix: "/leadwire.report.v1.Report/",
        rules: [
            "IngestEvents": [Permission.eventsWrite],
            "CreatePlan": [Permission.plansWrite],
            "UpdatePlan": [Permission.plansWrite],
            "GetPlan": [Permission.plansRead],
            "ListPlans": [Permission.plansRead],
            "ActOnPlan": [Permission.plansWrite, Permission.plansApproveHead, Permission.plansApproveManagement],
            "ComparePlan": [Permission.plansRead],
            "ListWorkPlans": [Permission.contractorSelf, Permission.plansRead],
            "GetWorkPlan": [Permission.contractorSelf, Permission.plansRead],
            "FollowWorkPlans": [Permission.contractorSelf, Permission.plansRead],
            "Acknowledge": [Permission.contractorSelf],
            "ReportProgress": [Permission.contractorSelf],
            "SubmitAct": [Permission.contractorSelf],
            "ExecutionControl": [Permission.reportsRead, Permission.plansRead],
            "LeadSummary": [Permission.reportsRead],
            "LeadFunnel": [Permission.reportsRead],
            "EmployeeKpis": [Permission.reportsRead],
            "PlanFigures": [Permission.reportsRead],
            "ExportCsv": [Permission.reportsRead],
        ],
        notes: [
            "ActOnPlan":
                "each action checks its own permission: approve as head `plans.approve.head`, as management `plans.approve.management`, return either, the rest `plans.write`",
            "ListWorkPlans": "a contractor token sees only its own contractor's plans",
            "GetWorkPlan": "a contractor token sees only its own contractor's plans",
            "FollowWorkPlans": "a contractor token sees only its own contractor's plans",
            "Acknowledge": "only for the token's own contractor",
            "ReportProgress": "only for the token's own contractor",
            "SubmitAct": "only for the token's own contractor",
        ])

    public static let services = [intake, routing, report]

    /// Whether a token with `roles` passes the method's rule (before any check the handler makes).
    public static func allows(_ roles: [String], _ rule: [String]) -> Bool {
        let granted = Roles.permissions(roles)
        return granted.contains(Permission.all) || rule.contains { granted.contains($0) }
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
            for (method, rule) in s.rules {
                let cells = roleOrder.map { allows([$0], rule) ? "✓" : "" }
                let needs = rule.map { "`\($0)`" }.joined(separator: ", ") + (s.notes[method].map { " (\($0))" } ?? "")
                out += "| \(s.name).\(method) | \(needs) | " + cells.joined(separator: " | ") + " |\n"
            }
        }
        return out
    }
}

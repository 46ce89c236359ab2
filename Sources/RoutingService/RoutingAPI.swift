import Auth
import LeadwireAPI
import Logging
import Store
import Wire

/// The Routing RPCs (proto/leadwire/routing/v1/routing.proto).
struct RoutingAPI: Routing_Service {
    let store: RoutingStore
    let now: Clock
    let logger: Logger

    private static func check(_ problems: [RPCError.FieldViolation], _ summary: String) throws {
        if !problems.isEmpty { throw RoutingError.invalid(summary, problems) }
    }

    // MARK: People

    func createPerson(_ request: Routing_CreatePersonRequest, context: ServerContext) async throws -> Routing_Person {
        guard let p = request.person else {
            throw RoutingError.invalid("no person given", [.init(field: "person", description: "required")])
        }
        try Self.check(RoutingModel.personProblems(p), "the person record is not valid")
        return try await store.createPerson(p, now: now())
    }

    func updatePerson(_ request: Routing_UpdatePersonRequest, context: ServerContext) async throws -> Routing_Person {
        guard let p = request.person else {
            throw RoutingError.invalid("no person given", [.init(field: "person", description: "required")])
        }
        try Self.check(RoutingModel.personProblems(p), "the person record is not valid")
        return try await store.updatePerson(p, now: now())
    }

    func getPerson(_ request: Routing_GetPersonRequest, context: ServerContext) async throws -> Routing_Person {
        guard let p = store.person(request.id) else { throw RoutingError.notFound("no person \(request.id)") }
        return p
    }

    func listPeople(_ request: Routing_ListPeopleRequest, context: ServerContext) async throws -> Routing_ListPeopleResponse {
        if !request.role.isEmpty, store.role(request.role) == nil { throw RoutingError.notFound("no role \"\(request.role)\"") }
        var r = Routing_ListPeopleResponse()
        r.people = store.people(role: request.role, includeInactive: request.includeInactive)
        return r
    }

    func searchPeople(_ request: Routing_SearchPeopleRequest, context: ServerContext) async throws -> Routing_SearchPeopleResponse {
        if request.limit < 0 || request.limit > 100 {
            throw RoutingError.invalid(
                "limit out of range", [.init(field: "limit", description: "0 (default 10) to 100, got \(request.limit)")])
        }
        let people = store.people(role: "", includeInactive: true)
        var r = Routing_SearchPeopleResponse()
        r.matches = MentionSearch.search(request.query, in: people, limit: request.limit == 0 ? 10 : Int(request.limit)).map { m in
            var w = Routing_PersonMatch()
            w.person = m.person
            w.matched = m.matched
            return w
        }
        return r
    }

    // MARK: Roles

    func putRole(_ request: Routing_PutRoleRequest, context: ServerContext) async throws -> Routing_Role {
        guard let role = request.role else { throw RoutingError.invalid("no role given", [.init(field: "role", description: "required")]) }
        try Self.check(RoutingModel.roleProblems(role), "the role is not valid")
        return try await store.putRole(role)
    }

    func getRole(_ request: Routing_GetRoleRequest, context: ServerContext) async throws -> Routing_Role {
        guard let r = store.role(request.name) else { throw RoutingError.notFound("no role \"\(request.name)\"") }
        return r
    }

    func listRoles(_ request: Routing_ListRolesRequest, context: ServerContext) async throws -> Routing_ListRolesResponse {
        var r = Routing_ListRolesResponse()
        r.roles = store.roles()
        return r
    }

    // MARK: Rules

    func setRules(_ request: Routing_SetRulesRequest, context: ServerContext) async throws -> Routing_RuleSet {
        let rs = request.rules ?? Routing_RuleSet()
        try Self.check(
            RoutingModel.ruleProblems(rs).map { .init(field: "rules." + $0.field, description: $0.description) },
            "the rule set is not valid")
        return try await store.setRules(rs, expectedVersion: request.expectedVersion, now: now())
    }

    func getRules(_ request: Routing_GetRulesRequest, context: ServerContext) async throws -> Routing_RuleSet {
        store.snapshot.ruleSet
    }

    // MARK: Deciding

    func routeLead(_ request: Routing_RouteLeadRequest, context: ServerContext) async throws -> EncodedMessage<Routing_Assignment> {
        guard let lead = request.lead else { throw RoutingError.invalid("no lead given", [.init(field: "lead", description: "required")]) }
        try Self.check(RoutingModel.leadProblems(lead), "the lead summary is not valid")
        return try await store.route(lead, actor: Caller.name(or: request.actor), now: now())
    }

    func getAssignment(_ request: Routing_GetAssignmentRequest, context: ServerContext) async throws -> EncodedMessage<Routing_Assignment> {
        guard let a = try await store.assignment(request.leadId) else {
            throw RoutingError.notFound("no assignment for lead \(request.leadId)")
        }
        return a
    }

    func listOwnerChanges(_ request: Routing_ListOwnerChangesRequest, context: ServerContext) async throws
        -> Routing_ListOwnerChangesResponse
    {
        guard (0...1000).contains(request.limit), request.afterSeq >= 0 else {
            throw RoutingError.invalid(
                "cannot list owner changes",
                [
                    .init(
                        field: request.afterSeq < 0 ? "after_seq" : "limit",
                        description: request.afterSeq < 0 ? "must be >= 0" : "must be between 0 and 1000")
                ])
        }
        var r = Routing_ListOwnerChangesResponse()
        r.changes = try await store.ownerChanges(after: request.afterSeq, limit: request.limit == 0 ? 100 : Int(request.limit))
        return r
    }

    func reassign(_ request: Routing_ReassignRequest, context: ServerContext) async throws -> Routing_Assignment {
        var problems = [RPCError.FieldViolation]()
        if request.leadId.trimmingSpaces.isEmpty { problems.append(.init(field: "lead_id", description: "required")) }
        if request.personId.trimmingSpaces.isEmpty { problems.append(.init(field: "person_id", description: "required")) }
        if request.reason.trimmingSpaces.isEmpty {
            problems.append(.init(field: "reason", description: "required: the history keeps why a lead moved"))
        }
        try Self.check(problems, "the reassignment is not complete")
        return try await store.reassign(
            request.leadId, to: request.personId, reason: request.reason, actor: Caller.name(or: request.actor), now: now())
    }

    func release(_ request: Routing_ReleaseRequest, context: ServerContext) async throws -> Routing_Assignment {
        try await store.release(request.leadId, actor: Caller.name(or: request.actor), note: request.note, now: now())
    }

    func markDecided(_ request: Routing_MarkDecidedRequest, context: ServerContext) async throws -> Routing_Assignment {
        try await store.markDecided(request.leadId, actor: Caller.name(or: request.actor), now: now())
    }

    func simulate(_ request: Routing_SimulateRequest, context: ServerContext) async throws -> Routing_SimulateResponse {
        let proposed = request.proposed ?? Routing_RuleSet()
        var problems = RoutingModel.ruleProblems(proposed).map {
            RPCError.FieldViolation(field: "proposed." + $0.field, description: $0.description)
        }
        for (i, l) in request.leads.enumerated() { problems += RoutingModel.leadProblems(l, path: "leads[\(i)]") }
        if request.leads.count > 100_000 {
            problems.append(.init(field: "leads", description: "at most 100000 leads per simulation, got \(request.leads.count)"))
        }
        try Self.check(problems, "the simulation request is not valid")
        let s = store.snapshot
        try RoutingStore.checkRuleReferences(proposed, s)
        let t = now()
        let results = Router.simulate(
            request.leads.map(RoutingModel.lead), proposed: RoutingModel.rules(proposed), current: s.rules, directory: s.directory,
            rotation: s.rotation, load: s.load, now: t,
            proposedDefaultRole: proposed.defaultRole.isEmpty ? nil : proposed.defaultRole,
            currentDefaultRole: s.ruleSet.defaultRole.isEmpty ? nil : s.ruleSet.defaultRole)
        var r = Routing_SimulateResponse()
        for (i, x) in results.enumerated() {
            var w = Routing_SimulatedLead()
            w.leadId = x.lead
            w.proposed = RoutingModel.assignment(x.proposed, lead: request.leads[i], now: t)
            w.current = RoutingModel.assignment(x.current, lead: request.leads[i], now: t)
            w.differs = x.differs
            if x.differs { r.differing += 1 }
            r.results.append(w)
        }
        return r
    }

    func escalate(_ request: Routing_EscalateRequest, context: ServerContext) async throws -> Routing_EscalateResponse {
        var r = Routing_EscalateResponse()
        r.escalations = try await store.escalate(now: now(), record: !request.dryRun)
        for e in r.escalations where !request.dryRun {
            logger.notice(
                "lead escalated",
                metadata: ["lead": "\(e.assignment?.leadId ?? "")", "head": "\(e.headId)", "overdue_ms": "\(e.overdueMs)"])
        }
        return r
    }
}

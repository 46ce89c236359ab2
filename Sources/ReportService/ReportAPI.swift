import Auth
import LeadwireAPI
import Logging
import Messaging
import Store
import Wire

/// Whether a registration number names a lead a plan line may cover (accepted or processed).
enum LeadVerdict: Sendable, Equatable {
    case usable
    case notAccepted(status: String)
    case unknown
}

protocol LeadChecker: Sendable {
    func verdict(_ registrationNumber: String) async throws -> LeadVerdict
}

/// Checks numbers against the lead events this service has ingested (used when no Intake address
/// is configured).
struct EventLeadChecker: LeadChecker {
    let store: ReportStore

    func verdict(_ registrationNumber: String) async throws -> LeadVerdict {
        guard let status = try await store.leadStatus(registrationNumber: registrationNumber) else { return .unknown }
        return status == "accepted" || status == "processed" ? .usable : .notAccepted(status: status)
    }
}

/// Checks numbers with the intake service (LookupStatus), as the whole set is deployed.
struct IntakeLeadChecker: LeadChecker {
    let intake: Intake_ServiceClient
    let options: @Sendable () -> CallOptions

    func verdict(_ registrationNumber: String) async throws -> LeadVerdict {
        var req = Intake_LookupStatusRequest()
        req.registrationNumber = registrationNumber
        do {
            let s = try await intake.lookupStatus(req, options: options())
            return s.status == .accepted || s.status == .processed
                ? .usable : .notAccepted(status: s.status.shortName ?? "\(s.status)")
        } catch let e as RPCError where e.code == .notFound || e.code == .invalidArgument {
            return .unknown
        } catch let e as RPCError {
            throw RPCError(.unavailable, "cannot check lead \(registrationNumber) with the intake service (\(e.code): \(e.message)); retry")
        }
    }
}

/// The Report RPCs (proto/leadwire/report/v1/report.proto).
struct ReportAPI: Report_Service {
    let store: ReportStore
    let hub: PlanHub
    let leads: any LeadChecker
    let now: Clock
    let logger: Logger
    /// A message was queued (a progress request): deliver it now.
    var onMessage: @Sendable () -> Void = {}

    /// The contractor a call acts for. A contractor's token acts only for its own contractor id
    /// (another one is PERMISSION_DENIED); staff and admins name one in the request.
    private static func contractor(_ requested: String) throws -> String {
        if Caller.isContractor {
            guard let own = Caller.current?.ctr, !own.isEmpty else {
                throw RPCError(.permissionDenied, "this contractor token names no contractor id; issue it with --contractor")
            }
            if !requested.isEmpty && requested != own {
                throw RPCError(.permissionDenied, "this token belongs to contractor \(own); it cannot act for \(requested)")
            }
            return own
        }
        if requested.trimmingSpaces.isEmpty {
            throw ReportError.invalid("no contractor given", [.init(field: "contractor_id", description: "required")])
        }
        return requested
    }

    private var today: Int { CalendarDate.day(ofMillis: now()) }

    // MARK: Events

    func ingestEvents(_ request: Report_IngestEventsRequest, context: ServerContext) async throws -> Report_IngestEventsResponse {
        var problems = [RPCError.FieldViolation]()
        for (i, e) in request.events.enumerated() {
            problems += LeadLedger.problems(e, path: "events[\(i)]").map { RPCError.FieldViolation(field: $0.0, description: $0.1) }
            if problems.count >= 100 { break }
        }
        if request.events.count > 10_000 {
            problems.append(.init(field: "events", description: "at most 10000 events per batch, got \(request.events.count)"))
        }
        guard problems.isEmpty else { throw ReportError.invalid("the batch was not applied: fix these events and resend it", problems) }
        let r = try await store.ingest(request.events)
        var out = Report_IngestEventsResponse()
        out.applied = Int32(r.applied)
        out.duplicates = Int32(r.duplicates)
        out.consistentAsOfMs = r.asOf
        return out
    }

    // MARK: Plans

    /// Every line's number must name an accepted (or processed) lead.
    private func checkLeads(_ lines: [Report_PlanLine]) async throws {
        var problems = [RPCError.PreconditionViolation]()
        var seen = [String: LeadVerdict]()
        for l in lines {
            let v: LeadVerdict
            if let known = seen[l.registrationNumber] {
                v = known
            } else {
                v = try await leads.verdict(l.registrationNumber)
                seen[l.registrationNumber] = v
            }
            switch v {
            case .usable: continue
            case .unknown:
                problems.append(
                    .init(
                        type: "LEAD_UNKNOWN", subject: "lead:\(l.registrationNumber)",
                        description: "no lead \(l.registrationNumber) is registered"))
            case .notAccepted(let s):
                problems.append(
                    .init(
                        type: "LEAD_NOT_ACCEPTED", subject: "lead:\(l.registrationNumber)",
                        description: "lead \(l.registrationNumber) is \(s); only accepted leads go into plans"))
            }
        }
        if !problems.isEmpty {
            throw RPCError.failedPrecondition(problems.map(\.description).joined(separator: "; "), violations: problems)
        }
    }

    func createPlan(_ request: Report_CreatePlanRequest, context: ServerContext) async throws -> Report_Plan {
        var problems = PlanMachine.lineProblems(request.lines)
        if request.title.trimmingSpaces.isEmpty { problems.insert(.init(field: "title", description: "required"), at: 0) }
        let period = PlanMachine.period(start: request.periodStart, end: request.periodEnd, today: today)
        if case .failure(.invalid(_, let v)) = period { problems += v }
        guard problems.isEmpty, case .success(let (start, end)) = period else {
            throw ReportError.invalid("the plan is not valid", problems)
        }
        try await checkLeads(request.lines)
        var p = Report_Plan()
        p.title = request.title
        p.department = request.department
        p.periodStart = start
        p.periodEnd = end
        p.lines = request.lines.map { l in
            var l = l
            l.id = ""
            l.execution = nil
            return l
        }
        return try await store.createPlan(p, actor: Caller.name(or: request.actor), now: now())
    }

    func updatePlan(_ request: Report_UpdatePlanRequest, context: ServerContext) async throws -> Report_Plan {
        let problems = PlanMachine.lineProblems(request.lines)
        guard problems.isEmpty else { throw ReportError.invalid("the plan is not valid", problems) }
        try await checkLeads(request.lines)
        return try await store.updatePlan(
            request.planId, expectedVersion: request.expectedVersion, title: request.title, lines: request.lines,
            actor: Caller.name(or: request.actor), now: now())
    }

    func getPlan(_ request: Report_GetPlanRequest, context: ServerContext) async throws -> Report_Plan {
        try await store.plan(request.planId, version: request.version)
    }

    func listPlans(_ request: Report_ListPlansRequest, context: ServerContext) async throws -> Report_ListPlansResponse {
        var r = Report_ListPlansResponse()
        r.plans = try await store.plans(state: request.state)
        return r
    }

    func actOnPlan(_ request: Report_PlanActionRequest, context: ServerContext) async throws -> Report_Plan {
        // Each step is someone's to take: planners submit and hand over, the department head and
        // management approve; either approver may return the plan.
        switch request.action {
        case .approveAsHead: try Caller.require(Permission.plansApproveHead, for: "the department head's approval")
        case .approveAsManagement: try Caller.require(Permission.plansApproveManagement, for: "management's approval")
        case .return:
            if !Caller.has(Permission.plansApproveHead) { try Caller.require(Permission.plansApproveManagement, for: "returning a plan") }
        default: try Caller.require(Permission.plansWrite, for: PlanMachine.actionName(request.action))
        }
        let p = try await store.act(
            request.planId, action: request.action, comment: request.comment, actor: Caller.name(or: request.actor), now: now())
        if request.action == .handOver { hub.publish("handed_over", p) }
        return p
    }

    func comparePlan(_ request: Report_ComparePlanRequest, context: ServerContext) async throws -> Report_ComparePlanResponse {
        let after = try await store.plan(request.planId, version: request.version)
        guard after.version > 1 else {
            throw ReportError.precondition(
                type: "FIRST_VERSION", subject: "plan:\(request.planId)",
                message: "version 1 of plan \(request.planId) has nothing before it to compare with")
        }
        let before = try await store.plan(request.planId, version: after.version - 1)
        return PlanMachine.compare(before, after)
    }

    // MARK: Contractors

    func listWorkPlans(_ request: Report_ContractorRequest, context: ServerContext) async throws -> Report_ListWorkPlansResponse {
        let contractor = try Self.contractor(request.contractorId)
        var r = Report_ListWorkPlansResponse()
        r.plans = try await store.workPlans(contractor: contractor)
        return r
    }

    func getWorkPlan(_ request: Report_GetWorkPlanRequest, context: ServerContext) async throws -> Report_WorkPlan {
        let contractor = try Self.contractor(request.contractorId)
        return try await store.workPlan(contractor: contractor, plan: request.planId)
    }

    func followWorkPlans(_ request: Report_ContractorRequest, responses: ResponseWriter<Report_WorkPlanUpdate>, context: ServerContext)
        async throws
    {
        let contractor = try Self.contractor(request.contractorId)
        // Subscribe first, then send the current plans: a hand-over in between is sent twice at
        // worst, never missed.
        let updates = hub.follow(contractor)
        for plan in try await store.workPlans(contractor: contractor) {
            var u = Report_WorkPlanUpdate()
            u.kind = "current"
            u.plan = plan
            try await responses.write(u)
        }
        // Requests still waiting for an answer, so a contractor that reconnects sees them again.
        let plans = try await store.workPlans(contractor: contractor)
        for r in try await store.openProgressRequests(contractor: contractor, today: today) {
            var u = Report_WorkPlanUpdate()
            u.kind = "progress_requested"
            if let p = plans.first(where: { $0.plan?.id == r.planId }) { u.plan = p }
            u.progressRequest = r
            try await responses.write(u)
        }
        try await responses.sendHeaders()
        for await u in updates {
            try await responses.write(u)
        }
    }

    func acknowledge(_ request: Report_AcknowledgeRequest, context: ServerContext) async throws -> Report_WorkPlan {
        let contractor = try Self.contractor(request.contractorId)
        if request.signer.trimmingSpaces.isEmpty {
            throw ReportError.invalid("no signer", [.init(field: "signer", description: "required: who signs for receipt")])
        }
        let p = try await store.acknowledge(contractor: contractor, plan: request.planId, signer: request.signer, now: now())
        hub.publish("changed", p, only: contractor)
        return PlanMachine.view(p, for: contractor)!
    }

    func reportProgress(_ request: Report_ReportProgressRequest, context: ServerContext) async throws -> Report_PlanLine {
        let contractor = try Self.contractor(request.contractorId)
        if !(0...100).contains(request.percent) {
            throw ReportError.invalid("bad progress", [.init(field: "percent", description: "0 to 100, got \(request.percent)")])
        }
        let (line, p) = try await store.reportProgress(
            contractor: contractor, plan: request.planId, line: request.lineId, percent: request.percent, note: request.note, now: now()
        )
        hub.publish("changed", p, only: contractor)
        return line
    }

    func submitAct(_ request: Report_SubmitActRequest, context: ServerContext) async throws -> Report_PlanLine {
        guard var act = request.act else { throw ReportError.invalid("no act given", [.init(field: "act", description: "required")]) }
        act.contractorId = try Self.contractor(act.contractorId)
        let (line, p) = try await store.submitAct(act, today: today, now: now())
        hub.publish("changed", p, only: act.contractorId)
        return line
    }

    func executionControl(_ request: Report_ExecutionControlRequest, context: ServerContext) async throws -> Report_ExecutionControlResponse
    {
        if request.staleDays < 0 {
            throw ReportError.invalid("bad stale_days", [.init(field: "stale_days", description: "0 (default 7) or more")])
        }
        let t = now()
        let scope = Caller.isContractor ? try Self.contractor(request.contractorId) : request.contractorId
        let plans = try await store.handedOverPlans(contractor: scope)
        var r = Report_ExecutionControlResponse()
        r.consistentAsOfMs = t
        r.items = Figures.control(plans, contractor: scope, staleDays: request.staleDays == 0 ? 7 : Int(request.staleDays), now: t)
        r.openRequests = try await store.openProgressRequests(contractor: scope, today: CalendarDate.day(ofMillis: t))
        return r
    }

    func requestProgress(_ request: Report_RequestProgressRequest, context: ServerContext) async throws -> Report_ProgressRequest {
        var v = [RPCError.FieldViolation]()
        if request.planId.trimmingSpaces.isEmpty { v.append(.init(field: "plan_id", description: "required")) }
        if request.contractorId.trimmingSpaces.isEmpty { v.append(.init(field: "contractor_id", description: "required")) }
        if let d = CalendarDate.dayNumber(request.dueDate.trimmingSpaces) {
            if d < today { v.append(.init(field: "due_date", description: "today or later, got \(request.dueDate)")) }
        } else {
            v.append(.init(field: "due_date", description: "a date YYYY-MM-DD, got \"\(request.dueDate)\""))
        }
        if request.note.count > 2000 { v.append(.init(field: "note", description: "at most 2,000 characters, got \(request.note.count)")) }
        guard v.isEmpty else { throw ReportError.invalid("cannot ask for progress", v) }
        let actor = Caller.name(or: request.actor.isEmpty ? "execution control" : request.actor)
        let (r, plan) = try await store.requestProgress(
            plan: request.planId, contractor: request.contractorId.trimmingSpaces, lines: request.lineIds,
            dueDate: request.dueDate.trimmingSpaces, note: request.note.trimmingSpaces, actor: actor, now: now())
        onMessage()
        hub.publish("progress_requested", plan, only: r.contractorId, progressRequest: r)
        return r
    }

    func putContractor(_ request: Report_Contractor, context: ServerContext) async throws -> Report_Contractor {
        var v = [RPCError.FieldViolation]()
        if request.id.trimmingSpaces.isEmpty { v.append(.init(field: "id", description: "required")) }
        if !request.email.isEmpty && !request.email.contains("@") {
            v.append(.init(field: "email", description: "\"\(request.email)\" is not an e-mail address"))
        }
        if !request.locale.isEmpty && MessageLocale(code: request.locale) == nil {
            v.append(.init(field: "locale", description: "\"\(request.locale)\" is not one of: ru, en"))
        }
        guard v.isEmpty else { throw ReportError.invalid("cannot store the contractor", v) }
        var c = request
        c.id = c.id.trimmingSpaces
        c.email = c.email.trimmingSpaces
        return try await store.putContractor(c, now: now())
    }

    func getContractor(_ request: Report_GetContractorRequest, context: ServerContext) async throws -> Report_Contractor {
        guard let c = try await store.contractor(request.id) else { throw ReportError.notFound("no contractor \(request.id)") }
        return c
    }

    // MARK: Reports

    private static func range(_ from: String, _ to: String) throws -> (Int, Int) {
        var problems = [RPCError.FieldViolation]()
        let f = from.isEmpty ? Int.min / 2 : CalendarDate.dayNumber(from)
        let t = to.isEmpty ? Int.max / 2 : CalendarDate.dayNumber(to)
        if f == nil { problems.append(.init(field: "from_date", description: "not a date YYYY-MM-DD: \"\(from)\"")) }
        if t == nil { problems.append(.init(field: "to_date", description: "not a date YYYY-MM-DD: \"\(to)\"")) }
        if let f, let t, f > t { problems.append(.init(field: "to_date", description: "\(to) is before from_date \(from)")) }
        guard problems.isEmpty, let f, let t else { throw ReportError.invalid("bad date range", problems) }
        return (f, t)
    }

    func leadSummary(_ request: Report_LeadReportRequest, context: ServerContext) async throws -> Report_LeadReport {
        let (f, t) = try Self.range(request.fromDate, request.toDate)
        let dim: String
        switch request.dimension {
        case .unspecified: dim = "all"
        case .source: dim = "source"
        case .channel: dim = "channel"
        case .owner: dim = "owner"
        case .category: dim = "category"
        case .field:
            guard !request.field.trimmingSpaces.isEmpty else {
                throw ReportError.invalid(
                    "no field named", [.init(field: "field", description: "required with DIMENSION_FIELD, e.g. \"Region\"")])
            }
            dim = "field:" + request.field
        default:
            throw ReportError.invalid(
                "unknown dimension", [.init(field: "dimension", description: "unknown value \(request.dimension.rawValue)")])
        }
        let c = try await store.counters(dim: dim, metricPrefixes: ["status:"], fromDay: f, toDay: t)
        var r = Report_LeadReport()
        r.consistentAsOfMs = c.asOf
        r.rows = LeadLedger.rows(c.rows, period: request.period)
        return r
    }

    func leadFunnel(_ request: Report_FunnelRequest, context: ServerContext) async throws -> Report_Funnel {
        let (f, t) = try Self.range(request.fromDate, request.toDate)
        let c = try await store.counters(dim: "all", metricPrefixes: ["status:", "funnel:", "reaction:"], fromDay: f, toDay: t)
        func sum(_ metric: String) -> Int64 { c.rows.reduce(0) { $0 + ($1.metric == metric ? $1.n : 0) } }
        var r = Report_Funnel()
        r.consistentAsOfMs = c.asOf
        r.received = c.rows.reduce(0) { $0 + ($1.metric.hasPrefix("status:") ? $1.n : 0) }
        r.accepted = sum("funnel:accepted")
        r.processed = sum("funnel:processed")
        r.reacted = sum("reaction:n")
        if r.reacted > 0 {
            r.averageReactionMs = sum("reaction:ms") / r.reacted
            r.shareWithinDeadline = Double(sum("reaction:on_time")) / Double(r.reacted)
        }
        return r
    }

    func employeeKpis(_ request: Report_KpiRequest, context: ServerContext) async throws -> Report_KpiReport {
        let (f, t) = try Self.range(request.fromDate, request.toDate)
        let c = try await store.counters(dim: "person", metricPrefixes: ["kpi:"], fromDay: f, toDay: t)
        var byPerson = [String: (handled: Int64, onTime: Int64, ratings: Int64, sum: Int64)]()
        for row in c.rows {
            var k = byPerson[row.key] ?? (0, 0, 0, 0)
            switch row.metric {
            case "kpi:handled": k.handled += row.n
            case "kpi:on_time": k.onTime += row.n
            case "kpi:ratings": k.ratings += row.n
            case "kpi:rating_sum": k.sum += row.n
            default: break
            }
            byPerson[row.key] = k
        }
        var r = Report_KpiReport()
        r.consistentAsOfMs = c.asOf
        r.employees = byPerson.keys.sorted().map { id in
            let k = byPerson[id]!
            var e = Report_EmployeeKpi()
            e.personId = id
            e.handled = k.handled
            e.onTime = k.onTime
            e.ratings = k.ratings
            e.averageRating = k.ratings > 0 ? Double(k.sum) / Double(k.ratings) : 0
            return e
        }
        return r
    }

    func planFigures(_ request: Report_PlanReportRequest, context: ServerContext) async throws -> Report_PlanReport {
        let (f, t) = try Self.range(request.fromDate, request.toDate)
        let t0 = now()
        var plans = try await store.handedOverPlans(contractor: request.contractorId)
        if !request.planId.isEmpty { plans = plans.filter { $0.id == request.planId } }
        var r = Report_PlanReport()
        r.consistentAsOfMs = t0
        r.rows = Figures.planRows(
            plans, contractor: request.contractorId, fromDay: request.fromDate.isEmpty ? nil : f, toDay: request.toDate.isEmpty ? nil : t,
            today: CalendarDate.day(ofMillis: t0))
        return r
    }

    // MARK: CSV

    func exportCsv(_ request: Report_ExportCsvRequest, responses: ResponseWriter<Report_CsvChunk>, context: ServerContext) async throws {
        let header: [String]
        var rows = [[String]]()
        let asOf: Int64
        switch request.report {
        case .leads(let q):
            let r = try await leadSummary(q, context: context)
            asOf = r.consistentAsOfMs
            header = ["key", "period", "received", "new", "accepted", "deferred", "rejected", "processed"]
            rows = r.rows.map {
                [
                    $0.key, $0.period.isEmpty ? "all" : $0.period, "\($0.received)", "\($0.new)", "\($0.accepted)", "\($0.deferred)",
                    "\($0.rejected)", "\($0.processed)",
                ]
            }
        case .funnel(let q):
            let r = try await leadFunnel(q, context: context)
            asOf = r.consistentAsOfMs
            header = ["received", "accepted", "processed", "reacted", "average_reaction_ms", "share_within_deadline"]
            rows = [
                ["\(r.received)", "\(r.accepted)", "\(r.processed)", "\(r.reacted)", "\(r.averageReactionMs)", "\(r.shareWithinDeadline)"]
            ]
        case .kpi(let q):
            let r = try await employeeKpis(q, context: context)
            asOf = r.consistentAsOfMs
            header = ["person_id", "handled", "on_time", "ratings", "average_rating"]
            rows = r.employees.map { [$0.personId, "\($0.handled)", "\($0.onTime)", "\($0.ratings)", "\($0.averageRating)"] }
        case .plans(let q):
            let r = try await planFigures(q, context: context)
            asOf = r.consistentAsOfMs
            header = [
                "plan_id", "period_start", "contractor_id", "lines", "completed", "not_completed", "planned_volume", "actual_volume",
                "lateness_days", "late_lines",
            ]
            rows = r.rows.map {
                [
                    $0.planId, $0.periodStart, $0.contractorId, "\($0.lines)", "\($0.completed)", "\($0.notCompleted)", $0.plannedVolume,
                    $0.actualVolume, "\($0.latenessDays)", "\($0.lateLines)",
                ]
            }
        case .control(let q):
            let r = try await executionControl(q, context: context)
            asOf = r.consistentAsOfMs
            header = [
                "plan_id", "line_id", "contractor_id", "registration_number", "deadline", "overdue", "days_overdue", "stale",
                "days_since_progress",
            ]
            rows = r.items.map {
                [
                    $0.planId, $0.line?.id ?? "", $0.line?.contractorId ?? "", $0.line?.registrationNumber ?? "", $0.line?.deadline ?? "",
                    "\($0.overdue)", "\($0.daysOverdue)", "\($0.stale)", "\($0.daysSinceProgress)",
                ]
            }
        case nil:
            throw ReportError.invalid(
                "no report chosen", [.init(field: "report", description: "set one of leads, funnel, kpi, plans, control")])
        }
        var buffer = "# consistent as of \(Figures.iso(asOf))\r\n" + Figures.csvLine(header)
        for row in rows {
            buffer += Figures.csvLine(row)
            if buffer.utf8.count >= 32 * 1024 {
                var chunk = Report_CsvChunk()
                chunk.data = Array(buffer.utf8)
                try await responses.write(chunk)
                buffer = ""
            }
        }
        if !buffer.isEmpty {
            var chunk = Report_CsvChunk()
            chunk.data = Array(buffer.utf8)
            try await responses.write(chunk)
        }
    }
}

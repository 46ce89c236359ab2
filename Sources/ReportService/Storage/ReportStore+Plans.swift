import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// Work plans: versions, approval steps and what each contractor sees of them.
extension ReportStore {
    // MARK: Plans

    static func planID(_ n: Int64) -> String { "plan-\(n)" }

    static func planNumber(_ id: String) -> Int64? {
        guard id.hasPrefix("plan-"), let n = Int64(id.dropFirst(5)), n > 0 else { return nil }
        return n
    }

    static func plan(_ c: Connection, _ n: Int64) throws -> Report_Plan? {
        try c.first("SELECT body FROM plans WHERE id = ?", n) { try ProtoCodec.decode(Report_Plan.self, from: $0.blob(0)) }
    }

    static func requirePlan(_ c: Connection, _ id: String) throws -> (Int64, Report_Plan) {
        guard let n = planNumber(id), let p = try plan(c, n) else { throw ReportError.notFound("no plan \(id)") }
        return (n, p)
    }

    /// New line ids ("line-N"), unique across plans.
    static func assignLineIDs(_ c: Connection, _ lines: inout [Report_PlanLine]) throws {
        var seq = try meta(c, "line_seq")
        for i in lines.indices where lines[i].id.isEmpty {
            seq += 1
            lines[i].id = "line-\(seq)"
        }
        try setMeta(c, "line_seq", seq)
    }

    static func step(
        _ action: String, actor: String, from: Report_PlanState, to: Report_PlanState, comment: String, version: Int32, at: Int64
    ) -> Report_PlanStep {
        var s = Report_PlanStep()
        s.atMs = at
        s.actor = actor.isEmpty ? "unknown" : actor
        s.action = action
        s.fromState = from
        s.toState = to
        s.comment = comment
        s.version = version
        return s
    }

    static func save(_ c: Connection, _ n: Int64, _ p: Report_Plan, newVersion: Bool) throws {
        let body = ProtoCodec.encode(p)
        // `changed` orders plan changes across replicas (their writes take turns), for FollowWorkPlans.
        try c.run(
            "UPDATE plans SET state = ?, version = ?, body = ?, changed = (SELECT COALESCE(MAX(changed), 0) + 1 FROM plans) WHERE id = ?",
            p.state.rawValue, p.version, body, n)
        if newVersion {
            try c.run("INSERT INTO plan_versions(plan_id, version, body) VALUES (?, ?, ?)", n, p.version, body)
        }
    }

    func createPlan(_ plan: Report_Plan, actor: String, now: Int64) async throws -> Report_Plan {
        try await db.write { c in
            var p = plan
            p.state = .draft
            p.version = 1
            p.createdAtMs = now
            p.updatedAtMs = now
            try Self.assignLineIDs(c, &p.lines)
            p.history = [Self.step("created", actor: actor, from: .unspecified, to: .draft, comment: "", version: 1, at: now)]
            try c.run("INSERT INTO plans(state, version, body) VALUES (?, ?, ?)", p.state.rawValue, p.version, [UInt8]())
            let n = try c.lastInsertRowID()
            p.id = Self.planID(n)
            try Self.save(c, n, p, newVersion: true)
            return p
        }
    }

    func updatePlan(_ id: String, expectedVersion: Int32, title: String, lines: [Report_PlanLine], actor: String, now: Int64) async throws
        -> Report_Plan
    {
        try await db.write { c in
            var (n, p) = try Self.requirePlan(c, id)
            guard p.state == .draft else {
                throw ReportError.wrongState(plan: id, state: p.state, action: "editing", allowedIn: [.draft])
            }
            if expectedVersion != 0 && expectedVersion != p.version {
                throw ReportError.staleVersion(plan: id, expected: expectedVersion, actual: p.version)
            }
            let known = Set(p.lines.map(\.id))
            for (i, l) in lines.enumerated() where !l.id.isEmpty && !known.contains(l.id) {
                throw ReportError.invalid(
                    "unknown line",
                    [.init(field: "lines[\(i)].id", description: "plan \(id) has no line \(l.id); leave id empty for a new line")])
            }
            var newLines = lines.map { l -> Report_PlanLine in
                var l = l
                l.execution = nil
                return l
            }
            try Self.assignLineIDs(c, &newLines)
            if !title.isEmpty { p.title = title }
            p.lines = newLines
            p.version += 1
            p.updatedAtMs = now
            p.history.append(Self.step("edited", actor: actor, from: .draft, to: .draft, comment: "", version: p.version, at: now))
            try Self.save(c, n, p, newVersion: true)
            return p
        }
    }

    /// One step of the approval. Hand-over records which contractors can now see the plan.
    func act(_ id: String, action: Report_PlanAction, comment: String, actor: String, now: Int64) async throws -> Report_Plan {
        try await db.write { c in
            var (n, p) = try Self.requirePlan(c, id)
            let (to, stepName) = try PlanMachine.apply(action, to: p, comment: comment).get()
            p.history.append(Self.step(stepName, actor: actor, from: p.state, to: to, comment: comment, version: p.version, at: now))
            p.state = to
            p.updatedAtMs = now
            if to == .handedOver {
                for contractor in Set(p.lines.map(\.contractorId)) {
                    try c.run("INSERT OR IGNORE INTO handovers(contractor_id, plan_id) VALUES (?, ?)", contractor, n)
                }
                for i in p.lines.indices where p.lines[i].execution == nil {
                    p.lines[i].execution = Report_LineExecution()
                }
            }
            try Self.save(c, n, p, newVersion: false)
            return p
        }
    }

    func plan(_ id: String, version: Int32) async throws -> Report_Plan {
        try await db.read { c in
            let (n, p) = try Self.requirePlan(c, id)
            guard version != 0 && version != p.version else { return p }
            guard
                let v = try c.first(
                    "SELECT body FROM plan_versions WHERE plan_id = ? AND version = ?", n, version,
                    map: { try ProtoCodec.decode(Report_Plan.self, from: $0.blob(0)) })
            else {
                throw ReportError.notFound("plan \(id) has no version \(version) (latest: \(p.version))")
            }
            return v
        }
    }

    func plans(state: Report_PlanState) async throws -> [Report_Plan] {
        try await db.read { c in
            try c.query("SELECT body FROM plans WHERE ? = 0 OR state = ? ORDER BY id", state.rawValue, state.rawValue) {
                try ProtoCodec.decode(Report_Plan.self, from: $0.blob(0))
            }
        }
    }

    // MARK: Contractors

    func workPlans(contractor: String) async throws -> [Report_WorkPlan] {
        try await db.read { c in
            try c.query(
                "SELECT p.body FROM handovers h JOIN plans p ON p.id = h.plan_id WHERE h.contractor_id = ? ORDER BY p.id", contractor
            ) {
                try ProtoCodec.decode(Report_Plan.self, from: $0.blob(0))
            }.compactMap { PlanMachine.view($0, for: contractor) }
        }
    }

    /// NOT_FOUND unless the plan has lines handed to this contractor: another contractor's plan is
    /// indistinguishable from a missing one.
    func workPlan(contractor: String, plan id: String) async throws -> Report_WorkPlan {
        try await db.read { c in
            guard let n = Self.planNumber(id), let p = try Self.plan(c, n), let view = PlanMachine.view(p, for: contractor) else {
                throw ReportError.notFound("no plan \(id) handed over to \(contractor)")
            }
            return view
        }
    }

    /// Changes a handed-over plan for one contractor's action; returns the whole plan (for
    /// followers) and the contractor's view of it.
    func contractorWrite<T: Sendable>(
        contractor: String, plan id: String, _ body: @escaping @Sendable (inout Report_Plan) throws -> T,
        then: (@Sendable (Connection, Report_Plan) throws -> Void)? = nil
    ) async throws -> (T, Report_Plan) {
        try await db.write { c in
            guard let n = Self.planNumber(id), var p = try Self.plan(c, n), PlanMachine.view(p, for: contractor) != nil else {
                throw ReportError.notFound("no plan \(id) handed over to \(contractor)")
            }
            let result = try body(&p)
            try Self.save(c, n, p, newVersion: false)
            try then?(c, p)
            return (result, p)
        }
    }

    func acknowledge(contractor: String, plan id: String, signer: String, now: Int64) async throws -> Report_Plan {
        try await contractorWrite(contractor: contractor, plan: id) { p in
            guard !p.acknowledgements.contains(where: { $0.contractorId == contractor }) else { return }
            var a = Report_Acknowledgement()
            a.contractorId = contractor
            a.signer = signer
            a.atMs = now
            p.acknowledgements.append(a)
        }.1
    }

    /// The line of this contractor in the plan, acknowledged and still open, or the refusal.
    static func openLine(_ p: Report_Plan, _ lineID: String, contractor: String) throws -> Int {
        guard let i = p.lines.firstIndex(where: { $0.id == lineID && $0.contractorId == contractor }) else {
            throw ReportError.notFound("plan \(p.id) has no line \(lineID) handed to \(contractor)")
        }
        guard p.acknowledgements.contains(where: { $0.contractorId == contractor }) else {
            throw ReportError.precondition(
                type: "NOT_ACKNOWLEDGED", subject: "plan:\(p.id)", message: "acknowledge receipt of plan \(p.id) before reporting on it")
        }
        if p.lines[i].execution?.closed == true {
            throw ReportError.precondition(
                type: "LINE_CLOSED", subject: "line:\(lineID)", message: "line \(lineID) is already closed by a completion act")
        }
        return i
    }

    func reportProgress(contractor: String, plan id: String, line lineID: String, percent: Int32, note: String, now: Int64) async throws
        -> (Report_PlanLine, Report_Plan)
    {
        try await contractorWrite(contractor: contractor, plan: id) { p in
            let i = try Self.openLine(p, lineID, contractor: contractor)
            var e = p.lines[i].execution ?? Report_LineExecution()
            if percent < e.progressPercent {
                throw ReportError.invalid(
                    "progress cannot go back",
                    [.init(field: "percent", description: "\(percent) is below the \(e.progressPercent) reported before")])
            }
            e.progressPercent = percent
            e.progressNote = note
            e.progressAtMs = now
            p.lines[i].execution = e
            return p.lines[i]
        } then: { c, _ in
            // The answer to any open progress request covering the line.
            try Self.answerProgressRequests(c, plan: id, contractor: contractor, line: lineID, now: now)
        }
    }

    func submitAct(_ act: Report_CompletionAct, today: Int, now: Int64) async throws -> (Report_PlanLine, Report_Plan) {
        try await contractorWrite(contractor: act.contractorId, plan: act.planId) { p in
            let i = try Self.openLine(p, act.lineId, contractor: act.contractorId)
            let problems = PlanMachine.actProblems(act, line: p.lines[i], plan: p, today: today)
            guard problems.isEmpty else { throw ReportError.invalid("the completion act does not fit line \(act.lineId)", problems) }
            var e = p.lines[i].execution ?? Report_LineExecution()
            var a = act
            a.submittedAtMs = now
            e.act = a
            e.closed = true
            e.progressPercent = 100
            e.progressAtMs = now
            p.lines[i].execution = e
            return p.lines[i]
        }
    }

    /// Handed-over plans (optionally one contractor's), for execution control and plan figures.
    func handedOverPlans(contractor: String) async throws -> [Report_Plan] {
        try await db.read { c in
            if contractor.isEmpty {
                return try c.query("SELECT body FROM plans WHERE state = ? ORDER BY id", Report_PlanState.handedOver.rawValue) {
                    try ProtoCodec.decode(Report_Plan.self, from: $0.blob(0))
                }
            }
            return try c.query(
                "SELECT p.body FROM handovers h JOIN plans p ON p.id = h.plan_id WHERE h.contractor_id = ? ORDER BY p.id", contractor
            ) {
                try ProtoCodec.decode(Report_Plan.self, from: $0.blob(0))
            }
        }
    }
}

/// Work-plan updates for FollowWorkPlans streams, one per contractor (each sees its own view).
typealias PlanHub = Broadcast<Report_WorkPlanUpdate, String>

extension Broadcast where Element == Report_WorkPlanUpdate, Interest == String {
    convenience init() { self.init(buffering: 256) }

    /// `only`: the contractor whose view changed (a signature, progress or an act changes nobody
    /// else's lines); nil for a hand-over, which concerns every contractor of the plan.
    func publish(_ kind: String, _ plan: Report_Plan, only: String? = nil, progressRequest: Report_ProgressRequest? = nil) {
        publish { contractor in
            if let only, contractor != only { return nil }
            guard let view = PlanMachine.view(plan, for: contractor) else { return nil }
            var update = Report_WorkPlanUpdate()
            update.kind = kind
            update.plan = view
            if let progressRequest { update.progressRequest = progressRequest }
            return update
        }
    }

    func follow(_ contractor: String) -> AsyncStream<Report_WorkPlanUpdate> { subscribe(contractor) }
}

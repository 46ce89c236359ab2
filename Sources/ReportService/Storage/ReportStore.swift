import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// The report service's persistence: every SQL statement of the service is in this file.
final class ReportStore: Sendable {
    let db: Database

    static let migrations = [
        Migration(
            1, "report schema",
            """
            -- Lead events seen, by id: at-least-once delivery becomes exactly-once application.
            CREATE TABLE events_seen (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
            -- Per lead, what the figures need (see LeadLedger).
            CREATE TABLE leads (
                lead_id TEXT PRIMARY KEY,
                registration_number TEXT NOT NULL,
                received_at INTEGER NOT NULL,
                reply_deadline INTEGER NOT NULL,
                status TEXT NOT NULL,
                last_event_at INTEGER NOT NULL,
                source TEXT NOT NULL,
                channel TEXT NOT NULL,
                category TEXT NOT NULL,
                owner TEXT NOT NULL,
                fields TEXT NOT NULL,
                ever_accepted INTEGER NOT NULL,
                ever_processed INTEGER NOT NULL,
                reacted_at INTEGER,
                reactor TEXT NOT NULL,
                rating INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX leads_by_number ON leads(registration_number);
            -- Counters kept up to date by every event: reports sum these, never rescan leads.
            CREATE TABLE counters (
                dim TEXT NOT NULL,
                metric TEXT NOT NULL,
                key TEXT NOT NULL,
                day INTEGER NOT NULL,
                n INTEGER NOT NULL,
                PRIMARY KEY (dim, metric, key, day)
            ) WITHOUT ROWID;
            CREATE TABLE plans (
                id INTEGER PRIMARY KEY,
                state INTEGER NOT NULL,
                version INTEGER NOT NULL,
                body BLOB NOT NULL
            );
            -- Every content version of every plan.
            CREATE TABLE plan_versions (
                plan_id INTEGER NOT NULL REFERENCES plans(id),
                version INTEGER NOT NULL,
                body BLOB NOT NULL,
                PRIMARY KEY (plan_id, version)
            );
            -- Which contractor has lines in which handed-over plan.
            CREATE TABLE handovers (
                contractor_id TEXT NOT NULL,
                plan_id INTEGER NOT NULL REFERENCES plans(id),
                PRIMARY KEY (contractor_id, plan_id)
            ) WITHOUT ROWID;
            CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """)
    ]

    init(path: String, onCommit: (@Sendable (Int) -> Void)? = nil, integrityCheckSeconds: Double = 30) throws {
        var config = Database.Configuration(path: path)
        config.integrityCheckSeconds = integrityCheckSeconds
        config.onCommit = onCommit
        db = try Database(configuration: config, migrations: Self.migrations)
    }

    // MARK: Lead events

    struct Ingested: Sendable {
        var applied = 0
        var duplicates = 0
        var asOf: Int64 = 0
    }

    func ingest(_ events: [Report_LeadEvent]) async throws -> Ingested {
        try await db.write { c in
            var out = Ingested()
            var asOf = try Self.meta(c, "events_as_of")
            // A batch touches few distinct counters and often the same lead several times: both are
            // folded in memory and written once per batch (same transaction, same result).
            struct CounterKey: Hashable {
                var dim, metric, key: String
                var day: Int
            }
            var counters = [CounterKey: Int64]()
            var records = [String: (record: LeadRecord, number: String)]()
            var order = [String]()
            for e in events {
                guard try c.run("INSERT OR IGNORE INTO events_seen(event_id) VALUES (?)", e.eventId) == 1 else {
                    out.duplicates += 1
                    continue
                }
                let known = records[e.leadId]
                let old = try known?.record ?? Self.leadRecord(c, e.leadId)
                let (record, deltas) = LeadLedger.apply(e, to: old)
                if known == nil { order.append(e.leadId) }
                records[e.leadId] = (record, e.registrationNumber.isEmpty ? known?.number ?? "" : e.registrationNumber)
                for d in deltas { counters[CounterKey(dim: d.dim, metric: d.metric, key: d.key, day: d.day), default: 0] += d.delta }
                asOf = max(asOf, e.atMs)
                out.applied += 1
            }
            for id in order {
                let r = records[id]!
                try Self.save(c, r.record, registrationNumber: r.number)
            }
            for (k, n) in counters where n != 0 {
                try c.run(
                    "INSERT INTO counters(dim, metric, key, day, n) VALUES (?, ?, ?, ?, ?) ON CONFLICT(dim, metric, key, day) DO UPDATE SET n = n + excluded.n",
                    k.dim, k.metric, k.key, k.day, n)
            }
            try Self.setMeta(c, "events_as_of", asOf)
            out.asOf = asOf
            return out
        }
    }

    private static func meta(_ c: Connection, _ key: String) throws -> Int64 {
        try c.first("SELECT value FROM meta WHERE key = ?", key) { $0.int(0) } ?? 0
    }

    private static func setMeta(_ c: Connection, _ key: String, _ value: Int64) throws {
        try c.run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", key, value)
    }

    private static func leadRecord(_ c: Connection, _ id: String) throws -> LeadRecord? {
        try c.first(
            """
            SELECT received_at, reply_deadline, status, last_event_at, source, channel, category, owner, fields,
                   ever_accepted, ever_processed, reacted_at, reactor, rating FROM leads WHERE lead_id = ?
            """, id
        ) { row in
            var r = LeadRecord(leadID: id, receivedAt: row.int(0))
            r.replyDeadline = row.int(1)
            r.status = row.string(2)
            r.lastEventAt = row.int(3)
            r.source = row.string(4)
            r.channel = row.string(5)
            r.category = row.string(6)
            r.owner = row.string(7)
            for pair in row.string(8).split(separator: "\u{1E}") {
                let kv = pair.split(separator: "\u{1F}", maxSplits: 1, omittingEmptySubsequences: false)
                if kv.count == 2 { r.fields[String(kv[0])] = String(kv[1]) }
            }
            r.everAccepted = row.bool(9)
            r.everProcessed = row.bool(10)
            r.reactedAt = row.optionalInt(11)
            r.reactor = row.string(12)
            r.rating = Int32(row.int(13))
            return r
        }
    }

    private static func save(_ c: Connection, _ r: LeadRecord, registrationNumber: String) throws {
        let fields = r.fields.sorted { $0.key < $1.key }.map { "\($0.key)\u{1F}\($0.value)" }.joined(separator: "\u{1E}")
        try c.run(
            """
            INSERT INTO leads(lead_id, registration_number, received_at, reply_deadline, status, last_event_at, source, channel, category,
                              owner, fields, ever_accepted, ever_processed, reacted_at, reactor, rating)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(lead_id) DO UPDATE SET
                registration_number = CASE WHEN excluded.registration_number <> '' THEN excluded.registration_number ELSE registration_number END,
                received_at = excluded.received_at, reply_deadline = excluded.reply_deadline, status = excluded.status,
                last_event_at = excluded.last_event_at, source = excluded.source, channel = excluded.channel, category = excluded.category,
                owner = excluded.owner, fields = excluded.fields, ever_accepted = excluded.ever_accepted,
                ever_processed = excluded.ever_processed, reacted_at = excluded.reacted_at, reactor = excluded.reactor, rating = excluded.rating
            """,
            r.leadID, registrationNumber, r.receivedAt, r.replyDeadline, r.status, r.lastEventAt, r.source, r.channel, r.category,
            r.owner, fields, r.everAccepted, r.everProcessed, r.reactedAt, r.reactor, Int64(r.rating))
    }

    /// The status of a lead as the events told it, by registration number; nil if never heard of.
    func leadStatus(registrationNumber: String) async throws -> String? {
        try await db.read { c in
            try c.first("SELECT status FROM leads WHERE registration_number = ?", registrationNumber) { $0.string(0) }
        }
    }

    // MARK: Lead reports (read in one snapshot, with the instant they are consistent as of)

    struct CounterRows: Sendable {
        var asOf: Int64
        var rows: [(key: String, day: Int, metric: String, n: Int64)]
    }

    /// The counters of one dimension whose metric starts with any of `metricPrefixes`, all read in
    /// one snapshot, so a report combining several families is consistent as of one instant.
    func counters(dim: String, metricPrefixes: [String], fromDay: Int, toDay: Int) async throws -> CounterRows {
        try await db.read { c in
            let asOf = try Self.meta(c, "events_as_of")
            var rows = [(key: String, day: Int, metric: String, n: Int64)]()
            for prefix in metricPrefixes {
                rows += try c.query(
                    "SELECT key, day, metric, n FROM counters WHERE dim = ? AND metric >= ? AND metric < ? AND day BETWEEN ? AND ?",
                    dim, prefix, prefix + "\u{10FFFF}", fromDay, toDay
                ) { (key: $0.string(0), day: Int($0.int(1)), metric: $0.string(2), n: $0.int(3)) }
            }
            return CounterRows(asOf: asOf, rows: rows)
        }
    }

    // MARK: Plans

    static func planID(_ n: Int64) -> String { "plan-\(n)" }

    static func planNumber(_ id: String) -> Int64? {
        guard id.hasPrefix("plan-"), let n = Int64(id.dropFirst(5)), n > 0 else { return nil }
        return n
    }

    private static func plan(_ c: Connection, _ n: Int64) throws -> Report_Plan? {
        try c.first("SELECT body FROM plans WHERE id = ?", n) { try ProtoCodec.decode(Report_Plan.self, from: $0.blob(0)) }
    }

    private static func requirePlan(_ c: Connection, _ id: String) throws -> (Int64, Report_Plan) {
        guard let n = planNumber(id), let p = try plan(c, n) else { throw ReportError.notFound("no plan \(id)") }
        return (n, p)
    }

    /// New line ids ("line-N"), unique across plans.
    private static func assignLineIDs(_ c: Connection, _ lines: inout [Report_PlanLine]) throws {
        var seq = try meta(c, "line_seq")
        for i in lines.indices where lines[i].id.isEmpty {
            seq += 1
            lines[i].id = "line-\(seq)"
        }
        try setMeta(c, "line_seq", seq)
    }

    private static func step(
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

    private static func save(_ c: Connection, _ n: Int64, _ p: Report_Plan, newVersion: Bool) throws {
        let body = ProtoCodec.encode(p)
        try c.run("UPDATE plans SET state = ?, version = ?, body = ? WHERE id = ?", p.state.rawValue, p.version, body, n)
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
            let n = c.lastInsertRowID
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
    private func contractorWrite<T: Sendable>(
        contractor: String, plan id: String, _ body: @escaping @Sendable (inout Report_Plan) throws -> T
    ) async throws -> (T, Report_Plan) {
        try await db.write { c in
            guard let n = Self.planNumber(id), var p = try Self.plan(c, n), PlanMachine.view(p, for: contractor) != nil else {
                throw ReportError.notFound("no plan \(id) handed over to \(contractor)")
            }
            let result = try body(&p)
            try Self.save(c, n, p, newVersion: false)
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
    private static func openLine(_ p: Report_Plan, _ lineID: String, contractor: String) throws -> Int {
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
    func publish(_ kind: String, _ plan: Report_Plan, only: String? = nil) {
        publish { contractor in
            if let only, contractor != only { return nil }
            guard let view = PlanMachine.view(plan, for: contractor) else { return nil }
            var update = Report_WorkPlanUpdate()
            update.kind = kind
            update.plan = view
            return update
        }
    }

    func follow(_ contractor: String) -> AsyncStream<Report_WorkPlanUpdate> { subscribe(contractor) }
}

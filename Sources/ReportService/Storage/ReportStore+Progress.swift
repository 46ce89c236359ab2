import LeadwireAPI
import Messaging
import Store
import Wire

/// Execution control asking contractors for progress: the request is recorded with the message
/// to the contractor in one transaction, and cleared line by line by ReportProgress.
extension ReportStore {
    // MARK: Contractors

    func putContractor(_ c: Report_Contractor, now: Int64) async throws -> Report_Contractor {
        var out = c
        out.updatedAtMs = now
        let stored = out
        try await db.write { db in
            _ = try db.run(
                """
                INSERT INTO contractors(id, name, email, phone, locale, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET name = excluded.name, email = excluded.email, phone = excluded.phone,
                    locale = excluded.locale, updated_at = excluded.updated_at
                """, stored.id, stored.name, stored.email, stored.phone, stored.locale, now)
        }
        return out
    }

    static func contractor(_ db: Connection, _ id: String) throws -> Report_Contractor? {
        try db.first("SELECT id, name, email, phone, locale, updated_at FROM contractors WHERE id = ?", id) { r in
            var c = Report_Contractor()
            c.id = r.string(0)
            c.name = r.string(1)
            c.email = r.string(2)
            c.phone = r.string(3)
            c.locale = r.string(4)
            c.updatedAtMs = r.int(5)
            return c
        }
    }

    func contractor(_ id: String) async throws -> Report_Contractor? {
        try await db.read { db in try Self.contractor(db, id) }
    }

    // MARK: Progress requests

    static func requestID(_ n: Int64) -> String { "preq-\(n)" }

    /// Records the request and queues the contractor's e-mail. Lines: the given ones (each must be
    /// the contractor's and open), or all the contractor's open lines in the plan.
    func requestProgress(
        plan id: String, contractor: String, lines wanted: [String], dueDate: String, note: String, actor: String, now: Int64
    ) async throws -> (Report_ProgressRequest, Report_Plan) {
        try await db.write { db in
            guard let n = Self.planNumber(id), let p = try Self.plan(db, n) else { throw ReportError.notFound("no plan \(id)") }
            guard p.state == .handedOver else {
                throw ReportError.wrongState(plan: id, state: p.state, action: "a progress request", allowedIn: [.handedOver])
            }
            let open = p.lines.filter { $0.contractorId == contractor && $0.execution?.closed != true }
            var lines = [Report_PlanLine]()
            if wanted.isEmpty {
                lines = open
            } else {
                var problems = [RPCError.FieldViolation]()
                for (i, lineID) in wanted.enumerated() {
                    if let l = open.first(where: { $0.id == lineID }) {
                        if !lines.contains(where: { $0.id == lineID }) { lines.append(l) }
                    } else {
                        problems.append(
                            .init(field: "line_ids[\(i)]", description: "plan \(id) has no open line \(lineID) of \(contractor)"))
                    }
                }
                guard problems.isEmpty else { throw ReportError.invalid("cannot ask for progress on these lines", problems) }
            }
            guard !lines.isEmpty else {
                throw ReportError.precondition(
                    type: "NO_OPEN_LINES", subject: "plan:\(id)", message: "plan \(id) has no open lines of \(contractor) to ask about")
            }
            let row = (try db.first("SELECT COALESCE(MAX(id), 0) + 1 FROM progress_requests") { $0.int(0) }) ?? 1
            var r = Report_ProgressRequest()
            r.id = Self.requestID(row)
            r.planId = id
            r.contractorId = contractor
            r.lineIds = lines.map(\.id)
            r.dueDate = dueDate
            r.note = note
            r.requestedBy = actor
            r.requestedAtMs = now
            _ = try db.run(
                "INSERT INTO progress_requests(id, plan_id, contractor_id, body) VALUES (?, ?, ?, ?)", row, id, contractor,
                ProtoCodec.encode(r))
            try self.tellContractor(db, r, plan: p, lines: lines, now: now)
            return (r, p)
        }
    }

    private func tellContractor(_ db: Connection, _ r: Report_ProgressRequest, plan: Report_Plan, lines: [Report_PlanLine], now: Int64)
        throws
    {
        let who = try Self.contractor(db, r.contractorId) ?? Report_Contractor()
        let locale = MessageLocale(code: who.locale) ?? messages.defaultLocale
        let listed = lines.map { l in
            var s = "— \(l.id): \(l.objectAddress) — \(l.workKind), \(l.volume) \(l.unit)"
            if !l.deadline.isEmpty {
                s += locale == .ru ? " (срок: \(locale.date(iso: l.deadline)))" : " (due \(locale.date(iso: l.deadline)))"
            }
            if let e = l.execution, e.progressPercent > 0 {
                s += locale == .ru ? ", сейчас \(e.progressPercent)%" : ", now \(e.progressPercent)%"
            }
            return s
        }
        let title = plan.title.trimmingSpaces
        var m = OutgoingMessage(
            kind: .progressRequested, locale: locale, recipientName: who.name.isEmpty ? r.contractorId : who.name,
            values: [
                "plan": title.isEmpty ? plan.id : (locale == .ru ? "\(plan.id) «\(title)»" : "\(plan.id) \"\(title)\""),
                "lines": listed.joined(separator: "\n"), "due_date": locale.date(iso: r.dueDate), "note": r.note,
                "requested_by": r.requestedBy,
            ])
        m.email = who.email
        m.phone = who.phone
        m.planID = r.planId
        m.contractorID = r.contractorId
        m.scopes = ["contractor:\(r.contractorId)"]
        try messages.enqueue(db, m, now: now)
    }

    /// ReportProgress on a line answers it in every open request that lists it; a request with
    /// every line answered is cleared.
    static func answerProgressRequests(_ db: Connection, plan: String, contractor: String, line: String, now: Int64) throws {
        let open = try db.query(
            "SELECT id, body FROM progress_requests WHERE contractor_id = ? AND plan_id = ? AND answered_at = 0", contractor, plan
        ) { ($0.int(0), try ProtoCodec.decode(Report_ProgressRequest.self, from: $0.blob(1))) }
        for (row, var r) in open where r.lineIds.contains(line) && !r.answeredLineIds.contains(line) {
            r.answeredLineIds.append(line)
            let done = Set(r.answeredLineIds).isSuperset(of: r.lineIds)
            if done { r.answeredAtMs = now }
            _ = try db.run(
                "UPDATE progress_requests SET body = ?, answered_at = ? WHERE id = ?", ProtoCodec.encode(r), done ? now : 0, row)
        }
    }

    /// Requests not yet answered on every line (one contractor's, or all), oldest first, with
    /// `overdue` set past their due date.
    func openProgressRequests(contractor: String, today: Int) async throws -> [Report_ProgressRequest] {
        try await db.read { db in
            let decode: (Row) throws -> Report_ProgressRequest = { try ProtoCodec.decode(Report_ProgressRequest.self, from: $0.blob(0)) }
            var rows =
                contractor.isEmpty
                ? try db.query("SELECT body FROM progress_requests WHERE answered_at = 0 ORDER BY id", map: decode)
                : try db.query(
                    "SELECT body FROM progress_requests WHERE answered_at = 0 AND contractor_id = ? ORDER BY id", contractor, map: decode)
            for i in rows.indices {
                if let due = CalendarDate.dayNumber(rows[i].dueDate), today > due { rows[i].overdue = true }
            }
            return rows
        }
    }
}

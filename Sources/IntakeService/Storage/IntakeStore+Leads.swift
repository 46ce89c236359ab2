import Catalog
import LeadwireAPI
import Messaging
import NIOConcurrencyHelpers
import Store
import Wire

/// Leads: registration (with the client match and the outbox messages it owes), reads, the
/// lifecycle's transitions, ratings and comments.
extension IntakeStore {
    // MARK: Leads

    struct Submitted: Sendable {
        var lead: Intake_Lead
        /// `lead` as stored: SubmitLead answers these bytes rather than encoding the lead again.
        var stored: EncodedMessage<Intake_Lead>
        var duplicate: Bool
        /// The routing request written to the outbox with a new lead (nil for a duplicate, or
        /// without routing): SubmitLead sends it at once, the relay if that fails.
        var route: Routing_RouteLeadRequest? = nil
    }

    /// Registers a validated lead in one transaction: idempotency check, client match or creation,
    /// registration number, the lead, its history entry, the reply to the applicant and the lead
    /// event in the outbox. `canonical` is the caller's request as sent, given with an idempotency key.
    ///
    /// What does not need the database (the lead's fields, the client's keys, the reply) is made
    /// first, on the caller's task: the one writer thread is what bounds leads per second.
    func submit(_ req: Intake_SubmitLeadRequest, canonical: [UInt8]?, source: Intake_Source, actor: String, now: Int64) async throws
        -> Submitted
    {
        let key = req.idempotencyKey.trimmingSpaces
        let applicant = ApplicantKeys(req.applicant ?? Intake_Applicant())
        let draft = Self.draft(req, source: source, idempotencyKey: key, routed: routing, now: now)
        let reply = applicantMessage(.leadRegistered, draft, source: source)
        return try await db.write { db in
            if !key.isEmpty {
                let existing = try db.first("SELECT request, body FROM leads WHERE idempotency_key = ?", key) { ($0.blob(0), $0.blob(1)) }
                if let (request, body) = existing {
                    let lead = try ProtoCodec.decode(Intake_Lead.self, from: body)
                    guard request == canonical else {
                        throw IntakeError.idempotencyConflict(key: key, registrationNumber: lead.registrationNumber)
                    }
                    return Submitted(lead: lead, stored: EncodedMessage(bytes: body), duplicate: true)
                }
            }
            let clientID = try Self.matchOrCreateClient(db, applicant, now: now)
            let year = CalendarDate.year(ofMillis: now)
            // Two statements, not one with RETURNING: SQLite runs RETURNING through a temporary
            // table, which measured 3–8 µs more per lead than the second SELECT.
            try db.run(
                "INSERT INTO registration_counters(year, last) VALUES (?, 1) ON CONFLICT(year) DO UPDATE SET last = registration_counters.last + 1",
                year)
            let seq = try db.first("SELECT last FROM registration_counters WHERE year = ?", year) { $0.int(0) } ?? 1
            // One writer: the next id is known before the insert, so the row is written once, with
            // its own id inside the stored message.
            let rowID = try Self.nextID(db, .leads)
            var lead = draft
            lead.id = Self.leadID(rowID)
            lead.registrationNumber = RegistrationNumber.format(year: year, sequence: seq)
            lead.clientId = Self.clientID(clientID)
            if lead.orderLines.contains(where: { !$0.itemId.isEmpty }) {
                try Self.fillFromCatalogue(db, &lead.orderLines)
                lead.orderTotal = LeadValidation.orderTotal(lead.orderLines)
            }
            let body = ProtoCodec.encode(lead)
            try db.run(
                literal: """
                    INSERT INTO leads(id, registration_number, source_id, client_id, status, owner_id, received_at, idempotency_key, request, body)
                    VALUES (\(rowID), \(lead.registrationNumber), \(Self.number(source.id, prefix: "src")), \(clientID),
                        \(Int64(lead.status.rawValue)), '', \(now), \(key.isEmpty ? nil : key), \(key.isEmpty ? nil : canonical), \(body))
                    """)
            try Self.appendHistory(
                db, rowID, actor: actor, action: "registered", from: .unspecified, to: .new, note: "source \(source.name)", now: now)
            // The acknowledgement the applicant is owed: number and answer date.
            var message = reply
            message.leadID = lead.id
            message.registrationNumber = lead.registrationNumber
            try self.messages.enqueue(db, message, now: now)
            try Self.appendEvent(db, rowID, kind: .registered, lead: lead, now: now)
            var route: Routing_RouteLeadRequest?
            if self.routing {
                var r = Routing_RouteLeadRequest()
                r.lead = Bridge.summary(lead, source: source)
                r.actor = "intake-service"
                try db.run(
                    "INSERT INTO outbox(kind, lead_id, payload, created_at) VALUES ('route', ?, ?, ?)", rowID, ProtoCodec.encode(r), now)
                route = r
            }
            return Submitted(lead: lead, stored: EncodedMessage(bytes: body), duplicate: false, route: route)
        }
    }

    /// A new lead as the request makes it: everything but what its transaction assigns (id,
    /// registration number, client) and what catalogue items fill in.
    static func draft(_ req: Intake_SubmitLeadRequest, source: Intake_Source, idempotencyKey: String, routed: Bool, now: Int64)
        -> Intake_Lead
    {
        var lead = Intake_Lead()
        lead.sourceId = source.id
        lead.channel = source.channel
        lead.channelDetails = req.channelDetails
        lead.applicant = req.applicant
        lead.subject = req.subject
        lead.description = req.description
        lead.category = req.category.trimmingSpaces
        lead.orderLines = req.orderLines
        lead.orderTotal = LeadValidation.orderTotal(lead.orderLines)
        lead.fields = req.fields
        lead.idempotencyKey = idempotencyKey
        lead.status = .new
        lead.receivedAtMs = now
        lead.replyDueAtMs = now + Int64(source.replyDays > 0 ? source.replyDays : 5) * 86_400_000
        lead.updatedAtMs = now
        if routed { lead.routing = .pending }
        return lead
    }

    /// Order lines naming catalogue items: the item must exist; an empty product code, name or
    /// price is taken from it, and the line's total computed again.
    static func fillFromCatalogue(_ db: Connection, _ lines: inout [Intake_OrderLine]) throws {
        var missing = [RPCError.FieldViolation]()
        for i in lines.indices where !lines[i].itemId.isEmpty {
            guard let n = CatalogStore.itemNumber(lines[i].itemId), let item = try CatalogStore.item(db, id: n) else {
                missing.append(.init(field: "order_lines[\(i)].item_id", description: "no catalogue item \(Clip.value(lines[i].itemId))"))
                continue
            }
            if lines[i].productCode.trimmingSpaces.isEmpty && !item.keyedByName { lines[i].productCode = item.sku }
            if lines[i].productName.trimmingSpaces.isEmpty { lines[i].productName = item.name }
            if lines[i].price.isEmpty {
                lines[i].price = item.price
                let q = FixedPoint.parse(lines[i].quantity, places: 3) ?? 0
                let p = FixedPoint.parse(item.price, places: 2) ?? 0
                lines[i].total = FixedPoint.format(FixedPoint.lineTotal(quantityMilli: q, priceCents: p) ?? 0, places: 2)
            }
        }
        if !missing.isEmpty { throw IntakeError.missingReferences("order lines name catalogue items that do not exist", missing) }
    }

    /// E-mail, else phone, else tax id; a first-time client is created from the applicant.
    static func matchOrCreateClient(_ db: Connection, _ a: ApplicantKeys, now: Int64) throws -> Int64 {
        var found: Int64? = nil
        if let email = a.email,
            let id = try db.first("SELECT id FROM clients WHERE email = ? ORDER BY id LIMIT 1", email, map: { $0.int(0) })
        {
            found = id
        } else if let phone = a.phone,
            let id = try db.first("SELECT id FROM clients WHERE phone = ? ORDER BY id LIMIT 1", phone, map: { $0.int(0) })
        {
            found = id
        } else if let tax = a.taxID,
            let id = try db.first("SELECT id FROM clients WHERE tax_id = ? ORDER BY id LIMIT 1", tax, map: { $0.int(0) })
        {
            found = id
        }
        if let found {
            // The card learns an address it did not have (for documents); it never loses one.
            if !a.address.isEmpty { try db.run(literal: "UPDATE clients SET address = \(a.address) WHERE id = \(found) AND address = ''") }
            return found
        }
        return try db.insertReturningID(
            literal: """
                INSERT INTO clients(name, email, phone, company, tax_id, address, created_at)
                VALUES (\(a.name), \(a.email), \(a.phone), \(a.company), \(a.taxID), \(a.address), \(now))
                """)
    }

    /// The id the next row of `table` gets; valid because write transactions take turns (one writer
    /// per process, and replicas on PostgreSQL wait for each other: see `Database`).
    static func nextID(_ db: Connection, _ table: RowTable) throws -> Int64 {
        try db.first(table.nextIDQuery) { $0.int(0) } ?? 1
    }

    /// The tables whose next row id is taken before the insert, each with its query written out
    /// (not interpolated on every lead).
    enum RowTable {
        case leads, comments

        var nextIDQuery: String {
            switch self {
            case .leads: "SELECT COALESCE(MAX(id), 0) + 1 FROM leads"
            case .comments: "SELECT COALESCE(MAX(id), 0) + 1 FROM comments"
            }
        }
    }

    static func appendHistory(
        _ db: Connection, _ leadRow: Int64, actor: String, action: String, from: Intake_LeadStatus, to: Intake_LeadStatus, note: String,
        now: Int64
    ) throws {
        var h = Intake_HistoryEntry()
        h.atMs = now
        h.actor = actor.isEmpty ? "unknown" : actor
        h.action = action
        h.fromStatus = from
        h.toStatus = to
        h.note = note
        try db.run("INSERT INTO lead_history(lead_id, body) VALUES (?, ?)", leadRow, ProtoCodec.encode(h))
    }

    static func appendEvent(
        _ db: Connection, _ leadRow: Int64, kind: LeadEventKind, lead: Intake_Lead, now: Int64, publicComment: Bool = false
    ) throws {
        var e = Intake_LeadChange()
        e.kind = kind.rawValue
        e.lead = Bridge.eventView(lead)
        e.atMs = now
        e.publicComment = publicComment
        try db.run("INSERT INTO outbox(kind, lead_id, payload, created_at) VALUES ('event', ?, ?, ?)", leadRow, ProtoCodec.encode(e), now)
    }

    /// A lead named the way people and programs name it: its id (`lead-17`) or the registration
    /// number the applicant was told (`L-2026-000017`, any case, surrounding spaces ignored).
    static func leadRecord(_ db: Connection, _ reference: String) throws -> (row: Int64, lead: Intake_Lead)? {
        let decode: (Row) throws -> (Int64, Intake_Lead) = { ($0.int(0), try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(1))) }
        if let n = Self.number(reference, prefix: "lead") {
            return try db.first("SELECT id, body FROM leads WHERE id = ?", n, map: decode)
        }
        let number = reference.trimmingSpaces.uppercased()
        guard number.hasPrefix("L-") else { return nil }
        return try db.first("SELECT id, body FROM leads WHERE registration_number = ?", number, map: decode)
    }

    static func noLead(_ reference: String) -> IntakeError {
        .notFound("no lead with id or registration number \"\(Clip.value(reference))\"")
    }

    func lead(_ id: String) async throws -> Intake_LeadDetails? {
        try await db.read { db in
            guard let (n, lead) = try Self.leadRecord(db, id) else { return nil }
            var d = Intake_LeadDetails()
            d.lead = lead
            d.comments = try db.query("SELECT body FROM comments WHERE lead_id = ? ORDER BY id", n) {
                try ProtoCodec.decode(Intake_Comment.self, from: $0.blob(0))
            }
            d.history = try db.query("SELECT body FROM lead_history WHERE lead_id = ? ORDER BY id", n) {
                try ProtoCodec.decode(Intake_HistoryEntry.self, from: $0.blob(0))
            }
            return d
        }
    }

    func lead(registrationNumber: String) async throws -> (Intake_Lead, [Intake_Comment])? {
        try await db.read { db in
            guard
                let (row, lead) = try db.first(
                    "SELECT id, body FROM leads WHERE registration_number = ?", registrationNumber.uppercased(),
                    map: { ($0.int(0), try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(1))) })
            else { return nil }
            let comments = try db.query("SELECT body FROM comments WHERE lead_id = ? AND public = 1 ORDER BY id", row) {
                try ProtoCodec.decode(Intake_Comment.self, from: $0.blob(0))
            }
            return (lead, comments)
        }
    }

    struct LeadFilter: Sendable {
        var status: Intake_LeadStatus = .unspecified
        var sourceRow: Int64?
        var ownerID = ""
        var clientRow: Int64?
        var receivedFrom: Int64 = 0
        var receivedTo: Int64 = 0
    }

    /// Newest first. The cursor is the (received_at, id) of the last lead of the previous page.
    func leads(_ f: LeadFilter, limit: Int, after cursor: (Int64, Int64)?) async throws -> [Intake_Lead] {
        var conditions = [String]()
        var values = [SQLValue]()
        if f.status != .unspecified {
            conditions.append("status = ?")
            values.append(.integer(Int64(f.status.rawValue)))
        }
        if let s = f.sourceRow {
            conditions.append("source_id = ?")
            values.append(.integer(s))
        }
        if !f.ownerID.isEmpty {
            conditions.append("owner_id = ?")
            values.append(.text(f.ownerID))
        }
        if let c = f.clientRow {
            conditions.append("client_id = ?")
            values.append(.integer(c))
        }
        if f.receivedFrom > 0 {
            conditions.append("received_at >= ?")
            values.append(.integer(f.receivedFrom))
        }
        if f.receivedTo > 0 {
            conditions.append("received_at < ?")
            values.append(.integer(f.receivedTo))
        }
        if let (at, id) = cursor {
            conditions.append("(received_at, id) < (?, ?)")
            values += [.integer(at), .integer(id)]
        }
        let sql =
            "SELECT body FROM leads" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY received_at DESC, id DESC LIMIT ?"
        values.append(.integer(Int64(limit)))
        let v = values
        return try await db.read { db in try db.query(sql, values: v) { try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(0)) } }
    }

    /// Applies a lifecycle action in one transaction (state check, debt check, history, event).
    func transition(_ id: String, _ action: LeadLifecycle.Action, actor: String, stockOverride: String = "", now: Int64) async throws
        -> Intake_Lead
    {
        try await db.write { db in
            guard let (n, stored) = try Self.leadRecord(db, id) else { throw Self.noLead(id) }
            var lead = stored
            let from = lead.status
            let to = try LeadLifecycle.next(from: from, action, lead: lead.registrationNumber).get()
            // Read once: acceptance needs its due days, every message its locale and template scope.
            let source = try Self.sourceDefinition(db, lead.sourceId)
            var note = ""
            switch action {
            case .accept:
                if let c = Self.number(lead.clientId, prefix: "client"),
                    let debt = try db.first("SELECT debt_cents FROM clients WHERE id = ?", c, map: { $0.int(0) }), debt > 0
                {
                    throw IntakeError.clientHasDebt(clientID: lead.clientId, debt: FixedPoint.format(debt, places: 2))
                }
                let short = try CatalogStock.reserve(
                    db, lead: n, registrationNumber: lead.registrationNumber, lines: CatalogStock.lines(of: lead.orderLines),
                    override: !stockOverride.isEmpty, now: now)
                if !short.isEmpty {
                    note =
                        "accepted short of stock (\(short.map { "\($0.sku): needs \($0.needed), available \($0.available)" }.joined(separator: "; ")));"
                        + " reason: \(stockOverride)"
                }
                let dueDays = source?.dueDays ?? 0
                lead.dueAtMs = now + Int64(dueDays > 0 ? dueDays : 14) * 86_400_000
            case .defer(let reason, let date):
                lead.deferReason = reason
                lead.revisitDate = date
                note = "\(reason) (revisit \(date))"
            case .reject(let reason):
                lead.rejectReason = reason
                note = reason
            case .complete(let outcome, let reference):
                lead.outcome = outcome
                lead.outcomeReference = reference
                note = reference
            }
            // Stock held since acceptance: consumed when the work is done, given back otherwise.
            if from == .accepted {
                if to == .processed { try CatalogStock.consume(db, lead: n) } else { try CatalogStock.release(db, lead: n) }
            }
            lead.status = to
            lead.updatedAtMs = now
            try db.run("UPDATE leads SET status = ?, body = ? WHERE id = ?", Int64(to.rawValue), ProtoCodec.encode(lead), n)
            try Self.appendHistory(db, n, actor: actor, action: LeadLifecycle.name(to), from: from, to: to, note: note, now: now)
            try Self.appendEvent(db, n, kind: LeadEventKind(status: to), lead: lead, now: now)
            let locale = self.locale(of: source)
            switch action {
            case .accept: try self.tellApplicant(db, .leadAccepted, lead, source: source, now: now)
            case .defer(let reason, let date):
                try self.tellApplicant(
                    db, .leadDeferred, lead, source: source, extra: ["reason": reason, "revisit_date": locale.date(iso: date)], now: now)
            case .reject(let reason): try self.tellApplicant(db, .leadRejected, lead, source: source, extra: ["reason": reason], now: now)
            case .complete: try self.tellApplicant(db, .leadProcessed, lead, source: source, now: now)
            }
            if self.routing {
                // Routing stops the escalation clock at the first decision, and frees the person's
                // capacity when the lead is finished.
                if from == .new {
                    var d = Routing_MarkDecidedRequest()
                    d.leadId = lead.id
                    d.actor = actor
                    try db.run(
                        "INSERT INTO outbox(kind, lead_id, payload, created_at) VALUES ('decided', ?, ?, ?)", n, ProtoCodec.encode(d), now)
                }
                if to == .rejected || to == .processed {
                    var r = Routing_ReleaseRequest()
                    r.leadId = lead.id
                    r.actor = actor
                    r.note = LeadLifecycle.name(to)
                    try db.run(
                        "INSERT INTO outbox(kind, lead_id, payload, created_at) VALUES ('release', ?, ?, ?)", n, ProtoCodec.encode(r), now)
                }
            }
            return lead
        }
    }

    /// A new lead that needs an inspection before its decision: it stays new, its answer date
    /// moves to the end of `answerBy` (UTC), and the applicant is told.
    func requireInspection(_ id: String, answerBy: String, note: String, actor: String, now: Int64) async throws -> Intake_Lead {
        try await db.write { db in
            guard let (n, stored) = try Self.leadRecord(db, id) else { throw Self.noLead(id) }
            var lead = stored
            guard lead.status == .new else {
                throw IntakeError.illegalTransition(
                    lead: lead.registrationNumber, current: lead.status, action: "an inspection request", allowedFrom: [.new])
            }
            guard let d = CalendarDate.parse(answerBy) else {
                throw IntakeError.invalid("bad date", [.init(field: "answer_by", description: "YYYY-MM-DD")])
            }
            lead.replyDueAtMs = Int64(CalendarDate.dayNumber(d.year, d.month, d.day) + 1) * 86_400_000 - 1
            lead.updatedAtMs = now
            try db.run("UPDATE leads SET body = ? WHERE id = ?", ProtoCodec.encode(lead), n)
            try Self.appendHistory(
                db, n, actor: actor, action: "inspection", from: lead.status, to: lead.status,
                note: "answer by \(answerBy)" + (note.isEmpty ? "" : ": \(note)"), now: now)
            try self.tellApplicant(db, .inspectionNeeded, lead, extra: ["note": note], now: now)
            return lead
        }
    }

    /// The applicant's rating, once the lead has a decision.
    func rate(_ id: String, rating: Int32, actor: String, now: Int64) async throws -> Intake_Lead {
        try await db.write { db in
            guard let (n, stored) = try Self.leadRecord(db, id) else { throw Self.noLead(id) }
            var lead = stored
            guard lead.status != .new else {
                throw IntakeError.illegalTransition(
                    lead: lead.registrationNumber, current: .new, action: "rating",
                    allowedFrom: [.accepted, .deferred, .rejected, .processed])
            }
            lead.rating = rating
            lead.updatedAtMs = now
            try db.run("UPDATE leads SET body = ? WHERE id = ?", ProtoCodec.encode(lead), n)
            try Self.appendHistory(
                db, n, actor: actor, action: "rated", from: lead.status, to: lead.status, note: "\(rating) of 5", now: now)
            try Self.appendEvent(db, n, kind: .rated, lead: lead, now: now)
            return lead
        }
    }

    /// Stores a comment and queues what it owes: the applicant hears of a public one (unless it is
    /// their own answer), mentioned people and the owner of someone else's.
    func addComment(_ c: Intake_Comment, authorPersonID: String = "", fromApplicant: Bool = false, now: Int64) async throws -> (
        Intake_Comment, Intake_Lead
    ) {
        try await db.write { db in
            guard let (n, lead) = try Self.leadRecord(db, c.leadId) else { throw Self.noLead(c.leadId) }
            var comment = c
            comment.leadId = lead.id
            comment.createdAtMs = now
            let row = try Self.nextID(db, .comments)
            comment.id = Self.commentID(row)
            try db.run("INSERT INTO comments(id, lead_id, public, body) VALUES (?, ?, ?, ?)", row, n, c.public, ProtoCodec.encode(comment))
            try Self.appendHistory(
                db, n, actor: c.author, action: "commented", from: lead.status, to: lead.status, note: c.public ? "public" : "private",
                now: now)
            try Self.appendEvent(db, n, kind: .commented, lead: lead, now: now, publicComment: c.public)
            try self.tellOfComment(db, comment, lead, authorPersonID: authorPersonID, fromApplicant: fromApplicant, now: now)
            return (comment, lead)
        }
    }
}

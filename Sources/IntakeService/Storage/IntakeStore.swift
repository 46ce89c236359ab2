import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// Intake's persistence: every SQL statement of the service is in this file. Rows keep indexed
/// columns for queries plus the message itself (protobuf) as the record.
final class IntakeStore: Sendable {
    let db: Database
    /// Sources by id, as last committed: read on every submit, changed rarely (always through this
    /// store, which updates the cache after the commit).
    private let sourceCache = NIOLockedValueBox<[String: Intake_Source]>([:])

    static let migrations = [
        Migration(
            1, "intake schema",
            """
            CREATE TABLE sources (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                mailbox TEXT,
                enabled INTEGER NOT NULL,
                definition BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );
            CREATE UNIQUE INDEX sources_by_mailbox ON sources(mailbox) WHERE mailbox IS NOT NULL AND mailbox <> '';
            CREATE TABLE clients (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT,
                phone TEXT,
                company TEXT NOT NULL DEFAULT '',
                tax_id TEXT,
                debt_cents INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL
            );
            CREATE INDEX clients_by_email ON clients(email);
            CREATE INDEX clients_by_phone ON clients(phone);
            CREATE INDEX clients_by_tax_id ON clients(tax_id);
            CREATE TABLE registration_counters (year INTEGER PRIMARY KEY, last INTEGER NOT NULL);
            CREATE TABLE leads (
                id INTEGER PRIMARY KEY,
                registration_number TEXT NOT NULL UNIQUE,
                source_id INTEGER NOT NULL REFERENCES sources(id),
                client_id INTEGER REFERENCES clients(id),
                status INTEGER NOT NULL,
                owner_id TEXT NOT NULL DEFAULT '',
                received_at INTEGER NOT NULL,
                idempotency_key TEXT UNIQUE,
                request BLOB,
                body BLOB NOT NULL
            );
            CREATE INDEX leads_by_received ON leads(received_at, id);
            CREATE INDEX leads_by_status ON leads(status, received_at, id);
            CREATE INDEX leads_by_source ON leads(source_id, received_at, id);
            CREATE INDEX leads_by_owner ON leads(owner_id, received_at, id);
            CREATE INDEX leads_by_client ON leads(client_id, received_at, id);
            CREATE TABLE comments (
                id INTEGER PRIMARY KEY,
                lead_id INTEGER NOT NULL REFERENCES leads(id),
                public INTEGER NOT NULL,
                body BLOB NOT NULL
            );
            CREATE INDEX comments_by_lead ON comments(lead_id, id);
            CREATE TABLE lead_history (
                id INTEGER PRIMARY KEY,
                lead_id INTEGER NOT NULL REFERENCES leads(id),
                body BLOB NOT NULL
            );
            CREATE INDEX history_by_lead ON lead_history(lead_id, id);
            -- Messages to deliver later, written in the same transaction as the change: replies to
            -- applicants ('reply') and lead events for the report service ('event').
            CREATE TABLE outbox (
                id INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                lead_id INTEGER,
                payload BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                delivered_at INTEGER
            );
            CREATE INDEX outbox_pending ON outbox(kind, id) WHERE delivered_at IS NULL;
            """),
        Migration(
            2, "outbox delivery to routing and report",
            """
            -- Why a message was given up (the receiver refused it as invalid); delivered_at is set too.
            ALTER TABLE outbox ADD COLUMN failure TEXT;
            CREATE INDEX outbox_delivered ON outbox(delivered_at) WHERE delivered_at IS NOT NULL;
            """),
        Migration(
            3, "leads waiting in a routing queue",
            """
            ALTER TABLE leads ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
            CREATE INDEX leads_queued ON leads(id) WHERE queued = 1;
            """),
        Migration(
            4, "clients' phones in E.164; duplicates found are listed, never merged",
            """
            CREATE TABLE store_tasks (name TEXT PRIMARY KEY, done_at INTEGER NOT NULL);
            CREATE TABLE client_duplicates (
                client_id INTEGER NOT NULL, same_phone_as INTEGER NOT NULL, phone TEXT NOT NULL, found_at INTEGER NOT NULL,
                PRIMARY KEY (client_id, same_phone_as)
            );
            """),
        Migration(
            5, "the intake-wide switch",
            """
            CREATE TABLE intake_settings (
                id INTEGER PRIMARY KEY CHECK (id = 1), open INTEGER NOT NULL, reason TEXT NOT NULL, changed_by TEXT NOT NULL, changed_at INTEGER NOT NULL
            );
            INSERT INTO intake_settings VALUES (1, 1, '', '', 0);
            """),
        Migration(
            6, "following routing's owner changes",
            """
            -- How far each feed from another service has been applied (routing's owner changes).
            CREATE TABLE feed_cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
            """),
    ]

    func intakeSettings() async throws -> Intake_IntakeSettings {
        try await db.read { db in
            try db.first("SELECT open, reason, changed_by, changed_at FROM intake_settings WHERE id = 1") { r in
                var s = Intake_IntakeSettings()
                s.open = r.int(0) != 0
                s.reason = r.string(1)
                s.changedBy = r.string(2)
                s.changedAtMs = r.int(3)
                return s
            } ?? Intake_IntakeSettings()
        }
    }

    func setIntakeOpen(_ open: Bool, reason: String, actor: String, now: Int64) async throws -> Intake_IntakeSettings {
        try await db.write { db in
            try db.run(
                "UPDATE intake_settings SET open = ?, reason = ?, changed_by = ?, changed_at = ? WHERE id = 1", open ? 1 : 0, reason, actor,
                now)
        }
        var s = Intake_IntakeSettings()
        s.open = open
        s.reason = reason
        s.changedBy = actor
        s.changedAtMs = now
        return s
    }

    /// Once per database: rewrites every client's phone in E.164 (as new leads are stored since
    /// migration 4). Two clients that turn out to share a number are listed in `client_duplicates`
    /// and returned, not merged: which one is right is for a person to decide.
    func normalisePhones(country: PhoneCountry, now: Int64) async throws -> [(client: String, sameAs: String, phone: String)] {
        try await db.write { db in
            if try db.first("SELECT 1 FROM store_tasks WHERE name = 'phones-e164'", map: { _ in true }) != nil { return [] }
            let rows = try db.query("SELECT id, phone FROM clients WHERE phone IS NOT NULL AND phone != '' ORDER BY id") {
                ($0.int(0), $0.string(1))
            }
            var firstWith = [String: Int64]()
            var found = [(client: String, sameAs: String, phone: String)]()
            for (id, phone) in rows {
                guard case .success(let e164) = Phone.normalize(phone, country: country) else { continue }
                if e164 != phone { try db.run("UPDATE clients SET phone = ? WHERE id = ?", e164, id) }
                if let first = firstWith[e164] {
                    try db.run(
                        "INSERT OR IGNORE INTO client_duplicates(client_id, same_phone_as, phone, found_at) VALUES (?, ?, ?, ?)", id, first,
                        e164, now)
                    found.append((Self.clientID(id), Self.clientID(first), e164))
                } else {
                    firstWith[e164] = id
                }
            }
            try db.run("INSERT INTO store_tasks(name, done_at) VALUES ('phones-e164', ?)", now)
            return found
        }
    }

    /// Whether leads go to the routing service (through the outbox): set when one is configured.
    let routing: Bool

    init(path: String, routing: Bool = false, onCommit: (@Sendable (Int) -> Void)? = nil, integrityCheckSeconds: Double = 30) throws {
        var config = Database.Configuration(path: path)
        config.integrityCheckSeconds = integrityCheckSeconds
        config.onCommit = onCommit
        self.routing = routing
        db = try Database(configuration: config, migrations: Self.migrations)
    }

    // MARK: Ids: prefixed, so a lead id is never taken for a source id by mistake.

    static func sourceID(_ n: Int64) -> String { "src-\(n)" }
    static func leadID(_ n: Int64) -> String { "lead-\(n)" }
    static func clientID(_ n: Int64) -> String { "client-\(n)" }
    static func commentID(_ n: Int64) -> String { "comment-\(n)" }

    static func number(_ id: String, prefix: String) -> Int64? {
        guard id.hasPrefix(prefix + "-"), let n = Int64(id.dropFirst(prefix.count + 1)), n > 0 else { return nil }
        return n
    }

    // MARK: Sources

    func createSource(_ source: Intake_Source, now: Int64) async throws -> Intake_Source {
        try await db.write { db in
            var s = source
            s.createdAtMs = now
            s.updatedAtMs = now
            do {
                try db.run(
                    "INSERT INTO sources(name, mailbox, enabled, definition, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    s.name, s.mailbox.isEmpty ? nil : ClientKeys.email(s.mailbox), s.enabled, [UInt8](), now, now)
            } catch let e as StoreError where e.isConstraintViolation {
                throw IntakeError.sourceNameTaken(s.name)
            }
            s.id = Self.sourceID(db.lastInsertRowID)
            try db.run("UPDATE sources SET definition = ? WHERE id = ?", ProtoCodec.encode(s), db.lastInsertRowID)
            return s
        }.cached(in: sourceCache)
    }

    func updateSource(_ source: Intake_Source, now: Int64) async throws -> Intake_Source {
        guard let n = Self.number(source.id, prefix: "src") else { throw IntakeError.notFound("no source \(source.id)") }
        return try await db.write { db in
            guard var s = try Self.source(db, n) else { throw IntakeError.notFound("no source \(source.id)") }
            let created = s.createdAtMs
            s = source
            s.createdAtMs = created
            s.updatedAtMs = now
            do {
                try db.run(
                    "UPDATE sources SET name = ?, mailbox = ?, enabled = ?, definition = ?, updated_at = ? WHERE id = ?",
                    s.name, s.mailbox.isEmpty ? nil : ClientKeys.email(s.mailbox), s.enabled, ProtoCodec.encode(s), now, n)
            } catch let e as StoreError where e.isConstraintViolation {
                throw IntakeError.sourceNameTaken(s.name)
            }
            return s
        }.cached(in: sourceCache)
    }

    func setSourceEnabled(_ id: String, _ enabled: Bool, now: Int64) async throws -> Intake_Source {
        guard let n = Self.number(id, prefix: "src") else { throw IntakeError.notFound("no source \(id)") }
        return try await db.write { db in
            guard var s = try Self.source(db, n) else { throw IntakeError.notFound("no source \(id)") }
            s.enabled = enabled
            s.updatedAtMs = now
            try db.run("UPDATE sources SET enabled = ?, definition = ?, updated_at = ? WHERE id = ?", enabled, ProtoCodec.encode(s), now, n)
            return s
        }.cached(in: sourceCache)
    }

    func source(_ id: String) async throws -> Intake_Source? {
        if let s = sourceCache.withLockedValue({ $0[id] }) { return s }
        guard let n = Self.number(id, prefix: "src") else { return nil }
        guard let s = try await db.read({ try Self.source($0, n) }) else { return nil }
        return s.cached(in: sourceCache)
    }

    func source(mailbox: String) async throws -> Intake_Source? {
        guard let m = ClientKeys.email(mailbox) else { return nil }
        return try await db.read { db in
            try db.first("SELECT definition FROM sources WHERE mailbox = ?", m) {
                try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0))
            }
        }
    }

    private static func source(_ db: Connection, _ n: Int64) throws -> Intake_Source? {
        try db.first("SELECT definition FROM sources WHERE id = ?", n) { try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0)) }
    }

    func sources(includeDisabled: Bool) async throws -> [Intake_Source] {
        try await db.read { db in
            try db.query("SELECT definition FROM sources WHERE enabled = 1 OR ? ORDER BY id", includeDisabled) {
                try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0))
            }
        }
    }

    // MARK: Leads

    struct Submitted: Sendable {
        var lead: Intake_Lead
        var duplicate: Bool
        /// The routing request written to the outbox with a new lead (nil for a duplicate, or
        /// without routing): SubmitLead sends it at once, the relay if that fails.
        var route: Routing_RouteLeadRequest? = nil
    }

    /// Registers a validated lead in one transaction: idempotency check, client match or creation,
    /// registration number, the lead, its history entry, the reply to the applicant and the lead
    /// event in the outbox. `canonical` is the caller's request as sent, given with an idempotency key.
    func submit(_ req: Intake_SubmitLeadRequest, canonical: [UInt8]?, source: Intake_Source, actor: String, now: Int64) async throws
        -> Submitted
    {
        try await db.write { db in
            let key = req.idempotencyKey.trimmingSpaces
            if !key.isEmpty {
                let existing = try db.first("SELECT request, body FROM leads WHERE idempotency_key = ?", key) { ($0.blob(0), $0.blob(1)) }
                if let (request, body) = existing {
                    let lead = try ProtoCodec.decode(Intake_Lead.self, from: body)
                    guard request == canonical else {
                        throw IntakeError.idempotencyConflict(key: key, registrationNumber: lead.registrationNumber)
                    }
                    return Submitted(lead: lead, duplicate: true)
                }
            }
            let clientID = try Self.matchOrCreateClient(db, req.applicant ?? Intake_Applicant(), now: now)
            let year = CalendarDate.year(ofMillis: now)
            try db.run(
                "INSERT INTO registration_counters(year, last) VALUES (?, 1) ON CONFLICT(year) DO UPDATE SET last = last + 1", year)
            let seq = try db.first("SELECT last FROM registration_counters WHERE year = ?", year) { $0.int(0) } ?? 1

            var lead = Intake_Lead()
            lead.registrationNumber = RegistrationNumber.format(year: year, sequence: seq)
            lead.sourceId = source.id
            lead.channel = source.channel
            lead.channelDetails = req.channelDetails
            lead.applicant = req.applicant
            lead.clientId = Self.clientID(clientID)
            lead.subject = req.subject
            lead.description = req.description
            lead.category = req.category.trimmingSpaces
            lead.orderLines = req.orderLines
            lead.orderTotal = LeadValidation.orderTotal(req.orderLines)
            lead.fields = req.fields
            lead.idempotencyKey = key
            lead.status = .new
            lead.receivedAtMs = now
            lead.replyDueAtMs = now + Int64(source.replyDays > 0 ? source.replyDays : 5) * 86_400_000
            lead.updatedAtMs = now
            if self.routing { lead.routing = .pending }
            // One writer: the next id is known before the insert, so the row is written once, with
            // its own id inside the stored message.
            let rowID = try Self.nextID(db, "leads")
            lead.id = Self.leadID(rowID)
            try db.run(
                """
                INSERT INTO leads(id, registration_number, source_id, client_id, status, owner_id, received_at, idempotency_key, request, body)
                VALUES (?, ?, ?, ?, ?, '', ?, ?, ?, ?)
                """,
                rowID, lead.registrationNumber, Self.number(source.id, prefix: "src"), clientID, Int64(lead.status.rawValue), now,
                key.isEmpty ? nil : key, key.isEmpty ? nil : canonical, ProtoCodec.encode(lead))
            try Self.appendHistory(
                db, rowID, actor: actor, action: "registered", from: .unspecified, to: .new, note: "source \(source.name)", now: now)
            // The acknowledgement a mail sender will deliver: what the applicant is told (number,
            // reply deadline, their request's subject), not the whole lead.
            var told = Intake_Lead()
            told.id = lead.id
            told.registrationNumber = lead.registrationNumber
            told.applicant = lead.applicant
            told.subject = lead.subject
            told.receivedAtMs = lead.receivedAtMs
            told.replyDueAtMs = lead.replyDueAtMs
            var reply = Intake_LeadChange()
            reply.kind = "reply"
            reply.lead = told
            reply.atMs = now
            try db.run(
                "INSERT INTO outbox(kind, lead_id, payload, created_at) VALUES ('reply', ?, ?, ?)", rowID, ProtoCodec.encode(reply), now)
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
            return Submitted(lead: lead, duplicate: false, route: route)
        }
    }

    /// E-mail, else phone, else tax id; a first-time client is created from the applicant.
    private static func matchOrCreateClient(_ db: Connection, _ a: Intake_Applicant, now: Int64) throws -> Int64 {
        let email = ClientKeys.email(a.email)
        let phone = ClientKeys.phone(a.phone)
        let tax = ClientKeys.taxID(a.taxId)
        if let email, let id = try db.first("SELECT id FROM clients WHERE email = ? ORDER BY id LIMIT 1", email, map: { $0.int(0) }) {
            return id
        }
        if let phone, let id = try db.first("SELECT id FROM clients WHERE phone = ? ORDER BY id LIMIT 1", phone, map: { $0.int(0) }) {
            return id
        }
        if let tax, let id = try db.first("SELECT id FROM clients WHERE tax_id = ? ORDER BY id LIMIT 1", tax, map: { $0.int(0) }) {
            return id
        }
        let name =
            a.name.trimmingSpaces.isEmpty ? (a.company.trimmingSpaces.isEmpty ? (email ?? phone ?? "unnamed client") : a.company) : a.name
        try db.run(
            "INSERT INTO clients(name, email, phone, company, tax_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            name.trimmingSpaces, email, phone, a.company.trimmingSpaces, tax, now)
        return db.lastInsertRowID
    }

    /// The id the next row of `table` gets; valid because all writes run on the one writer.
    private static func nextID(_ db: Connection, _ table: StaticString) throws -> Int64 {
        try db.first("SELECT COALESCE(MAX(id), 0) + 1 FROM \(table)") { $0.int(0) } ?? 1
    }

    private static func appendHistory(
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

    private static func appendEvent(
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
    private static func leadRecord(_ db: Connection, _ reference: String) throws -> (row: Int64, lead: Intake_Lead)? {
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
    func transition(_ id: String, _ action: LeadLifecycle.Action, actor: String, now: Int64) async throws -> Intake_Lead {
        try await db.write { db in
            guard let (n, stored) = try Self.leadRecord(db, id) else { throw Self.noLead(id) }
            var lead = stored
            let from = lead.status
            let to = try LeadLifecycle.next(from: from, action, lead: lead.registrationNumber).get()
            var note = ""
            switch action {
            case .accept:
                if let c = Self.number(lead.clientId, prefix: "client"),
                    let debt = try db.first("SELECT debt_cents FROM clients WHERE id = ?", c, map: { $0.int(0) }), debt > 0
                {
                    throw IntakeError.clientHasDebt(clientID: lead.clientId, debt: FixedPoint.format(debt, places: 2))
                }
                let dueDays =
                    try db.first(
                        "SELECT definition FROM sources WHERE id = ?", Self.number(lead.sourceId, prefix: "src"),
                        map: { try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0)).dueDays }) ?? 0
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
            lead.status = to
            lead.updatedAtMs = now
            try db.run("UPDATE leads SET status = ?, body = ? WHERE id = ?", Int64(to.rawValue), ProtoCodec.encode(lead), n)
            try Self.appendHistory(db, n, actor: actor, action: LeadLifecycle.name(to), from: from, to: to, note: note, now: now)
            try Self.appendEvent(db, n, kind: LeadEventKind(status: to), lead: lead, now: now)
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

    // MARK: Routing results

    /// Records routing's decision on the lead (owner, role, explanation), with an "assigned" event,
    /// in one transaction; the outbox request for it is marked delivered. Idempotent: a
    /// second answer for the same lead changes nothing.
    /// Records routing's answer to a route message (and marks the message delivered). Returns the
    /// lead and whether the answer changed it: a late answer for a lead routing has since handed on
    /// changes nothing.
    func applyAssignment(_ a: Routing_Assignment, now: Int64) async throws -> (lead: Intake_Lead, changed: Bool)? {
        guard let n = Self.number(a.leadId, prefix: "lead") else { return nil }
        return try await db.write { db -> (lead: Intake_Lead, changed: Bool)? in
            try db.run("UPDATE outbox SET delivered_at = ? WHERE kind = 'route' AND lead_id = ? AND delivered_at IS NULL", now, n)
            guard
                var lead = try db.first(
                    "SELECT body FROM leads WHERE id = ?", n, map: { try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(0)) })
            else {
                return nil
            }
            // Pending: the first answer. Queued: routing has since handed the lead to someone.
            guard lead.routing == .pending || (lead.routing == .queued && !a.personId.isEmpty) else { return (lead, false) }
            try Self.setOwner(db, n, &lead, from: a, actor: "routing", note: a.explanation, now: now)
            return (lead, true)
        }
    }

    /// Records routing's answer on the lead: owner, role, explanation, queued or assigned; a history
    /// line and an "assigned" event for report, in the caller's transaction.
    private static func setOwner(
        _ db: Connection, _ n: Int64, _ lead: inout Intake_Lead, from a: Routing_Assignment, actor: String, note: String, now: Int64
    ) throws {
        lead.ownerId = a.personId
        lead.routedRole = a.role
        lead.routingExplanation = a.explanation
        lead.routing = a.personId.isEmpty ? .queued : .assigned
        lead.updatedAtMs = now
        try db.run(
            "UPDATE leads SET owner_id = ?, queued = ?, body = ? WHERE id = ?", a.personId, lead.routing == .queued,
            ProtoCodec.encode(lead), n)
        try appendHistory(db, n, actor: actor, action: "assigned", from: lead.status, to: lead.status, note: note, now: now)
        try appendEvent(db, n, kind: .assigned, lead: lead, now: now)
    }

    /// The last of routing's owner changes applied here.
    func ownerChangesCursor() async throws -> Int64 {
        try await db.read { db in try db.first("SELECT seq FROM feed_cursors WHERE name = 'routing-owner-changes'") { $0.int(0) } ?? 0 }
    }

    /// Applies one of routing's owner changes, exactly once and in order: the cursor moves in the
    /// same transaction, and a change at or below it is skipped. The lead takes the new owner (or
    /// goes back to waiting in a queue), its history says who changed it and why, and report hears
    /// of it (an "assigned" event through the outbox). Returns the lead when it changed.
    func applyOwnerChange(_ change: Routing_OwnerChange, now: Int64) async throws -> Intake_Lead? {
        try await db.write { db -> Intake_Lead? in
            let cursor = try db.first("SELECT seq FROM feed_cursors WHERE name = 'routing-owner-changes'") { $0.int(0) } ?? 0
            guard change.seq > cursor else { return nil }
            try db.run(
                "INSERT INTO feed_cursors(name, seq) VALUES ('routing-owner-changes', ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                change.seq)
            let a = change.assignment ?? Routing_Assignment()
            guard let n = Self.number(a.leadId, prefix: "lead"),
                var lead = try db.first(
                    "SELECT body FROM leads WHERE id = ?", n, map: { try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(0)) })
            else { return nil }
            guard lead.ownerId != a.personId else { return nil }
            let step = a.history.last
            let note = [step?.kind, step?.note].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            try Self.setOwner(
                db, n, &lead, from: a, actor: step?.actor.isEmpty == false ? step!.actor : "routing",
                note: note.isEmpty ? a.explanation : note, now: now)
            return lead
        }
    }

    // MARK: Outbox

    /// What an outbox row carries, as stored in its `kind` column.
    enum OutboxKind: String, Sendable, CaseIterable {
        /// The registration reply to the applicant, taken by a mail/SMS gateway (TakeReplies).
        case reply
        /// A lead event for report (Intake_LeadChange).
        case event
        /// Routing requests: route a new lead, a decision was taken, the lead is finished.
        case route, decided, release

        static let routing: [OutboxKind] = [.route, .decided, .release]
    }

    struct OutboxRow: Sendable {
        var id: Int64
        var kind: OutboxKind
        var payload: [UInt8]
        var createdAt: Int64
    }

    /// Undelivered messages of these kinds, oldest first.
    func pendingOutbox(kinds: [OutboxKind], limit: Int) async throws -> [OutboxRow] {
        try await db.read { db in
            var rows = [OutboxRow]()
            for k in kinds {
                rows += try db.query(
                    "SELECT id, payload, created_at FROM outbox WHERE kind = ? AND delivered_at IS NULL ORDER BY id LIMIT ?", k.rawValue,
                    limit
                ) {
                    OutboxRow(id: $0.int(0), kind: k, payload: $0.blob(1), createdAt: $0.int(2))
                }
            }
            rows.sort { $0.id < $1.id }
            return Array(rows.prefix(limit))
        }
    }

    func markDelivered(_ ids: [Int64], now: Int64, failure: String? = nil) async throws {
        guard !ids.isEmpty else { return }
        try await db.write { db in
            for id in ids { try db.run("UPDATE outbox SET delivered_at = ?, failure = ? WHERE id = ?", now, failure, id) }
        }
    }

    /// Marks replies sent; returns how many were still waiting.
    func confirmReplies(_ ids: [Int64], now: Int64) async throws -> Int {
        try await db.write { db in
            try ids.reduce(0) { n, id in
                n + (try db.run("UPDATE outbox SET delivered_at = ? WHERE id = ? AND kind = 'reply' AND delivered_at IS NULL", now, id))
            }
        }
    }

    /// Per kind: undelivered messages and the creation time of the oldest.
    func outboxBacklog(kinds: [OutboxKind]) async throws -> [OutboxKind: (count: Int, oldest: Int64?)] {
        try await db.read { db in
            var out = [OutboxKind: (count: Int, oldest: Int64?)]()
            for k in kinds {
                let count =
                    try db.first("SELECT COUNT(*) FROM outbox WHERE kind = ? AND delivered_at IS NULL", k.rawValue) { Int($0.int(0)) } ?? 0
                let oldest = try db.first(
                    "SELECT created_at FROM outbox WHERE kind = ? AND delivered_at IS NULL ORDER BY id LIMIT 1", k.rawValue
                ) {
                    $0.int(0)
                }
                out[k] = (count, oldest)
            }
            return out
        }
    }

    /// Drops delivered messages older than `before` (the outbox is not an archive: history is).
    func purgeDelivered(before: Int64) async throws -> Int {
        try await db.write { db in try db.run("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", before) }
    }

    func addComment(_ c: Intake_Comment, now: Int64) async throws -> (Intake_Comment, Intake_Lead) {
        try await db.write { db in
            guard let (n, lead) = try Self.leadRecord(db, c.leadId) else { throw Self.noLead(c.leadId) }
            var comment = c
            comment.leadId = lead.id
            comment.createdAtMs = now
            let row = try Self.nextID(db, "comments")
            comment.id = Self.commentID(row)
            try db.run("INSERT INTO comments(id, lead_id, public, body) VALUES (?, ?, ?, ?)", row, n, c.public, ProtoCodec.encode(comment))
            try Self.appendHistory(
                db, n, actor: c.author, action: "commented", from: lead.status, to: lead.status, note: c.public ? "public" : "private",
                now: now)
            try Self.appendEvent(db, n, kind: .commented, lead: lead, now: now, publicComment: c.public)
            return (comment, lead)
        }
    }

    // MARK: Clients

    func setClientDebt(_ id: String, cents: Int64) async throws -> Intake_Client {
        guard let n = Self.number(id, prefix: "client") else { throw IntakeError.notFound("no client \(id)") }
        return try await db.write { db in
            guard try db.run("UPDATE clients SET debt_cents = ? WHERE id = ?", cents, n) == 1 else {
                throw IntakeError.notFound("no client \(id)")
            }
            return try Self.client(db, n)!
        }
    }

    func client(_ id: String) async throws -> Intake_Client? {
        guard let n = Self.number(id, prefix: "client") else { return nil }
        return try await db.read { try Self.client($0, n) }
    }

    private static func client(_ db: Connection, _ n: Int64) throws -> Intake_Client? {
        guard
            var c = try db.first(
                "SELECT name, email, phone, company, tax_id, debt_cents, created_at FROM clients WHERE id = ?", n,
                map: { r -> Intake_Client in
                    var c = Intake_Client()
                    c.name = r.string(0)
                    c.email = r.optionalString(1) ?? ""
                    c.phone = r.optionalString(2) ?? ""
                    c.company = r.string(3)
                    c.taxId = r.optionalString(4) ?? ""
                    c.debt = FixedPoint.format(r.int(5), places: 2)
                    c.createdAtMs = r.int(6)
                    return c
                })
        else { return nil }
        c.id = clientID(n)
        c.leadIds = try db.query("SELECT id FROM leads WHERE client_id = ? ORDER BY id", n) { leadID($0.int(0)) }
        return c
    }
}

extension Intake_Source {
    /// Two updates of one source may finish in either order: the cache keeps the newer definition.
    fileprivate func cached(in cache: NIOLockedValueBox<[String: Intake_Source]>) -> Intake_Source {
        cache.withLockedValue { c in
            if let old = c[id], old.updatedAtMs > updatedAtMs { return }
            c[id] = self
        }
        return self
    }
}

import LeadwireAPI
import NIOConcurrencyHelpers
import Store

/// A message owed to someone, as the change that owes it describes it; rendered from the template
/// in force and queued in the caller's transaction (`MessageQueue.enqueue`).
public struct OutgoingMessage: Sendable {
    public var kind: MessageKind
    public var locale: MessageLocale
    public var recipientName: String
    /// What is known of where to reach the recipient; staff are reached through `personID`
    /// (routing's directory) when both are empty.
    public var email: String = ""
    public var phone: String = ""
    /// Prefer SMS to e-mail (an applicant who came by phone or a messenger).
    public var preferPhone = false
    public var personID: String = ""
    public var leadID: String = ""
    public var registrationNumber: String = ""
    public var planID: String = ""
    public var contractorID: String = ""
    /// The applicant's own subject and the answer deadline, for the gateway hand-off.
    public var about: String = ""
    public var answerDueAt: Int64 = 0
    /// Template scopes to look in, most specific first ("source:src-1"); "" is always last.
    public var scopes: [String] = []
    /// Placeholder values; greeting is made from recipientName when not given.
    public var values: [String: String]

    public init(kind: MessageKind, locale: MessageLocale, recipientName: String, values: [String: String]) {
        self.kind = kind
        self.locale = locale
        self.recipientName = recipientName
        self.values = values
    }
}

/// One queued (or sent, or set-aside) message: a row of `messages`.
public struct QueuedMessage: Sendable, Equatable {
    public enum State: Int64, Sendable {
        case queued = 1
        case sent = 2
        case failed = 3
    }

    public var row: Int64
    public var messageID: String
    public var kind: String
    public var audience: String
    public var channel: String
    public var recipientName: String
    public var recipient: String
    public var email: String
    public var phone: String
    public var personID: String
    public var leadID: String
    public var registrationNumber: String
    public var planID: String
    public var contractorID: String
    public var subject: String
    public var body: String
    public var locale: String
    public var inReplyTo: String
    public var about: String
    public var answerDueAt: Int64
    public var state: State
    public var attempts: Int
    public var lastError: String
    public var createdAt: Int64
    public var nextAttemptAt: Int64
    public var sentAt: Int64

    public var id: String { "msg-\(row)" }

    /// The placeholder values it was queued with (rendered when read; see MessageQueue).
    var values: [String: String] = [:]
    /// The template scope it was queued for ("source:src-1"), "" for the deployment's.
    var scope: String = ""

    static let columns = """
        id, kind, channel, recipient_name, recipient, email, phone, person_id, lead_id, registration_number, plan_id, contractor_id,
        locale, scope, vals, about, answer_due_at, state, attempts, last_error, created_at, next_attempt_at, sent_at, subject, body
        """

    /// A row as stored; `subject` and `body` are those sent (empty while queued: `MessageQueue`
    /// renders them on reading).
    init(_ r: Row, domain: String) {
        row = r.int(0)
        kind = r.string(1)
        audience = MessageKind(rawValue: kind)?.audience.rawValue ?? ""
        channel = r.string(2)
        recipientName = r.string(3)
        recipient = r.string(4)
        email = r.string(5)
        phone = r.string(6)
        personID = r.string(7)
        leadID = r.string(8)
        registrationNumber = r.string(9)
        planID = r.string(10)
        contractorID = r.string(11)
        locale = r.string(12)
        scope = r.string(13)
        values = MessageValues.decode(r.blob(14))
        about = r.string(15)
        answerDueAt = r.int(16)
        state = State(rawValue: r.int(17)) ?? .queued
        attempts = Int(r.int(18))
        lastError = r.string(19)
        createdAt = r.int(20)
        nextAttemptAt = r.int(21)
        sentAt = r.int(22)
        subject = r.optionalString(23) ?? ""
        body = r.optionalString(24) ?? ""
        // Ids are derived, not stored: the registration message of a lead is the thread every later
        // message to the applicant answers, so its id is known without a look-up.
        let kindValue = MessageKind(rawValue: kind)
        if kindValue == .leadRegistered && !registrationNumber.isEmpty {
            messageID = "registered.\(registrationNumber)@\(domain)"
        } else {
            let about = registrationNumber.isEmpty ? (planID.isEmpty ? "leadwire" : planID) : registrationNumber
            messageID = "msg-\(row).\(about)@\(domain)"
        }
        inReplyTo =
            kindValue?.audience == .applicant && kindValue != .leadRegistered && !registrationNumber.isEmpty
            ? "registered.\(registrationNumber)@\(domain)" : ""
    }

    public var proto: Messages_Message {
        var m = Messages_Message()
        m.id = id
        m.messageId = messageID
        m.kind = kind
        m.audience = audience
        m.channel = channel
        m.recipientName = recipientName
        m.recipient = recipient
        m.personId = personID
        m.leadId = leadID
        m.registrationNumber = registrationNumber
        m.subject = subject
        m.body = body
        m.locale = locale
        m.state = state == .queued ? .queued : state == .sent ? .sent : .failed
        m.attempts = Int32(attempts)
        m.lastError = lastError
        m.createdAtMs = createdAt
        m.sentAtMs = sentAt
        m.nextAttemptAtMs = state == .queued ? nextAttemptAt : 0
        m.inReplyTo = inReplyTo
        m.planId = planID
        m.contractorId = contractorID
        return m
    }
}

/// The messages and templates tables, shared by the services that send messages (intake and
/// report each keep their own in their own database). All of Messaging's SQL is here.
public struct MessageQueue: Sendable {
    public let db: Database
    /// Templates by (kind, locale, scope) as last read or stored: every queued message needs one,
    /// and they change rarely and only through this queue (cleared on every change).
    private let templates = NIOLockedValueBox<[String: StoredTemplate]>([:])
    /// The right-hand side of Message-IDs (the From address's domain).
    public let domain: String
    /// The language when neither the source nor the contractor names one.
    public let defaultLocale: MessageLocale

    public init(db: Database, domain: String, defaultLocale: MessageLocale) {
        self.db = db
        self.domain = domain
        self.defaultLocale = defaultLocale
    }

    /// The tables, for the owning service's migration list.
    /// The due messages are read per channel ("" for staff whose address is not looked up yet,
    /// "email" for the mailer), oldest first: an index by channel and id answers that without
    /// reading the others. The first index, by next attempt, made the mailer's look-up of staff
    /// addresses read every queued e-mail on each wake-up (each commit that queued a message), a
    /// cost growing with the backlog, exactly when the relay is down.
    public static let dueByChannel = """
        DROP INDEX messages_due;
        CREATE INDEX messages_due ON messages(channel, id) WHERE state = 1;
        """

    public static let schema = """
        -- Messages owed to people, written in the same transaction as the change that owes them.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            -- 'email' or 'sms'; '' while a person's address is not looked up yet.
            channel TEXT NOT NULL,
            recipient_name TEXT NOT NULL,
            recipient TEXT NOT NULL,
            email TEXT NOT NULL,
            phone TEXT NOT NULL,
            person_id TEXT NOT NULL,
            lead_id TEXT NOT NULL,
            registration_number TEXT NOT NULL,
            plan_id TEXT NOT NULL,
            contractor_id TEXT NOT NULL,
            locale TEXT NOT NULL,
            -- The template scope and the placeholder values: the text is rendered when it is read
            -- (sent, handed to a gateway, listed), not inside the transaction that queues it.
            scope TEXT NOT NULL,
            vals BLOB NOT NULL,
            about TEXT NOT NULL,
            answer_due_at INTEGER NOT NULL,
            -- 1 queued, 2 sent, 3 set aside (failed for good).
            state INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL,
            sent_at INTEGER NOT NULL DEFAULT 0,
            -- The text as it went out, kept once sent.
            subject TEXT,
            body TEXT
        );
        CREATE INDEX messages_due ON messages(next_attempt_at, id) WHERE state = 1;
        CREATE INDEX messages_by_lead ON messages(lead_id, id);
        CREATE TABLE message_templates (
            kind TEXT NOT NULL,
            locale TEXT NOT NULL,
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            updated_by TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (kind, locale, scope)
        );
        """

    // MARK: Writing, inside the caller's transaction

    /// Renders `m` with the template in force and queues it. Returns nil when the recipient has
    /// no address of any kind (nothing can be sent; a walk-in applicant who left none, say).
    @discardableResult
    public func enqueue(_ db: Connection, _ m: OutgoingMessage, now: Int64) throws -> Int64? {
        let email = m.email.trimmingSpaces
        let phone = m.phone.trimmingSpaces
        let channel: String
        let recipient: String
        if !phone.isEmpty && (m.preferPhone || email.isEmpty) {
            (channel, recipient) = ("sms", phone)
        } else if !email.isEmpty {
            (channel, recipient) = ("email", email)
        } else if !m.personID.isEmpty {
            (channel, recipient) = ("", "")
        } else {
            return nil
        }
        // The most specific scope the message may have a text in; which text applies is decided
        // when it is rendered (the template in force then), so queueing reads no template.
        let scope = m.scopes.first ?? ""
        return try db.insertReturningID(
            literal: """
                INSERT INTO messages(kind, channel, recipient_name, recipient, email, phone, person_id, lead_id, registration_number,
                    plan_id, contractor_id, locale, scope, vals, about, answer_due_at, state, created_at, next_attempt_at)
                VALUES (\(m.kind.rawValue), \(channel), \(m.recipientName), \(recipient), \(email), \(phone), \(m.personID), \(m.leadID),
                    \(m.registrationNumber), \(m.planID), \(m.contractorID), \(m.locale.rawValue), \(scope), \(MessageValues.encode(m.values)),
                    \(m.about), \(m.answerDueAt), 1, \(now), \(now))
                """)
    }

    /// A stored row with its text: as sent, or rendered now from the template in force.
    func read(_ db: Connection, _ r: Row) throws -> QueuedMessage {
        var m = QueuedMessage(r, domain: domain)
        if m.subject.isEmpty && m.body.isEmpty { try render(db, &m) }
        return m
    }

    func render(_ db: Connection, _ m: inout QueuedMessage) throws {
        guard let kind = MessageKind(rawValue: m.kind) else { return }
        let locale = MessageLocale(code: m.locale) ?? defaultLocale
        let template = try cachedTemplate(db, kind: kind, locale: locale, scopes: m.scope.isEmpty ? [] : [m.scope])
        var values = m.values
        if values["name"] == nil { values["name"] = m.recipientName }
        if values["greeting"] == nil { values["greeting"] = locale.greeting(m.recipientName) }
        // A lead's number and reference come from the row (they were not values before the lead had them).
        if !m.registrationNumber.isEmpty {
            if values["number"] == nil { values["number"] = m.registrationNumber }
            if values["reference"] == nil { values["reference"] = "\(m.registrationNumber) (\(m.leadID))" }
        }
        m.subject = Self.oneLine(template.subject.render(values))
        m.body = Self.tidy(template.body.render(values))
    }

    /// Subjects are one line (a header): breaks and tabs become spaces, the ends are trimmed.
    static func oneLine(_ s: String) -> String {
        var bytes = Array(s.utf8)
        for i in bytes.indices where bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { bytes[i] = 0x20 }
        return String(decoding: bytes, as: UTF8.self).trimmingSpaces
    }

    /// An empty placeholder leaves no run of blank lines or trailing spaces behind: at most one
    /// blank line in a row, none at the start or end, one newline at the end. Works on UTF-8
    /// bytes (it runs for every message queued, inside the transaction).
    static func tidy(_ s: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count + 1)
        var blankRun = 0
        var line = [UInt8]()
        func flush() {
            while let last = line.last, last == 0x20 || last == 0x0D { line.removeLast() }
            if line.isEmpty {
                if !out.isEmpty { blankRun += 1 }
            } else {
                if blankRun > 0 { out.append(0x0A) }
                blankRun = 0
                out += line
                out.append(0x0A)
            }
            line.removeAll(keepingCapacity: true)
        }
        for b in s.utf8 {
            if b == 0x0A { flush() } else { line.append(b) }
        }
        flush()
        if out.isEmpty { out.append(0x0A) }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Templates

    public struct StoredTemplate: Sendable {
        public var subject: Template
        public var body: Template
        public var subjectText: String
        public var bodyText: String
        public var scope: String
        public var updatedBy: String
        public var updatedAt: Int64
        /// No text stored: the stock one.
        public var stock: Bool { updatedAt == 0 && updatedBy.isEmpty && scope == "-" }
    }

    /// The template in force: the first scope with a stored text, else the stock one.
    static func template(_ db: Connection, kind: MessageKind, locale: MessageLocale, scopes: [String]) throws -> StoredTemplate {
        for scope in scopes + [""] {
            if let t = try db.first(
                "SELECT subject, body, updated_by, updated_at FROM message_templates WHERE kind = ? AND locale = ? AND scope = ?",
                kind.rawValue, locale.rawValue, scope, map: { ($0.string(0), $0.string(1), $0.string(2), $0.int(3)) })
            {
                // Stored texts were checked when stored; one that no longer parses (a placeholder
                // retired since) falls back to the stock text rather than failing the change.
                if let checked = try? Self.check(kind: kind, subject: t.0, body: t.1) {
                    return StoredTemplate(
                        subject: checked.subject, body: checked.body, subjectText: t.0, bodyText: t.1, scope: scope, updatedBy: t.2,
                        updatedAt: t.3)
                }
            }
        }
        let stock = kind.stock(locale)
        let checked = try! Self.check(kind: kind, subject: stock.subject, body: stock.body)
        return StoredTemplate(
            subject: checked.subject, body: checked.body, subjectText: stock.subject, bodyText: stock.body, scope: "-", updatedBy: "",
            updatedAt: 0)
    }

    /// Drops the templates kept in memory (another replica may have changed them).
    public func forgetTemplates() {
        templates.withLockedValue { $0.removeAll() }
    }

    private func cachedTemplate(_ db: Connection, kind: MessageKind, locale: MessageLocale, scopes: [String]) throws -> StoredTemplate {
        let key = "\(kind.rawValue)|\(locale.rawValue)|" + scopes.joined(separator: "|")
        if let t = templates.withLockedValue({ $0[key] }) { return t }
        let t = try Self.template(db, kind: kind, locale: locale, scopes: scopes)
        templates.withLockedValue { $0[key] = t }
        return t
    }

    /// A problem with one of the two texts, named by field.
    public struct TemplateProblem: Error, Sendable, Equatable {
        public var field: String
        public var problem: String
    }

    /// Parses both texts against the kind's placeholders. An applicant's subject must carry the
    /// number: an answer by e-mail finds its lead by the number in the subject.
    public static func check(kind: MessageKind, subject: String, body: String) throws(TemplateProblem) -> (
        subject: Template, body: Template
    ) {
        let allowed = Set(kind.placeholders)
        let s: Template
        let b: Template
        do { s = try Template(subject, allowed: allowed) } catch {
            throw TemplateProblem(field: "template.subject", problem: error.description)
        }
        do { b = try Template(body, allowed: allowed) } catch { throw TemplateProblem(field: "template.body", problem: error.description) }
        if subject.trimmingSpaces.isEmpty { throw TemplateProblem(field: "template.subject", problem: "must not be empty") }
        if subject.contains("\n") { throw TemplateProblem(field: "template.subject", problem: "must be one line") }
        if subject.count > 500 { throw TemplateProblem(field: "template.subject", problem: "at most 500 characters, got \(subject.count)") }
        if body.trimmingSpaces.isEmpty { throw TemplateProblem(field: "template.body", problem: "must not be empty") }
        if body.count > 20_000 { throw TemplateProblem(field: "template.body", problem: "at most 20,000 characters, got \(body.count)") }
        if kind.audience == .applicant && !s.placeholders.contains("number") {
            throw TemplateProblem(
                field: "template.subject", problem: "must contain {number}: an applicant's answer by e-mail finds its lead by it")
        }
        return (s, b)
    }

    public func template(kind: MessageKind, locale: MessageLocale, scope: String) async throws -> StoredTemplate {
        try await db.read { db in try Self.template(db, kind: kind, locale: locale, scopes: scope.isEmpty ? [] : [scope]) }
    }

    public func putTemplate(
        kind: MessageKind, locale: MessageLocale, scope: String, subject: String, body: String, actor: String, now: Int64
    )
        async throws
    {
        try await db.write { db in
            _ = try db.run(
                """
                INSERT INTO message_templates(kind, locale, scope, subject, body, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(kind, locale, scope) DO UPDATE SET subject = excluded.subject, body = excluded.body,
                    updated_by = excluded.updated_by, updated_at = excluded.updated_at
                """, kind.rawValue, locale.rawValue, scope, subject, body, actor, now)
        }
        templates.withLockedValue { $0 = [:] }
    }

    /// Returns whether a stored text was removed.
    public func resetTemplate(kind: MessageKind, locale: MessageLocale, scope: String) async throws -> Bool {
        let removed = try await db.write { db in
            try db.run(
                "DELETE FROM message_templates WHERE kind = ? AND locale = ? AND scope = ?", kind.rawValue, locale.rawValue, scope) > 0
        }
        templates.withLockedValue { $0 = [:] }
        return removed
    }

    // MARK: Delivery

    /// Queued messages due now on these channels ("" = a person's address still to be looked up),
    /// oldest first.
    /// `rendered: false` leaves subject and body empty (for work on the rows, not their text).
    public func due(channels: [String], now: Int64, limit: Int, rendered: Bool = true) async throws -> [QueuedMessage] {
        let marks = channels.map { _ in "?" }.joined(separator: ", ")
        let values: [SQLValue] = [.integer(now)] + channels.map { .text($0) } + [.integer(Int64(limit))]
        return try await db.read { db in
            try db.query(
                "SELECT \(QueuedMessage.columns) FROM messages WHERE state = 1 AND next_attempt_at <= ? AND channel IN (\(marks)) ORDER BY id LIMIT ?",
                values: values, map: { rendered ? try self.read(db, $0) : QueuedMessage($0, domain: self.domain) })
        }
    }

    /// A person's address, looked up once: the message goes by e-mail, or by SMS through the gateway
    /// (and the greeting names them: the text is rendered when read).
    public func address(_ row: Int64, channel: String, recipient: String, name: String) async throws {
        try await db.write { db in
            _ = try db.run(
                "UPDATE messages SET channel = ?, recipient = ?, recipient_name = CASE WHEN ? = '' THEN recipient_name ELSE ? END WHERE id = ?",
                channel, recipient, name, name, row)
        }
    }

    /// Sent: the text as it went out is kept with it.
    public func markSent(_ m: QueuedMessage, now: Int64) async throws {
        try await db.write { db in
            _ = try db.run(
                "UPDATE messages SET state = 2, sent_at = ?, attempts = attempts + 1, last_error = '', subject = ?, body = ? WHERE id = ? AND state = 1",
                now, m.subject, m.body, m.row)
        }
    }

    public func markRetry(_ row: Int64, error: String, nextAttemptAt: Int64) async throws {
        try await db.write { db in
            _ = try db.run(
                "UPDATE messages SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ? AND state = 1", error,
                nextAttemptAt, row)
        }
    }

    public func markFailed(_ row: Int64, error: String, now: Int64) async throws {
        try await db.write { db in
            _ = try db.run(
                "UPDATE messages SET state = 3, attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ? AND state = 1",
                error, now, row)
        }
    }

    /// Gateway confirmations: queued messages marked sent; returns how many were still queued.
    public func confirm(_ rows: [Int64], now: Int64) async throws -> Int {
        try await db.write { db in
            try rows.reduce(0) { n, row in
                n + (try db.run("UPDATE messages SET state = 2, sent_at = ? WHERE id = ? AND state = 1", now, row))
            }
        }
    }

    /// A set-aside message queued again; nil when there is no such message.
    public func retry(_ row: Int64, now: Int64) async throws -> QueuedMessage? {
        try await db.write { db in
            _ = try db.run(
                "UPDATE messages SET state = 1, next_attempt_at = ?, subject = NULL, body = NULL WHERE id = ? AND state = 3", now, row)
            return try db.first("SELECT \(QueuedMessage.columns) FROM messages WHERE id = ?", row, map: { try self.read(db, $0) })
        }
    }

    public func message(_ row: Int64) async throws -> QueuedMessage? {
        try await db.read { db in
            try db.first("SELECT \(QueuedMessage.columns) FROM messages WHERE id = ?", row, map: { try self.read(db, $0) })
        }
    }

    public struct Filter: Sendable {
        public var leadID = ""
        public var registrationNumber = ""
        public var state: QueuedMessage.State?
        public var kind = ""
        public var before: Int64?
        public init() {}
    }

    /// Newest first.
    public func list(_ f: Filter, limit: Int) async throws -> [QueuedMessage] {
        var conditions = [String]()
        var values = [SQLValue]()
        if !f.leadID.isEmpty {
            conditions.append("lead_id = ?")
            values.append(.text(f.leadID))
        }
        if !f.registrationNumber.isEmpty {
            conditions.append("registration_number = ?")
            values.append(.text(f.registrationNumber))
        }
        if let s = f.state {
            conditions.append("state = ?")
            values.append(.integer(s.rawValue))
        }
        if !f.kind.isEmpty {
            conditions.append("kind = ?")
            values.append(.text(f.kind))
        }
        if let b = f.before {
            conditions.append("id < ?")
            values.append(.integer(b))
        }
        values.append(.integer(Int64(limit)))
        let sql =
            "SELECT \(QueuedMessage.columns) FROM messages" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY id DESC LIMIT ?"
        let v = values
        return try await db.read { db in try db.query(sql, values: v, map: { try self.read(db, $0) }) }
    }

    /// Queued messages on these channels: how many, and the creation time of the oldest.
    public func backlog(channels: [String]) async throws -> (count: Int, oldest: Int64?) {
        let marks = channels.map { _ in "?" }.joined(separator: ", ")
        let values: [SQLValue] = channels.map { .text($0) }
        return try await db.read { db in
            try db.query(
                "SELECT COUNT(*), MIN(created_at) FROM messages WHERE state = 1 AND channel IN (\(marks))", values: values,
                map: { (count: Int($0.int(0)), oldest: $0.optionalInt(1)) }
            ).first ?? (0, nil)
        }
    }
}

/// Placeholder values in a row: each name and value as a varint length and UTF-8 bytes. Compact
/// (the queue grows by one row per message) and safe for any text.
enum MessageValues {
    static func encode(_ values: [String: String]) -> [UInt8] {
        // By name, so the same values always make the same bytes; sized first, so the array is
        // allocated once (every message queued, inside its transaction).
        let pairs = values.sorted(by: { $0.key < $1.key })
        func size(_ text: String) -> Int {
            let n = text.utf8.count
            return n + (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x20_0000 ? 3 : n < 0x1000_0000 ? 4 : 5)
        }
        var out = [UInt8]()
        out.reserveCapacity(pairs.reduce(0) { $0 + size($1.key) + size($1.value) })
        func put(_ text: String) {
            var n = text.utf8.count
            while n >= 0x80 {
                out.append(UInt8(n & 0x7F) | 0x80)
                n >>= 7
            }
            out.append(UInt8(n))
            out += text.utf8
        }
        for (k, v) in pairs {
            put(k)
            put(v)
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) -> [String: String] {
        var out = [String: String]()
        var i = 0
        func next() -> String? {
            var n = 0
            var shift = 0
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                n |= Int(b & 0x7F) << shift
                if b < 0x80 {
                    guard n <= bytes.count - i else { return nil }
                    defer { i += n }
                    return String(decoding: bytes[i..<(i + n)], as: UTF8.self)
                }
                shift += 7
                if shift > 28 { return nil }
            }
            return nil
        }
        while i < bytes.count, let k = next(), let v = next() { out[k] = v }
        return out
    }
}

import Catalog
import LeadwireAPI
import Messaging
import NIOConcurrencyHelpers
import Store
import Wire

/// Intake's persistence: every SQL statement of the service is in this file and its extensions
/// (IntakeStore+Sources, +Leads, +Routing, +Outbox, +Clients). Rows keep indexed
/// columns for queries plus the message itself (protobuf) as the record.
final class IntakeStore: Sendable {
    let db: Database
    /// Sources by id, as last committed: read on every submit, changed rarely (always through this
    /// store, which updates the cache after the commit).
    let sourceCache = NIOLockedValueBox<[String: Intake_Source]>([:])

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
        Migration(7, "messages to applicants and staff, and their templates", MessageQueue.schema),
        Migration(
            8, "the catalogue, stock reservations and commercial proposals",
            "ALTER TABLE clients ADD COLUMN address TEXT NOT NULL DEFAULT '';\n" + CatalogStore.sqliteSchema + ProposalStore.schema,
            postgres: "ALTER TABLE clients ADD COLUMN address TEXT NOT NULL DEFAULT '';\n" + CatalogStore.postgresSchema
                + ProposalStore.schema),
        Migration(9, "due messages found by channel", MessageQueue.dueByChannel),
    ]

    func intakeSettings() async throws -> Intake_IntakeSettings {
        try await db.read { db in
            try Self.settings(db) ?? Intake_IntakeSettings()
        }
    }

    private static func settings(_ c: Connection) throws -> Intake_IntakeSettings? {
        try c.first("SELECT open, reason, changed_by, changed_at FROM intake_settings WHERE id = 1") { r in
            var s = Intake_IntakeSettings()
            s.open = r.bool("open")
            s.reason = r.string("reason")
            s.changedBy = r.string("changed_by")
            s.changedAtMs = r.int("changed_at")
            return s
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

    /// Open or closed to new leads, as last committed (by this replica or another).
    let intakeSwitch = IntakeSwitch()

    /// Replicas on PostgreSQL: told the lead changes other replicas made (for WatchLeads here).
    let otherReplicasChanged = NIOLockedValueBox<(@Sendable ([Intake_LeadChange]) -> Void)?>(nil)
    /// The last lead event (outbox row) this replica has seen or written; -1 before its first
    /// transaction (whatever happened before it started is not news). Writer queue.
    let lastEventSeen = NIOLockedValueBox<Int64>(-1)

    /// What this replica keeps in memory, brought up to date inside the first transaction after
    /// another replica wrote: sources, the intake switch, and their lead changes for WatchLeads.
    private func catchUp(_ c: Connection) throws {
        sourceCache.withLockedValue { $0.removeAll() }
        messages.forgetTemplates()
        if let settings = try Self.settings(c) { intakeSwitch.set(settings) }
        let after = lastEventSeen.withLockedValue { $0 }
        guard after >= 0 else { return }
        let events = try c.query("SELECT id, payload FROM outbox WHERE kind = 'event' AND id > ? ORDER BY id", after) {
            ($0.int(0), try ProtoCodec.decode(Intake_LeadChange.self, from: $0.blob(1)))
        }
        guard let last = events.last else { return }
        lastEventSeen.withLockedValue { $0 = last.0 }
        guard let tell = otherReplicasChanged.withLockedValue({ $0 }) else { return }
        var changes = [Intake_LeadChange]()
        for (_, e) in events {
            guard let n = Self.number(e.lead?.id ?? "", prefix: "lead") else { continue }
            var change = e
            // The lead as WatchLeads shows it (the event carries a summary).
            if let lead = try c.first(
                "SELECT body FROM leads WHERE id = ?", n, map: { try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(0)) })
            {
                change.lead = lead
            }
            changes.append(change)
        }
        tell(changes)
    }

    /// Messages to applicants and staff, queued in the same transactions as the changes that owe them.
    let messages: MessageQueue

    init(
        path: String, schema: String = "intake", routing: Bool = false, onCommit: (@Sendable (Int) -> Void)? = nil,
        integrityCheckSeconds: Double = 30, locale: MessageLocale = .ru, messageDomain: String = "leadwire.localhost"
    ) throws {
        var config = Database.Configuration(path: path)
        config.schema = schema
        config.applicationName = "intake-service"
        config.integrityCheckSeconds = integrityCheckSeconds
        config.onCommit = onCommit
        self.routing = routing
        db = try Database(configuration: config, migrations: Self.migrations)
        messages = MessageQueue(db: db, domain: messageDomain, defaultLocale: locale)
        db.onOtherWriters { [weak self] c in try self?.catchUp(c) }
        db.beforeEachCommit { [weak self] c in
            let last = try c.first("SELECT COALESCE(MAX(id), 0) FROM outbox WHERE kind = 'event'") { $0.int(0) } ?? 0
            self?.lastEventSeen.withLockedValue { $0 = last }
        }
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
}

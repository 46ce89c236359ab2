import LeadwireAPI
import Messaging
import NIOConcurrencyHelpers
import Store
import Wire

/// The report service's persistence: every SQL statement of the service is in this file and its
/// extensions (ReportStore+Leads, ReportStore+Plans).
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
            """),
        Migration(
            2, "contractor messages: progress requests, contractors' addresses, the message queue",
            MessageQueue.schema + """
                CREATE TABLE contractors (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL, locale TEXT NOT NULL,
                    updated_at INTEGER NOT NULL
                );
                -- One row per request; body is the ProgressRequest (with the lines answered so far).
                CREATE TABLE progress_requests (
                    id INTEGER PRIMARY KEY,
                    plan_id TEXT NOT NULL,
                    contractor_id TEXT NOT NULL,
                    answered_at INTEGER NOT NULL DEFAULT 0,
                    body BLOB NOT NULL
                );
                CREATE INDEX progress_requests_open ON progress_requests(contractor_id, plan_id) WHERE answered_at = 0;
                """),
        Migration(
            3, "the order plans changed in, for FollowWorkPlans on other replicas",
            """
            ALTER TABLE plans ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
            CREATE INDEX plans_by_change ON plans(changed);
            """),
        Migration(4, "due messages found by channel", MessageQueue.dueByChannel),
    ]

    /// Messages to contractors (progress requests), queued in the transactions that owe them.
    let messages: MessageQueue

    /// Replicas on PostgreSQL: told the plans other replicas changed (for FollowWorkPlans here).
    let otherReplicasChanged = NIOLockedValueBox<(@Sendable ([Report_Plan]) -> Void)?>(nil)
    /// `plans.changed` as of this replica's last transaction; -1 before its first. Writer queue.
    let lastPlanChangeSeen = NIOLockedValueBox<Int64>(-1)

    private func catchUp(_ c: Connection) throws {
        let after = lastPlanChangeSeen.withLockedValue { $0 }
        guard after >= 0 else { return }
        let changed = try c.query("SELECT changed, body FROM plans WHERE changed > ? ORDER BY changed", after) {
            ($0.int(0), try ProtoCodec.decode(Report_Plan.self, from: $0.blob(1)))
        }
        guard let last = changed.last else { return }
        lastPlanChangeSeen.withLockedValue { $0 = last.0 }
        otherReplicasChanged.withLockedValue { $0 }?(changed.map(\.1))
    }

    init(
        path: String, schema: String = "report", onCommit: (@Sendable (Int) -> Void)? = nil, integrityCheckSeconds: Double = 30,
        locale: MessageLocale = .ru, messageDomain: String = "leadwire.localhost"
    ) throws {
        var config = Database.Configuration(path: path)
        config.schema = schema
        config.applicationName = "report-service"
        config.integrityCheckSeconds = integrityCheckSeconds
        config.onCommit = onCommit
        db = try Database(configuration: config, migrations: Self.migrations)
        let messages = MessageQueue(db: db, domain: messageDomain, defaultLocale: locale)
        self.messages = messages
        // Another replica may have changed a template, or a plan a contractor here follows.
        db.onOtherWriters { [weak self] c in
            messages.forgetTemplates()
            try self?.catchUp(c)
        }
        db.beforeEachCommit { [weak self] c in
            let last = try c.first("SELECT COALESCE(MAX(changed), 0) FROM plans") { $0.int(0) } ?? 0
            self?.lastPlanChangeSeen.withLockedValue { $0 = last }
        }
    }
}

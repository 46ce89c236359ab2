import Dispatch
import NIOConcurrencyHelpers

/// One versioned schema step. Migrations run in order, each in its own transaction, at start-up and
/// before a service listens.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let sql: String
    /// The same change where PostgreSQL needs other SQL than the dialect's rewriting gives (SQLite's
    /// FTS5 tables and their triggers against pg_trgm indexes, say).
    public let postgresSQL: String?

    public init(_ version: Int, _ name: String, _ sql: String, postgres: String? = nil) {
        self.version = version
        self.name = name
        self.sql = sql
        self.postgresSQL = postgres
    }
}

/// A service's database: one SQLite file in WAL mode (the embedded default), or a schema in a
/// PostgreSQL database (`postgres://` URL). Either way one writer connection on its own serial queue
/// and a few read-only connections on theirs. Both engines' calls block, so none of them runs on an
/// event loop or on the Swift concurrency pool.
///
/// Writes are group-committed: every write waiting when the writer becomes free runs in one
/// transaction, and none is answered before the COMMIT returns; one failing write rolls back alone
/// (see `commit`). With `synchronous=FULL` in WAL mode, SQLite syncs the WAL on every COMMIT
/// (sqlite.org/pragma.html#pragma_synchronous), so an answered write survives a crash or power loss;
/// PostgreSQL does the same with its default `synchronous_commit=on` (and, with a synchronous
/// standby configured, waits for it too). The sync is shared by the whole batch, which is where
/// the throughput comes from.
///
/// On PostgreSQL several processes (replicas) may share a service's tables. Their transactions
/// are serialised: each group commit first bumps the one row of `leadwire_writes`, and the row lock
/// makes the next replica's transaction wait until this one commits. So every transaction sees all
/// that committed before it — registration numbers, ids, idempotency keys and client matching stay
/// as exact as on one SQLite writer. The version in that row also tells a replica that others wrote
/// since its own last transaction: the store's `onOtherWriters` handler then reloads what it keeps in
/// memory, inside the transaction, before any of its writes runs; a poll (every 200 ms) does the same
/// for a replica that is only reading.
public final class Database: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// A SQLite file's path, or a PostgreSQL URL (`postgres://` or `postgresql://`, libpq's
        /// syntax: several hosts and `target_session_attrs=read-write` find the primary).
        public var path: String
        /// PostgreSQL only: the schema holding the service's tables (created if missing), so the
        /// three services can share one database.
        public var schema = "public"
        /// PostgreSQL only: how the connections name themselves in `pg_stat_activity`.
        public var applicationName = "leadwire"
        public var readers = 2
        /// Upper bound on writes per transaction, to bound latency and memory.
        public var maxBatch = 512
        /// Told the number of writes in each committed transaction (for metrics), on the writer queue.
        public var onCommit: (@Sendable (Int) -> Void)?
        /// Seconds `PRAGMA quick_check` may take at start (0 = skip it, for huge files); past them
        /// the service starts unchecked and says so.
        public var integrityCheckSeconds: Double = 30

        public init(path: String) {
            self.path = path
        }
    }

    /// Counters for tests, benchmarks and metrics.
    public struct Stats: Sendable {
        public var transactions = 0
        public var writes = 0
        public var largestBatch = 0
    }

    /// The SQLite file, or the PostgreSQL URL without its password: for logs and messages.
    public let path: String
    public let isPostgres: Bool
    /// PostgreSQL: the URL as given (with its password) and the schema, for leases' connections.
    private let url: String
    private let schema: String
    private let writerQueue = DispatchQueue(label: "leadwire.store.writer")
    // Confined to writerQueue.
    nonisolated(unsafe) private let writer: Connection
    private let readers: [(queue: DispatchQueue, connection: Connection)]
    private let nextReader = NIOLockedValueBox(0)
    private let maxBatch: Int
    private let onCommit: (@Sendable (Int) -> Void)?

    private struct Pending {
        var jobs: [WriteJob] = []
        var draining = false
        var stats = Stats()
        /// PostgreSQL: `leadwire_writes.version` after this process's last committed transaction.
        var knownVersion: Int64 = 0
    }
    private let otherWriters = NIOLockedValueBox<(@Sendable (Connection) throws -> Void)?>(nil)
    private let committing = NIOLockedValueBox<(@Sendable (Connection) throws -> Void)?>(nil)
    private var follower: DispatchSourceTimer?
    private let pending = NIOLockedValueBox(Pending())
    private let corruption = NIOLockedValueBox<StoreError?>(nil)
    private let transactionObserver = NIOLockedValueBox<(@Sendable (Connection, TransactionOutcome) -> Void)?>(nil)

    /// How a group commit ended, for state kept beside the database (see `observeTransactions`).
    public enum TransactionOutcome: Sendable {
        /// COMMIT returned: every write that did not throw is durable.
        case committed
        /// The whole transaction was rolled back: no write of the batch is in the database.
        case rolledBack
    }

    /// What the start-up check found: true = checked and sound, false = skipped or out of time.
    public private(set) var integrityChecked = false

    /// The first corruption error a read or write met since start (nil = none): the file needs a restore.
    public var corruptionSeen: StoreError? { corruption.withLockedValue { $0 } }

    private func note(_ error: any Error) {
        guard let e = error as? StoreError else { return }
        if e.isConnectionLost { unreachable.withLockedValue { $0 = e } }
        guard e.isCorruption else { return }
        corruption.withLockedValue { if $0 == nil { $0 = e } }
    }

    /// PostgreSQL: the error of the last attempt to reach the server, while it cannot be reached
    /// (nil once a statement went through again). The services turn NOT_SERVING meanwhile.
    public var unreachableBecause: StoreError? { unreachable.withLockedValue { $0 } }
    private let unreachable = NIOLockedValueBox<StoreError?>(nil)
    private func reached() {
        if isPostgres { unreachable.withLockedValue { $0 = nil } }
    }

    /// Whether `location` names a PostgreSQL database rather than a SQLite file.
    public static func isPostgresURL(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    public init(configuration: Configuration, migrations: [Migration]) throws {
        isPostgres = Database.isPostgresURL(configuration.path)
        url = configuration.path
        schema = configuration.schema
        path = isPostgres ? Database.redacted(configuration.path) : configuration.path
        maxBatch = max(1, configuration.maxBatch)
        onCommit = configuration.onCommit
        var readers = [(DispatchQueue, Connection)]()
        if isPostgres {
            let url = configuration.path
            let schema = configuration.schema
            let writer = try PostgresConnection(url: url, schema: schema, applicationName: configuration.applicationName)
            self.writer = Connection(.postgres(writer))
            integrityChecked = true
            try Database.migrate(self.writer, migrations, schema: schema)
            let version = try self.writer.first("SELECT version FROM leadwire_writes WHERE id = 1") { $0.int(0) } ?? 0
            pending.withLockedValue { $0.knownVersion = version }
            for _ in 0..<max(1, configuration.readers) {
                let c = try PostgresConnection(url: url, schema: schema, applicationName: configuration.applicationName)
                readers.append((DispatchQueue(label: "leadwire.store.reader.\(readers.count)"), Connection(.postgres(c))))
            }
        } else {
            let writer: SQLiteConnection
            (writer, integrityChecked) = try Database.openWriter(path: path, checkSeconds: configuration.integrityCheckSeconds)
            try writer.execute("PRAGMA synchronous=FULL")
            try writer.execute("PRAGMA foreign_keys=ON")
            // When a write of a group commit fails, the others run again each in its own savepoint, and
            // a savepoint journals the original of every page it changes. In a temporary file (the
            // default) that is a 4 KiB write per page; in memory it is a copy.
            try writer.execute("PRAGMA temp_store=MEMORY")
            self.writer = Connection(.sqlite(writer))
            try Database.migrate(self.writer, migrations, schema: nil)
            for i in 0..<max(1, configuration.readers) {
                let c = try SQLiteConnection(path: configuration.path, readOnly: true)
                try c.execute("PRAGMA foreign_keys=ON")
                // Searches read hundreds of rows at once (the catalogue's candidates): from a page
                // cache of up to 16 MiB and the file mapped, rather than a pread per page.
                try c.execute("PRAGMA cache_size=-16384")
                try c.execute("PRAGMA mmap_size=268435456")
                readers.append((DispatchQueue(label: "leadwire.store.reader.\(i)"), Connection(.sqlite(c))))
            }
        }
        self.readers = readers
        if isPostgres { followOtherWriters() }
    }

    deinit {
        follower?.cancel()
    }

    /// A PostgreSQL URL without its password.
    static func redacted(_ url: String) -> String {
        guard let scheme = url.firstRange(of: "://"), let at = url[scheme.upperBound...].firstIndex(of: "@") else { return url }
        let userInfo = url[scheme.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }

    /// A stable 64-bit key for a PostgreSQL advisory lock (FNV-1a of the name).
    static func lockKey(_ name: String) -> Int64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return Int64(bitPattern: h)
    }

    /// The writer connection in WAL mode, after `PRAGMA quick_check` (bounded by `checkSeconds`;
    /// 0 skips it). A damaged file refuses to open, naming itself and the restore procedure.
    private static func openWriter(path: String, checkSeconds: Double) throws -> (SQLiteConnection, Bool) {
        do {
            let c = try SQLiteConnection(path: path, readOnly: false)
            try c.execute("PRAGMA journal_mode=WAL")
            guard checkSeconds > 0 else { return (c, false) }
            // nil: out of time (a large file); it serves unchecked, and run-time errors will tell.
            guard let problems = try c.quickCheck(seconds: checkSeconds) else { return (c, false) }
            guard problems.isEmpty else {
                throw StoreError.damaged(
                    path: path, problems.joined(separator: "; ").split(whereSeparator: \.isNewline).joined(separator: " "))
            }
            return (c, true)
        } catch let e as StoreError where e.isCorruption {
            throw e.description.hasPrefix("the database ") ? e : StoreError.damaged(path: path, e.message)
        }
    }

    public var stats: Stats { pending.withLockedValue { $0.stats } }

    /// Calls `observer` on the writer queue at the end of every transaction, after COMMIT (or the
    /// rollback) and before any of its writes is answered. A store that keeps working state in memory
    /// publishes it to readers on `.committed` and rebuilds it from the connection on `.rolledBack`,
    /// so readers never see a change that is not durable. Set once, before the first write.
    public func observeTransactions(_ observer: @escaping @Sendable (Connection, TransactionOutcome) -> Void) {
        transactionObserver.withLockedValue { $0 = observer }
    }

    /// PostgreSQL: called on the writer queue inside a write transaction, before any of its writes,
    /// when another process wrote the service's tables since this one's last transaction. A store
    /// that keeps state in memory reloads it from `Connection` here (and publishes it on commit). Set
    /// once, before the first write.
    public func onOtherWriters(_ handler: @escaping @Sendable (Connection) throws -> Void) {
        otherWriters.withLockedValue { $0 = handler }
    }

    /// PostgreSQL: called on the writer queue at the end of every write transaction, before COMMIT
    /// (where no other replica can have written since it began): to note how far the tables go.
    public func beforeEachCommit(_ hook: @escaping @Sendable (Connection) throws -> Void) {
        committing.withLockedValue { $0 = hook }
    }

    /// PostgreSQL: notices other replicas' writes while this one has none to make (a replica that
    /// only reads would otherwise serve its memory's state until its next write), and whether the
    /// server can be reached at all.
    private func followOtherWriters() {
        let timer = DispatchSource.makeTimerSource(queue: readers[0].queue)
        nonisolated(unsafe) let c = readers[0].connection
        timer.schedule(deadline: .now() + .milliseconds(200), repeating: .milliseconds(200))
        timer.setEventHandler { [weak self] in
            // Always polled on PostgreSQL, handler or not: this is also what finds the server gone
            // (and back) while no call is made, which health reports.
            guard let self else { return }
            let version: Int64?
            do {
                version = try c.first("SELECT version FROM leadwire_writes WHERE id = 1", map: { $0.int(0) })
                self.reached()
            } catch {
                self.note(error)
                return
            }
            guard let v = version else { return }
            let (known, busy) = self.pending.withLockedValue { ($0.knownVersion, $0.draining || !$0.jobs.isEmpty) }
            // An empty write: its transaction finds the version moved and runs the handler.
            if v != known && !busy && self.otherWriters.withLockedValue({ $0 != nil }) { Task { try? await self.write { _ in } } }
        }
        follower = timer
        timer.resume()
    }

    /// Runs `body` while this process holds the lease on `name`'s work among the replicas sharing
    /// the database (a PostgreSQL session lock on a connection of its own): the outbox relay and the
    /// mailer run in one replica at a time, and another takes over within a few seconds when that
    /// one dies or loses the database. On SQLite there is one process: `body` just runs. Returns
    /// when `body` does; `body` is cancelled when the lease is lost, and run again once it is back.
    public func whileLeading(
        _ name: String, onChange: (@Sendable (Bool) -> Void)? = nil, _ body: @escaping @Sendable () async throws -> Void
    )
        async throws
    {
        guard isPostgres else { return try await body() }
        final class Lease: @unchecked Sendable {
            // Used on `queue` only.
            var connection: PostgresConnection?
            let queue = DispatchQueue(label: "leadwire.store.lease")
            func on<T: Sendable>(_ work: @escaping @Sendable (Lease) -> T) async -> T {
                await withCheckedContinuation { cont in queue.async { cont.resume(returning: work(self)) } }
            }
        }
        let key = Database.lockKey("leadwire.lease.\(schema).\(name)")
        let (url, schema) = (self.url, self.schema)
        while !Task.isCancelled {
            let lease = Lease()
            let held = await lease.on { l in
                guard let c = try? PostgresConnection(url: url, schema: schema, applicationName: "leadwire-lease-\(name)") else {
                    return false
                }
                l.connection = c
                return (try? Connection(.postgres(c)).first("SELECT pg_try_advisory_lock(?)", key) { $0.bool(0) }) ?? false
            }
            guard held else {
                await lease.on { $0.connection = nil }
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            onChange?(true)
            let finished = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await body()
                    return true
                }
                group.addTask {
                    // The lock lives as long as its session: a failed ping means it may be gone.
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(1))
                        let alive = await lease.on { l in (try? l.connection?.execute("SELECT 1")) != nil }
                        if !alive { return false }
                    }
                    return true
                }
                let first = try await group.next() ?? true
                group.cancelAll()
                return first
            }
            onChange?(false)
            await lease.on { $0.connection = nil }
            if finished { return }
        }
    }

    /// The schema version on disk.
    public func schemaVersion() async throws -> Int {
        try await read { db in try db.first("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") { Int($0.int(0)) } ?? 0 }
    }

    /// Runs the migrations the database has not seen, each in its own transaction. On PostgreSQL
    /// each transaction first takes an advisory lock, so replicas starting together run each step
    /// once (the others wait, then find it done); the SQL is rewritten by `PostgresDialect.schema`.
    private static func migrate(_ db: Connection, _ migrations: [Migration], schema: String?) throws {
        let known = migrations.map(\.version).max() ?? 0
        while true {
            try db.beginWrite()
            do {
                if let schema {
                    try db.run("SELECT pg_advisory_xact_lock(?)", lockKey("leadwire.migrations." + schema))
                    try db.execute("CREATE SCHEMA IF NOT EXISTS \"\(schema)\"")
                }
                let create = """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
                    )
                    """
                try db.execute(db.isPostgres ? PostgresDialect.schema(create) : create)
                if db.isPostgres {
                    try db.execute(
                        """
                        CREATE TABLE IF NOT EXISTS leadwire_writes (id BIGINT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
                        INSERT INTO leadwire_writes VALUES (1, 0) ON CONFLICT DO NOTHING
                        """)
                }
                let current = try db.first("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") { Int($0.int(0)) } ?? 0
                if current > known {
                    throw StoreError(
                        code: 1,
                        message:
                            "the database is at schema version \(current) but this build knows only up to \(known): refusing to run an older build on newer data",
                        sql: nil)
                }
                guard let m = migrations.sorted(by: { $0.version < $1.version }).first(where: { $0.version > current }) else {
                    try db.commit()
                    return
                }
                try db.execute(db.isPostgres ? PostgresDialect.schema(m.postgresSQL ?? m.sql) : m.sql)
                try db.run("INSERT INTO schema_migrations(version, name) VALUES (?, ?)", m.version, m.name)
                try db.commit()
            } catch {
                db.rollback()
                throw error
            }
        }
    }

    // MARK: Writes

    private final class WriteJob: @unchecked Sendable {
        // Set and read on the writer queue only, then handed to `done` once.
        let run: (Connection) throws -> Void
        let done: ((any Error)?) -> Void

        init(run: @escaping (Connection) throws -> Void, done: @escaping ((any Error)?) -> Void) {
            self.run = run
            self.done = done
        }
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var value: T?
    }

    /// Runs `body` in the next group commit; returns once that commit is durable. If `body` throws,
    /// only its own changes are rolled back.
    @discardableResult
    public func write<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        let box = ResultBox<T>()
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
            let job = WriteJob(run: { db in box.value = try body(db) }) { error in
                if let error { cont.resume(throwing: error) } else { cont.resume(returning: box.value!) }
            }
            let startDrain = pending.withLockedValue { p in
                p.jobs.append(job)
                if p.draining { return false }
                p.draining = true
                return true
            }
            if startDrain { writerQueue.async { self.drain() } }
        }
    }

    private func drain() {
        while true {
            let batch: [WriteJob] = pending.withLockedValue { p in
                if p.jobs.isEmpty {
                    p.draining = false
                    return []
                }
                let n = min(p.jobs.count, maxBatch)
                let batch = Array(p.jobs.prefix(n))
                p.jobs.removeFirst(n)
                return batch
            }
            if batch.isEmpty { return }
            commit(batch)
        }
    }

    /// BEGIN, and on PostgreSQL the turn among replicas (see the type's comment): returns the
    /// version this transaction will leave, after the store caught up with other writers' changes.
    private func beginBatch() throws -> Int64 {
        try writer.beginWrite()
        guard isPostgres else { return 0 }
        do {
            let version =
                try writer.first("UPDATE leadwire_writes SET version = version + 1 WHERE id = 1 RETURNING version") { $0.int(0) } ?? 0
            if version != pending.withLockedValue({ $0.knownVersion }) + 1, let handler = otherWriters.withLockedValue({ $0 }) {
                try handler(writer)
            }
            return version
        } catch {
            writer.rollback()
            throw error
        }
    }

    private func commit(_ batch: [WriteJob]) {
        var outcomes = [(any Error)?](repeating: nil, count: batch.count)
        let observer = transactionObserver.withLockedValue { $0 }
        var version: Int64
        do {
            version = try beginBatch()
        } catch {
            note(error)
            for j in batch { j.done(error) }
            return
        }
        // First without savepoints: a savepoint journals the original of every page it changes
        // (a 4 KiB copy per page, ~16 pages for a new lead), and it is needed only when a write
        // fails. Then the batch is rolled back and run again with each write in its own savepoint,
        // without the failed one (whose error is its answer), so one failure undoes nothing else.
        var failed: Int?
        for (i, job) in batch.enumerated() {
            do {
                try job.run(writer)
            } catch {
                note(error)
                outcomes[i] = error
                failed = i
                break
            }
        }
        if let failed {
            writer.rollback()
            observer?(writer, .rolledBack)
            do {
                version = try beginBatch()
            } catch {
                note(error)
                for (i, j) in batch.enumerated() { j.done(outcomes[i] ?? error) }
                return
            }
            for (i, job) in batch.enumerated() where i != failed {
                do {
                    try writer.run("SAVEPOINT write")
                    try job.run(writer)
                    try writer.run("RELEASE write")
                } catch {
                    note(error)
                    outcomes[i] = error
                    do {
                        try writer.run("ROLLBACK TO write")
                        try writer.run("RELEASE write")
                    } catch {
                        // The savepoint is gone only if SQLite already rolled the whole transaction back.
                    }
                }
            }
        }
        do {
            if isPostgres, let hook = committing.withLockedValue({ $0 }) { try hook(writer) }
            try writer.commit()
            reached()
            if isPostgres { pending.withLockedValue { $0.knownVersion = version } }
            observer?(writer, .committed)
        } catch {
            note(error)
            writer.rollback()
            outcomes = outcomes.map { $0 ?? error }
            observer?(writer, .rolledBack)
        }
        pending.withLockedValue { p in
            p.stats.transactions += 1
            p.stats.writes += batch.count
            p.stats.largestBatch = max(p.stats.largestBatch, batch.count)
        }
        onCommit?(batch.count)
        for (job, outcome) in zip(batch, outcomes) { job.done(outcome) }
    }

    // MARK: Reads

    /// Runs `body` on a read-only connection. It sees every write that has been answered.
    public func read<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        let i = nextReader.withLockedValue { n in
            defer { n = (n + 1) % readers.count }
            return n
        }
        let (queue, connection) = readers[i]
        nonisolated(unsafe) let c = connection
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
            queue.async {
                // One read transaction: every query in `body` sees the same snapshot.
                do {
                    try c.beginRead()
                    let r = try body(c)
                    try c.commit()
                    self.reached()
                    cont.resume(returning: r)
                } catch {
                    self.note(error)
                    c.rollback()
                    cont.resume(throwing: error)
                }
            }
        }
    }

    /// At shutdown: waits for the queued writes, then (SQLite) checkpoints the WAL into the database file and
    /// truncates it, so the file alone holds everything (what an operator copies or inspects after a
    /// stop is complete, whatever else the process still holds when it exits).
    public func close() async {
        await flush()
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            writerQueue.async {
                // A failure leaves the WAL in place, which SQLite replays on the next open: nothing is lost.
                if !self.isPostgres { try? self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
                cont.resume()
            }
        }
    }

    /// Waits until every write queued so far is committed (for orderly shutdown).
    public func flush() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            writerQueue.async { cont.resume() }
        }
        while pending.withLockedValue({ $0.draining || !$0.jobs.isEmpty }) {
            await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
                writerQueue.async { cont.resume() }
            }
        }
    }
}

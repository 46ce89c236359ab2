import CSQLite
import Dispatch

/// SQLITE_STATIC (a null destructor): SQLite reads the bound bytes where they are, without a copy of
/// its own. Only bytes that outlive the statement's run are bound so (see `Statement.withValues`).
private let unmanaged: sqlite3_destructor_type? = nil

/// One prepared statement, finalized in `deinit`. Belongs to one connection.
final class Statement {
    let raw: OpaquePointer
    let sql: String

    init(connection: OpaquePointer, sql: String) throws {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            throw StoreError(code: rc, message: String(cString: sqlite3_errmsg(connection)), sql: sql)
        }
        self.raw = stmt
        self.sql = sql
    }

    deinit {
        sqlite3_finalize(raw)
    }

    /// Binds `values` (from parameter 1) and runs `body`, which steps the statement; the statement
    /// is reset and its parameters cleared before this returns.
    ///
    /// Text and blobs are copied into one buffer that lives for the call and bound without SQLite's
    /// own copy: binding with SQLITE_TRANSIENT made SQLite allocate, copy and later free every value
    /// (~400 instructions each, 20 values per lead). The buffer is this call's own, so a statement
    /// run inside `body` (a query in a row's mapping) cannot disturb values this one still reads;
    /// the parameters are cleared before the buffer goes, so no pointer into it is left behind.
    func withValues<R>(_ values: [SQLValue], _ body: () throws -> R) throws -> R {
        sqlite3_reset(raw)
        var bytes = 0
        for v in values {
            switch v {
            case .text(let s): bytes += s.utf8.count
            case .blob(let b): bytes += b.count
            default: break
            }
        }
        return try withUnsafeTemporaryAllocation(byteCount: max(bytes, 1), alignment: 1) { buffer in
            defer {
                sqlite3_reset(raw)
                sqlite3_clear_bindings(raw)
            }
            // Every parameter is bound below when all are given; fewer, and the rest are NULL
            // (cleared on the way out of the previous run).
            var offset = 0
            for (i, v) in values.enumerated() {
                let idx = Int32(i + 1)
                let rc: Int32
                switch v {
                case .null: rc = sqlite3_bind_null(raw, idx)
                case .integer(let n): rc = sqlite3_bind_int64(raw, idx, n)
                case .real(let d): rc = sqlite3_bind_double(raw, idx, d)
                case .text(let s):
                    // With its length, so SQLite does not scan for a terminator. An empty value still
                    // gets a non-null pointer: a null one would bind NULL.
                    let n = s.utf8.count
                    UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]).copyBytes(from: s.utf8)
                    rc = sqlite3_bind_text(raw, idx, buffer.baseAddress! + offset, Int32(n), unmanaged)
                    offset += n
                case .blob(let b):
                    if b.isEmpty {
                        rc = sqlite3_bind_zeroblob(raw, idx, 0)
                    } else {
                        let n = b.count
                        UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]).copyBytes(from: b)
                        rc = sqlite3_bind_blob(raw, idx, buffer.baseAddress! + offset, Int32(n), unmanaged)
                        offset += n
                    }
                }
                guard rc == SQLITE_OK else { throw error(rc) }
            }
            return try body()
        }
    }

    func error(_ rc: Int32) -> StoreError {
        StoreError(code: rc, message: String(cString: sqlite3_errmsg(sqlite3_db_handle(raw))), sql: sql)
    }
}

/// A row of a SQLite statement: columns by index, valid until the next step.
struct SQLiteRow {
    let stmt: OpaquePointer

    func isNull(_ i: Int32) -> Bool { sqlite3_column_type(stmt, i) == SQLITE_NULL }
    func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
    func double(_ i: Int32) -> Double { sqlite3_column_double(stmt, i) }
    func bool(_ i: Int32) -> Bool { sqlite3_column_int64(stmt, i) != 0 }

    func string(_ i: Int32) -> String {
        guard let p = sqlite3_column_text(stmt, i) else { return "" }
        return String(cString: p)
    }

    func column(named name: String) -> Int32 {
        for i in 0..<sqlite3_column_count(stmt) where String(cString: sqlite3_column_name(stmt, i)) == name { return i }
        return -1
    }

    func blob(_ i: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(stmt, i))
        guard n > 0, let p = sqlite3_column_blob(stmt, i) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
}

/// A connection's prepared statements by their SQL text: an open-addressed table (linear probing,
/// at most half full) hashed by the text's length and two eight-byte words of it, from the middle
/// and the end, where a lead's statements differ. Every statement run looks its text up here (eight
/// to twelve per lead); a `Dictionary` keyed by the text cost ~850 instructions a look-up (a seeded
/// SipHash over three words, exclusivity checks on the dictionary), this ~350. The texts are the
/// program's own (values are bound, never spliced), so an unseeded hash is safe; texts that agree on
/// all three still find their own statement, by the full comparison.
struct StatementCache {
    private var slots = [Statement?](repeating: nil, count: 64)
    private(set) var count = 0

    static func hash(_ sql: String) -> Int {
        var sql = sql
        return sql.withUTF8 { bytes in
            var h = UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15
            if bytes.count >= 8, let base = UnsafeRawPointer(bytes.baseAddress) {
                h ^= base.loadUnaligned(fromByteOffset: bytes.count / 2 - 4, as: UInt64.self) &* 0xC2B2_AE3D_27D4_EB4F
                h ^= base.loadUnaligned(fromByteOffset: bytes.count - 8, as: UInt64.self) &* 0x1656_67B1_9E37_79F9
            }
            return Int(truncatingIfNeeded: h ^ (h >> 29))
        }
    }

    subscript(sql: String) -> Statement? {
        let mask = slots.count - 1
        var i = Self.hash(sql) & mask
        while let s = slots[i] {
            if s.sql == sql { return s }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Adds a statement whose text is not in the table yet.
    mutating func insert(_ statement: Statement) {
        if (count + 1) * 2 > slots.count {
            let old = slots
            slots = [Statement?](repeating: nil, count: old.count * 2)
            count = 0
            for case let s? in old { insert(s) }
        }
        let mask = slots.count - 1
        var i = Self.hash(statement.sql) & mask
        while slots[i] != nil { i = (i + 1) & mask }
        slots[i] = statement
        count += 1
    }

    mutating func removeAll() {
        slots = [Statement?](repeating: nil, count: 64)
        count = 0
    }
}

/// Settings for the whole process, made once before the first connection opens (SQLite takes them
/// only before it initializes itself).
private let processSettings: Void = { _ = leadwire_sqlite3_disable_memstatus() }()

/// One SQLite connection with a statement cache. Not thread-safe: `Database` confines each
/// connection to its own serial queue.
final class SQLiteConnection {
    let raw: OpaquePointer
    // Unchecked: the connection is confined to one queue (see above), so the dynamic exclusivity
    // check on every look-up (~130 instructions) could never fire.
    @exclusivity(unchecked) private var statements = StatementCache()

    init(path: String, readOnly: Bool) throws {
        _ = processSettings
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw StoreError(code: rc, message: "\(message): \(path)", sql: nil)
        }
        raw = db
        sqlite3_extended_result_codes(db, 1)
        // Another process (a backup, sqlite3 CLI) may hold a lock briefly.
        sqlite3_busy_timeout(db, 5000)
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(raw)
    }

    /// Runs SQL without results (may hold several statements).
    func execute(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(raw, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let message = err.map { String(cString: $0) } ?? "error"
            sqlite3_free(err)
            throw StoreError(code: rc, message: message, sql: sql)
        }
    }

    private func statement(_ sql: String) throws -> Statement {
        if let s = statements[sql] { return s }
        let s = try Statement(connection: raw, sql: sql)
        statements.insert(s)
        return s
    }

    /// Runs one statement; returns the number of rows it changed.
    func run(_ sql: String, _ values: [SQLValue]) throws -> Int {
        let s = try statement(sql)
        return try s.withValues(values) {
            var rc = sqlite3_step(s.raw)
            while rc == SQLITE_ROW { rc = sqlite3_step(s.raw) }
            guard rc == SQLITE_DONE else { throw s.error(rc) }
            return Int(sqlite3_changes(raw))
        }
    }

    /// Runs a query, mapping each row.
    func query<T>(_ sql: String, values: [SQLValue], map: (SQLiteRow) throws -> T) throws -> [T] {
        let s = try statement(sql)
        return try s.withValues(values) {
            var out = [T]()
            while true {
                let rc = sqlite3_step(s.raw)
                if rc == SQLITE_DONE { break }
                guard rc == SQLITE_ROW else { throw s.error(rc) }
                out.append(try map(SQLiteRow(stmt: s.raw)))
            }
            return out
        }
    }

    /// The first row, mapped; the rest are never stepped to (a DML statement's changes are all
    /// made by its first step, RETURNING or not).
    func first<T>(_ sql: String, values: [SQLValue], map: (SQLiteRow) throws -> T) throws -> T? {
        let s = try statement(sql)
        return try s.withValues(values) {
            let rc = sqlite3_step(s.raw)
            if rc == SQLITE_DONE { return nil }
            guard rc == SQLITE_ROW else { throw s.error(rc) }
            return try map(SQLiteRow(stmt: s.raw))
        }
    }

    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(raw) }

    /// `PRAGMA quick_check`, interrupted after `seconds`: the problems it lists (empty = none), or
    /// nil when it ran out of time.
    func quickCheck(seconds: Double) throws -> [String]? {
        final class Deadline {
            let at: UInt64
            init(_ at: UInt64) { self.at = at }
        }
        let deadline = Deadline(DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9))
        let token = Unmanaged.passRetained(deadline)
        defer { token.release() }
        sqlite3_progress_handler(
            raw, 10_000,
            { p in
                let d = Unmanaged<Deadline>.fromOpaque(p!).takeUnretainedValue()
                return DispatchTime.now().uptimeNanoseconds > d.at ? 1 : 0
            }, token.toOpaque())
        defer { sqlite3_progress_handler(raw, 0, nil, nil) }
        do {
            let lines = try query("PRAGMA quick_check(20)", values: []) { $0.string(0) }
            return lines == ["ok"] ? [] : lines
        } catch let e as StoreError where e.code & 0xFF == SQLITE_INTERRUPT {
            return nil
        }
    }
}

import CSQLite
import Dispatch

/// SQLITE_TRANSIENT is a macro Swift cannot import: SQLite copies the bound bytes.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One prepared statement, finalized in `deinit`. Belongs to one connection.
final class Statement {
    let raw: OpaquePointer
    let sql: String
    let parameterCount: Int

    init(connection: OpaquePointer, sql: String) throws {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            throw StoreError(code: rc, message: String(cString: sqlite3_errmsg(connection)), sql: sql)
        }
        self.raw = stmt
        self.sql = sql
        self.parameterCount = Int(sqlite3_bind_parameter_count(stmt))
    }

    deinit {
        sqlite3_finalize(raw)
    }

    func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(raw)
        // Every parameter is bound below when all are given, so clearing would only repeat work.
        if values.count < parameterCount { sqlite3_clear_bindings(raw) }
        for (i, v) in values.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(raw, idx)
            case .integer(let n): rc = sqlite3_bind_int64(raw, idx, n)
            case .real(let d): rc = sqlite3_bind_double(raw, idx, d)
            case .text(var s):
                // With its length, so SQLite does not scan for the terminator. An empty value has no
                // storage, and a null pointer would bind NULL: bound as empty explicitly (as blobs).
                rc =
                    s.isEmpty
                    ? sqlite3_bind_text(raw, idx, "", 0, transient)
                    : s.withUTF8 { sqlite3_bind_text(raw, idx, $0.baseAddress, Int32($0.count), transient) }
            case .blob(let b):
                rc =
                    b.isEmpty
                    ? sqlite3_bind_zeroblob(raw, idx, 0)
                    : b.withUnsafeBytes { sqlite3_bind_blob(raw, idx, $0.baseAddress, Int32($0.count), transient) }
            }
            guard rc == SQLITE_OK else { throw error(rc) }
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

/// Settings for the whole process, made once before the first connection opens (SQLite takes them
/// only before it initializes itself).
private let processSettings: Void = { _ = leadwire_sqlite3_disable_memstatus() }()

/// One SQLite connection with a statement cache. Not thread-safe: `Database` confines each
/// connection to its own serial queue.
final class SQLiteConnection {
    let raw: OpaquePointer
    private var statements: [String: Statement] = [:]

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
        statements[sql] = s
        return s
    }

    /// Runs one statement; returns the number of rows it changed.
    func run(_ sql: String, _ values: [SQLValue]) throws -> Int {
        let s = try statement(sql)
        try s.bind(values)
        defer { sqlite3_reset(s.raw) }
        var rc = sqlite3_step(s.raw)
        while rc == SQLITE_ROW { rc = sqlite3_step(s.raw) }
        guard rc == SQLITE_DONE else { throw s.error(rc) }
        return Int(sqlite3_changes(raw))
    }

    /// Runs a query, mapping each row.
    func query<T>(_ sql: String, values: [SQLValue], map: (SQLiteRow) throws -> T) throws -> [T] {
        let s = try statement(sql)
        try s.bind(values)
        defer { sqlite3_reset(s.raw) }
        var out = [T]()
        while true {
            let rc = sqlite3_step(s.raw)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw s.error(rc) }
            out.append(try map(SQLiteRow(stmt: s.raw)))
        }
        return out
    }

    /// The first row, mapped; the rest are never stepped to (a DML statement's changes are all
    /// made by its first step, RETURNING or not).
    func first<T>(_ sql: String, values: [SQLValue], map: (SQLiteRow) throws -> T) throws -> T? {
        let s = try statement(sql)
        try s.bind(values)
        defer { sqlite3_reset(s.raw) }
        let rc = sqlite3_step(s.raw)
        if rc == SQLITE_DONE { return nil }
        guard rc == SQLITE_ROW else { throw s.error(rc) }
        return try map(SQLiteRow(stmt: s.raw))
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

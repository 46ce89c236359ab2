import CSQLite

/// The one error type of the storage layer. Carries the engine's code (SQLite's result code, or
/// PostgreSQL's SQLSTATE), its message and the SQL text, never the bound values (they may hold
/// personal data).
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var sql: String?
    /// PostgreSQL's five-character SQLSTATE; nil for SQLite errors. A connection that could not be
    /// made or was lost is "08006" (connection_failure), as libpq reports no state for it.
    public var sqlstate: String?

    public init(code: Int32, message: String, sql: String?, sqlstate: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
        self.sqlstate = sqlstate
    }

    public var isConstraintViolation: Bool {
        if let sqlstate { return sqlstate.hasPrefix("23") }
        return code & 0xFF == SQLITE_CONSTRAINT
    }
    public var isBusy: Bool { sqlstate == nil && code & 0xFF == SQLITE_BUSY }
    /// The file (or PostgreSQL's data) is damaged: only a restore helps.
    public var isCorruption: Bool {
        if let sqlstate { return sqlstate == "XX001" || sqlstate == "XX002" }
        return code & 0xFF == SQLITE_CORRUPT || code & 0xFF == SQLITE_NOTADB
    }
    /// The database server is unreachable, restarting or read-only after a failover: the write did
    /// not happen (or its outcome is unknown, when the connection dropped during COMMIT) and a retry
    /// with the same idempotency key is safe.
    public var isConnectionLost: Bool {
        guard let sqlstate else { return false }
        return sqlstate.hasPrefix("08") || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03" || sqlstate == "25006"
    }

    public var description: String {
        if isDamage { return message }
        let engine = sqlstate.map { "PostgreSQL error \($0)" } ?? "SQLite error \(code)"
        return "\(engine): \(message)" + (sql.map { " (in: \($0))" } ?? "")
    }

    private var isDamage: Bool { isCorruption && sql == nil && message.hasPrefix("the database ") }

    /// A damaged file, found at start: names the file and the way out.
    static func damaged(path: String, _ problems: String) -> StoreError {
        StoreError(
            code: SQLITE_CORRUPT,
            message:
                "the database \(path) is damaged (\(problems)): stop the service and restore the file from a backup, as docs/operations.md \"Restoring from a backup\" describes (--skip-integrity-check starts without this check)",
            sql: nil)
    }
}

/// A value bound to or read from a statement.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

public protocol SQLBindable {
    var sqlValue: SQLValue { get }
}

extension Int: SQLBindable { @inlinable public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Int64: SQLBindable { @inlinable public var sqlValue: SQLValue { .integer(self) } }
extension Int32: SQLBindable { @inlinable public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Double: SQLBindable { @inlinable public var sqlValue: SQLValue { .real(self) } }
extension String: SQLBindable { @inlinable public var sqlValue: SQLValue { .text(self) } }
extension Bool: SQLBindable { @inlinable public var sqlValue: SQLValue { .integer(self ? 1 : 0) } }
extension SQLValue: SQLBindable { @inlinable public var sqlValue: SQLValue { self } }
extension Optional: SQLBindable where Wrapped: SQLBindable {
    @inlinable public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}
extension Array: SQLBindable where Element == UInt8 { @inlinable public var sqlValue: SQLValue { .blob(self) } }

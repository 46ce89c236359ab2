/// A connection to the service's database, on whichever engine it runs: what a store's read or
/// write closure is handed. The SQL is written once, in SQLite's dialect; on PostgreSQL each
/// statement is rewritten once when first prepared (`PostgresDialect`).
public final class Connection {
    enum Engine {
        case sqlite(SQLiteConnection)
        case postgres(PostgresConnection)
    }

    let engine: Engine

    init(_ engine: Engine) {
        self.engine = engine
    }

    public var isPostgres: Bool {
        if case .postgres = engine { return true }
        return false
    }

    /// Runs SQL without results (may hold several statements).
    public func execute(_ sql: String) throws {
        switch engine {
        case .sqlite(let c): try c.execute(sql)
        case .postgres(let c): try c.execute(sql)
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    @discardableResult
    @inlinable
    public func run<each V: SQLBindable>(_ sql: String, _ values: repeat each V) throws -> Int {
        try run(sql, values: Self.bound(repeat each values))
    }

    /// A statement's values in the order they bind, in one array sized for them.
    @inlinable
    static func bound<each V: SQLBindable>(_ values: repeat each V) -> [SQLValue] {
        var count = 0
        for _ in repeat each values { count += 1 }
        var array = [SQLValue]()
        array.reserveCapacity(count)
        for v in repeat each values { array.append(v.sqlValue) }
        return array
    }

    @discardableResult
    public func run(_ sql: String, values: [SQLValue]) throws -> Int {
        switch engine {
        case .sqlite(let c): return try c.run(sql, values)
        case .postgres(let c): return try c.run(sql, values) { PostgresConnection.changes($0) }
        }
    }

    /// Runs a query, mapping each row.
    @inlinable
    public func query<T, each V: SQLBindable>(_ sql: String, _ values: repeat each V, map: (Row) throws -> T) throws -> [T] {
        try query(sql, values: Self.bound(repeat each values), map: map)
    }

    public func query<T>(_ sql: String, values: [SQLValue], map: (Row) throws -> T) throws -> [T] {
        switch engine {
        case .sqlite(let c):
            return try c.query(sql, values: values) { try map(Row(.sqlite($0))) }
        case .postgres(let c):
            return try c.run(sql, values) { result in
                let n = PostgresConnection.rows(result)
                var out = [T]()
                out.reserveCapacity(Int(n))
                for i in 0..<n { out.append(try map(Row(.postgres(PostgresRow(result: result, row: i))))) }
                return out
            }
        }
    }

    @inlinable
    public func first<T, each V: SQLBindable>(_ sql: String, _ values: repeat each V, map: (Row) throws -> T) throws -> T? {
        try first(sql, values: Self.bound(repeat each values), map: map)
    }

    /// The first row, mapped, or nil: on SQLite without collecting the rows into an array first.
    public func first<T>(_ sql: String, values: [SQLValue], map: (Row) throws -> T) throws -> T? {
        switch engine {
        case .sqlite(let c): return try c.first(sql, values: values) { try map(Row(.sqlite($0))) }
        case .postgres: return try query(sql, values: values, map: map).first
        }
    }

    /// The id of the row the last INSERT made through this connection (an `INTEGER PRIMARY KEY`
    /// without a value given).
    public func lastInsertRowID() throws -> Int64 {
        switch engine {
        case .sqlite(let c): return c.lastInsertRowID
        case .postgres: return try first("SELECT lastval()") { $0.int(0) } ?? 0
        }
    }

    // MARK: Transactions (used by Database)

    func beginWrite() throws {
        switch engine {
        case .sqlite(let c): _ = try c.run("BEGIN IMMEDIATE", [])
        case .postgres(let c): try c.begin(readOnly: false)
        }
    }

    func beginRead() throws {
        switch engine {
        case .sqlite(let c): _ = try c.run("BEGIN", [])
        case .postgres(let c): try c.begin(readOnly: true)
        }
    }

    func commit() throws {
        switch engine {
        case .sqlite(let c): _ = try c.run("COMMIT", [])
        case .postgres(let c): try c.commit()
        }
    }

    func rollback() {
        switch engine {
        case .sqlite(let c): try? c.execute("ROLLBACK")
        case .postgres(let c): c.rollback()
        }
    }
}

/// A row being read: columns by index (in the order the SELECT names them), valid only inside the
/// `map` closure it is handed to.
public struct Row {
    enum Source {
        case sqlite(SQLiteRow)
        case postgres(PostgresRow)
    }

    let source: Source

    init(_ source: Source) {
        self.source = source
    }

    public func isNull(_ i: Int32) -> Bool {
        switch source {
        case .sqlite(let r): return r.isNull(i)
        case .postgres(let r): return r.isNull(i)
        }
    }

    public func int(_ i: Int32) -> Int64 {
        switch source {
        case .sqlite(let r): return r.int(i)
        case .postgres(let r): return r.int(i)
        }
    }

    public func double(_ i: Int32) -> Double {
        switch source {
        case .sqlite(let r): return r.double(i)
        case .postgres(let r): return r.double(i)
        }
    }

    public func bool(_ i: Int32) -> Bool { int(i) != 0 }

    public func string(_ i: Int32) -> String {
        switch source {
        case .sqlite(let r): return r.string(i)
        case .postgres(let r): return r.text(i)
        }
    }

    public func blob(_ i: Int32) -> [UInt8] {
        switch source {
        case .sqlite(let r): return r.blob(i)
        case .postgres(let r): return r.blob(i)
        }
    }

    public func optionalString(_ i: Int32) -> String? { isNull(i) ? nil : string(i) }
    public func optionalInt(_ i: Int32) -> Int64? { isNull(i) ? nil : int(i) }

    // MARK: By column name (as the SELECT names it: `SELECT n AS count` is "count")

    /// The index of the column named `name`; a name the query does not have is a programming error.
    public func column(_ name: String) -> Int32 {
        let i: Int32
        switch source {
        case .sqlite(let r): i = r.column(named: name)
        case .postgres(let r): i = r.column(named: name)
        }
        precondition(i >= 0, "the query has no column \(name)")
        return i
    }

    public func isNull(_ name: String) -> Bool { isNull(column(name)) }
    public func int(_ name: String) -> Int64 { int(column(name)) }
    public func double(_ name: String) -> Double { double(column(name)) }
    public func bool(_ name: String) -> Bool { bool(column(name)) }
    public func string(_ name: String) -> String { string(column(name)) }
    public func blob(_ name: String) -> [UInt8] { blob(column(name)) }
    public func optionalString(_ name: String) -> String? { optionalString(column(name)) }
    public func optionalInt(_ name: String) -> Int64? { optionalInt(column(name)) }
}

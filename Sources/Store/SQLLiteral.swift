/// SQL with its values written where they go: `"UPDATE leads SET owner_id = \(owner) WHERE id = \(id)"`
/// becomes the text `… owner_id = ? WHERE id = ?` and the values `[owner, id]`, bound, never spliced
/// into the text (so the statement is prepared once and no value can change what the SQL means). The
/// way GRDB's `SQL` literals and postgres-nio's `PostgresQuery` work.
///
/// Taken by `Connection.run(literal:)`, `query(literal:map:)` and `first(literal:map:)` — labelled, so
/// an interpolated string can never reach the plain-text `run(_:_:)` by accident.
public struct SQLLiteral: ExpressibleByStringInterpolation, Sendable {
    public let text: String
    public let values: [SQLValue]

    public init(stringLiteral value: String) {
        text = value
        values = []
    }

    @inlinable
    public init(stringInterpolation: StringInterpolation) {
        text = String(decoding: stringInterpolation.text, as: UTF8.self)
        values = stringInterpolation.values
    }

    /// The text is gathered as bytes and made a String once: a statement is built on every call,
    /// and appending its dozens of pieces to a String one by one cost more than running it.
    /// Inlinable, so each call site appends its values as their own types rather than through a
    /// generic call per value (~1,000 instructions a lead). Building the text is still the larger
    /// part: a statement of 19 values cost ~6,700 instructions more this way than as a fixed text,
    /// measured before its pieces were appended in one copy each (which took ~600 of that off).
    public struct StringInterpolation: StringInterpolationProtocol {
        @usableFromInline var text = [UInt8]()
        @usableFromInline var values = [SQLValue]()

        @inlinable
        public init(literalCapacity: Int, interpolationCount: Int) {
            text.reserveCapacity(literalCapacity + interpolationCount)
            values.reserveCapacity(interpolationCount)
        }

        /// Appended from the literal's UTF-8 buffer in one copy: ~30 instructions a piece fewer than
        /// `text += literal.utf8` (~170), and a message's insert has 20 pieces.
        @inlinable
        public mutating func appendLiteral(_ literal: String) {
            var literal = literal
            literal.withUTF8 { text.append(contentsOf: $0) }
        }

        /// A value: bound as a parameter.
        @inlinable
        public mutating func appendInterpolation(_ value: some SQLBindable) {
            text.append(UInt8(ascii: "?"))
            values.append(value.sqlValue)
        }

        /// An optional value: bound as a parameter, NULL when nil. (Spelled out: through the generic
        /// overload the compiler warns that an optional becomes its debug description, which it
        /// does not.)
        @inlinable
        public mutating func appendInterpolation<Value: SQLBindable>(_ value: Value?) {
            text.append(UInt8(ascii: "?"))
            values.append(value.sqlValue)
        }

        /// SQL text written by the program itself (a column list kept in one place): spliced, so
        /// never pass it anything a caller sent.
        public mutating func appendInterpolation(raw sql: StaticString) { sql.withUTF8Buffer { text += $0 } }

        public mutating func appendInterpolation(raw sql: SQLFragment) { text += sql.text.utf8 }
    }
}

/// A piece of SQL text made by the program (column lists), never from a value: what `\(raw:)`
/// splices.
public struct SQLFragment: Sendable {
    public let text: String
    public init(_ text: StaticString) { self.text = "\(text)" }
    public init(columns: [StaticString], prefix: StaticString = "") {
        text = columns.map { "\(prefix)\($0)" }.joined(separator: ", ")
    }
}

extension Connection {
    @discardableResult
    public func run(literal sql: SQLLiteral) throws -> Int { try run(sql.text, values: sql.values) }

    public func query<T>(literal sql: SQLLiteral, map: (Row) throws -> T) throws -> [T] {
        try query(sql.text, values: sql.values, map: map)
    }

    public func first<T>(literal sql: SQLLiteral, map: (Row) throws -> T) throws -> T? {
        try first(sql.text, values: sql.values, map: map)
    }

    /// Runs an INSERT into a table whose `id` is its row id, and returns the new row's id: on
    /// PostgreSQL in the same round trip (`RETURNING id`), on SQLite from the connection
    /// (`sqlite3_last_insert_rowid`: SQLite's RETURNING buffers its rows and costs more).
    public func insertReturningID(literal sql: SQLLiteral) throws -> Int64 {
        switch engine {
        case .sqlite(let c):
            _ = try c.run(sql.text, sql.values)
            return c.lastInsertRowID
        case .postgres:
            return try query(sql.text + " RETURNING id", values: sql.values) { $0.int(0) }.first ?? 0
        }
    }
}

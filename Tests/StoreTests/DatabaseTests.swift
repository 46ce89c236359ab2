import Foundation
import StoreTestSupport
import Testing

@testable import Store

/// A fresh database: a SQLite file, or a new schema when the suite runs on PostgreSQL.
func scratchConfiguration() -> Database.Configuration {
    let scratch = ScratchDatabase()
    var c = Database.Configuration(path: scratch.path)
    c.schema = scratch.schema
    return c
}

let itemsMigrations = [
    Migration(1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty INTEGER NOT NULL)"),
    Migration(2, "items.note", "ALTER TABLE items ADD COLUMN note TEXT"),
]

@Suite struct DatabaseTests {
    @Test func migrationsRunOnceAndInOrder() async throws {
        let config = scratchConfiguration()
        do {
            let db = try Database(configuration: config, migrations: [itemsMigrations[0]])
            #expect(try await db.schemaVersion() == 1)
        }
        // Reopening with one more migration applies only the new one.
        let db = try Database(configuration: config, migrations: itemsMigrations)
        #expect(try await db.schemaVersion() == 2)
        try await db.write { try $0.run("INSERT INTO items(name, qty, note) VALUES (?, ?, ?)", "a", 1, "n") }
        let applied = try await db.read {
            try $0.query("SELECT version, name FROM schema_migrations ORDER BY version") { "\($0.int(0)):\($0.string(1))" }
        }
        #expect(applied == ["1:items", "2:items.note"])
    }

    @Test func refusesToRunAnOlderSchemaOnNewerData() async throws {
        let config = scratchConfiguration()
        _ = try Database(configuration: config, migrations: itemsMigrations)
        #expect(throws: StoreError.self) { _ = try Database(configuration: config, migrations: [itemsMigrations[0]]) }
    }

    @Test func aFailingMigrationLeavesTheVersionUnchanged() async throws {
        let config = scratchConfiguration()
        _ = try Database(configuration: config, migrations: [itemsMigrations[0]])
        let broken = [itemsMigrations[0], Migration(2, "broken", "ALTER TABLE items ADD COLUMN x TEXT; SELECT * FROM no_such_table")]
        #expect(throws: StoreError.self) { _ = try Database(configuration: config, migrations: broken) }
        let db = try Database(configuration: config, migrations: itemsMigrations)
        #expect(try await db.schemaVersion() == 2)
    }

    @Test func eachTextFindsItsOwnPreparedStatement() throws {
        // More statements than the cache's first table holds (it grows), among them texts of one
        // length whose middle and last eight bytes agree (they hash alike): each runs as itself.
        let c = try SQLiteConnection(path: ":memory:", readOnly: false)
        var texts = (0..<150).map { "SELECT \($0) AS n" }
        texts += (0..<20).map { i in "SELECT \(100 + i) AS n, 'the same middle and end of the text'" }
        for _ in 0..<3 {
            for (i, sql) in texts.enumerated() {
                let expected = i < 150 ? Int64(i) : Int64(100 + i - 150)
                #expect(try c.first(sql, values: []) { $0.int(0) } == expected, "\(sql)")
            }
        }
        var cache = StatementCache()
        for sql in texts { cache.insert(try Statement(connection: c.raw, sql: sql)) }
        #expect(cache.count == texts.count)
        #expect(texts.allSatisfy { cache[$0]?.sql == $0 })
        #expect(cache["SELECT 1000 AS n"] == nil)
    }

    @Test func emptyAndNonASCIIValuesAreBoundAsGivenNotAsNull() async throws {
        let db = try Database(
            configuration: scratchConfiguration(),
            migrations: [Migration(1, "values", "CREATE TABLE v (id INTEGER PRIMARY KEY, t TEXT NOT NULL, b BLOB NOT NULL, n TEXT)")])
        let text = "Заявка № 7 — «срочно» 🚰"
        try await db.write { c in
            try c.run("INSERT INTO v(id, t, b, n) VALUES (?, ?, ?, ?)", 1, "", [UInt8](), "x")
            try c.run("INSERT INTO v(id, t, b, n) VALUES (?, ?, ?, ?)", 2, text, [UInt8]([0, 1, 0xFF]), "y")
        }
        let rows = try await db.read { c in
            try c.query("SELECT t, b, n, t IS NULL, b IS NULL FROM v ORDER BY id") {
                ($0.string(0), $0.blob(1), $0.optionalString(2), $0.bool(3), $0.bool(4))
            }
        }
        #expect(rows.map(\.0) == ["", text])
        #expect(rows.map(\.1) == [[], [0, 1, 0xFF]])
        #expect(rows.map(\.3) == [false, false] && rows.map(\.4) == [false, false], "empty values are values, not NULL")
        // SQLite: a statement run again with fewer values than parameters binds NULL to the rest,
        // never what the previous run left bound (PostgreSQL refuses a short list outright).
        if try await !db.read({ $0.isPostgres }) {
            try await db.write { c in try c.run("INSERT INTO v(id, t, b, n) VALUES (?, ?, ?, ?)", 3, "z", [UInt8]([1])) }
            let n = try await db.read { c in try c.first("SELECT n FROM v WHERE id = 3") { $0.optionalString(0) } }
            #expect(n == .some(nil))
        }
    }

    /// Values are bound from a buffer of the call's own (SQLite does not copy them): a statement run
    /// while another is between steps (a query in a row's mapping) must not change what the first
    /// still compares with, and large values (past any stack buffer) arrive whole.
    @Test func valuesStayBoundWhileAnotherStatementRunsBetweenSteps() async throws {
        let db = try Database(
            configuration: scratchConfiguration(),
            migrations: [Migration(1, "values", "CREATE TABLE v (id INTEGER PRIMARY KEY, tag TEXT NOT NULL, b BLOB NOT NULL)")])
        let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await db.write { c in
            for i in 1...6 {
                try c.run("INSERT INTO v(id, tag, b) VALUES (?, ?, ?)", Int64(i), i % 2 == 0 ? "чётный" : "нечётный", [UInt8(i)])
            }
            try c.run("INSERT INTO v(id, tag, b) VALUES (?, ?, ?)", 7, String(repeating: "я", count: 50_000), big)
        }
        let seen = try await db.read { c in
            try c.query("SELECT id FROM v WHERE tag = ? ORDER BY id", "чётный") { row in
                // Another statement, with other values of the same lengths, between the outer's steps.
                let other = try c.first("SELECT count(*) FROM v WHERE tag = ?", "нечётн") { $0.int(0) }
                return (row.int(0), other)
            }
        }
        #expect(seen.map(\.0) == [2, 4, 6])
        #expect(seen.map(\.1) == [0, 0, 0])
        let (tag, blob) =
            try await db.read { c in
                try c.first("SELECT tag, b FROM v WHERE b = ?", big) { ($0.string(0), $0.blob(1)) }
            } ?? ("", [])
        #expect(tag == String(repeating: "я", count: 50_000))
        #expect(blob == big)
    }

    @Test func concurrentWritesAreGroupCommitted() async throws {
        let db = try Database(configuration: scratchConfiguration(), migrations: itemsMigrations)
        let n = 500
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<n {
                group.addTask {
                    _ = try await db.write { db -> Int in try db.run("INSERT INTO items(name, qty) VALUES (?, ?)", "item-\(i)", i) }
                }
            }
            try await group.waitForAll()
        }
        let count = try await db.read { try $0.first("SELECT COUNT(*), SUM(qty) FROM items") { [$0.int(0), $0.int(1)] } }
        #expect(count == [Int64(n), Int64(n * (n - 1) / 2)])
        let stats = db.stats
        #expect(stats.writes == n)
        #expect(stats.transactions < n, "writes waiting together share a transaction")
        #expect(stats.largestBatch > 1)
    }

    @Test func aFailingWriteRollsBackAloneInItsBatch() async throws {
        let db = try Database(configuration: scratchConfiguration(), migrations: itemsMigrations)
        try await db.write { try $0.run("INSERT INTO items(name, qty) VALUES ('taken', 1)") }
        struct Refused: Error {}
        let results = await withTaskGroup(of: String.self) { group in
            for i in 0..<50 {
                group.addTask {
                    do {
                        try await db.write { db in
                            try db.run("INSERT INTO items(name, qty) VALUES (?, ?)", "x\(i)", i)
                            if i % 10 == 0 { throw Refused() }  // after a change: it must be undone
                            if i % 10 == 5 { try db.run("INSERT INTO items(name, qty) VALUES ('taken', 2)") }
                        }
                        return "ok"
                    } catch let e as StoreError {
                        return e.isConstraintViolation ? "constraint" : "other"
                    } catch {
                        return "refused"
                    }
                }
            }
            var out = [String]()
            for await r in group { out.append(r) }
            return out
        }
        #expect(results.filter { $0 == "ok" }.count == 40)
        #expect(results.filter { $0 == "refused" }.count == 5)
        #expect(results.filter { $0 == "constraint" }.count == 5)
        let names = try await db.read { try $0.query("SELECT name FROM items WHERE name LIKE 'x%'") { $0.string(0) } }
        #expect(names.count == 40)
        #expect(!names.contains("x0") && !names.contains("x5"))
    }

    @Test func answeredWritesSurviveReopening() async throws {
        let config = scratchConfiguration()
        do {
            let db = try Database(configuration: config, migrations: itemsMigrations)
            for i in 0..<20 { try await db.write { try $0.run("INSERT INTO items(name, qty) VALUES (?, ?)", "k\(i)", i) } }
        }
        let db = try Database(configuration: config, migrations: itemsMigrations)
        #expect(try await db.read { try $0.first("SELECT COUNT(*) FROM items") { $0.int(0) } } == 20)
    }

    @Test func valuesRoundTrip() async throws {
        let db = try Database(
            configuration: scratchConfiguration(),
            migrations: [Migration(1, "t", "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)")])
        try await db.write {
            try $0.run("INSERT INTO t VALUES (?, ?, ?, ?, ?)", Int64.max, 2.5, "é ☺ 😈", [0, 1, 255] as [UInt8], nil as String?)
        }
        let row = try await db.read {
            try $0.first("SELECT i, r, s, b, n FROM t") { r in
                "\(r.int(0))|\(r.double(1))|\(r.string(2))|\(r.blob(3))|\(r.optionalString(4) ?? "nil")"
            }
        }
        #expect(row == "\(Int64.max)|2.5|é ☺ 😈|[0, 1, 255]|nil")
    }

    @Test func errorsNameTheSQLButNotTheValues() async throws {
        let db = try Database(configuration: scratchConfiguration(), migrations: itemsMigrations)
        try await db.write { try $0.run("INSERT INTO items(name, qty) VALUES (?, ?)", "secret-value", 1) }
        do {
            try await db.write { try $0.run("INSERT INTO items(name, qty) VALUES (?, ?)", "secret-value", 2) }
            Issue.record("expected a constraint violation")
        } catch let e as StoreError {
            #expect(e.isConstraintViolation)
            #expect(e.sql?.contains("INSERT INTO items") == true)
            #expect(!e.description.contains("secret-value"))
        }
    }

    @Test func literalsBindTheirValuesAndRowsReadByName() async throws {
        let db = try Database(configuration: scratchConfiguration(), migrations: itemsMigrations)
        let name = "O'Brien; DROP TABLE items; --"
        let qty: Int64 = 7
        let note: String? = nil
        try await db.write { try $0.run(literal: "INSERT INTO items(name, qty, note) VALUES (\(name), \(qty), \(note))") }
        let row = try await db.read { c in
            try c.first(literal: "SELECT qty AS how_many, name, note FROM items WHERE name = \(name)") { r in
                "\(r.string("name"))|\(r.int("how_many"))|\(r.optionalString("note") ?? "nil")"
            }
        }
        #expect(row == "\(name)|7|nil", "the value was bound, not spliced into the SQL")
        let sql: SQLLiteral = "SELECT * FROM items WHERE qty > \(qty) AND name <> \(name)"
        #expect(sql.text == "SELECT * FROM items WHERE qty > ? AND name <> ?")
        #expect(sql.values == [.integer(7), .text(name)])
    }
}

import CLibPQ

#if canImport(Glibc)
    import Glibc
#endif

/// One PostgreSQL connection through libpq, blocking like SQLite's (the `Database` queues keep both
/// off the event loops). Statements are prepared once per connection under a generated name, with
/// parameter types taken from the bound values; results come back as text.
///
/// A connection that breaks is re-opened by the next transaction that starts on it (never inside
/// one: a statement of a lost transaction fails, and so does the transaction).
final class PostgresConnection {
    private var raw: OpaquePointer?
    private let url: String
    private let options: [(String, String)]
    /// Prepared statement names by SQL text and parameter types.
    private var prepared: [String: String] = [:]
    private(set) var inTransaction = false
    /// Run after every (re)connection, before the first statement (session settings, locks).
    var onConnect: ((PostgresConnection) throws -> Void)?

    /// `url`: a libpq connection URI or key=value string, possibly naming several hosts with
    /// `target_session_attrs=read-write`. `schema` is where the service's tables live.
    init(url: String, schema: String, applicationName: String) throws {
        self.url = url
        // Before the URL, so that a setting the URL itself carries wins. `public` after the service's
        // own schema: extensions (pg_trgm) live there once per database; tables are created in, and
        // found in, the service's schema first.
        options = [
            ("connect_timeout", "5"), ("application_name", applicationName),
            ("options", "-c search_path=\(schema),public -c client_min_messages=warning"), ("dbname", url),
        ]
        try connect()
    }

    deinit {
        if let raw { PQfinish(raw) }
    }

    private func connect() throws {
        if let raw { PQfinish(raw) }
        raw = nil
        prepared.removeAll()
        let keys = options.map { strdup($0.0) }
        let values = options.map { strdup($0.1) }
        defer {
            for p in keys + values { free(p) }
        }
        let k = keys.map { UnsafePointer($0) } + [nil]
        let v = values.map { UnsafePointer($0) } + [nil]
        let c = PQconnectdbParams(k, v, 1)
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let message = c.map { Self.text(PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            throw StoreError(code: -1, message: "cannot connect to PostgreSQL: \(message)", sql: nil, sqlstate: "08006")
        }
        raw = c
        try onConnect?(self)
    }

    private var connection: OpaquePointer {
        get throws {
            if let raw, PQstatus(raw) == CONNECTION_OK { return raw }
            if inTransaction {
                throw StoreError(
                    code: -1, message: "the connection to PostgreSQL was lost during the transaction", sql: nil, sqlstate: "08006")
            }
            try connect()
            return raw!
        }
    }

    private static func text(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "" }
        var s = String(cString: p)
        while s.last?.isNewline == true { s.removeLast() }
        return s
    }

    /// The result's error as a StoreError (and frees it), or the result when it succeeded.
    private func check(_ result: OpaquePointer?, sql: String?) throws -> OpaquePointer {
        if let result {
            let status = PQresultStatus(result)
            if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK { return result }
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C")))
            let message = Self.text(PQresultErrorField(result, Int32(UInt8(ascii: "M"))))
            let sqlstate = state.map { String(cString: $0) }
            PQclear(result)
            throw StoreError(
                code: -1, message: message.isEmpty ? Self.text(PQerrorMessage(raw)) : message, sql: sql, sqlstate: sqlstate ?? "08006")
        }
        throw StoreError(code: -1, message: Self.text(PQerrorMessage(raw)), sql: sql, sqlstate: "08006")
    }

    /// Runs SQL without parameters (may hold several statements).
    func execute(_ sql: String) throws {
        let c = try connection
        PQclear(try check(PQexec(c, sql), sql: sql))
    }

    // MARK: Transactions

    /// A connection the server ended while it sat idle (a restart, a failover, an idle timeout)
    /// is found dead only by the next statement: when that is BEGIN, nothing has happened yet, so
    /// it reconnects and begins again once.
    func begin(readOnly: Bool) throws {
        let sql = readOnly ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN"
        do {
            try execute(sql)
        } catch let e as StoreError where e.isConnectionLost {
            try connect()
            try execute(sql)
        }
        inTransaction = true
    }

    func commit() throws {
        defer { inTransaction = false }
        try execute("COMMIT")
    }

    func rollback() {
        defer { inTransaction = false }
        if let raw, PQstatus(raw) == CONNECTION_OK { PQclear(PQexec(raw, "ROLLBACK")) }
    }

    // MARK: Statements

    /// Runs a statement with values; hands the result to `body` before freeing it.
    func run<T>(_ sql: String, _ values: [SQLValue], _ body: (OpaquePointer) throws -> T) throws -> T {
        let c = try connection
        var types = [Oid]()
        types.reserveCapacity(values.count)
        var key = sql
        for v in values {
            let t: Oid
            switch v {
            case .null: t = 0
            case .integer: t = 20
            case .real: t = 701
            case .text: t = 25
            case .blob: t = 17
            }
            types.append(t)
        }
        key += types.map { ":\($0)" }.joined()
        let name: String
        if let n = prepared[key] {
            name = n
        } else {
            name = "lw\(prepared.count + 1)"
            PQclear(try check(PQprepare(c, name, PostgresDialect.statement(sql), Int32(types.count), types), sql: sql))
            prepared[key] = name
        }
        var params = [UnsafeMutablePointer<CChar>?]()
        var lengths = [Int32]()
        var formats = [Int32]()
        defer {
            for p in params { free(p) }
        }
        for v in values {
            switch v {
            case .null:
                params.append(nil)
                lengths.append(0)
                formats.append(0)
            case .integer(let n):
                params.append(strdup(String(n)))
                lengths.append(0)
                formats.append(0)
            case .real(let d):
                params.append(strdup("\(d)"))
                lengths.append(0)
                formats.append(0)
            case .text(let s):
                params.append(strdup(s))
                lengths.append(0)
                formats.append(0)
            case .blob(let b):
                // Binary: bytea's binary form is the bytes themselves.
                let p = malloc(max(1, b.count))!.assumingMemoryBound(to: CChar.self)
                b.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(p), byteCount: b.count) }
                params.append(p)
                lengths.append(Int32(b.count))
                formats.append(1)
            }
        }
        let result = try params.withUnsafeBufferPointer { p in
            try p.withMemoryRebound(to: UnsafePointer<CChar>?.self) { p in
                try check(PQexecPrepared(c, name, Int32(values.count), p.baseAddress, lengths, formats, 0), sql: sql)
            }
        }
        defer { PQclear(result) }
        return try body(result)
    }

    static func rows(_ result: OpaquePointer) -> Int32 { PQntuples(result) }

    static func changes(_ result: OpaquePointer) -> Int {
        Int(String(cString: PQcmdTuples(result))) ?? 0
    }
}

/// A row of a PostgreSQL result (text format), read the way SQLite's rows are.
struct PostgresRow {
    let result: OpaquePointer
    let row: Int32

    func isNull(_ i: Int32) -> Bool { PQgetisnull(result, row, i) != 0 }

    func column(named name: String) -> Int32 { PQfnumber(result, "\"\(name)\"") }

    func text(_ i: Int32) -> String {
        guard let p = PQgetvalue(result, row, i) else { return "" }
        return String(cString: p)
    }

    /// Integers, and what SQLite would give as one: booleans (t/f) and whole numerics ("12" from
    /// SUM over BIGINT).
    func int(_ i: Int32) -> Int64 {
        guard let p = PQgetvalue(result, row, i) else { return 0 }
        if let n = Int64(String(cString: p)) { return n }
        let s = String(cString: p)
        if s == "t" { return 1 }
        if s == "f" { return 0 }
        return Double(s).map { Int64($0) } ?? 0
    }

    func double(_ i: Int32) -> Double {
        guard let p = PQgetvalue(result, row, i) else { return 0 }
        return Double(String(cString: p)) ?? 0
    }

    /// bytea in its text form: `\x` and two hex digits per byte.
    func blob(_ i: Int32) -> [UInt8] {
        guard let p = PQgetvalue(result, row, i) else { return [] }
        let n = Int(PQgetlength(result, row, i))
        guard n >= 2 else { return [] }
        return UnsafeRawBufferPointer(start: p, count: n).withMemoryRebound(to: UInt8.self) { bytes -> [UInt8] in
            guard bytes[0] == UInt8(ascii: "\\"), bytes[1] == UInt8(ascii: "x") else { return Array(bytes) }
            func nibble(_ c: UInt8) -> UInt8 {
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
                default: return c &- UInt8(ascii: "A") &+ 10
                }
            }
            var out = [UInt8]()
            out.reserveCapacity((n - 2) / 2)
            var j = 2
            while j + 1 < n {
                out.append(nibble(bytes[j]) << 4 | nibble(bytes[j + 1]))
                j += 2
            }
            return out
        }
    }
}

import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// Lead events from intake (idempotent by event id) and the counters the lead reports read.
extension ReportStore {
    // MARK: Lead events

    struct Ingested: Sendable {
        var applied = 0
        var duplicates = 0
        var asOf: Int64 = 0
    }

    func ingest(_ events: [Report_LeadEvent]) async throws -> Ingested {
        try await db.write { c in
            var out = Ingested()
            var asOf = try Self.meta(c, "events_as_of")
            // A batch touches few distinct counters and often the same lead several times: both are
            // folded in memory and written once per batch (same transaction, same result).
            struct CounterKey: Hashable {
                var dim, metric, key: String
                var day: Int
            }
            var counters = [CounterKey: Int64]()
            var records = [String: (record: LeadRecord, number: String)]()
            var order = [String]()
            for e in events {
                guard try c.run("INSERT OR IGNORE INTO events_seen(event_id) VALUES (?)", e.eventId) == 1 else {
                    out.duplicates += 1
                    continue
                }
                let known = records[e.leadId]
                let old = try known?.record ?? Self.leadRecord(c, e.leadId)
                let (record, deltas) = LeadLedger.apply(e, to: old)
                if known == nil { order.append(e.leadId) }
                records[e.leadId] = (record, e.registrationNumber.isEmpty ? known?.number ?? "" : e.registrationNumber)
                for d in deltas { counters[CounterKey(dim: d.dim, metric: d.metric, key: d.key, day: d.day), default: 0] += d.delta }
                asOf = max(asOf, e.atMs)
                out.applied += 1
            }
            for id in order {
                let r = records[id]!
                try Self.save(c, r.record, registrationNumber: r.number)
            }
            for (k, n) in counters where n != 0 {
                try c.run(
                    "INSERT INTO counters(dim, metric, key, day, n) VALUES (?, ?, ?, ?, ?) ON CONFLICT(dim, metric, key, day) DO UPDATE SET n = counters.n + excluded.n",
                    k.dim, k.metric, k.key, k.day, n)
            }
            try Self.setMeta(c, "events_as_of", asOf)
            out.asOf = asOf
            return out
        }
    }

    static func meta(_ c: Connection, _ key: String) throws -> Int64 {
        try c.first("SELECT value FROM meta WHERE key = ?", key) { $0.int(0) } ?? 0
    }

    static func setMeta(_ c: Connection, _ key: String, _ value: Int64) throws {
        try c.run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", key, value)
    }

    static func leadRecord(_ c: Connection, _ id: String) throws -> LeadRecord? {
        try c.first(
            literal: """
                SELECT received_at, reply_deadline, status, last_event_at, source, channel, category, owner, fields,
                       ever_accepted, ever_processed, reacted_at, reactor, rating FROM leads WHERE lead_id = \(id)
                """
        ) { row in
            var r = LeadRecord(leadID: id, receivedAt: row.int("received_at"))
            r.replyDeadline = row.int("reply_deadline")
            r.status = row.string("status")
            r.lastEventAt = row.int("last_event_at")
            r.source = row.string("source")
            r.channel = row.string("channel")
            r.category = row.string("category")
            r.owner = row.string("owner")
            for pair in row.string("fields").split(separator: "\u{1E}") {
                let kv = pair.split(separator: "\u{1F}", maxSplits: 1, omittingEmptySubsequences: false)
                if kv.count == 2 { r.fields[String(kv[0])] = String(kv[1]) }
            }
            r.everAccepted = row.bool("ever_accepted")
            r.everProcessed = row.bool("ever_processed")
            r.reactedAt = row.optionalInt("reacted_at")
            r.reactor = row.string("reactor")
            r.rating = Int32(row.int("rating"))
            return r
        }
    }

    static func save(_ c: Connection, _ r: LeadRecord, registrationNumber: String) throws {
        let fields = r.fields.sorted { $0.key < $1.key }.map { "\($0.key)\u{1F}\($0.value)" }.joined(separator: "\u{1E}")
        try c.run(
            literal: """
                INSERT INTO leads(lead_id, registration_number, received_at, reply_deadline, status, last_event_at, source, channel,
                                  category, owner, fields, ever_accepted, ever_processed, reacted_at, reactor, rating)
                VALUES (\(r.leadID), \(registrationNumber), \(r.receivedAt), \(r.replyDeadline), \(r.status), \(r.lastEventAt),
                        \(r.source), \(r.channel), \(r.category), \(r.owner), \(fields), \(r.everAccepted), \(r.everProcessed),
                        \(r.reactedAt), \(r.reactor), \(Int64(r.rating)))
                ON CONFLICT(lead_id) DO UPDATE SET
                    registration_number = CASE WHEN excluded.registration_number <> '' THEN excluded.registration_number ELSE leads.registration_number END,
                    received_at = excluded.received_at, reply_deadline = excluded.reply_deadline, status = excluded.status,
                    last_event_at = excluded.last_event_at, source = excluded.source, channel = excluded.channel, category = excluded.category,
                    owner = excluded.owner, fields = excluded.fields, ever_accepted = excluded.ever_accepted,
                    ever_processed = excluded.ever_processed, reacted_at = excluded.reacted_at, reactor = excluded.reactor, rating = excluded.rating
                """)
    }

    /// The status of a lead as the events told it, by registration number; nil if never heard of.
    func leadStatus(registrationNumber: String) async throws -> String? {
        try await db.read { c in
            try c.first("SELECT status FROM leads WHERE registration_number = ?", registrationNumber) { $0.string(0) }
        }
    }

    // MARK: Lead reports (read in one snapshot, with the instant they are consistent as of)

    struct CounterRows: Sendable {
        var asOf: Int64
        var rows: [(key: String, day: Int, metric: String, n: Int64)]
    }

    /// The counters of one dimension whose metric starts with any of `metricPrefixes`, all read in
    /// one snapshot, so a report combining several families is consistent as of one instant.
    func counters(dim: String, metricPrefixes: [String], fromDay: Int, toDay: Int) async throws -> CounterRows {
        try await db.read { c in
            let asOf = try Self.meta(c, "events_as_of")
            var rows = [(key: String, day: Int, metric: String, n: Int64)]()
            for prefix in metricPrefixes {
                rows += try c.query(
                    "SELECT key, day, metric, n FROM counters WHERE dim = ? AND metric >= ? AND metric < ? AND day BETWEEN ? AND ?",
                    dim, prefix, prefix + "\u{10FFFF}", fromDay, toDay
                ) { (key: $0.string(0), day: Int($0.int(1)), metric: $0.string(2), n: $0.int(3)) }
            }
            return CounterRows(asOf: asOf, rows: rows)
        }
    }
}

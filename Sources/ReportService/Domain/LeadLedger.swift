import LeadwireAPI

/// How lead events become report figures, as pure functions: the state kept per lead, and the
/// counter changes one event causes. Reports then read the counters (per dimension, key, day of
/// receipt and metric) instead of rescanning leads, so a summary over a million events is a sum
/// over a few hundred rows.
struct LeadRecord: Sendable, Hashable {
    var leadID: String
    var receivedAt: Int64
    var replyDeadline: Int64 = 0
    var status = "new"
    /// The instant of the last event applied: an older event arriving late changes no attribute.
    var lastEventAt: Int64 = 0
    var source = ""
    var channel = ""
    var category = ""
    var owner = ""
    var fields: [String: String] = [:]
    var everAccepted = false
    var everProcessed = false
    /// First reaction (a decision or a public comment) and who gave it.
    var reactedAt: Int64?
    var reactor = ""
    var rating: Int32 = 0

    var receivedDay: Int { CalendarDate.day(ofMillis: receivedAt) }

    /// The groups this lead counts in: totals, then each dimension a report can choose.
    var groups: [(dim: String, key: String)] {
        var g: [(String, String)] = [("all", ""), ("source", source), ("channel", channel), ("owner", owner), ("category", category)]
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) { g.append(("field:" + name, value)) }
        return g
    }
}

/// One counter change: `metric` of (`dim`, `key`) on `day` moves by `delta`.
struct CounterDelta: Sendable, Hashable {
    var dim: String
    var key: String
    var day: Int
    var metric: String
    var delta: Int64
}

enum LeadLedger {
    static let statuses = ["new", "accepted", "deferred", "rejected", "processed"]
    /// What an event says happened (`Report_LeadEvent.kind`, a string on the wire).
    enum EventKind: String, CaseIterable, Sendable {
        case created, assigned, commented, rated
        case stateChanged = "state_changed"
    }

    /// What is wrong with an event, by field (empty when it can be applied).
    static func problems(_ e: Report_LeadEvent, path: String) -> [(String, String)] {
        var out = [(String, String)]()
        if e.eventId.isEmpty { out.append(("\(path).event_id", "required: ingestion is idempotent by it")) }
        if e.leadId.isEmpty { out.append(("\(path).lead_id", "required")) }
        if EventKind(rawValue: e.kind) == nil {
            let kinds = EventKind.allCases.map(\.rawValue).joined(separator: ", ")
            out.append(("\(path).kind", "\"\(e.kind)\" is not one of \(kinds)"))
        }
        if !e.status.isEmpty && !statuses.contains(e.status) {
            out.append(("\(path).status", "\"\(e.status)\" is not one of \(statuses.joined(separator: ", "))"))
        }
        if e.atMs <= 0 { out.append(("\(path).at_ms", "required")) }
        if EventKind(rawValue: e.kind) == .rated && !(1...5).contains(e.rating) {
            out.append(("\(path).rating", "1 to 5, got \(e.rating)"))
        }
        return out
    }

    /// Applies one event to a lead's record (nil for a lead not seen yet) and says which counters move.
    static func apply(_ e: Report_LeadEvent, to old: LeadRecord?) -> (LeadRecord, [CounterDelta]) {
        var r = old ?? LeadRecord(leadID: e.leadId, receivedAt: e.receivedAtMs > 0 ? e.receivedAtMs : e.atMs)
        var deltas = [CounterDelta]()
        let before = old.map(statusCounters) ?? []

        // Attributes follow the newest event only: a late duplicate of an older state cannot undo a newer one.
        if e.atMs >= r.lastEventAt {
            r.lastEventAt = e.atMs
            if !e.status.isEmpty { r.status = e.status }
            if !e.sourceId.isEmpty { r.source = e.sourceId }
            if !e.channel.isEmpty { r.channel = e.channel }
            if !e.category.isEmpty { r.category = e.category }
            if !e.ownerId.isEmpty { r.owner = e.ownerId }
            if e.replyDeadlineMs > 0 { r.replyDeadline = e.replyDeadlineMs }
            if e.receivedAtMs > 0 && old == nil { r.receivedAt = e.receivedAtMs }
            for f in e.fields { r.fields[f.name] = f.value }
        }
        deltas += diff(before, statusCounters(r))

        let day = r.receivedDay
        if !r.everAccepted && (r.status == "accepted" || r.status == "processed") {
            r.everAccepted = true
            deltas.append(.init(dim: "all", key: "", day: day, metric: "funnel:accepted", delta: 1))
        }
        if !r.everProcessed && r.status == "processed" {
            r.everProcessed = true
            deltas.append(.init(dim: "all", key: "", day: day, metric: "funnel:processed", delta: 1))
        }

        let kind = EventKind(rawValue: e.kind)
        let isReaction = (kind == .stateChanged && e.status != "new" && !e.status.isEmpty) || (kind == .commented && e.publicComment)
        if isReaction && r.reactedAt == nil {
            r.reactedAt = e.atMs
            r.reactor = !e.ownerId.isEmpty ? e.ownerId : r.owner
            let onTime: Int64 = (r.replyDeadline == 0 || e.atMs <= r.replyDeadline) ? 1 : 0
            deltas.append(.init(dim: "all", key: "", day: day, metric: "reaction:n", delta: 1))
            deltas.append(.init(dim: "all", key: "", day: day, metric: "reaction:ms", delta: max(0, e.atMs - r.receivedAt)))
            deltas.append(.init(dim: "all", key: "", day: day, metric: "reaction:on_time", delta: onTime))
            if !r.reactor.isEmpty {
                deltas.append(.init(dim: "person", key: r.reactor, day: day, metric: "kpi:handled", delta: 1))
                deltas.append(.init(dim: "person", key: r.reactor, day: day, metric: "kpi:on_time", delta: onTime))
            }
        }

        if kind == .rated && (1...5).contains(e.rating) {
            let person = r.reactor.isEmpty ? r.owner : r.reactor
            if !person.isEmpty {
                if r.rating == 0 {
                    deltas.append(.init(dim: "person", key: person, day: day, metric: "kpi:ratings", delta: 1))
                }
                deltas.append(.init(dim: "person", key: person, day: day, metric: "kpi:rating_sum", delta: Int64(e.rating - r.rating)))
            }
            r.rating = e.rating
        }
        return (r, deltas.filter { $0.delta != 0 })
    }

    /// The status counters a record contributes to: one per group.
    private static func statusCounters(_ r: LeadRecord) -> [CounterDelta] {
        r.groups.map { CounterDelta(dim: $0.dim, key: $0.key, day: r.receivedDay, metric: "status:" + r.status, delta: 1) }
    }

    /// Minus what was counted before, plus what counts now; unchanged counters cancel out.
    private static func diff(_ before: [CounterDelta], _ after: [CounterDelta]) -> [CounterDelta] {
        struct K: Hashable {
            var dim, key: String
            var day: Int
            var metric: String
        }
        var net = [K: Int64]()
        var order = [K]()
        for (list, sign) in [(before, Int64(-1)), (after, Int64(1))] {
            for c in list {
                let k = K(dim: c.dim, key: c.key, day: c.day, metric: c.metric)
                if net[k] == nil { order.append(k) }
                net[k, default: 0] += sign
            }
        }
        return order.compactMap { k in
            let n = net[k]!
            return n == 0 ? nil : CounterDelta(dim: k.dim, key: k.key, day: k.day, metric: k.metric, delta: n)
        }
    }

    // MARK: Reading counters back

    /// The first day of the period a day falls in.
    static func bucket(_ day: Int, _ period: Report_Period) -> Int? {
        switch period {
        case .day: return day
        case .week:
            // ISO weeks start on Monday; day 0 (1970-01-01) was a Thursday.
            let weekday = ((day % 7) + 7 + 3) % 7  // 0 = Monday
            return day - weekday
        case .month:
            let c = CalendarDate.civil(day: day)
            return CalendarDate.dayNumber(c.year, c.month, 1)
        case .quarter: return PlanMachine.quarter(containing: day).0
        default: return nil  // one bucket for the whole range
        }
    }

    /// Folds (key, day, status, n) counter rows into report rows per key and period.
    static func rows(_ counters: [(key: String, day: Int, metric: String, n: Int64)], period: Report_Period) -> [Report_LeadReportRow] {
        struct K: Hashable {
            var key: String
            var bucket: Int?
        }
        var acc = [K: Report_LeadReportRow]()
        for c in counters where c.n != 0 {
            let k = K(key: c.key, bucket: bucket(c.day, period))
            var row =
                acc[k]
                ?? {
                    var r = Report_LeadReportRow()
                    r.key = c.key
                    r.period = k.bucket.map { CalendarDate.format(day: $0) } ?? ""
                    return r
                }()
            switch c.metric {
            case "status:new": row.new += c.n
            case "status:accepted": row.accepted += c.n
            case "status:deferred": row.deferred += c.n
            case "status:rejected": row.rejected += c.n
            case "status:processed": row.processed += c.n
            default: continue
            }
            row.received += c.n
            acc[k] = row
        }
        return acc.values.sorted { ($0.key, $0.period) < ($1.key, $1.period) }
    }
}

import ArgumentParser
import LeadwireAPI
import NIOConcurrencyHelpers
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Load generator for scripts/bench: drives a running routing or report service through Wire's
/// client and prints one line of figures (key=value) per measurement. Run the services with
/// an admin token (`--token`), as production runs with authentication on.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leadwire-bench",
        abstract: "Measure RouteLead/s, report ingestion and query times, price-list import and catalogue search.",
        subcommands: [Route.self, Ingest.self, CatalogBench.self])
}

func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func options(_ token: String) -> CallOptions {
    var o = CallOptions(timeout: .seconds(30))
    if !token.isEmpty { o.metadata.add("authorization", "Bearer " + token) }
    return o
}

func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
}

/// Runs `count` calls with `concurrency` in flight; returns per-call latencies in ns and the wall time.
func drive(count: Int, concurrency: Int, _ body: @escaping @Sendable (Int) async throws -> Void) async throws -> (
    latencies: [UInt64], seconds: Double
) {
    let next = NIOLockedValueBox(0)
    let t0 = nowNanos()
    let latencies = try await withThrowingTaskGroup(of: [UInt64].self) { group in
        for _ in 0..<concurrency {
            group.addTask {
                var mine = [UInt64]()
                while true {
                    let i = next.withLockedValue { n -> Int in
                        defer { n += 1 }
                        return n
                    }
                    if i >= count { break }
                    let s = nowNanos()
                    try await body(i)
                    mine.append(nowNanos() - s)
                }
                return mine
            }
        }
        var all = [UInt64]()
        for try await part in group { all += part }
        return all.sorted()
    }
    return (latencies, Double(nowNanos() - t0) / 1e9)
}

struct Route: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "RouteLead/s with a large directory and rule set.")
    @Option var target = "127.0.0.1:50052"
    @Option var people = 1000
    @Option var roles = 50
    @Option var rules = 200
    @Option var leads = 20000
    @Option var concurrency = 64
    @Option var token = ""
    @Flag(help: "Send only the leads: the directory and rules are there from an earlier run (to count a decision's instructions).")
    var noSetup = false

    func run() async throws {
        let client = Routing_ServiceClient(channel: try WireChannel(address: target))
        let o = options(token)
        if !noSetup { try await setUp(client, o) }
        let tag = nowNanos()
        let (lat, secs) = try await drive(count: leads, concurrency: concurrency) { i in
            var l = Routing_LeadSummary()
            l.leadId = "bench-\(tag)-\(i)"
            l.sourceId = "src-\(i % 7)"
            l.channel = "web_form"
            l.category = "repair"
            var region = Routing_FieldValue()
            region.name = "Region"
            region.value = "R\(i % (rules * 2))"
            var emp = Routing_FieldValue()
            emp.name = "Employees"
            emp.value = String((i * 13) % (rules * 10))
            l.fields = [region, emp]
            var req = Routing_RouteLeadRequest()
            req.lead = l
            _ = try await client.routeLead(req, options: o)
        }
        print(
            "route leads=\(leads) concurrency=\(concurrency) people=\(people) roles=\(roles) rules=\(rules) seconds=\(secs) per_second=\(Int(Double(leads) / secs)) p50_us=\(percentile(lat, 0.5)) p99_us=\(percentile(lat, 0.99))"
        )
    }

    /// The directory (people spread over the roles, 1 in 10 with a capacity, 1 in 20 away) and the rules.
    func setUp(_ client: Routing_ServiceClient, _ o: CallOptions) async throws {
        for r in 0..<roles {
            var role = Routing_Role()
            role.name = "Role \(r)"
            role.strategy = r % 2 == 0 ? .roundRobin : .leastLoaded
            var req = Routing_PutRoleRequest()
            req.role = role
            _ = try await client.putRole(req, options: o)
        }
        _ = try await drive(count: people, concurrency: 16) { i in
            var p = Routing_Person()
            p.name = "Person \(i)"
            p.login = "bench\(i)"
            p.roles = ["Role \(i % roles)", "Role \((i * 7 + 3) % roles)"]
            if i % 10 == 0 { p.capacity = 1_000_000 }
            if i % 20 == 0 {
                var a = Routing_Absence()
                a.fromMs = 0
                a.untilMs = Int64.max / 2
                p.absences = [a]
            }
            var req = Routing_CreatePersonRequest()
            req.person = p
            _ = try await client.createPerson(req, options: o)
        }
        // Rules: most test Region and Employees ranges and never match early, so a decision walks
        // most of the list, as with a real rule set whose specific rules come first.
        var set = Routing_RuleSet()
        for r in 0..<rules {
            var rule = Routing_Rule()
            rule.name = "rule \(r)"
            var region = Routing_Condition()
            region.field = "Region"
            region.test = .equals("R\(r)")
            var size = Routing_Condition()
            size.field = "Employees"
            var range = Routing_Range()
            range.min = String(r * 10)
            range.max = String(r * 10 + 9)
            size.test = .range(range)
            rule.conditions = [region, size]
            rule.target = .role("Role \(r % roles)")
            set.rules.append(rule)
        }
        set.defaultRole = "Role 0"
        var setReq = Routing_SetRulesRequest()
        setReq.rules = set
        _ = try await client.setRules(setReq, options: o)
    }
}

struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ingest lead events, then time the lead summary and funnel.")
    @Option var target = "127.0.0.1:50053"
    @Option var events = 1_000_000
    @Option var batch = 1000
    @Option var concurrency = 4
    @Option(help: "Query repetitions (the median is reported).") var repeats = 25
    @Option var token = ""

    func run() async throws {
        let client = Report_ServiceClient(channel: try WireChannel(address: target))
        let o = options(token)
        // Each lead: created, assigned, accepted or rejected, and (for half) processed: ~4 events.
        let start: Int64 = 1_767_225_600_000  // 2026-01-01
        let batches = (events + batch - 1) / batch
        let (_, secs) = try await drive(count: batches, concurrency: concurrency) { b in
            var req = Report_IngestEventsRequest()
            for k in 0..<batch {
                let n = b * batch + k
                if n >= events { break }
                let lead = n / 4
                let step = n % 4
                var e = Report_LeadEvent()
                e.eventId = "e\(n)"
                e.leadId = "lead-\(lead)"
                e.registrationNumber = "L-2026-\(lead)"
                let received = start + Int64(lead % 330) * 86_400_000 + Int64(lead % 1000) * 1000
                e.receivedAtMs = received
                e.atMs = received + Int64(step) * 3_600_000
                e.replyDeadlineMs = received + 2 * 86_400_000
                e.sourceId = "src-\(lead % 12)"
                e.channel = ["web_form", "email", "phone", "social"][lead % 4]
                e.category = ["repair", "install", "consulting"][lead % 3]
                var region = Report_FieldValue()
                region.name = "Region"
                region.value = ["North", "South", "East", "West", "Center"][lead % 5]
                e.fields = [region]
                e.ownerId = "person-\(lead % 40)"
                switch step {
                case 0:
                    e.kind = "created"
                    e.status = "new"
                    e.ownerId = ""
                case 1:
                    e.kind = "assigned"
                    e.status = "new"
                case 2:
                    e.kind = "state_changed"
                    e.status = lead % 5 == 0 ? "rejected" : "accepted"
                default:
                    if lead % 2 == 0 && lead % 5 != 0 {
                        e.kind = "state_changed"
                        e.status = "processed"
                    } else {
                        e.kind = "rated"
                        e.rating = Int32(lead % 5 + 1)
                        e.status = lead % 5 == 0 ? "rejected" : "accepted"
                    }
                }
                req.events.append(e)
            }
            var big = o
            big.timeout = .seconds(120)
            _ = try await client.ingestEvents(req, options: big)
        }
        print("ingest events=\(events) batch=\(batch) concurrency=\(concurrency) seconds=\(secs) per_second=\(Int(Double(events) / secs))")

        func time(_ name: String, _ body: () async throws -> Int) async throws {
            var samples = [UInt64]()
            var rows = 0
            for _ in 0..<repeats {
                let s = nowNanos()
                rows = try await body()
                samples.append(nowNanos() - s)
            }
            samples.sort()
            print(
                "query \(name) rows=\(rows) median_ms=\(Double(samples[samples.count / 2]) / 1e6) p90_ms=\(Double(samples[samples.count * 9 / 10]) / 1e6)"
            )
        }
        try await time("summary_totals") { try await client.leadSummary(Report_LeadReportRequest(), options: o).rows.count }
        try await time("summary_by_source_month") {
            var r = Report_LeadReportRequest()
            r.dimension = .source
            r.period = .month
            return try await client.leadSummary(r, options: o).rows.count
        }
        try await time("summary_by_region_day") {
            var r = Report_LeadReportRequest()
            r.dimension = .field
            r.field = "Region"
            r.period = .day
            return try await client.leadSummary(r, options: o).rows.count
        }
        try await time("funnel") {
            _ = try await client.leadFunnel(Report_FunnelRequest(), options: o)
            return 1
        }
        try await time("employee_kpis") { try await client.employeeKpis(Report_KpiRequest(), options: o).employees.count }
    }
}

/// Price-list import (rows/s, first and repeated) and search latency at `rows` items, against a
/// running intake service: a generated CSV of realistic names (kinds in Russian, brands and models
/// in Latin, sizes), then queries of four kinds, one at a time (what a manager's search box does).
struct CatalogBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "catalog", abstract: "Price-list import rows/s and search p50/p99.")
    @Option var target = "127.0.0.1:50051"
    @Option var rows = 100_000
    @Option(help: "Searches of each kind.") var searches = 500
    @Option var token = ""

    static let kinds = [
        "Перфоратор", "Дрель ударная", "Шуруповёрт аккумуляторный", "Смеситель для кухни", "Смеситель для ванной", "Кабель ВВГнг",
        "Радиатор биметаллический", "Котёл газовый настенный", "Труба полипропиленовая", "Кран шаровой", "Насос циркуляционный",
        "Счётчик воды", "Фильтр магистральный", "Бойлер косвенного нагрева", "Автомат защиты", "Розетка двойная", "Выключатель",
        "Светильник светодиодный", "Герметик силиконовый", "Монтажная пена",
    ]
    static let brands = [
        "Bosch", "Makita", "DeWalt", "Grohe", "Hansgrohe", "Rifar", "Baxi", "Vaillant", "Wilo", "Grundfos", "Legrand", "Schneider", "IEK",
        "Valtec", "Rehau",
    ]

    func name(_ i: Int) -> String {
        let k = Self.kinds[i % Self.kinds.count]
        let b = Self.brands[(i / Self.kinds.count) % Self.brands.count]
        return "\(k) \(b) \(String(UInt32(truncatingIfNeeded: i &* 2_654_435_761) % 90_000 + 10_000, radix: 36).uppercased()) \(i % 50 + 1)"
    }

    func run() async throws {
        let client = Catalog_ServiceClient(channel: try WireChannel(address: target))
        var o = options(token)
        o.timeout = .seconds(600)
        var csv = "Артикул;Наименование;Цена;Остаток\n"
        for i in 0..<rows { csv += "SKU-\(i);\(name(i));\(1000 + i % 9000),\(i % 100);\(i % 40)\n" }
        let bytes = Array(csv.utf8)
        var mapping = Catalog_ColumnMapping()
        mapping.skuColumn = "Артикул"
        mapping.nameColumns = ["Наименование"]
        mapping.priceColumn = "Цена"
        mapping.stockColumn = "Остаток"
        func importOnce() async throws -> (Catalog_ImportReport, Double) {
            let t0 = nowNanos()
            var start = Catalog_ImportStart()
            start.supplier = "bench"
            start.fileName = "bench.csv"
            start.mapping = mapping
            let report = try await client.importPriceList(start, file: bytes, options: o)
            return (report, Double(nowNanos() - t0) / 1e9)
        }
        let (first, s1) = try await importOnce()
        print("import rows=\(rows) bytes=\(bytes.count) created=\(first.created) seconds=\(s1) rows_per_second=\(Int(Double(rows) / s1))")
        let (again, s2) = try await importOnce()
        print("reimport rows=\(rows) unchanged=\(again.unchanged) seconds=\(s2) rows_per_second=\(Int(Double(rows) / s2))")
        // Queries: an exact SKU; two words of a name; a prefix of a word; a word with a typo.
        let queries: [(String, @Sendable (Int) -> String)] = [
            ("sku", { "SKU-\(($0 &* 7919) % rows)" }),
            (
                "words",
                { i in
                    let n = name((i &* 104_729) % rows).split(separator: " ")
                    return "\(n[0]) \(n[n.count - 3])"
                }
            ),
            ("prefix", { i in String(Self.kinds[i % Self.kinds.count].prefix(5)) }),
            (
                "typo",
                { i in
                    var w = Array(Self.kinds[i % Self.kinds.count].split(separator: " ")[0].lowercased())
                    w.swapAt(2, 3)
                    return String(w)
                }
            ),
        ]
        let searchOptions = o
        for (kind, make) in queries {
            let (lat, _) = try await drive(count: searches, concurrency: 1) { i in
                var r = Catalog_SearchItemsRequest()
                r.query = make(i)
                r.limit = 20
                let found = try await client.searchItems(r, options: searchOptions)
                if found.hits.isEmpty { throw ValidationError("no hit for \(kind) query \"\(r.query)\"") }
            }
            print("search kind=\(kind) items=\(rows) searches=\(searches) p50_us=\(percentile(lat, 0.5)) p99_us=\(percentile(lat, 0.99))")
        }
    }
}

import LeadwireAPI
import Store
import Wire

/// Commercial proposals: lines priced from the catalogue or typed, totals with VAT, and the
/// draft → approved → sent → accepted/declined steps. Pure parts here; rows in `ProposalStore`.
public enum ProposalMath {
    /// The lines as entered, checked and priced. `item` looks a catalogue item up by number.
    public static func lines(_ inputs: [Catalog_ProposalLineInput], item: (Int64) throws -> Catalog_Item?) throws -> (
        lines: [Catalog_ProposalLine], currency: String
    ) {
        var v = [RPCError.FieldViolation]()
        if inputs.isEmpty { v.append(.init(field: "lines", description: "a proposal needs at least one line")) }
        if inputs.count > 200 { v.append(.init(field: "lines", description: "at most 200 lines, got \(inputs.count)")) }
        var out = [Catalog_ProposalLine]()
        var currencies = Set<String>()
        for (i, input) in inputs.prefix(200).enumerated() {
            let f = "lines[\(i)]"
            var line = Catalog_ProposalLine()
            line.number = Int32(i + 1)
            guard let quantity = FixedPoint.parse(input.quantity, places: 3), quantity > 0 else {
                v.append(
                    .init(
                        field: "\(f).quantity",
                        description: "a quantity > 0 with at most 3 decimal places, got \"\(Clip.value(input.quantity))\""))
                continue
            }
            line.quantity = Quantity.format(quantity)
            var price: Int64
            if !input.itemId.isEmpty {
                guard let n = CatalogStore.itemNumber(input.itemId), let it = try item(n) else {
                    v.append(.init(field: "\(f).item_id", description: "no catalogue item \"\(Clip.value(input.itemId))\""))
                    continue
                }
                line.itemId = it.id
                line.sku = it.keyedByName ? "" : it.sku
                line.name = input.name.trimmingSpaces.isEmpty ? it.name : input.name.trimmingSpaces
                line.unit = input.unit.trimmingSpaces.isEmpty ? it.unit : input.unit.trimmingSpaces
                currencies.insert(it.currency)
                let catalogue = FixedPoint.parse(it.price, places: 2) ?? 0
                price = catalogue
                if !input.price.trimmingSpaces.isEmpty {
                    guard let p = FixedPoint.parse(input.price, places: 2), p >= 0 else {
                        v.append(
                            .init(
                                field: "\(f).price", description: "an amount >= 0 with at most 2 places, got \"\(Clip.value(input.price))\""
                            ))
                        continue
                    }
                    if p != catalogue {
                        if input.priceReason.trimmingSpaces.isEmpty {
                            v.append(
                                .init(
                                    field: "\(f).price_reason",
                                    description: "the price differs from the catalogue's \(it.price): say why (price_reason)"))
                            continue
                        }
                        line.cataloguePrice = it.price
                        line.priceReason = input.priceReason.trimmingSpaces
                    }
                    price = p
                }
            } else {
                line.name = input.name.trimmingSpaces
                line.unit = input.unit.trimmingSpaces
                if line.name.isEmpty { v.append(.init(field: "\(f).name", description: "a typed line needs a name (or give item_id)")) }
                guard let p = FixedPoint.parse(input.price, places: 2), p >= 0 else {
                    v.append(
                        .init(
                            field: "\(f).price",
                            description: "a typed line needs a price >= 0 with at most 2 places, got \"\(Clip.value(input.price))\""))
                    continue
                }
                price = p
                line.priceReason = input.priceReason.trimmingSpaces
            }
            if line.name.count > 500 { v.append(.init(field: "\(f).name", description: "at most 500 characters")) }
            var discount: Int64 = 0
            if !input.discountPercent.trimmingSpaces.isEmpty {
                guard let d = FixedPoint.parse(input.discountPercent, places: 2), d >= 0, d <= 10_000 else {
                    v.append(
                        .init(
                            field: "\(f).discount_percent",
                            description: "a percentage 0..100 with at most 2 places, got \"\(Clip.value(input.discountPercent))\""))
                    continue
                }
                discount = d
            }
            line.price = FixedPoint.format(price, places: 2)
            line.discountPercent = discount == 0 ? "" : FixedPoint.format(discount, places: 2)
            guard let gross = FixedPoint.lineTotal(quantityMilli: quantity, priceCents: price), gross < 1_000_000_000_000_00 else {
                v.append(.init(field: "\(f).quantity", description: "quantity × price is too large"))
                continue
            }
            line.total = FixedPoint.format(gross - percent(of: gross, basisPoints: discount), places: 2)
            out.append(line)
        }
        if currencies.count > 1 {
            v.append(
                .init(
                    field: "lines",
                    description:
                        "items priced in different currencies (\(currencies.sorted().joined(separator: ", "))); one proposal, one currency")
            )
        }
        guard v.isEmpty else { throw CatalogError.invalid("the proposal's lines are not valid", v) }
        return (out, currencies.first ?? "RUB")
    }

    /// 2000 basis points -> "20"; 1050 -> "10.5".
    public static func percentText(_ basisPoints: Int64) -> String { FixedPoint.trimmed(FixedPoint.format(basisPoints, places: 2)) }

    /// amount × basisPoints / 10,000, rounded half up (kopecks).
    static func percent(of amount: Int64, basisPoints: Int64) -> Int64 {
        (amount * basisPoints + 5_000) / 10_000
    }

    /// Subtotal, the VAT it contains at `rate` (basis points: 2000 = 20%), and the total. Prices
    /// include VAT, as Russian price lists quote them.
    public static func totals(_ lines: [Catalog_ProposalLine], vatBasisPoints rate: Int64) -> (subtotal: Int64, vat: Int64, total: Int64) {
        let subtotal = lines.reduce(Int64(0)) { $0 + (FixedPoint.parse($1.total, places: 2) ?? 0) }
        let vat = rate == 0 ? 0 : (subtotal * rate + (10_000 + rate) / 2) / (10_000 + rate)
        return (subtotal, vat, subtotal)
    }

    /// The step an action takes, or why it cannot.
    public static func next(_ current: Catalog_ProposalStatus, _ action: Catalog_ProposalAction, proposal: String) throws(CatalogError)
        -> Catalog_ProposalStatus
    {
        let (from, to, verb): ([Catalog_ProposalStatus], Catalog_ProposalStatus, String) =
            switch action {
            case .approve: ([.draft], .approved, "approval")
            case .send: ([.approved], .sent, "sending")
            case .accept: ([.sent], .accepted, "acceptance")
            case .decline: ([.sent], .declined, "declining")
            case .return: ([.approved], .draft, "returning for correction")
            default: ([], .unspecified, "")
            }
        guard to != .unspecified else {
            throw .invalid("action: APPROVE, SEND, ACCEPT, DECLINE or RETURN", field: "action")
        }
        guard from.contains(current) else {
            throw .illegalProposalStep(proposal: proposal, current: current.name, action: verb, allowedFrom: from.map(\.name))
        }
        return to
    }
}

/// Proposal rows: one per version; `latest` marks the version that counts.
public enum ProposalStore {
    public static let schema = """
        CREATE TABLE proposal_counters (year INTEGER PRIMARY KEY, last INTEGER NOT NULL);
        CREATE TABLE proposals (
            id INTEGER PRIMARY KEY,
            number TEXT NOT NULL,
            version INTEGER NOT NULL,
            latest INTEGER NOT NULL,
            lead_id INTEGER NOT NULL,
            status INTEGER NOT NULL,
            manager TEXT NOT NULL,
            total_cents INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            body BLOB NOT NULL,
            UNIQUE (number, version)
        );
        CREATE INDEX proposals_by_lead ON proposals(lead_id, id);
        CREATE INDEX proposals_by_created ON proposals(created_at) WHERE latest = 1;
        """

    public static func number(_ id: String) -> Int64? {
        guard id.hasPrefix("proposal-"), let n = Int64(id.dropFirst(9)), n > 0 else { return nil }
        return n
    }

    /// The year's next number: "КП-2026-000001" (ru) or "CP-2026-000001".
    public static func nextNumber(_ db: Connection, year: Int, locale: String) throws -> String {
        try db.run(
            literal: """
                INSERT INTO proposal_counters(year, last) VALUES (\(year), 1)
                ON CONFLICT(year) DO UPDATE SET last = proposal_counters.last + 1
                """)
        let n = try db.first(literal: "SELECT last FROM proposal_counters WHERE year = \(year)") { $0.int(0) } ?? 1
        let digits = String(n)
        return (locale == "en" ? "CP" : "КП") + "-\(year)-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// Stores a new version (the previous one, if any, marked superseded) and gives it its id.
    public static func insert(_ db: Connection, _ p: Catalog_Proposal, lead: Int64) throws -> Catalog_Proposal {
        var p = p
        try db.run(
            literal: """
                UPDATE proposals SET latest = 0, status = \(Int64(Catalog_ProposalStatus.superseded.rawValue))
                WHERE number = \(p.number) AND latest = 1
                """)
        let total = FixedPoint.parse(p.total, places: 2) ?? 0
        let id = try db.insertReturningID(
            literal: """
                INSERT INTO proposals(number, version, latest, lead_id, status, manager, total_cents, created_at, body)
                VALUES (\(p.number), \(p.version), 1, \(lead), \(Int64(p.status.rawValue)), \(p.manager?.name ?? ""), \(total), \(p.createdAtMs), \([UInt8]()))
                """)
        p.id = "proposal-\(id)"
        try db.run(literal: "UPDATE proposals SET body = \(ProtoCodec.encode(p)) WHERE id = \(id)")
        return p
    }

    public static func get(_ db: Connection, id: Int64) throws -> Catalog_Proposal? {
        try db.first(literal: "SELECT body, status FROM proposals WHERE id = \(id)") {
            var p = try ProtoCodec.decode(Catalog_Proposal.self, from: $0.blob(0))
            p.status = Catalog_ProposalStatus(rawValue: Int32($0.int(1)))
            return p
        }
    }

    public static func isLatest(_ db: Connection, id: Int64) throws -> Bool {
        try db.first(literal: "SELECT latest FROM proposals WHERE id = \(id)") { $0.bool(0) } ?? false
    }

    public static func update(_ db: Connection, id: Int64, _ p: Catalog_Proposal) throws {
        try db.run(literal: "UPDATE proposals SET status = \(Int64(p.status.rawValue)), body = \(ProtoCodec.encode(p)) WHERE id = \(id)")
    }

    public static func list(_ db: Connection, lead: Int64?, status: Catalog_ProposalStatus, limit: Int) throws -> [Catalog_Proposal] {
        let statusValue = Int64(status.rawValue)
        return try db.query(
            literal: """
                SELECT body, status FROM proposals
                WHERE (\(lead ?? 0) = 0 OR lead_id = \(lead ?? 0)) AND (\(statusValue) = 0 OR status = \(statusValue))
                AND (\(lead ?? 0) <> 0 OR latest = 1)
                ORDER BY id DESC LIMIT \(limit)
                """
        ) {
            var p = try ProtoCodec.decode(Catalog_Proposal.self, from: $0.blob(0))
            p.status = Catalog_ProposalStatus(rawValue: Int32($0.int(1)))
            return p
        }
    }

    /// Figures over the latest versions created in [from, to): by status, by manager, per period,
    /// and how many leads with a proposal went on to be accepted (intake's lead statuses: accepted
    /// or processed — the proposals live beside intake's leads).
    public static func figures(_ db: Connection, from: Int64, to: Int64, period: String) throws -> Catalog_ProposalFiguresResponse {
        let upper = to > 0 ? to : Int64.max
        var f = Catalog_ProposalFiguresResponse()
        let rows = try db.query(
            literal: """
                SELECT p.status, p.manager, p.total_cents, p.created_at, p.lead_id, l.status FROM proposals p
                LEFT JOIN leads l ON l.id = p.lead_id
                WHERE p.latest = 1 AND p.created_at >= \(from) AND p.created_at < \(upper)
                """
        ) { r in
            (status: r.int(0), manager: r.string(1), total: r.int(2), at: r.int(3), lead: r.int(4), leadStatus: r.isNull(5) ? 0 : r.int(5))
        }
        var byStatus = [Int64: (Int32, Int64)]()
        var byManager = [String: (Int32, Int32, Int64)]()
        var byPeriod = [String: (Int32, Int64, Int64)]()
        var leads = Set<Int64>()
        var acceptedLeads = Set<Int64>()
        let accepted = Int64(Catalog_ProposalStatus.accepted.rawValue)
        for r in rows {
            byStatus[r.status, default: (0, 0)].0 += 1
            byStatus[r.status, default: (0, 0)].1 += r.total
            let won = r.status == accepted
            byManager[r.manager, default: (0, 0, 0)].0 += 1
            if won {
                byManager[r.manager, default: (0, 0, 0)].1 += 1
                byManager[r.manager, default: (0, 0, 0)].2 += r.total
            }
            let day = CalendarDate.format(day: CalendarDate.day(ofMillis: r.at))
            let key = period == "day" ? day : period == "year" ? String(day.prefix(4)) : String(day.prefix(7))
            byPeriod[key, default: (0, 0, 0)].0 += 1
            byPeriod[key, default: (0, 0, 0)].1 += r.total
            if won { byPeriod[key, default: (0, 0, 0)].2 += r.total }
            leads.insert(r.lead)
            // Intake_LeadStatus: accepted = 2, processed = 5.
            if r.leadStatus == 2 || r.leadStatus == 5 { acceptedLeads.insert(r.lead) }
        }
        f.byStatus = byStatus.keys.sorted().map { k in
            var c = Catalog_ProposalCount()
            c.status = Catalog_ProposalStatus(rawValue: Int32(k))
            c.count = byStatus[k]!.0
            c.total = FixedPoint.format(byStatus[k]!.1, places: 2)
            return c
        }
        f.byManager = byManager.keys.sorted().map { k in
            var m = Catalog_ManagerFigures()
            m.manager = k
            m.proposals = byManager[k]!.0
            m.accepted = byManager[k]!.1
            m.acceptedTotal = FixedPoint.format(byManager[k]!.2, places: 2)
            return m
        }
        f.periods = byPeriod.keys.sorted().map { k in
            var p = Catalog_PeriodFigures()
            p.period = k
            p.proposals = byPeriod[k]!.0
            p.total = FixedPoint.format(byPeriod[k]!.1, places: 2)
            p.acceptedTotal = FixedPoint.format(byPeriod[k]!.2, places: 2)
            return p
        }
        f.leadsWithProposal = Int32(leads.count)
        f.leadsAccepted = Int32(acceptedLeads.count)
        f.conversionPercent =
            leads.isEmpty
            ? "0" : FixedPoint.format((Int64(acceptedLeads.count) * 1000 + Int64(leads.count) / 2) / Int64(leads.count), places: 1)
        return f
    }
}

import LeadwireAPI
import Store

/// Stock held by accepted leads. Called inside the lead's own transaction: the acceptance and its
/// reservation commit together, or neither does.
public enum CatalogStock {
    /// An order line that names a catalogue item (its index in the lead's lines).
    public struct Line: Sendable {
        public var index: Int
        public var itemID: String
        public var quantityMilli: Int64

        public init(index: Int, itemID: String, quantityMilli: Int64) {
            self.index = index
            self.itemID = itemID
            self.quantityMilli = quantityMilli
        }
    }

    /// The lines of an order that name catalogue items.
    public static func lines(of order: [Intake_OrderLine]) -> [Line] {
        order.enumerated().compactMap { i, l in
            guard !l.itemId.isEmpty, let q = FixedPoint.parse(l.quantity, places: 3) else { return nil }
            return Line(index: i, itemID: l.itemId, quantityMilli: q)
        }
    }

    /// Reserves the lines' quantities for a lead. Lines whose item has less available than all the
    /// lead's lines for it need together are short: without `override` nothing is reserved and
    /// `stockShort` names each; with it they are reserved anyway (available goes negative) and
    /// returned, for the history.
    @discardableResult
    public static func reserve(_ db: Connection, lead: Int64, registrationNumber: String, lines: [Line], override: Bool, now: Int64)
        throws -> [CatalogError.Shortage]
    {
        guard !lines.isEmpty else { return [] }
        var needed = [Int64: Int64]()
        var items = [Int64: (sku: String, name: String, available: Int64)]()
        var shortages = [CatalogError.Shortage]()
        for l in lines {
            guard let n = CatalogStore.itemNumber(l.itemID),
                let item = try db.first(
                    literal: "SELECT sku, name, stock_milli - reserved_milli FROM catalog_items WHERE id = \(n)",
                    map: { (sku: $0.string(0), name: $0.string(1), available: $0.int(2)) })
            else {
                shortages.append(
                    .init(
                        line: l.index, itemID: l.itemID, sku: "", name: "not in the catalogue", needed: Quantity.format(l.quantityMilli),
                        available: "0"))
                continue
            }
            items[n] = item
            needed[n, default: 0] += l.quantityMilli
        }
        for l in lines {
            guard let n = CatalogStore.itemNumber(l.itemID), let item = items[n], let total = needed[n], total > item.available else {
                continue
            }
            shortages.append(
                .init(
                    line: l.index, itemID: l.itemID, sku: item.sku, name: item.name, needed: Quantity.format(total),
                    available: Quantity.format(max(item.available, 0))))
        }
        // An item that is not in the catalogue cannot be reserved, override or not.
        if shortages.contains(where: { $0.sku.isEmpty }) || (!shortages.isEmpty && !override) {
            throw CatalogError.stockShort(lead: registrationNumber, override ? shortages.filter { $0.sku.isEmpty } : shortages)
        }
        for l in lines {
            guard let n = CatalogStore.itemNumber(l.itemID) else { continue }
            try db.run(
                literal: """
                    INSERT INTO catalog_reservations(lead_id, line, item_id, quantity_milli, at)
                    VALUES (\(lead), \(l.index), \(n), \(l.quantityMilli), \(now))
                    """)
            try db.run(literal: "UPDATE catalog_items SET reserved_milli = reserved_milli + \(l.quantityMilli) WHERE id = \(n)")
        }
        return shortages
    }

    /// Gives back what a lead holds (rejected or deferred after acceptance). Returns the number of lines released.
    @discardableResult
    public static func release(_ db: Connection, lead: Int64) throws -> Int {
        try settle(db, lead: lead, consume: false)
    }

    /// The lead is done: what it held leaves the stock.
    @discardableResult
    public static func consume(_ db: Connection, lead: Int64) throws -> Int {
        try settle(db, lead: lead, consume: true)
    }

    private static func settle(_ db: Connection, lead: Int64, consume: Bool) throws -> Int {
        let held = try db.query(literal: "SELECT item_id, quantity_milli FROM catalog_reservations WHERE lead_id = \(lead)") {
            (item: $0.int(0), quantity: $0.int(1))
        }
        for h in held {
            if consume {
                try db.run(
                    literal: """
                        UPDATE catalog_items SET reserved_milli = reserved_milli - \(h.quantity), stock_milli = stock_milli - \(h.quantity)
                        WHERE id = \(h.item)
                        """)
            } else {
                try db.run(literal: "UPDATE catalog_items SET reserved_milli = reserved_milli - \(h.quantity) WHERE id = \(h.item)")
            }
        }
        if !held.isEmpty { try db.run(literal: "DELETE FROM catalog_reservations WHERE lead_id = \(lead)") }
        return held.count
    }
}

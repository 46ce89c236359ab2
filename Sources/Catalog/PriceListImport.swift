import LeadwireAPI
import Wire

/// One price-list row as the catalogue takes it.
public struct PriceListRow: Equatable, Sendable {
    public var row: Int
    public var sku: String
    public var keyedByName: Bool
    public var name: String
    public var unit: String
    public var priceCents: Int64
    public var currency: String
    /// Nil when the list carries no stock column.
    public var stockMilli: Int64?
}

/// Reads a grid through a supplier's column mapping: which rows are data, which column is what,
/// and which rows cannot be taken (each with its number and reason). Pure: no storage.
public struct PriceListImport: Sendable {
    public var rows: [PriceListRow] = []
    public var rejected: [Catalog_RejectedRow] = []
    public var headerRow = 0

    /// Columns resolved to 0-based indices.
    struct Columns {
        var sku: Int?
        var name: [Int]
        var price: Int
        var stock: Int?
        var unit: Int?
        var currency: Int?
    }

    public static func validate(_ m: Catalog_ColumnMapping) -> [RPCError.FieldViolation] {
        var v = [RPCError.FieldViolation]()
        if m.nameColumns.allSatisfy({ $0.trimmingSpaces.isEmpty }) {
            v.append(.init(field: "mapping.name_columns", description: "name at least one column that holds the item's name"))
        }
        if m.priceColumn.trimmingSpaces.isEmpty {
            v.append(.init(field: "mapping.price_column", description: "name the column that holds the price"))
        }
        if m.headerRow < 0 {
            v.append(.init(field: "mapping.header_row", description: "a row number from 1, or 0 for the first non-empty row"))
        }
        if m.delimiter.unicodeScalars.count > 1 {
            v.append(.init(field: "mapping.delimiter", description: "one character (\";\", \",\", a tab), or empty to guess"))
        }
        if !m.currency.isEmpty && !Self.isCurrency(m.currency.uppercased()) {
            v.append(.init(field: "mapping.currency", description: "an ISO 4217 code such as RUB, USD, EUR; got \"\(m.currency)\""))
        }
        return v
    }

    static func isCurrency(_ s: String) -> Bool {
        s.utf8.count == 3 && s.utf8.allSatisfy { $0 >= 65 && $0 <= 90 }
    }

    /// "Цена" (a header), "C" (a letter) or "3" (1-based) -> the 0-based column.
    static func column(_ spec: String, header: [String]) -> Int? {
        let s = spec.trimmingSpaces
        if s.isEmpty { return nil }
        let key = CatalogText.normalise(s)
        if let i = header.firstIndex(where: { CatalogText.normalise($0) == key }) { return i }
        if let n = Int(s), n >= 1 { return n - 1 }
        let upper = s.uppercased()
        if upper.utf8.count <= 3, upper.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }) { return SheetReader.column(of: upper) }
        return nil
    }

    public init(grid: PriceListGrid, mapping m: Catalog_ColumnMapping) throws(CatalogError) {
        let problems = Self.validate(m)
        guard problems.isEmpty else { throw .invalid("the column mapping is not complete", problems) }
        let headerIndex: Int
        if m.headerRow > 0 {
            guard let i = grid.rows.firstIndex(where: { $0.number == Int(m.headerRow) }) else {
                throw .invalid(
                    "the file has no row \(m.headerRow) to take the headers from (its last row is \(grid.rows.last?.number ?? 0))",
                    field: "mapping.header_row")
            }
            headerIndex = i
        } else {
            guard let i = grid.rows.firstIndex(where: { $0.cells.contains { !$0.trimmingSpaces.isEmpty } }) else {
                throw .invalid("the file has no rows", field: "data")
            }
            headerIndex = i
        }
        headerRow = grid.rows[headerIndex].number
        let header = grid.rows[headerIndex].cells
        var missing = [RPCError.FieldViolation]()
        func resolve(_ spec: String, _ field: String) -> Int? {
            if spec.trimmingSpaces.isEmpty { return nil }
            if let c = Self.column(spec, header: header) { return c }
            missing.append(
                .init(
                    field: field,
                    description:
                        "no column \"\(spec)\" in header row \(headerRow) (it has: \(header.filter { !$0.trimmingSpaces.isEmpty }.map { "\"\($0)\"" }.joined(separator: ", ")))"
                ))
            return nil
        }
        let sku = resolve(m.skuColumn, "mapping.sku_column")
        var names = [Int]()
        for (i, n) in m.nameColumns.enumerated() where !n.trimmingSpaces.isEmpty {
            if let c = resolve(n, "mapping.name_columns[\(i)]") { names.append(c) }
        }
        let price = resolve(m.priceColumn, "mapping.price_column")
        let stock = resolve(m.stockColumn, "mapping.stock_column")
        let unit = resolve(m.unitColumn, "mapping.unit_column")
        let currency = resolve(m.currencyColumn, "mapping.currency_column")
        guard missing.isEmpty, let price else {
            throw .columnsMissing(summary: "the price list does not have the columns its mapping names", missing)
        }
        let columns = Columns(sku: sku, name: names, price: price, stock: stock, unit: unit, currency: currency)
        let defaultCurrency = m.currency.isEmpty ? "RUB" : m.currency.uppercased()
        var seen = [String: Int]()
        for r in grid.rows[(headerIndex + 1)...] {
            if r.cells.allSatisfy({ $0.trimmingSpaces.isEmpty }) { continue }
            switch Self.read(r.cells, row: r.number, columns, defaultCurrency: defaultCurrency) {
            case .failure(let reason):
                rejected.append(Self.rejection(r.number, reason.text))
            case .success(let item):
                if let first = seen[item.sku] {
                    let what = item.keyedByName ? "the name \"\(item.name)\"" : "SKU \(item.sku)"
                    rejected.append(Self.rejection(r.number, "\(what) already on row \(first); each item once per file"))
                    continue
                }
                seen[item.sku] = r.number
                rows.append(item)
            }
        }
    }

    static func rejection(_ row: Int, _ reason: String) -> Catalog_RejectedRow {
        var x = Catalog_RejectedRow()
        x.row = Int32(row)
        x.reason = reason
        return x
    }

    static func read(_ cells: [String], row: Int, _ c: Columns, defaultCurrency: String) -> Result<PriceListRow, RowProblem> {
        func cell(_ i: Int?) -> String {
            guard let i, i < cells.count else { return "" }
            return cells[i].trimmingSpaces
        }
        let name = c.name.map(cell).filter { !$0.isEmpty }.joined(separator: " ")
        if name.isEmpty { return .failure("no name (column \(c.name.map(Self.letter).joined(separator: "+")) is empty)") }
        if name.count > 500 { return .failure("the name is longer than 500 characters") }
        let rawPrice = cell(c.price)
        if rawPrice.isEmpty { return .failure("no price (column \(Self.letter(c.price)) is empty)") }
        guard let price = CatalogText.decimal(rawPrice, places: 2) else {
            return .failure("price \"\(Clip.value(rawPrice))\" is not an amount (like 1234.50 or 1 234,50)")
        }
        var stock: Int64? = nil
        if let s = c.stock {
            let raw = cell(s)
            if raw.isEmpty {
                stock = 0
            } else if let v = CatalogText.decimal(raw, places: 3) {
                stock = v
            } else {
                return .failure("stock \"\(Clip.value(raw))\" is not a quantity >= 0 (up to 3 decimal places)")
            }
        }
        var currency = cell(c.currency).uppercased()
        if currency == "РУБ" || currency == "РУБ." || currency == "₽" || currency == "RUR" { currency = "RUB" }
        if currency.isEmpty { currency = defaultCurrency }
        guard isCurrency(currency) else { return .failure("currency \"\(Clip.value(currency))\" is not an ISO 4217 code (RUB, USD, EUR)") }
        var sku = cell(c.sku)
        if sku.count > 100 { return .failure("the SKU is longer than 100 characters") }
        // A row without a SKU (a list without them, or a blank cell) is keyed by its normalised name.
        let keyedByName = sku.isEmpty
        if keyedByName { sku = "name:" + CatalogText.normalise(name) }
        return .success(
            PriceListRow(
                row: row, sku: sku, keyedByName: keyedByName, name: name, unit: String(cell(c.unit).prefix(20)), priceCents: price,
                currency: currency, stockMilli: stock))
    }

    struct RowProblem: Error, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
        let text: String
        init(stringLiteral value: String) { text = value }
        init(stringInterpolation: DefaultStringInterpolation) { text = String(stringInterpolation: stringInterpolation) }
    }

    static func letter(_ i: Int) -> String {
        var n = i + 1
        var s = ""
        while n > 0 {
            let r = (n - 1) % 26
            s = String(UnicodeScalar(UInt8(65 + r))) + s
            n = (n - 1) / 26
        }
        return s
    }
}

extension Result where Failure == PriceListImport.RowProblem {
    static func failure(_ text: String) -> Result { .failure(PriceListImport.RowProblem(stringLiteral: text)) }
}

import ArgumentParser
import LeadwireAPI
import Wire

#if canImport(Glibc)
    import Glibc
#endif

extension Connection {
    func catalogClient() throws -> Catalog_ServiceClient {
        Catalog_ServiceClient(channel: try WireChannel(address: intake, tls: tls.client))
    }
}

/// Reads a whole file (price lists are at most 64 MiB; the service refuses more).
func readFile(_ path: String) throws -> [UInt8] {
    guard let f = fopen(path, "rb") else { throw ValidationError("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    var out = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buffer, 1, buffer.count, f)
        if n > 0 { out += buffer[0..<n] }
        if n < buffer.count { break }
    }
    return out
}

struct CatalogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog", abstract: "The product catalogue: import supplier price lists, search, show an item.",
        subcommands: [Import.self, Search.self, Show.self, Mapping.self])

    struct MappingOptions: ParsableArguments {
        @Option(help: "Column of the SKU (header text, letter or number); omit for a list without SKUs.") var sku: String?
        @Option(help: "Column(s) of the name, joined with spaces; repeat for several (e.g. --name Наименование --name Модель).")
        var name: [String] = []
        @Option(help: "Column of the price.") var price: String?
        @Option(help: "Column of the stock on hand.") var stock: String?
        @Option(help: "Column of the unit.") var unit: String?
        @Option(name: .customLong("currency-column"), help: "Column of the currency.") var currencyColumn: String?
        @Option(help: "Currency where the list has no currency column (default RUB).") var currency: String?
        @Option(name: .customLong("header-row"), help: "Row of the column headers (1-based; default: the first non-empty row).")
        var headerRow: Int?
        @Option(help: "XLSX: the sheet's name (default: the first).") var sheet: String?
        @Option(help: "CSV: the separator (default: guessed).") var delimiter: String?

        var given: Bool {
            sku != nil || !name.isEmpty || price != nil || stock != nil || unit != nil || currencyColumn != nil || currency != nil
                || headerRow != nil || sheet != nil || delimiter != nil
        }

        /// The flags over `base` (the supplier's stored mapping, when changing only some columns).
        func mapping(over base: Catalog_ColumnMapping) -> Catalog_ColumnMapping {
            var m = base
            if let sku { m.skuColumn = sku }
            if !name.isEmpty { m.nameColumns = name }
            if let price { m.priceColumn = price }
            if let stock { m.stockColumn = stock }
            if let unit { m.unitColumn = unit }
            if let currencyColumn { m.currencyColumn = currencyColumn }
            if let currency { m.currency = currency }
            if let headerRow { m.headerRow = Int32(headerRow) }
            if let sheet { m.sheet = sheet }
            if let delimiter { m.delimiter = delimiter == "tab" ? "\t" : delimiter }
            return m
        }
    }

    static func describe(_ m: Catalog_ColumnMapping) -> String {
        var parts = ["name=\(m.nameColumns.joined(separator: "+"))", "price=\(m.priceColumn)"]
        if !m.skuColumn.isEmpty { parts.insert("sku=\(m.skuColumn)", at: 0) }
        if !m.stockColumn.isEmpty { parts.append("stock=\(m.stockColumn)") }
        if !m.unitColumn.isEmpty { parts.append("unit=\(m.unitColumn)") }
        if m.headerRow > 0 { parts.append("header-row=\(m.headerRow)") }
        if !m.sheet.isEmpty { parts.append("sheet=\(m.sheet)") }
        return parts.joined(separator: " ")
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import a supplier's price list (CSV or XLSX).",
            discussion: """
                The column mapping given here is kept for the supplier; later imports of the same \
                supplier need only the file. Re-importing an unchanged file changes nothing. Rows \
                that cannot be taken are listed with their row number and reason; the rest is imported.
                """)
        @OptionGroup var c: Connection
        @Argument(help: "The file (.csv or .xlsx).") var file: String
        @Option(help: "The supplier whose price list it is.") var supplier: String
        @OptionGroup var columns: MappingOptions

        func run() async throws {
            let bytes = try readFile(file)
            var start = Catalog_ImportStart()
            start.supplier = supplier
            start.fileName = String(file.split(separator: "/").last ?? "")
            let client = try c.catalogClient()
            if columns.given {
                var base = Catalog_ColumnMapping()
                var get = Catalog_GetMappingRequest()
                get.supplier = supplier
                if let stored = try? await client.getMapping(get, options: c.options) { base = stored }
                start.mapping = columns.mapping(over: base)
            }
            var options = c.options
            options.timeout = .seconds(max(c.timeout, 300))
            let report = try await call { try await client.importPriceList(start, file: bytes, options: options) }
            print(
                "\(report.importId): \(report.rows) rows — \(report.created) new, \(report.updated) updated, \(report.unchanged) unchanged, \(report.rejected) refused"
            )
            if report.keyedByName > 0 { print("\(report.keyedByName) items have no SKU and are keyed by their name") }
            print("mapping: \(CatalogCommand.describe(report.mapping ?? Catalog_ColumnMapping()))")
            for r in report.rejectedRows { print("  row \(r.row): \(r.reason)") }
        }
    }

    struct Search: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Find items by SKU or by words of the name (typos forgiven).")
        @OptionGroup var c: Connection
        @Argument(help: "A SKU or words of the name.") var query: [String]
        @Option(help: "Only this supplier's items.") var supplier: String = ""
        @Option(help: "At most this many (1..100).") var limit: Int = 20
        @Flag(help: "CSV instead of a table.") var csv = false

        func run() async throws {
            var req = Catalog_SearchItemsRequest()
            req.query = query.joined(separator: " ")
            req.supplier = supplier
            req.limit = Int32(limit)
            let client = try c.catalogClient()
            let r = try await call { try await client.searchItems(req, options: c.options) }
            if r.hits.isEmpty {
                print("nothing found for \"\(req.query)\"")
                return
            }
            if !r.suggestion.isEmpty && !csv { print("did you mean: \(r.suggestion)") }
            printTable(
                ["id", "supplier", "sku", "name", "price", "available", "match"],
                r.hits.map { h in
                    let i = h.item ?? Catalog_Item()
                    return [
                        i.id, i.supplier, i.keyedByName ? "-" : i.sku, i.name, "\(i.price) \(i.currency)", "\(i.available) \(i.unit)",
                        h.match,
                    ]
                }, csv: csv)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One item with its price history.")
        @OptionGroup var c: Connection
        @Argument(help: "The item id (item-17).") var id: String

        func run() async throws {
            var req = Catalog_GetItemRequest()
            req.id = id
            let client = try c.catalogClient()
            let d = try await call { try await client.getItem(req, options: c.options) }
            let i = d.item ?? Catalog_Item()
            print("\(i.id)  \(i.name)")
            print("supplier \(i.supplier), SKU \(i.keyedByName ? "none (keyed by name)" : i.sku), unit \(i.unit.isEmpty ? "-" : i.unit)")
            print(
                "price \(i.price) \(i.currency); stock \(i.stock), reserved \(i.reserved), available \(i.available); updated \(when(i.updatedAtMs))"
            )
            if !d.history.isEmpty {
                print("history:")
                printTable(
                    ["when", "price", "stock", "import"],
                    d.history.map { [when($0.atMs), "\($0.price) \($0.currency)", $0.stock, $0.importId] })
            }
        }
    }

    struct Mapping: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show or set a supplier's column mapping.")
        @OptionGroup var c: Connection
        @Option(help: "The supplier.") var supplier: String
        @OptionGroup var columns: MappingOptions

        func run() async throws {
            let client = try c.catalogClient()
            var get = Catalog_GetMappingRequest()
            get.supplier = supplier
            if !columns.given {
                let m = try await call { try await client.getMapping(get, options: c.options) }
                print(CatalogCommand.describe(m))
                return
            }
            let base = (try? await client.getMapping(get, options: c.options)) ?? Catalog_ColumnMapping()
            var put = Catalog_PutMappingRequest()
            put.supplier = supplier
            put.mapping = columns.mapping(over: base)
            let m = try await call { try await client.putMapping(put, options: c.options) }
            print("stored: \(CatalogCommand.describe(m))")
        }
    }
}

struct ProposalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proposal", abstract: "Commercial proposals for leads: create, show, step through approval, get the PDF.",
        subcommands: [Create.self, Show.self, List.self, Act.self, Pdf.self, Figures.self])

    static func show(_ p: Catalog_Proposal) {
        print("\(p.id)  \(p.number) v\(p.version)  \(p.status.name)  lead \(p.leadRegistrationNumber)")
        if let cl = p.client {
            print("client: \(cl.name)\(cl.taxId.isEmpty ? "" : ", INN \(cl.taxId)")\(cl.address.isEmpty ? "" : ", \(cl.address)")")
        }
        if let m = p.manager { print("manager: \([m.name, m.phone, m.email].filter { !$0.isEmpty }.joined(separator: ", "))") }
        printTable(
            ["#", "item", "name", "qty", "price", "discount", "total"],
            p.lines.map {
                [
                    "\($0.number)", $0.itemId.isEmpty ? "-" : $0.itemId, $0.name, "\($0.quantity) \($0.unit)",
                    $0.price + ($0.cataloguePrice.isEmpty ? "" : " (catalogue \($0.cataloguePrice): \($0.priceReason))"),
                    $0.discountPercent.isEmpty ? "" : "\($0.discountPercent)%", $0.total,
                ]
            })
        print("total \(p.total) \(p.currency)" + (p.vatRate == "0" ? ", without VAT" : ", including VAT \(p.vatRate)%: \(p.vat)"))
        print("valid until \(p.validUntil)\(p.note.isEmpty ? "" : "; note: \(p.note)")")
        for e in p.history { print("  \(when(e.atMs))  \(e.actor)  \(e.status.name)\(e.note.isEmpty ? "" : "  \(e.note)")") }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A proposal for a lead: its order lines, or the lines given here.",
            discussion: """
                --item item-17:2 takes the catalogue's name and price (item-17:2:4500:reason overrides \
                the price); --line "Монтаж:1:15000" types a line (name:quantity:price). Repeat either.
                """)
        @OptionGroup var c: Connection
        @Argument(help: "The lead (id or registration number).") var lead: String
        @Option(help: "ITEM:QTY[:PRICE:REASON] — a catalogue item.") var item: [String] = []
        @Option(help: "NAME:QTY:PRICE — a line typed by hand.") var line: [String] = []
        @Option(name: .customLong("vat-rate"), help: "VAT percent (default: the service's).") var vatRate: String = ""
        @Option(name: .customLong("valid-until"), help: "YYYY-MM-DD (default: in 14 days).") var validUntil: String = ""
        @Option(help: "ru or en.") var locale: String = ""
        @Option(help: "A note printed under the totals.") var note: String = ""

        func run() async throws {
            var req = Catalog_CreateProposalRequest()
            req.leadId = lead
            for spec in item {
                let p = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                guard p.count == 2 || p.count == 4 else {
                    throw ValidationError("--item is ITEM:QTY or ITEM:QTY:PRICE:REASON, not \(spec)")
                }
                var i = Catalog_ProposalLineInput()
                i.itemId = p[0]
                i.quantity = p[1]
                if p.count == 4 {
                    i.price = p[2]
                    i.priceReason = p[3]
                }
                req.lines.append(i)
            }
            for spec in line {
                let p = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                guard p.count == 3 else { throw ValidationError("--line is NAME:QTY:PRICE, not \(spec)") }
                var i = Catalog_ProposalLineInput()
                i.name = p[0]
                i.quantity = p[1]
                i.price = p[2]
                req.lines.append(i)
            }
            req.vatRate = vatRate
            req.validUntil = validUntil
            req.locale = locale
            req.note = note
            let client = try c.catalogClient()
            let p = try await call { try await client.createProposal(req, options: c.options) }
            ProposalCommand.show(p)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One proposal: lines, totals, history.")
        @OptionGroup var c: Connection
        @Argument(help: "The proposal id (proposal-3).") var id: String
        func run() async throws {
            var req = Catalog_GetProposalRequest()
            req.id = id
            let client = try c.catalogClient()
            ProposalCommand.show(try await call { try await client.getProposal(req, options: c.options) })
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Proposals, newest first (a lead's: every version).")
        @OptionGroup var c: Connection
        @Option(help: "Only this lead's.") var lead: String = ""
        @Option(help: "At most this many.") var limit: Int = 50
        func run() async throws {
            var req = Catalog_ListProposalsRequest()
            req.leadId = lead
            req.limit = Int32(limit)
            let client = try c.catalogClient()
            let r = try await call { try await client.listProposals(req, options: c.options) }
            printTable(
                ["id", "number", "v", "status", "lead", "manager", "total"],
                r.proposals.map {
                    [
                        $0.id, $0.number, "\($0.version)", $0.status.name, $0.leadRegistrationNumber,
                        $0.manager?.name ?? "", "\($0.total) \($0.currency)",
                    ]
                })
        }
    }

    struct Act: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "approve, send, accept, decline or return (to draft) a proposal.")
        @OptionGroup var c: Connection
        @Argument(help: "approve, send, accept, decline or return.") var action: String
        @Argument(help: "The proposal id.") var id: String
        @Option(help: "Why (required to decline or return).") var note: String = ""
        func run() async throws {
            var req = Catalog_ActOnProposalRequest()
            req.id = id
            req.note = note
            switch action {
            case "approve": req.action = .approve
            case "send": req.action = .send
            case "accept": req.action = .accept
            case "decline": req.action = .decline
            case "return": req.action = .return
            default: throw ValidationError("the action is approve, send, accept, decline or return, not \(action)")
            }
            let client = try c.catalogClient()
            let p = try await call { try await client.actOnProposal(req, options: c.options) }
            print("\(p.id)  \(p.number) v\(p.version)  \(p.status.name)")
        }
    }

    struct Figures: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Proposals by status, by manager and per period; how many leads with a proposal were accepted.")
        @OptionGroup var c: Connection
        @Option(help: "Created from, YYYY-MM-DD.") var from: String = ""
        @Option(help: "Created before, YYYY-MM-DD.") var to: String = ""
        @Option(help: "day, month or year.") var period: String = "month"
        func run() async throws {
            var req = Catalog_ProposalFiguresRequest()
            for (text, flag) in [(from, "--from"), (to, "--to")] where !text.isEmpty {
                guard let day = CalendarDate.dayNumber(text) else { throw ValidationError("\(flag) is a date YYYY-MM-DD, not \(text)") }
                if flag == "--from" { req.fromMs = Int64(day) * 86_400_000 } else { req.toMs = Int64(day) * 86_400_000 }
            }
            req.period = period
            let client = try c.catalogClient()
            let f = try await call { try await client.proposalFigures(req, options: c.options) }
            printTable(["status", "proposals", "total"], f.byStatus.map { [$0.status.name, "\($0.count)", $0.total] })
            print("")
            printTable(
                ["manager", "proposals", "accepted", "accepted total"],
                f.byManager.map { [$0.manager, "\($0.proposals)", "\($0.accepted)", $0.acceptedTotal] })
            print("")
            printTable(
                ["period", "proposals", "total", "accepted total"],
                f.periods.map { [$0.period, "\($0.proposals)", $0.total, $0.acceptedTotal] })
            print("\nleads with a proposal: \(f.leadsWithProposal); accepted or done: \(f.leadsAccepted) (\(f.conversionPercent)%)")
        }
    }

    struct Pdf: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the proposal as a PDF file.")
        @OptionGroup var c: Connection
        @Argument(help: "The proposal id.") var id: String
        @Option(name: .shortAndLong, help: "The file to write (default: the proposal's number, e.g. КП-2026-000001-v1.pdf).")
        var output: String?
        func run() async throws {
            var req = Catalog_RenderProposalRequest()
            req.id = id
            let client = try c.catalogClient()
            var name = ""
            var bytes = [UInt8]()
            try await call {
                try await client.renderProposal(req, options: c.options) { chunks in
                    for try await chunk in chunks {
                        if !chunk.fileName.isEmpty { name = chunk.fileName }
                        bytes += chunk.data
                    }
                }
            }
            let path = output ?? name
            guard let f = fopen(path, "wb") else { throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))") }
            defer { fclose(f) }
            guard fwrite(bytes, 1, bytes.count, f) == bytes.count else { throw ValidationError("could not write all of \(path)") }
            print("\(path): \(bytes.count) bytes")
        }
    }
}

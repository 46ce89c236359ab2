import Foundation
import LeadwireAPI
import Store
import StoreTestSupport
import Testing
import ZIPFoundation

@testable import Catalog

@Suite struct CatalogTextTests {
    @Test func normalisesCaseYoAndPunctuation() {
        #expect(CatalogText.normalise("Перфоратор  BOSCH GBH 2-26, Ёмкость") == "перфоратор bosch gbh 2 26 емкость")
        #expect(CatalogText.normalise("  --  ") == "")
    }

    @Test func readsPricesAsPriceListsWriteThem() {
        #expect(CatalogText.decimal("1 234,50", places: 2) == 123_450)
        #expect(CatalogText.decimal("1\u{00A0}234.5 ₽", places: 2) == 123_450)
        #expect(CatalogText.decimal("12,00 руб.", places: 2) == 1200)
        #expect(CatalogText.decimal("$ 7", places: 2) == 700)
        #expect(CatalogText.decimal("1 200", places: 3) == 1_200_000)
        #expect(CatalogText.decimal("abc", places: 2) == nil)
        #expect(CatalogText.decimal("-5", places: 2) == nil)
        #expect(CatalogText.decimal("1,2,3", places: 2) == nil)
        #expect(CatalogText.decimal("1.234", places: 2) == nil)
        #expect(CatalogText.decimal("12 шт 5", places: 2) == nil)
    }

    @Test func countsTyposIncludingSwappedLetters() {
        #expect(CatalogText.distance("перфаратор", "перфоратор") == 1)
        #expect(CatalogText.distance("makitta", "makita") == 1)
        #expect(CatalogText.distance("дерль", "дрель") == 1)
        #expect(CatalogText.distance("abc", "xyz") == 3)
        #expect(CatalogText.distance("короткое", "совсемдругоеслово", limit: 2) == 3)
    }
}

@Suite struct PriceListTests {
    let mapping: Catalog_ColumnMapping = {
        var m = Catalog_ColumnMapping()
        m.skuColumn = "Артикул"
        m.nameColumns = ["Наименование", "Модель"]
        m.priceColumn = "C"
        m.stockColumn = "4"
        return m
    }()

    @Test func readsCSVThroughAMappingAndNamesBadRows() throws {
        let csv = """
            Артикул;Наименование;Цена;Остаток;Модель
            A-1;Дрель;1 000,50;3;HP1630
            A-2;Кабель;85;;
            A-1;Дубль;1;1;
            ;Без артикула;10;1;X
            A-3;;5;1;
            A-4;Плохая цена;дорого;1;
            A-5;Плохой остаток;5;много;
            """
        let grid = try PriceListGrid.read(Array(csv.utf8), format: .unspecified, fileName: "a.csv", mapping: mapping)
        let list = try PriceListImport(grid: grid, mapping: mapping)
        #expect(list.rows.map(\.sku) == ["A-1", "A-2", "name:без артикула x"])
        #expect(list.rows[0].name == "Дрель HP1630" && list.rows[0].priceCents == 100_050 && list.rows[0].stockMilli == 3000)
        #expect(list.rows[1].stockMilli == 0 && list.rows[1].currency == "RUB")
        #expect(list.rows[2].keyedByName)
        #expect(list.rejected.map(\.row) == [4, 6, 7, 8])
        #expect(list.rejected[0].reason.contains("already on row 2"))
        #expect(list.rejected[1].reason.contains("no name"))
        #expect(list.rejected[2].reason.contains("дорого"))
        #expect(list.rejected[3].reason.contains("много"))
    }

    @Test func readsWindows1251AndGuessesTheSeparator() throws {
        // "Имя,Цена\nДрель,5" in Windows-1251.
        let bytes: [UInt8] = [0xC8, 0xEC, 0xFF, 0x2C, 0xD6, 0xE5, 0xED, 0xE0, 0x0A, 0xC4, 0xF0, 0xE5, 0xEB, 0xFC, 0x2C, 0x35]
        var m = Catalog_ColumnMapping()
        m.nameColumns = ["Имя"]
        m.priceColumn = "Цена"
        let list = try PriceListImport(grid: PriceListGrid.read(bytes, format: .csv, fileName: "", mapping: m), mapping: m)
        #expect(list.rows.map(\.name) == ["Дрель"])
    }

    @Test func namesMissingColumnsWithTheHeaderItFound() throws {
        var m = mapping
        m.priceColumn = "Стоимость"
        let grid = try PriceListGrid.read(Array("Артикул;Наименование;Цена\nA;B;1".utf8), format: .csv, fileName: "", mapping: m)
        do {
            _ = try PriceListImport(grid: grid, mapping: m)
            Issue.record("a mapping naming absent columns was taken")
        } catch {
            guard case .columnsMissing(_, let v) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(v.map(\.field) == ["mapping.name_columns[1]", "mapping.price_column"])
            #expect(v[1].description.contains("\"Цена\""))
        }
    }

    /// An XLSX made the way spreadsheet programs write one: shared strings (one rich-text), an
    /// inline string, numbers, a gap between cells and the sheet found through the relationships.
    static func workbook(prices: String? = nil) throws -> [UInt8] {
        let archive = try Archive(accessMode: .create)
        func add(_ path: String, _ text: String) throws {
            let data = Data(text.utf8)
            try archive.addEntry(with: path, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .deflate) {
                position, size in
                data.subdata(in: Int(position)..<Int(position) + size)
            }
        }
        try add(
            "xl/workbook.xml",
            """
            <workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
            <sheets><sheet name="Обложка" sheetId="1" r:id="rId1"/><sheet name="Цены" sheetId="2" r:id="rId2"/></sheets></workbook>
            """)
        try add(
            "xl/_rels/workbook.xml.rels",
            """
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
            <Relationship Id="rId1" Type="worksheet" Target="worksheets/sheet1.xml"/>
            <Relationship Id="rId2" Type="worksheet" Target="worksheets/prices.xml"/></Relationships>
            """)
        try add(
            "xl/sharedStrings.xml",
            """
            <sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>Товар</t></si><si><t>Цена</t></si>
            <si><r><t>Котёл </t></r><r><rPr><b/></rPr><t>газовый</t></r></si></sst>
            """)
        try add(
            "xl/worksheets/sheet1.xml",
            "<worksheet><sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>обложка</t></is></c></row></sheetData></worksheet>")
        try add(
            "xl/worksheets/prices.xml",
            prices ?? """
                <worksheet><sheetData>
                <row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1" t="s"><v>1</v></c></row>
                <row r="3"><c r="A3" t="s"><v>2</v></c><c r="C3"><v>45000.5</v></c></row>
                <row r="4"><c r="A4" t="inlineStr"><is><t>Труба PPR 20</t></is></c><c r="B4" t="s"/><c r="C4"><f>1+1</f><v>95</v></c></row>
                </sheetData></worksheet>
                """)
        return Array(archive.data!)
    }

    @Test func readsXLSXSheetsSharedStringsAndGaps() throws {
        var m = Catalog_ColumnMapping()
        m.sheet = "цены"
        m.nameColumns = ["Товар"]
        m.priceColumn = "Цена"
        let grid = try PriceListGrid.read(Self.workbook(), format: .unspecified, fileName: "b.xlsx", mapping: m)
        #expect(grid.rows.map(\.number) == [1, 3, 4])
        let list = try PriceListImport(grid: grid, mapping: m)
        #expect(list.rows.map(\.name) == ["Котёл газовый", "Труба PPR 20"])
        #expect(list.rows.map(\.priceCents) == [4_500_050, 9_500])
        #expect(list.rows.map(\.row) == [3, 4])
        // A part unpacking past the limit is refused, whatever the archive's size.
        let workbook = try Self.workbook()
        do {
            _ = try XLSX.read(workbook, sheet: "Цены", maxPartBytes: 200)
            Issue.record("an oversized part was unpacked")
        } catch {
            guard case .tooLarge(let why) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(why.contains("xl/"))
        }
        m.sheet = "Лист9"
        #expect(throws: CatalogError.self) { try PriceListGrid.read(Self.workbook(), format: .xlsx, fileName: "", mapping: m) }
    }

    /// A damaged sheet stops the import with the part named, instead of giving the rows before the
    /// damage as if they were the whole list.
    @Test func refusesADamagedSheetInsteadOfReadingPartOfIt() throws {
        var m = Catalog_ColumnMapping()
        m.sheet = "Цены"
        let truncated = """
            <worksheet><sheetData>
            <row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1" t="s"><v>1</v></c></row>
            <row r="3"><c r="A3" t="s"><v>2</v></c><c r="C3"><v>45000.5</v></c></row>
            <row r="4"><c r="A4" t="inlineStr"><is><t>Труба PPR 20</t></is></c><c r="C4"><v>95</v>
            """
        let missingString = """
            <worksheet><sheetData>
            <row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1" t="s"><v>1</v></c></row>
            <row r="3"><c r="A3" t="s"><v>7</v></c><c r="C3"><v>45000.5</v></c></row>
            </sheetData></worksheet>
            """
        let mismatched = "<worksheet><sheetData><row r=\"1\"><c r=\"A1\"><v>1</c></row></sheetData></worksheet>"
        for (sheet, expected) in [
            (truncated, "not well-formed XML"), (mismatched, "not well-formed XML"),
            (missingString, "cell A3 refers to shared string 7, but the workbook has 3"),
        ] {
            do {
                let grid = try PriceListGrid.read(Self.workbook(prices: sheet), format: .xlsx, fileName: "", mapping: m)
                Issue.record("a damaged sheet was read as \(grid.rows.count) rows")
            } catch let error as CatalogError {
                guard case .unreadable(let why) = error else {
                    Issue.record("\(error)")
                    continue
                }
                #expect(why.contains("xl/worksheets/prices.xml"), "\(why)")
                #expect(why.contains(expected), "\(why)")
            } catch {
                Issue.record("\(error)")
            }
        }
    }
}

@Suite struct ProposalMathTests {
    func item(_ n: Int64) -> Catalog_Item? {
        guard n == 1 else { return nil }
        var i = Catalog_Item()
        i.id = "item-1"
        i.sku = "HP1630"
        i.name = "Дрель"
        i.unit = "шт"
        i.price = "4990.00"
        i.currency = "RUB"
        return i
    }

    func input(_ item: String = "", name: String = "", q: String, price: String = "", reason: String = "", discount: String = "")
        -> Catalog_ProposalLineInput
    {
        var i = Catalog_ProposalLineInput()
        i.itemId = item
        i.name = name
        i.quantity = q
        i.price = price
        i.priceReason = reason
        i.discountPercent = discount
        return i
    }

    @Test func pricesLinesAndTotalsWithVATIncluded() throws {
        let (lines, currency) = try ProposalMath.lines(
            [
                input("item-1", q: "2", discount: "10"), input(name: "Монтаж", q: "1.5", price: "1000"),
                input("item-1", q: "1", price: "4500", reason: "опт"),
            ],
            item: item)
        #expect(currency == "RUB")
        #expect(lines.map(\.total) == ["8982.00", "1500.00", "4500.00"])
        #expect(lines[2].cataloguePrice == "4990.00" && lines[0].cataloguePrice.isEmpty)
        let t = ProposalMath.totals(lines, vatBasisPoints: 2000)
        #expect(t.subtotal == 1_498_200 && t.total == 1_498_200)
        #expect(t.vat == 249_700)  // 14,982.00 × 20/120 = 2,497.00
        #expect(ProposalMath.totals(lines, vatBasisPoints: 0).vat == 0)
        #expect(ProposalMath.percentText(1050) == "10.5" && ProposalMath.percentText(2000) == "20")
    }

    @Test func namesEveryBadLine() {
        do {
            _ = try ProposalMath.lines(
                [
                    input("item-1", q: "1", price: "1"), input("item-9", q: "1"), input(name: "", q: "0", price: "x"),
                    input(name: "A", q: "1", price: "1", discount: "120"),
                ],
                item: item)
            Issue.record("accepted bad lines")
        } catch let e as CatalogError {
            guard case .invalid(_, let v) = e else {
                Issue.record("\(e)")
                return
            }
            #expect(v.map(\.field) == ["lines[0].price_reason", "lines[1].item_id", "lines[2].quantity", "lines[3].discount_percent"])
        } catch { Issue.record("\(error)") }
    }

    @Test func stepsFollowTheLifecycle() throws {
        #expect(try ProposalMath.next(.draft, .approve, proposal: "p") == .approved)
        #expect(try ProposalMath.next(.approved, .return, proposal: "p") == .draft)
        #expect(try ProposalMath.next(.approved, .send, proposal: "p") == .sent)
        #expect(try ProposalMath.next(.sent, .decline, proposal: "p") == .declined)
        #expect(throws: CatalogError.self) { try ProposalMath.next(.draft, .send, proposal: "p") }
        #expect(throws: CatalogError.self) { try ProposalMath.next(.accepted, .decline, proposal: "p") }
        #expect(throws: CatalogError.self) { try ProposalMath.next(.draft, .unspecified, proposal: "p") }
    }

    @Test func rendersAPDFWithCyrillicText() {
        var p = Catalog_Proposal()
        p.number = "КП-2026-000001"
        p.version = 1
        p.locale = "ru"
        p.currency = "RUB"
        var c = Catalog_Party()
        c.name = "ООО «Ромашка»"
        p.client = c
        var l = Catalog_ProposalLine()
        l.number = 1
        l.name = "Дрель"
        l.quantity = "2"
        l.price = "4990.00"
        l.total = "9980.00"
        p.lines = [l]
        p.subtotal = "9980.00"
        p.total = "9980.00"
        p.vat = "1663.33"
        p.vatRate = "20"
        let pdf = ProposalPDF.render(p, seller: ProposalSeller(name: "Продавец"))
        #expect(pdf.starts(with: Array("%PDF-".utf8)))
        #expect(pdf.count > 5_000)
        #expect(ProposalPDF.money("1234567.50", locale: "ru") == "1 234 567,50")
        #expect(ProposalPDF.money("1234567.50", locale: "en") == "1,234,567.50")
        #expect(ProposalPDF.money("12.00", locale: "ru") == "12,00")
    }
}

/// The tables on a real database (SQLite file, or PostgreSQL when the suite runs there).
@Suite struct CatalogStoreTests {
    static let migrations = [
        Migration(
            1, "catalogue", CatalogStore.sqliteSchema + ProposalStore.schema, postgres: CatalogStore.postgresSchema + ProposalStore.schema),
        // Proposal figures read intake's lead statuses beside them.
        Migration(2, "leads", "CREATE TABLE leads (id INTEGER PRIMARY KEY, status INTEGER NOT NULL)"),
    ]

    func database() throws -> Database {
        let scratch = ScratchDatabase("catalog.sqlite")
        var c = Database.Configuration(path: scratch.path)
        c.schema = scratch.schema
        return try Database(configuration: c, migrations: Self.migrations)
    }

    func rows(_ items: [(String, String, Int64, Int64?)]) -> PriceListImport {
        var list = try! PriceListImport(
            grid: PriceListGrid(rows: [(1, ["sku", "name", "price"])]),
            mapping: {
                var m = Catalog_ColumnMapping()
                m.nameColumns = ["name"]
                m.priceColumn = "price"
                return m
            }())
        list.rows = items.enumerated().map { i, x in
            PriceListRow(row: i + 2, sku: x.0, keyedByName: false, name: x.1, unit: "шт", priceCents: x.2, currency: "RUB", stockMilli: x.3)
        }
        return list
    }

    @Test func importIsIdempotentAndKeepsPriceHistory() async throws {
        let db = try database()
        let list = rows([("A-1", "Перфоратор Bosch", 100_00, 5000), ("A-2", "Дрель Makita", 50_00, nil)])
        let m = Catalog_ColumnMapping()
        let first = try await db.write {
            try CatalogStore.apply($0, supplier: "s", list: list, fileName: "f", sha256: "x", mapping: m, actor: "t", now: 1)
        }
        #expect((first.created, first.updated, first.unchanged) == (2, 0, 0))
        let again = try await db.write {
            try CatalogStore.apply($0, supplier: "s", list: list, fileName: "f", sha256: "x", mapping: m, actor: "t", now: 2)
        }
        #expect((again.created, again.updated, again.unchanged) == (0, 0, 2))
        let changed = rows([("A-1", "Перфоратор Bosch", 120_00, 5000)])
        let third = try await db.write {
            try CatalogStore.apply($0, supplier: "s", list: changed, fileName: "f", sha256: "y", mapping: m, actor: "t", now: 3)
        }
        #expect((third.created, third.updated, third.unchanged) == (0, 1, 0))
        let d = try await db.read { try CatalogStore.details($0, id: 1) }
        #expect(d?.item?.price == "120.00" && d?.history.map(\.price) == ["120.00", "100.00"])
        // Another supplier's same SKU is another item.
        let other = try await db.write {
            try CatalogStore.apply($0, supplier: "t", list: changed, fileName: "f", sha256: "y", mapping: m, actor: "t", now: 4)
        }
        #expect(other.created == 1)
        await db.close()
    }

    @Test func searchFindsSKUWordsPrefixesAndTypos() async throws {
        let db = try database()
        let list = rows([
            ("GBH-226", "Перфоратор Bosch GBH 2-26", 100_00, 1), ("HP1630", "Дрель ударная Makita HP1630", 50_00, 1),
            ("S-1", "Смеситель для кухни Grohe", 70_00, 1), ("S-2", "Смеситель для ванной", 60_00, 1),
            ("K-1", "Кабель ВВГнг 3х2,5", 1_00, 1),
        ])
        _ = try await db.write {
            try CatalogStore.apply($0, supplier: "s", list: list, fileName: "f", sha256: "x", mapping: .init(), actor: "t", now: 1)
        }
        func search(_ q: String) async throws -> Catalog_SearchItemsResponse {
            try await db.read { try CatalogSearch.search($0, query: q, supplier: "", limit: 10) }
        }
        let sku = try await search("hp1630")
        #expect(sku.hits.first?.match == "sku" && sku.hits.first?.item?.sku == "HP1630")
        #expect(try await search("смесит").hits.compactMap(\.item?.sku).sorted() == ["S-1", "S-2"])
        #expect(try await search("смеситель кухни").hits.compactMap(\.item?.sku) == ["S-1"])
        #expect(try await search("ВВГНГ 3х2").hits.compactMap(\.item?.sku) == ["K-1"])
        let typo = try await search("перфаратор бош")
        #expect(typo.hits.isEmpty)  // "бош" is no word of any name, nor close enough to one to correct
        let typo2 = try await search("перфаратор")
        #expect(typo2.hits.compactMap(\.item?.sku) == ["GBH-226"] && typo2.hits[0].match == "similar")
        #expect(typo2.suggestion == "Перфоратор Bosch GBH 2-26")
        #expect(try await search("makitta").hits.compactMap(\.item?.sku) == ["HP1630"])
        #expect(try await search("экскаватор").hits.isEmpty)
        // A part of a SKU the name does not hold.
        #expect(try await search("226").hits.compactMap(\.item?.sku) == ["GBH-226"])
        await db.close()
    }

    @Test func reservationsAddUpAndSettle() async throws {
        let db = try database()
        _ = try await db.write {
            try CatalogStore.apply(
                $0, supplier: "s", list: rows([("A", "Дрель", 1, 10_000)]), fileName: "f", sha256: "x", mapping: .init(), actor: "t", now: 1
            )
        }
        let six = [CatalogStock.Line(index: 0, itemID: "item-1", quantityMilli: 6000)]
        try await db.write { try CatalogStock.reserve($0, lead: 1, registrationNumber: "L-1", lines: six, override: false, now: 1) }
        await #expect(throws: CatalogError.self) {
            try await db.write { try CatalogStock.reserve($0, lead: 2, registrationNumber: "L-2", lines: six, override: false, now: 1) }
        }
        let short = try await db.write {
            try CatalogStock.reserve($0, lead: 2, registrationNumber: "L-2", lines: six, override: true, now: 1)
        }
        #expect(short.map(\.available) == ["4"])
        var item = try await db.read { try CatalogStore.item($0, id: 1) }
        #expect((item?.reserved, item?.available) == ("12", "-2"))
        try await db.write { try CatalogStock.release($0, lead: 2) }
        try await db.write { try CatalogStock.consume($0, lead: 1) }
        item = try await db.read { try CatalogStore.item($0, id: 1) }
        #expect((item?.stock, item?.reserved, item?.available) == ("4", "0", "4"))
        await #expect(throws: CatalogError.self) {
            try await db.write {
                try CatalogStock.reserve(
                    $0, lead: 3, registrationNumber: "L-3", lines: [.init(index: 0, itemID: "item-77", quantityMilli: 1)], override: true,
                    now: 1)
            }
        }
        await db.close()
    }
}

import CSV
import Foundation
import LeadwireAPI
import ZIPFoundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// A supplier's price list as a grid of text cells, whatever the file was: rows keep their number in
/// the file (the spreadsheet's row number, a CSV's record number), so a rejected row can be named.
public struct PriceListGrid: Sendable {
    public var rows: [(number: Int, cells: [String])]

    /// Reads CSV or XLSX bytes. `format` unspecified: an XLSX file is a ZIP archive ("PK\3\4").
    public static func read(_ bytes: [UInt8], format: Catalog_FileFormat, fileName: String, mapping: Catalog_ColumnMapping)
        throws(CatalogError)
        -> PriceListGrid
    {
        let isZip = bytes.starts(with: [0x50, 0x4B, 0x03, 0x04])
        switch format {
        case .xlsx: return try XLSX.read(bytes, sheet: mapping.sheet)
        case .csv: return try CSVFile.read(bytes, delimiter: mapping.delimiter)
        default:
            if isZip || fileName.lowercased().hasSuffix(".xlsx") { return try XLSX.read(bytes, sheet: mapping.sheet) }
            return try CSVFile.read(bytes, delimiter: mapping.delimiter)
        }
    }
}

enum CSVFile {
    static func read(_ bytes: [UInt8], delimiter: String) throws(CatalogError) -> PriceListGrid {
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        // Russian price lists still come out of Excel in Windows-1251: text that is not UTF-8 is
        // read as that.
        let text = String(validating: body, as: UTF8.self) ?? Windows1251.decode(body)
        let separator: UnicodeScalar
        if let d = delimiter.unicodeScalars.first, delimiter.unicodeScalars.count == 1 {
            separator = d
        } else if !delimiter.isEmpty {
            throw .invalid("the mapping's delimiter must be one character, got \"\(delimiter)\"", field: "mapping.delimiter")
        } else {
            separator = guessDelimiter(text)
        }
        do {
            let reader = try CSVReader(string: text, hasHeaderRow: false, trimFields: false, delimiter: separator)
            var grid = PriceListGrid(rows: [])
            var n = 0
            while let row = reader.next() {
                n += 1
                grid.rows.append((n, row))
            }
            if let e = reader.error { throw e }
            return grid
        } catch {
            throw .unreadable("the CSV file cannot be read: \(error)")
        }
    }

    /// The separator that splits the first non-empty line into the most fields: Russian Excel writes
    /// ";", others "," or tabs.
    static func guessDelimiter(_ text: String) -> UnicodeScalar {
        let line = text.split(whereSeparator: \.isNewline).first { !$0.allSatisfy(\.isWhitespace) } ?? ""
        var best: (UnicodeScalar, Int) = (",", 0)
        for d: UnicodeScalar in [";", ",", "\t", "|"] {
            let count = line.unicodeScalars.reduce(0) { $0 + ($1 == d ? 1 : 0) }
            if count > best.1 { best = (d, count) }
        }
        return best.0
    }
}

/// Windows-1251, the encoding of Cyrillic text from older Windows software.
enum Windows1251 {
    private static let upper: [UInt32] = [
        0x0402, 0x0403, 0x201A, 0x0453, 0x201E, 0x2026, 0x2020, 0x2021, 0x20AC, 0x2030, 0x0409, 0x2039, 0x040A, 0x040C, 0x040B, 0x040F,
        0x0452, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0xFFFD, 0x2122, 0x0459, 0x203A, 0x045A, 0x045C, 0x045B, 0x045F,
        0x00A0, 0x040E, 0x045E, 0x0408, 0x00A4, 0x0490, 0x00A6, 0x00A7, 0x0401, 0x00A9, 0x0404, 0x00AB, 0x00AC, 0x00AD, 0x00AE, 0x0407,
        0x00B0, 0x00B1, 0x0406, 0x0456, 0x0491, 0x00B5, 0x00B6, 0x00B7, 0x0451, 0x2116, 0x0454, 0x00BB, 0x0458, 0x0405, 0x0455, 0x0457,
    ]

    static func decode(_ bytes: ArraySlice<UInt8>) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes {
            let v: UInt32 = b < 0x80 ? UInt32(b) : b < 0xC0 ? upper[Int(b) - 0x80] : 0x0410 + UInt32(b) - 0xC0
            s.append(Unicode.Scalar(v) ?? "\u{FFFD}")
        }
        return String(s)
    }
}

/// XLSX (Office Open XML): a ZIP archive (ZIPFoundation) of XML parts (FoundationXML's parser).
/// Only what a price list needs: the sheet's cell values, shared strings resolved; formulas give
/// their cached values; dates stay as Excel's serial numbers.
enum XLSX {
    static func read(_ bytes: [UInt8], sheet: String, maxPartBytes: Int = 256 << 20) throws(CatalogError) -> PriceListGrid {
        let archive: Archive
        do {
            archive = try Archive(data: Data(bytes), accessMode: .read)
        } catch {
            throw .unreadable("the file is not an XLSX workbook (not a ZIP archive: \(error))")
        }
        // A few MiB of ZIP can unpack to gigabytes (a "zip bomb"): no part may grow past this,
        // whatever its header claims.
        let limit = maxPartBytes
        struct TooLarge: Error {}
        func part(_ path: String) throws(CatalogError) -> Data? {
            guard let entry = archive[path] else { return nil }
            guard entry.uncompressedSize <= Int64(limit) else {
                throw .tooLarge("the XLSX part \(path) unpacks to \(entry.uncompressedSize >> 20) MiB, more than \(limit >> 20) MiB")
            }
            var data = Data()
            do {
                _ = try archive.extract(entry, skipCRC32: false) { chunk in
                    guard data.count + chunk.count <= limit else { throw TooLarge() }
                    data.append(chunk)
                }
            } catch is TooLarge {
                throw .tooLarge("the XLSX part \(path) unpacks to more than \(limit >> 20) MiB")
            } catch {
                throw .unreadable("the XLSX part \(path) cannot be unpacked: \(error)")
            }
            return data
        }
        guard let workbook = try part("xl/workbook.xml") else {
            throw .unreadable("the file is a ZIP archive but not an XLSX workbook (no xl/workbook.xml)")
        }
        let sheets = try XMLElements.collect(workbook, part: "xl/workbook.xml", element: "sheet")
        guard !sheets.isEmpty else { throw .unreadable("the workbook has no sheets") }
        let chosen: [String: String]
        if sheet.isEmpty {
            chosen = sheets[0]
        } else if let s = sheets.first(where: { ($0["name"] ?? "").caseInsensitiveCompare(sheet) == .orderedSame }) {
            chosen = s
        } else {
            throw .invalid(
                "the workbook has no sheet \"\(sheet)\"; it has: \(sheets.map { $0["name"] ?? "" }.joined(separator: ", "))",
                field: "mapping.sheet")
        }
        var target = "worksheets/sheet1.xml"
        if let rid = chosen["r:id"], let rels = try part("xl/_rels/workbook.xml.rels"),
            let rel = try XMLElements.collect(rels, part: "xl/_rels/workbook.xml.rels", element: "Relationship")
                .first(where: { $0["Id"] == rid }),
            let t = rel["Target"]
        {
            target = t
        }
        let path = target.hasPrefix("/") ? String(target.dropFirst()) : "xl/" + target
        guard let sheetXML = try part(path) else { throw .unreadable("the workbook names \(path) but does not contain it") }
        var shared: [String] = []
        if let strings = try part("xl/sharedStrings.xml") { shared = try SharedStrings.parse(strings) }
        return try SheetReader.parse(sheetXML, part: path, shared: shared)
    }
}

/// Reads one XML part of a workbook; a subclass says what it keeps from each element. A part that
/// is not well-formed stops the import: read up to its first error, a price list would quietly lose
/// every row after it. (FoundationXML's parser on Linux accepts a document that ends with elements
/// still open, so the reader counts them itself.)
class XMLPartReader: NSObject, XMLParserDelegate {
    private var depth = 0
    /// Set by a subclass when the part is well-formed but its content contradicts the workbook.
    var damage: String?

    func read(_ data: Data, part: String) throws(CatalogError) {
        let parser = XMLParser(data: data)
        parser.delegate = self
        guard parser.parse(), depth == 0 else {
            throw .unreadable(
                "the XLSX part \(part) is not well-formed XML (error at line \(parser.lineNumber), column \(parser.columnNumber)); "
                    + "save the file again from the spreadsheet program, or export it as CSV")
        }
        if let damage {
            throw .unreadable("the XLSX part \(part) is damaged: \(damage); save the file again from the spreadsheet program")
        }
    }

    func start(_ element: String, attributes: [String: String]) {}
    func end(_ element: String) {}
    func text(_ string: String) {}

    final func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
        attributes attributeDict: [String: String] = [:]
    ) {
        depth += 1
        start(elementName, attributes: attributeDict)
    }

    final func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        depth -= 1
        end(elementName)
    }

    final func parser(_ parser: XMLParser, foundCharacters string: String) { text(string) }
}

/// Attributes of every element with a given name (workbook sheets, relationships).
final class XMLElements: XMLPartReader {
    let name: String
    var found: [[String: String]] = []

    init(_ name: String) { self.name = name }

    static func collect(_ data: Data, part: String, element: String) throws(CatalogError) -> [[String: String]] {
        let d = XMLElements(element)
        try d.read(data, part: part)
        return d.found
    }

    override func start(_ element: String, attributes: [String: String]) {
        if element == name { found.append(attributes) }
    }
}

/// xl/sharedStrings.xml: `<si>` items, each plain `<t>` or rich-text runs `<r><t>`, concatenated.
final class SharedStrings: XMLPartReader {
    var strings: [String] = []
    private var current = ""
    private var inText = false
    private var inPhonetic = false

    static func parse(_ data: Data) throws(CatalogError) -> [String] {
        let d = SharedStrings()
        try d.read(data, part: "xl/sharedStrings.xml")
        return d.strings
    }

    override func start(_ element: String, attributes: [String: String]) {
        switch element {
        case "si": current = ""
        case "t": inText = !inPhonetic
        case "rPh": inPhonetic = true  // phonetic hints (Japanese) are not the text
        default: break
        }
    }

    override func text(_ string: String) {
        if inText { current += string }
    }

    override func end(_ element: String) {
        switch element {
        case "si": strings.append(current)
        case "t": inText = false
        case "rPh": inPhonetic = false
        default: break
        }
    }
}

/// A worksheet's `<sheetData>`: rows by their `r` number, cells placed by their reference ("C7").
final class SheetReader: XMLPartReader {
    let shared: [String]
    var rows: [(number: Int, cells: [String])] = []
    private var rowNumber = 0
    private var cells: [String] = []
    private var column = 0
    private var reference = ""
    private var type = ""
    private var value = ""
    private var collecting = false

    init(shared: [String]) { self.shared = shared }

    static func parse(_ data: Data, part: String, shared: [String]) throws(CatalogError) -> PriceListGrid {
        let d = SheetReader(shared: shared)
        try d.read(data, part: part)
        return PriceListGrid(rows: d.rows)
    }

    /// "C7" -> 2 (0-based column).
    static func column(of reference: String) -> Int? {
        var n = 0
        var any = false
        for u in reference.utf8 {
            guard u >= 65 && u <= 90 else { break }
            n = n * 26 + Int(u - 64)
            any = true
        }
        return any ? n - 1 : nil
    }

    override func start(_ element: String, attributes: [String: String]) {
        switch element {
        case "row":
            rowNumber = Int(attributes["r"] ?? "") ?? rowNumber + 1
            cells = []
        case "c":
            reference = attributes["r"] ?? ""
            column = attributes["r"].flatMap(Self.column) ?? cells.count
            type = attributes["t"] ?? ""
            value = ""
        case "v", "t":
            collecting = true
        default: break
        }
    }

    override func text(_ string: String) {
        if collecting { value += string }
    }

    override func end(_ element: String) {
        switch element {
        case "v", "t": collecting = false
        case "c":
            var text = value
            // A shared-string cell without a value is an empty cell, not damage.
            if type == "s" && !value.isEmpty {
                guard let i = Int(value), shared.indices.contains(i) else {
                    if damage == nil {
                        damage =
                            "cell \(reference.isEmpty ? "in row \(rowNumber)" : reference) refers to shared string \(value), "
                            + "but the workbook has \(shared.count)"
                    }
                    return
                }
                text = shared[i]
            }
            if type == "b" { text = value == "1" ? "TRUE" : "FALSE" }
            guard column >= 0 && column < 16_384 else { return }
            while cells.count < column { cells.append("") }
            if cells.count == column { cells.append(text) } else { cells[column] = text }
        case "row":
            rows.append((rowNumber, cells))
        default: break
        }
    }
}

import CPangoCairo
import Foundation
import LeadwireAPI
import Messaging
import NIOConcurrencyHelpers

/// Who the proposals come from: the company's details for the header, and the images for the
/// signature and stamp slots (PNG files; an empty slot is drawn as a line / a circle to sign by hand).
public struct ProposalSeller: Sendable {
    public var name: String
    public var details: String
    public var signaturePNG: String
    public var stampPNG: String

    public init(name: String, details: String = "", signaturePNG: String = "", stampPNG: String = "") {
        self.name = name
        self.details = details
        self.signaturePNG = signaturePNG
        self.stampPNG = stampPNG
    }
}

/// The document's words per language: the template the renderer fills. `{number}`, `{date}`,
/// `{lead}`, `{valid_until}` are replaced.
public struct ProposalTemplate: Sendable {
    public var title: String
    public var dated: String
    public var to: String
    public var taxID: String
    public var address: String
    public var intro: String
    public var columns: [String]
    public var subtotal: String
    public var vat: String
    public var noVAT: String
    public var total: String
    public var validUntil: String
    public var regards: String
    public var signature: String
    public var stamp: String

    public static let ru = ProposalTemplate(
        title: "Коммерческое предложение № {number}", dated: "от {date}", to: "Кому", taxID: "ИНН", address: "Адрес",
        intro: "Благодарим за обращение {lead}. Предлагаем следующие товары и услуги:",
        columns: ["№", "Наименование", "Ед.", "Кол-во", "Цена", "Скидка", "Сумма"], subtotal: "Итого", vat: "В том числе НДС {rate}%",
        noVAT: "Без НДС", total: "Всего к оплате", validUntil: "Предложение действительно до {valid_until}", regards: "С уважением,",
        signature: "Подпись", stamp: "М. П.")

    public static let en = ProposalTemplate(
        title: "Commercial proposal No. {number}", dated: "of {date}", to: "To", taxID: "Tax ID", address: "Address",
        intro: "Thank you for your request {lead}. We offer the following goods and services:",
        columns: ["No.", "Item", "Unit", "Qty", "Price", "Discount", "Amount"], subtotal: "Subtotal", vat: "Including VAT {rate}%",
        noVAT: "VAT not applicable", total: "Total due", validUntil: "This offer is valid until {valid_until}.", regards: "Kind regards,",
        signature: "Signature", stamp: "Seal")

    public static func of(_ locale: String) -> ProposalTemplate { locale == "en" ? .en : .ru }
}

/// Renders a proposal to PDF: Pango lays out the text (Cyrillic shaped, fonts found by
/// fontconfig), cairo draws it with the table's rules onto A4 pages. Renders one at a time:
/// fontconfig's caches are process-wide.
public enum ProposalPDF {
    private static let lock = NIOLock()

    static let pageWidth = 595.28
    static let pageHeight = 841.89
    static let margin = 42.0
    static let font = "DejaVu Sans"

    /// Amounts as the language writes them: "12 345,60" (ru) or "12,345.60" (en).
    public static func money(_ decimal: String, locale: String) -> String {
        let negative = decimal.hasPrefix("-")
        let body = negative ? String(decimal.dropFirst()) : decimal
        let parts = body.split(separator: ".", maxSplits: 1).map(String.init)
        let whole = parts.first ?? "0"
        var grouped = ""
        for (i, ch) in whole.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { grouped.append(locale == "en" ? "," : " ") }
            grouped.append(ch)
        }
        var s = String(grouped.reversed())
        if parts.count > 1 { s += (locale == "en" ? "." : ",") + parts[1] }
        return (negative ? "-" : "") + s
    }

    static func quantity(_ q: String, locale: String) -> String { locale == "en" ? q : q.replacingOccurrences(of: ".", with: ",") }

    public static func currencySign(_ code: String, locale: String) -> String {
        switch code {
        case "RUB": locale == "en" ? "RUB" : "₽"
        case "USD": "$"
        case "EUR": "€"
        default: code
        }
    }

    public static func render(_ p: Catalog_Proposal, seller: ProposalSeller) -> [UInt8] {
        lock.withLock { draw(p, seller: seller) }
    }

    /// Collects cairo's output stream.
    final class Sink {
        var bytes: [UInt8] = []
    }

    private static func draw(_ p: Catalog_Proposal, seller: ProposalSeller) -> [UInt8] {
        let sink = Sink()
        let opaque = Unmanaged.passRetained(sink).toOpaque()
        defer { Unmanaged<Sink>.fromOpaque(opaque).release() }
        let surface = cairo_pdf_surface_create_for_stream(
            { closure, data, length in
                guard let closure, let data else { return CAIRO_STATUS_WRITE_ERROR }
                Unmanaged<Sink>.fromOpaque(closure).takeUnretainedValue().bytes.append(
                    contentsOf: UnsafeBufferPointer(start: data, count: Int(length)))
                return CAIRO_STATUS_SUCCESS
            }, opaque, pageWidth, pageHeight)
        let t = ProposalTemplate.of(p.locale)
        let locale = MessageLocale(code: p.locale) ?? .ru
        let title = fill(t.title, p, locale)
        cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_TITLE, title)
        cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_CREATOR, "Leadwire")
        let cr = cairo_create(surface)!
        var page = Page(cr: cr, y: margin)

        // Header: the seller, then the title and date.
        page.text(seller.name, x: margin, width: pageWidth - 2 * margin, size: 11, bold: true)
        if !seller.details.isEmpty { page.text(seller.details, x: margin, width: pageWidth - 2 * margin, size: 8.5) }
        page.rule(y: page.y + 4, width: 0.8)
        page.y += 14
        page.text(title, x: margin, width: pageWidth - 2 * margin, size: 13, bold: true, align: PANGO_ALIGN_CENTER)
        let version = p.version > 1 ? (p.locale == "en" ? " (version \(p.version))" : " (версия \(p.version))") : ""
        page.text(fill(t.dated, p, locale) + version, x: margin, width: pageWidth - 2 * margin, size: 10, align: PANGO_ALIGN_CENTER)
        page.y += 10

        // The client's organisation.
        if let c = p.client {
            var lines = ["\(t.to): \(c.name)"]
            if !c.taxId.isEmpty { lines.append("\(t.taxID): \(c.taxId)") }
            if !c.address.isEmpty { lines.append("\(t.address): \(c.address)") }
            page.text(lines.joined(separator: "\n"), x: margin, width: pageWidth - 2 * margin, size: 10)
            page.y += 8
            page.text(locale.greeting(c.contact.isEmpty ? "" : c.contact), x: margin, width: pageWidth - 2 * margin, size: 10.5, bold: true)
        }
        page.y += 4
        page.text(fill(t.intro, p, locale), x: margin, width: pageWidth - 2 * margin, size: 10)
        page.y += 8

        // The table. The discount column only when a line has a discount: otherwise its width goes
        // to the names, which then wrap less.
        let discounted = p.lines.contains { !$0.discountPercent.isEmpty }
        let sign = currencySign(p.currency, locale: p.locale)
        var header = t.columns
        header[4] += ", \(sign)"
        header[6] += ", \(sign)"
        var widths = [24.0, 193, 38, 52, 72, 58, 74]
        var aligns = [
            PANGO_ALIGN_CENTER, PANGO_ALIGN_LEFT, PANGO_ALIGN_CENTER, PANGO_ALIGN_RIGHT, PANGO_ALIGN_RIGHT, PANGO_ALIGN_RIGHT,
            PANGO_ALIGN_RIGHT,
        ]
        if !discounted {
            widths[1] += widths[5]
            widths.remove(at: 5)
            header.remove(at: 5)
            aligns.remove(at: 5)
        }
        page.row(header, widths: widths, aligns: aligns, bold: true, shaded: true)
        for l in p.lines {
            let name = l.sku.isEmpty ? l.name : "\(l.name)\n\(p.locale == "en" ? "SKU" : "арт.") \(l.sku)"
            var cells = [
                "\(l.number)", name, l.unit, quantity(l.quantity, locale: p.locale), money(l.price, locale: p.locale),
                l.discountPercent.isEmpty ? "" : "\(quantity(FixedPoint.trimmed(l.discountPercent), locale: p.locale))%",
                money(l.total, locale: p.locale),
            ]
            if !discounted { cells.remove(at: 5) }
            if page.y + page.height(of: cells, widths: widths, aligns: aligns) > pageHeight - margin {
                page.newPage()
                page.row(header, widths: widths, aligns: aligns, bold: true, shaded: true)
            }
            page.row(cells, widths: widths, aligns: aligns, bold: false, shaded: false)
        }
        page.y += 8

        // Totals, right-aligned under the table.
        let rate = FixedPoint.trimmed(p.vatRate)
        var totals = [(t.subtotal, money(p.subtotal, locale: p.locale) + " " + sign)]
        if rate.isEmpty || rate == "0" {
            totals.append((t.noVAT, ""))
        } else {
            totals.append(
                (
                    t.vat.replacingOccurrences(of: "{rate}", with: quantity(rate, locale: p.locale)),
                    money(p.vat, locale: p.locale) + " " + sign
                ))
        }
        totals.append((t.total, money(p.total, locale: p.locale) + " " + sign))
        for (i, (label, amount)) in totals.enumerated() {
            if page.y + 20 > pageHeight - margin { page.newPage() }
            let y = page.y
            page.text(
                label + (amount.isEmpty ? "" : ":"), x: margin, width: 400, size: 10, bold: i == totals.count - 1, align: PANGO_ALIGN_RIGHT)
            let after = page.y
            page.y = y
            page.text(
                amount, x: margin + 405, width: pageWidth - 2 * margin - 405, size: 10, bold: i == totals.count - 1,
                align: PANGO_ALIGN_RIGHT)
            page.y = max(after, page.y)
        }
        page.y += 10
        if !p.validUntil.isEmpty { page.text(fill(t.validUntil, p, locale), x: margin, width: pageWidth - 2 * margin, size: 10) }
        if !p.note.isEmpty {
            page.y += 4
            page.text(p.note, x: margin, width: pageWidth - 2 * margin, size: 10)
        }

        // Closing: the manager's contacts, the signature and stamp slots.
        if page.y + 150 > pageHeight - margin { page.newPage() }
        page.y += 14
        page.text(t.regards, x: margin, width: 300, size: 10)
        if let m = p.manager {
            let contacts = [m.name, m.contact, m.phone, m.email].filter { !$0.isEmpty }
            page.text(contacts.joined(separator: "\n"), x: margin, width: 300, size: 10)
        }
        let slotTop = page.y + 12
        page.image(seller.signaturePNG, x: margin, y: slotTop, width: 140, height: 50, placeholder: .line(t.signature))
        page.image(seller.stampPNG, x: margin + 220, y: slotTop - 10, width: 90, height: 90, placeholder: .circle(t.stamp))

        cairo_show_page(cr)
        cairo_destroy(cr)
        cairo_surface_finish(surface)
        cairo_surface_destroy(surface)
        return sink.bytes
    }

    static func fill(_ text: String, _ p: Catalog_Proposal, _ locale: MessageLocale) -> String {
        text.replacingOccurrences(of: "{number}", with: p.number)
            .replacingOccurrences(of: "{date}", with: locale.date(millis: p.createdAtMs))
            .replacingOccurrences(of: "{lead}", with: p.leadRegistrationNumber)
            .replacingOccurrences(of: "{valid_until}", with: locale.date(iso: p.validUntil))
    }

    /// The page being drawn and where the next block goes.
    struct Page {
        let cr: OpaquePointer
        var y: Double

        enum Placeholder {
            case line(String)
            case circle(String)
        }

        mutating func newPage() {
            cairo_show_page(cr)
            y = margin
        }

        func layout(_ text: String, width: Double, size: Double, bold: Bool, align: PangoAlignment) -> OpaquePointer {
            let layout = pango_cairo_create_layout(cr)!
            let desc = pango_font_description_from_string("\(font)\(bold ? " Bold" : "") \(size)")
            pango_layout_set_font_description(layout, desc)
            pango_font_description_free(desc)
            pango_layout_set_width(layout, Int32(width * Double(PANGO_SCALE)))
            pango_layout_set_wrap(layout, PANGO_WRAP_WORD_CHAR)
            pango_layout_set_alignment(layout, align)
            pango_layout_set_text(layout, text, -1)
            return layout
        }

        /// Draws a paragraph at (x, y) and moves y below it.
        mutating func text(
            _ text: String, x: Double, width: Double, size: Double, bold: Bool = false, align: PangoAlignment = PANGO_ALIGN_LEFT
        ) {
            let l = layout(text, width: width, size: size, bold: bold, align: align)
            var w: Int32 = 0
            var h: Int32 = 0
            pango_layout_get_pixel_size(l, &w, &h)
            cairo_set_source_rgb(cr, 0, 0, 0)
            cairo_move_to(cr, x, y)
            pango_cairo_show_layout(cr, l)
            g_object_unref(UnsafeMutableRawPointer(l))
            y += Double(h) + 2
        }

        func rule(y: Double, width: Double) {
            cairo_set_line_width(cr, width)
            cairo_move_to(cr, margin, y)
            cairo_line_to(cr, pageWidth - margin, y)
            cairo_stroke(cr)
        }

        static let cellPadding = 3.5

        /// How tall a row of these cells is drawn (to move to a new page before it, not through it).
        func height(of cells: [String], widths: [Double], aligns: [PangoAlignment]) -> Double {
            var height = 0.0
            for (i, c) in cells.enumerated() {
                let l = layout(c, width: widths[i] - 2 * Self.cellPadding, size: 8.5, bold: false, align: aligns[i])
                var w: Int32 = 0
                var h: Int32 = 0
                pango_layout_get_pixel_size(l, &w, &h)
                g_object_unref(UnsafeMutableRawPointer(l))
                height = max(height, Double(h))
            }
            return height + 2 * Self.cellPadding
        }

        /// One table row: cells wrapped to their column, the row as tall as its tallest cell.
        mutating func row(_ cells: [String], widths: [Double], aligns: [PangoAlignment], bold: Bool, shaded: Bool) {
            let pad = Self.cellPadding
            var layouts = [OpaquePointer]()
            var height = 0.0
            for (i, c) in cells.enumerated() {
                let l = layout(c, width: widths[i] - 2 * pad, size: 8.5, bold: bold, align: aligns[i])
                var w: Int32 = 0
                var h: Int32 = 0
                pango_layout_get_pixel_size(l, &w, &h)
                height = max(height, Double(h))
                layouts.append(l)
            }
            height += 2 * pad
            let total = widths.reduce(0, +)
            if shaded {
                cairo_set_source_rgb(cr, 0.9, 0.9, 0.9)
                cairo_rectangle(cr, margin, y, total, height)
                cairo_fill(cr)
            }
            cairo_set_source_rgb(cr, 0, 0, 0)
            cairo_set_line_width(cr, 0.5)
            var x = margin
            for (i, l) in layouts.enumerated() {
                cairo_rectangle(cr, x, y, widths[i], height)
                cairo_stroke(cr)
                cairo_move_to(cr, x + pad, y + pad)
                pango_cairo_show_layout(cr, l)
                g_object_unref(UnsafeMutableRawPointer(l))
                x += widths[i]
            }
            y += height
        }

        /// A PNG scaled into its slot; without one (or when it cannot be read), the slot to sign or
        /// stamp by hand.
        func image(_ path: String, x: Double, y: Double, width: Double, height: Double, placeholder: Placeholder) {
            if !path.isEmpty, let img = cairo_image_surface_create_from_png(path), cairo_surface_status(img) == CAIRO_STATUS_SUCCESS {
                let w = Double(cairo_image_surface_get_width(img))
                let h = Double(cairo_image_surface_get_height(img))
                if w > 0 && h > 0 {
                    let scale = min(width / w, height / h)
                    cairo_save(cr)
                    cairo_translate(cr, x, y)
                    cairo_scale(cr, scale, scale)
                    cairo_set_source_surface(cr, img, 0, 0)
                    cairo_paint(cr)
                    cairo_restore(cr)
                }
                cairo_surface_destroy(img)
                return
            }
            var p = self
            cairo_new_path(cr)  // no segment from wherever the last text left the point
            cairo_set_source_rgb(cr, 0.35, 0.35, 0.35)
            cairo_set_line_width(cr, 0.6)
            switch placeholder {
            case .line(let label):
                cairo_move_to(cr, x, y + height - 12)
                cairo_line_to(cr, x + width, y + height - 12)
                cairo_stroke(cr)
                p.y = y + height - 10
                p.text(label, x: x, width: width, size: 7.5, align: PANGO_ALIGN_CENTER)
            case .circle(let label):
                cairo_new_sub_path(cr)
                cairo_arc(cr, x + width / 2, y + height / 2, min(width, height) / 2, 0, 2 * Double.pi)
                cairo_stroke(cr)
                p.y = y + height / 2 - 5
                p.text(label, x: x, width: width, size: 8, align: PANGO_ALIGN_CENTER)
            }
        }
    }
}

/// The value conventions of the Leadwire API, shared by the services that read and write them:
/// decimals travel as strings and are held as fixed-point integers; dates travel as "YYYY-MM-DD";
/// instants are milliseconds since the epoch.

#if canImport(Glibc)
    import Glibc
#endif

/// Milliseconds since the epoch; injectable so tests control time.
public typealias Clock = @Sendable () -> Int64

public let systemClock: Clock = {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Decimal digits written as bytes into a string being made (`String(unsafeUninitializedCapacity:)`):
/// the numbers in every lead's texts (amounts, registration numbers, dates), where interpolation
/// appended each piece to a growing string.
public enum DecimalDigits {
    /// How many digits `value` has (at least one).
    public static func count(_ value: UInt64) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// Writes the last `width` digits of `value`, zero-padded, at `out[start ..< start + width]`.
    public static func write(_ value: UInt64, width: Int, into out: UnsafeMutableBufferPointer<UInt8>, at start: Int) {
        var rest = value
        for i in stride(from: start + width - 1, through: start, by: -1) {
            out[i] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        }
    }
}

/// Fixed-point decimals for quantities and money: strings on the wire, integers inside, so no
/// amount ever passes through floating point.
public enum FixedPoint {
    /// Parses "12", "12.5", "-0.25" into value × 10^places. Nil if malformed, with more decimal
    /// places than allowed, or out of range.
    public static func parse(_ text: String, places: Int) -> Int64? {
        // On UTF-8 bytes: it runs for every quantity and price of every order line.
        var bytes = Substring(text.trimmingSpaces).utf8[...]
        var negative = false
        if bytes.first == UInt8(ascii: "-") {
            negative = true
            bytes = bytes.dropFirst()
        }
        var whole: Int64 = 0
        var wholeDigits = 0
        var fraction: Int64 = 0
        var fractionDigits = 0
        var seenPoint = false
        for b in bytes {
            if b == UInt8(ascii: ".") {
                if seenPoint { return nil }
                seenPoint = true
                continue
            }
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(b - UInt8(ascii: "0"))
            if seenPoint {
                fractionDigits += 1
                guard fractionDigits <= places else { return nil }
                fraction = fraction * 10 + digit
            } else {
                wholeDigits += 1
                guard wholeDigits <= 15 else { return nil }
                whole = whole * 10 + digit
            }
        }
        guard wholeDigits > 0, !seenPoint || fractionDigits > 0 else { return nil }
        var scale: Int64 = 1
        for _ in 0..<places { scale *= 10 }
        for _ in fractionDigits..<places { fraction *= 10 }
        let v = whole * scale + fraction
        return negative ? -v : v
    }

    public static func format(_ value: Int64, places: Int) -> String {
        // Written straight into the string (every order line of every lead has three amounts; up
        // to 15 bytes it is a small string, with no allocation): the whole part, at least "0", the
        // point and the fraction's `places` digits.
        var scale: UInt64 = 1
        for _ in 0..<places { scale *= 10 }
        let whole = value.magnitude / scale
        let wholeDigits = DecimalDigits.count(whole)
        let sign = value < 0 ? 1 : 0
        let length = sign + wholeDigits + (places > 0 ? 1 + places : 0)
        return String(unsafeUninitializedCapacity: length) { out in
            if value < 0 { out[0] = UInt8(ascii: "-") }
            DecimalDigits.write(whole, width: wholeDigits, into: out, at: sign)
            if places > 0 {
                out[sign + wholeDigits] = UInt8(ascii: ".")
                DecimalDigits.write(value.magnitude % scale, width: places, into: out, at: sign + wholeDigits + 1)
            }
            return length
        }
    }

    /// A decimal without its trailing fraction zeros, as people write it: "12.500" -> "12.5",
    /// "3.000" -> "3", "20.00" -> "20"; text without a point is returned as it is.
    public static func trimmed(_ decimal: String) -> String {
        guard decimal.contains(".") else { return decimal }
        var s = decimal
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }

    /// quantity (3 places) × price (2 places) -> total (2 places), rounded half away from zero.
    public static func lineTotal(quantityMilli: Int64, priceCents: Int64) -> Int64? {
        let (p, overflow) = quantityMilli.multipliedReportingOverflow(by: priceCents)
        guard !overflow else { return nil }
        return p >= 0 ? (p + 500) / 1000 : (p - 500) / 1000
    }
}

/// Calendar dates as "YYYY-MM-DD", checked for real days.
public enum CalendarDate {
    public static func parse(_ text: String) -> (year: Int, month: Int, day: Int)? {
        let p = text.split(separator: "-", omittingEmptySubsequences: false)
        guard p.count == 3, p[0].count == 4, p[1].count == 2, p[2].count == 2,
            let y = Int(p[0]), let m = Int(p[1]), let d = Int(p[2]), (1...12).contains(m), d >= 1
        else { return nil }
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
        return d <= days ? (y, m, d) : nil
    }

    /// Days since 1970-01-01 (proleptic Gregorian), for comparisons with "now".
    public static func dayNumber(_ y: Int, _ m: Int, _ d: Int) -> Int {
        let yy = m <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    public static func year(ofMillis ms: Int64) -> Int {
        civil(day: day(ofMillis: ms)).year
    }
}

extension CalendarDate {
    /// The calendar date of a day number (days since 1970-01-01), H. Hinnant's civil_from_days.
    public static func civil(day: Int) -> (year: Int, month: Int, day: Int) {
        let z = day + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// "YYYY-MM-DD" for a day number.
    public static func format(day: Int) -> String {
        let c = civil(day: day)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(c.year)-\(two(c.month))-\(two(c.day))"
    }

    /// The day number of "YYYY-MM-DD", nil if it is not a real date.
    public static func dayNumber(_ text: String) -> Int? {
        parse(text).map { dayNumber($0.year, $0.month, $0.day) }
    }

    /// The UTC day an instant (ms since the epoch) falls on.
    public static func day(ofMillis ms: Int64) -> Int {
        Int((ms >= 0 ? ms : ms - 86_399_999) / 86_400_000)
    }
}

/// CSV as ExportCsv writes it (RFC 4180): a field with a comma, quote or line break is quoted, its
/// quotes doubled.
public enum CSV {
    public static func field(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        var quoted = "\""
        for ch in s {
            quoted.append(ch)
            if ch == "\"" { quoted.append("\"") }
        }
        return quoted + "\""
    }
}

extension Character {
    public var isASCIIDigit: Bool { isASCII && isNumber }
}

extension String {
    /// Without leading and trailing whitespace. Checked on every field of every request, so the
    /// common case (nothing to trim) is answered from the UTF-8 bytes without copying.
    public var trimmingSpaces: String {
        // Read through `withUTF8` (a native string is not copied): with `utf8.first` and
        // `utf8.last` a call cost ~160 instructions, now ~95; it runs 18 times a lead.
        var text = self
        let clean = text.withUTF8 { b in
            b.isEmpty || (b[0] > 0x20 && b[0] < 0x7F && b[b.count - 1] > 0x20 && b[b.count - 1] < 0x7F)
        }
        return clean ? self : Substring(self).trimmingSpaces
    }
}

extension Substring {
    public var trimmingSpaces: String {
        var start = startIndex
        var end = endIndex
        while start < end, self[start].isWhitespace { start = index(after: start) }
        while start < end {
            let before = index(before: end)
            guard self[before].isWhitespace else { break }
            end = before
        }
        return String(self[start..<end])
    }
}

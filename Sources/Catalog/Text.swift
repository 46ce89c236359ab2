import LeadwireAPI

/// How names are compared: the catalogue keys SKU-less items by normalised name, and searches
/// normalised names (letters and digits only, lower case, "ё" as "е") by words and trigrams.
public enum CatalogText {
    /// "Перфоратор  BOSCH GBH 2-26, ёмкость" -> "перфоратор bosch gbh 2 26 емкость".
    public static func normalise(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for s in text.unicodeScalars {
            if s.properties.isAlphabetic || s.properties.numericType == .decimal {
                if pendingSpace && !out.isEmpty { out.append(" ") }
                pendingSpace = false
                for l in s.properties.lowercaseMapping.unicodeScalars {
                    out.append(l == "ё" ? "е" : l)
                }
            } else {
                pendingSpace = true
            }
        }
        return String(out)
    }

    public static func words(_ normalised: String) -> [String] {
        normalised.split(separator: " ").map(String.init)
    }

    /// The trigrams FTS5's trigram tokenizer indexes for a word (by unicode scalar).
    public static func trigrams(_ word: String) -> Set<String> {
        let s = Array(word.unicodeScalars)
        guard s.count >= 3 else { return [] }
        var out = Set<String>()
        for i in 0...(s.count - 3) {
            var t = String.UnicodeScalarView()
            t.append(contentsOf: s[i..<(i + 3)])
            out.insert(String(t))
        }
        return out
    }

    /// Edit distance (insert, delete, substitute, swap of neighbours) between two words, by
    /// unicode scalar; stops early past `limit`.
    public static func distance(_ a: String, _ b: String, limit: Int = .max) -> Int {
        let x = Array(a.unicodeScalars)
        let y = Array(b.unicodeScalars)
        if abs(x.count - y.count) > limit { return limit + 1 }
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var prev2 = [Int](repeating: 0, count: y.count + 1)
        var prev = Array(0...y.count)
        var cur = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            var rowMin = cur[0]
            for j in 1...y.count {
                let cost = x[i - 1] == y[j - 1] ? 0 : 1
                var v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
                if i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1] { v = min(v, prev2[j - 2] + 1) }
                cur[j] = v
                rowMin = min(rowMin, v)
            }
            if rowMin > limit { return limit + 1 }
            (prev2, prev, cur) = (prev, cur, prev2)
        }
        return prev[y.count]
    }

    /// How many typos a word of this length may carry and still be recognised.
    public static func typoAllowance(_ word: String) -> Int {
        let n = word.unicodeScalars.count
        return n < 4 ? 0 : n < 8 ? 1 : 2
    }

    /// A decimal as price lists write it: "1 234,50", "1234.5", "1 234,50 ₽", "12,00 руб." ->
    /// value × 10^places. Nil when there is no number or more decimal places than allowed.
    public static func decimal(_ text: String, places: Int) -> Int64? {
        var digits = ""
        var seenSeparator = false
        var started = false
        var ended = false
        for s in text.unicodeScalars {
            if s >= "0" && s <= "9" {
                if ended { return nil }
                digits.unicodeScalars.append(s)
                started = true
            } else if (s == "," || s == ".") && started && !ended {
                if seenSeparator { return nil }
                seenSeparator = true
                digits.unicodeScalars.append(".")
            } else if s == " " || s == "\u{00A0}" || s == "\u{202F}" || s == "'" {
                continue  // thousands separators
            } else if s == "-" && !started {
                return nil  // negative amounts are not prices or stock
            } else if started {
                ended = true  // a currency or unit after the number
            } else if s.properties.isAlphabetic || s == "₽" || s == "$" || s == "€" {
                continue  // a currency before the number
            } else {
                return nil
            }
        }
        guard started else { return nil }
        if digits.hasSuffix(".") { digits.removeLast() }
        return FixedPoint.parse(digits, places: places)
    }
}

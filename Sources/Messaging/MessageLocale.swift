import LeadwireAPI

/// The language a message is written in: the deployment's default (`ru` unless set), a source's
/// own, or a contractor's. Dates are written the way the language writes them.
public enum MessageLocale: String, Sendable, CaseIterable {
    case ru, en

    /// "ru", "RU", "ru_RU", "en-GB"... by the language part; nil for a language we have no texts in.
    public init?(code: String) {
        let lang = code.trimmingSpaces.lowercased().prefix { $0.isLetter }
        self.init(rawValue: String(lang))
    }

    private static let genitiveMonths = [
        "января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря",
    ]
    private static let englishMonths = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December",
    ]

    /// "4 декабря 2026 г." / "4 December 2026" for a calendar date.
    public func date(year: Int, month: Int, day: Int) -> String {
        let name = self == .ru ? Self.genitiveMonths[month - 1] : Self.englishMonths[month - 1]
        let suffix = self == .ru ? " г." : ""
        guard (1...31).contains(day), (1000...9999).contains(year) else { return "\(day) \(name) \(year)\(suffix)" }
        // Written as bytes into a string of known size: every lead's acknowledgement carries two
        // dates, and interpolation appended the five pieces one by one (~2,300 instructions a date).
        let dayDigits = day < 10 ? 1 : 2
        return String(unsafeUninitializedCapacity: dayDigits + 1 + name.utf8.count + 1 + 4 + suffix.utf8.count) { out in
            DecimalDigits.write(UInt64(day), width: dayDigits, into: out, at: 0)
            var i = dayDigits
            func put(_ text: String) {
                for b in text.utf8 {
                    out[i] = b
                    i += 1
                }
            }
            put(" ")
            put(name)
            put(" ")
            DecimalDigits.write(UInt64(year), width: 4, into: out, at: i)
            i += 4
            put(suffix)
            return i
        }
    }

    /// The date of an instant (ms since the epoch, UTC, the calendar the services keep).
    public func date(millis: Int64) -> String {
        let c = CalendarDate.civil(day: CalendarDate.day(ofMillis: millis))
        return date(year: c.year, month: c.month, day: c.day)
    }

    /// A "YYYY-MM-DD" date as the language writes it; the text itself when it is not such a date.
    public func date(iso: String) -> String {
        guard let c = CalendarDate.parse(iso) else { return iso }
        return date(year: c.year, month: c.month, day: c.day)
    }

    /// The salutation: "Здравствуйте, Зоя Крылова!" — the name in the nominative, which is right
    /// for any name and either gender (a case ending or "Уважаемый/Уважаемая" guessed from a name
    /// is wrong often enough to offend) — and a plain "Здравствуйте!" without a name.
    public func greeting(_ name: String) -> String {
        let n = name.trimmingSpaces
        switch self {
        case .ru: return n.isEmpty ? "Здравствуйте!" : "Здравствуйте, \(n)!"
        case .en: return n.isEmpty ? "Hello," : "Hello \(n),"
        }
    }
}

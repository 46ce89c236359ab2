import LeadwireAPI

/// "L-2026-000123": short, unique, readable on the phone, stable once issued.
enum RegistrationNumber {
    static func format(year: Int, sequence: Int64) -> String {
        guard (1000...9999).contains(year), (0...999_999).contains(sequence) else {
            let n = String(sequence)
            return "L-\(year)-\(String(repeating: "0", count: max(0, 6 - n.count)))\(n)"
        }
        // "L-2026-000017", 13 bytes written into a small string: one per lead, where interpolating
        // the four pieces cost ~1,900 instructions.
        return String(unsafeUninitializedCapacity: 13) { out in
            out[0] = UInt8(ascii: "L")
            out[1] = UInt8(ascii: "-")
            DecimalDigits.write(UInt64(year), width: 4, into: out, at: 2)
            out[6] = UInt8(ascii: "-")
            DecimalDigits.write(UInt64(sequence), width: 6, into: out, at: 7)
            return 13
        }
    }

    /// The first registration number inside free text (an e-mail subject such as
    /// "Re: your request L-2026-000123"), normalised to upper case.
    static func find(in text: String) -> String? {
        let chars = Array(text.uppercased().utf8)
        var i = 0
        while i + 13 <= chars.count {
            if chars[i] == UInt8(ascii: "L"), chars[i + 1] == UInt8(ascii: "-"),
                i == 0 || !isAlnum(chars[i - 1]),
                chars[(i + 2)..<(i + 6)].allSatisfy(isDigit), chars[i + 6] == UInt8(ascii: "-")
            {
                var j = i + 7
                while j < chars.count, isDigit(chars[j]) { j += 1 }
                if j - (i + 7) >= 6, j == chars.count || !isAlnum(chars[j]) {
                    return String(decoding: chars[i..<j], as: UTF8.self)
                }
            }
            i += 1
        }
        return nil
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private static func isAlnum(_ c: UInt8) -> Bool { isDigit(c) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
}

/// An applicant as the client match sees them: the keys in their stored forms, and the card a
/// first-time client gets. Made from the request before the transaction, so the writer only looks up.
struct ApplicantKeys: Sendable {
    let email: String?
    let phone: String?
    let taxID: String?
    /// The card's name: the person's, else the company's, else how to reach them.
    let name: String
    let company: String
    let address: String

    init(_ a: Intake_Applicant) {
        email = ClientKeys.email(a.email)
        phone = ClientKeys.phone(a.phone)
        taxID = ClientKeys.taxID(a.taxId)
        company = a.company.trimmingSpaces
        address = a.address.trimmingSpaces
        let person = a.name.trimmingSpaces
        name = !person.isEmpty ? person : !company.isEmpty ? company : (email ?? phone ?? "unnamed client")
    }
}

/// How a client is recognised again: e-mail, else phone, else tax id, each normalised.
enum ClientKeys {
    static func email(_ s: String) -> String? {
        let e = s.trimmingSpaces.lowercased()
        return e.isEmpty ? nil : e
    }

    /// The E.164 form (validation already normalised a new lead's phone; this also reads older
    /// rows), else digits with a leading "+" kept.
    static func phone(_ s: String, country: PhoneCountry = .russia) -> String? {
        let t = s.trimmingSpaces
        if case .success(let e164) = Phone.normalize(t, country: country) { return e164 }
        let digits = t.filter(\.isASCIIDigit)
        guard digits.count >= 5 else { return nil }
        return (t.hasPrefix("+") ? "+" : "") + digits
    }

    static func taxID(_ s: String) -> String? {
        let d = s.filter(\.isASCIIDigit)
        return d.isEmpty ? nil : d
    }
}

/// What happened to a lead, as `Intake_LeadChange.kind` names it on WatchLeads and in the events
/// for report. One enum, so a kind cannot be misspelt in one of the places that write it.
enum LeadEventKind: String, Sendable, CaseIterable {
    case registered, assigned, commented, rated
    case accepted, deferred, rejected, processed

    /// The change of status that made the lead `status`.
    init(status: Intake_LeadStatus) {
        switch status {
        case .accepted: self = .accepted
        case .deferred: self = .deferred
        case .rejected: self = .rejected
        case .processed: self = .processed
        default: self = .registered
        }
    }

    /// The report service's event kind (proto/leadwire/report/v1: created, assigned, state_changed,
    /// commented, rated).
    var reportKind: String {
        switch self {
        case .registered: "created"
        case .accepted, .deferred, .rejected, .processed: "state_changed"
        case .assigned, .commented, .rated: rawValue
        }
    }
}

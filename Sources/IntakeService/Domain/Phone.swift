/// Phone numbers in E.164 (`+79123456789`): one Russian number written five ways
/// (`+7 (912) 345-67-89`, `89123456789`, `8 912 345 67 89`, `79123456789`, `9123456789`) is one
/// client. A number without `+` is read in a country's national format: the deployment's default
/// country (`--phone-country`), or the source's own.
struct PhoneCountry: Sendable, Hashable {
    /// ISO 3166 code, upper case ("RU").
    let code: String
    /// Calling code without "+" ("7").
    let callingCode: String
    /// What callers dial before a national number at home ("8" in Russia), if anything.
    let trunkPrefix: String
    /// Digits of a national number after the trunk prefix.
    let nationalLength: Int

    static let russia = PhoneCountry(code: "RU", callingCode: "7", trunkPrefix: "8", nationalLength: 10)
    static let known: [String: PhoneCountry] = [
        "RU": russia,
        "KZ": PhoneCountry(code: "KZ", callingCode: "7", trunkPrefix: "8", nationalLength: 10),
        "BY": PhoneCountry(code: "BY", callingCode: "375", trunkPrefix: "80", nationalLength: 9),
        "UZ": PhoneCountry(code: "UZ", callingCode: "998", trunkPrefix: "", nationalLength: 9),
        "AM": PhoneCountry(code: "AM", callingCode: "374", trunkPrefix: "0", nationalLength: 8),
        "KG": PhoneCountry(code: "KG", callingCode: "996", trunkPrefix: "0", nationalLength: 9),
    ]

    static func named(_ code: String) -> PhoneCountry? { known[code.trimmingSpaces.uppercased()] }
}

enum Phone {
    /// The E.164 form of `text`, or why it is not a phone number.
    static func normalize(_ text: String, country: PhoneCountry) -> Result<String, PhoneError> {
        // On UTF-8 bytes, the digits gathered in a buffer on the stack: every lead's phone passes
        // here twice (validation, then the client match).
        var trimmed = text.trimmingSpaces
        return trimmed.withUTF8 { bytes in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(bytes.count, 1)) { buffer in
                var count = 0
                var plus = false
                var previous: UInt8 = 0
                for i in bytes.indices {
                    let b = bytes[i]
                    defer { previous = b }
                    switch b {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"):
                        buffer[count] = b
                        count += 1
                    case UInt8(ascii: "+") where i == 0: plus = true
                    case UInt8(ascii: " "), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "-"), UInt8(ascii: "."): break
                    case 0xC2: break  // the first byte of U+00A0, a no-break space (checked on the next one)
                    case 0xA0 where previous == 0xC2: break
                    default: return .failure(.notAPhone)
                    }
                }
                if previous == 0xC2 { return .failure(.notAPhone) }
                return normalize(digits: UnsafeBufferPointer(rebasing: buffer[..<count]), plus: plus, country: country)
            }
        }
    }

    private static func normalize(digits: UnsafeBufferPointer<UInt8>, plus: Bool, country: PhoneCountry) -> Result<String, PhoneError> {
        func startsWith(_ prefix: String) -> Bool { digits.starts(with: prefix.utf8) }
        if digits.isEmpty { return .failure(.notAPhone) }
        if plus || startsWith("00") {
            let international = plus ? digits : UnsafeBufferPointer(rebasing: digits[2...])
            // E.164: at most 15 digits; a real number has at least 8.
            guard (8...15).contains(international.count) else { return .failure(.wrongLength(international.count)) }
            // +7 (Russia, Kazakhstan) numbers are always 11 digits with the code.
            if international.first == UInt8(ascii: "7"), international.count != 11 {
                return .failure(.wrongLength(international.count))
            }
            return .success(e164("", international))
        }
        let code = country.callingCode.utf8.count
        let trunk = country.trunkPrefix.utf8.count
        var national = digits
        if digits.count == code + country.nationalLength, startsWith(country.callingCode) {
            national = UnsafeBufferPointer(rebasing: digits[code...])
        } else if trunk > 0, digits.count == trunk + country.nationalLength, startsWith(country.trunkPrefix) {
            national = UnsafeBufferPointer(rebasing: digits[trunk...])
        }
        guard national.count == country.nationalLength else { return .failure(.wrongLength(digits.count)) }
        if country.callingCode == "7", let first = national.first, !(UInt8(ascii: "3")...UInt8(ascii: "9")).contains(first) {
            return .failure(.notAPhone)
        }
        return .success(e164(country.callingCode, national))
    }

    /// "+", the calling code (when the digits are national) and the digits, written straight into
    /// the string (a small one, without an allocation, up to 15 bytes).
    private static func e164(_ code: String, _ digits: UnsafeBufferPointer<UInt8>) -> String {
        let code = code.utf8
        return String(unsafeUninitializedCapacity: 1 + code.count + digits.count) { out in
            out[0] = UInt8(ascii: "+")
            var i = 1
            for b in code {
                out[i] = b
                i += 1
            }
            for b in digits {
                out[i] = b
                i += 1
            }
            return i
        }
    }

    /// `+79123456789` as people write it: `+7 912 345-67-89`. Other countries: `+375 29 1234567`.
    static func formatted(_ e164: String) -> String {
        guard e164.hasPrefix("+") else { return e164 }
        let d = Array(e164.dropFirst())
        if d.count == 11, d.first == "7" {
            let s = String(d)
            func part(_ a: Int, _ b: Int) -> String { String(s.dropFirst(a).prefix(b - a)) }
            return "+7 \(part(1, 4)) \(part(4, 7))-\(part(7, 9))-\(part(9, 11))"
        }
        return e164
    }
}

enum PhoneError: Error, Equatable, CustomStringConvertible {
    case notAPhone
    case wrongLength(Int)

    var description: String {
        switch self {
        case .notAPhone: return "is not a phone number (digits, spaces, ( ) - and a leading + only)"
        case .wrongLength(let n): return "has \(n) digits, which no phone number of the expected country has"
        }
    }
}

/// The Russian taxpayer number: 10 digits for an organisation, 12 for a person, with check digits.
enum INN {
    static func check(_ text: String) -> Result<String, INNError> {
        let t = text.trimmingSpaces
        guard !t.isEmpty, t.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) else { return .failure(.notDigits) }
        let d = t.unicodeScalars.map { Int($0.value) - 48 }
        func control(_ weights: [Int]) -> Int { weights.enumerated().reduce(0) { $0 + $1.element * d[$1.offset] } % 11 % 10 }
        switch d.count {
        case 10:
            guard control([2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[9] else { return .failure(.checkDigit) }
        case 12:
            guard control([7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[10], control([3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[11] else {
                return .failure(.checkDigit)
            }
        default:
            return .failure(.length(d.count))
        }
        return .success(t)
    }
}

enum INNError: Error, Equatable, CustomStringConvertible {
    case notDigits, checkDigit
    case length(Int)

    var description: String {
        switch self {
        case .notDigits: return "is not an INN: digits only"
        case .length(let n): return "has \(n) digits; an INN has 10 (organisation) or 12 (individual)"
        case .checkDigit: return "fails the INN check digits: a digit is mistyped"
        }
    }
}

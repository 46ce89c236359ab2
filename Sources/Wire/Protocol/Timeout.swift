/// `grpc-timeout`: 1 to 8 ASCII digits and a unit (H M S m u n), PROTOCOL-HTTP2 "Timeout".
enum GRPCTimeout {
    /// Nanoseconds, or nil when the value is malformed.
    static func parse(_ v: some Collection<UInt8>) -> Int64? {
        guard v.count >= 2, v.count <= 9 else { return nil }
        var n: Int64 = 0
        var digits = 0
        var unit: UInt8 = 0
        for (i, c) in v.enumerated() {
            if i == v.count - 1 {
                unit = c
            } else {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                n = n * 10 + Int64(c - 0x30)
                digits += 1
            }
        }
        guard digits >= 1 else { return nil }
        let scale: Int64
        switch unit {
        case UInt8(ascii: "H"): scale = 3_600_000_000_000
        case UInt8(ascii: "M"): scale = 60_000_000_000
        case UInt8(ascii: "S"): scale = 1_000_000_000
        case UInt8(ascii: "m"): scale = 1_000_000
        case UInt8(ascii: "u"): scale = 1_000
        case UInt8(ascii: "n"): scale = 1
        default: return nil
        }
        let (r, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? Int64.max : r
    }

    /// The shortest exact-or-rounded-up encoding that fits in 8 digits.
    static func encode(nanoseconds: Int64) -> String {
        let ns = max(0, nanoseconds)
        let units: [(Int64, Character)] = [
            (1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"), (3_600_000_000_000, "H"),
        ]
        for (scale, unit) in units {
            let v = (ns + scale - 1) / scale
            if v < 100_000_000 { return "\(v)\(unit)" }
        }
        return "99999999H"
    }
}

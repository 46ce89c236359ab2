/// Request or response metadata: an ordered multimap, as HTTP/2 headers are. Keys are lowercase;
/// keys ending in `-bin` carry bytes, base64 on the wire (PROTOCOL-HTTP2 "Custom-Metadata").
public struct Metadata: Sendable, Hashable, Sequence {
    public enum Value: Sendable, Hashable {
        case string(String)
        case binary([UInt8])
    }

    public private(set) var entries: [(key: String, value: Value)] = []

    public init() {}

    public init(_ pairs: KeyValuePairs<String, String>) {
        for (k, v) in pairs { add(k, v) }
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    public mutating func add(_ key: String, _ value: String) {
        entries.append((Self.lowercase(key), .string(value)))
    }

    public mutating func add(_ key: String, binary: [UInt8]) {
        entries.append((Self.lowercase(key), .binary(binary)))
    }

    public mutating func add(_ key: String, _ value: Value) {
        entries.append((Self.lowercase(key), value))
    }

    public mutating func removeAll(_ key: String) {
        entries.removeAll { Self.same($0.key, key) }
    }

    /// The first string value under `key`.
    public subscript(key: String) -> String? {
        for e in entries where Self.same(e.key, key) {
            if case .string(let s) = e.value { return s }
        }
        return nil
    }

    public func values(_ key: String) -> [Value] {
        entries.filter { Self.same($0.key, key) }.map(\.value)
    }

    /// Whether a kept key (lower case, as `add` makes it) is `key` in any case. Programs nearly
    /// always ask in lower case ("authorization"), so an equal string decides at once; only a key
    /// of the same length that differs is lowered to be sure (lowering never changes the length of
    /// an ASCII key, and gRPC's keys are ASCII). Checking `key` for upper case before
    /// every lookup cost more than the lookup (~290 instructions for a 25-byte key).
    static func same(_ kept: String, _ key: String) -> Bool {
        kept == key || (kept.utf8.count == key.utf8.count && kept == lowercase(key))
    }

    public func binary(_ key: String) -> [UInt8]? {
        for v in values(key) { if case .binary(let b) = v { return b } }
        return nil
    }

    /// `key` in lower case. Keys nearly always are already (HTTP/2 requires it of header names, and
    /// programs ask for "authorization" as written): those are returned as they are, with no new
    /// string made — every call's metadata passes here, and `lowercased()` made one each time.
    static func lowercase(_ key: String) -> String {
        var text = key  // withUTF8 needs a var; a native string is not copied
        let lower = text.withUTF8 { !$0.contains { ($0 >= 0x41 && $0 <= 0x5A) || $0 >= 0x80 } }
        return lower ? key : key.lowercased()
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: Value)]> {
        entries.makeIterator()
    }

    public static func == (a: Metadata, b: Metadata) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into h: inout Hasher) {
        for e in entries {
            h.combine(e.key)
            h.combine(e.value)
        }
    }

    /// Whether a header name may be carried as custom metadata: `[0-9a-z_.-]+`, not reserved.
    static func isCustomKey(_ name: String) -> Bool {
        var text = name  // withUTF8 needs a var; a native string is not copied
        return text.withUTF8 { isCustomKey(UnsafeRawBufferPointer($0)) }
    }

    /// Names HTTP/2 or gRPC itself gives meaning to, never handed to a service as metadata.
    private static let reservedNames: [StaticString] = [
        "content-type", "te", "user-agent", "content-length", "host", "connection", "authority",
    ]

    /// The same, on the header's bytes as nghttp2 hands them over: a reserved or malformed name is
    /// refused before a string is made of it.
    static func isCustomKey(_ name: UnsafeRawBufferPointer) -> Bool {
        guard !name.isEmpty else { return false }
        for c in name where !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2E || c == 0x2D) {
            return false  // also every pseudo-header (`:path`) and upper case
        }
        if name.count >= 5, UnsafeRawBufferPointer(rebasing: name[0..<5]).equals("grpc-") { return false }
        return !reservedNames.contains { name.equals($0) }
    }
}

/// Base64 (RFC 4648) as `-bin` metadata needs it: emit unpadded; accept padded or unpadded. Public
/// because services decode base64 too (e-mail bodies).
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()

    public static func encode(_ bytes: [UInt8], padded: Bool = false) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)]]
            if padded { out += [0x3D, 0x3D] }
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)]]
            if padded { out.append(0x3D) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Nil for characters outside the alphabet or data after padding.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(text.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        var sawPad = false
        for c in text {
            if c == 0x3D {
                sawPad = true
                continue
            }
            if sawPad { return nil }
            let v = reverse[Int(c)]
            if v == 0xFF { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        if bits >= 6 { return nil }
        return out
    }

    /// A `-bin` header value: several values may be joined by commas (PROTOCOL-HTTP2).
    static func decodeBinaryHeader(_ value: [UInt8]) -> [[UInt8]]? {
        var result = [[UInt8]]()
        for part in value.split(separator: 0x2C, omittingEmptySubsequences: false) {
            let trimmed = part.drop { $0 == 0x20 }.reversed().drop { $0 == 0x20 }.reversed()
            guard let d = decode(Array(trimmed)) else { return nil }
            result.append(d)
        }
        return result
    }
}

/// `grpc-message` is percent-encoded: bytes outside 0x20...0x7E, and `%`, as `%XX` (PROTOCOL-HTTP2).
enum PercentEncoding {
    static func encode(_ s: String) -> String {
        let utf8 = s.utf8
        if utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E && $0 != 0x25 }) { return s }
        let hex = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(utf8.count * 3)
        for b in utf8 {
            if b >= 0x20 && b <= 0x7E && b != 0x25 {
                out.append(b)
            } else {
                out += [0x25, hex[Int(b >> 4)], hex[Int(b & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lenient: a malformed escape is kept as it stands, as the spec asks of decoders.
    static func decode(_ bytes: some Collection<UInt8>) -> String {
        let a = Array(bytes)
        var out = [UInt8]()
        out.reserveCapacity(a.count)
        var i = 0
        func hexValue(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        while i < a.count {
            if a[i] == 0x25, i + 2 < a.count, let h = hexValue(a[i + 1]), let l = hexValue(a[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(a[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

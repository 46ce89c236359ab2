import CProtobufC

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A pass over a message's wire bytes before protobuf-c unpacks them, for the two places protobuf-c
/// and the reference parsers (protobuf-java, python-protobuf, grpc-go's) disagree:
///
/// - protobuf-c stores strings NUL-terminated and has no length for them, so `"a\0b"` would silently
///   become `"a"` (two distinct ids collapsing into one). A string field holding a NUL is refused
///   here, naming the field.
/// - protobuf-c fails the whole message on a known field arriving with another wire type and on
///   groups (wire types 3 and 4); the reference parsers keep such fields as unknown ones. The scan
///   reports them, and `stripped` rewrites the message without them (an unknown field is never
///   re-sent by us, so dropping it and keeping it are the same to the service).
///
/// Structural damage (a truncated varint or length) is left to protobuf-c, which refuses it.
enum WireScan {
    enum Finding: Error, Equatable {
        /// A string field holding a NUL byte, by dotted path (`applicant.phone`).
        case nulInString(field: String)
        /// Nested deeper than any message of ours can be.
        case tooDeep
    }

    /// Nesting deeper than this is refused (protobuf-c recurses once per level).
    static let maxDepth = 64

    /// Returns true when the bytes hold fields protobuf-c would refuse but the reference parsers keep
    /// as unknown (call `stripped`); throws on a NUL in a string.
    static func check(_ bytes: UnsafeRawBufferPointer, _ d: UnsafePointer<ProtobufCMessageDescriptor>) throws(Finding) -> Bool {
        var needsStrip = false
        try scan(bytes, d, depth: 0, needsStrip: &needsStrip)
        return needsStrip
    }

    /// The message re-encoded without the fields protobuf-c would refuse.
    static func stripped(_ bytes: UnsafeRawBufferPointer, _ d: UnsafePointer<ProtobufCMessageDescriptor>) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        rebuild(bytes, d, into: &out, depth: 0)
        return out
    }

    // MARK: Reading the wire format

    private struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var at = 0

        var atEnd: Bool { at >= bytes.count }

        mutating func varint() -> UInt64? {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while at < bytes.count, shift < 64 {
                let b = bytes[at]
                at += 1
                v |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }

        mutating func skip(_ n: Int) -> Bool {
            guard n >= 0, n <= bytes.count - at else { return false }
            at += n
            return true
        }

        /// Skips the value of a field of `wireType` (after its tag). False when the bytes end early.
        mutating func skipValue(wireType: UInt64, number: UInt64, depth: Int) -> Bool {
            switch wireType {
            case 0: return varint() != nil
            case 1: return skip(8)
            case 5: return skip(4)
            case 2:
                guard let n = varint(), n <= UInt64(Int.max) else { return false }
                return skip(Int(n))
            case 3:
                // A group runs to the end-group tag with the same number; groups nest.
                guard depth < WireScan.maxDepth else { return false }
                while !atEnd {
                    guard let tag = varint() else { return false }
                    if tag & 7 == 4 { return tag >> 3 == number }
                    if !skipValue(wireType: tag & 7, number: tag >> 3, depth: depth + 1) { return false }
                }
                return false
            default:
                return false
            }
        }
    }

    /// The wire type a field's values arrive with; repeated numeric fields may also come packed (2).
    private static func accepts(_ f: UnsafePointer<ProtobufCFieldDescriptor>, wireType: UInt64) -> Bool {
        let natural: UInt64
        switch f.pointee.type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_INT64,
            PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_BOOL, PROTOBUF_C_TYPE_ENUM:
            natural = 0
        case PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_FIXED32, PROTOBUF_C_TYPE_FLOAT:
            natural = 5
        case PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE:
            natural = 1
        default:
            natural = 2
        }
        if wireType == natural { return true }
        return wireType == 2 && f.pointee.label == PROTOBUF_C_LABEL_REPEATED
    }

    private static func field(_ d: UnsafePointer<ProtobufCMessageDescriptor>, _ number: UInt64) -> UnsafePointer<ProtobufCFieldDescriptor>?
    {
        guard number > 0, number <= UInt64(UInt32.max) else { return nil }
        return protobuf_c_message_descriptor_get_field(d, UInt32(number))
    }

    /// A finding's field path is built as the error leaves each nested message, never for a message
    /// that has none (building it for each nested message cost ~220 instructions a call).
    private static func scan(
        _ bytes: UnsafeRawBufferPointer, _ d: UnsafePointer<ProtobufCMessageDescriptor>, depth: Int, needsStrip: inout Bool
    ) throws(Finding) {
        guard depth < maxDepth else { throw .tooDeep }
        var c = Cursor(bytes: bytes)
        while !c.atEnd {
            guard let tag = c.varint() else { return }
            let wireType = tag & 7
            let number = tag >> 3
            let f = field(d, number)
            let kept = wireType != 3 && wireType != 4 && (f.map { accepts($0, wireType: wireType) } ?? true)
            if !kept { needsStrip = true }
            guard kept, wireType == 2, let f, f.pointee.type == PROTOBUF_C_TYPE_STRING || f.pointee.type == PROTOBUF_C_TYPE_MESSAGE else {
                guard c.skipValue(wireType: wireType, number: number, depth: depth) else { return }
                continue
            }
            guard let n = c.varint(), n <= UInt64(bytes.count - c.at) else { return }
            let value = UnsafeRawBufferPointer(rebasing: bytes[c.at..<(c.at + Int(n))])
            c.at += Int(n)
            switch f.pointee.type {
            case PROTOBUF_C_TYPE_STRING:
                if n > 0, memchr(value.baseAddress!, 0, Int(n)) != nil { throw .nulInString(field: String(cString: f.pointee.name)) }
            case PROTOBUF_C_TYPE_MESSAGE:
                let nested = f.pointee.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                do {
                    try scan(value, nested, depth: depth + 1, needsStrip: &needsStrip)
                } catch .nulInString(let inner) {
                    throw .nulInString(field: String(cString: f.pointee.name) + "." + inner)
                }
            default:
                break
            }
        }
    }

    private static func writeVarint(_ v: UInt64, into out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    private static func rebuild(
        _ bytes: UnsafeRawBufferPointer, _ d: UnsafePointer<ProtobufCMessageDescriptor>, into out: inout [UInt8], depth: Int
    ) {
        var c = Cursor(bytes: bytes)
        while !c.atEnd {
            let start = c.at
            guard let tag = c.varint() else { break }
            let wireType = tag & 7
            let number = tag >> 3
            let f = field(d, number)
            if wireType == 2, let f, f.pointee.type == PROTOBUF_C_TYPE_MESSAGE, depth < maxDepth {
                guard let n = c.varint(), n <= UInt64(bytes.count - c.at) else { break }
                let value = UnsafeRawBufferPointer(rebasing: bytes[c.at..<(c.at + Int(n))])
                c.at += Int(n)
                var inner = [UInt8]()
                rebuild(
                    value, f.pointee.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self), into: &inner, depth: depth + 1)
                writeVarint(tag, into: &out)
                writeVarint(UInt64(inner.count), into: &out)
                out.append(contentsOf: inner)
                continue
            }
            guard c.skipValue(wireType: wireType, number: number, depth: depth) else {
                // Damaged: keep the rest as it is, for protobuf-c to refuse.
                out.append(contentsOf: bytes[start...])
                return
            }
            let dropped = wireType == 3 || wireType == 4 || (f.map { !accepts($0, wireType: wireType) } ?? false)
            if !dropped { out.append(contentsOf: bytes[start..<c.at]) }
        }
    }
}

import CProtobufC

/// What a server accepts in a message's fields: the longest string (in characters, i.e. Unicode
/// scalars) and the most elements of a repeated field, per field or by default, and whether enum
/// fields must hold a declared value. Generated from the proto comments ("At most 200
/// characters.", "At most 50 items.") by scripts/gen_proto.py for our own messages; checked when a
/// server decodes a request, never when a client decodes a response.
public struct FieldLimits: Sendable {
    public var defaultMaxCharacters: Int
    public var defaultMaxItems: Int
    /// Field number -> most characters (strings; each element of a repeated string).
    public var maxCharacters: [UInt32: Int]
    /// Field number -> most elements (repeated fields).
    public var maxItems: [UInt32: Int]
    /// A value outside the enum's declared ones is refused (proto3 would keep it as a number).
    public var declaredEnumsOnly: Bool

    public init(
        defaultMaxCharacters: Int = 1000, defaultMaxItems: Int = 1000, maxCharacters: [UInt32: Int] = [:],
        maxItems: [UInt32: Int] = [:], declaredEnumsOnly: Bool = true
    ) {
        self.defaultMaxCharacters = defaultMaxCharacters
        self.defaultMaxItems = defaultMaxItems
        self.maxCharacters = maxCharacters
        self.maxItems = maxItems
        self.declaredEnumsOnly = declaredEnumsOnly
    }

    func characters(_ n: UInt32) -> Int { maxCharacters[n] ?? defaultMaxCharacters }
    func items(_ n: UInt32) -> Int { maxItems[n] ?? defaultMaxItems }
}

extension ProtoReader {
    /// A field's proto name (`applicant`, `order_lines`).
    func name(_ n: UInt32) -> String { String(cString: descriptor.field(n).pointee.name) }

    func refuse(_ n: UInt32, _ reason: String) -> ProtoDecodingError {
        let field = name(n)
        return ProtoDecodingError(description: "\(field) \(reason)", invalidField: field, reason: reason)
    }

    func checkString(_ s: String, _ n: UInt32) throws {
        guard checked, let limits = descriptor.limits else { return }
        let max = limits.characters(n)
        // UTF-8 bytes bound the scalar count from above: most strings need no count at all.
        guard s.utf8.count > max else { return }
        let count = s.unicodeScalars.count
        if count > max { throw refuse(n, "is \(count) characters long; at most \(max) are accepted") }
    }

    func checkCount(_ count: Int, _ n: UInt32) throws {
        guard checked, let limits = descriptor.limits else { return }
        let max = limits.items(n)
        if count > max { throw refuse(n, "has \(count) elements; at most \(max) are accepted") }
    }

    func checkEnum(_ value: Int32, _ n: UInt32) throws {
        guard checked, let limits = descriptor.limits, limits.declaredEnumsOnly else { return }
        let f = descriptor.field(n)
        guard let d = f.pointee.descriptor?.assumingMemoryBound(to: ProtobufCEnumDescriptor.self) else { return }
        if protobuf_c_enum_descriptor_get_value(d, value) == nil {
            let e = String(cString: d.pointee.name)
            throw refuse(n, "is \(value), not a value of \(e)")
        }
    }

    /// Runs a nested message's reading, naming the path to the field at fault (`applicant.phone`,
    /// `order_lines[2].sku`).
    func nested<T>(_ n: UInt32, index: Int? = nil, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch var e as ProtoDecodingError where e.invalidField != nil {
            let prefix = name(n) + (index.map { "[\($0)]" } ?? "")
            e.invalidField = prefix + "." + e.invalidField!
            e.description = e.invalidField! + " " + (e.reason ?? "")
            throw e
        }
    }
}

import CProtobufC

/// A message already serialized — the bytes a service stored, say — answered as they are instead of
/// being decoded and encoded again. A method the generator lists in `ENCODED_RESPONSES`
/// (scripts/gen_proto.py) returns one; its callers see an ordinary message.
public struct EncodedMessage<Message: WireMessage>: Sendable {
    /// The serialized message, as `ProtoCodec.encode` writes it.
    public let bytes: [UInt8]

    /// Bytes this process encoded as `Message` earlier (they are sent unchecked).
    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    public init(_ message: Message) {
        bytes = ProtoCodec.encode(message)
    }

    /// `message` with its field `field` — which `message` leaves unset — carrying `embedded`. A
    /// response wrapping a stored record is then sent without encoding the record again. Protobuf
    /// parsers take fields in any order, so the field follows the others.
    public init<Embedded>(_ message: Message, embedding embedded: EncodedMessage<Embedded>, as field: EmbeddedField<Message, Embedded>) {
        bytes = ProtoCodec.encode(message, appending: embedded.bytes, asField: Message.wireDescriptor.field(field.number))
    }

    public func decoded() throws -> Message {
        try bytes.withUnsafeBytes { try ProtoCodec.decode(Message.self, from: $0) }
    }
}

/// A singular field of `Message` that holds an `Embedded` message, found by name and checked once
/// (a static at the call site): where `EncodedMessage(_:embedding:as:)` puts a stored record.
public struct EmbeddedField<Message: WireMessage, Embedded: WireMessage>: Sendable {
    let number: UInt32

    public init(_ name: String) {
        let d = Message.wireDescriptor
        guard let f = protobuf_c_message_descriptor_get_field_by_name(d.raw, name) else {
            preconditionFailure("\(d.fullName) has no field \(name)")
        }
        precondition(
            f.pointee.type == PROTOBUF_C_TYPE_MESSAGE && f.pointee.label != PROTOBUF_C_LABEL_REPEATED
                && f.pointee.descriptor == UnsafeRawPointer(Embedded.wireDescriptor.raw),
            "\(d.fullName).\(name) is not a singular \(Embedded.wireDescriptor.fullName) field")
        number = f.pointee.id
    }
}

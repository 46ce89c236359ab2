import NIOCore

/// Splits a stream of DATA bytes into gRPC Length-Prefixed-Messages (PROTOCOL-HTTP2 "Requests":
/// 1-byte compressed flag, 4-byte big-endian length, payload). DATA frame boundaries are unrelated to
/// message boundaries, so bytes accumulate here until a whole message is present.
struct MessageDeframer {
    enum Failure: Error, Equatable {
        /// The declared length is over the limit; reported before the body is buffered.
        case tooLarge(declared: Int, limit: Int)
        /// The compressed flag is neither 0 nor 1.
        case badFlag(UInt8)

        /// The status for it; `what` names the message ("request message", "response message").
        func rpcError(_ what: String) -> RPCError {
            switch self {
            case .tooLarge(let declared, let limit):
                RPCError(.resourceExhausted, "\(what) is \(declared) bytes; the limit is \(limit)")
            case .badFlag(let flag):
                RPCError(.internal, "\(what) compressed-flag byte is \(flag); only 0 and 1 are valid")
            }
        }
    }

    struct Message {
        var compressed: Bool
        var payload: ByteBuffer
    }

    let maxMessageSize: Int
    private var buffer = ByteBuffer()

    init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
    }

    /// True when bytes of an incomplete message are held: END_STREAM now means a truncated message.
    var hasPartialMessage: Bool { buffer.readableBytes > 0 }
    var bufferedBytes: Int { buffer.readableBytes }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if buffer.readableBytes == 0 && buffer.readerIndex > 0 { buffer.clear() }
        buffer.writeBytes(bytes)
    }

    mutating func append(_ bytes: ByteBuffer) {
        var b = bytes
        if buffer.readableBytes == 0 {
            buffer = b
        } else {
            buffer.writeBuffer(&b)
        }
    }

    mutating func next() throws(Failure) -> Message? {
        guard buffer.readableBytes >= 5,
            let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
        else { return nil }
        guard flag <= 1 else { throw .badFlag(flag) }
        guard Int(length) <= maxMessageSize else { throw .tooLarge(declared: Int(length), limit: maxMessageSize) }
        guard buffer.readableBytes >= 5 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let payload = buffer.readSlice(length: Int(length))!
        return Message(compressed: flag == 1, payload: payload)
    }
}

enum MessageFramer {
    /// Appends one framed message to `out`.
    static func frame(_ payload: ByteBuffer, compressed: Bool, into out: inout ByteBuffer) {
        out.writeInteger(compressed ? UInt8(1) : UInt8(0))
        out.writeInteger(UInt32(payload.readableBytes))
        var p = payload
        out.writeBuffer(&p)
    }
}

import NIOCore
import Testing
import WireInterop

@testable import Wire

@Suite struct MessageFramingTests {
    private func framed(_ payloads: [[UInt8]]) -> [UInt8] {
        var out = ByteBuffer()
        for p in payloads { MessageFramer.frame(ByteBuffer(bytes: p), compressed: false, into: &out) }
        return Array(out.readableBytesView)
    }

    @Test func deframesAcrossEverySplitPoint() throws {
        let payloads: [[UInt8]] = [[], [1, 2, 3], Array(repeating: 7, count: 300), [9]]
        let wire = framed(payloads)
        for split in 0...wire.count {
            var d = MessageDeframer(maxMessageSize: 1024)
            var got = [[UInt8]]()
            for part in [wire[..<split], wire[split...]] {
                Array(part).withUnsafeBytes { d.append($0) }
                while let m = try d.next() { got.append(Array(m.payload.readableBytesView)) }
            }
            #expect(got == payloads, "split at \(split)")
            #expect(!d.hasPartialMessage)
        }
    }

    @Test func deframesOneByteAtATime() throws {
        let payloads: [[UInt8]] = [[1], [], [2, 3, 4, 5]]
        var d = MessageDeframer(maxMessageSize: 16)
        var got = [[UInt8]]()
        for b in framed(payloads) {
            [b].withUnsafeBytes { d.append($0) }
            while let m = try d.next() { got.append(Array(m.payload.readableBytesView)) }
        }
        #expect(got == payloads)
    }

    @Test func refusesAnOversizeMessageFromItsHeaderAlone() {
        var d = MessageDeframer(maxMessageSize: 100)
        ([0, 0, 0, 0, 101] as [UInt8]).withUnsafeBytes { d.append($0) }
        #expect(throws: MessageDeframer.Failure.tooLarge(declared: 101, limit: 100)) { try d.next() }
    }

    @Test func refusesABadCompressionFlag() {
        var d = MessageDeframer(maxMessageSize: 100)
        ([2, 0, 0, 0, 0] as [UInt8]).withUnsafeBytes { d.append($0) }
        #expect(throws: MessageDeframer.Failure.badFlag(2)) { try d.next() }
    }

    @Test func reportsAPartialMessage() throws {
        var d = MessageDeframer(maxMessageSize: 100)
        ([0, 0, 0, 0, 3, 1] as [UInt8]).withUnsafeBytes { d.append($0) }
        #expect(try d.next() == nil)
        #expect(d.hasPartialMessage)
    }
}

@Suite struct HeaderValueTests {
    @Test func parsesTimeouts() {
        #expect(GRPCTimeout.parse(Array("0n".utf8)) == 0)
        #expect(GRPCTimeout.parse(Array("1S".utf8)) == 1_000_000_000)
        #expect(GRPCTimeout.parse(Array("250m".utf8)) == 250_000_000)
        #expect(GRPCTimeout.parse(Array("2H".utf8)) == 7_200_000_000_000)
        #expect(GRPCTimeout.parse(Array("99999999u".utf8)) == 99_999_999_000)
        #expect(GRPCTimeout.parse(Array("123456789S".utf8)) == nil, "at most 8 digits")
        #expect(GRPCTimeout.parse(Array("S".utf8)) == nil)
        #expect(GRPCTimeout.parse(Array("10x".utf8)) == nil)
        #expect(GRPCTimeout.parse(Array("1 S".utf8)) == nil)
    }

    @Test func encodesTimeoutsThatParseBack() {
        for ns: Int64 in [0, 1, 999, 1_000_000, 5_000_000_000, 123_456_789_012, 86_400_000_000_000] {
            let text = GRPCTimeout.encode(nanoseconds: ns)
            let back = GRPCTimeout.parse(Array(text.utf8))!
            #expect(back >= ns, "\(text) must not shorten \(ns)")
            #expect(text.utf8.count <= 9)
        }
    }

    @Test func percentEncodesGrpcMessage() {
        let special = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
        let encoded = PercentEncoding.encode(special)
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
        #expect(PercentEncoding.decode(Array(encoded.utf8)) == special)
        #expect(PercentEncoding.encode("50% ☺") == "50%25 %E2%98%BA")
        #expect(PercentEncoding.encode("plain text") == "plain text")
    }

    @Test func percentDecodingToleratesBadEscapes() {
        #expect(PercentEncoding.decode(Array("100%".utf8)) == "100%")
        #expect(PercentEncoding.decode(Array("%zz and %4".utf8)) == "%zz and %4")
    }

    @Test func base64ForBinaryMetadata() {
        #expect(Base64.encode([0x0a, 0x0b, 0x0a, 0x0b, 0x0a, 0x0b]) == "CgsKCwoL")
        #expect(Base64.encode([1]) == "AQ")
        #expect(Base64.encode([1], padded: true) == "AQ==")
        #expect(Base64.decode(Array("AQ".utf8)) == [1])
        #expect(Base64.decode(Array("AQ==".utf8)) == [1])
        #expect(Base64.decode(Array("A".utf8)) == nil)
        #expect(Base64.decode(Array("A*==".utf8)) == nil)
        #expect(Base64.decodeBinaryHeader(Array("AQ,Ag==".utf8)) == [[1], [2]])
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37) }
            #expect(Base64.decode(Array(Base64.encode(bytes).utf8)) == bytes)
        }
    }

    @Test func customMetadataKeys() {
        #expect(Metadata.isCustomKey("x-request-id"))
        #expect(Metadata.isCustomKey("trace.bin-bin"))
        #expect(!Metadata.isCustomKey("grpc-timeout"))
        #expect(!Metadata.isCustomKey(":path"))
        #expect(!Metadata.isCustomKey("content-type"))
        #expect(!Metadata.isCustomKey("X-Upper"))
        #expect(!Metadata.isCustomKey(""))
        #expect(!Metadata.isCustomKey("grpc-"))
        #expect(!Metadata.isCustomKey("a b"))
        #expect(!Metadata.isCustomKey("ключ"))
        for reserved in ["te", "host", "connection", "user-agent", "content-length", "authority"] {
            #expect(!Metadata.isCustomKey(reserved), "\(reserved)")
        }
        // Near the reserved names, not them.
        for allowed in ["grpc", "grpcx-id", "tea", "t", "hosts", "content-typ", "x-te", "_", "0.9"] {
            #expect(Metadata.isCustomKey(allowed), "\(allowed)")
        }
    }

    @Test func metadataKeysAreFoundWhateverTheirCase() {
        var m = Metadata()
        m.add("X-Request-ID", "r-1")
        m.add("authorization", "Bearer t")
        m.add("Trace-BIN", binary: [1, 2])
        #expect(m.entries.map(\.key) == ["x-request-id", "authorization", "trace-bin"])
        #expect(m["x-request-id"] == "r-1" && m["X-REQUEST-ID"] == "r-1" && m["Authorization"] == "Bearer t")
        #expect(m.binary("trace-bin") == [1, 2])
        // A key already in lower case is kept as it is; one with letters beyond ASCII is lowered too.
        #expect(Metadata.lowercase("x-grpc-test-echo-initial") == "x-grpc-test-echo-initial")
        #expect(Metadata.lowercase("Ключ-Z") == "ключ-z")
        m.removeAll("AUTHORIZATION")
        #expect(m["authorization"] == nil && m.count == 2)
        // Same length, another key: not a match, in any case.
        #expect(m["x-request-ie"] == nil && m["X-Request-IE"] == nil && m.values("trace-bim").isEmpty)
        m.add("Ключ", "v")
        #expect(m["ключ"] == "v" && m["КЛЮЧ"] == "v" && m["ключи"] == nil)
    }

    @Test func grpcContentTypes() {
        #expect(ServerCall.isGRPCContentType("application/grpc"))
        #expect(ServerCall.isGRPCContentType("application/grpc+proto"))
        #expect(ServerCall.isGRPCContentType("application/grpc;charset=utf-8"))
        #expect(!ServerCall.isGRPCContentType("application/grpcx"))
        #expect(!ServerCall.isGRPCContentType("application/json"))
    }
}

@Suite struct BadRequestTests {
    @Test func namesEachFieldOnceAndNeverRepeatsTheSummary() {
        let two = RPCError.invalidArgument(
            "the lead does not fit source Site form",
            violations: [.init(field: "subject", description: "required"), .init(field: "applicant.email", description: "not an e-mail")])
        #expect(two.message == "the lead does not fit source Site form; subject: required; applicant.email: not an e-mail")
        let same = RPCError.invalidArgument("the file has no rows", violations: [.init(field: "data", description: "the file has no rows")])
        #expect(same.message == "the file has no rows (data)")
        // The details still name the field with its description, for programs.
        #expect(same.details != nil)
    }
}

@Suite struct CodecTests {
    @Test func roundTripsNestedMessagesEnumsAndBytes() throws {
        var r = Grpc_Testing_SimpleRequest()
        r.responseType = .compressable
        r.responseSize = 314159
        r.payload = Grpc_Testing_Payload()
        r.payload!.body = [0, 1, 2, 255]
        r.fillUsername = true
        r.responseCompressed = Grpc_Testing_BoolValue()
        r.responseCompressed!.value = true
        r.responseStatus = Grpc_Testing_EchoStatus()
        r.responseStatus!.code = 2
        r.responseStatus!.message = "état ☺"
        let bytes = ProtoCodec.encode(r)
        #expect(try ProtoCodec.decode(Grpc_Testing_SimpleRequest.self, from: bytes) == r)
    }

    @Test func roundTripsRepeatedMessages() throws {
        var r = Grpc_Testing_StreamingOutputCallRequest()
        r.responseParameters = ([31415, 9, 2653, 58979] as [Int32]).map {
            var p = Grpc_Testing_ResponseParameters()
            p.size = $0
            p.intervalUs = $0 / 2
            return p
        }
        let back = try ProtoCodec.decode(Grpc_Testing_StreamingOutputCallRequest.self, from: ProtoCodec.encode(r))
        #expect(back == r)
        #expect(back.responseParameters.map(\.size) == [31415, 9, 2653, 58979])
    }

    @Test func roundTripsOneofs() throws {
        var r = Grpc_Reflection_V1_ServerReflectionRequest()
        r.host = "h"
        r.messageRequest = .fileContainingSymbol("grpc.health.v1.Health")
        #expect(try ProtoCodec.decode(Grpc_Reflection_V1_ServerReflectionRequest.self, from: ProtoCodec.encode(r)) == r)
        var e = Grpc_Reflection_V1_ExtensionRequest()
        e.containingType = "a.B"
        e.extensionNumber = 7
        r.messageRequest = .fileContainingExtension(e)
        #expect(try ProtoCodec.decode(Grpc_Reflection_V1_ServerReflectionRequest.self, from: ProtoCodec.encode(r)) == r)
        r.messageRequest = .listServices("")
        #expect(try ProtoCodec.decode(Grpc_Reflection_V1_ServerReflectionRequest.self, from: ProtoCodec.encode(r)) == r)
    }

    @Test func repeatedBytesAndEmptyStringsSurvive() throws {
        var r = Grpc_Reflection_V1_FileDescriptorResponse()
        r.fileDescriptorProto = [[1, 2], [], [3]]
        #expect(try ProtoCodec.decode(Grpc_Reflection_V1_FileDescriptorResponse.self, from: ProtoCodec.encode(r)) == r)
    }

    @Test func anEmbeddedRecordDecodesAsTheFieldItFills() throws {
        var payload = Grpc_Testing_Payload()
        payload.body = Array("заявка".utf8)
        var r = Grpc_Testing_SimpleRequest()
        r.responseSize = 150
        r.fillOauthScope = true
        let spliced = EncodedMessage(r, embedding: EncodedMessage(payload), as: EmbeddedField("payload"))
        r.payload = payload
        #expect(try spliced.decoded() == r)
        // The record's bytes follow the wrapper's own, tagged as field 3 (payload) with their length.
        let record = ProtoCodec.encode(payload)
        #expect(spliced.bytes.suffix(record.count + 2) == [0x1a, UInt8(record.count)] + record)
        // An empty record still sets the field (present, empty), as encoding it would.
        let empty = EncodedMessage(
            Grpc_Testing_SimpleRequest(), embedding: EncodedMessage(Grpc_Testing_Payload()), as: EmbeddedField("payload"))
        #expect(empty.bytes == [0x1a, 0x00])
        #expect(try empty.decoded().payload == Grpc_Testing_Payload())
    }

    @Test func defaultMessageEncodesToNothing() {
        #expect(ProtoCodec.encode(Grpc_Testing_SimpleRequest()).isEmpty)
    }

    @Test func matchesTheStandardEncoding() {
        // SimpleRequest{response_size: 150}: field 2, varint 150 = 0x10 0x96 0x01.
        var r = Grpc_Testing_SimpleRequest()
        r.responseSize = 150
        #expect(ProtoCodec.encode(r) == [0x10, 0x96, 0x01])
    }

    @Test func refusesMalformedBytes() {
        #expect(throws: ProtoDecodingError.self) { try ProtoCodec.decode(Grpc_Testing_SimpleRequest.self, from: [0xff, 0xff, 0xff]) }
        // Field 3 (payload) declared 10 bytes long with only 2 present.
        #expect(throws: ProtoDecodingError.self) { try ProtoCodec.decode(Grpc_Testing_SimpleRequest.self, from: [0x1a, 0x0a, 0x01, 0x02]) }
    }

    @Test func refusesInvalidUTF8InStrings() {
        // EchoStatus.message (field 2) = 0xC3 0x28, an invalid UTF-8 sequence.
        #expect(throws: ProtoDecodingError.self) { try ProtoCodec.decode(Grpc_Testing_EchoStatus.self, from: [0x12, 0x02, 0xC3, 0x28]) }
    }

    @Test func gzipRoundTripsAndBoundsExpansion() throws {
        let input = ByteBuffer(bytes: Array(repeating: UInt8(ascii: "a"), count: 100_000))
        let z = Gzip.compress(input, allocator: ByteBufferAllocator())
        #expect(z.readableBytes < 1_000)
        #expect(z.getBytes(at: z.readerIndex, length: 2) == [0x1f, 0x8b], "gzip, not zlib, framing")
        #expect(try Gzip.decompress(z, limit: 100_000, allocator: ByteBufferAllocator()) == input)
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress(z, limit: 99_999, allocator: ByteBufferAllocator()) }
        #expect(throws: Gzip.Failure.self) {
            try Gzip.decompress(ByteBuffer(bytes: [1, 2, 3]), limit: 100, allocator: ByteBufferAllocator())
        }
    }
}

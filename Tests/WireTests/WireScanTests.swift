import Testing
import WireInterop

@testable import Wire

/// The pass before protobuf-c: NUL in strings refused by field path, wrong wire types and groups kept
/// as unknown fields (dropped), exactly as the reference parsers read the same bytes.
@Suite struct WireScanTests {
    private func request(size: Int32, statusMessage: String? = nil) -> [UInt8] {
        var r = Grpc_Testing_SimpleRequest()
        r.responseSize = size
        if let statusMessage {
            var s = Grpc_Testing_EchoStatus()
            s.code = 3
            s.message = statusMessage
            r.responseStatus = s
        }
        return ProtoCodec.encode(r)
    }

    @Test func cleanMessageNeedsNothing() throws {
        let bytes = request(size: 5, statusMessage: "fine")
        #expect(try bytes.withUnsafeBytes { try WireScan.check($0, Grpc_Testing_SimpleRequest.wireDescriptor.raw) } == false)
    }

    @Test func nulInANestedStringIsNamedByPath() {
        // Encoded by hand: protobuf-c would stop the string at the NUL when encoding it from Swift.
        let status: [UInt8] = [0x08, 0x03, 0x12, 0x05] + Array("Nul\0x".utf8)
        let bytes: [UInt8] = [0x10, 0x05, 0x3a, UInt8(status.count)] + status
        #expect(throws: WireScan.Finding.nulInString(field: "response_status.message")) {
            try bytes.withUnsafeBytes { _ = try WireScan.check($0, Grpc_Testing_SimpleRequest.wireDescriptor.raw) }
        }
        do {
            _ = try ProtoCodec.decode(Grpc_Testing_SimpleRequest.self, from: bytes)
            Issue.record("decoded a string with NUL")
        } catch let e as ProtoDecodingError {
            #expect(e.invalidField == "response_status.message")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func wrongWireTypeAndGroupsAreDroppedNotFatal() throws {
        // response_size = 7, then fill_username (bool, field 4) as bytes, response_size as fixed32,
        // and a group of field 20 holding a varint.
        let bytes: [UInt8] = [0x10, 0x07, 0x22, 0x03, 0x61, 0x62, 0x63, 0x15, 0x01, 0x00, 0x00, 0x00, 0xa3, 0x01, 0x08, 0x01, 0xa4, 0x01]
        #expect(try bytes.withUnsafeBytes { try WireScan.check($0, Grpc_Testing_SimpleRequest.wireDescriptor.raw) } == true)
        let stripped = bytes.withUnsafeBytes { WireScan.stripped($0, Grpc_Testing_SimpleRequest.wireDescriptor.raw) }
        #expect(stripped == [0x10, 0x07])
        let decoded = try ProtoCodec.decode(Grpc_Testing_SimpleRequest.self, from: bytes)
        #expect(decoded.responseSize == 7)
        #expect(decoded.fillUsername == false)
    }

    @Test func unknownFieldsOfAnyWireTypeAreKept() throws {
        // Field 99 as a varint and as bytes: unknown to SimpleRequest, protobuf-c keeps them itself.
        let bytes: [UInt8] = [0x10, 0x02, 0x98, 0x06, 0x01, 0x9a, 0x06, 0x01, 0x00]
        #expect(try bytes.withUnsafeBytes { try WireScan.check($0, Grpc_Testing_SimpleRequest.wireDescriptor.raw) } == false)
        #expect(try ProtoCodec.decode(Grpc_Testing_SimpleRequest.self, from: bytes).responseSize == 2)
    }

    @Test func truncatedBytesAreLeftToProtobufC() {
        let bytes: [UInt8] = [0x10, 0x07, 0x3a, 0x10, 0x08]
        #expect(throws: ProtoDecodingError.self) { _ = try ProtoCodec.decode(Grpc_Testing_SimpleRequest.self, from: bytes) }
    }

    @Test func clipKeepsHeaderValuesSmall() {
        let long = String(repeating: "щ", count: 10_000)
        let clipped = Clip.bytes(long, maxBytes: 1536)
        #expect(clipped.utf8.count <= 1536)
        #expect(clipped.hasSuffix("…"))
        #expect(Clip.bytes("short", maxBytes: 1536) == "short")
    }
}

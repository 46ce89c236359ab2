import NIOConcurrencyHelpers
import Testing
import WireInterop

@testable import Wire

/// Server and client connected through an in-process socket pair (WireServer.connectedInMemory):
/// the real handlers and state machines on both ends, no listening socket. Each test checks a whole
/// exchange, and what each side's state machine did with it.
@Suite struct InMemoryTests {
    func withPair<R>(_ services: [any WireService], _ body: (WireChannel) async throws -> R) async throws -> R {
        var config = WireServer.Configuration(port: 0)
        config.shutdownGracePeriod = .seconds(1)
        let server = WireServer(configuration: config, services: services)
        let channel = try await server.connectedInMemory()
        do {
            let r = try await body(channel)
            await channel.close()
            await server.shutdown()
            return r
        } catch {
            await channel.close()
            await server.shutdown()
            throw error
        }
    }

    @Test func everyCallShapeCompletesBothHalves() async throws {
        try await withPair([InteropTestService()]) { channel in
            let client = Grpc_Testing_TestService_Client(channel: channel)
            var req = Grpc_Testing_SimpleRequest()
            req.responseSize = 100_000
            #expect(try await client.unaryCall(req).payload?.body.count == 100_000)

            let total = try await client.streamingInputCall { call in
                for n in [10, 200_000, 0] {
                    var r = Grpc_Testing_StreamingInputCallRequest()
                    r.payload = Grpc_Testing_Payload()
                    r.payload!.body = Array(repeating: 7, count: n)
                    try await call.send(r)
                }
                try await call.finishSending()
                return try await call.singleResponse().aggregatedPayloadSize
            }
            #expect(total == 200_010)

            // A response stream bigger than the high-water mark: the server's half pauses and
            // resumes until its trailers go out.
            var so = Grpc_Testing_StreamingOutputCallRequest()
            so.responseParameters = (0..<40).map { _ in
                var p = Grpc_Testing_ResponseParameters()
                p.size = 50_000
                return p
            }
            let sizes = try await client.streamingOutputCall(so) { call in
                var out = [Int]()
                for try await r in call { out.append(r.payload?.body.count ?? 0) }
                return out
            }
            #expect(sizes == Array(repeating: 50_000, count: 40))
        }
    }

    @Test func manyConcurrentCallsShareOneConnection() async throws {
        try await withPair([InteropTestService()]) { channel in
            let client = Grpc_Testing_TestService_Client(channel: channel)
            let sizes = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        var req = Grpc_Testing_SimpleRequest()
                        req.responseSize = Int32(i * 13)
                        return try await client.unaryCall(req).payload?.body.count ?? 0
                    }
                }
                var out = [Int]()
                for try await s in group { out.append(s) }
                return out.sorted()
            }
            #expect(sizes == (0..<200).map { $0 * 13 }.sorted())
        }
    }

    @Test func aClientCancellationReachesTheHandlerAndTheConnectionGoesOn() async throws {
        let probe = Probe()
        try await withPair([ProbeService(probe: probe), InteropTestService()]) { channel in
            let call = Task {
                try await channel.streaming(
                    "/wire.test.Probe/Hold", options: CallOptions()
                ) { (c: StreamingCall<Grpc_Testing_Empty, Grpc_Testing_Empty>) in
                    try await c.send(Grpc_Testing_Empty())
                    try await Task.sleep(nanoseconds: 30_000_000_000)
                }
            }
            #expect(await eventually { probe.started.withLockedValue { $0 } == 1 })
            call.cancel()
            #expect(await eventually { probe.cancelledCalls.withLockedValue { $0 } == 1 })
            // The same connection still serves.
            let client = Grpc_Testing_TestService_Client(channel: channel)
            let answer = try await client.emptyCall(Grpc_Testing_Empty())
            #expect(answer == Grpc_Testing_Empty())
        }
    }

    @Test func aRefusalIsTrailersOnlyAndAnUnknownMethodIsUnimplemented() async throws {
        try await withPair([InteropTestService()]) { channel in
            let code = await statusCode {
                let _: Grpc_Testing_Empty = try await channel.unary("/grpc.testing.TestService/Nope", request: Grpc_Testing_Empty())
            }
            #expect(code == .unimplemented)
            var req = Grpc_Testing_SimpleRequest()
            req.responseStatus = Grpc_Testing_EchoStatus()
            req.responseStatus!.code = 9
            req.responseStatus!.message = "не сейчас"
            do {
                _ = try await Grpc_Testing_TestService_Client(channel: channel).unaryCall(req)
                Issue.record("expected FAILED_PRECONDITION")
            } catch let e as RPCError {
                #expect(e.code == .failedPrecondition && e.message == "не сейчас")
            }
        }
    }
}

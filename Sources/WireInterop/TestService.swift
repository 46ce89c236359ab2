import Wire

/// grpc.testing.TestService as grpc/grpc doc/interop-test-descriptions.md asks of a server.
public struct InteropTestService: Grpc_Testing_TestService_Service {
    public init() {}

    public func emptyCall(_ request: Grpc_Testing_Empty, context: ServerContext) async throws -> Grpc_Testing_Empty {
        echoMetadata(context)
        return Grpc_Testing_Empty()
    }

    public func unaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws -> Grpc_Testing_SimpleResponse {
        echoMetadata(context)
        try checkCompression(expected: request.expectCompressed, context: context)
        try failIfAsked(request.responseStatus)
        context.compressResponses = request.responseCompressed?.value ?? false
        var response = Grpc_Testing_SimpleResponse()
        if request.responseSize > 0 {
            response.payload = payload(size: request.responseSize)
        }
        return response
    }

    public func cacheableUnaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) async throws
        -> Grpc_Testing_SimpleResponse
    {
        try await unaryCall(request, context: context)
    }

    public func streamingOutputCall(
        _ request: Grpc_Testing_StreamingOutputCallRequest, responses: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>,
        context: ServerContext
    ) async throws {
        echoMetadata(context)
        try await respond(to: request, responses: responses, context: context)
    }

    public func streamingInputCall(
        requests: RequestStream<Grpc_Testing_StreamingInputCallRequest>, context: ServerContext
    ) async throws -> Grpc_Testing_StreamingInputCallResponse {
        echoMetadata(context)
        var total: Int32 = 0
        for try await r in requests {
            try checkCompression(expected: r.expectCompressed, context: context)
            total += Int32(r.payload?.body.count ?? 0)
        }
        var response = Grpc_Testing_StreamingInputCallResponse()
        response.aggregatedPayloadSize = total
        return response
    }

    public func fullDuplexCall(
        requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>,
        context: ServerContext
    ) async throws {
        echoMetadata(context)
        for try await r in requests {
            try await respond(to: r, responses: responses, context: context)
        }
    }

    public func halfDuplexCall(
        requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>,
        context: ServerContext
    ) async throws {
        echoMetadata(context)
        var all = [Grpc_Testing_StreamingOutputCallRequest]()
        for try await r in requests { all.append(r) }
        for r in all { try await respond(to: r, responses: responses, context: context) }
    }

    public func unimplementedCall(_ request: Grpc_Testing_Empty, context: ServerContext) async throws -> Grpc_Testing_Empty {
        throw RPCError(.unimplemented, "UnimplementedCall is deliberately not implemented")
    }

    private func respond(
        to request: Grpc_Testing_StreamingOutputCallRequest, responses: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>,
        context: ServerContext
    ) async throws {
        try failIfAsked(request.responseStatus)
        for p in request.responseParameters {
            if p.intervalUs > 0 {
                try await Task.sleep(nanoseconds: UInt64(p.intervalUs) * 1000)
            }
            context.compressResponses = p.compressed?.value ?? false
            var r = Grpc_Testing_StreamingOutputCallResponse()
            r.payload = payload(size: p.size)
            try await responses.write(r)
        }
    }

    private func payload(size: Int32) -> Grpc_Testing_Payload {
        var p = Grpc_Testing_Payload()
        p.type = .compressable
        p.body = [UInt8](repeating: 0, count: Int(max(0, size)))
        return p
    }

    private func failIfAsked(_ status: Grpc_Testing_EchoStatus?) throws {
        if let s = status, s.code != 0 {
            throw RPCError(StatusCode(wireValue: Int(s.code)), s.message)
        }
    }

    private func checkCompression(expected: Grpc_Testing_BoolValue?, context: ServerContext) throws {
        if expected?.value == true && !context.lastRequestWasCompressed {
            throw RPCError(.invalidArgument, "expected a compressed request message")
        }
    }

    private func echoMetadata(_ context: ServerContext) {
        if let v = context.requestMetadata["x-grpc-test-echo-initial"], context.responseMetadata["x-grpc-test-echo-initial"] == nil {
            context.responseMetadata.add("x-grpc-test-echo-initial", v)
        }
        if let b = context.requestMetadata.binary("x-grpc-test-echo-trailing-bin"),
            context.trailingMetadata.binary("x-grpc-test-echo-trailing-bin") == nil
        {
            context.trailingMetadata.add("x-grpc-test-echo-trailing-bin", binary: b)
        }
    }
}

import CNGHTTP2
import NIOCore

/// One call from the client side. Confined to its connection's event loop like `ServerCall`; the
/// public entry points hop there.
final class ClientStream: @unchecked Sendable {
    let loop: any EventLoop
    weak var connection: ClientConnection?
    var streamID: Int32 = -1
    let path: String
    let options: CallOptions

    /// Where the call is (see StreamStateMachine): the handler performs what it answers.
    private var stream = StreamStateMachine(role: .client)

    // Response headers and trailers.
    private var httpStatus: Int?
    private var contentTypeOK = false
    private var responseEncodingGzip = false
    private var statusCode: Int?
    private var statusMessage = ""
    private var statusDetails: [UInt8]?
    private var headerMetadata = Metadata()
    private(set) var initialMetadata = Metadata()
    private(set) var trailingMetadata = Metadata()
    private var initialMetadataWaiters: [CallContinuation<Metadata>] = []

    // Inbound.
    private var deframer: MessageDeframer
    private var inbound = CircularBuffer<MessageDeframer.Message>()
    private var uncredited = 0
    private var receiver: CallContinuation<MessageDeframer.Message?>?
    /// The call's status once settled; `nil` means OK.
    private var outcome: RPCError?

    // Outbound.
    private var pending = ByteBuffer()
    private var sender: CallContinuation<Void>?
    private static let highWater = 64 * 1024

    private var deadlineTimer: Scheduled<Void>?

    init(loop: any EventLoop, path: String, options: CallOptions) {
        self.loop = loop
        self.path = path
        self.options = options
        self.deframer = MessageDeframer(maxMessageSize: options.maxReceiveMessageSize)
    }

    var isDone: Bool { stream.settled }

    func requestHeaders(authority: String, scheme: String) -> HeaderBlock {
        var h = HeaderBlock()
        h.add(":method", "POST")
        h.add(":scheme", scheme)
        h.add(":path", path)
        h.add(":authority", authority)
        h.add("content-type", "application/grpc")
        h.add("te", "trailers")
        h.add("user-agent", "wire-swift/1.0")
        h.add("grpc-accept-encoding", "gzip,identity")
        if options.compressRequests { h.add("grpc-encoding", "gzip") }
        if let t = options.timeout {
            h.add("grpc-timeout", GRPCTimeout.encode(nanoseconds: t.nanoseconds))
        }
        h.add(options.metadata)
        return h
    }

    /// Called on the loop once the stream exists.
    func started(streamID: Int32) {
        self.streamID = streamID
        // The request headers went out with the stream's creation.
        _ = stream.send()
        if let t = options.timeout {
            deadlineTimer = loop.scheduleTask(in: t) { [self] in
                guard !isDone else { return }
                connection?.reset(self, code: NGHTTP2_CANCEL.rawValue)
                end(RPCError(.deadlineExceeded, "deadline exceeded after \(t.nanoseconds / 1_000_000) ms"))
            }
        }
    }

    // MARK: Events from the connection

    func header(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if name.first == UInt8(ascii: ":") {
            if name.equals(":status") { httpStatus = Int(String(decoding: value, as: UTF8.self)) }
            return
        }
        if name.equals("content-type") {
            contentTypeOK = ServerCall.isGRPCContentType(value)
        } else if name.equals("grpc-status") {
            statusCode = Int(String(decoding: value, as: UTF8.self)) ?? StatusCode.unknown.rawValue
        } else if name.equals("grpc-message") {
            statusMessage = PercentEncoding.decode(value)
        } else if name.equals("grpc-status-details-bin") {
            statusDetails = Base64.decode(Array(value))
        } else if name.equals("grpc-encoding") {
            responseEncodingGzip = value.equals("gzip")
        } else {
            guard Metadata.isCustomKey(name) else { return }
            let key = String(decoding: name, as: UTF8.self)
            if key.hasSuffix("-bin") {
                for v in Base64.decodeBinaryHeader(Array(value)) ?? [] { headerMetadata.add(key, binary: v) }
            } else {
                headerMetadata.add(key, String(decoding: value, as: UTF8.self))
            }
        }
    }

    func headersComplete(endStream: Bool) {
        let first = !stream.receivedHeaders
        stream.receivedHeaders(endStream: endStream)
        if first {
            initialMetadata = headerMetadata
            headerMetadata = Metadata()
            for w in initialMetadataWaiters { w.resume(returning: initialMetadata) }
            initialMetadataWaiters.removeAll()
            if endStream {
                // Trailers-Only: the status is in this one block.
                trailingMetadata = initialMetadata
                finishFromTrailers()
            } else if httpStatus != 200 || !contentTypeOK {
                connection?.reset(self, code: NGHTTP2_CANCEL.rawValue)
                end(httpError())
            }
        } else {
            trailingMetadata = headerMetadata
            finishFromTrailers()
        }
    }

    private func httpError() -> RPCError {
        guard let s = httpStatus, s != 200 else {
            return RPCError(.unknown, "response content-type is not application/grpc")
        }
        // grpc/grpc doc/http-grpc-status-mapping.md
        let code: StatusCode =
            switch s {
            case 400: .internal
            case 401: .unauthenticated
            case 403: .permissionDenied
            case 404: .unimplemented
            case 429, 502, 503, 504: .unavailable
            default: .unknown
            }
        return RPCError(code, "HTTP status \(s)")
    }

    private func finishFromTrailers() {
        if let c = statusCode {
            if c == 0 {
                end(nil)
            } else {
                end(RPCError(StatusCode(wireValue: c), statusMessage, details: statusDetails, metadata: trailingMetadata))
            }
        } else if httpStatus != 200 {
            end(httpError())
        } else {
            end(RPCError(.internal, "the server ended the call without a grpc-status"))
        }
    }

    func data(_ bytes: UnsafeRawBufferPointer) {
        uncredited += bytes.count
        guard stream.acceptsMessages else {
            credit()
            return
        }
        deframer.append(bytes)
        do throws(MessageDeframer.Failure) {
            while let m = try deframer.next() {
                if m.compressed && !responseEncodingGzip {
                    connection?.reset(self, code: NGHTTP2_CANCEL.rawValue)
                    return end(RPCError(.internal, "a response message is flagged compressed without grpc-encoding"))
                }
                if let r = receiver {
                    receiver = nil
                    r.resume(returning: m)
                } else {
                    inbound.append(m)
                }
            }
        } catch {
            connection?.reset(self, code: NGHTTP2_CANCEL.rawValue)
            end(error.rpcError("response message"))
        }
        if inbound.isEmpty { credit() }
    }

    private func credit() {
        guard uncredited > 0, let c = connection else { return }
        c.session?.consume(stream: streamID, uncredited)
        uncredited = 0
    }

    func closed(errorCode: UInt32) {
        if uncredited > 0 {
            connection?.session?.consumeConnection(uncredited)
            uncredited = 0
        }
        defer { stream.streamClosed() }
        guard !isDone else { return }
        switch errorCode {
        case NGHTTP2_NO_ERROR.rawValue:
            end(RPCError(.internal, "the server closed the stream without a status"))
        case NGHTTP2_REFUSED_STREAM.rawValue:
            end(RPCError(.unavailable, "the server refused the stream (REFUSED_STREAM); it was not processed"))
        case NGHTTP2_CANCEL.rawValue:
            end(RPCError(.cancelled, "the server cancelled the stream"))
        case NGHTTP2_ENHANCE_YOUR_CALM.rawValue:
            end(RPCError(.resourceExhausted, "the server reset the stream: ENHANCE_YOUR_CALM"))
        default:
            end(RPCError(.internal, "the stream was reset with HTTP/2 error \(errorCode)"))
        }
    }

    /// The call is over: wake everyone waiting.
    func end(_ error: RPCError?) {
        let (first, action) = stream.settle()
        guard first else { return }
        outcome = error
        if action == .resumeBody {
            // The request half ends with what is buffered, so the stream closes on both sides.
            connection?.resume(self)
            connection?.scheduleFlush()
        }
        deadlineTimer?.cancel()
        if !stream.receivedHeaders {
            for w in initialMetadataWaiters { w.resume(returning: Metadata()) }
            initialMetadataWaiters.removeAll()
        }
        if let r = receiver {
            receiver = nil
            if let error { r.resume(throwing: error) } else { r.resume(returning: nil) }
        }
        if let s = sender {
            sender = nil
            s.resume(throwing: error ?? RPCError(.cancelled, "the call has already ended"))
        }
    }

    func readBody(into buffer: UnsafeMutableRawBufferPointer, eof: inout Bool, endStream: inout Bool) -> Int? {
        let n = pending.move(into: buffer)
        if n > 0, let s = sender, pending.readableBytes <= Self.highWater / 2 {
            sender = nil
            s.resume()
        }
        switch stream.bodyRequested(moved: n, remaining: pending.readableBytes) {
        case .submitEnd:
            eof = true
            endStream = true
            return n
        case .pauseBody:
            return nil
        default:
            return n
        }
    }

    // MARK: Caller side

    func cancel() {
        let body: @Sendable () -> Void = { [self] in
            guard !isDone else { return }
            connection?.reset(self, code: NGHTTP2_CANCEL.rawValue)
            end(RPCError(.cancelled, "the call was cancelled by the client"))
        }
        if loop.inEventLoop { body() } else { loop.execute(body) }
    }

    private func onLoop<T: Sendable>(_ body: @escaping @Sendable (CallContinuation<T>) -> Void) async throws -> T {
        try await withCallContinuation { (cont: CallContinuation<T>) in
            if loop.inEventLoop { body(cont) } else { loop.execute { body(cont) } }
        }
    }

    func send(_ framed: ByteBuffer, end: Bool) async throws {
        try await onLoop { (cont: CallContinuation<Void>) in
            if self.stream.settled {
                return cont.resume(throwing: self.outcome ?? RPCError(.failedPrecondition, "the call has already ended"))
            }
            switch self.stream.send() {
            case .refuse(.sendAfterEnd):
                return cont.resume(throwing: RPCError(.failedPrecondition, "the request stream was already closed"))
            case .refuse:
                return cont.resume(throwing: RPCError(.failedPrecondition, "the call has already ended"))
            case let action:
                var f = framed
                self.pending.writeBuffer(&f)
                let ending = end ? self.stream.sendEnd() : .none
                if action == .resumeBody || ending == .resumeBody { self.connection?.resume(self) }
            }
            self.connection?.scheduleFlush()
            if self.pending.readableBytes <= Self.highWater { cont.resume() } else { self.sender = cont }
        }
    }

    func closeSend() async throws {
        try await send(ByteBuffer(), end: true)
    }

    func receiveRaw() async throws -> MessageDeframer.Message? {
        try await onLoop { (cont: CallContinuation<MessageDeframer.Message?>) in
            if let m = self.inbound.popFirst() {
                if self.inbound.isEmpty {
                    // The WINDOW_UPDATE must go out now: outside a read there is no flush to carry
                    // it, and a server that used up the window would wait for it for ever.
                    self.credit()
                    self.connection?.scheduleFlush()
                }
                return cont.resume(returning: m)
            }
            if self.stream.settled {
                if let e = self.outcome { return cont.resume(throwing: e) }
                return cont.resume(returning: nil)
            }
            self.receiver = cont
        }
    }

    func waitForInitialMetadata() async throws -> Metadata {
        try await onLoop { (cont: CallContinuation<Metadata>) in
            if self.stream.receivedHeaders || self.isDone { return cont.resume(returning: self.initialMetadata) }
            self.initialMetadataWaiters.append(cont)
        }
    }

    func decompress(_ m: MessageDeframer.Message) throws -> ByteBuffer {
        guard m.compressed else { return m.payload }
        do {
            return try Gzip.decompress(m.payload, limit: options.maxReceiveMessageSize, allocator: ByteBufferAllocator())
        } catch {
            throw RPCError(.internal, "could not decompress a response message")
        }
    }
}

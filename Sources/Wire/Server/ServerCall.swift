import CNGHTTP2
import NIOCore

/// One gRPC call on one HTTP/2 stream, server side.
///
/// Confined to its connection's event loop: every mutable field is touched only there. A handler starts
/// on that loop (`Task.immediate`) and continues there after suspensions (`EventLoopTaskExecutor`),
/// so its calls into this object need no hop; code it runs elsewhere goes through entry points that
/// hop to the loop first. Those entry points are `nonisolated(nonsending)`: they run on their
/// caller's executor, so a handler's `await call.send(...)` does not switch executors (each switch
/// looked the task's executor preference up under its status lock, ~600 instructions, several per
/// call); whether they are on the loop they check themselves.
final class ServerCall: @unchecked Sendable {
    let streamID: Int32
    let connection: ServerConnection
    /// Index in the connection's list of calls.
    var slot = 0
    let loop: any EventLoop
    let maxMessageSize: Int

    // Request headers, accumulated by `h2Header`.
    var path: String?
    var isPost = false
    var contentTypeOK = false
    /// Kept only when it is not a gRPC content type, to say so in the refusal.
    var contentType: String?
    var timeoutNanos: Int64?
    var malformedTimeout = false
    var requestEncoding: String?
    var acceptsGzip = false
    var metadata = Metadata()
    var headerListSize = 0
    var badMetadata: String?

    /// Where the call is: which halves of the stream are open, whether its status is settled. Every
    /// decision about what may be sent or received next is the machine's.
    private(set) var stream = StreamStateMachine(role: .server)
    /// Whether the request's header block is complete (later blocks are the client's trailers).
    var headersDone: Bool { stream.receivedHeaders }

    var method: ServerMethod?
    var context: ServerContext { ServerContext(call: self) }
    private(set) var deadline: NIODeadline?
    var responseMetadata = Metadata()
    var trailingMetadata = Metadata()
    /// Who made the call, as the server's interceptor identified them (for the observer's log line).
    /// Set before the handler's first suspension, so on the loop.
    var principal: String?
    private let startedAt = NIODeadline.now()
    private var observed = false
    var compressResponses = false
    var lastRequestWasCompressed = false

    // Inbound messages.
    private var deframer: MessageDeframer
    private var inbound = InboundQueue()
    private var messagesReceived = 0
    /// Bytes received but not yet credited back to the peer's flow-control windows.
    private(set) var uncredited = 0
    private var receiver: CallContinuation<MessageDeframer.Message?>?

    // Outbound.
    private var pending: ByteBuffer
    /// Trailers to send once the body drains; nil means the plain OK trailer.
    private var trailers: HeaderBlock?
    private var sender: CallContinuation<Void>?

    private var task: Task<Void, any Error>?
    private var deadlineTimer: Scheduled<Void>?

    /// A streaming handler's `write` suspends above this many buffered bytes and resumes below half.
    private static let highWater = 64 * 1024
    /// Caps on what a refusal carries in its trailers (percent-encoding may triple the message).
    static let maxStatusMessageBytes = 1536
    static let maxStatusDetailsBytes = 4096

    private static let plainResponseHeaders = FrozenHeaders([
        (":status", "200"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "gzip,identity"),
    ])
    private static let okTrailers = FrozenHeaders([("grpc-status", "0")])

    init(streamID: Int32, connection: ServerConnection, maxMessageSize: Int) {
        self.streamID = streamID
        self.connection = connection
        self.loop = connection.loop
        self.maxMessageSize = maxMessageSize
        self.deframer = MessageDeframer(maxMessageSize: maxMessageSize)
        self.pending = connection.takeBuffer()
    }

    private var session: H2Session { connection.session }

    // MARK: Event-loop side: driven by the connection

    /// The request headers are complete: refuse the call or start it.
    func headersComplete(endStream: Bool, method: ServerMethod?, registry: [String: ServerMethod]) {
        stream.receivedHeaders(endStream: endStream)
        if !isPost {
            return refuseHTTP(status: 405, message: "gRPC requires POST")
        }
        guard contentTypeOK else {
            return refuseHTTP(status: 415, message: "content-type \(contentType ?? "(none)") is not application/grpc")
        }
        let limit = connection.core.configuration.maxHeaderListSize
        if headerListSize > limit {
            return finish(RPCError(.resourceExhausted, "request headers are \(headerListSize) bytes; the limit is \(limit)"))
        }
        if let badMetadata {
            return finish(RPCError(.internal, badMetadata))
        }
        if malformedTimeout {
            return finish(RPCError(.internal, "malformed grpc-timeout: expected 1-8 digits and one of H M S m u n"))
        }
        let path = self.path ?? ""
        guard let method else {
            return finish(RPCError(.unimplemented, Self.unknownMethodMessage(path, registry: registry)))
        }
        if let enc = requestEncoding, enc != "identity", enc != "gzip" {
            var e = RPCError(.unimplemented, "message encoding \(enc) is not supported; use gzip or identity")
            e.metadata.add("grpc-accept-encoding", "gzip,identity")
            return finish(e)
        }
        self.method = method
        if let t = timeoutNanos {
            if t <= 0 {
                return finish(RPCError(.deadlineExceeded, "the deadline had already expired when the call arrived"))
            }
            deadline = .now() + .nanoseconds(t)
            deadlineTimer = loop.scheduleTask(in: .nanoseconds(t)) { [self] in deadlineExpired() }
        }
        if !method.takesSingleRequest {
            startHandler()
        } else if endStream {
            checkSingleRequestAndStart()
        }
    }

    /// `application/grpc`, optionally followed by `+format` or `;params` (PROTOCOL-HTTP2).
    static func isGRPCContentType(_ ct: UnsafeRawBufferPointer) -> Bool {
        let prefix: StaticString = "application/grpc"
        guard ct.count >= 16, UnsafeRawBufferPointer(rebasing: ct[0..<16]).equals(prefix) else { return false }
        guard ct.count > 16 else { return true }
        return ct[16] == UInt8(ascii: "+") || ct[16] == UInt8(ascii: ";")
    }

    static func isGRPCContentType(_ ct: String) -> Bool {
        var s = ct
        return s.withUTF8 { isGRPCContentType(UnsafeRawBufferPointer($0)) }
    }

    private static func unknownMethodMessage(_ path: String, registry: [String: ServerMethod]) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        if parts.count == 2 {
            let service = String(parts[0])
            if registry.keys.contains(where: { $0.hasPrefix("/\(service)/") }) {
                return "method \(parts[1]) is not implemented by service \(service)"
            }
            return "service \(service) is not served here"
        }
        return "malformed method path \(path): expected /package.Service/Method"
    }

    /// `slice`, when given, holds the same bytes without a copy (see ServerConnection.slice(of:)).
    func data(_ bytes: UnsafeRawBufferPointer, slice: ByteBuffer?) {
        uncredited += bytes.count
        guard method != nil, stream.acceptsMessages else {
            // Nobody will read these: give the window back at once.
            creditAll()
            return
        }
        if let slice { deframer.append(slice) } else { deframer.append(bytes) }
        do throws(MessageDeframer.Failure) {
            while let m = try deframer.next() {
                if m.compressed && (requestEncoding == nil || requestEncoding == "identity") {
                    return finish(RPCError(.internal, "a message is flagged compressed but the call declared no grpc-encoding"))
                }
                messagesReceived += 1
                if method!.takesSingleRequest && messagesReceived > 1 {
                    return finish(
                        RPCError(.unimplemented, "\(path ?? "") is a unary-request method but the client sent more than one message"))
                }
                deliver(m)
            }
        } catch {
            finish(error.rpcError("request message"))
        }
        // Bytes that only extend a partial message, with nothing queued for the handler, are credited
        // now; queued messages are credited as the handler takes them (see take()).
        if inbound.isEmpty { creditAll() }
    }

    func endStream() {
        stream.receivedEnd()
        guard let method, !stream.settled else { return }
        if deframer.hasPartialMessage {
            return finish(RPCError(.internal, "the request stream ended in the middle of a message"))
        }
        if method.takesSingleRequest && task == nil {
            checkSingleRequestAndStart()
        } else if let r = receiver, inbound.isEmpty {
            receiver = nil
            r.resume(returning: nil)
        }
    }

    private func checkSingleRequestAndStart() {
        guard messagesReceived == 1 else {
            return finish(
                RPCError(.unimplemented, "\(path ?? "") expects exactly one request message; the client sent \(messagesReceived)"))
        }
        startHandler()
    }

    private func startHandler() {
        let method = self.method!
        // Starts synchronously on this event loop and runs until its first suspension: a unary
        // handler usually completes without ever being scheduled. After a suspension it continues
        // on the same loop (the connection's task executor), so its answer is written without a
        // hop; the entry points still hop when called from elsewhere (a child task, say).
        //
        // Declared throwing though it catches everything: `Task.immediate`'s `Never` variant wraps
        // its operation in a reabstraction thunk, two more async frames a call (~640 instructions of
        // an `EmptyCall`).
        let interceptor = connection.core.interceptor
        task = Task.immediate(executorPreference: connection.taskExecutor) { [self] () async throws -> Void in
            let outcome: RPCError?
            do {
                if let interceptor {
                    try await interceptor.value.intercept(context) { try await method.handler(self) }
                } else {
                    try await method.handler(self)
                }
                outcome = nil
            } catch {
                outcome = RPCError.from(error)
            }
            complete(outcome)
        }
    }

    private func deliver(_ m: MessageDeframer.Message) {
        if let r = receiver {
            receiver = nil
            creditAll()
            r.resume(returning: m)
        } else {
            inbound.append(m)
        }
    }

    private func creditAll() {
        if uncredited > 0 {
            session.consume(stream: streamID, uncredited)
            uncredited = 0
        }
    }

    private func deadlineExpired() {
        guard !stream.settled, !stream.isClosed else { return }
        task?.cancel()
        // The trailers carry DEADLINE_EXCEEDED; the RST_STREAM that follows them is NO_ERROR (as
        // grpc-go does), since a CANCEL would make clients report CANCELLED instead.
        finish(RPCError(.deadlineExceeded, "deadline exceeded: the call took longer than its grpc-timeout"))
    }

    /// The stream is gone: normally, or because the client reset it (a cancellation).
    func streamClosed(errorCode: UInt32) {
        if stream.streamClosed() { observe(.cancelled, "the client cancelled the call or the connection closed") }
        if pending.readableBytes > 0 { connection.addUnread(-pending.readableBytes) }
        connection.recycle(&pending)
        deadlineTimer?.cancel()
        task?.cancel()
        if uncredited > 0 {
            session.consumeConnection(uncredited)
            uncredited = 0
        }
        inbound = InboundQueue()
        let cancelled = RPCError(.cancelled, "the client cancelled the call")
        if let r = receiver {
            receiver = nil
            r.resume(throwing: cancelled)
        }
        if let s = sender {
            sender = nil
            s.resume(throwing: cancelled)
        }
    }

    /// nghttp2 asks for body bytes.
    func readBody(into buffer: UnsafeMutableRawBufferPointer, eof: inout Bool, endStream: inout Bool) -> Int? {
        let n = pending.move(into: buffer)
        if n > 0 { connection.addUnread(-n) }
        if n > 0, let s = sender, pending.readableBytes <= Self.highWater / 2 {
            sender = nil
            s.resume()
        }
        switch stream.bodyRequested(moved: n, remaining: pending.readableBytes) {
        case .submitEnd:
            eof = true
            endStream = false
            if let t = trailers {
                trailers = nil
                _ = session.submitTrailers(stream: streamID, headers: t)
            } else {
                _ = session.submitTrailers(stream: streamID, headers: Self.okTrailers)
            }
            return n
        case .pauseBody:
            return nil
        default:
            return n
        }
    }

    /// Performs what the state machine asked for that needs no more than the session.
    private func perform(_ action: StreamStateMachine.Action) {
        if action == .resumeBody { session.resumeData(stream: streamID) }
    }

    // MARK: Ending the call

    private func refuseHTTP(status: Int, message: String) {
        guard stream.sendEnd() == .submitTrailersOnly else { return }
        var h = HeaderBlock()
        h.add(":status", String(status))
        h.add("content-type", "text/plain")
        h.add("grpc-status", String(StatusCode.internal.rawValue))
        h.add("grpc-message", PercentEncoding.encode(message))
        _ = session.submitResponse(stream: streamID, headers: h, withBody: false)
        connection.scheduleFlush()
    }

    /// Decides the call's status and queues the trailers (or a Trailers-Only response).
    func finish(_ error: RPCError?) {
        guard !stream.settled, !stream.isClosed else { return }
        let headersSent = stream.sentHeaders
        let action = stream.sendEnd()
        observe(error?.code ?? .ok, error?.message ?? "", cause: error?.cause)
        deadlineTimer?.cancel()
        let code = error?.code ?? .ok
        if headersSent, error == nil, trailingMetadata.isEmpty {
            perform(action)
            connection.scheduleFlush()
            return
        }
        var t = HeaderBlock()
        if !headersSent {
            // Trailers-Only: one HEADERS frame with END_STREAM (PROTOCOL-HTTP2 "Responses").
            t.add(":status", "200")
            t.add("content-type", "application/grpc")
            t.add(responseMetadata)
        }
        t.add("grpc-status", String(code.rawValue))
        if let e = error { t.add(e.metadata) }
        t.add(trailingMetadata)
        // The status must always arrive: the block stays within the peer's header list limit (8 KiB,
        // grpc's soft default, when it declared none); nghttp2 would not send one over 64 KiB at all.
        // The details carry the message too and clients check the two match, so they go only beside
        // the message unshortened; when it must be shortened to fit, the details are left out.
        let limit = min(session.peerMaxHeaderListSize ?? 8192, 16 * 1024)
        let message = error.map { PercentEncoding.encode($0.message) } ?? ""
        var details = error?.details.flatMap { $0.count <= Self.maxStatusDetailsBytes ? Base64.encode($0) : nil }
        let messageField = message.isEmpty ? 0 : 32 + 12 + message.utf8.count
        if let d = details,
            t.listSize + messageField + 32 + 23 + d.utf8.count + 64 > limit || error!.message.utf8.count > Self.maxStatusMessageBytes
        {
            details = nil
        }
        if let e = error, !e.message.isEmpty {
            let room = limit - t.listSize - (32 + 12) - (details.map { 32 + 23 + $0.utf8.count } ?? 0) - 64
            if details != nil {
                t.add("grpc-message", message)
            } else if room > 0 {
                var text = Clip.bytes(e.message, maxBytes: min(Self.maxStatusMessageBytes, room))
                var encoded = PercentEncoding.encode(text)
                while encoded.utf8.count > room, text.utf8.count > 16 {
                    text = Clip.bytes(text, maxBytes: text.utf8.count * room / max(encoded.utf8.count, 1) - 4)
                    encoded = PercentEncoding.encode(text)
                }
                if encoded.utf8.count <= room { t.add("grpc-message", encoded) }
            }
        }
        if let details { t.add("grpc-status-details-bin", details) }
        if action == .submitTrailersOnly {
            _ = session.submitResponse(stream: streamID, headers: t, withBody: false)
        } else {
            trailers = t
            perform(action)
        }
        if let r = receiver {
            receiver = nil
            r.resume(throwing: error ?? RPCError(.cancelled, "the call has ended"))
        }
        connection.scheduleFlush()
    }

    /// Tells the server's observer how the call ended, once; without an observer, a failure's cause
    /// still reaches the server's log.
    private func observe(_ code: StatusCode, _ message: String, cause: (any Error)? = nil) {
        guard !observed else { return }
        observed = true
        guard let observer = connection.core.observer else {
            if let cause {
                connection.core.logger.error(
                    "call failed", metadata: ["method": "\(path ?? "")", "status": "\(code)", "cause": "\(cause)"])
            }
            return
        }
        observer.value.callFinished(
            FinishedCall(
                method: path ?? "", code: code, message: message,
                durationNanos: NIODeadline.now().uptimeNanoseconds &- startedAt.uptimeNanoseconds,
                principal: principal, peer: connection.peer, cause: cause))
    }

    /// Called when the handler returns or throws; hops to the loop if needed.
    private func complete(_ error: RPCError?) {
        if loop.inEventLoop {
            finish(error)
        } else if !loopClosed {
            loop.execute { self.finish(error) }
        }
    }

    /// The server has shut its event loops down (a handler outlived the grace period): the call's
    /// connection is gone, and work scheduled on the loop would never run.
    private var loopClosed: Bool { connection.core.loopsClosing.load(ordering: .relaxed) }
    private static let serverShutDown = RPCError(.cancelled, "the server has shut down")

    // MARK: Handler side

    private enum Poll {
        case message(MessageDeframer.Message)
        case end
        case wait
    }

    private func poll() throws -> Poll {
        if stream.isClosed { throw RPCError(.cancelled, "the client cancelled the call") }
        if let m = inbound.pop() {
            if inbound.isEmpty {
                // Outside a read cycle nothing else would send the WINDOW_UPDATE (within one, the
                // flush at the end of the read carries it).
                creditAll()
                connection.scheduleFlush()
            }
            return .message(m)
        }
        if stream.inbound == .ended || stream.settled { return .end }
        return .wait
    }

    nonisolated(nonsending) private func receiveRaw() async throws -> MessageDeframer.Message? {
        if loop.inEventLoop {
            switch try poll() {
            case .message(let m): return m
            case .end: return nil
            case .wait: break
            }
        }
        return try await withCallContinuation { (cont: CallContinuation<MessageDeframer.Message?>) in
            let register: @Sendable () -> Void = { [self] in
                do {
                    switch try poll() {
                    case .message(let m): cont.resume(returning: m)
                    case .end: cont.resume(returning: nil)
                    case .wait: receiver = cont
                    }
                } catch {
                    cont.resume(throwing: error)
                }
            }
            if loop.inEventLoop {
                register()
            } else if loopClosed {
                cont.resume(throwing: Self.serverShutDown)
            } else {
                loop.execute(register)
            }
        }
    }

    // `receive`, `send` and the `send` they share are inlined into each method's handler: every
    // async function called is a frame the call's task allocates (three allocator slabs a call,
    // each a malloc and a free); inlined, they are part of the handler's frame (~550 instructions
    // of a unary call's ~43,000).
    @inline(__always) nonisolated(nonsending) func receive<M: WireMessage>(_ type: M.Type) async throws -> M? {
        guard let m = try await receiveRaw() else { return nil }
        var payload = m.payload
        if m.compressed {
            do {
                payload = try Gzip.decompress(payload, limit: maxMessageSize, allocator: connection.allocator)
            } catch {
                switch error {
                case .tooLarge(let limit):
                    throw RPCError(.resourceExhausted, "decompressed request message is over the \(limit)-byte limit")
                case .corrupt:
                    throw RPCError(.internal, "could not decompress the request message (grpc-encoding gzip)")
                }
            }
        }
        lastRequestWasCompressed = m.compressed
        do {
            return try ProtoCodec.decode(M.self, from: payload, checked: true)
        } catch let error as ProtoDecodingError where error.invalidField != nil {
            throw RPCError.invalidArgument(
                "the request was refused before it was read",
                violations: [.init(field: error.invalidField!, description: error.reason ?? error.description)])
        } catch {
            throw RPCError(.internal, "could not parse the request as \(M.wireDescriptor.fullName): \(error)")
        }
    }

    @inline(__always) nonisolated(nonsending) func send<M: WireMessage>(_ message: M) async throws {
        try await send { buffer, admit in try ProtoCodec.encode(message, into: &buffer, admit: admit) }
    }

    @inline(__always) nonisolated(nonsending) func send<M: WireMessage>(_ message: EncodedMessage<M>) async throws {
        try await send { buffer, admit in
            try admit(message.bytes.count)
            buffer.writeBytes(message.bytes)
        }
    }

    /// Sends one message that `write` appends to a buffer, calling `admit` with its size first (it
    /// throws to refuse: a response over a limit is refused before its bytes are written).
    @inline(__always) nonisolated(nonsending) private func send(_ write: (inout ByteBuffer, (Int) throws -> Void) throws -> Void)
        async throws
    {
        if loop.inEventLoop && !(compressResponses && acceptsGzip) {
            // Common case: frame and write straight into the stream's outbound buffer.
            try checkOpen()
            let start = pending.writerIndex
            pending.writeRepeatingByte(0, count: 5)
            let connection = self.connection
            let limit = maxSendMessageSize
            do {
                try write(&pending) { size in
                    if size > limit { throw tooLarge(size) }
                    try connection.core.checkOutboundBudget(connectionUnread: connection.unreadBytes, size: size + 5)
                }
            } catch {
                pending.moveWriterIndex(to: start)
                throw error
            }
            let size = pending.writerIndex - start - 5
            pending.setInteger(UInt32(size), at: start + 1)
            connection.addUnread(size + 5)
            try enqueue(nil)
            if pending.readableBytes > Self.highWater {
                try await withCallContinuation { (cont: CallContinuation<Void>) in sender = cont }
            }
            return
        }
        var framed = connection.allocator.buffer(capacity: 128)
        if compressResponses && acceptsGzip {
            var raw = connection.allocator.buffer(capacity: 128)
            try write(&raw) { _ in }
            MessageFramer.frame(Gzip.compress(raw, allocator: connection.allocator), compressed: true, into: &framed)
        } else {
            framed.writeRepeatingByte(0, count: 5)
            try write(&framed) { _ in }
            framed.setInteger(UInt32(framed.readableBytes - 5), at: 1)
        }
        if framed.readableBytes - 5 > maxSendMessageSize { throw tooLarge(framed.readableBytes - 5) }
        try await sendFramed(framed)
    }

    private var maxSendMessageSize: Int { connection.core.configuration.maxSendMessageSize }

    private func tooLarge(_ size: Int) -> RPCError {
        RPCError(
            .resourceExhausted,
            "the response message is \(size) bytes, over the \(maxSendMessageSize)-byte limit; ask for less (a smaller page)")
    }

    nonisolated(nonsending) func sendHeaders() async throws {
        try await sendFramed(nil)
    }

    nonisolated(nonsending) private func sendFramed(_ framed: ByteBuffer?) async throws {
        if loop.inEventLoop {
            try enqueue(framed)
            if pending.readableBytes <= Self.highWater { return }
            try await withCallContinuation { (cont: CallContinuation<Void>) in
                sender = cont
            }
            return
        }
        try await withCallContinuation { (cont: CallContinuation<Void>) in
            if loopClosed { return cont.resume(throwing: Self.serverShutDown) }
            loop.execute { [self] in
                do {
                    try enqueue(framed)
                    if pending.readableBytes <= Self.highWater { cont.resume() } else { sender = cont }
                } catch {
                    cont.resume(throwing: error)
                }
            }
        }
    }

    private func checkOpen() throws {
        if stream.isClosed { throw RPCError(.cancelled, "the client cancelled the call") }
        if stream.settled { throw RPCError(.cancelled, "the call has already ended") }
    }

    private func enqueue(_ framed: ByteBuffer?) throws {
        try checkOpen()
        if var f = framed {
            try connection.core.checkOutboundBudget(connectionUnread: connection.unreadBytes, size: f.readableBytes)
            connection.addUnread(f.readableBytes)
            pending.writeBuffer(&f)
        }
        switch stream.send() {
        case .submitHeaders:
            let compress = compressResponses && acceptsGzip
            if !compress && responseMetadata.isEmpty {
                _ = session.submitResponse(stream: streamID, headers: Self.plainResponseHeaders, withBody: true)
            } else {
                var h = HeaderBlock()
                h.add(":status", "200")
                h.add("content-type", "application/grpc")
                h.add("grpc-accept-encoding", "gzip,identity")
                if compress { h.add("grpc-encoding", "gzip") }
                h.add(responseMetadata)
                _ = session.submitResponse(stream: streamID, headers: h, withBody: true)
            }
        case let action:
            perform(action)
        }
        connection.scheduleFlush()
    }
}

/// Messages received and not yet taken. Most calls carry one message, so the first sits in a slot
/// and only a second one allocates.
struct InboundQueue {
    private var first: MessageDeframer.Message?
    // An empty array does not allocate; the queue is short (flow control bounds it).
    private var rest: [MessageDeframer.Message] = []

    var isEmpty: Bool { first == nil }

    mutating func append(_ m: MessageDeframer.Message) {
        if first == nil {
            first = m
        } else {
            rest.append(m)
        }
    }

    mutating func pop() -> MessageDeframer.Message? {
        guard let m = first else { return nil }
        first = rest.isEmpty ? nil : rest.removeFirst()
        return m
    }
}

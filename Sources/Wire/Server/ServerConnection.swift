import CNGHTTP2
import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One accepted HTTP/2 connection: NIO moves the bytes, nghttp2 speaks HTTP/2, `ServerCall`s carry
/// the gRPC calls. Everything here runs on the channel's event loop.
final class ServerConnection: H2SessionDelegate, ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let core: ServerCore
    let loop: any EventLoop
    private(set) var session: H2Session!
    /// Every call in progress, each knowing its slot (O(1) add and remove, no hashing per call).
    private var calls: [ServerCall] = []
    /// What the server's admission reads, from another thread, to pick the connection it closes to
    /// make room at a cap (the oldest silent one, then the oldest without calls). Written only on the
    /// loop; atomics the connection owns, where entries in the server's locked registry cost a lock,
    /// a hash and three allocations each time a connection went from idle to busy or back (twice a
    /// call for a client making one at a time).
    private let callsInProgress = Atomic<Bool>(false)
    private let peerSettingsReceived = Atomic<Bool>(false)
    var hasCalls: Bool { callsInProgress.load(ordering: .relaxed) }
    /// The peer's SETTINGS have arrived (after its preface).
    var handshakeDone: Bool { peerSettingsReceived.load(ordering: .relaxed) }
    private var context: ChannelHandlerContext?
    private(set) var peer = ""
    /// Usable from any thread (handlers may run off the loop), unlike the channel's.
    let allocator = ByteBufferAllocator()

    private var flushScheduled = false
    /// Between channelRead and channelReadComplete: output is flushed at the end of the read, so
    /// calls finishing inside it need not schedule a flush of their own.
    private var inReadCycle = false
    /// The last method path seen on this connection: repeated calls reuse its String (no allocation).
    private var lastPath = ""
    /// The last method looked up, by path (String equality on a shared String is a pointer check).
    private var lastMethodPath = ""
    private var lastMethod: ServerMethod?
    private var closing = false
    private var goAwaySent = false

    // Ping policing (grpc-go's defaults): a PING sooner than `minPingInterval` after the previous one,
    // with no HEADERS or DATA sent in between, is a strike; the third strike ends the connection.
    private var lastPingAt: NIODeadline?
    private var pingStrikes = 0

    /// Set at admission when the server is at its connection limit: the connection gets GOAWAY.
    var refusal: String?
    private let acceptedAt = NIODeadline.now()
    /// When the last call ended (or the connection opened): the idle timeout counts from here.
    private var idleSince = NIODeadline.now()

    /// Response bytes encoded for this connection's calls and not yet taken by nghttp2.
    private(set) var unreadBytes = 0
    /// Response bytes taken by nghttp2 so far; the sweep compares it between ticks to see a stall.
    private var bytesTaken = 0
    private var bytesTakenAtLastTick = 0
    private var stalledSince: NIODeadline?

    init(core: ServerCore, loop: any EventLoop) {
        self.core = core
        self.loop = loop
        self.taskExecutor = EventLoopTaskExecutor(loop: loop, core: core)
    }

    /// Where the connection's handlers continue after a suspension.
    let taskExecutor: EventLoopTaskExecutor

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let c = core.configuration
        session = H2Session(
            role: .server,
            settings: .init(
                maxConcurrentStreams: UInt32(c.maxConcurrentStreams),
                initialWindowSize: UInt32(c.initialStreamWindowSize),
                maxHeaderListSize: UInt32(c.maxHeaderListSize),
                connectionWindowSize: Int32(c.connectionWindowSize)),
            delegate: self)
        peer = context.channel.remoteAddress?.description ?? "unknown"
        if context.channel.isActive { flushOutput() }
    }

    func channelActive(context: ChannelHandlerContext) {
        if let refusal {
            session.submitGoAway(errorCode: NGHTTP2_NO_ERROR.rawValue, lastStreamID: 0, debug: "connection refused: \(refusal)")
            goAwaySent = true
            flushOutput()
            // Closed a little later, not at once: closing with the client's preface unread would make
            // the kernel answer with a reset, and the client might never read the GOAWAY.
            loop.scheduleTask(in: .milliseconds(500)) { [self] in close() }
            context.fireChannelActive()
            return
        }
        flushOutput()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard refusal == nil else { return }  // refused: its bytes are read and dropped
        guard !closing || session.wantsRead else { return }
        inReadCycle = true
        let buffer = unwrapInboundIn(data)
        let rc = buffer.withUnsafeReadableBytes { bytes in
            input = (buffer, bytes.baseAddress)
            defer { input = nil }
            return session.receive(bytes)
        }
        if rc < 0 {
            let reason = String(cString: nghttp2_strerror(Int32(rc)))
            core.logger.debug("closing connection after HTTP/2 error", metadata: ["peer": "\(peer)", "error": "\(reason)"])
            flushOutput()
            close()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadCycle = false
        flushOutput()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { flushOutput() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        recentCall = nil
        let all = calls
        calls.removeAll()
        for call in all { call.streamClosed(errorCode: NGHTTP2_CANCEL.rawValue) }
        core.untrack(self)
        if unreadBytes != 0 { addUnread(-unreadBytes) }
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        core.logger.debug("connection error", metadata: ["peer": "\(peer)", "error": "\(error)"])
        close()
    }

    // MARK: Output

    /// Coalesces writes: many calls finishing in one event-loop tick share one flush.
    func scheduleFlush() {
        guard !flushScheduled, !inReadCycle else { return }
        flushScheduled = true
        loop.execute { [self] in
            flushScheduled = false
            flushOutput()
        }
    }

    func flushOutput() {
        guard let context, context.channel.isActive else { return }
        guard session.writeOutput(to: context) else {
            close()
            return
        }
        if !session.wantsRead && !session.wantsWrite {
            close()
        } else if goAwaySent && calls.isEmpty && !session.wantsWrite {
            close()
        }
    }

    private func close() {
        guard !closing else { return }
        closing = true
        context?.close(promise: nil)
    }

    // MARK: Timers and limits

    /// Called once a second by the server's sweep: closes connections that never finished the
    /// handshake, sat idle past the idle timeout, or left responses unread past the stall timeout.
    func tick(now: NIODeadline) {
        guard !closing, context != nil else { return }
        let c = core.configuration
        if !handshakeDone {
            if now - acceptedAt >= c.handshakeTimeout {
                core.logger.debug("closing a connection that sent no HTTP/2 preface and SETTINGS", metadata: ["peer": "\(peer)"])
                close()
            }
            return
        }
        if calls.isEmpty, let idle = c.idleTimeout, now - idleSince >= idle, !goAwaySent {
            core.logger.debug("closing an idle connection", metadata: ["peer": "\(peer)"])
            session.submitGoAway(errorCode: NGHTTP2_NO_ERROR.rawValue, debug: "idle")
            goAwaySent = true
            flushOutput()
            close()
            return
        }
        if unreadBytes > 0, bytesTaken == bytesTakenAtLastTick {
            let since = stalledSince ?? now
            stalledSince = since
            if now - since >= c.stallTimeout {
                core.logger.info(
                    "closing a connection whose client read no response bytes",
                    metadata: [
                        "peer": "\(peer)", "unread_bytes": "\(unreadBytes)", "seconds": "\((now - since).nanoseconds / 1_000_000_000)",
                    ])
                abort(debug: "responses unread for too long")
            }
        } else {
            stalledSince = nil
        }
        bytesTakenAtLastTick = bytesTaken
    }

    /// Closed to make room for a new connection at the connection limit.
    func evict() {
        guard !closing, context != nil else { return }
        abort(debug: "connection limit reached")
    }

    /// GOAWAY, every call reset, closed.
    private func abort(debug: String) {
        session.submitGoAway(errorCode: NGHTTP2_NO_ERROR.rawValue, debug: debug)
        goAwaySent = true
        for call in calls { session.resetStream(call.streamID, errorCode: NGHTTP2_CANCEL.rawValue) }
        flushOutput()
        close()
    }

    /// Accounts for response bytes encoded (positive) or taken by nghttp2 or dropped (negative).
    func addUnread(_ delta: Int) {
        unreadBytes += delta
        if delta < 0 { bytesTaken &+= -delta }
        core.unreadResponseBytes.add(delta, ordering: .relaxed)
    }

    // MARK: Buffers

    /// The buffer being fed to nghttp2, while it is: DATA chunks point into it, so a message can be
    /// a slice of NIO's receive buffer rather than a copy.
    private var input: (buffer: ByteBuffer, base: UnsafeRawPointer?)?

    private func slice(of bytes: UnsafeRawBufferPointer) -> ByteBuffer? {
        guard let (buffer, base) = input, let base, let p = bytes.baseAddress else { return nil }
        let offset = p - base
        guard offset >= 0, offset + bytes.count <= buffer.readableBytes else { return nil }
        return buffer.getSlice(at: buffer.readerIndex + offset, length: bytes.count)
    }

    /// Cleared outbound buffers of finished calls, reused by new ones (saves two allocations a call).
    private var bufferPool: [ByteBuffer] = []

    func takeBuffer() -> ByteBuffer {
        bufferPool.popLast() ?? allocator.buffer(capacity: 256)
    }

    func recycle(_ buffer: inout ByteBuffer) {
        guard bufferPool.count < 64, buffer.capacity <= 64 * 1024 else { return }
        buffer.clear()
        bufferPool.append(buffer)
        buffer = ByteBuffer()
    }

    // MARK: Graceful shutdown

    /// GOAWAY in two steps (shutdown notice, then the real GOAWAY one round trip later) so requests
    /// already in flight are not refused; calls in progress get `grace` to finish.
    func beginGracefulShutdown(grace: TimeAmount) {
        guard !goAwaySent, !closing, context != nil else { return }
        session.submitShutdownNotice()
        flushOutput()
        loop.scheduleTask(in: .milliseconds(50)) { [self] in
            guard !closing else { return }
            session.submitGoAway(errorCode: NGHTTP2_NO_ERROR.rawValue)
            goAwaySent = true
            flushOutput()
        }
        loop.scheduleTask(in: grace) { [self] in
            guard !closing else { return }
            for call in calls {
                session.resetStream(call.streamID, errorCode: NGHTTP2_CANCEL.rawValue)
            }
            flushOutput()
            close()
        }
    }

    // MARK: nghttp2 events

    /// The stream the last callback was about and its call. nghttp2 reports a stream's header
    /// fields, data and end one after another, so this spares most callbacks nghttp2's stream look-up
    /// (~80 instructions each, ~7 a call). Unretained like the stream's user data; forgotten when that
    /// stream closes (stream ids are never reused on a connection).
    private var recentStream: Int32 = 0
    private var recentCall: Unmanaged<ServerCall>?

    @inline(__always)
    private func unmanagedCall(_ stream: Int32) -> Unmanaged<ServerCall>? {
        if stream == recentStream, let c = recentCall { return c }
        guard let p = session.streamUserData(stream) else { return nil }
        let c = Unmanaged<ServerCall>.fromOpaque(p)
        recentStream = stream
        recentCall = c
        return c
    }

    /// The call on `stream`, found through nghttp2's per-stream pointer (no hashing per header).
    @inline(__always)
    private func call(_ stream: Int32) -> ServerCall? {
        unmanagedCall(stream)?.takeUnretainedValue()
    }

    override func h2BeginHeaders(stream: Int32) {
        guard call(stream) == nil else { return }  // trailers from the client
        if calls.isEmpty { callsInProgress.store(true, ordering: .relaxed) }
        let c = ServerCall(streamID: stream, connection: self, maxMessageSize: core.configuration.maxReceiveMessageSize)
        c.slot = calls.count
        calls.append(c)  // owns the call; the stream's user data points at it unretained
        let u = Unmanaged.passUnretained(c)
        session.setStreamUserData(stream, u.toOpaque())
        recentStream = stream
        recentCall = u
    }

    /// The call on `stream`, lent to `body` without a retain and release (hot: every header and DATA
    /// chunk). The `calls` list owns it until its stream closes, which nghttp2 does only between
    /// callbacks, never inside a header or data callback.
    @inline(__always)
    private func withCall(_ stream: Int32, _ body: (ServerCall) -> Void) -> Bool {
        guard let c = unmanagedCall(stream) else { return false }
        c._withUnsafeGuaranteedRef(body)
        return true
    }

    override func h2Header(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        _ = withCall(stream) { call in
            guard !call.headersDone else { return }
            // nghttp2 does not enforce SETTINGS_MAX_HEADER_LIST_SIZE on receive: count as RFC 9113 does.
            call.headerListSize += name.count + value.count + 32
            if call.headerListSize > core.configuration.maxHeaderListSize { return }
            parseHeader(call, name: name, value: value)
        }
        return true
    }

    private func parseHeader(_ call: ServerCall, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if name.first == UInt8(ascii: ":") {
            if name.equals(":path") {
                let same =
                    lastPath.utf8.withContiguousStorageIfAvailable {
                        $0.count == value.count && (value.count == 0 || memcmp($0.baseAddress!, value.baseAddress!, value.count) == 0)
                    } ?? false
                if !same { lastPath = String(decoding: value, as: UTF8.self) }
                call.path = lastPath
            } else if name.equals(":method") {
                call.isPost = value.equals("POST")
            }
            return
        }
        if name.equals("content-type") {
            call.contentTypeOK = ServerCall.isGRPCContentType(value)
            if !call.contentTypeOK { call.contentType = String(decoding: value, as: UTF8.self) }
        } else if name.equals("grpc-timeout") {
            if let t = GRPCTimeout.parse(value) { call.timeoutNanos = t } else { call.malformedTimeout = true }
        } else if name.equals("grpc-encoding") {
            call.requestEncoding = String(decoding: value, as: UTF8.self)
        } else if name.equals("grpc-accept-encoding") {
            call.acceptsGzip = value.split(separator: UInt8(ascii: ",")).contains {
                $0.drop(while: { $0 == 0x20 }).elementsEqual("gzip".utf8)
            }
        } else if name.equals("te") || name.equals("user-agent") {
            return
        } else {
            guard Metadata.isCustomKey(name) else { return }
            let key = String(decoding: name, as: UTF8.self)
            if key.hasSuffix("-bin") {
                guard let values = Base64.decodeBinaryHeader(Array(value)) else {
                    call.badMetadata = "metadata \(key) is not valid base64"
                    return
                }
                for v in values { call.metadata.add(key, binary: v) }
            } else {
                call.metadata.add(key, String(decoding: value, as: UTF8.self))
            }
        }
    }

    override func h2HeadersComplete(stream: Int32, endStream: Bool) {
        guard let call = call(stream) else { return }
        if call.headersDone {
            // Trailers from the client end its side of the stream.
            if endStream { call.endStream() }
            return
        }
        let path = call.path ?? ""
        if path != lastMethodPath {
            lastMethodPath = path
            lastMethod = core.methods[path]
        }
        call.headersComplete(endStream: endStream, method: lastMethod, registry: core.methods)
    }

    override func h2Data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        let known = withCall(stream) { call in call.data(bytes, slice: slice(of: bytes)) }
        if !known { session.consumeConnection(bytes.count) }
    }

    override func h2EndStream(stream: Int32) {
        call(stream)?.endStream()
    }

    override func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        guard let call = call(stream) else { return }
        session.setStreamUserData(stream, nil)
        recentCall = nil
        let last = calls.removeLast()
        if last !== call {
            calls[call.slot] = last
            last.slot = call.slot
        }
        call.streamClosed(errorCode: errorCode)
        if calls.isEmpty {
            idleSince = .now()
            callsInProgress.store(false, ordering: .relaxed)
            if goAwaySent { scheduleFlush() }
        }
    }

    override func h2ReadBody(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, eof: inout Bool, endStream: inout Bool) -> Int? {
        guard let call = call(stream) else {
            eof = true
            return 0
        }
        return call.readBody(into: buffer, eof: &eof, endStream: &endStream)
    }

    override func h2FrameSent(type: UInt8, stream: Int32, flags: UInt8) {
        let t = UInt32(type)
        guard t == NGHTTP2_HEADERS.rawValue || t == NGHTTP2_DATA.rawValue else { return }
        pingStrikes = 0
        lastPingAt = nil
        // Trailers sent while the client is still sending are followed by RST_STREAM(NO_ERROR), so it
        // stops (PROTOCOL-HTTP2 "Responses").
        if flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0, session.isStreamOpenRemotely(stream) {
            session.resetStream(stream, errorCode: NGHTTP2_NO_ERROR.rawValue)
        }
    }

    override func h2PingReceived() {
        let now = NIODeadline.now()
        if let last = lastPingAt, now - last < core.configuration.minPingInterval {
            pingStrikes += 1
            if pingStrikes > 2 {
                core.logger.debug("too many pings: closing", metadata: ["peer": "\(peer)"])
                session.submitGoAway(errorCode: NGHTTP2_ENHANCE_YOUR_CALM.rawValue, debug: "too_many_pings")
                goAwaySent = true
                flushOutput()
                close()
                return
            }
        }
        lastPingAt = now
    }

    override func h2GoAwayReceived(lastStreamID: Int32, errorCode: UInt32) {}

    override func h2SettingsReceived() {
        peerSettingsReceived.store(true, ordering: .relaxed)
    }

    /// nghttp2 could not send a frame (a header block over its 64 KiB limit, say): the stream must
    /// not be left open, so it is reset.
    override func h2FrameNotSent(type: UInt8, stream: Int32, error: Int32) {
        let t = UInt32(type)
        guard stream > 0, t == NGHTTP2_HEADERS.rawValue || t == NGHTTP2_DATA.rawValue else { return }
        core.logger.warning(
            "a response frame could not be sent; resetting the stream",
            metadata: [
                "peer": "\(peer)", "error": "\(String(cString: nghttp2_strerror(error)))",
            ])
        session.resetStream(stream, errorCode: NGHTTP2_INTERNAL_ERROR.rawValue)
        scheduleFlush()
    }
}

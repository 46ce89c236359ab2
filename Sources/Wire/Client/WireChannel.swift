import CNGHTTP2
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
    import Glibc
#endif

public struct CallOptions: Sendable {
    /// Sent as `grpc-timeout`; the call also ends locally with DEADLINE_EXCEEDED when it passes.
    public var timeout: TimeAmount?
    public var metadata: Metadata
    public var compressRequests: Bool
    public var maxReceiveMessageSize: Int

    public init(
        timeout: TimeAmount? = nil, metadata: Metadata = Metadata(), compressRequests: Bool = false,
        maxReceiveMessageSize: Int = 4 * 1024 * 1024
    ) {
        self.timeout = timeout
        self.metadata = metadata
        self.compressRequests = compressRequests
        self.maxReceiveMessageSize = maxReceiveMessageSize
    }
}

/// A client's view of a service: one target (host:port) or several (replicas without a balancer in
/// front). To each target one HTTP/2 connection multiplexing every call, opened on first use and
/// opened again after the peer goes away (restart, GOAWAY, network error).
///
/// With several targets each new call goes to the next one in turn (round robin, as gRPC's
/// `round_robin` policy); a target that could not be dialled is skipped for a while (1 s, doubling up
/// to 30 s) and the call goes to the next, so a dead replica costs one failed dial, not a failed
/// call. A call already sent is never re-sent elsewhere: that is the caller's retry to make.
public final class WireChannel: Sendable {
    /// The first target (the only one, usually).
    public let host: String
    public let port: Int
    private let targets: [Target]
    private let nextTarget = NIOLockedValueBox(0)
    private let group: any EventLoopGroup
    /// TLS to the server (nil = plaintext); its context is made on the first dial.
    public let tls: WireTLS.Client?
    private let tlsContext = NIOLockedValueBox<NIOSSLContext?>(nil)
    /// How a connection is made when not by TCP to host:port (the in-memory test harness).
    private let dialer: (@Sendable (any EventLoopGroup) -> EventLoopFuture<ClientConnection>)?

    /// idle -> connecting -> ready; back to idle (via a failed connect, or a ready connection that
    /// became unusable) so the next call dials again.
    private enum ConnectionState {
        case idle
        case connecting(EventLoopFuture<ClientConnection>)
        case ready(ClientConnection)
    }

    /// One address of the service and its connection.
    private final class Target: Sendable {
        let host: String
        let port: Int
        let state = NIOLockedValueBox<ConnectionState>(.idle)
        /// After failed dials: not before this instant, and how long the next back-off is.
        let backOff = NIOLockedValueBox<(until: NIODeadline, next: TimeAmount)?>(nil)

        init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        var isBackingOff: Bool { backOff.withLockedValue { $0.map { $0.until > .now() } ?? false } }

        func dialFailed() {
            backOff.withLockedValue { b in
                let wait = b?.next ?? .seconds(1)
                b = (.now() + wait, min(wait * 2, .seconds(30)))
            }
        }

        func dialSucceeded() { backOff.withLockedValue { $0 = nil } }
    }

    /// A channel to `host:port`; nothing is dialled until the first call.
    ///
    /// - Parameters:
    ///   - group: The event loops to run the connection on; nil runs it on the process's shared
    ///     group (`MultiThreadedEventLoopGroup.singleton`), as servers do by default.
    ///   - tls: TLS settings (CA, client certificate, server name); nil speaks plaintext HTTP/2.
    public convenience init(host: String, port: Int, group: (any EventLoopGroup)? = nil, tls: WireTLS.Client? = nil) {
        self.init(targets: [(host, port)], group: group, tls: tls)
    }

    /// A channel to several replicas of one service, called in turn (see the type's comment).
    public init(targets: [(host: String, port: Int)], group: (any EventLoopGroup)? = nil, tls: WireTLS.Client? = nil) {
        precondition(!targets.isEmpty, "a channel needs at least one target")
        self.targets = targets.map { Target(host: $0.host, port: $0.port) }
        self.host = targets[0].host
        self.port = targets[0].port
        self.tls = tls
        self.dialer = nil
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
    }

    /// A channel to "host:port" (as flags and environment variables give it; `[::1]:50051` for
    /// IPv6), or to several replicas: "host1:port1,host2:port2".
    ///
    /// - Throws: `RPCError` INVALID_ARGUMENT when an entry of `address` is not host:port.
    public convenience init(address: String, group: (any EventLoopGroup)? = nil, tls: WireTLS.Client? = nil) throws {
        var targets = [(host: String, port: Int)]()
        for part in address.split(separator: ",") {
            let entry = part.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()
            if entry.isEmpty { continue }
            let text = String(entry)
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), port > 0, port < 65536 else {
                throw RPCError(.invalidArgument, "\"\(text)\" is not host:port" + (address.contains(",") ? " (in \"\(address)\")" : ""))
            }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            targets.append((host.isEmpty ? "127.0.0.1" : host, port))
        }
        guard !targets.isEmpty else { throw RPCError(.invalidArgument, "\"\(address)\" is not host:port") }
        self.init(targets: targets, group: group, tls: tls)
    }

    /// Closes the connections (calls in flight end UNAVAILABLE). The channel is not usable afterwards.
    public func close() async {
        for t in targets {
            let s = t.state.withLockedValue { s in
                defer { s = .idle }
                return s
            }
            switch s {
            case .ready(let c): try? await c.channel?.close()
            case .connecting(let f): try? await f.get().channel?.close()
            case .idle: break
            }
        }
    }

    /// A connection for the next call: the next target in turn that is not backing off (all of them,
    /// in turn, when every one is), failing over to the following ones when a dial fails.
    private func connection() async throws -> ClientConnection {
        if targets.count == 1 { return try await connection(to: targets[0]) }
        let first = nextTarget.withLockedValue { n in
            defer { n = (n + 1) % targets.count }
            return n
        }
        let order = (0..<targets.count).map { targets[(first + $0) % targets.count] }
        var candidates = order.filter { !$0.isBackingOff }
        if candidates.isEmpty { candidates = order }
        var failures = [String]()
        for t in candidates {
            do {
                return try await connection(to: t)
            } catch let e as RPCError {
                failures.append(e.message)
            }
        }
        throw RPCError(.unavailable, "cannot connect to any of \(targets.count) addresses: " + failures.joined(separator: "; "))
    }

    private func connection(to target: Target) async throws -> ClientConnection {
        let future: EventLoopFuture<ClientConnection> = target.state.withLockedValue { s in
            switch s {
            case .ready(let c) where c.isUsable:
                return c.loop.makeSucceededFuture(c)
            case .connecting(let f):
                return f
            case .ready, .idle:
                let f = dial(target)
                s = .connecting(f)
                return f
            }
        }
        do {
            let c = try await future.get()
            target.state.withLockedValue { s in
                if case .connecting(let f) = s, f === future { s = .ready(c) }
            }
            target.dialSucceeded()
            return c
        } catch {
            target.state.withLockedValue { s in
                if case .connecting(let f) = s, f === future { s = .idle }
            }
            target.dialFailed()
            throw RPCError(.unavailable, "cannot connect to \(target.host):\(target.port): \(error)")
        }
    }

    private func sslContext() throws -> NIOSSLContext? {
        guard let tls else { return nil }
        return try tlsContext.withLockedValue { c in
            if let c { return c }
            let made = try tls.makeContext()
            c = made
            return made
        }
    }

    /// A channel whose one connection `dialer` makes (WireServer.connectedInMemory).
    init(
        host: String, port: Int, group: any EventLoopGroup,
        dialer: @escaping @Sendable (any EventLoopGroup) -> EventLoopFuture<ClientConnection>
    ) {
        self.host = host
        self.port = port
        self.targets = [Target(host: host, port: port)]
        self.tls = nil
        self.group = group
        self.dialer = dialer
    }

    private func dial(_ target: Target) -> EventLoopFuture<ClientConnection> {
        if let dialer { return dialer(group) }
        let (host, port) = (target.host, target.port)
        let authority = "\(host):\(port)"
        let ssl: NIOSSLContext?
        do {
            ssl = try sslContext()
        } catch {
            return group.next().makeFailedFuture(error)
        }
        // SNI and the certificate check use the name given, else the host dialled (an IP address is
        // checked against the certificate's IP entries and not sent as SNI).
        let serverName = tls?.serverName ?? host
        let scheme = tls == nil ? "http" : "https"
        return ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let ssl {
                        let sni = serverName.isIPAddressLiteral ? nil : serverName
                        let handler = try NIOSSLClientHandler(context: ssl, serverHostname: sni)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ClientConnection(loop: channel.eventLoop, authority: authority, scheme: scheme))
                }
            }
            .connect(host: host, port: port)
            .flatMap { channel in
                SelfConnection.refuse(channel).flatMapThrowing {
                    try channel.pipeline.syncOperations.handler(type: ClientConnection.self)
                }
            }
    }

    func open(_ path: String, options: CallOptions) async throws -> ClientStream {
        let conn = try await connection()
        let stream = ClientStream(loop: conn.loop, path: path, options: options)
        try await conn.start(stream)
        return stream
    }

    /// One request, one response.
    ///
    /// - Parameters:
    ///   - path: `/package.Service/Method`.
    ///   - options: Timeout (sent as `grpc-timeout` and enforced locally), metadata, compression,
    ///     the largest response accepted.
    /// - Throws: `RPCError` with the server's status and message (details in `details`), or
    ///   UNAVAILABLE when the server cannot be reached, DEADLINE_EXCEEDED when the timeout passes,
    ///   CANCELLED when the calling task is cancelled.
    public func unary<Req: WireMessage, Resp: WireMessage>(_ path: String, request: Req, options: CallOptions = CallOptions()) async throws
        -> Resp
    {
        try await unaryWithMetadata(path, request: request, options: options).message
    }

    /// `unary`, also returning the response's initial and trailing metadata.
    public func unaryWithMetadata<Req: WireMessage, Resp: WireMessage>(
        _ path: String, request: Req, options: CallOptions = CallOptions()
    ) async throws -> UnaryResponse<Resp> {
        try await streaming(path, options: options) { (call: StreamingCall<Req, Resp>) in
            try await call.send(request, end: true)
            let response = try await call.singleResponse()
            return UnaryResponse(
                message: response, initialMetadata: try await call.initialMetadata(), trailingMetadata: await call.trailingMetadata)
        }
    }

    /// One request, then `body` reads the responses from the call (`for try await` or `receive()`);
    /// the call is cancelled if `body` returns before it ends. Throws as `unary` does.
    public func serverStreaming<Req: WireMessage, Resp: WireMessage, R: Sendable>(
        _ path: String, request: Req, options: CallOptions = CallOptions(), _ body: (StreamingCall<Req, Resp>) async throws -> R
    ) async throws -> R {
        try await streaming(path, options: options) { (call: StreamingCall<Req, Resp>) in
            try await call.send(request, end: true)
            return try await body(call)
        }
    }

    /// Client-streaming and bidirectional calls. The call is cancelled if `body` returns before it ends.
    public func streaming<Req: WireMessage, Resp: WireMessage, R: Sendable>(
        _ path: String, options: CallOptions = CallOptions(), _ body: (StreamingCall<Req, Resp>) async throws -> R
    ) async throws -> R {
        let stream = try await open(path, options: options)
        let call = StreamingCall<Req, Resp>(stream: stream)
        return try await withTaskCancellationHandler {
            defer { stream.cancel() }
            return try await body(call)
        } onCancel: {
            stream.cancel()
        }
    }
}

/// A unary call's response with the metadata that came with it.
public struct UnaryResponse<Message: WireMessage>: Sendable {
    public var message: Message
    public var initialMetadata: Metadata
    public var trailingMetadata: Metadata
}

/// A call in progress, as the client sees it: send requests, read responses, see metadata.
public struct StreamingCall<Request: WireMessage, Response: WireMessage>: Sendable, AsyncSequence {
    let stream: ClientStream

    /// Sends one request; `end: true` also closes the request side.
    public func send(_ message: Request, end: Bool = false) async throws {
        var framed = ByteBuffer()
        if stream.options.compressRequests {
            var raw = ByteBuffer()
            ProtoCodec.encode(message, into: &raw)
            MessageFramer.frame(Gzip.compress(raw, allocator: ByteBufferAllocator()), compressed: true, into: &framed)
        } else {
            framed.writeRepeatingByte(0, count: 5)
            ProtoCodec.encode(message, into: &framed)
            framed.setInteger(UInt32(framed.readableBytes - 5), at: 1)
        }
        try await stream.send(framed, end: end)
    }

    /// Closes the request side (END_STREAM).
    public func finishSending() async throws {
        try await stream.closeSend()
    }

    /// The next response, nil when the call ended OK; throws `RPCError` when it ended otherwise.
    public func receive() async throws -> Response? {
        guard let m = try await stream.receiveRaw() else { return nil }
        let payload = try stream.decompress(m)
        do {
            return try ProtoCodec.decode(Response.self, from: payload)
        } catch {
            stream.cancel()
            throw RPCError(.internal, "could not parse the response as \(Response.wireDescriptor.fullName): \(error)")
        }
    }

    /// Exactly one response, then the end of the call (unary and client-streaming calls).
    public func singleResponse() async throws -> Response {
        guard let r = try await receive() else {
            throw RPCError(.internal, "the server ended the call OK without a response message")
        }
        if try await receive() != nil {
            throw RPCError(.internal, "the server sent more than one response message to a unary call")
        }
        return r
    }

    public func initialMetadata() async throws -> Metadata {
        try await stream.waitForInitialMetadata()
    }

    /// Valid once the call has ended.
    public var trailingMetadata: Metadata {
        get async {
            await withCheckedContinuation { (c: CheckedContinuation<Metadata, Never>) in
                stream.loop.execute { c.resume(returning: stream.trailingMetadata) }
            }
        }
    }

    public func cancel() {
        stream.cancel()
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let call: StreamingCall
        public mutating func next() async throws -> Response? { try await call.receive() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(call: self) }
}

/// The client end of one HTTP/2 connection.
final class ClientConnection: H2SessionDelegate, ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let loop: any EventLoop
    let authority: String
    let scheme: String
    private(set) var session: H2Session?
    private var context: ChannelHandlerContext?
    private(set) var channel: (any Channel)?
    private var streams: [Int32: ClientStream] = [:]
    private var flushScheduled = false
    private let usable = NIOLockedValueBox(true)

    init(loop: any EventLoop, authority: String, scheme: String) {
        self.loop = loop
        self.authority = authority
        self.scheme = scheme
    }

    var isUsable: Bool { usable.withLockedValue { $0 } }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
        session = H2Session(
            role: .client,
            settings: .init(
                maxConcurrentStreams: 100, initialWindowSize: 1 << 20, maxHeaderListSize: 16 * 1024, connectionWindowSize: 4 << 20),
            delegate: self)
        if context.channel.isActive { flushOutput() }
    }

    func channelActive(context: ChannelHandlerContext) {
        flushOutput()
        context.fireChannelActive()
    }

    func start(_ stream: ClientStream) async throws {
        try await withCallContinuation { (cont: CallContinuation<Void>) in
            loop.execute { [self] in
                guard isUsable, let session else {
                    return cont.resume(throwing: RPCError(.unavailable, "the connection to \(authority) is closed"))
                }
                stream.connection = self
                let id = session.submitRequest(headers: stream.requestHeaders(authority: authority, scheme: scheme))
                guard id > 0 else {
                    usable.withLockedValue { $0 = false }
                    return cont.resume(throwing: RPCError(.unavailable, "cannot start a stream: \(String(cString: nghttp2_strerror(id)))"))
                }
                streams[id] = stream
                stream.started(streamID: id)
                scheduleFlush()
                cont.resume()
            }
        }
    }

    func reset(_ stream: ClientStream, code: UInt32) {
        guard stream.streamID > 0, streams[stream.streamID] != nil else { return }
        session?.resetStream(stream.streamID, errorCode: code)
        scheduleFlush()
    }

    func resume(_ stream: ClientStream) {
        session?.resumeData(stream: stream.streamID)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        let buffer = unwrapInboundIn(data)
        let rc = buffer.withUnsafeReadableBytes { session.receive($0) }
        if rc < 0 {
            usable.withLockedValue { $0 = false }
            flushOutput()
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { flushOutput() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        usable.withLockedValue { $0 = false }
        let all = streams
        streams.removeAll()
        for (_, s) in all { s.end(RPCError(.unavailable, "the connection to \(authority) was lost")) }
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        usable.withLockedValue { $0 = false }
        context.close(promise: nil)
    }

    func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.execute { [self] in
            flushScheduled = false
            flushOutput()
        }
    }

    private func flushOutput() {
        guard let context, let session, context.channel.isActive else { return }
        if !session.writeOutput(to: context) { context.close(promise: nil) }
    }

    // MARK: nghttp2 events

    override func h2BeginHeaders(stream: Int32) {}

    override func h2Header(stream: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        streams[stream]?.header(name: name, value: value)
        return true
    }

    override func h2HeadersComplete(stream: Int32, endStream: Bool) {
        streams[stream]?.headersComplete(endStream: endStream)
    }

    override func h2Data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        if let s = streams[stream] { s.data(bytes) } else { session?.consumeConnection(bytes.count) }
    }

    override func h2EndStream(stream: Int32) {
        // A response without trailers is an error; `closed` reports it if no status came.
    }

    override func h2StreamClosed(stream: Int32, errorCode: UInt32) {
        streams.removeValue(forKey: stream)?.closed(errorCode: errorCode)
    }

    override func h2ReadBody(stream: Int32, into buffer: UnsafeMutableRawBufferPointer, eof: inout Bool, endStream: inout Bool) -> Int? {
        guard let s = streams[stream] else {
            eof = true
            return 0
        }
        return s.readBody(into: buffer, eof: &eof, endStream: &endStream)
    }

    override func h2FrameSent(type: UInt8, stream: Int32, flags: UInt8) {}

    override func h2PingReceived() {}

    override func h2SettingsReceived() {}

    /// A request header block nghttp2 refused to send (over its 64 KiB limit): the stream is reset,
    /// so the call ends instead of waiting for its deadline.
    override func h2FrameNotSent(type: UInt8, stream: Int32, error: Int32) {
        guard stream > 0 else { return }
        session?.resetStream(stream, errorCode: NGHTTP2_INTERNAL_ERROR.rawValue)
    }

    override func h2GoAwayReceived(lastStreamID: Int32, errorCode: UInt32) {
        // Streams above lastStreamID are closed by nghttp2 with REFUSED_STREAM; new calls go to a new
        // connection.
        usable.withLockedValue { $0 = false }
    }
}

extension String {
    /// An IPv4 or IPv6 literal (never sent as SNI).
    var isIPAddressLiteral: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, self, &v4) == 1 || inet_pton(AF_INET6, self, &v6) == 1
    }
}

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A gRPC server: standard gRPC over HTTP/2 (nghttp2) with protobuf-c messages. Every server also
/// serves `grpc.health.v1.Health` and server reflection (v1 and v1alpha).
public final class WireServer: Service, Sendable {
    public struct Configuration: Sendable {
        public var host: String
        /// 0 picks a free port; read it back from `localPort` after `start()`.
        public var port: Int
        /// Largest request message accepted (after decompression). gRPC's default is 4 MiB.
        public var maxReceiveMessageSize = 4 * 1024 * 1024
        /// Advertised in SETTINGS; nghttp2 refuses streams beyond it with REFUSED_STREAM.
        public var maxConcurrentStreams = 100
        /// Advertised in SETTINGS and counted on receive (name + value + 32 per header).
        public var maxHeaderListSize = 16 * 1024
        /// Per-stream receive window. Bytes are credited back as handlers take messages.
        public var initialStreamWindowSize = 1024 * 1024
        public var connectionWindowSize = 4 * 1024 * 1024
        /// PINGs closer than this with no data sent in between are strikes (grpc-go's default).
        public var minPingInterval: TimeAmount = .minutes(5)
        /// How long in-flight calls may run after a graceful shutdown starts.
        public var shutdownGracePeriod: TimeAmount = .seconds(10)
        /// Event-loop threads of a group of the server's own; nil (the default) runs on the process's
        /// shared group (`MultiThreadedEventLoopGroup.singleton`, one thread per core), which the
        /// service's clients and metrics endpoint share too: one set of loops per process.
        public var eventLoopThreads: Int? = nil
        /// A connection that has not sent the HTTP/2 preface and its SETTINGS by then is closed.
        public var handshakeTimeout: TimeAmount = .seconds(5)
        /// A connection with no call in progress for this long gets GOAWAY and is closed; nil = never.
        public var idleTimeout: TimeAmount? = .minutes(5)
        /// A connection with responses waiting whose peer has read none of them for this long is closed.
        public var stallTimeout: TimeAmount = .seconds(60)
        /// Open connections at most, and per peer address. At the cap, a silent or idle connection is
        /// closed to make room for the new one; when none is, the new one gets GOAWAY.
        public var maxConnections = 4096
        public var maxConnectionsPerPeer = 1024
        /// Responses encoded but not yet read by their clients: past either figure a new response
        /// fails with RESOURCE_EXHAUSTED instead of growing memory for clients that do not read.
        public var maxUnreadResponseBytes = 64 * 1024 * 1024
        public var maxUnreadResponseBytesPerConnection = 8 * 1024 * 1024
        /// Largest response message sent; clients' usual receive limit is 4 MiB.
        public var maxSendMessageSize = 4 * 1024 * 1024
        /// Serve gRPC over TLS (ALPN h2, TLS 1.2+) with these files; nil = plaintext.
        public var tls: WireTLS.Server?
        /// Wraps every handler (authentication, audit); nil = none.
        public var interceptor: (any ServerInterceptor)?
        /// Hears every call's outcome (logs, metrics); nil = none.
        public var observer: (any CallObserver)?

        public init(host: String = "127.0.0.1", port: Int) {
            self.host = host
            self.port = port
        }
    }

    let core: ServerCore
    public let health: HealthProvider
    private let group: MultiThreadedEventLoopGroup
    /// Whether `group` is the server's own (shut down with it) rather than the process's.
    private let ownsGroup: Bool
    private let state = NIOLockedValueBox<State>(.idle)
    private let tls = NIOLockedValueBox<TLSContextBox?>(nil)

    /// idle -> started (listening) -> stopping -> stopped. `start` only from idle; `shutdown` from any.
    private enum State {
        case idle
        case started(any Channel)
        case stopping
        case stopped
    }

    public init(configuration: Configuration, services: [any WireService], logger: Logger = Logger(label: "wire")) {
        let health = HealthProvider()
        var all: [any WireService] = services
        all.append(HealthService(provider: health))
        var names = services.map { type(of: $0).serviceName }
        names += ["grpc.health.v1.Health"]
        let reflection = ReflectionIndex(
            serviceNames: names + ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
        all.append(ReflectionV1Service(index: reflection))
        all.append(ReflectionV1AlphaService(index: reflection))
        var methods = [String: ServerMethod]()
        for s in all {
            for m in s.methods { methods[m.path] = m }
        }
        for s in services { health.setStatus(.serving, for: type(of: s).serviceName) }
        health.setStatus(.serving, for: "grpc.health.v1.Health")
        health.setStatus(.serving, for: "")
        self.health = health
        self.core = ServerCore(configuration: configuration, methods: methods, logger: logger)
        if let threads = configuration.eventLoopThreads {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
            self.ownsGroup = true
        } else {
            self.group = MultiThreadedEventLoopGroup.singleton
            self.ownsGroup = false
        }
    }

    /// Binds and starts accepting connections. Returns once the socket is listening.
    ///
    /// - Returns: The port bound (the free one chosen when the configuration says 0).
    /// - Throws: When the address cannot be bound, the TLS files cannot be used, or the server was
    ///   already started.
    @discardableResult
    public func start() async throws -> Int {
        let core = self.core
        if let files = core.configuration.tls {
            let box = try TLSContextBox(files)
            tls.withLockedValue { $0 = box }
        }
        let tls = self.tls
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try Self.serve(channel, core: core, tls: tls.withLockedValue { $0 }) }
            }
        let (host, port) = (core.configuration.host, core.configuration.port)
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw ListenError.describing(error, host: host, port: port, option: "--port")
        }
        try state.withLockedValue { s in
            guard case .idle = s else {
                channel.close(promise: nil)
                throw RPCError(.failedPrecondition, "server already started")
            }
            s = .started(channel)
        }
        core.startSweeping(on: group.next())
        core.logger.info("listening", metadata: ["address": "\(core.configuration.host):\(channel.localAddress?.port ?? 0)"])
        return channel.localAddress?.port ?? 0
    }

    /// Makes `channel` one of this server's connections (on the channel's event loop).
    private static func serve(_ channel: any Channel, core: ServerCore, tls: TLSContextBox?) throws {
        let connection = ServerConnection(core: core, loop: channel.eventLoop)
        connection.refusal = core.admit(connection, peer: channel.remoteAddress?.ipAddress ?? "unknown")
        if let tls {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
        }
        try channel.pipeline.syncOperations.addHandler(connection)
    }

    /// A client connected to this server through an in-process socket pair, for tests: the same
    /// handlers on both ends as over TCP, with the bytes going through two kernel buffers instead of
    /// a listening socket (no port, no accept; `start` need not have been called).
    func connectedInMemory() async throws -> WireChannel {
        var fds: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
            throw RPCError(.unavailable, "socketpair failed: errno \(errno)")
        }
        let core = self.core
        let tls = self.tls.withLockedValue { $0 }
        _ = try await ClientBootstrap(group: group)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try Self.serve(channel, core: core, tls: tls) } }
            .withConnectedSocket(fds[0]).get()
        let clientFD = fds[1]
        // The socket can make one connection: once it is gone the channel cannot dial again (the
        // descriptor may by then be another file's).
        let used = NIOLockedValueBox(false)
        return WireChannel(host: "in-memory", port: 1, group: group) { group in
            if used.withLockedValue({ u in
                defer { u = true }
                return u
            }) {
                return group.next().makeFailedFuture(RPCError(.unavailable, "the in-memory connection is closed"))
            }
            return ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ClientConnection(loop: channel.eventLoop, authority: "in-memory", scheme: "http"))
                    }
                }
                .withConnectedSocket(clientFD)
                .flatMapThrowing { channel in try channel.pipeline.syncOperations.handler(type: ClientConnection.self) }
        }
    }

    /// Reads the TLS certificate and key (and client CA) again: connections accepted from now on use
    /// them, open ones go on undisturbed. Throws, keeping the old ones, when the new files are unusable.
    public func reloadTLS() throws {
        guard let box = tls.withLockedValue({ $0 }) else { return }
        try box.reload()
    }

    public var isTLS: Bool { core.configuration.tls != nil }

    public var localPort: Int? {
        state.withLockedValue { s in
            if case .started(let c) = s { return c.localAddress?.port }
            return nil
        }
    }

    /// Graceful shutdown: health turns NOT_SERVING, the listener closes, each connection gets GOAWAY,
    /// calls in flight get the grace period, then everything closes.
    public func shutdown() async {
        let listener: (any Channel)? = state.withLockedValue { s in
            switch s {
            case .started(let c):
                s = .stopping
                return c
            case .idle:
                s = .stopped
                return nil
            case .stopping, .stopped:
                return nil
            }
        }
        health.enterShutdown()
        core.stopSweeping()
        if let listener {
            try? await listener.close()
        }
        let grace = core.configuration.shutdownGracePeriod
        let connections = core.trackedConnections()
        for c in connections {
            c.loop.execute { c.beginGracefulShutdown(grace: grace) }
        }
        await core.waitForConnectionsToClose(timeout: grace + .seconds(2))
        if ownsGroup {
            core.loopsClosing.store(true, ordering: .sequentiallyConsistent)
            try? await group.shutdownGracefully()
        }
        state.withLockedValue { $0 = .stopped }
    }

    /// Runs until the service group asks for a graceful shutdown (SIGTERM/SIGINT), then drains.
    public func run() async throws {
        if localPort == nil { try await start() }
        try? await gracefulShutdown()
        await shutdown()
    }
}

/// What every connection of one server shares: the configuration and method table (read-only), the
/// set of open connections (admission, eviction, the once-a-second sweep), and the bytes of responses
/// clients have not read yet.
final class ServerCore: Sendable {
    let configuration: WireServer.Configuration
    let methods: [String: ServerMethod]
    let logger: Logger
    /// The configuration's interceptor and observer, each held by a class: every call reads both, and
    /// an optional existential of a protocol that is not class-bound is copied and destroyed through
    /// the runtime's value witnesses (four copies a call, ~650 instructions), a class by a retain.
    let interceptor: Held<any ServerInterceptor>?
    let observer: Held<any CallObserver>?
    private let registry = NIOLockedValueBox(ConnectionRegistry())
    private let sweeper = NIOLockedValueBox<RepeatedTask?>(nil)
    /// Response bytes encoded and not yet taken by nghttp2, over all connections.
    let unreadResponseBytes = Atomic<Int>(0)
    /// Set just before the server shuts its event loops down: a handler resuming after that
    /// continues on the global executor (a closed loop would drop it).
    let loopsClosing = Atomic<Bool>(false)

    init(configuration: WireServer.Configuration, methods: [String: ServerMethod], logger: Logger) {
        self.configuration = configuration
        self.methods = methods
        self.logger = logger
        self.interceptor = configuration.interceptor.map(Held.init)
        self.observer = configuration.observer.map(Held.init)
    }

    /// Counts a new connection in, or says why it is refused (nil = admitted). At a cap, the oldest
    /// connection that is silent (no preface yet) or idle makes room: it is closed, the new one kept.
    func admit(_ c: ServerConnection, peer: String) -> String? {
        let (verdict, victim) = registry.withLockedValue { r in
            r.admit(
                ObjectIdentifier(c), connection: c, peer: peer, max: configuration.maxConnections,
                maxPerPeer: configuration.maxConnectionsPerPeer)
        }
        if let victim {
            logger.debug("connection limit: closing a silent or idle connection for a new one", metadata: ["peer": "\(peer)"])
            victim.loop.execute { victim.evict() }
        }
        if let verdict {
            logger.warning("connection refused: \(verdict)", metadata: ["peer": "\(peer)"])
        }
        return verdict
    }

    func untrack(_ c: ServerConnection) {
        registry.withLockedValue { $0.remove(ObjectIdentifier(c)) }
    }

    func trackedConnections() -> [ServerConnection] {
        registry.withLockedValue { $0.all }
    }

    var connectionCount: Int { registry.withLockedValue { $0.count } }

    func waitForConnectionsToClose(timeout: TimeAmount) async {
        let deadline = NIODeadline.now() + timeout
        while NIODeadline.now() < deadline {
            if connectionCount == 0 { return }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Once a second every connection checks its timers (handshake, idle, stalled output) on its own
    /// loop: one task for the server instead of timers re-armed per call.
    func startSweeping(on loop: any EventLoop) {
        let task = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
            let now = NIODeadline.now()
            for c in trackedConnections() {
                c.loop.execute { c.tick(now: now) }
            }
        }
        sweeper.withLockedValue { $0 = task }
    }

    func stopSweeping() {
        sweeper.withLockedValue { t in
            t?.cancel()
            t = nil
        }
    }

    // MARK: Outbound budget

    /// Throws RESOURCE_EXHAUSTED when a response of `size` bytes would leave too many bytes unread by
    /// clients: on this connection (`connectionUnread` already waiting), or over the server. A client
    /// that reads what it is sent (nothing waiting on its connection) always gets a small response
    /// (up to 64 KiB), so health checks and lookups are served while others hoard.
    func checkOutboundBudget(connectionUnread: Int, size: Int) throws {
        // Each limit is read on its own: `let c = configuration` copied the whole configuration
        // (its logger, interceptor and observer retained and released) on every response.
        if connectionUnread > 0 {
            let limit = configuration.maxUnreadResponseBytesPerConnection
            if connectionUnread + size > limit {
                throw RPCError(
                    .resourceExhausted,
                    "this connection has \(connectionUnread) bytes of responses its client has not read (limit \(limit)); read them or open another connection"
                )
            }
        }
        if connectionUnread == 0, size <= 64 * 1024 { return }
        let total = unreadResponseBytes.load(ordering: .relaxed)
        let limit = configuration.maxUnreadResponseBytes
        if total + size > limit {
            throw RPCError(
                .resourceExhausted,
                "the server holds \(total) bytes of responses clients have not read (limit \(limit)); retry later")
        }
    }
}

/// The open connections of one server, by peer address, with what admission needs to know of each.
struct ConnectionRegistry {
    struct Entry {
        let connection: ServerConnection
        let peer: String
        let order: Int
    }

    private var entries: [ObjectIdentifier: Entry] = [:]
    private var perPeer: [String: Int] = [:]
    private var nextOrder = 0

    var count: Int { entries.count }
    var all: [ServerConnection] { entries.values.map(\.connection) }

    /// Returns (refusal, victim): refusal nil means admitted; victim, when set, is to be closed.
    mutating func admit(_ id: ObjectIdentifier, connection: ServerConnection, peer: String, max: Int, maxPerPeer: Int) -> (
        String?, ServerConnection?
    ) {
        var victim: ServerConnection?
        let peerCount = perPeer[peer, default: 0]
        if entries.count >= max || peerCount >= maxPerPeer {
            let samePeerOnly = entries.count < max
            // The oldest silent connection first, then the oldest idle one.
            let candidates = entries.filter { !$0.value.connection.hasCalls && (!samePeerOnly || $0.value.peer == peer) }
            let pick = candidates.min { a, b in
                let aSilent = !a.value.connection.handshakeDone
                let bSilent = !b.value.connection.handshakeDone
                if aSilent != bSilent { return aSilent }
                return a.value.order < b.value.order
            }
            guard let pick else {
                return (
                    entries.count >= max
                        ? "the server has \(entries.count) connections, its limit, all with calls in progress"
                        : "\(peerCount) connections from \(peer), the per-address limit, all with calls in progress", nil
                )
            }
            victim = pick.value.connection
            remove(pick.key)
        }
        entries[id] = Entry(connection: connection, peer: peer, order: nextOrder)
        nextOrder += 1
        perPeer[peer, default: 0] += 1
        return (nil, victim)
    }

    mutating func remove(_ id: ObjectIdentifier) {
        guard let e = entries.removeValue(forKey: id) else { return }
        let n = perPeer[e.peer, default: 1] - 1
        if n <= 0 { perPeer.removeValue(forKey: e.peer) } else { perPeer[e.peer] = n }
    }
}

extension WireServer {
    /// Raises the soft limit on open descriptors to the hard limit (each connection is one) and
    /// returns (before, after).
    public static func raiseDescriptorLimit() -> (before: UInt64, after: UInt64) {
        var l = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &l) == 0 else { return (0, 0) }
        let before = UInt64(l.rlim_cur)
        if l.rlim_cur < l.rlim_max {
            var raised = l
            raised.rlim_cur = l.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return (before, UInt64(l.rlim_max)) }
        }
        return (before, before)
    }
}

/// A value held by a class, so that passing it around costs a retain.
final class Held<Value: Sendable>: Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

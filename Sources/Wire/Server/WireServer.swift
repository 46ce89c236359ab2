import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

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
        public var eventLoopThreads = System.coreCount
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
    private let state = NIOLockedValueBox<State>(.idle)

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
        let reflection = ReflectionIndex(serviceNames: names + ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
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
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoopThreads))
    }

    /// Binds and starts accepting connections. Returns once the socket is listening.
    @discardableResult
    public func start() async throws -> Int {
        let core = self.core
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ServerConnection(core: core, loop: channel.eventLoop))
                }
            }
            .bind(host: core.configuration.host, port: core.configuration.port)
            .get()
        try state.withLockedValue { s in
            guard case .idle = s else {
                channel.close(promise: nil)
                throw RPCError(.failedPrecondition, "server already started")
            }
            s = .started(channel)
        }
        core.logger.info("listening", metadata: ["address": "\(core.configuration.host):\(channel.localAddress?.port ?? 0)"])
        return channel.localAddress?.port ?? 0
    }

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
        if let listener {
            try? await listener.close()
        }
        let grace = core.configuration.shutdownGracePeriod
        let connections = core.trackedConnections()
        for c in connections {
            c.loop.execute { c.beginGracefulShutdown(grace: grace) }
        }
        await core.waitForConnectionsToClose(timeout: grace + .seconds(2))
        try? await group.shutdownGracefully()
        state.withLockedValue { $0 = .stopped }
    }

    /// Runs until the service group asks for a graceful shutdown (SIGTERM/SIGINT), then drains.
    public func run() async throws {
        if localPort == nil { try await start() }
        try? await gracefulShutdown()
        await shutdown()
    }
}

/// What every connection of one server shares: read-only after init except the connection set.
final class ServerCore: Sendable {
    let configuration: WireServer.Configuration
    let methods: [String: ServerMethod]
    let logger: Logger
    private let connections = NIOLockedValueBox<[ObjectIdentifier: ServerConnection]>([:])

    init(configuration: WireServer.Configuration, methods: [String: ServerMethod], logger: Logger) {
        self.configuration = configuration
        self.methods = methods
        self.logger = logger
    }

    func track(_ c: ServerConnection) {
        connections.withLockedValue { $0[ObjectIdentifier(c)] = c }
    }

    func untrack(_ c: ServerConnection) {
        connections.withLockedValue { _ = $0.removeValue(forKey: ObjectIdentifier(c)) }
    }

    func trackedConnections() -> [ServerConnection] {
        connections.withLockedValue { Array($0.values) }
    }

    func waitForConnectionsToClose(timeout: TimeAmount) async {
        let deadline = NIODeadline.now() + timeout
        while NIODeadline.now() < deadline {
            if connections.withLockedValue({ $0.isEmpty }) { return }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }
}

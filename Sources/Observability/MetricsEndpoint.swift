import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Wire

/// Serves the Prometheus text format at `GET /metrics` on its own port (plain HTTP/1.1, apart from
/// the gRPC port so scrapers need no gRPC), and `GET /health`: 200 while the service is SERVING,
/// 503 otherwise (shutting down, database damaged or unreachable) — what a load balancer's HTTP
/// check (haproxy's `option httpchk`) asks.
public final class MetricsEndpoint: Service, Sendable {
    public let registry: PrometheusCollectorRegistry
    private let host: String
    private let port: Int
    /// The process's shared event loops (the gRPC server's too): one set of threads per process.
    private let group = MultiThreadedEventLoopGroup.singleton

    /// Installs swift-metrics' backend; once per process, before any metric is made (a metric made
    /// earlier would stay a no-op).
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        MetricsSystem.bootstrap(factory)
        return registry
    }

    public init(registry: PrometheusCollectorRegistry, host: String, port: Int) {
        self.registry = registry
        self.host = host
        self.port = port
    }

    /// Binds; returns the port (0 = none configured, nothing bound).
    public func start() async throws -> Int {
        guard port >= 0 else { return 0 }
        let registry = self.registry
        let isServing = serving.withLockedValue { $0 }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsHandler(registry: registry, isServing: isServing))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw ListenError.describing(error, host: host, port: port, option: "--metrics-port")
        }
        self.channel.withLockedValue { $0 = channel }
        return channel.localAddress?.port ?? port
    }

    private let channel = NIOLockedValueBox<(any Channel)?>(nil)
    private let serving = NIOLockedValueBox<@Sendable () -> Bool>({ true })

    /// What `GET /health` reports; set before `start`.
    public func reportHealth(_ isServing: @escaping @Sendable () -> Bool) {
        serving.withLockedValue { $0 = isServing }
    }

    public func run() async throws {
        try? await gracefulShutdown()
        if let c = channel.withLockedValue({ $0 }) { try? await c.close() }
    }
}

private final class MetricsHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let isServing: @Sendable () -> Bool
    private var path = ""
    private var method = HTTPMethod.GET

    init(registry: PrometheusCollectorRegistry, isServing: @escaping @Sendable () -> Bool) {
        self.registry = registry
        self.isServing = isServing
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
            method = head.method
        case .body:
            break
        case .end:
            let status: HTTPResponseStatus
            let body: [UInt8]
            var headers = HTTPHeaders()
            if method == .GET && (path == "/metrics" || path.hasPrefix("/metrics?")) {
                (status, body) = (.ok, registry.emitToBuffer())
                headers.add(name: "content-type", value: "text/plain; version=0.0.4; charset=utf-8")
            } else if (method == .GET || method == .HEAD) && (path == "/health" || path.hasPrefix("/health?")) {
                let serving = isServing()
                (status, body) = serving ? (.ok, Array("SERVING\n".utf8)) : (.serviceUnavailable, Array("NOT_SERVING\n".utf8))
                headers.add(name: "content-type", value: "text/plain")
            } else {
                (status, body) = (.notFound, Array("not found: GET /metrics or GET /health\n".utf8))
                headers.add(name: "content-type", value: "text/plain")
            }
            headers.add(name: "content-length", value: String(body.count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            if method != .HEAD {
                var buf = context.channel.allocator.buffer(capacity: body.count)
                buf.writeBytes(body)
                context.write(wrapOutboundOut(.body(.byteBuffer(buf))), promise: nil)
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

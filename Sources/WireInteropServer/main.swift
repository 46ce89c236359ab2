import ArgumentParser
import Logging
import NIOCore
import Wire
import WireInterop

/// grpc.testing.TestService for the interop suite (Tests/interop) and for anyone checking Wire
/// against their own gRPC client.
@main
struct WireInteropServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wire-interop-server")

    @Option(help: "Port to listen on (0 picks a free one and prints it).")
    var port: Int = 50060

    @Option(help: "Address to bind.")
    var host: String = "127.0.0.1"

    @Option(help: "Event-loop threads (default: one per core).")
    var threads: Int = System.coreCount

    @Option(name: .customLong("max-connections"), help: "Open connections at most.")
    var maxConnections = 4096

    @Option(name: .customLong("max-connections-per-peer"), help: "Open connections at most from one address.")
    var maxConnectionsPerPeer = 1024

    @Option(name: .customLong("handshake-timeout-ms"), help: "Milliseconds a connection may take to send the HTTP/2 preface and SETTINGS.")
    var handshakeTimeoutMs = 5000

    @Option(name: .customLong("idle-timeout-ms"), help: "Milliseconds a connection without calls is kept; 0 = forever.")
    var idleTimeoutMs = 300_000

    @Option(
        name: .customLong("stall-timeout-ms"), help: "Milliseconds a client may leave responses unread before its connection is closed.")
    var stallTimeoutMs = 60_000

    @Option(name: .customLong("max-unread-response-bytes"), help: "Response bytes clients may leave unread, over the server.")
    var maxUnreadResponseBytes = 64 * 1024 * 1024

    @Option(name: .customLong("tls-cert"), help: "Serve over TLS with this certificate (PEM).")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The key of --tls-cert (PEM).")
    var tlsKey: String?

    @Option(name: .customLong("tls-client-ca"), help: "Require client certificates signed by this CA (PEM).")
    var tlsClientCA: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, ...")
    var logLevel = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        var configuration = WireServer.Configuration(host: host, port: port)
        configuration.eventLoopThreads = threads
        configuration.maxConnections = maxConnections
        configuration.maxConnectionsPerPeer = maxConnectionsPerPeer
        configuration.handshakeTimeout = .milliseconds(Int64(handshakeTimeoutMs))
        configuration.idleTimeout = idleTimeoutMs > 0 ? .milliseconds(Int64(idleTimeoutMs)) : nil
        configuration.stallTimeout = .milliseconds(Int64(stallTimeoutMs))
        configuration.maxUnreadResponseBytes = maxUnreadResponseBytes
        if let tlsCert, let tlsKey {
            configuration.tls = WireTLS.Server(certificatePath: tlsCert, keyPath: tlsKey, clientCAPath: tlsClientCA)
        }
        let descriptors = WireServer.raiseDescriptorLimit()
        Logger(label: "wire-interop-server").info(
            "open file limit", metadata: ["before": "\(descriptors.before)", "now": "\(descriptors.after)"])
        let server = WireServer(
            configuration: configuration, services: [InteropTestService()], logger: Logger(label: "wire-interop-server"))
        // SIGTERM or SIGINT, from the moment the port opens: health turns NOT_SERVING, GOAWAY, calls in
        // flight finish.
        let signals = await ShutdownSignals()
        let bound = try await server.start()
        // Tests read this line to learn the port.
        printLine("listening on \(host):\(bound)")
        try await signals.run([server], logger: Logger(label: "wire-interop-server"))
    }
}

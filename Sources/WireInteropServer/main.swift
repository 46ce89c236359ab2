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

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var configuration = WireServer.Configuration(host: host, port: port)
        configuration.eventLoopThreads = threads
        let server = WireServer(configuration: configuration, services: [InteropTestService()], logger: Logger(label: "wire-interop-server"))
        let bound = try await server.start()
        // Tests read this line to learn the port.
        printLine("listening on \(host):\(bound)")
        try await ServiceRunner.run(server)
    }
}

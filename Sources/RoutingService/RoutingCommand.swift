import ArgumentParser
import Logging
import Wire

/// The routing service. For now it serves gRPC health and reflection only; its RPCs arrive with
/// their issues (see docs/architecture.md).
@main
struct RoutingService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routing-service")

    @Option(help: "Port to listen on (0 picks a free one and prints it).")
    var port: Int = Int(ProcessInfoEnv.value("LEADWIRE_ROUTING_PORT") ?? "") ?? 50052

    @Option(help: "Address to bind.")
    var host: String = ProcessInfoEnv.value("LEADWIRE_HOST") ?? "127.0.0.1"

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "routing-service")
        let server = WireServer(configuration: .init(host: host, port: port), services: [], logger: logger)
        let bound = try await server.start()
        printLine("routing-service listening on \(host):\(bound)")
        try await ServiceRunner.run(server, logger: logger)
    }
}

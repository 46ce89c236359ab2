import ArgumentParser
import Logging
import Wire

/// The intake service: sources, leads, clients and their lifecycle, on its own SQLite database
/// (`<data-dir>/intake.sqlite`). Migrations run before the port opens.
@main
struct IntakeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "intake-service")

    @Option(help: "Port to listen on (0 picks a free one and prints it).")
    var port: Int = Int(ProcessInfoEnv.value("LEADWIRE_INTAKE_PORT") ?? "") ?? 50051

    @Option(help: "Address to bind.")
    var host: String = ProcessInfoEnv.value("LEADWIRE_HOST") ?? "127.0.0.1"

    @Option(name: .customLong("data-dir"), help: "Directory for the service's database.")
    var dataDir: String = ProcessInfoEnv.value("LEADWIRE_DATA_DIR") ?? "./var"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = ProcessInfoEnv.value("LEADWIRE_LOG_LEVEL") ?? "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "intake-service")
        try makeDirectory(dataDir)
        let store = try IntakeStore(path: dataDir + "/intake.sqlite")
        let api = IntakeAPI(store: store, hub: LeadChangeHub(), now: systemClock, logger: logger)
        let server = WireServer(configuration: .init(host: host, port: port), services: [api], logger: logger)
        let bound = try await server.start()
        printLine("intake-service listening on \(host):\(bound)")
        try await ServiceRunner.run(server, logger: logger)
        await store.db.flush()
    }
}

import ArgumentParser
import Logging
import Wire

/// The report service: plans for contractors and the figures dashboards read, on its own SQLite
/// database (`<data-dir>/report.sqlite`). Migrations run before the port opens.
@main
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report-service")

    @Option(help: "Port to listen on (0 picks a free one and prints it).")
    var port: Int = Int(ProcessInfoEnv.value("LEADWIRE_REPORT_PORT") ?? "") ?? 50053

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
        let logger = Logger(label: "report-service")
        try makeDirectory(dataDir)
        let store = try ReportStore(path: dataDir + "/report.sqlite")
        let api = ReportAPI(store: store, hub: PlanHub(), leads: EventLeadChecker(store: store), now: systemClock, logger: logger)
        let server = WireServer(configuration: .init(host: host, port: port), services: [api], logger: logger)
        let bound = try await server.start()
        printLine("report-service listening on \(host):\(bound)")
        try await ServiceRunner.run(server, logger: logger)
        await store.db.flush()
    }
}

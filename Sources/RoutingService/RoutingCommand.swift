import ArgumentParser
import Logging
import ServiceLifecycle
import Wire

/// The routing service: people, roles, rules and the decisions they make, on its own SQLite
/// database (`<data-dir>/routing.sqlite`). Migrations and the stock roles are in place before the
/// port opens.
@main
struct RoutingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routing-service")

    @Option(help: "Port to listen on (0 picks a free one and prints it).")
    var port: Int = Int(ProcessInfoEnv.value("LEADWIRE_ROUTING_PORT") ?? "") ?? 50052

    @Option(help: "Address to bind.")
    var host: String = ProcessInfoEnv.value("LEADWIRE_HOST") ?? "127.0.0.1"

    @Option(name: .customLong("data-dir"), help: "Directory for the service's database.")
    var dataDir: String = ProcessInfoEnv.value("LEADWIRE_DATA_DIR") ?? "./var"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = ProcessInfoEnv.value("LEADWIRE_LOG_LEVEL") ?? "info"

    @Option(name: .customLong("escalate-every"), help: "Seconds between escalation sweeps (0 = only when Escalate is called).")
    var escalateEvery: Int = Int(ProcessInfoEnv.value("LEADWIRE_ESCALATE_EVERY") ?? "") ?? 60

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "routing-service")
        try makeDirectory(dataDir)
        let store = try await RoutingStore(path: dataDir + "/routing.sqlite", now: systemClock())
        let api = RoutingAPI(store: store, now: systemClock, logger: logger)
        let server = WireServer(configuration: .init(host: host, port: port), services: [api], logger: logger)
        let bound = try await server.start()
        printLine("routing-service listening on \(host):\(bound)")
        try await ServiceRunner.run(server, EscalationSweep(api: api, every: escalateEvery), logger: logger)
        await store.db.flush()
    }
}

/// Escalates overdue leads periodically, as the Escalate RPC does when called.
struct EscalationSweep: Service {
    let api: RoutingAPI
    let every: Int

    func run() async throws {
        guard every > 0 else { return }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(every))
                if Task.isCancelled { break }
                do {
                    _ = try await api.store.escalate(now: api.now(), record: true)
                } catch {
                    api.logger.warning("escalation sweep failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

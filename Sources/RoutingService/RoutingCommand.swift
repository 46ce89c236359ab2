import ArgumentParser
import Auth
import CoreMetrics
import LeadwireAPI
import Logging
import Observability
import ServiceLifecycle
import Wire

/// The routing service: people, roles, rules and the decisions they make, in its own database
/// (`<data-dir>/routing.sqlite`, or schema `routing` of `--database`'s PostgreSQL). Migrations and the stock roles are in place before the
/// port opens.
@main
struct RoutingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routing-service")

    @Option(help: "Port to listen on (0 picks a free one and prints it) (env LEADWIRE_ROUTING_PORT).")
    var port: Int = ProcessInfoEnv.int("LEADWIRE_ROUTING_PORT", default: 50052)

    @OptionGroup var common: ServiceOptions

    @Option(name: .customLong("escalate-every"), help: "Seconds between escalation sweeps (0 = only when Escalate is called).")
    var escalateEvery: Int = ProcessInfoEnv.int("LEADWIRE_ESCALATE_EVERY", default: 60)

    func run() async throws {
        let host = try ServiceHost.prepare(
            name: "routing-service", logLevel: common.logLevel, dataDir: common.dataDir, allowSharedKey: common.allowSharedKey)
        let batches = Recorder(label: "leadwire_store_commit_batch_size", dimensions: [("db", "routing")], aggregate: true)
        let store = try await RoutingStore(
            path: common.databaseLocation(file: "routing.sqlite"), now: systemClock(), onCommit: { batches.record($0) },
            integrityCheckSeconds: common.integrityCheckSeconds)
        let api = RoutingAPI(store: store, now: systemClock, logger: host.logger)
        try await host.serve(
            [api], policies: [AccessPolicy.routing], port: port, defaultMetricsPort: 9452, options: common, databases: [store.db],
            background: [EscalationSweep(api: api, every: escalateEvery)])
        await store.db.close()
    }
}

/// Escalates overdue leads periodically, as the Escalate RPC does when called.
struct EscalationSweep: Service {
    let api: RoutingAPI
    let every: Int

    func run() async throws {
        // A service that returns early would stop the whole group: without sweeps, just wait.
        guard every > 0 else { return try await gracefulShutdown() }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(every))
                if Task.isCancelled { break }
                do {
                    // Someone back from an absence can take what waited meanwhile.
                    let handed = try await api.store.drainAllQueues(now: api.now())
                    if handed > 0 { api.logger.notice("queued leads handed on", metadata: ["count": "\(handed)"]) }
                    for e in try await api.store.escalate(now: api.now(), record: true) {
                        api.logger.notice(
                            "lead escalated",
                            metadata: ["lead": "\(e.assignment?.leadId ?? "")", "head": "\(e.headId)", "overdue_ms": "\(e.overdueMs)"])
                    }
                } catch {
                    api.logger.warning("escalation sweep failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

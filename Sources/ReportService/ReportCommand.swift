import ArgumentParser
import Auth
import CoreMetrics
import LeadwireAPI
import Logging
import Messaging
import Observability
import Wire

/// The report service: plans for contractors and the figures dashboards read, on its own SQLite
/// database (`<data-dir>/report.sqlite`). Migrations run before the port opens.
@main
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report-service")

    @Option(help: "Port to listen on (0 picks a free one and prints it) (env LEADWIRE_REPORT_PORT).")
    var port: Int = ProcessInfoEnv.int("LEADWIRE_REPORT_PORT", default: 50053)

    @OptionGroup var common: ServiceOptions

    @OptionGroup var messaging: MessagingOptions

    @Option(
        help:
            "The intake service, host:port, asked whether a plan line's lead is accepted; empty = judge by the lead events received (env LEADWIRE_INTAKE_ADDR)."
    )
    var intake: String = ProcessInfoEnv.value("LEADWIRE_INTAKE_ADDR") ?? ""

    func run() async throws {
        let host = try ServiceHost.prepare(
            name: "report-service", logLevel: common.logLevel, dataDir: common.dataDir, allowSharedKey: common.allowSharedKey)
        let batches = Recorder(label: "leadwire_store_commit_batch_size", dimensions: [("db", "report")], aggregate: true)
        let store = try ReportStore(
            path: common.databaseLocation(file: "report.sqlite"), onCommit: { batches.record($0) },
            integrityCheckSeconds: common.integrityCheckSeconds,
            locale: messaging.defaultLocale, messageDomain: messaging.messageDomain)
        let checker: any LeadChecker
        if intake.isEmpty {
            checker = EventLeadChecker(store: store)
        } else {
            let token = host.serviceToken()
            checker = IntakeLeadChecker(
                intake: Intake_ServiceClient(channel: try WireChannel(address: intake, tls: common.peerTLS)),
                options: {
                    var o = token.options
                    o.timeout = .seconds(5)
                    return o
                })
        }
        let mailer = Mailer(
            queue: store.messages, smtp: try messaging.smtp(), retry: messaging.retry, lookUp: nil, now: systemClock, logger: host.logger)
        let hub = PlanHub()
        store.otherReplicasChanged.withLockedValue { tell in
            tell = { plans in
                for p in plans { hub.publish("changed", p) }
            }
        }
        var api = ReportAPI(store: store, hub: hub, leads: checker, now: systemClock, logger: host.logger)
        api.onMessage = { mailer.wake() }
        let messagesAPI = MessagesAPI(queue: store.messages, audiences: [.contractor], now: systemClock, onQueued: { mailer.wake() })
        try await host.serve(
            [api, messagesAPI], policies: [AccessPolicy.report, AccessPolicy.messages], port: port, defaultMetricsPort: 9453,
            options: common, databases: [store.db], background: [mailer])
        await store.db.close()
    }
}

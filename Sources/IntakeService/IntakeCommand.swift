import ArgumentParser
import Auth
import Catalog
import CoreMetrics
import LeadwireAPI
import Logging
import Messaging
import Observability
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The intake service: sources, leads, clients and their lifecycle, on its own SQLite database
/// (`<data-dir>/intake.sqlite`). Migrations run before the port opens. With --routing and --report
/// it routes every new lead and delivers lead events, through its transactional outbox.
@main
struct IntakeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "intake-service")

    @Option(help: "Port to listen on (0 picks a free one and prints it) (env LEADWIRE_INTAKE_PORT).")
    var port: Int = ProcessInfoEnv.int("LEADWIRE_INTAKE_PORT", default: 50051)

    @OptionGroup var common: ServiceOptions

    @OptionGroup var messaging: MessagingOptions

    @Option(help: "The routing service, host:port; empty = leads are not routed (env LEADWIRE_ROUTING_ADDR).")
    var routing: String = ProcessInfoEnv.value("LEADWIRE_ROUTING_ADDR") ?? ""

    @Option(help: "The report service, host:port; empty = no lead events are delivered (env LEADWIRE_REPORT_ADDR).")
    var report: String = ProcessInfoEnv.value("LEADWIRE_REPORT_ADDR") ?? ""

    @Option(
        name: .customLong("routing-budget-ms"), help: "How long SubmitLead waits for routing before answering with the lead still pending.")
    var routingBudgetMs: Int = 300

    @Option(
        name: .customLong("phone-country"),
        help:
            "How phone numbers written without + are read: RU, KZ, BY, UZ, AM or KG; a source may say otherwise (env LEADWIRE_PHONE_COUNTRY)."
    )
    var phoneCountry: String = ProcessInfoEnv.value("LEADWIRE_PHONE_COUNTRY") ?? "RU"

    @Option(name: .customLong("vat-rate"), help: "VAT in percent for commercial proposals that do not say (env LEADWIRE_VAT_RATE).")
    var vatRate: String = ProcessInfoEnv.value("LEADWIRE_VAT_RATE") ?? "20"

    @Option(
        name: .customLong("seller-name"),
        help: "The company commercial proposals come from, as their header shows it (env LEADWIRE_SELLER_NAME).")
    var sellerName: String = ProcessInfoEnv.value("LEADWIRE_SELLER_NAME") ?? ""

    @Option(
        name: .customLong("seller-details"),
        help: "The company's details under its name on proposals: INN, address, phone (env LEADWIRE_SELLER_DETAILS).")
    var sellerDetails: String = ProcessInfoEnv.value("LEADWIRE_SELLER_DETAILS") ?? ""

    @Option(
        name: .customLong("signature-image"), help: "A PNG of the signature for proposals' signature slot (env LEADWIRE_SIGNATURE_IMAGE).")
    var signatureImage: String = ProcessInfoEnv.value("LEADWIRE_SIGNATURE_IMAGE") ?? ""

    @Option(name: .customLong("stamp-image"), help: "A PNG of the company's stamp for proposals' stamp slot (env LEADWIRE_STAMP_IMAGE).")
    var stampImage: String = ProcessInfoEnv.value("LEADWIRE_STAMP_IMAGE") ?? ""

    func validate() throws {
        guard let vat = FixedPoint.parse(vatRate, places: 2), vat >= 0, vat <= 10_000 else {
            throw ValidationError("--vat-rate is a percentage 0..100 (\"20\", \"10\", \"0\"), not \(vatRate)")
        }
        for (flag, path) in [("--signature-image", signatureImage), ("--stamp-image", stampImage)] where !path.isEmpty {
            guard access(path, R_OK) == 0 else { throw ValidationError("\(flag): cannot read \(path)") }
        }
        guard PhoneCountry.named(phoneCountry) != nil else {
            throw ValidationError(
                "--phone-country takes one of \(PhoneCountry.known.keys.sorted().joined(separator: ", ")), not \(phoneCountry)")
        }
    }

    func run() async throws {
        let host = try ServiceHost.prepare(
            name: "intake-service", logLevel: common.logLevel, dataDir: common.dataDir, allowSharedKey: common.allowSharedKey)
        let batches = Recorder(label: "leadwire_store_commit_batch_size", dimensions: [("db", "intake")], aggregate: true)
        let store = try IntakeStore(
            path: common.databaseLocation(file: "intake.sqlite"), routing: !routing.isEmpty, onCommit: { batches.record($0) },
            integrityCheckSeconds: common.integrityCheckSeconds, locale: messaging.defaultLocale, messageDomain: messaging.messageDomain)
        let adopted = try await store.adoptQueuedReplies(now: systemClock())
        if adopted > 0 { host.logger.notice("registration replies moved to the message queue", metadata: ["count": "\(adopted)"]) }
        for d in try await store.normalisePhones(country: PhoneCountry.named(phoneCountry)!, now: systemClock()) {
            host.logger.warning(
                "two clients have the same phone number; not merged (see client_duplicates)",
                metadata: [
                    "client": "\(d.client)", "same_as": "\(d.sameAs)", "phone": "\(d.phone)",
                ])
        }
        let token = host.serviceToken()
        let routingClient = routing.isEmpty ? nil : Routing_ServiceClient(channel: try WireChannel(address: routing, tls: common.peerTLS))
        let reportClient = report.isEmpty ? nil : Report_ServiceClient(channel: try WireChannel(address: report, tls: common.peerTLS))
        let hub = LeadChangeHub()
        var api = IntakeAPI(store: store, hub: hub, now: systemClock, logger: host.logger)
        api.routing = routingClient
        let relay = OutboxRelay(
            store: store, routing: routingClient, report: reportClient, token: token, now: systemClock, logger: host.logger,
            onAssigned: { hub.publish(.assigned, $0, at: $0.updatedAtMs) })
        api.relay = relay
        api.phoneCountry = PhoneCountry.named(phoneCountry)!
        store.intakeSwitch.set(try await store.intakeSettings())
        api.intakeSwitch = store.intakeSwitch
        store.otherReplicasChanged.withLockedValue { tell in
            tell = { changes in
                for c in changes { hub.publish(c) }
            }
        }
        if !api.intakeSwitch.current.open {
            host.logger.warning(
                "intake is closed: new leads are refused until SetIntakeOpen (leadctl intake open)",
                metadata: ["reason": "\(api.intakeSwitch.current.reason)"])
        }
        let budget = routingBudgetMs
        api.routingOptions = {
            var o = token.options
            o.timeout = .milliseconds(Int64(budget))
            return o
        }
        let smtp = try messaging.smtp()
        api.smtpDelivery = smtp != nil
        var lookUp: (@Sendable (String) async throws -> PersonAddress?)? = nil
        if let routingClient { lookUp = Self.directoryLookUp(routingClient, token: token) }
        var catalogAPI = CatalogAPI(store: store, now: systemClock)
        catalogAPI.vatBasisPoints = FixedPoint.parse(vatRate, places: 2)!
        catalogAPI.defaultLocale = messaging.defaultLocale
        catalogAPI.seller = ProposalSeller(
            name: sellerName.isEmpty ? (messaging.defaultLocale == .en ? "Our company" : "Наша компания") : sellerName,
            details: sellerDetails,
            signaturePNG: signatureImage, stampPNG: stampImage)
        catalogAPI.lookUpPerson = lookUp
        let mailer = Mailer(
            queue: store.messages, smtp: smtp, retry: messaging.retry, lookUp: lookUp,
            attach: CatalogAPI.attachment(store, seller: catalogAPI.seller), now: systemClock, logger: host.logger)
        let messagesAPI = MessagesAPI(
            queue: store.messages, audiences: [.applicant, .staff], now: systemClock, onQueued: { mailer.wake() })
        try await host.serve(
            [api, messagesAPI, catalogAPI], policies: [AccessPolicy.intake, AccessPolicy.messages, AccessPolicy.catalog], port: port,
            defaultMetricsPort: 9451,
            options: common, databases: [store.db],
            background: (routingClient == nil && reportClient == nil ? [] : [relay]) + [mailer])
        await store.db.close()
    }

    /// Staff addresses for the mailer: routing's GetPerson (nil for a person not in the directory).
    static func directoryLookUp(_ routing: Routing_ServiceClient, token: ServiceToken) -> @Sendable (String) async throws -> PersonAddress?
    {
        { id in
            var req = Routing_GetPersonRequest()
            req.id = id
            var o = token.options
            o.timeout = .seconds(5)
            do {
                let p = try await routing.getPerson(req, options: o)
                return PersonAddress(name: p.name, email: p.email, phone: p.phone)
            } catch let e as RPCError where e.code == .notFound {
                return nil
            }
        }
    }
}

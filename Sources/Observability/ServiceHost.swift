import Auth
import Logging
import Prometheus
import ServiceLifecycle
import Store
import Wire

/// How each of the three services is run: logging, the shared signing key, authentication, one log
/// line and metrics per RPC, the Prometheus endpoint, graceful shutdown.
public struct ServiceHost: Sendable {
    public let name: String
    public let logger: Logger
    public let key: SigningKey
    public let dataDir: String
    let registry: PrometheusCollectorRegistry

    /// Sets up logging and metrics (once per process), the data directory and the signing key.
    public static func prepare(name: String, logLevel: String, dataDir: String, allowSharedKey: Bool = false) throws -> ServiceHost {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in LogfmtHandler(label: label, level: level) }
        try makeDirectory(dataDir)
        let key = try SigningKey.loadOrCreate(path: SigningKey.path(dataDir: dataDir), allowReadableByOthers: allowSharedKey)
        return ServiceHost(name: name, logger: Logger(label: name), key: key, dataDir: dataDir, registry: MetricsEndpoint.bootstrap())
    }

    /// A token for calls to the other services.
    public func serviceToken() -> ServiceToken { ServiceToken(key: key, name: name) }

    /// Serves until SIGTERM/SIGINT; `background` services (outbox delivery, sweeps) run alongside
    /// and stop first.
    ///
    /// - Parameters:
    ///   - services: What the gRPC port serves (health and reflection are added).
    ///   - policy: Who may call what (checked unless `--auth off`).
    ///   - port: The gRPC port (0 picks a free one and prints it).
    ///   - defaultMetricsPort: The metrics endpoint's port unless `--metrics-port` or
    ///     `LEADWIRE_<SERVICE>_METRICS_PORT` says otherwise (a free one when `port` is 0).
    ///   - options: The flags every service takes (host, auth, limits, TLS).
    ///   - databases: Watched while serving: damage turns health NOT_SERVING.
    public func serve(
        _ services: [any WireService], policies: [AccessPolicy.Service], port: Int, defaultMetricsPort: Int, options: ServiceOptions,
        databases: [Database] = [], background: [any Service] = []
    ) async throws {
        let host = options.host
        let serviceName = name.hasSuffix("-service") ? String(name.dropLast(8)) : name
        let metricsPort = try options.metricsPort(
            servicePort: port, defaultPort: defaultMetricsPort, env: "LEADWIRE_\(serviceName.uppercased())_METRICS_PORT")
        let metrics = MetricsEndpoint(registry: registry, host: host, port: metricsPort)
        var config = WireServer.Configuration(host: host, port: port)
        options.applyLimits(to: &config)
        // Each connection is a descriptor: take all the system allows, and keep some for the
        // database, the metrics endpoint and logs.
        let descriptors = WireServer.raiseDescriptorLimit()
        logger.info("open file limit", metadata: ["before": "\(descriptors.before)", "now": "\(descriptors.after)"])
        if descriptors.after > 0, UInt64(config.maxConnections) + 64 > descriptors.after {
            config.maxConnections = max(1, Int(descriptors.after) - 64)
            logger.warning(
                "--max-connections lowered to fit the open file limit", metadata: ["max_connections": "\(config.maxConnections)"])
        }
        config.observer = RPCObserver(logger: logger, methods: Set(services.flatMap { $0.methods.map(\.path) }))
        if options.authOn {
            config.interceptor = AuthInterceptor(key: key, policy: policies.reduce(into: [:]) { $0.merge($1.byPath) { a, _ in a } })
        } else {
            logger.warning("authentication is OFF: every caller may call every method (--auth off)")
        }
        let server = WireServer(configuration: config, services: services, logger: logger)
        // From here on SIGTERM/SIGINT drain the service and SIGHUP reloads its certificate: trapped
        // before the port opens (see ShutdownSignals).
        let signals = await ShutdownSignals()
        let reloader = await TLSReloader(server: server, logger: logger)
        let bound = try await server.start()
        metrics.reportHealth { server.health.status(for: "") == .serving }
        if metricsPort >= 0 {
            let m = try await metrics.start()
            printLine("\(name) metrics on http://\(host):\(m)/metrics")
        }
        printLine("\(name) listening on \(host):\(bound)" + (server.isTLS ? " (TLS)" : ""))
        for db in databases where !db.integrityChecked && options.integrityCheckSeconds > 0 {
            logger.warning(
                "the database was not fully checked at start (PRAGMA quick_check ran out of time)", metadata: ["file": "\(db.path)"])
        }
        let watch = DatabaseWatch(databases: databases, health: server.health, logger: logger)
        // Replicas on one PostgreSQL database take turns at the background work (see LeaderOnly).
        let leading: [any Service] = background.map { service in
            guard let db = databases.first, db.isPostgres else { return service }
            return LeaderOnly(inner: service, name: String(describing: type(of: service)), database: db, logger: logger)
        }
        try await signals.run(
            [server, metrics] + leading + [MemoryTrimmer(), watch, reloader], logger: logger)
    }
}

import Logging
import ServiceLifecycle

/// Runs services in a ServiceGroup: SIGTERM or SIGINT starts a graceful shutdown (health turns
/// NOT_SERVING, GOAWAY, in-flight calls finish), services stop in reverse order.
public enum ServiceRunner {
    public static func run(_ services: any Service..., logger: Logger = Logger(label: "leadwire")) async throws {
        try await run(services, logger: logger)
    }

    public static func run(_ services: [any Service], logger: Logger = Logger(label: "leadwire")) async throws {
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

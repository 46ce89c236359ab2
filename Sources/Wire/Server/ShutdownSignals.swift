import Logging
import ServiceLifecycle
import UnixSignals

/// SIGTERM and SIGINT, trapped from the moment this value is made until the services it runs have
/// stopped.
///
/// A server makes it before its port opens. A `ServiceGroup` given signals to trap starts trapping
/// them only once it runs, after the server is already listening and announced: a SIGTERM in that
/// gap, with callers connected, ended the process the default way (killed, exit status -15, calls in
/// flight cut) instead of draining it.
public struct ShutdownSignals: Sendable {
    private let trapped: UnixSignalsSequence

    public init() async {
        trapped = await UnixSignalsSequence(trapping: .sigterm, .sigint)
    }

    /// Runs `services` in a `ServiceGroup` until they finish. A trapped signal, also one that came
    /// before this was called, starts the group's graceful shutdown: services stop in reverse order
    /// (a server's health turns NOT_SERVING, it sends GOAWAY and lets calls in flight finish).
    public func run(_ services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(services: services, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await signal in trapped {
                    logger.info("shutting down gracefully", metadata: ["signal": "\(signal)"])
                    await group.triggerGracefulShutdown()
                }
            }
            try await group.run()
            tasks.cancelAll()
        }
    }
}

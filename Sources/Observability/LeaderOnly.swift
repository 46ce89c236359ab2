import Logging
import ServiceLifecycle
import Store

/// A background service (the outbox relay, the mailer, the escalation sweep) that must run in one
/// replica at a time: it runs while this process holds the database's lease on it, and another
/// replica takes over when this one dies. With SQLite there is one process and it simply runs.
struct LeaderOnly: Service {
    let inner: any Service
    let name: String
    let database: Database
    let logger: Logger

    func run() async throws {
        // A replica waiting for the lease must stop waiting at shutdown, not only the one running
        // the work (whose own service stops on the same signal). The cancellation that ends the wait
        // may reach the work first, as a CancellationError: at shutdown that is a normal end.
        do {
            try await cancelWhenGracefulShutdown {
                try await database.whileLeading(
                    name,
                    onChange: { leading in
                        logger.notice(leading ? "this replica now runs \(name)" : "this replica no longer runs \(name)")
                    },
                    { try await inner.run() })
            }
        } catch is CancellationError {
            return
        }
    }
}

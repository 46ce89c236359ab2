import Logging
import ServiceLifecycle
import Store
import Wire

/// Turns health NOT_SERVING when a read or write met a damaged database file, and says so in the
/// log once a minute (not once per call) until the service is restarted on a restored file: load
/// balancers and orchestrators then stop sending calls that could only fail. The same while a
/// PostgreSQL server cannot be reached (restarting, failing over), and SERVING again once it can.
struct DatabaseWatch: Service {
    let databases: [Database]
    let health: HealthProvider
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var lastLogged: ContinuousClock.Instant?
            var away = false
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if lastLogged == nil {
                    let unreachable = databases.lazy.compactMap(\.unreachableBecause).first
                    if let unreachable, !away {
                        away = true
                        health.setAll(.notServing)
                        logger.error(
                            "the database server cannot be reached: health is NOT_SERVING and writes are refused with UNAVAILABLE until it is back",
                            metadata: ["error": "\(unreachable.message)"])
                    } else if unreachable == nil, away {
                        away = false
                        health.setAll(.serving)
                        logger.notice("the database server is reachable again: serving")
                    }
                }
                guard let (db, error) = databases.lazy.compactMap({ db in db.corruptionSeen.map { (db, $0) } }).first else { continue }
                if lastLogged == nil { health.setAll(.notServing) }
                let now = ContinuousClock.now
                if lastLogged.map({ now - $0 >= .seconds(60) }) ?? true {
                    lastLogged = now
                    logger.error(
                        "the database is damaged: health is NOT_SERVING until it is restored from a backup (docs/operations.md, \"Restoring from a backup\")",
                        metadata: [
                            "file": "\(db.path)", "error": "\(error.message)",
                        ])
                }
            }
        }
    }
}

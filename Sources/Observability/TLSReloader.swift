import Logging
import ServiceLifecycle
import UnixSignals
import Wire

/// SIGHUP reads the TLS certificate and key again (after a renewal), without dropping a connection:
/// new connections get the new certificate. Unusable new files are logged and the old ones kept.
/// Without TLS, SIGHUP is logged and ignored rather than ending the process.
///
/// SIGHUP is trapped when this is made, before the port opens, for the reason SIGTERM is (see
/// `ShutdownSignals`): trapped only once the service group ran this, a SIGHUP right after start (a
/// renewal hook's, as a service restarts) ended the process, SIGHUP's default action.
struct TLSReloader: Service {
    let server: WireServer
    let logger: Logger
    private let hangUps: UnixSignalsSequence

    init(server: WireServer, logger: Logger) async {
        self.server = server
        self.logger = logger
        hangUps = await UnixSignalsSequence(trapping: .sighup)
    }

    func run() async throws {
        for await _ in hangUps.cancelOnGracefulShutdown() {
            guard server.isTLS else {
                logger.notice("SIGHUP ignored: the service serves no TLS certificate to reload")
                continue
            }
            do {
                try server.reloadTLS()
                logger.notice("TLS certificate reloaded (SIGHUP): new connections use it")
            } catch {
                logger.error("TLS reload failed; the previous certificate stays in use", metadata: ["error": "\(error)"])
            }
        }
    }
}

import Dispatch
import Logging
import ServiceLifecycle
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// SIGHUP reads the TLS certificate and key again (after a renewal), without dropping a connection:
/// new connections get the new certificate. Unusable new files are logged and the old ones kept.
/// Without TLS, SIGHUP is ignored rather than ending the process.
struct TLSReloader: Service {
    let server: WireServer
    let logger: Logger

    func run() async throws {
        signal(SIGHUP, SIG_IGN)
        guard server.isTLS else { return try await gracefulShutdown() }
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [server, logger] in
            do {
                try server.reloadTLS()
                logger.notice("TLS certificate reloaded (SIGHUP): new connections use it")
            } catch {
                logger.error("TLS reload failed; the previous certificate stays in use", metadata: ["error": "\(error)"])
            }
        }
        source.resume()
        try? await gracefulShutdown()
        source.cancel()
    }
}

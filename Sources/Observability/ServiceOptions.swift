import ArgumentParser
import Wire

/// The flags every service takes (each with an environment variable), besides its own port.
public struct ServiceOptions: ParsableArguments {
    @Option(help: "Address to bind (env LEADWIRE_HOST).")
    public var host: String = ProcessInfoEnv.value("LEADWIRE_HOST") ?? "127.0.0.1"

    @Option(name: .customLong("data-dir"), help: "Directory for the service's database and the shared signing key (env LEADWIRE_DATA_DIR).")
    public var dataDir: String = ProcessInfoEnv.value("LEADWIRE_DATA_DIR") ?? "./var"

    @Option(
        name: .customLong("database"),
        help:
            "Where the service keeps its data: a PostgreSQL URL (postgres://user@host:port/db; several hosts with target_session_attrs=read-write find the primary; the service's tables live in a schema named after it), or a SQLite file. Default: a SQLite file in --data-dir (env LEADWIRE_DATABASE_URL)."
    )
    var databaseFlag: String?

    /// --database, else LEADWIRE_DATABASE_URL.
    public var database: String? { databaseFlag ?? Self.environment("LEADWIRE_DATABASE_URL") }

    /// The service's database: --database, else `file` in the data directory.
    public func databaseLocation(file: String) -> String { database ?? dataDir + "/" + file }

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical (env LEADWIRE_LOG_LEVEL).")
    public var logLevel: String = ProcessInfoEnv.value("LEADWIRE_LOG_LEVEL") ?? "info"

    @Option(
        help:
            "on: every call needs a signed bearer token (health and reflection stay open); off: for local experiments only (env LEADWIRE_AUTH)."
    )
    public var auth: String = ProcessInfoEnv.value("LEADWIRE_AUTH") ?? "on"

    @Option(
        name: .customLong("metrics-port"),
        help: "Port of the Prometheus endpoint (GET /metrics); -1 turns it off. Default: the service's own, or a free one when --port is 0."
    )
    public var metricsPort: Int?

    @Flag(
        name: .customLong("allow-shared-key"),
        help: "Start even if the signing key file is readable by other users (env LEADWIRE_ALLOW_SHARED_KEY=1).")
    public var allowSharedKeyFlag = false

    @Option(
        name: .customLong("max-connections"),
        help:
            "Open connections at most; at the limit a silent or idle one makes room, else the newest is refused (env LEADWIRE_MAX_CONNECTIONS)."
    )
    public var maxConnections: Int = ProcessInfoEnv.int("LEADWIRE_MAX_CONNECTIONS", default: 4096)

    @Option(
        name: .customLong("max-connections-per-peer"),
        help: "Open connections at most from one client address (env LEADWIRE_MAX_CONNECTIONS_PER_PEER).")
    public var maxConnectionsPerPeer: Int = ProcessInfoEnv.int("LEADWIRE_MAX_CONNECTIONS_PER_PEER", default: 1024)

    @Option(
        name: .customLong("idle-timeout"),
        help: "Seconds a connection with no call in progress is kept before GOAWAY; 0 = forever (env LEADWIRE_IDLE_TIMEOUT).")
    public var idleTimeout: Int = ProcessInfoEnv.int("LEADWIRE_IDLE_TIMEOUT", default: 300)

    @Flag(
        name: .customLong("skip-integrity-check"),
        help: "Start without PRAGMA quick_check of the database (for very large files; env LEADWIRE_SKIP_INTEGRITY_CHECK=1).")
    public var skipIntegrityCheck = false

    /// Seconds the start-up integrity check may take; 0 = skipped.
    public var integrityCheckSeconds: Double {
        skipIntegrityCheck || ProcessInfoEnv.value("LEADWIRE_SKIP_INTEGRITY_CHECK") == "1" ? 0 : 30
    }

    @Option(
        name: .customLong("tls-cert"),
        help: "Serve gRPC over TLS with this certificate chain (PEM; env LEADWIRE_TLS_CERT). SIGHUP reloads it.")
    var tlsCertFlag: String?
    public var tlsCert: String? { tlsCertFlag ?? Self.environment("LEADWIRE_TLS_CERT") }

    @Option(name: .customLong("tls-key"), help: "The key of --tls-cert (PEM, unencrypted; env LEADWIRE_TLS_KEY).")
    var tlsKeyFlag: String?
    public var tlsKey: String? { tlsKeyFlag ?? Self.environment("LEADWIRE_TLS_KEY") }

    @Option(
        name: .customLong("tls-client-ca"),
        help: "Require client certificates signed by this CA (PEM; mutual TLS; env LEADWIRE_TLS_CLIENT_CA).")
    var tlsClientCAFlag: String?
    public var tlsClientCA: String? { tlsClientCAFlag ?? Self.environment("LEADWIRE_TLS_CLIENT_CA") }

    @Option(
        name: .customLong("tls-ca"),
        help:
            "Call the other services over TLS, trusting this CA (PEM); --tls-cert/--tls-key are presented as the client certificate (env LEADWIRE_TLS_CA)."
    )
    var tlsCAFlag: String?
    public var tlsCA: String? { tlsCAFlag ?? Self.environment("LEADWIRE_TLS_CA") }

    /// The environment variable behind a path or URL flag; set but empty counts as unset (a compose
    /// file's `LEADWIRE_TLS_CERT:` with nothing after it). The flags themselves have no default:
    /// argument-parser deprecates a default on an optional option.
    static func environment(_ name: String) -> String? { ProcessInfoEnv.value(name).flatMap { $0.isEmpty ? nil : $0 } }

    /// What this service serves with (nil = plaintext).
    public var serverTLS: WireTLS.Server? {
        guard let tlsCert, let tlsKey else { return nil }
        return WireTLS.Server(certificatePath: tlsCert, keyPath: tlsKey, clientCAPath: tlsClientCA)
    }

    /// How this service calls the others (nil = plaintext).
    public var peerTLS: WireTLS.Client? {
        guard let tlsCA else { return nil }
        return WireTLS.Client(caPath: tlsCA, certificatePath: tlsCert, keyPath: tlsKey)
    }

    /// The connection limits above, applied to a server's configuration.
    public func applyLimits(to c: inout WireServer.Configuration) {
        c.maxConnections = maxConnections
        c.maxConnectionsPerPeer = maxConnectionsPerPeer
        c.idleTimeout = idleTimeout > 0 ? .seconds(Int64(idleTimeout)) : nil
        c.tls = serverTLS
    }

    public var allowSharedKey: Bool { allowSharedKeyFlag || ProcessInfoEnv.value("LEADWIRE_ALLOW_SHARED_KEY") == "1" }

    public init() {}

    public var authOn: Bool { auth != "off" && auth != "false" && auth != "0" }

    /// The metrics port: as given, else a free one for a test server (--port 0), else the default.
    public func metricsPort(servicePort: Int, defaultPort: Int, env: String) throws -> Int {
        if let metricsPort { return metricsPort }
        if let text = ProcessInfoEnv.value(env) {
            guard let port = Int(text) else { throw ValidationError("\(env)=\(text) is not a port number") }
            return port
        }
        return servicePort == 0 ? 0 : defaultPort
    }

    public mutating func validate() throws {
        if let problem = ProcessInfoEnv.problems.first { throw ValidationError(problem) }
        guard ["on", "off", "true", "false", "1", "0"].contains(auth) else { throw ValidationError("--auth takes on or off, not \(auth)") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1, not \(maxConnections)") }
        guard maxConnectionsPerPeer >= 1 else {
            throw ValidationError("--max-connections-per-peer must be at least 1, not \(maxConnectionsPerPeer)")
        }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil && tlsCert == nil {
            throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        }
        guard idleTimeout >= 0 else { throw ValidationError("--idle-timeout is seconds, 0 or more, not \(idleTimeout)") }
    }
}

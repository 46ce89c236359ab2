import Auth
import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import Wire

/// One log line and the metrics for every RPC: method, status, duration and principal. Health
/// checks are counted but logged at debug level (orchestrators call them every few seconds).
///
/// Metrics are labelled by the method served, or `unknown` for a path no service has: a scanner
/// sending random paths must not grow the set of series (and the memory behind them) without bound.
/// The log line keeps the path as requested (the log handler escapes and caps it).
public final class RPCObserver: CallObserver {
    private let logger: Logger
    private let methods: Set<String>
    /// Served by every Wire server besides the services it is given.
    static let standardMethods: Set<String> = [
        "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    private struct Key: Hashable {
        var method: String
        var code: StatusCode
    }
    private let counters = NIOLockedValueBox<[Key: CoreMetrics.Counter]>([:])
    private let timers = NIOLockedValueBox<[String: CoreMetrics.Timer]>([:])

    public init(logger: Logger, methods: Set<String>) {
        self.logger = logger
        self.methods = methods.union(Self.standardMethods)
    }

    private static func fields(of call: FinishedCall) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "method": "\(call.method.isEmpty ? "(none)" : call.method)", "status": "\(call.code)",
            "duration_ms": "\(Double(call.durationNanos / 1000) / 1000)",
            "principal": "\(call.principal ?? "-")", "peer": "\(call.peer)",
        ]
        if call.code != .ok { metadata["message"] = "\(call.message)" }
        if let cause = call.cause { metadata["cause"] = "\(cause)" }
        return metadata
    }

    public func callFinished(_ call: FinishedCall) {
        let method = methods.contains(call.method) ? call.method : "unknown"
        // A call that failed underneath (storage, an unexpected throw) is an error for the operator,
        // with its cause; a refusal of the caller's request is the caller's business: info.
        let level: Logger.Level = call.cause != nil ? .error : method.hasPrefix("/grpc.health.v1.Health/") ? .debug : .info
        // swift-log takes the metadata as an autoclosure: the line's fields are made only when the
        // line is written (at the usual `notice` a call's line is not, and making them cost more
        // than the rest of this function).
        logger.log(level: level, "rpc", metadata: Self.fields(of: call))
        let key = Key(method: method, code: call.code)
        let counter = counters.withLockedValue { c in
            if let x = c[key] { return x }
            let x = CoreMetrics.Counter(label: "leadwire_rpc_total", dimensions: [("method", method), ("code", "\(call.code)")])
            c[key] = x
            return x
        }
        counter.increment()
        let timer = timers.withLockedValue { t in
            if let x = t[method] { return x }
            let x = CoreMetrics.Timer(label: "leadwire_rpc_duration_seconds", dimensions: [("method", method)])
            t[method] = x
            return x
        }
        timer.recordNanoseconds(Int64(clamping: call.durationNanos))
    }
}

/// A token for this service's calls to the others, signed with the shared key and renewed before
/// it expires.
public final class ServiceToken: Sendable {
    private let key: SigningKey
    private let name: String
    private let current = NIOLockedValueBox<(token: String, exp: Int64)>(("", 0))

    public init(key: SigningKey, name: String) {
        self.key = key
        self.name = name
    }

    public var options: CallOptions {
        var o = CallOptions()
        o.metadata.add("authorization", "Bearer " + token())
        return o
    }

    public func token() -> String {
        let now = epochSeconds()
        return current.withLockedValue { c in
            if c.exp - now > 3600 { return c.token }
            let exp = now + 24 * 3600
            c = (key.issue(Claims(subject: name, roles: ["service"], issuedAt: now, expiresAt: exp)), exp)
            return c.token
        }
    }
}

import NIOConcurrencyHelpers

public typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

/// Serving status per service name (`""` is the whole server), as grpc.health.v1.Health reports it
/// (grpc/grpc doc/health-checking.md).
public final class HealthProvider: Sendable {
    private struct State {
        var statuses: [String: ServingStatus] = [:]
        var watchers: [Int: (service: String, continuation: AsyncStream<ServingStatus>.Continuation)] = [:]
        var nextWatcher = 0
        var shuttingDown = false
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public func setStatus(_ status: ServingStatus, for service: String) {
        state.withLockedValue { s in
            guard !s.shuttingDown else { return }
            s.statuses[service] = status
            for (_, w) in s.watchers where w.service == service { w.continuation.yield(status) }
        }
    }

    /// Every registered service (and the server as a whole) to `status`.
    public func setAll(_ status: ServingStatus) {
        let names = state.withLockedValue { Array($0.statuses.keys) }
        for n in names { setStatus(status, for: n) }
    }

    public func status(for service: String) -> ServingStatus? {
        state.withLockedValue { $0.statuses[service] }
    }

    var isShuttingDown: Bool { state.withLockedValue { $0.shuttingDown } }

    /// Every service NOT_SERVING, for good; watchers hear it, then their streams end.
    func enterShutdown() {
        let watchers = state.withLockedValue { s in
            for k in s.statuses.keys { s.statuses[k] = .notServing }
            s.shuttingDown = true
            defer { s.watchers.removeAll() }
            return s.watchers.values.map(\.continuation)
        }
        // Outside the lock: finish() runs onTermination, which takes the lock.
        for c in watchers {
            c.yield(.notServing)
            c.finish()
        }
    }

    /// The current status (SERVICE_UNKNOWN for an unknown name), then each change.
    func watch(_ service: String) -> AsyncStream<ServingStatus> {
        let (stream, continuation) = AsyncStream<ServingStatus>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let open = state.withLockedValue { s in
            continuation.yield(s.statuses[service] ?? .serviceUnknown)
            if s.shuttingDown { return false }
            let id = s.nextWatcher
            s.nextWatcher += 1
            s.watchers[id] = (service, continuation)
            continuation.onTermination = { [weak self] _ in
                self?.state.withLockedValue { _ = $0.watchers.removeValue(forKey: id) }
            }
            return true
        }
        if !open { continuation.finish() }
        return stream
    }
}

struct HealthService: Grpc_Health_V1_Health_Service {
    let provider: HealthProvider

    func check(_ request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard let status = provider.status(for: request.service) else {
            throw RPCError(.notFound, "no health status is registered for service \"\(request.service)\"")
        }
        var r = Grpc_Health_V1_HealthCheckResponse()
        r.status = status
        return r
    }

    func watch(
        _ request: Grpc_Health_V1_HealthCheckRequest, responses: ResponseWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        var last: ServingStatus?
        for await status in provider.watch(request.service) where status != last {
            last = status
            var r = Grpc_Health_V1_HealthCheckResponse()
            r.status = status
            try await responses.write(r)
        }
        try Task.checkCancellation()
        throw RPCError(.unavailable, "the server is shutting down")
    }
}

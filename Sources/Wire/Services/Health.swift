import NIOConcurrencyHelpers

public typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

/// Serving status per service name (`""` is the whole server), as grpc.health.v1.Health reports it
/// (grpc/grpc doc/health-checking.md).
public final class HealthProvider: Sendable {
    private struct State {
        var statuses: [String: ServingStatus] = [:]
        var shuttingDown = false
    }

    private let state = NIOLockedValueBox(State())
    /// Watchers, by the service name they watch.
    private let changes = Broadcast<ServingStatus, String>(buffering: 8)

    public init() {}

    public func setStatus(_ status: ServingStatus, for service: String) {
        let changed = state.withLockedValue { s in
            guard !s.shuttingDown else { return false }
            s.statuses[service] = status
            return true
        }
        if changed { changes.publish { $0 == service ? status : nil } }
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
        state.withLockedValue { s in
            for k in s.statuses.keys { s.statuses[k] = .notServing }
            s.shuttingDown = true
        }
        changes.finish { _ in .notServing }
    }

    /// The current status (SERVICE_UNKNOWN for an unknown name), then each change. A change made
    /// while the watch starts may arrive twice (never not at all); Watch sends a status only when
    /// it differs from the last.
    func watch(_ service: String) -> AsyncStream<ServingStatus> {
        changes.subscribe(service, first: status(for: service) ?? .serviceUnknown)
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

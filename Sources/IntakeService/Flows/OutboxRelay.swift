import CoreMetrics
import LeadwireAPI
import Logging
import Observability
import ServiceLifecycle
import Wire

/// What the relay needs of the routing service: the generated client, or a stand-in in tests.
protocol RoutingPort: Sendable {
    func routeLead(_ request: Routing_RouteLeadRequest, options: CallOptions) async throws -> Routing_Assignment
    func markDecided(_ request: Routing_MarkDecidedRequest, options: CallOptions) async throws -> Routing_Assignment
    func release(_ request: Routing_ReleaseRequest, options: CallOptions) async throws -> Routing_Assignment
    func getAssignment(_ request: Routing_GetAssignmentRequest, options: CallOptions) async throws -> Routing_Assignment
    func listOwnerChanges(_ request: Routing_ListOwnerChangesRequest, options: CallOptions) async throws -> Routing_ListOwnerChangesResponse
}

/// What the relay needs of the report service.
protocol EventSink: Sendable {
    func ingestEvents(_ request: Report_IngestEventsRequest, options: CallOptions) async throws -> Report_IngestEventsResponse
}

extension Routing_ServiceClient: RoutingPort {}
extension Report_ServiceClient: EventSink {}

/// Delivers the outbox: routing requests, decisions and releases to the routing service (one by
/// one, in order), lead events to the report service (in batches). A message leaves the outbox only
/// when the receiver has answered OK — at-least-once delivery, made exactly-once by the receivers
/// (routing is idempotent by lead id, report by event id). Failures back off exponentially (100 ms
/// to 10 s, so a peer back from a restart is found within seconds) and retry forever; a message the
/// receiver refuses as invalid is set aside with the reason, so it cannot block the rest.
final class OutboxRelay: Service, Sendable {
    let store: IntakeStore
    let routing: (any RoutingPort)?
    let report: (any EventSink)?
    let token: ServiceToken
    let now: Clock
    let logger: Logger
    let batchSize: Int
    /// Told of each lead routing assigned (for WatchLeads).
    let onAssigned: @Sendable (Intake_Lead) -> Void

    init(
        store: IntakeStore, routing: (any RoutingPort)?, report: (any EventSink)?, token: ServiceToken, now: @escaping Clock,
        logger: Logger, batchSize: Int = 500,
        onAssigned: @escaping @Sendable (Intake_Lead) -> Void = { _ in }
    ) {
        self.onAssigned = onAssigned
        self.store = store
        self.routing = routing
        self.report = report
        self.token = token
        self.now = now
        self.logger = logger
        self.batchSize = batchSize
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                if self.routing != nil {
                    group.addTask { await self.loop("routing", self.deliverRouting) }
                    group.addTask { await self.loop("routing owner changes", self.followOwnerChanges) }
                }
                if self.report != nil { group.addTask { await self.loop("report", self.deliverEvents) } }
                group.addTask { await self.watchBacklog() }
            }
        }
    }

    /// Delivers until cancelled: straight on while there is work, a short pause when idle, growing
    /// pauses after failures.
    private func loop(_ target: String, _ deliver: @escaping @Sendable () async throws -> Int) async {
        var backoff: Duration = .milliseconds(100)
        var failures = 0
        while !Task.isCancelled {
            do {
                let n = try await deliver()
                if failures > 0 { logger.notice("delivery to \(target) resumed", metadata: ["after_failures": "\(failures)"]) }
                failures = 0
                backoff = .milliseconds(100)
                if n == 0 { try? await Task.sleep(for: .milliseconds(50)) }
            } catch {
                failures += 1
                // Log the first failure and then every tenth, not a line per retry.
                if failures == 1 || failures % 10 == 0 {
                    logger.warning(
                        "delivery to \(target) failed; retrying",
                        metadata: [
                            "error": "\(error)", "failures": "\(failures)",
                            "backoff_ms": "\(backoff.components.seconds * 1000 + backoff.components.attoseconds / 1_000_000_000_000_000)",
                        ])
                }
                let jitter = Double.random(in: 0.8...1.2)
                try? await Task.sleep(for: backoff * jitter)
                backoff = min(backoff * 2, .seconds(10))
            }
        }
    }

    /// Whether the receiver refused the message itself (retrying cannot help).
    private static func isPoison(_ e: RPCError) -> Bool {
        [.invalidArgument, .failedPrecondition, .notFound, .outOfRange].contains(e.code)
    }

    /// Sends one route message and records routing's answer on the lead, marking the message
    /// delivered. SubmitLead's first attempt (within its short budget) and the relay's passes both
    /// come here. Returns the lead as it stands after the answer.
    func route(_ request: Routing_RouteLeadRequest, options: CallOptions) async throws -> Intake_Lead? {
        guard let routing else { return nil }
        let a = try await routing.routeLead(request, options: options)
        guard let applied = try await store.applyAssignment(a, now: now()) else { return nil }
        if applied.changed { onAssigned(applied.lead) }
        return applied.lead
    }

    /// One pass over the routing messages, in order; throws at the first failure worth retrying.
    func deliverRouting() async throws -> Int {
        guard let routing else { return 0 }
        let rows = try await store.pendingOutbox(kinds: IntakeStore.OutboxKind.routing, limit: 100)
        for row in rows {
            do {
                switch row.kind {
                case .route:
                    _ = try await route(
                        try ProtoCodec.decode(Routing_RouteLeadRequest.self, from: row.payload), options: callOptions(seconds: 5))
                case .decided:
                    _ = try await routing.markDecided(
                        try ProtoCodec.decode(Routing_MarkDecidedRequest.self, from: row.payload), options: callOptions(seconds: 5))
                    try await store.markDelivered([row.id], now: now())
                case .release:
                    _ = try await routing.release(
                        try ProtoCodec.decode(Routing_ReleaseRequest.self, from: row.payload), options: callOptions(seconds: 5))
                    try await store.markDelivered([row.id], now: now())
                case .reply, .event:
                    // Not routing's: pendingOutbox was asked for routing kinds only.
                    continue
                }
            } catch let e as RPCError where Self.isPoison(e) {
                logger.error(
                    "routing refused an outbox message; set aside",
                    metadata: ["outbox_id": "\(row.id)", "kind": "\(row.kind.rawValue)", "status": "\(e.code)", "message": "\(e.message)"])
                try await store.markDelivered([row.id], now: now(), failure: "\(e.code): \(e.message)")
            }
        }
        return rows.count
    }

    /// One pass over routing's owner changes since the last applied: every change of owner made in
    /// routing (reassign, release, queue drain, substitute, escalation) reaches the lead, its
    /// history, WatchLeads and report, once and in order.
    func followOwnerChanges() async throws -> Int {
        guard let routing else { return 0 }
        var req = Routing_ListOwnerChangesRequest()
        req.afterSeq = try await store.ownerChangesCursor()
        req.limit = 200
        let changes = try await routing.listOwnerChanges(req, options: callOptions(seconds: 5)).changes
        for change in changes {
            if let lead = try await store.applyOwnerChange(change, now: now()) { onAssigned(lead) }
        }
        if changes.isEmpty { try? await Task.sleep(for: .milliseconds(450)) }
        return changes.count
    }

    /// One batch of lead events; throws when report cannot take it now.
    func deliverEvents() async throws -> Int {
        guard let report else { return 0 }
        let rows = try await store.pendingOutbox(kinds: [.event], limit: batchSize)
        guard !rows.isEmpty else { return 0 }
        var events = [Report_LeadEvent]()
        for row in rows {
            events.append(Bridge.reportEvent(try ProtoCodec.decode(Intake_LeadChange.self, from: row.payload), outboxID: row.id))
        }
        var req = Report_IngestEventsRequest()
        req.events = events
        do {
            _ = try await report.ingestEvents(req, options: callOptions(seconds: 10))
            try await store.markDelivered(rows.map(\.id), now: now())
        } catch let e as RPCError where e.code == .invalidArgument {
            // One bad event refuses the batch: send them one by one to set aside only the bad ones.
            for (row, event) in zip(rows, events) {
                var one = Report_IngestEventsRequest()
                one.events = [event]
                do {
                    _ = try await report.ingestEvents(one, options: callOptions(seconds: 10))
                    try await store.markDelivered([row.id], now: now())
                } catch let e as RPCError where e.code == .invalidArgument {
                    logger.error("report refused an event; set aside", metadata: ["outbox_id": "\(row.id)", "message": "\(e.message)"])
                    try await store.markDelivered([row.id], now: now(), failure: "\(e.code): \(e.message)")
                }
            }
        }
        return rows.count
    }

    private func callOptions(seconds: Int64) -> CallOptions {
        var o = token.options
        o.timeout = .seconds(seconds)
        return o
    }

    /// Publishes the backlog per kind (count, age of the oldest) as metrics every few seconds, and
    /// purges delivered messages older than a week once an hour.
    private func watchBacklog() async {
        var lastPurge: Int64 = 0
        // Messages to people have their own queue and gauges (Messaging's Mailer).
        var kinds: [IntakeStore.OutboxKind] = []
        if routing != nil { kinds += IntakeStore.OutboxKind.routing }
        if report != nil { kinds.append(.event) }
        let gauges = Dictionary(
            uniqueKeysWithValues: kinds.map { kind in
                (
                    kind,
                    (
                        pending: Gauge(label: "leadwire_outbox_pending", dimensions: [("kind", kind.rawValue)]),
                        lag: Gauge(label: "leadwire_outbox_lag_seconds", dimensions: [("kind", kind.rawValue)])
                    )
                )
            })
        while !Task.isCancelled {
            if let backlog = try? await store.outboxBacklog(kinds: kinds) {
                let t = now()
                for (kind, b) in backlog {
                    let g = gauges[kind]!
                    g.pending.record(b.count)
                    g.lag.record(Double(b.oldest.map { max(0, t - $0) } ?? 0) / 1000)
                }
            }
            if now() - lastPurge > 3_600_000 {
                lastPurge = now()
                _ = try? await store.purgeDelivered(before: lastPurge - 7 * 86_400_000)
            }
            try? await Task.sleep(for: .seconds(2))
        }
    }
}

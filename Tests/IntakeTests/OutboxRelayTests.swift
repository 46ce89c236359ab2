import Auth
import Foundation
import LeadwireAPI
import Logging
import NIOConcurrencyHelpers
import Observability
import StoreTestSupport
import Testing
import Wire

@testable import IntakeService

/// Stands in for routing: answers each lead as `answer` says, and records what it was asked.
final class FakeRouting: RoutingPort {
    let answer: @Sendable (String) throws -> Routing_Assignment
    let calls = NIOLockedValueBox<[String]>([])

    init(_ answer: @escaping @Sendable (String) throws -> Routing_Assignment) {
        self.answer = answer
    }

    func routeLead(_ request: Routing_RouteLeadRequest, options: CallOptions) async throws -> Routing_Assignment {
        let id = request.lead?.leadId ?? ""
        calls.withLockedValue { $0.append("route \(id)") }
        return try answer(id)
    }

    func markDecided(_ request: Routing_MarkDecidedRequest, options: CallOptions) async throws -> Routing_Assignment {
        calls.withLockedValue { $0.append("decided \(request.leadId)") }
        return Routing_Assignment()
    }

    func release(_ request: Routing_ReleaseRequest, options: CallOptions) async throws -> Routing_Assignment {
        calls.withLockedValue { $0.append("release \(request.leadId)") }
        return Routing_Assignment()
    }

    func getAssignment(_ request: Routing_GetAssignmentRequest, options: CallOptions) async throws -> Routing_Assignment {
        try answer(request.leadId)
    }

    /// Changes of owner made "in routing", as ListOwnerChanges returns them.
    let ownerChanges = NIOLockedValueBox<[Routing_OwnerChange]>([])

    func listOwnerChanges(_ request: Routing_ListOwnerChangesRequest, options: CallOptions) async throws -> Routing_ListOwnerChangesResponse
    {
        var r = Routing_ListOwnerChangesResponse()
        r.changes = ownerChanges.withLockedValue { $0.filter { $0.seq > request.afterSeq } }
        return r
    }
}

/// Stands in for report: refuses any batch holding an event of `refusedLead`, like report's own
/// validation refuses a whole batch; records the event ids it took.
final class FakeReport: EventSink {
    let refusedLead: String
    let down = NIOLockedValueBox(false)
    let taken = NIOLockedValueBox<[String]>([])

    init(refusing lead: String) {
        refusedLead = lead
    }

    func ingestEvents(_ request: Report_IngestEventsRequest, options: CallOptions) async throws -> Report_IngestEventsResponse {
        if down.withLockedValue({ $0 }) { throw RPCError(.unavailable, "report is restarting") }
        if request.events.contains(where: { $0.leadId == refusedLead }) { throw RPCError(.invalidArgument, "events[0].status: bad") }
        taken.withLockedValue { $0 += request.events.map(\.eventId) }
        return Report_IngestEventsResponse()
    }
}

func assignment(_ lead: String, to person: String) -> Routing_Assignment {
    var a = Routing_Assignment()
    a.leadId = lead
    a.personId = person
    a.role = "Sales manager"
    a.explanation = "test"
    return a
}

@Suite struct OutboxRelayTests {
    func setUp() async throws -> (IntakeStore, [Intake_Lead]) {
        let scratch = ScratchDatabase("intake.sqlite")
        let store = try IntakeStore(path: scratch.path, schema: scratch.schema, routing: true)
        let source = try await store.createSource(webForm(), now: 1)
        var leads = [Intake_Lead]()
        for i in 0..<3 { leads.append(try await submit(store, source, email: "c\(i)@example.com", subject: "s\(i)").lead) }
        return (store, leads)
    }

    func relay(_ store: IntakeStore, routing: (any RoutingPort)?, report: (any EventSink)?) -> OutboxRelay {
        OutboxRelay(
            store: store, routing: routing, report: report,
            token: ServiceToken(key: SigningKey(bytes: Array(repeating: 1, count: 32)), name: "test"),
            now: { 1_795_922_800_000 }, logger: Logger(label: "test"))
    }

    /// (kind, delivered, failure) per outbox row of a lead.
    func outbox(_ store: IntakeStore) async throws -> [(kind: String, delivered: Bool, failure: String?)] {
        try await store.db.read { db in
            try db.query("SELECT kind, delivered_at IS NOT NULL, failure FROM outbox ORDER BY id") {
                ($0.string(0), $0.bool(1), $0.optionalString(2))
            }
        }
    }

    /// SubmitLead's first attempt and the relay send the same message through one function: the
    /// answer is recorded once (one "assigned" for WatchLeads and report), the message leaves the
    /// outbox, and a message of a kind this build does not know is left where it is, not sent.
    @Test func oneRouteMessageIsAnsweredOnceWhoeverSendsIt() async throws {
        let (store, leads) = try await setUp()
        let routing = FakeRouting { id in assignment(id, to: "person-3") }
        let published = NIOLockedValueBox<[String]>([])
        let r = OutboxRelay(
            store: store, routing: routing, report: nil,
            token: ServiceToken(key: SigningKey(bytes: Array(repeating: 1, count: 32)), name: "test"),
            now: { 1_795_922_800_000 }, logger: Logger(label: "test"),
            onAssigned: { lead in published.withLockedValue { $0.append(lead.id) } })
        try await store.db.write { db in
            try db.run("INSERT INTO outbox(kind, lead_id, payload, created_at) VALUES ('mystery', 1, ?, 1)", [0x0a, 0x00] as [UInt8])
        }
        var request = Routing_RouteLeadRequest()
        request.lead = Bridge.summary(leads[0], source: try await store.source(leads[0].sourceId)!)
        let first = try await r.route(request, options: CallOptions())
        #expect(first?.ownerId == "person-3" && first?.routing == .assigned)
        // The relay's pass then sends the other two; the first is no longer pending.
        #expect(try await r.deliverRouting() == 2)
        _ = try await r.route(request, options: CallOptions())  // a late duplicate answer changes nothing
        #expect(published.withLockedValue { $0 } == leads.map(\.id))
        let payloads = try await store.db.read { db in
            try db.query("SELECT payload FROM outbox WHERE kind = 'event' AND lead_id = 1") { $0.blob(0) }
        }
        let word = Array("assigned".utf8)
        let assigned = payloads.filter { p in
            p.count >= word.count && (0...(p.count - word.count)).contains { Array(p[$0..<$0 + word.count]) == word }
        }
        #expect(assigned.count == 1)
        let rows = try await outbox(store)
        #expect(rows.filter { $0.kind == "route" }.allSatisfy { $0.delivered })
        #expect(rows.filter { $0.kind == "mystery" }.map(\.delivered) == [false])
        #expect(routing.calls.withLockedValue { $0 }.allSatisfy { $0.hasPrefix("route ") })
    }

    @Test func routingRetriesOnUnavailableAndSetsAsideWhatItRefuses() async throws {
        let (store, leads) = try await setUp()
        let flaky = FakeRouting { _ in throw RPCError(.unavailable, "routing is down") }
        await #expect(throws: RPCError.self) { _ = try await relay(store, routing: flaky, report: nil).deliverRouting() }
        // Nothing left the outbox; the first message was tried and the rest waited (order kept).
        #expect(try await outbox(store).filter { $0.kind == "route" }.allSatisfy { !$0.delivered })
        #expect(flaky.calls.withLockedValue { $0 } == ["route \(leads[0].id)"])

        let refusing = leads[1].id
        let routing = FakeRouting { id in
            if id == refusing { throw RPCError(.invalidArgument, "lead.lead_id: required") }
            return assignment(id, to: "person-7")
        }
        #expect(try await relay(store, routing: routing, report: nil).deliverRouting() == 3)
        let rows = try await outbox(store).filter { $0.kind == "route" }
        #expect(rows.map(\.delivered) == [true, true, true])
        #expect(rows[1].failure?.hasPrefix("INVALID_ARGUMENT") == true && rows[0].failure == nil && rows[2].failure == nil)
        for (i, l) in leads.enumerated() {
            let lead = try await store.lead(l.id)!.lead!
            #expect(lead.routing == (i == 1 ? .pending : .assigned))
            #expect(lead.ownerId == (i == 1 ? "" : "person-7"))
        }
        // Assigned leads produced "assigned" events for report, in the same transaction.
        let kinds = try await store.db.read { db in try db.query("SELECT kind FROM outbox WHERE kind = 'event'") { $0.string(0) } }
        #expect(kinds.count == 3 + 2)
        // A second pass has nothing left to send.
        #expect(try await relay(store, routing: routing, report: nil).deliverRouting() == 0)
    }

    @Test func ownerChangesMadeInRoutingReachTheLeadOnceAndInOrder() async throws {
        let (store, leads) = try await setUp()
        let routing = FakeRouting { id in assignment(id, to: "person-7") }
        _ = try await relay(store, routing: routing, report: nil).deliverRouting()
        func change(_ seq: Int64, _ lead: String, to person: String, actor: String) -> Routing_OwnerChange {
            var c = Routing_OwnerChange()
            c.seq = seq
            var a = assignment(lead, to: person)
            var step = Routing_AssignmentEvent()
            step.kind = "reassigned"
            step.actor = actor
            step.note = "отпуск"
            a.history = [step]
            c.assignment = a
            return c
        }
        routing.ownerChanges.withLockedValue {
            $0 = [change(1, leads[0].id, to: "person-8", actor: "head"), change(2, leads[0].id, to: "person-9", actor: "head")]
        }
        let r = relay(store, routing: routing, report: nil)
        #expect(try await r.followOwnerChanges() == 2)
        #expect(try await store.lead(leads[0].id)!.lead!.ownerId == "person-9")
        // A second pass, or the same changes offered again, changes nothing.
        #expect(try await r.followOwnerChanges() == 0)
        #expect(try await store.applyOwnerChange(change(1, leads[0].id, to: "person-8", actor: "head"), now: 5) == nil)
        #expect(try await store.lead(leads[0].id)!.lead!.ownerId == "person-9")
        let history = try await store.lead(leads[0].id)!.history.filter { $0.action == "assigned" }
        #expect(history.count == 3)
        #expect(history.last?.actor == "head" && history.last?.note == "reassigned: отпуск")
    }

    @Test func eventsGoInBatchesAndOnlyTheRefusedOneIsSetAside() async throws {
        let (store, leads) = try await setUp()
        let report = FakeReport(refusing: leads[2].id)
        report.down.withLockedValue { $0 = true }
        await #expect(throws: RPCError.self) { _ = try await relay(store, routing: nil, report: report).deliverEvents() }
        #expect(try await outbox(store).filter { $0.kind == "event" }.allSatisfy { !$0.delivered })
        report.down.withLockedValue { $0 = false }
        #expect(try await relay(store, routing: nil, report: report).deliverEvents() == 3)
        let events = try await outbox(store).filter { $0.kind == "event" }
        #expect(events.map(\.delivered) == [true, true, true])
        #expect(events.map { $0.failure != nil } == [false, false, true])
        let ids = try await store.db.read { db in
            try db.query("SELECT id FROM outbox WHERE kind = 'event' ORDER BY id") { "intake:\($0.int(0))" }
        }
        #expect(report.taken.withLockedValue { $0 } == Array(ids.prefix(2)))
        #expect(try await relay(store, routing: nil, report: report).deliverEvents() == 0)
    }
}

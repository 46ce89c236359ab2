import Foundation
import LeadwireAPI
import Testing

@testable import RoutingService

/// The routing store on a real SQLite file: queues handed on when an absence ends, and every change
/// of owner recorded in the feed intake follows.
@Suite struct RoutingStoreTests {
    func store() async throws -> RoutingStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("routing-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return try await RoutingStore(path: dir.appendingPathComponent("routing.sqlite").path, now: now)
    }

    func summary(_ id: String, role: String) -> Routing_LeadSummary {
        var l = Routing_LeadSummary()
        l.leadId = id
        l.sourceId = "src-1"
        l.channel = "web_form"
        l.sourceDefaultRole = role
        return l
    }

    @Test func aQueueIsHandedOnWhenTheOnlyMemberComesBackAndTheFeedSaysSo() async throws {
        let s = try await store()
        var role = Routing_Role()
        role.name = "Аварийная"
        _ = try await s.putRole(role)
        var p = Routing_Person()
        p.name = "Дежурный"
        p.login = "duty"
        p.roles = ["Аварийная"]
        var away = Routing_Absence()
        away.fromMs = now - hour
        away.untilMs = now + hour
        p.absences = [away]
        let duty = try await s.createPerson(p, now: now)
        let queued = try await s.route(summary("lead-1", role: "Аварийная"), actor: "intake", now: now)
        #expect(queued.personId.isEmpty)
        #expect(try await s.drainAllQueues(now: now + hour / 2) == 0)
        #expect(try await s.drainAllQueues(now: now + 2 * hour) == 1)
        #expect(try await s.assignment("lead-1")?.personId == duty.id)
        let changes = try await s.ownerChanges(after: 0, limit: 100)
        #expect(changes.map { $0.assignment?.personId } == [duty.id])
        #expect(try await s.ownerChanges(after: changes[0].seq, limit: 100).isEmpty)
    }
}

import Foundation
import LeadwireAPI
import StoreTestSupport
import Testing

@testable import RoutingService

/// The routing store on a real SQLite file: queues handed on when an absence ends, and every change
/// of owner recorded in the feed intake follows.
@Suite struct RoutingStoreTests {
    func store() async throws -> RoutingStore {
        let db = ScratchDatabase("routing.sqlite")
        return try await RoutingStore(path: db.path, schema: db.schema, now: now)
    }

    func summary(_ id: String, role: String) -> Routing_LeadSummary {
        var l = Routing_LeadSummary()
        l.leadId = id
        l.sourceId = "src-1"
        l.channel = "web_form"
        l.sourceDefaultRole = role
        return l
    }

    /// A role, and a person in it (not yet created: the test may change it first).
    func role(_ name: String, in s: RoutingStore, member login: String) async throws -> Routing_Person {
        var role = Routing_Role()
        role.name = name
        _ = try await s.putRole(role)
        var p = Routing_Person()
        p.name = login.capitalized
        p.login = login
        p.roles = [name]
        return p
    }

    @Test func aQueueIsHandedOnWhenTheOnlyMemberComesBackAndTheFeedSaysSo() async throws {
        let s = try await store()
        var p = try await role("Аварийная", in: s, member: "duty")
        var away = Routing_Absence()
        away.fromMs = now - hour
        away.untilMs = now + hour
        p.absences = [away]
        let duty = try await s.createPerson(p, now: now)
        let queued = try await s.route(summary("lead-1", role: "Аварийная"), actor: "intake", now: now).decoded()
        #expect(queued.personId.isEmpty)
        #expect(try await s.drainAllQueues(now: now + hour / 2) == 0)
        #expect(try await s.drainAllQueues(now: now + 2 * hour) == 1)
        #expect(try await s.assignment("lead-1")?.decoded().personId == duty.id)
        let changes = try await s.ownerChanges(after: 0, limit: 100)
        #expect(changes.map { $0.assignment?.personId } == [duty.id])
        #expect(try await s.ownerChanges(after: changes[0].seq, limit: 100).isEmpty)
    }

    /// A decision waiting for its group commit is seen by the next write of the same transaction (the
    /// rotation moves on) but not by readers until the COMMIT has returned.
    @Test func readersSeeOnlyCommittedDecisionsWhileWritesInTheSameBatchSeeEachOther() async throws {
        let s = try await store()
        var role = Routing_Role()
        role.name = "Продажи"
        _ = try await s.putRole(role)
        var ids = [String]()
        for login in ["anna", "boris"] {
            var p = Routing_Person()
            p.name = login
            p.login = login
            p.roles = ["Продажи"]
            ids.append(try await s.createPerson(p, now: now).id)
        }
        // Hold the writer so the next writes gather into one batch: two decisions, then a write
        // that waits until the test has looked at what readers see.
        let holdFirst = DispatchSemaphore(value: 0)
        let holdLast = DispatchSemaphore(value: 0)
        let lastStarted = DispatchSemaphore(value: 0)
        async let first: Void = s.db.write { _ in holdFirst.wait() }
        try await Task.sleep(for: .milliseconds(100))
        async let a = s.route(summary("lead-a", role: "Продажи"), actor: "t", now: now)
        try await Task.sleep(for: .milliseconds(50))
        async let b = s.route(summary("lead-b", role: "Продажи"), actor: "t", now: now)
        try await Task.sleep(for: .milliseconds(50))
        async let last: Void = s.db.write { _ in
            lastStarted.signal()
            holdLast.wait()
        }
        try await Task.sleep(for: .milliseconds(100))
        holdFirst.signal()
        try await first
        // Both decisions have run (they precede the last write in its batch); none is committed.
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                lastStarted.wait()
                cont.resume()
            }
        }
        #expect(ids.map { s.person($0)?.openLeads } == [0, 0])
        holdLast.signal()
        try await last
        let (ra, rb) = try await (a, b)
        // The second decision saw the first: one lead each.
        #expect(Set([try ra.decoded().personId, try rb.decoded().personId]) == Set(ids))
        #expect(ids.map { s.person($0)?.openLeads } == [1, 1])
    }

    /// A write that fails in storage after changing the working state does not leave the change
    /// behind: the next write and every reader work from what the database holds.
    @Test func aStorageFailureMidWriteLeavesNoTraceInMemory() async throws {
        let s = try await store()
        let vera = try await s.createPerson(try await role("Сервис", in: s, member: "vera"), now: now)
        // A trigger makes the assignment's INSERT fail after the decision changed the working state.
        try await s.db.write { c in
            if c.isPostgres {
                try c.execute(
                    """
                    CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
                    CREATE TRIGGER refuse BEFORE INSERT ON assignments FOR EACH ROW WHEN (NEW.lead_id = 'lead-x') EXECUTE FUNCTION refuse()
                    """)
            } else {
                try c.execute(
                    "CREATE TRIGGER refuse BEFORE INSERT ON assignments WHEN NEW.lead_id = 'lead-x' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            }
        }
        await #expect(throws: (any Error).self) { try await s.route(summary("lead-x", role: "Сервис"), actor: "t", now: now) }
        #expect(s.person(vera.id)?.openLeads == 0)
        let ok = try await s.route(summary("lead-y", role: "Сервис"), actor: "t", now: now).decoded()
        #expect(ok.personId == vera.id)
        #expect(s.person(vera.id)?.openLeads == 1)
    }
}

/// Two routing processes on one PostgreSQL schema (PostgreSQL pass only).
@Suite(.enabled(if: ScratchDatabase.onPostgres, "needs LEADWIRE_TEST_DATABASE_URL (scripts/test sets it)"))
struct RoutingReplicaTests {
    let now: Int64 = 1_790_000_000_000

    /// Decisions through both replicas share one rotation: 10,000 leads over 7 people, at most one
    /// apart; and a person added through one replica is routed to by the other at once.
    @Test func twoReplicasShareOneFairRotation() async throws {
        let scratch = ScratchDatabase("routing.sqlite")
        let a = try await RoutingStore(path: scratch.path, schema: scratch.schema, now: now)
        let b = try await RoutingStore(path: scratch.path, schema: scratch.schema, now: now)
        var role = Routing_Role()
        role.name = "Продажи"
        _ = try await a.putRole(role)
        var people = [String]()
        for i in 0..<6 {
            var p = Routing_Person()
            p.name = "Person \(i)"
            p.login = "p\(i)"
            p.roles = ["Продажи"]
            people.append(try await a.createPerson(p, now: now).id)
        }
        // The seventh through the other replica: the first one must know of it without a restart.
        var last = Routing_Person()
        last.name = "Person 6"
        last.login = "p6"
        last.roles = ["Продажи"]
        people.append(try await b.createPerson(last, now: now).id)
        var owners = [String: Int]()
        for round in 0..<200 {
            let got = try await withThrowingTaskGroup(of: String.self) { group in
                for i in 0..<50 {
                    let s = i % 2 == 0 ? a : b
                    var l = Routing_LeadSummary()
                    l.leadId = "lead-\(round)-\(i)"
                    l.sourceId = "src-1"
                    l.channel = "web_form"
                    l.sourceDefaultRole = "Продажи"
                    group.addTask { try await s.route(l, actor: "intake", now: self.now).decoded().personId }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            for p in got { owners[p, default: 0] += 1 }
        }
        #expect(Set(owners.keys) == Set(people))
        let counts = owners.values
        #expect(counts.reduce(0, +) == 10_000)
        #expect((counts.max() ?? 0) - (counts.min() ?? 0) <= 1, "\(owners)")
    }
}

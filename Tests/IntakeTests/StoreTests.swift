import Foundation
import LeadwireAPI
import NIOConcurrencyHelpers
import StoreTestSupport
import Testing
import Wire

@testable import IntakeService

func temporaryIntakeStore() throws -> IntakeStore {
    let db = ScratchDatabase("intake.sqlite")
    return try IntakeStore(path: db.path, schema: db.schema)
}

func submit(
    _ store: IntakeStore, _ source: Intake_Source, email: String = "", phone: String = "", tax: String = "", key: String = "",
    subject: String = "s"
) async throws -> IntakeStore.Submitted {
    var r = goodRequest()
    r.sourceId = source.id
    r.applicant!.email = email
    r.applicant!.phone = phone
    r.applicant!.taxId = tax
    r.idempotencyKey = key
    r.subject = subject
    return try await store.submit(r, canonical: ProtoCodec.encode(r), source: source, actor: "test", now: 1_795_922_717_921)
}

@Suite struct IntakeStoreTests {
    @Test func exactlyOnceByIdempotencyKey() async throws {
        let store = try temporaryIntakeStore()
        let source = try await store.createSource(webForm(), now: 1)
        let a = try await submit(store, source, email: "a@x.com", key: "k-1")
        let b = try await submit(store, source, email: "a@x.com", key: "k-1")
        #expect(!a.duplicate && b.duplicate)
        #expect(a.lead.registrationNumber == b.lead.registrationNumber)
        await #expect(throws: IntakeError.idempotencyConflict(key: "k-1", registrationNumber: a.lead.registrationNumber)) {
            _ = try await submit(store, source, email: "a@x.com", key: "k-1", subject: "other")
        }
        // Concurrent submits with one key (they share a group commit) still make one lead.
        let numbers = try await withThrowingTaskGroup(of: String.self) { g in
            for _ in 0..<20 { g.addTask { try await submit(store, source, email: "c@x.com", key: "k-2").lead.registrationNumber } }
            var s = Set<String>()
            for try await n in g { s.insert(n) }
            return s
        }
        #expect(numbers.count == 1)
    }

    @Test func clientMatchingOrder() async throws {
        let store = try temporaryIntakeStore()
        let source = try await store.createSource(webForm(), now: 1)
        let first = try await submit(store, source, email: "Ivan@Example.com", phone: "+7 495 123-45-67", tax: "7707083893").lead
        #expect(try await submit(store, source, email: "ivan@example.com").lead.clientId == first.clientId, "by e-mail")
        #expect(
            try await submit(store, source, email: "new@example.com", phone: "+7 (495) 1234567").lead.clientId == first.clientId, "by phone"
        )
        #expect(
            try await submit(store, source, email: "x@y.com", phone: "999999", tax: "77-07083893").lead.clientId == first.clientId,
            "by tax id")
        let stranger = try await submit(store, source, email: "stranger@example.com").lead
        #expect(stranger.clientId != first.clientId, "a first-time client is created")
        let client = try await store.client(first.clientId)!
        #expect(client.leadIds.count == 4)
        #expect(client.email == "ivan@example.com")
    }

    @Test func registrationNumbersAreSequentialAndUnique() async throws {
        let store = try temporaryIntakeStore()
        let source = try await store.createSource(webForm(), now: 1)
        var numbers = [String]()
        for i in 0..<5 { numbers.append(try await submit(store, source, email: "n\(i)@x.com").lead.registrationNumber) }
        #expect(numbers == (1...5).map { RegistrationNumber.format(year: 2026, sequence: Int64($0)) })
    }

    @Test func everyChangeIsInTheOutboxAndHistory() async throws {
        let store = try temporaryIntakeStore()
        let source = try await store.createSource(webForm(), now: 1)
        let lead = try await submit(store, source, email: "o@x.com").lead
        _ = try await store.transition(lead.id, .accept, actor: "m", now: 2)
        let kinds = try await store.db.read { try $0.query("SELECT kind FROM outbox ORDER BY id") { $0.string(0) } }
        #expect(kinds == ["event", "event"])
        // The applicant's messages are queued in the same transactions: registration, acceptance.
        let messages = try await store.messages.list(.init(), limit: 10)
        #expect(messages.map(\.kind).reversed() == ["lead_registered", "lead_accepted"])
        #expect(messages.allSatisfy { $0.recipient == "o@x.com" && $0.channel == "email" && $0.state == .queued })
        #expect(messages[0].inReplyTo == messages[1].messageID)
        #expect(messages[1].subject == "Заявка \(lead.registrationNumber) зарегистрирована")
        let d = try await store.lead(lead.id)!
        #expect(d.history.map(\.action) == ["registered", "accepted"])
        #expect(d.history.map(\.actor) == ["test", "m"])
    }

    @Test func debtBlocksAcceptance() async throws {
        let store = try temporaryIntakeStore()
        let source = try await store.createSource(webForm(), now: 1)
        let lead = try await submit(store, source, email: "d@x.com").lead
        _ = try await store.setClientDebt(lead.clientId, cents: 150_000)
        await #expect(throws: IntakeError.clientHasDebt(clientID: lead.clientId, debt: "1500.00")) {
            _ = try await store.transition(lead.id, .accept, actor: "m", now: 2)
        }
        #expect(try await store.lead(lead.id)!.lead?.status == .new, "a refused transition changes nothing")
    }
}

/// Two intake processes on one PostgreSQL schema (PostgreSQL pass only).
@Suite(.enabled(if: ScratchDatabase.onPostgres, "needs LEADWIRE_TEST_DATABASE_URL (scripts/test sets it)"))
struct IntakeReplicaTests {
    @Test func oneKeyOneLeadOneClientAndUniqueNumbersAcrossReplicas() async throws {
        let scratch = ScratchDatabase("intake.sqlite")
        let a = try IntakeStore(path: scratch.path, schema: scratch.schema)
        let b = try IntakeStore(path: scratch.path, schema: scratch.schema)
        let source = try await a.createSource(webForm(), now: 1)
        // The same key raced through both: one lead, and both answers name it.
        let answers = try await withThrowingTaskGroup(of: String.self) { g in
            for i in 0..<20 {
                let s = i % 2 == 0 ? a : b
                g.addTask { try await submit(s, source, email: "race@x.com", key: "k-race").lead.id }
            }
            return try await g.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(answers.count == 1)
        // New clients raced by e-mail: one client. And 200 leads: 200 distinct numbers.
        let leads = try await withThrowingTaskGroup(of: Intake_Lead.self) { g in
            for i in 0..<200 {
                let s = i % 2 == 0 ? a : b
                g.addTask { try await submit(s, source, email: "same-client@x.com", subject: "s\(i)").lead }
            }
            return try await g.reduce(into: [Intake_Lead]()) { $0.append($1) }
        }
        #expect(Set(leads.map(\.registrationNumber)).count == 200)
        #expect(Set(leads.map(\.id)).count == 200)
        #expect(Set(leads.map(\.clientId)).count == 1)
        // WatchLeads on one replica hears of a lead registered through the other (its poll notices
        // the write; the lead comes as stored).
        let heard = NIOLockedValueBox<[Intake_LeadChange]>([])
        a.otherReplicasChanged.withLockedValue { tell in tell = { changes in heard.withLockedValue { $0 += changes } } }
        let late = try await submit(b, source, email: "late@x.com", subject: "через другую реплику").lead
        for _ in 0..<30 where !heard.withLockedValue({ $0.contains { $0.lead?.id == late.id } }) {
            try await Task.sleep(for: .milliseconds(100))
        }
        let change = heard.withLockedValue { $0.first { $0.lead?.id == late.id } }
        #expect(change?.kind == "registered" && change?.lead?.subject == "через другую реплику")
        // A source changed through one replica reaches the other's memory (its poll notices the
        // write within a fraction of a second).
        var closed = source
        closed.enabled = false
        _ = try await b.updateSource(closed, now: 2)
        var seen = try await a.source(source.id)?.enabled
        for _ in 0..<30 where seen != false {
            try await Task.sleep(for: .milliseconds(100))
            seen = try await a.source(source.id)?.enabled
        }
        #expect(seen == false)
    }
}

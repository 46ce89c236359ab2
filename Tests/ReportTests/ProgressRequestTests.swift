import Foundation
import LeadwireAPI
import Messaging
import NIOConcurrencyHelpers
import StoreTestSupport
import Testing

@testable import ReportService

/// Progress requests on a real store with a fixed clock: recorded with the contractor's message,
/// answered line by line, overdue after their day.
@Suite struct ProgressRequestTests {
    func handedOverPlan() async throws -> (ReportStore, Report_Plan) {
        let db = ScratchDatabase("report.sqlite")
        let store = try ReportStore(path: db.path, schema: db.schema)
        var plan = Report_Plan()
        plan.title = "Кровля"
        plan.periodStart = "2026-10-01"
        plan.periodEnd = "2026-12-31"
        for (n, who) in [("L-2026-000001", "krovlya"), ("L-2026-000002", "krovlya"), ("L-2026-000003", "other")] {
            var l = Report_PlanLine()
            l.registrationNumber = n
            l.objectAddress = "ул. Ленина, 5"
            l.workKind = "ремонт кровли"
            l.volume = "10"
            l.unit = "м²"
            l.deadline = "2026-12-20"
            l.contractorId = who
            plan.lines.append(l)
        }
        var p = try await store.createPlan(plan, actor: "planner", now: 1)
        for a: Report_PlanAction in [.submit, .approveAsHead, .approveAsManagement, .handOver] {
            p = try await store.act(p.id, action: a, comment: "", actor: "boss", now: 2)
        }
        var c = Report_Contractor()
        c.id = "krovlya"
        c.name = "ООО «КровляСервис»"
        c.email = "works@krovlya.test"
        _ = try await store.putContractor(c, now: 3)
        return (store, p)
    }

    @Test func aRequestIsAnsweredLineByLineAndOverdueAfterItsDay() async throws {
        let (store, plan) = try await handedOverPlan()
        let (r, _) = try await store.requestProgress(
            plan: plan.id, contractor: "krovlya", lines: [], dueDate: "2026-12-01", note: "Нужны фото", actor: "control", now: 10)
        #expect(r.lineIds == plan.lines.filter { $0.contractorId == "krovlya" }.map(\.id))
        let message = try #require(try await store.messages.list(.init(), limit: 5).first)
        #expect(message.kind == "progress_requested" && message.recipient == "works@krovlya.test" && message.contractorID == "krovlya")
        #expect(message.body.hasPrefix("Здравствуйте, ООО «КровляСервис»!"))
        #expect(message.body.contains("не позднее 1 декабря 2026 г.") && message.body.contains("Нужны фото"))

        let dueDay = CalendarDate.dayNumber(2026, 12, 1)
        #expect(try await store.openProgressRequests(contractor: "krovlya", today: dueDay).map(\.overdue) == [false])
        #expect(try await store.openProgressRequests(contractor: "", today: dueDay + 1).map(\.overdue) == [true])

        _ = try await store.acknowledge(contractor: "krovlya", plan: plan.id, signer: "Иванов", now: 11)
        _ = try await store.reportProgress(contractor: "krovlya", plan: plan.id, line: r.lineIds[0], percent: 20, note: "", now: 12)
        let half = try await store.openProgressRequests(contractor: "krovlya", today: dueDay)
        #expect(half.map(\.answeredLineIds) == [[r.lineIds[0]]])
        _ = try await store.reportProgress(contractor: "krovlya", plan: plan.id, line: r.lineIds[1], percent: 10, note: "", now: 13)
        #expect(try await store.openProgressRequests(contractor: "krovlya", today: dueDay + 5).isEmpty)
    }

    @Test func linesMustBeTheContractorsOpenOnes() async throws {
        let (store, plan) = try await handedOverPlan()
        let others = plan.lines.filter { $0.contractorId == "other" }.map(\.id)
        await #expect(throws: ReportError.self) {
            _ = try await store.requestProgress(
                plan: plan.id, contractor: "krovlya", lines: others, dueDate: "2026-12-01", note: "", actor: "c", now: 10)
        }
        await #expect(throws: ReportError.self) {
            _ = try await store.requestProgress(
                plan: plan.id, contractor: "nobody", lines: [], dueDate: "2026-12-01", note: "", actor: "c", now: 10)
        }
        #expect(try await store.messages.list(.init(), limit: 5).isEmpty, "a refused request queues no message")
    }
}

/// Two report processes on one PostgreSQL schema (PostgreSQL pass only).
@Suite(.enabled(if: ScratchDatabase.onPostgres, "needs LEADWIRE_TEST_DATABASE_URL (scripts/test sets it)"))
struct ReportReplicaTests {
    /// A plan changed through one replica reaches the other's followers (through its poll).
    @Test func planChangesReachTheOtherReplica() async throws {
        let scratch = ScratchDatabase("report.sqlite")
        let a = try ReportStore(path: scratch.path, schema: scratch.schema)
        let b = try ReportStore(path: scratch.path, schema: scratch.schema)
        // Each has written once (the cursor starts at its first transaction).
        _ = try await a.createPlan(Report_Plan(), actor: "a", now: 1)
        _ = try await b.createPlan(Report_Plan(), actor: "b", now: 1)
        let heard = NIOLockedValueBox<[String]>([])
        a.otherReplicasChanged.withLockedValue { tell in
            tell = { plans in heard.withLockedValue { $0 += plans.map(\.title).filter { !$0.isEmpty } } }
        }
        var plan = Report_Plan()
        plan.title = "Кровля"
        _ = try await b.createPlan(plan, actor: "b", now: 2)
        for _ in 0..<30 where heard.withLockedValue({ $0 }).isEmpty { try await Task.sleep(for: .milliseconds(100)) }
        #expect(heard.withLockedValue { $0 } == ["Кровля"])
    }
}

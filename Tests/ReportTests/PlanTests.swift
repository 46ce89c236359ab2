import LeadwireAPI
import Testing

@testable import ReportService

func plan(_ state: Report_PlanState, lines: Int = 1) -> Report_Plan {
    var p = Report_Plan()
    p.id = "plan-1"
    p.state = state
    p.periodStart = "2026-10-01"
    p.periodEnd = "2026-12-31"
    p.lines = (0..<lines).map { i in
        var l = Report_PlanLine()
        l.id = "line-\(i + 1)"
        l.registrationNumber = "L-2026-00000\(i + 1)"
        l.objectAddress = "Lenina 1"
        l.workKind = "Install"
        l.volume = "10"
        l.unit = "m2"
        l.deadline = "2026-11-20"
        l.contractorId = i % 2 == 0 ? "ctr-a" : "ctr-b"
        return l
    }
    return p
}

@Suite struct PlanMachineTests {
    static let all: [Report_PlanState] = [.draft, .submitted, .headApproved, .final, .handedOver]
    static let actions: [Report_PlanAction] = [.submit, .approveAsHead, .approveAsManagement, .return, .handOver]

    /// Every (state, action) pair: exactly the legal ones move, to the right state; the rest are
    /// refused with FAILED_PRECONDITION naming the current state.
    @Test func everyTransition() {
        let legal: [Report_PlanState: [Report_PlanAction: Report_PlanState]] = [
            .draft: [.submit: .submitted],
            .submitted: [.approveAsHead: .headApproved, .return: .draft],
            .headApproved: [.approveAsManagement: .final, .return: .draft],
            .final: [.handOver: .handedOver],
            .handedOver: [:],
        ]
        for s in Self.all {
            for a in Self.actions {
                let r = PlanMachine.apply(a, to: plan(s), comment: "fix volumes")
                if let to = legal[s]![a] {
                    #expect((try? r.get().0) == to, "\(s) + \(a)")
                } else {
                    guard case .failure(let e) = r, case .wrongState(_, let cur, _, _) = e else {
                        Issue.record("\(s) + \(a) should be refused, got \(r)")
                        continue
                    }
                    #expect(cur == s)
                    #expect(e.rpcError.code == .failedPrecondition)
                    #expect(e.rpcError.message.contains(PlanMachine.name(s)))
                }
            }
        }
    }

    @Test func returnNeedsACommentAndSubmitNeedsLines() {
        guard case .failure(.invalid(_, let v)) = PlanMachine.apply(.return, to: plan(.submitted), comment: "  ") else {
            Issue.record("return without comment accepted")
            return
        }
        #expect(v.map(\.field) == ["comment"])
        guard case .failure(.precondition(let type, _, _)) = PlanMachine.apply(.submit, to: plan(.draft, lines: 0), comment: "") else {
            Issue.record("empty plan submitted")
            return
        }
        #expect(type == "PLAN_EMPTY")
    }

    @Test func periodDefaultsToTheQuarter() throws {
        let today = CalendarDate.dayNumber(2026, 11, 29)
        #expect(try PlanMachine.period(start: "", end: "", today: today).get() == ("2026-10-01", "2026-12-31"))
        #expect(try PlanMachine.period(start: "2026-02-10", end: "", today: today).get() == ("2026-02-10", "2026-03-31"))
        #expect(try PlanMachine.period(start: "2026-01-01", end: "2026-06-30", today: today).get() == ("2026-01-01", "2026-06-30"))
        if case .success = PlanMachine.period(start: "2026-05-01", end: "2026-04-01", today: today) {
            Issue.record("end before start accepted")
        }
        if case .success = PlanMachine.period(start: "", end: "2026-04-01", today: today) { Issue.record("end without start accepted") }
    }

    @Test func lineProblemsAreNamed() {
        var l = Report_PlanLine()
        l.volume = "-1"
        l.deadline = "2026-02-30"
        let fields = Set(PlanMachine.lineProblems([l]).map(\.field))
        #expect(
            fields == [
                "lines[0].registration_number", "lines[0].work_kind", "lines[0].object_address", "lines[0].contractor_id", "lines[0].unit",
                "lines[0].volume", "lines[0].deadline",
            ])
        #expect(PlanMachine.lineProblems(plan(.draft, lines: 3).lines).isEmpty)
    }

    @Test func actsAreCheckedAgainstTheirLine() {
        let p = plan(.handedOver)
        let today = CalendarDate.dayNumber(2026, 11, 29)
        var act = Report_CompletionAct()
        act.workDone = "Installed"
        act.signer = "P. Ivanov"
        act.volume = "10.5"
        act.startedOn = "2026-10-05"
        act.finishedOn = "2026-11-25"
        #expect(PlanMachine.actProblems(act, line: p.lines[0], plan: p, today: today).isEmpty)
        act.volume = "15"
        #expect(PlanMachine.actProblems(act, line: p.lines[0], plan: p, today: today).isEmpty)  // exactly 1.5x
        act.volume = "15.001"
        #expect(PlanMachine.actProblems(act, line: p.lines[0], plan: p, today: today).map(\.field) == ["act.volume"])
        act.volume = "0"
        act.startedOn = "2026-09-30"  // before the plan's period
        act.finishedOn = "2026-12-01"  // in the future
        #expect(
            Set(PlanMachine.actProblems(act, line: p.lines[0], plan: p, today: today).map(\.field)) == [
                "act.volume", "act.started_on", "act.finished_on",
            ])
        act.volume = "1"
        act.startedOn = "2026-11-20"
        act.finishedOn = "2026-11-10"
        #expect(
            PlanMachine.actProblems(act, line: p.lines[0], plan: p, today: today).map(\.description) == [
                "2026-11-10 is before started_on 2026-11-20"
            ])
        act.workDone = ""
        act.signer = ""
        act.finishedOn = "yesterday"
        #expect(
            Set(PlanMachine.actProblems(act, line: p.lines[0], plan: p, today: today).map(\.field)) == [
                "act.work_done", "act.signer", "act.finished_on",
            ])
    }

    @Test func compareFindsAddedRemovedAndChangedLines() {
        var a = plan(.draft, lines: 3)
        a.version = 1
        var b = a
        b.version = 2
        b.lines.remove(at: 1)
        b.lines[0].volume = "10.000"  // same number: not a change
        b.lines[1].deadline = "2026-12-01"
        b.lines[1].volume = "12"
        var added = Report_PlanLine()
        added.id = "line-9"
        b.lines.append(added)
        let d = PlanMachine.compare(a, b)
        #expect(d.fromVersion == 1 && d.toVersion == 2 && !d.titleChanged)
        #expect(d.changes.map(\.change) == ["changed", "added", "removed"])
        #expect(d.changes.map(\.lineId) == ["line-3", "line-9", "line-2"])
        #expect(d.changes[0].fields == ["volume", "deadline"])
    }

    @Test func contractorsSeeOnlyTheirLinesOfHandedOverPlans() {
        #expect(PlanMachine.view(plan(.final, lines: 3), for: "ctr-a") == nil)
        let v = PlanMachine.view(plan(.handedOver, lines: 3), for: "ctr-b")
        #expect(v?.plan?.lines.map(\.id) == ["line-2"])
        #expect(PlanMachine.view(plan(.handedOver, lines: 3), for: "ctr-z") == nil)
    }
}

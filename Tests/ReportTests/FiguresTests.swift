import LeadwireAPI
import Testing

@testable import ReportService

func event(
    _ id: String, _ kind: String, lead: String, at: Int64, status: String = "", owner: String = "", rating: Int32 = 0,
    source: String = "src-1", region: String = "North", deadline: Int64 = 0, received: Int64 = 0, publicComment: Bool = false
) -> Report_LeadEvent {
    var e = Report_LeadEvent()
    e.eventId = id
    e.kind = kind
    e.leadId = lead
    e.atMs = at
    e.status = status
    e.ownerId = owner
    e.rating = rating
    e.sourceId = source
    e.channel = "web_form"
    e.category = "repair"
    e.replyDeadlineMs = deadline
    e.receivedAtMs = received
    e.publicComment = publicComment
    var f = Report_FieldValue()
    f.name = "Region"
    f.value = region
    e.fields = [f]
    return e
}

/// Applies events in order and sums the counters, as the store does.
func ledger(_ events: [Report_LeadEvent]) -> [String: Int64] {
    var records = [String: LeadRecord]()
    var counters = [String: Int64]()
    for e in events {
        let (r, deltas) = LeadLedger.apply(e, to: records[e.leadId])
        records[e.leadId] = r
        for d in deltas { counters["\(d.dim)|\(d.key)|\(d.metric)", default: 0] += d.delta }
    }
    return counters.filter { $0.value != 0 }
}

let day0: Int64 = Int64(CalendarDate.dayNumber(2026, 11, 2)) * 86_400_000  // a Monday
let hourMs: Int64 = 3_600_000

@Suite struct LeadLedgerTests {
    @Test func statusCountersFollowTheLeadAcrossEveryDimension() {
        let c = ledger([
            event("e1", "created", lead: "l1", at: day0, status: "new", received: day0),
            event("e2", "created", lead: "l2", at: day0 + 1, status: "new", source: "src-2", region: "South", received: day0),
            event("e3", "state_changed", lead: "l1", at: day0 + hourMs, status: "accepted", owner: "anna"),
        ])
        #expect(c["all||status:new"] == 1)
        #expect(c["all||status:accepted"] == 1)
        #expect(c["source|src-1|status:accepted"] == 1)
        #expect(c["source|src-1|status:new"] == nil)  // moved out, not double counted
        #expect(c["field:Region|South|status:new"] == 1)
        #expect(c["owner|anna|status:accepted"] == 1)
        #expect(c["owner||status:new"] == 1)  // l2 has no owner yet
        #expect(c["all||funnel:accepted"] == 1)
    }

    @Test func reactionTimeShareWithinDeadlineAndKpis() {
        let c = ledger([
            event("a1", "created", lead: "l1", at: day0, status: "new", deadline: day0 + 2 * hourMs, received: day0),
            event("a2", "commented", lead: "l1", at: day0 + hourMs, owner: "anna"),  // internal: not a reaction
            event("a3", "state_changed", lead: "l1", at: day0 + hourMs, status: "accepted", owner: "anna"),
            event("b1", "created", lead: "l2", at: day0, status: "new", deadline: day0 + hourMs, received: day0),
            event("b2", "commented", lead: "l2", at: day0 + 3 * hourMs, owner: "boris", publicComment: true),
            event("b3", "state_changed", lead: "l2", at: day0 + 4 * hourMs, status: "rejected", owner: "boris"),
            event("a4", "rated", lead: "l1", at: day0 + 5 * hourMs, rating: 4),
            event("a5", "rated", lead: "l1", at: day0 + 6 * hourMs, rating: 2),  // re-rating replaces
            event("a6", "state_changed", lead: "l1", at: day0 + 7 * hourMs, status: "processed", owner: "anna"),
        ])
        #expect(c["all||reaction:n"] == 2)
        #expect(c["all||reaction:ms"] == 4 * hourMs)  // 1 h + 3 h
        #expect(c["all||reaction:on_time"] == 1)
        #expect(c["person|anna|kpi:handled"] == 1 && c["person|anna|kpi:on_time"] == 1)
        #expect(c["person|boris|kpi:handled"] == 1 && c["person|boris|kpi:on_time"] == nil)
        #expect(c["person|anna|kpi:ratings"] == 1 && c["person|anna|kpi:rating_sum"] == 2)
        #expect(c["all||funnel:accepted"] == 1 && c["all||funnel:processed"] == 1)
        #expect(c["all||status:processed"] == 1 && c["all||status:rejected"] == 1)
    }

    @Test func aLateOlderEventDoesNotUndoANewerState() {
        let c = ledger([
            event("e1", "created", lead: "l1", at: day0, status: "new", received: day0),
            event("e3", "state_changed", lead: "l1", at: day0 + 2 * hourMs, status: "rejected"),
            event("e2", "state_changed", lead: "l1", at: day0 + hourMs, status: "accepted"),
        ])
        #expect(c["all||status:rejected"] == 1)
        #expect(c["all||status:accepted"] == nil)
    }

    @Test func periodsFoldDaysIntoWeeksMonthsAndQuarters() {
        let d = CalendarDate.dayNumber(2026, 11, 2)
        #expect(LeadLedger.bucket(d + 6, .week) == d)  // Sunday -> Monday before
        #expect(LeadLedger.bucket(d + 7, .week) == d + 7)
        #expect(LeadLedger.bucket(d + 20, .month) == CalendarDate.dayNumber(2026, 11, 1))
        #expect(LeadLedger.bucket(d, .quarter) == CalendarDate.dayNumber(2026, 10, 1))
        let rows = LeadLedger.rows(
            [("src-1", d, "status:new", 2), ("src-1", d + 8, "status:accepted", 3), ("src-2", d, "status:new", 1)], period: .month)
        #expect(rows.map(\.key) == ["src-1", "src-2"])
        #expect(rows[0].period == "2026-11-01" && rows[0].received == 5 && rows[0].new == 2 && rows[0].accepted == 3)
        let weekly = LeadLedger.rows([("", d, "status:new", 2), ("", d + 8, "status:new", 3)], period: .week)
        #expect(weekly.map(\.period) == ["2026-11-02", "2026-11-09"])
        #expect(LeadLedger.rows([("", d, "status:new", 2), ("", d + 80, "status:new", 3)], period: .all).map(\.received) == [5])
    }

    @Test func eventProblemsAreNamed() {
        var e = Report_LeadEvent()
        e.kind = "exploded"
        e.status = "lost"
        #expect(
            Set(LeadLedger.problems(e, path: "events[3]").map(\.0)) == [
                "events[3].event_id", "events[3].lead_id", "events[3].kind", "events[3].status", "events[3].at_ms",
            ])
        var r = event("x", "rated", lead: "l", at: 5, rating: 6)
        #expect(LeadLedger.problems(r, path: "e").map(\.0) == ["e.rating"])
        r.rating = 5
        #expect(LeadLedger.problems(r, path: "e").isEmpty)
    }
}

@Suite struct PlanFiguresTests {
    @Test func plannedVersusActualAndLateness() {
        var p = plan(.handedOver, lines: 4)  // lines 1,3 -> ctr-a; 2,4 -> ctr-b; deadline 2026-11-20
        var act = Report_CompletionAct()
        act.volume = "8.5"
        act.finishedOn = "2026-11-23"  // 3 days late
        var e = Report_LineExecution()
        e.closed = true
        e.act = act
        p.lines[0].execution = e
        act.volume = "10"
        act.finishedOn = "2026-11-19"
        e.act = act
        p.lines[1].execution = e
        let today = CalendarDate.dayNumber(2026, 11, 29)  // open lines are 9 days late
        let rows = Figures.planRows([p], contractor: "", fromDay: nil, toDay: nil, today: today)
        #expect(rows.map(\.contractorId) == ["ctr-a", "ctr-b"])
        #expect(rows[0].lines == 2 && rows[0].completed == 1 && rows[0].notCompleted == 1)
        #expect(rows[0].plannedVolume == "20.000" && rows[0].actualVolume == "8.500")
        #expect(rows[0].latenessDays == 3 + 9 && rows[0].lateLines == 2)
        #expect(rows[1].latenessDays == 9 && rows[1].lateLines == 1 && rows[1].actualVolume == "10.000")
        #expect(Figures.planRows([p], contractor: "ctr-b", fromDay: nil, toDay: nil, today: today).count == 1)
        #expect(Figures.planRows([p], contractor: "", fromDay: CalendarDate.dayNumber(2027, 1, 1), toDay: nil, today: today).isEmpty)
    }

    @Test func controlListsOverdueAndStaleLines() {
        var p = plan(.handedOver, lines: 2)
        let now = Int64(CalendarDate.dayNumber(2026, 11, 29)) * 86_400_000
        var step = Report_PlanStep()
        step.action = "handed_over"
        step.atMs = now - 10 * 86_400_000
        p.history = [step]
        p.lines[1].deadline = "2026-12-31"
        var e = Report_LineExecution()
        e.progressAtMs = now - 2 * 86_400_000
        p.lines[1].execution = e
        let items = Figures.control([p], contractor: "", staleDays: 7, now: now)
        #expect(items.count == 1)
        #expect(
            items[0].line?.id == "line-1" && items[0].overdue && items[0].daysOverdue == 9 && items[0].stale
                && items[0].daysSinceProgress == 10)
        #expect(Figures.control([p], contractor: "", staleDays: 1, now: now).count == 2)
    }

    @Test func csvQuotesWhatNeedsQuoting() {
        #expect(Figures.csvLine(["a", "b,c", "say \"hi\"", "multi\nline"]) == "a,\"b,c\",\"say \"\"hi\"\"\",\"multi\nline\"\r\n")
        #expect(Figures.iso(0) == "1970-01-01T00:00:00.000Z")
        #expect(Figures.iso(day0 + 3_723_045) == "2026-11-02T01:02:03.045Z")
    }
}

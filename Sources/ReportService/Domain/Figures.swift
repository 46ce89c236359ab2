import LeadwireAPI

/// Plan-vs-fact figures, execution control and CSV rendering, as pure functions of the plans and
/// the clock.
enum Figures {
    /// Per plan and contractor: lines completed or not, planned vs actual volume, lateness in days.
    /// Open lines past their deadline count as late up to `today`.
    static func planRows(_ plans: [Report_Plan], contractor: String, fromDay: Int?, toDay: Int?, today: Int) -> [Report_PlanReportRow] {
        var out = [Report_PlanReportRow]()
        for p in plans {
            if let f = fromDay, let end = CalendarDate.dayNumber(p.periodEnd), end < f { continue }
            if let t = toDay, let start = CalendarDate.dayNumber(p.periodStart), start > t { continue }
            let contractors = Array(Set(p.lines.map(\.contractorId))).sorted()
            for c in contractors where contractor.isEmpty || c == contractor {
                var row = Report_PlanReportRow()
                row.planId = p.id
                row.periodStart = p.periodStart
                row.contractorId = c
                var planned: Int64 = 0
                var actual: Int64 = 0
                for l in p.lines where l.contractorId == c {
                    row.lines += 1
                    planned += FixedPoint.parse(l.volume, places: PlanMachine.volumePlaces) ?? 0
                    let deadline = CalendarDate.dayNumber(l.deadline) ?? Int.max
                    if let e = l.execution, e.closed, let act = e.act {
                        row.completed += 1
                        actual += FixedPoint.parse(act.volume, places: PlanMachine.volumePlaces) ?? 0
                        if let done = CalendarDate.dayNumber(act.finishedOn), done > deadline {
                            row.latenessDays += Int64(done - deadline)
                            row.lateLines += 1
                        }
                    } else {
                        row.notCompleted += 1
                        if today > deadline {
                            row.latenessDays += Int64(today - deadline)
                            row.lateLines += 1
                        }
                    }
                }
                row.plannedVolume = FixedPoint.format(planned, places: PlanMachine.volumePlaces)
                row.actualVolume = FixedPoint.format(actual, places: PlanMachine.volumePlaces)
                out.append(row)
            }
        }
        return out
    }

    /// Open lines past their deadline, or with no progress for `staleDays` (counted from the last
    /// progress, else from the hand-over).
    static func control(_ plans: [Report_Plan], contractor: String, staleDays: Int, now: Int64) -> [Report_ControlItem] {
        let today = CalendarDate.day(ofMillis: now)
        var out = [Report_ControlItem]()
        for p in plans where p.state == .handedOver {
            let handedAt = p.history.last(where: { $0.action == "handed_over" })?.atMs ?? p.updatedAtMs
            for l in p.lines where (contractor.isEmpty || l.contractorId == contractor) && l.execution?.closed != true {
                var item = Report_ControlItem()
                item.planId = p.id
                item.line = l
                if let d = CalendarDate.dayNumber(l.deadline), today > d {
                    item.overdue = true
                    item.daysOverdue = Int32(today - d)
                }
                let last = max(l.execution?.progressAtMs ?? 0, handedAt)
                let idle = Int((now - last) / 86_400_000)
                if idle >= staleDays {
                    item.stale = true
                    item.daysSinceProgress = Int32(idle)
                }
                if item.overdue || item.stale { out.append(item) }
            }
        }
        return out.sorted {
            ($0.line?.contractorId ?? "", $0.planId, $0.line?.id ?? "") < ($1.line?.contractorId ?? "", $1.planId, $1.line?.id ?? "")
        }
    }

    // MARK: CSV (RFC 4180)

    static func csvLine(_ fields: [String]) -> String {
        fields.map(CSV.field).joined(separator: ",") + "\r\n"
    }

    static func iso(_ ms: Int64) -> String {
        let day = CalendarDate.day(ofMillis: ms)
        let rem = ms - Int64(day) * 86_400_000
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let ms3 = rem % 1000
        return
            "\(CalendarDate.format(day: day))T\(two(rem / 3_600_000)):\(two(rem / 60_000 % 60)):\(two(rem / 1000 % 60)).\(ms3 < 10 ? "00" : ms3 < 100 ? "0" : "")\(ms3)Z"
    }
}

import LeadwireAPI
import Wire

/// Everything the report service refuses, each mapped to the status a caller can act on.
enum ReportError: Error, RPCErrorConvertible, Equatable {
    case invalid(String, [RPCError.FieldViolation])
    case notFound(String)
    case wrongState(plan: String, state: Report_PlanState, action: String, allowedIn: [Report_PlanState])
    case staleVersion(plan: String, expected: Int32, actual: Int32)
    case precondition(type: String, subject: String, message: String)

    var rpcError: RPCError {
        switch self {
        case .invalid(let summary, let violations):
            return .invalidArgument(summary, violations: violations)
        case .notFound(let what):
            return RPCError(.notFound, what)
        case .wrongState(let plan, let state, let action, let allowed):
            let names = allowed.map(PlanMachine.name).joined(separator: " or ")
            return .failedPrecondition(
                "plan \(plan) is \(PlanMachine.name(state)); \(action) applies only to a plan that is \(names)",
                violations: [.init(type: "PLAN_STATE", subject: "plan:\(plan)", description: "current state: \(PlanMachine.name(state))")])
        case .staleVersion(let plan, let expected, let actual):
            return .failedPrecondition(
                "plan \(plan) is at version \(actual), not \(expected): someone edited it; read it again and reapply your change",
                violations: [.init(type: "STALE_VERSION", subject: "plan:\(plan)", description: "current version \(actual)")])
        case .precondition(let type, let subject, let message):
            return .failedPrecondition(message, violations: [.init(type: type, subject: subject, description: message)])
        }
    }
}

/// The plan's approval as a pure state machine: draft -> submitted -> head approved -> final ->
/// handed over; either approver may return it to an editable draft with a comment.
enum PlanMachine {
    static func name(_ s: Report_PlanState) -> String {
        switch s {
        case .draft: return "a draft"
        case .submitted: return "submitted"
        case .headApproved: return "approved by the department head"
        case .final: return "final"
        case .handedOver: return "handed over"
        default: return "in an unknown state"
        }
    }

    static func actionName(_ a: Report_PlanAction) -> String {
        switch a {
        case .submit: return "submitting"
        case .approveAsHead: return "the department head's approval"
        case .approveAsManagement: return "management's approval"
        case .return: return "returning for correction"
        case .handOver: return "handing over"
        default: return "this action"
        }
    }

    /// States each action may start from, and where it leads.
    static func transition(_ action: Report_PlanAction) -> (from: [Report_PlanState], to: Report_PlanState, step: String)? {
        switch action {
        case .submit: return ([.draft], .submitted, "submitted")
        case .approveAsHead: return ([.submitted], .headApproved, "head_approved")
        case .approveAsManagement: return ([.headApproved], .final, "management_approved")
        case .return: return ([.submitted, .headApproved], .draft, "returned")
        case .handOver: return ([.final], .handedOver, "handed_over")
        default: return nil
        }
    }

    /// The next state, or the refusal. `plan` must have lines to leave the draft.
    static func apply(_ action: Report_PlanAction, to plan: Report_Plan, comment: String) -> Result<(Report_PlanState, String), ReportError>
    {
        guard let t = transition(action) else {
            return .failure(
                .invalid(
                    "unknown action",
                    [.init(field: "action", description: "one of SUBMIT, APPROVE_AS_HEAD, APPROVE_AS_MANAGEMENT, RETURN, HAND_OVER")]))
        }
        guard t.from.contains(plan.state) else {
            return .failure(.wrongState(plan: plan.id, state: plan.state, action: actionName(action), allowedIn: t.from))
        }
        if action == .return && comment.trimmingSpaces.isEmpty {
            return .failure(
                .invalid("a returned plan needs a comment", [.init(field: "comment", description: "required: say what to correct")]))
        }
        if action == .submit && plan.lines.isEmpty {
            return .failure(
                .precondition(
                    type: "PLAN_EMPTY", subject: "plan:\(plan.id)", message: "plan \(plan.id) has no lines; add lines before submitting"))
        }
        return .success((t.to, t.step))
    }

    // MARK: Periods

    /// The quarter containing a day: first and last day numbers.
    static func quarter(containing day: Int) -> (Int, Int) {
        let c = CalendarDate.civil(day: day)
        let firstMonth = (c.month - 1) / 3 * 3 + 1
        let start = CalendarDate.dayNumber(c.year, firstMonth, 1)
        let next = firstMonth + 3 > 12 ? CalendarDate.dayNumber(c.year + 1, 1, 1) : CalendarDate.dayNumber(c.year, firstMonth + 3, 1)
        return (start, next - 1)
    }

    /// The plan's period from the request: both given, or the quarter of the start (or of today).
    static func period(start: String, end: String, today: Int) -> Result<(String, String), ReportError> {
        if start.isEmpty && !end.isEmpty {
            return .failure(
                .invalid(
                    "period_end without period_start", [.init(field: "period_start", description: "required when period_end is given")]))
        }
        var s = today
        if !start.isEmpty {
            guard let d = CalendarDate.dayNumber(start) else {
                return .failure(.invalid("bad period", [.init(field: "period_start", description: "not a date YYYY-MM-DD: \"\(start)\"")]))
            }
            s = d
        }
        if end.isEmpty {
            let q = quarter(containing: s)
            return .success((CalendarDate.format(day: start.isEmpty ? q.0 : s), CalendarDate.format(day: q.1)))
        }
        guard let e = CalendarDate.dayNumber(end) else {
            return .failure(.invalid("bad period", [.init(field: "period_end", description: "not a date YYYY-MM-DD: \"\(end)\"")]))
        }
        guard e >= s else {
            return .failure(.invalid("bad period", [.init(field: "period_end", description: "\(end) is before period_start \(start)")]))
        }
        return .success((CalendarDate.format(day: s), CalendarDate.format(day: e)))
    }

    // MARK: Lines and acts

    static let volumePlaces = 3

    static func lineProblems(_ lines: [Report_PlanLine]) -> [RPCError.FieldViolation] {
        var out = [RPCError.FieldViolation]()
        var ids = Set<String>()
        for (i, l) in lines.enumerated() {
            let p = "lines[\(i)]"
            if !l.id.isEmpty && !ids.insert(l.id).inserted { out.append(.init(field: "\(p).id", description: "\(l.id) appears twice")) }
            if l.registrationNumber.trimmingSpaces.isEmpty {
                out.append(.init(field: "\(p).registration_number", description: "required: the accepted lead the work is for"))
            }
            if l.workKind.trimmingSpaces.isEmpty { out.append(.init(field: "\(p).work_kind", description: "required")) }
            if l.objectAddress.trimmingSpaces.isEmpty { out.append(.init(field: "\(p).object_address", description: "required")) }
            if l.contractorId.trimmingSpaces.isEmpty { out.append(.init(field: "\(p).contractor_id", description: "required")) }
            if l.unit.trimmingSpaces.isEmpty { out.append(.init(field: "\(p).unit", description: "required, e.g. \"m2\" or \"pcs\"")) }
            if let v = FixedPoint.parse(l.volume, places: volumePlaces) {
                if v <= 0 { out.append(.init(field: "\(p).volume", description: "must be above 0, got \(l.volume)")) }
            } else {
                out.append(.init(field: "\(p).volume", description: "not a decimal with at most 3 places: \"\(l.volume)\""))
            }
            if CalendarDate.dayNumber(l.deadline) == nil {
                out.append(.init(field: "\(p).deadline", description: "not a date YYYY-MM-DD: \"\(l.deadline)\""))
            }
        }
        return out
    }

    /// Checks an act against its line and plan. `today` is a day number.
    static func actProblems(_ act: Report_CompletionAct, line: Report_PlanLine, plan: Report_Plan, today: Int) -> [RPCError.FieldViolation]
    {
        var out = [RPCError.FieldViolation]()
        if act.workDone.trimmingSpaces.isEmpty {
            out.append(.init(field: "act.work_done", description: "required: what was actually done"))
        }
        if act.signer.trimmingSpaces.isEmpty {
            out.append(.init(field: "act.signer", description: "required: who signs for the contractor"))
        }
        let planned = FixedPoint.parse(line.volume, places: volumePlaces) ?? 0
        if let v = FixedPoint.parse(act.volume, places: volumePlaces) {
            if v <= 0 { out.append(.init(field: "act.volume", description: "must be above 0, got \(act.volume)")) }
            if v * 2 > planned * 3 {
                out.append(
                    .init(
                        field: "act.volume",
                        description:
                            "\(act.volume) \(line.unit) is more than 1.5 times the planned \(line.volume) \(line.unit); agree a new line for extra work"
                    ))
            }
        } else {
            out.append(.init(field: "act.volume", description: "not a decimal with at most 3 places: \"\(act.volume)\""))
        }
        let start = CalendarDate.dayNumber(act.startedOn)
        let end = CalendarDate.dayNumber(act.finishedOn)
        if start == nil { out.append(.init(field: "act.started_on", description: "not a date YYYY-MM-DD: \"\(act.startedOn)\"")) }
        if end == nil { out.append(.init(field: "act.finished_on", description: "not a date YYYY-MM-DD: \"\(act.finishedOn)\"")) }
        if let s = start, let e = end, s > e {
            out.append(.init(field: "act.finished_on", description: "\(act.finishedOn) is before started_on \(act.startedOn)"))
        }
        if let e = end, e > today { out.append(.init(field: "act.finished_on", description: "\(act.finishedOn) is in the future")) }
        if let s = start, let ps = CalendarDate.dayNumber(plan.periodStart), s < ps {
            out.append(
                .init(field: "act.started_on", description: "\(act.startedOn) is before the plan's period (from \(plan.periodStart))"))
        }
        return out
    }

    // MARK: Versions

    static func compare(_ before: Report_Plan, _ after: Report_Plan) -> Report_ComparePlanResponse {
        var r = Report_ComparePlanResponse()
        r.fromVersion = before.version
        r.toVersion = after.version
        r.titleChanged = before.title != after.title
        let old = Dictionary(before.lines.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let new = Dictionary(after.lines.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for l in after.lines {
            var c = Report_LineChange()
            c.lineId = l.id
            c.after = l
            if let o = old[l.id] {
                let fields = changedFields(o, l)
                guard !fields.isEmpty else { continue }
                c.change = "changed"
                c.before = o
                c.fields = fields
            } else {
                c.change = "added"
            }
            r.changes.append(c)
        }
        for l in before.lines where new[l.id] == nil {
            var c = Report_LineChange()
            c.change = "removed"
            c.lineId = l.id
            c.before = l
            r.changes.append(c)
        }
        return r
    }

    static func changedFields(_ a: Report_PlanLine, _ b: Report_PlanLine) -> [String] {
        var f = [String]()
        if a.registrationNumber != b.registrationNumber { f.append("registration_number") }
        if a.client != b.client { f.append("client") }
        if a.objectAddress != b.objectAddress { f.append("object_address") }
        if a.workKind != b.workKind { f.append("work_kind") }
        if FixedPoint.parse(a.volume, places: volumePlaces) != FixedPoint.parse(b.volume, places: volumePlaces) { f.append("volume") }
        if a.unit != b.unit { f.append("unit") }
        if a.deadline != b.deadline { f.append("deadline") }
        if a.contractorId != b.contractorId { f.append("contractor_id") }
        return f
    }

    /// The plan as one contractor sees it: only their lines, and only once handed over.
    static func view(_ plan: Report_Plan, for contractor: String) -> Report_WorkPlan? {
        guard plan.state == .handedOver else { return nil }
        let lines = plan.lines.filter { $0.contractorId == contractor }
        guard !lines.isEmpty else { return nil }
        var p = plan
        p.lines = lines
        p.acknowledgements = plan.acknowledgements.filter { $0.contractorId == contractor }
        var w = Report_WorkPlan()
        w.acknowledgement = p.acknowledgements.first
        w.plan = p
        return w
    }
}

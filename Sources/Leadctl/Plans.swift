import ArgumentParser
import LeadwireAPI
import Wire

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Service plans: build, approve, hand over.",
        subcommands: [Create.self, List.self, Show.self, Step.self, Diff.self, AskProgress.self])

    struct AskProgress: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ask-progress",
            abstract: "Ask a contractor how lines of a handed-over plan stand (sent on their stream and by e-mail).")
        @OptionGroup var c: Connection
        @Argument(help: "The plan (plan-3).") var plan: String
        @Option(help: "The contractor asked.") var contractor: String
        @Option(name: .customLong("line"), help: "A line id (repeatable); none = all the contractor's open lines.") var lines: [String] = []
        @Option(help: "The answer is due by this date, YYYY-MM-DD.") var due: String
        @Option(help: "A note for the contractor.") var note: String = ""
        func run() async throws {
            var req = Report_RequestProgressRequest()
            req.planId = plan
            req.contractorId = contractor
            req.lineIds = lines
            req.dueDate = due
            req.note = note
            let client = try c.reportClient()
            let r = try await call { try await client.requestProgress(req, options: c.options) }
            print("\(r.id): \(r.lineIds.joined(separator: ", ")) of \(r.planId) asked of \(r.contractorId), due \(r.dueDate)")
        }
    }

    /// "NUMBER;ADDRESS;WORK;VOLUME;UNIT;DEADLINE;CONTRACTOR[;CLIENT]".
    static func line(_ s: String) throws -> Report_PlanLine {
        let p = s.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard p.count == 7 || p.count == 8 else {
            throw ValidationError("--line takes NUMBER;ADDRESS;WORK;VOLUME;UNIT;DEADLINE;CONTRACTOR[;CLIENT], got \"\(s)\"")
        }
        var l = Report_PlanLine()
        l.registrationNumber = p[0]
        l.objectAddress = p[1]
        l.workKind = p[2]
        l.volume = p[3]
        l.unit = p[4]
        l.deadline = p[5]
        l.contractorId = p[6]
        if p.count == 8 { l.client = p[7] }
        return l
    }

    static func state(_ s: Report_PlanState) -> String { short(s).replacingUnderscores }

    static func printPlan(_ p: Report_Plan) {
        print("\(p.id) \"\(p.title)\" — \(state(p.state)), version \(p.version), \(p.periodStart)..\(p.periodEnd)")
        printTable(
            ["line", "lead", "address", "work", "volume", "deadline", "contractor", "progress", "act"],
            p.lines.map { l in
                let e = l.execution
                return [
                    l.id, l.registrationNumber, l.objectAddress, l.workKind, "\(l.volume) \(l.unit)", l.deadline, l.contractorId,
                    e.map { "\($0.progressPercent)%" } ?? "", e?.act.map { "\($0.volume) done \($0.finishedOn)" } ?? "",
                ]
            })
        for a in p.acknowledgements { print("signed by \(a.contractorId): \(a.signer) at \(when(a.atMs))") }
        for h in p.history { print("  \(when(h.atMs)) \(h.actor): \(h.action)\(h.comment.isEmpty ? "" : " — \(h.comment)")") }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a draft plan from accepted leads.")
        @OptionGroup var c: Connection
        @Option(help: "The plan's title.") var title: String
        @Option(help: "The department it belongs to.") var department: String = ""
        @Option(name: .customLong("period-start"), help: "First day, YYYY-MM-DD (default: this quarter).") var periodStart: String = ""
        @Option(name: .customLong("period-end"), help: "Last day, YYYY-MM-DD (default: this quarter).") var periodEnd: String = ""
        @Option(name: .customLong("line"), help: "NUMBER;ADDRESS;WORK;VOLUME;UNIT;DEADLINE;CONTRACTOR[;CLIENT] (repeatable).") var lines:
            [String] = []

        func run() async throws {
            var req = Report_CreatePlanRequest()
            req.title = title
            req.department = department
            req.periodStart = periodStart
            req.periodEnd = periodEnd
            req.lines = try lines.map(PlanCommand.line)
            let client = try c.reportClient()
            let p = try await call { try await client.createPlan(req, options: c.options) }
            PlanCommand.printPlan(p)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List plans.")
        @OptionGroup var c: Connection
        @Flag(help: "Print CSV instead of a table.") var csv = false
        func run() async throws {
            let client = try c.reportClient()
            let r = try await call { try await client.listPlans(Report_ListPlansRequest(), options: c.options) }
            printTable(
                ["id", "title", "state", "version", "period", "lines"],
                r.plans.map {
                    [
                        $0.id, $0.title, PlanCommand.state($0.state), "\($0.version)", "\($0.periodStart)..\($0.periodEnd)",
                        "\($0.lines.count)",
                    ]
                }, csv: csv)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a plan with its lines, signatures and history.")
        @OptionGroup var c: Connection
        @Argument(help: "The plan id.") var id: String
        @Option(help: "An earlier version (0 = the current one).") var version: Int32 = 0
        func run() async throws {
            var req = Report_GetPlanRequest()
            req.planId = id
            req.version = version
            let client = try c.reportClient()
            PlanCommand.printPlan(try await call { try await client.getPlan(req, options: c.options) })
        }
    }

    struct Step: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "step", abstract: "Move a plan: submit, approve-head, approve-management, return (with --comment), hand-over.")
        @OptionGroup var c: Connection
        @Argument(help: "submit, approve-head, approve-management, return, hand-over.") var action: String
        @Argument(help: "The plan id.") var id: String
        @Option(help: "Why (required to return a plan for correction).") var comment: String = ""

        func run() async throws {
            var req = Report_PlanActionRequest()
            req.planId = id
            req.comment = comment
            switch action {
            case "submit": req.action = .submit
            case "approve-head": req.action = .approveAsHead
            case "approve-management": req.action = .approveAsManagement
            case "return": req.action = .return
            case "hand-over": req.action = .handOver
            default: throw ValidationError("unknown step \"\(action)\"")
            }
            let client = try c.reportClient()
            let p = try await call { try await client.actOnPlan(req, options: c.options) }
            print("\(p.id): \(PlanCommand.state(p.state))")
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What changed from the previous version.")
        @OptionGroup var c: Connection
        @Argument(help: "The plan id.") var id: String
        @Option(help: "The version to compare with its predecessor (0 = the current one).") var version: Int32 = 0
        func run() async throws {
            var req = Report_ComparePlanRequest()
            req.planId = id
            req.version = version
            let client = try c.reportClient()
            let d = try await call { try await client.comparePlan(req, options: c.options) }
            print("version \(d.fromVersion) -> \(d.toVersion)\(d.titleChanged ? " (title changed)" : "")")
            for ch in d.changes { print("  \(ch.change) \(ch.lineId) \(ch.fields.joined(separator: ", "))") }
        }
    }
}

extension String {
    fileprivate var replacingUnderscores: String { String(map { $0 == "_" ? " " : $0 }) }
}

struct ContractorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contractor", abstract: "What contractors do: read plans, sign, report progress, submit acts.",
        subcommands: [Plans.self, Ack.self, Progress.self, Act.self, Set.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A contractor's name, e-mail, phone and language for messages.")
        @OptionGroup var c: Connection
        @Argument(help: "The contractor id.") var id: String
        @Option(help: "The name letters are addressed to.") var name: String = ""
        @Option(help: "Where progress requests are mailed.") var email: String = ""
        @Option(help: "Phone (E.164).") var phone: String = ""
        @Option(help: "ru or en; empty = the deployment's.") var locale: String = ""
        func run() async throws {
            var req = Report_Contractor()
            req.id = id
            req.name = name
            req.email = email
            req.phone = phone
            req.locale = locale
            let client = try c.reportClient()
            let r = try await call { try await client.putContractor(req, options: c.options) }
            print("\(r.id) stored\(r.email.isEmpty ? "" : ", mail to \(r.email)")")
        }
    }

    struct Plans: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The plans handed over to a contractor, with their lines.")
        @OptionGroup var c: Connection
        @Option(help: "Needed with a staff token; a contractor token implies its own.") var contractor: String = ""
        func run() async throws {
            var req = Report_ContractorRequest()
            req.contractorId = contractor
            let client = try c.reportClient()
            let r = try await call { try await client.listWorkPlans(req, options: c.options) }
            if r.plans.isEmpty { print("(no plans handed over)") }
            for w in r.plans {
                PlanCommand.printPlan(w.plan ?? Report_Plan())
                print("")
            }
        }
    }

    struct Ack: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sign for receiving a plan.")
        @OptionGroup var c: Connection
        @Argument(help: "The plan id.") var plan: String
        @Option(help: "Who signs, by name.") var signer: String
        @Option(help: "Needed with a staff token; a contractor token implies its own.") var contractor: String = ""
        func run() async throws {
            var req = Report_AcknowledgeRequest()
            req.planId = plan
            req.signer = signer
            req.contractorId = contractor
            let client = try c.reportClient()
            let w = try await call { try await client.acknowledge(req, options: c.options) }
            print("\(plan) signed by \(w.acknowledgement?.signer ?? "") at \(when(w.acknowledgement?.atMs ?? 0))")
        }
    }

    struct Progress: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Report intermediate progress on a plan line.")
        @OptionGroup var c: Connection
        @Argument(help: "The plan id.") var plan: String
        @Argument(help: "The line id.") var line: String
        @Option(help: "Share done, 0 to 100.") var percent: Int32
        @Option(help: "What was done or what holds it up.") var note: String = ""
        @Option(help: "Needed with a staff token; a contractor token implies its own.") var contractor: String = ""
        func run() async throws {
            var req = Report_ReportProgressRequest()
            req.planId = plan
            req.lineId = line
            req.percent = percent
            req.note = note
            req.contractorId = contractor
            let client = try c.reportClient()
            let l = try await call { try await client.reportProgress(req, options: c.options) }
            print("\(l.id): \(l.execution?.progressPercent ?? 0)%")
        }
    }

    struct Act: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Submit the completion act for a line.")
        @OptionGroup var c: Connection
        @Argument(help: "The plan id.") var plan: String
        @Argument(help: "The line id.") var line: String
        @Option(help: "The work actually done.") var work: String
        @Option(help: "The volume done, a decimal in the line's unit.") var volume: String
        @Option(help: "First day of work, YYYY-MM-DD.") var started: String
        @Option(help: "Last day of work, YYYY-MM-DD.") var finished: String
        @Option(help: "Who signs the act, by name.") var signer: String
        @Option(help: "Needed with a staff token; a contractor token implies its own.") var contractor: String = ""
        func run() async throws {
            var a = Report_CompletionAct()
            a.planId = plan
            a.lineId = line
            a.workDone = work
            a.volume = volume
            a.startedOn = started
            a.finishedOn = finished
            a.signer = signer
            a.contractorId = contractor
            var req = Report_SubmitActRequest()
            req.act = a
            let client = try c.reportClient()
            let l = try await call { try await client.submitAct(req, options: c.options) }
            print("\(l.id): closed with \(l.execution?.act?.volume ?? "") \(l.unit)")
        }
    }
}

struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Figures for dashboards, as tables or CSV.",
        subcommands: [Leads.self, Funnel.self, Kpi.self, PlanFigures.self, Control.self])

    /// With --csv, any report comes from the service's own CSV export (streamed).
    static func csv(_ c: Connection, _ req: Report_ExportCsvRequest) async throws {
        let client = try c.reportClient()
        try await call {
            try await client.exportCsv(req, options: c.options) { chunks in
                for try await chunk in chunks { print(String(decoding: chunk.data, as: UTF8.self), terminator: "") }
            }
        }
    }

    struct Range: ParsableArguments {
        @Option(help: "Received from, YYYY-MM-DD.") var from: String = ""
        @Option(help: "Received until, YYYY-MM-DD.") var to: String = ""
    }

    struct Leads: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Leads by status, grouped and per period.")
        @OptionGroup var c: Connection
        @OptionGroup var range: Range
        @Option(help: "source, channel, owner, category or field:NAME (e.g. field:Region).") var by: String = ""
        @Option(help: "day, week, month, quarter or all.") var period: String = "all"
        @Flag(help: "Print CSV instead of a table.") var csv = false

        func run() async throws {
            var req = Report_LeadReportRequest()
            req.fromDate = range.from
            req.toDate = range.to
            switch by {
            case "": break
            case "source": req.dimension = .source
            case "channel": req.dimension = .channel
            case "owner": req.dimension = .owner
            case "category": req.dimension = .category
            default:
                guard by.hasPrefix("field:") else { throw ValidationError("--by is source, channel, owner, category or field:NAME") }
                req.dimension = .field
                req.field = String(by.dropFirst(6))
            }
            let periods: [String: Report_Period] = ["day": .day, "week": .week, "month": .month, "quarter": .quarter, "all": .all]
            guard let p = periods[period] else { throw ValidationError("--period is day, week, month, quarter or all") }
            req.period = p
            if csv {
                var e = Report_ExportCsvRequest()
                e.report = .leads(req)
                return try await ReportCommand.csv(c, e)
            }
            let client = try c.reportClient()
            let r = try await call { try await client.leadSummary(req, options: c.options) }
            let people = by == "owner" ? await PeopleNames.load(c) : PeopleNames()
            print("consistent as of \(when(r.consistentAsOfMs))")
            printTable(
                [by.isEmpty ? "total" : by, "period", "received", "new", "accepted", "deferred", "rejected", "processed"],
                r.rows.map {
                    [
                        by.isEmpty ? "all" : ($0.key.isEmpty ? "(none)" : people.label($0.key)), $0.period.isEmpty ? "all" : $0.period,
                        "\($0.received)", "\($0.new)", "\($0.accepted)", "\($0.deferred)", "\($0.rejected)", "\($0.processed)",
                    ]
                })
        }
    }

    struct Funnel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Received → accepted → processed, with reaction times.")
        @OptionGroup var c: Connection
        @OptionGroup var range: Range
        @Flag(help: "Print CSV instead of a table.") var csv = false
        func run() async throws {
            var req = Report_FunnelRequest()
            req.fromDate = range.from
            req.toDate = range.to
            if csv {
                var e = Report_ExportCsvRequest()
                e.report = .funnel(req)
                return try await ReportCommand.csv(c, e)
            }
            let client = try c.reportClient()
            let f = try await call { try await client.leadFunnel(req, options: c.options) }
            print("consistent as of \(when(f.consistentAsOfMs))")
            print("received \(f.received) -> accepted \(f.accepted) -> processed \(f.processed)")
            print(
                "first reaction: \(f.reacted) leads, average \(f.averageReactionMs / 60000) min, \(Int(f.shareWithinDeadline * 100))% within the deadline"
            )
        }
    }

    struct Kpi: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Per employee: leads handled, on time, ratings.")
        @OptionGroup var c: Connection
        @OptionGroup var range: Range
        @Flag(help: "Print CSV instead of a table.") var csv = false
        func run() async throws {
            var req = Report_KpiRequest()
            req.fromDate = range.from
            req.toDate = range.to
            if csv {
                var e = Report_ExportCsvRequest()
                e.report = .kpi(req)
                return try await ReportCommand.csv(c, e)
            }
            let client = try c.reportClient()
            let r = try await call { try await client.employeeKpis(req, options: c.options) }
            let people = await PeopleNames.load(c)
            print("consistent as of \(when(r.consistentAsOfMs))")
            printTable(
                ["person", "handled", "on time", "ratings", "average rating"],
                r.employees.map {
                    [
                        people.label($0.personId), "\($0.handled)", "\($0.onTime)", "\($0.ratings)",
                        $0.ratings == 0 ? "-" : String(Double(Int($0.averageRating * 100)) / 100),
                    ]
                })
        }
    }

    struct PlanFigures: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "plans", abstract: "Plan vs fact per plan and contractor.")
        @OptionGroup var c: Connection
        @Option(help: "Only this plan id.") var plan: String = ""
        @Option(help: "Only this contractor id.") var contractor: String = ""
        @Flag(help: "Print CSV instead of a table.") var csv = false
        func run() async throws {
            var req = Report_PlanReportRequest()
            req.planId = plan
            req.contractorId = contractor
            if csv {
                var e = Report_ExportCsvRequest()
                e.report = .plans(req)
                return try await ReportCommand.csv(c, e)
            }
            let client = try c.reportClient()
            let r = try await call { try await client.planFigures(req, options: c.options) }
            print("consistent as of \(when(r.consistentAsOfMs))")
            printTable(
                ["plan", "contractor", "lines", "done", "open", "planned", "actual", "late lines", "days late"],
                r.rows.map {
                    [
                        $0.planId, $0.contractorId, "\($0.lines)", "\($0.completed)", "\($0.notCompleted)", $0.plannedVolume,
                        $0.actualVolume, "\($0.lateLines)", "\($0.latenessDays)",
                    ]
                })
        }
    }

    struct Control: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lines overdue or without recent progress.")
        @OptionGroup var c: Connection
        @Option(help: "Only this contractor id.") var contractor: String = ""
        @Option(name: .customLong("stale-days"), help: "Days without progress that make a line stale.") var staleDays: Int32 = 7
        @Flag(help: "Print CSV instead of a table.") var csv = false
        func run() async throws {
            var req = Report_ExecutionControlRequest()
            req.contractorId = contractor
            req.staleDays = staleDays
            if csv {
                var e = Report_ExportCsvRequest()
                e.report = .control(req)
                return try await ReportCommand.csv(c, e)
            }
            let client = try c.reportClient()
            let r = try await call { try await client.executionControl(req, options: c.options) }
            printTable(
                ["plan", "line", "contractor", "deadline", "overdue days", "days without progress"],
                r.items.map {
                    [
                        $0.planId, $0.line?.id ?? "", $0.line?.contractorId ?? "", $0.line?.deadline ?? "",
                        $0.overdue ? "\($0.daysOverdue)" : "", $0.stale ? "\($0.daysSinceProgress)" : "",
                    ]
                })
        }
    }
}

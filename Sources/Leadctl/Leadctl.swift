import ArgumentParser
import Auth
import LeadwireAPI
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// leadctl: Leadwire from a terminal. Every command talks to the running services over gRPC (the
/// same API programs use), except `token issue`, which signs with the deployment's key.
@main
struct Leadctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leadctl",
        abstract:
            "Configure and use Leadwire: sources, leads, people, roles, rules, plans, contractors, reports, catalogue, proposals, tokens.",
        discussion: """
            Every command except `token issue` calls the running services. Calls carry a bearer token: \
            pass --token or set LEADWIRE_TOKEN (scripts/up prints an `export LEADWIRE_TOKEN=…` line; \
            `leadctl token issue --role admin` makes one). Addresses: --intake, --routing, --report \
            (env LEADWIRE_INTAKE_ADDR, LEADWIRE_ROUTING_ADDR, LEADWIRE_REPORT_ADDR). \
            A lead is named by its id (lead-17) or its registration number (L-2026-000017).
            """,
        subcommands: [
            TokenCommand.self, HealthCommand.self, AccessCommand.self, IntakeSwitchCommand.self, SourceCommand.self, LeadCommand.self,
            PersonCommand.self, RoleCommand.self, RulesCommand.self,
            PlanCommand.self, ContractorCommand.self, ReportCommand.self, MessagesCommand.self, TemplateCommand.self, CatalogCommand.self,
            ProposalCommand.self,
        ])

    /// ArgumentParser's own main, with two things it does not do: a mistyped subcommand gets a
    /// suggestion, and a value refused once parsing is done (`ValidationError` from `run`) is shown
    /// with the usage of the command at hand rather than the top-level one.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            if let unknown = CommandTree.unknownSubcommand(in: arguments, root: Leadctl.self) {
                CommandTree.refuse(unknown)
            }
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch let refusal as ValidationError {
            let type = Swift.type(of: command)
            printErr(
                "Error: \(refusal.message)\nUsage: \(Leadctl.usageString(for: type))\n  See 'leadctl \(CommandTree.path(to: type, from: Leadctl.self)) --help' for more information."
            )
            Glibc.exit(ExitCode.validationFailure.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}

/// Walks leadctl's command tree for what ArgumentParser does not offer: where a command sits, and
/// which subcommand a mistyped word was meant to be.
enum CommandTree {
    struct Unknown {
        var word: String
        var parentPath: String
        var candidates: [String]
        var suggestion: String?
    }

    static func path(to target: any ParsableCommand.Type, from root: any ParsableCommand.Type) -> String {
        func search(_ node: any ParsableCommand.Type, _ trail: [String]) -> [String]? {
            if node == target { return trail }
            for child in node.configuration.subcommands {
                if let found = search(child, trail + [child._commandName]) { return found }
            }
            return nil
        }
        return (search(root, []) ?? []).joined(separator: " ")
    }

    /// The first word that stands where a subcommand should and names none.
    static func unknownSubcommand(in arguments: [String], root: any ParsableCommand.Type) -> Unknown? {
        var node = root
        var trail: [String] = []
        for word in arguments {
            let children = node.configuration.subcommands
            if children.isEmpty || word.hasPrefix("-") { return nil }
            if let child = children.first(where: { $0._commandName == word }) {
                node = child
                trail.append(word)
                continue
            }
            if word == "help" { return nil }
            let names = children.map { $0._commandName }
            let ranked = names.map { ($0, distance(word.lowercased(), $0)) }.filter { $0.1 <= max(2, word.count / 3) }.min { $0.1 < $1.1 }
            return Unknown(word: word, parentPath: (["leadctl"] + trail).joined(separator: " "), candidates: names, suggestion: ranked?.0)
        }
        return nil
    }

    static func refuse(_ unknown: Unknown) -> Never {
        var text = "Error: unknown command '\(unknown.word)'."
        if let suggestion = unknown.suggestion { text += " Did you mean '\(suggestion)'?" }
        text += "\nCommands of '\(unknown.parentPath)': \(unknown.candidates.joined(separator: ", "))."
        text += "\n  See '\(unknown.parentPath) --help' for more information."
        printErr(text)
        Glibc.exit(ExitCode.validationFailure.rawValue)
    }

    /// Levenshtein distance over characters.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

// MARK: token

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "Issue signed tokens.", subcommands: [Issue.self])

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a token signed with the key in the data directory.",
            discussion: "Roles: \(Roles.grants.keys.sorted().joined(separator: ", ")).")

        @Option(name: .customLong("role"), help: "A role the bearer has (repeatable).")
        var roles: [String] = []
        @Option(help: "Who the bearer is (logged with every call).")
        var subject: String = "admin"
        @Option(help: "For contractor tokens: the contractor id whose plans it reaches.")
        var contractor: String?
        @Option(name: .customLong("ttl-hours"), help: "Hours until it expires.")
        var ttlHours: Int64 = 24
        @Option(name: .customLong("data-dir"), help: "The services' data directory, where signing.key is (env LEADWIRE_DATA_DIR).")
        var dataDir: String = ProcessInfoEnv.value("LEADWIRE_DATA_DIR") ?? "./var"
        @Option(name: .customLong("key-file"), help: "The signing key itself, if not in the data directory (env LEADWIRE_KEY_FILE).")
        var keyFile: String?

        func validate() throws {
            if roles.isEmpty { throw ValidationError("give at least one --role") }
            // The subject is written into every log line of every call the token makes.
            if subject.isEmpty
                || subject.unicodeScalars.contains(where: {
                    $0.properties.generalCategory == .control || $0.properties.generalCategory == .format
                })
            {
                throw ValidationError("--subject must be non-empty and printable (no newlines, tabs or other control characters)")
            }
            for r in roles where Roles.grants[r] == nil {
                throw ValidationError("unknown role \"\(r)\"; known: \(Roles.grants.keys.sorted().joined(separator: ", "))")
            }
            if roles.contains("contractor") && (contractor ?? "").isEmpty { throw ValidationError("a contractor token needs --contractor") }
            if ttlHours <= 0 { throw ValidationError("--ttl-hours must be positive") }
        }

        func run() async throws {
            let key = try SigningKey.load(path: keyFile ?? SigningKey.path(dataDir: dataDir))
            let now = epochSeconds()
            print(
                key.issue(Claims(subject: subject, roles: roles, contractor: contractor, issuedAt: now, expiresAt: now + ttlHours * 3600)))
        }
    }
}

// MARK: health

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health", abstract: "Ask a service's gRPC health service; exit 0 only when SERVING (for container health checks).")
    @Option(help: "host:port") var address: String = "127.0.0.1:50051"
    @Option(help: "Seconds to wait.") var timeout: Int64 = 3
    @OptionGroup var tls: TLSOptions

    func run() async throws {
        let channel = try WireChannel(address: address, tls: tls.client)
        let r: Grpc_Health_V1_HealthCheckResponse = try await call {
            try await channel.unary(
                "/grpc.health.v1.Health/Check", request: Grpc_Health_V1_HealthCheckRequest(),
                options: CallOptions(timeout: .seconds(timeout)))
        }
        print(r.status == .serving ? "SERVING" : "NOT SERVING (\(r.status.rawValue))")
        if r.status != .serving { throw ExitCode(1) }
    }
}

/// The access rules every service enforces, as the table in docs/rpc-catalogue.md shows them.
struct AccessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "access", abstract: "Which role may call which RPC (the rules the services enforce, as a markdown table).")

    func run() async throws {
        print(AccessPolicy.markdownTable(), terminator: "")
    }
}

/// The intake-wide switch: closed, intake refuses every new lead (reads and processing go on).
struct IntakeSwitchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intake", abstract: "Open or close intake to new leads, or show whether it is open.",
        subcommands: [Status.self, Open.self, Close.self])

    static func show(_ s: Intake_IntakeSettings) {
        if s.open {
            print("intake is open: new leads are accepted")
        } else {
            print("intake is CLOSED: new leads are refused (\(s.reason))")
        }
        if s.changedAtMs > 0 {
            print("changed by \(s.changedBy) on \(CalendarDate.format(day: CalendarDate.day(ofMillis: s.changedAtMs)))")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Whether intake accepts new leads.")
        @OptionGroup var c: Connection

        func run() async throws {
            let client = try c.intakeClient()
            IntakeSwitchCommand.show(
                try await call { try await client.getIntakeSettings(Intake_GetIntakeSettingsRequest(), options: c.options) })
        }
    }

    struct Open: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept new leads again.")
        @OptionGroup var c: Connection

        func run() async throws {
            let client = try c.intakeClient()
            var req = Intake_SetIntakeOpenRequest()
            req.open = true
            IntakeSwitchCommand.show(try await call { try await client.setIntakeOpen(req, options: c.options) })
        }
    }

    struct Close: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Refuse every new lead until intake is opened again (reads and processing go on).")
        @OptionGroup var c: Connection
        @Option(help: "Why: callers are told it with every refusal.") var reason: String

        func run() async throws {
            let client = try c.intakeClient()
            var req = Intake_SetIntakeOpenRequest()
            req.open = false
            req.reason = reason
            IntakeSwitchCommand.show(try await call { try await client.setIntakeOpen(req, options: c.options) })
        }
    }
}

// MARK: sources

struct SourceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source", abstract: "Sources leads arrive through.", subcommands: [Create.self, List.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a source.")
        @OptionGroup var c: Connection
        @Option(help: "The source's name, e.g. \"Site form\".") var name: String
        @Option(help: "\(Intake_Channel.allCases.dropFirst().compactMap(\.shortName).joined(separator: ", ")).")
        var channel: String = "web_form"
        @Option(name: .customLong("default-role"), help: "The role whose members receive its leads, e.g. \"Sales manager\".")
        var defaultRole: String = ""
        @Option(name: .customLong("default-owner"), help: "A person id (person-1) who receives its leads; the role is the fallback.")
        var defaultOwner: String = ""
        @Option(
            name: .customLong("field"), help: "NAME:TYPE[:a,b,c], TYPE one of string, integer, decimal, boolean, date, enum (repeatable).")
        var fields: [String] = []
        @Option(name: .customLong("required"), help: "A required field (repeatable).") var required: [String] = []
        @Option(name: .customLong("category"), help: "An accepted category (repeatable; none = any).") var categories: [String] = []
        @Option(name: .customLong("default"), help: "NAME=VALUE filled in before validation (repeatable).") var defaults: [String] = []
        @Option(help: "For an e-mail source: the address whose letters become leads.") var mailbox: String = ""

        func run() async throws {
            var s = Intake_Source()
            s.name = name
            s.channel = try enumValue(Intake_Channel.self, channel, flag: "--channel")
            s.defaultRole = defaultRole
            s.defaultOwnerId = defaultOwner
            s.enabled = true
            s.mailbox = mailbox
            s.requiredFields = required
            s.categories = categories
            for f in fields {
                let parts = f.split(separator: ":", maxSplits: 2).map(String.init)
                guard parts.count >= 2 else { throw ValidationError("--field takes NAME:TYPE[:values], got \"\(f)\"") }
                var d = Intake_FieldDefinition()
                d.name = parts[0]
                d.type = try enumValue(Intake_FieldType.self, parts[1], flag: "--field \(parts[0]):TYPE")
                if parts.count == 3 { d.allowedValues = parts[2].split(separator: ",").map(String.init) }
                s.fields.append(d)
            }
            for d in defaults {
                let (k, v) = try keyValue(d, flag: "--default")
                var fv = Intake_FieldValue()
                fv.name = k
                fv.value = v
                s.defaultValues.append(fv)
            }
            var req = Intake_CreateSourceRequest()
            req.source = s
            let client = try c.intakeClient()
            let made = try await call { try await client.createSource(req, options: c.options) }
            print(made.id)
        }

    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sources.")
        @OptionGroup var c: Connection
        @Flag(help: "Print CSV instead of a table.") var csv = false

        func run() async throws {
            let client = try c.intakeClient()
            var req = Intake_ListSourcesRequest()
            req.includeDisabled = true
            let r = try await call { try await client.listSources(req, options: c.options) }
            let people = await PeopleNames.load(c)
            printTable(
                ["id", "name", "channel", "default", "enabled"],
                r.sources.map {
                    [
                        $0.id, $0.name, short($0.channel),
                        $0.defaultOwnerId.isEmpty ? $0.defaultRole : people.label($0.defaultOwnerId), $0.enabled ? "yes" : "no",
                    ]
                }, csv: csv)
        }
    }
}

// MARK: leads

struct LeadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lead", abstract: "Register and process leads.",
        subcommands: [
            Submit.self, List.self, Show.self, Accept.self, Defer.self, Reject.self, Complete.self, Inspect.self, Comment.self, Rate.self,
        ])

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a lead (manual entry needs the leads.write permission).")
        @OptionGroup var c: Connection
        @Option(help: "The source id it arrived through (src-1; leadctl source list).") var source: String
        @Option(help: "The applicant's name.") var name: String = ""
        @Option(help: "The applicant's e-mail (matches an existing client).") var email: String = ""
        @Option(help: "The applicant's phone.") var phone: String = ""
        @Option(help: "The applicant's organisation.") var company: String = ""
        @Option(help: "What the request is about, in a line.") var subject: String = ""
        @Option(help: "The request in full.") var description: String = ""
        @Option(help: "The kind of problem (must be one the source accepts, if it lists any).") var category: String = ""
        @Option(name: .customLong("field"), help: "NAME=VALUE (repeatable).") var fields: [String] = []
        @Option(name: .customLong("idempotency-key"), help: "Idempotency key: resubmitting with it returns the same lead.")
        var idempotencyKey: String = ""

        func run() async throws {
            var req = Intake_SubmitLeadRequest()
            req.sourceId = source
            var a = Intake_Applicant()
            a.name = name
            a.email = email
            a.phone = phone
            a.company = company
            req.applicant = a
            req.subject = subject
            req.description = description
            req.category = category
            req.idempotencyKey = idempotencyKey
            for f in fields {
                let (k, v) = try keyValue(f, flag: "--field")
                var fv = Intake_FieldValue()
                fv.name = k
                fv.value = v
                req.fields.append(fv)
            }
            let client = try c.intakeClient()
            let r = try await call { try await client.submitLead(req, options: c.options) }
            let l = r.lead ?? Intake_Lead()
            print("\(l.registrationNumber)  \(l.id)\(r.duplicate ? "  (already registered with this key)" : "")")
            if l.routing == .assigned {
                let owner = await PeopleNames.load(c).label(l.ownerId)
                print("assigned to \(owner): \(l.routingExplanation)")
            }
            if l.routing == .pending { print("routing pending: it will be assigned when the routing service answers") }
            if l.routing == .queued { print("queued in \(l.routedRole): \(l.routingExplanation)") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List leads, newest first.")
        @OptionGroup var c: Connection
        @Option(help: "new, accepted, deferred, rejected, processed.") var status: String = ""
        @Option(help: "Only leads from this source id.") var source: String = ""
        @Option(help: "Only leads owned by this person id.") var owner: String = ""
        @Option(help: "How many leads at most.") var limit: Int32 = 50
        @Flag(help: "Print CSV instead of a table.") var csv = false

        func run() async throws {
            var req = Intake_ListLeadsRequest()
            if !status.isEmpty { req.status = try enumValue(Intake_LeadStatus.self, status, flag: "--status") }
            req.sourceId = source
            req.ownerId = owner
            req.pageSize = limit
            let client = try c.intakeClient()
            let r = try await call { try await client.listLeads(req, options: c.options) }
            let people = await PeopleNames.load(c)
            printTable(
                ["number", "id", "status", "owner", "received", "subject"],
                r.leads.map {
                    [
                        $0.registrationNumber, $0.id, short($0.status), people.label($0.ownerId),
                        when($0.receivedAtMs), $0.subject,
                    ]
                }, csv: csv)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a lead with its comments and history.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String

        func run() async throws {
            var req = Intake_GetLeadRequest()
            req.id = id
            let client = try c.intakeClient()
            let d = try await call { try await client.getLead(req, options: c.options) }
            let l = d.lead ?? Intake_Lead()
            print("\(l.registrationNumber) (\(l.id)) — \(short(l.status))")
            print("source \(l.sourceId), channel \(short(l.channel))" + (l.category.isEmpty ? "" : ", category \(l.category)"))
            print(
                "applicant: \(l.applicant?.name ?? "") <\(l.applicant?.email ?? "")> \(formattedPhone(l.applicant?.phone ?? ""))  client \(l.clientId)"
            )
            print("subject: \(l.subject)")
            if !l.ownerId.isEmpty || l.routing != .unspecified {
                let owner = l.ownerId.isEmpty ? "-" : await PeopleNames.load(c).label(l.ownerId)
                print("owner: \(owner) (\(short(l.routing))) \(l.routingExplanation)")
            }
            print("received \(when(l.receivedAtMs)), reply due \(when(l.replyDueAtMs))")
            for f in l.fields { print("  \(f.name): \(f.value)") }
            if !d.comments.isEmpty { print("comments:") }
            for cm in d.comments { print("  \(when(cm.createdAtMs)) \(cm.author)\(cm.public ? " (public)" : ""): \(cm.text)") }
            print("history:")
            for h in d.history { print("  \(when(h.atMs)) \(h.actor): \(h.action) \(h.note)") }
        }
    }

    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Accept a lead for execution (refused while its client has a debt, or its catalogue items are short of stock).")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String
        @Option(name: .customLong("stock-override"), help: "Accept although items are short of stock, saying why (kept in the history).")
        var stockOverride: String = ""
        func run() async throws {
            var req = Intake_AcceptLeadRequest()
            req.id = id
            req.stockOverrideReason = stockOverride
            let client = try c.intakeClient()
            let l = try await call { try await client.acceptLead(req, options: c.options) }
            print("\(l.registrationNumber) accepted, due \(when(l.dueAtMs))")
        }
    }

    struct Defer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reject a lead temporarily, with a date to revisit it.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String
        @Option(help: "Why it waits.") var reason: String
        @Option(help: "Revisit date YYYY-MM-DD.") var until: String
        func run() async throws {
            var req = Intake_DeferLeadRequest()
            req.id = id
            req.reason = reason
            req.revisitDate = until
            let client = try c.intakeClient()
            let l = try await call { try await client.deferLead(req, options: c.options) }
            print("\(l.registrationNumber) deferred until \(l.revisitDate)")
        }
    }

    struct Reject: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reject a lead, with the reason the applicant is given.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String
        @Option(help: "Why it is rejected.") var reason: String
        func run() async throws {
            var req = Intake_RejectLeadRequest()
            req.id = id
            req.reason = reason
            let client = try c.intakeClient()
            let l = try await call { try await client.rejectLead(req, options: c.options) }
            print("\(l.registrationNumber) rejected")
        }
    }

    struct Complete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Mark an accepted lead processed.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String
        @Option(help: "business-process or customer-interest.") var outcome: String
        @Option(help: "The deal, interest or process it became (an id in that system).") var reference: String
        func run() async throws {
            var req = Intake_CompleteLeadRequest()
            req.id = id
            switch outcome {
            case "business-process": req.outcome = .businessProcess
            case "customer-interest": req.outcome = .customerInterest
            default: throw ValidationError("--outcome is business-process or customer-interest")
            }
            req.reference = reference
            let client = try c.intakeClient()
            let l = try await call { try await client.completeLead(req, options: c.options) }
            print("\(l.registrationNumber) processed")
        }
    }

    struct Comment: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Comment on a lead; @login or @e-mail brings a colleague in.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String
        @Option(help: "The comment; @mentions notify those people.") var text: String
        @Flag(help: "Visible to the applicant.") var `public` = false
        func run() async throws {
            var req = Intake_AddCommentRequest()
            req.leadId = id
            req.text = text
            req.public = `public`
            let client = try c.intakeClient()
            let cm = try await call { try await client.addComment(req, options: c.options) }
            print(cm.id + (cm.mentions.isEmpty ? "" : "  mentions: " + cm.mentions.joined(separator: ", ")))
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A new lead needs an inspection first: the applicant is told the date of the answer.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String
        @Option(name: .customLong("answer-by"), help: "The date of the answer, YYYY-MM-DD.") var answerBy: String
        @Option(help: "What the applicant is told about the inspection.") var note: String = ""
        func run() async throws {
            var req = Intake_RequireInspectionRequest()
            req.id = id
            req.answerBy = answerBy
            req.note = note
            let client = try c.intakeClient()
            let l = try await call { try await client.requireInspection(req, options: c.options) }
            print("\(l.registrationNumber): inspection first, answer by \(when(l.replyDueAtMs))")
        }
    }

    struct Rate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Record the applicant's rating of how the lead was handled.")
        @OptionGroup var c: Connection
        @Argument(help: "The lead: its id (lead-17) or registration number (L-2026-000017).") var id: String
        @Option(help: "1 to 5.") var rating: Int32
        func run() async throws {
            var req = Intake_RateLeadRequest()
            req.id = id
            req.rating = rating
            let client = try c.intakeClient()
            let l = try await call { try await client.rateLead(req, options: c.options) }
            print("\(l.registrationNumber) rated \(l.rating)")
        }
    }
}

/// "+79123456789" as people read it: "+7 912 345-67-89" (other numbers as they are).
func formattedPhone(_ e164: String) -> String {
    let d = Array(e164.utf8)
    guard d.count == 12, e164.hasPrefix("+7"), d.dropFirst().allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return e164 }
    let s = Array(e164)
    return "+7 \(String(s[2..<5])) \(String(s[5..<8]))-\(String(s[8..<10]))-\(String(s[10..<12]))"
}

import ArgumentParser
import LeadwireAPI
import Wire

/// Messages to people: the queue (what was sent, what waits, what was set aside and why) and the
/// templates they are written from. Applicant and staff messages live in intake, contractor
/// messages in report: --service picks which.
struct MessagesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "messages", abstract: "See the message queue; retry a set-aside message.",
        subcommands: [List.self, Show.self, Retry.self])

    enum Service: String, ExpressibleByArgument, CaseIterable {
        case intake, report
    }

    static func client(_ c: Connection, _ service: Service) throws -> Messages_ServiceClient {
        switch service {
        case .intake: Messages_ServiceClient(channel: try WireChannel(address: c.intake, tls: c.tls.client))
        case .report: Messages_ServiceClient(channel: try WireChannel(address: c.report, tls: c.tls.client))
        }
    }

    static func state(_ s: Messages_MessageState) -> String {
        switch s {
        case .queued: "queued"
        case .sent: "sent"
        case .failed: "SET ASIDE"
        default: "?"
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Messages, newest first.")
        @OptionGroup var c: Connection
        @Option(help: "intake (applicants, staff) or report (contractors).") var service: Service = .intake
        @Option(help: "Only this lead's (id or registration number).") var lead: String = ""
        @Option(help: "queued, sent or failed (set aside).") var state: String = ""
        @Option(help: "At most this many.") var limit: Int = 50
        func run() async throws {
            var req = Messages_ListMessagesRequest()
            req.leadId = lead
            req.limit = Int32(limit)
            switch state {
            case "": break
            case "queued": req.state = .queued
            case "sent": req.state = .sent
            case "failed", "set-aside": req.state = .failed
            default: throw ValidationError("--state is queued, sent or failed, not \(state)")
            }
            let client = try MessagesCommand.client(c, service)
            let r = try await call { try await client.listMessages(req, options: c.options) }
            if r.messages.isEmpty { print("no messages") }
            for m in r.messages {
                let to = m.recipient.isEmpty ? m.personId : m.recipient
                var line =
                    "\(m.id)  \(when(m.createdAtMs))  \(MessagesCommand.state(m.state))  \(m.kind)  \(m.channel.isEmpty ? "-" : m.channel) \(to)"
                line += "  \(m.subject)"
                if !m.lastError.isEmpty { line += "  [\(m.lastError)]" }
                print(line)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One message in full, as it is (or was) sent.")
        @OptionGroup var c: Connection
        @Option(help: "intake or report.") var service: Service = .intake
        @Argument(help: "The message id (msg-12).") var id: String
        func run() async throws {
            var req = Messages_ListMessagesRequest()
            req.limit = 1
            guard id.hasPrefix("msg-"), let n = Int(id.dropFirst(4)) else { throw ValidationError("a message id looks like msg-12") }
            req.afterId = "msg-\(n + 1)"
            let client = try MessagesCommand.client(c, service)
            guard let m = try await call({ try await client.listMessages(req, options: c.options) }).messages.first, m.id == id else {
                throw ValidationError("no message \(id)")
            }
            print(
                "\(m.id)  \(MessagesCommand.state(m.state))  attempts \(m.attempts)\(m.lastError.isEmpty ? "" : "  last error: \(m.lastError)")"
            )
            print("Message-ID: <\(m.messageId)>")
            print(
                "To: \(m.recipientName) <\(m.recipient.isEmpty ? m.personId : m.recipient)> (\(m.channel.isEmpty ? "address not looked up yet" : m.channel))"
            )
            print("Subject: \(m.subject)\n")
            print(m.body)
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queue a set-aside message again (after fixing the address, say).")
        @OptionGroup var c: Connection
        @Option(help: "intake or report.") var service: Service = .intake
        @Argument(help: "The message id (msg-12).") var id: String
        func run() async throws {
            var req = Messages_RetryMessageRequest()
            req.id = id
            let client = try MessagesCommand.client(c, service)
            let m = try await call { try await client.retryMessage(req, options: c.options) }
            print("\(m.id) queued again")
        }
    }
}

/// The texts of messages: list, show, preview with a sample lead, change, reset to the stock text.
struct TemplateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "template", abstract: "List, show, preview, change and reset message templates.",
        subcommands: [List.self, Show.self, Preview.self, Set.self, Reset.self])

    struct Which: ParsableArguments {
        @Option(help: "intake (applicant and staff messages) or report (contractor messages).") var service: MessagesCommand.Service =
            .intake
        @Option(help: "ru or en; empty = the deployment's default.") var locale: String = ""
        @Option(help: "Empty = deployment-wide; source:<id> or contractor:<id> for one.") var scope: String = ""
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every message kind with its subject (stored or stock).")
        @OptionGroup var c: Connection
        @OptionGroup var which: Which
        func run() async throws {
            var req = Messages_ListTemplatesRequest()
            req.scope = which.scope
            req.locale = which.locale
            let client = try MessagesCommand.client(c, which.service)
            for t in try await call({ try await client.listTemplates(req, options: c.options) }).templates {
                print("\(t.kind)  \(t.locale)  \(t.stock ? "stock " : "stored")  \(t.subject)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One template: its text, placeholders and when it is sent.")
        @OptionGroup var c: Connection
        @OptionGroup var which: Which
        @Argument(help: "The message kind (see `leadctl template list`).") var kind: String
        func run() async throws {
            var req = Messages_GetTemplateRequest()
            req.kind = kind
            req.locale = which.locale
            req.scope = which.scope
            let client = try MessagesCommand.client(c, which.service)
            let t = try await call { try await client.getTemplate(req, options: c.options) }
            print("\(t.kind) (\(t.audience), \(t.locale)): \(t.occasion)")
            print(t.stock ? "stock text" : "stored by \(t.updatedBy) at \(when(t.updatedAtMs))")
            print("placeholders: " + t.placeholders.map { "{\($0)}" }.joined(separator: " "))
            print("\nSubject: \(t.subject)\n\n\(t.body)")
        }
    }

    struct Preview: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Render a template (in force, or from files) with a sample lead.")
        @OptionGroup var c: Connection
        @OptionGroup var which: Which
        @Argument(help: "The message kind.") var kind: String
        @Option(help: "Try this subject instead of the one in force.") var subject: String = ""
        @Option(name: .customLong("body-file"), help: "Try the body in this file instead of the one in force.") var bodyFile: String = ""
        @Option(name: .customLong("set"), help: "A sample value, name=value (repeatable).") var values: [String] = []
        func run() async throws {
            var t = Messages_Template()
            t.kind = kind
            t.locale = which.locale
            t.scope = which.scope
            t.subject = subject
            if !bodyFile.isEmpty { t.body = try readText(bodyFile) }
            var req = Messages_PreviewTemplateRequest()
            req.template = t
            for v in values {
                guard let eq = v.firstIndex(of: "=") else { throw ValidationError("--set takes name=value, got \(v)") }
                var value = Messages_Value()
                value.name = String(v[..<eq])
                value.value = String(v[v.index(after: eq)...])
                req.values.append(value)
            }
            let client = try MessagesCommand.client(c, which.service)
            let r = try await call { try await client.previewTemplate(req, options: c.options) }
            print("Subject: \(r.subject)\n\n\(r.body)")
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Store a template's text (checked first: an unknown placeholder or a stray brace is refused with its line and column).")
        @OptionGroup var c: Connection
        @OptionGroup var which: Which
        @Argument(help: "The message kind.") var kind: String
        @Option(help: "The subject line.") var subject: String
        @Option(name: .customLong("body-file"), help: "A file with the body.") var bodyFile: String
        func run() async throws {
            var t = Messages_Template()
            t.kind = kind
            t.locale = which.locale
            t.scope = which.scope
            t.subject = subject
            t.body = try readText(bodyFile)
            var req = Messages_PutTemplateRequest()
            req.template = t
            let client = try MessagesCommand.client(c, which.service)
            let stored = try await call { try await client.putTemplate(req, options: c.options) }
            print("\(stored.kind) (\(stored.locale)\(stored.scope.isEmpty ? "" : ", \(stored.scope)") stored")
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a stored text: the wider scope's or the stock text applies again.")
        @OptionGroup var c: Connection
        @OptionGroup var which: Which
        @Argument(help: "The message kind.") var kind: String
        func run() async throws {
            var req = Messages_ResetTemplateRequest()
            req.kind = kind
            req.locale = which.locale
            req.scope = which.scope
            let client = try MessagesCommand.client(c, which.service)
            let t = try await call { try await client.resetTemplate(req, options: c.options) }
            print("\(t.kind) (\(t.locale)): \(t.stock ? "stock text" : "the \(t.scope.isEmpty ? "deployment" : t.scope) text") applies")
        }
    }
}

private func readText(_ path: String) throws -> String {
    guard let text = TextFile.read(path) else { throw ValidationError("cannot read \(path)") }
    return text
}

import Auth
import LeadwireAPI
import Wire

/// The Messages RPCs (proto/leadwire/messages/v1/messages.proto), served by a service for the
/// message kinds it sends: intake for applicants and staff, report for contractors.
public struct MessagesAPI: Messages_Service {
    let queue: MessageQueue
    let audiences: Set<Audience>
    let now: Clock
    /// Queued again by RetryMessage: deliver at once.
    let onQueued: @Sendable () -> Void

    public init(queue: MessageQueue, audiences: Set<Audience>, now: @escaping Clock, onQueued: @escaping @Sendable () -> Void = {}) {
        self.queue = queue
        self.audiences = audiences
        self.now = now
        self.onQueued = onQueued
    }

    private var kinds: [MessageKind] { MessageKind.allCases.filter { audiences.contains($0.audience) } }

    private func kind(_ name: String, field: String) throws -> MessageKind {
        guard let k = MessageKind(rawValue: name.trimmingSpaces), audiences.contains(k.audience) else {
            throw RPCError.invalidArgument(
                "unknown message kind",
                violations: [
                    .init(field: field, description: "\"\(name)\" is not one of: \(kinds.map(\.rawValue).joined(separator: ", "))")
                ])
        }
        return k
    }

    private func locale(_ code: String, field: String) throws -> MessageLocale {
        if code.trimmingSpaces.isEmpty { return queue.defaultLocale }
        guard let l = MessageLocale(code: code) else {
            throw RPCError.invalidArgument(
                "unknown locale", violations: [.init(field: field, description: "\"\(code)\" is not one of: ru, en")])
        }
        return l
    }

    private func scope(_ s: String, field: String) throws -> String {
        let scope = s.trimmingSpaces
        let prefixes = (audiences.contains(.contractor) ? ["contractor:"] : []) + (audiences.contains(.applicant) ? ["source:"] : [])
        guard scope.isEmpty || prefixes.contains(where: { scope.hasPrefix($0) && scope.count > $0.count }) else {
            throw RPCError.invalidArgument(
                "unknown scope",
                violations: [
                    .init(
                        field: field,
                        description: "\"\(s)\": empty for the deployment, or " + prefixes.map { "\"\($0)<id>\"" }.joined(separator: " or "))
                ])
        }
        return scope
    }

    private func proto(_ k: MessageKind, _ l: MessageLocale, scope: String, _ t: MessageQueue.StoredTemplate) -> Messages_Template {
        var p = Messages_Template()
        p.kind = k.rawValue
        p.locale = l.rawValue
        p.scope = t.stock ? scope : t.scope
        p.subject = t.subjectText
        p.body = t.bodyText
        p.stock = t.stock
        p.placeholders = k.placeholders
        p.audience = k.audience.rawValue
        p.occasion = k.occasion
        p.updatedBy = t.updatedBy
        p.updatedAtMs = t.updatedAt
        return p
    }

    public func listTemplates(_ request: Messages_ListTemplatesRequest, context: ServerContext) async throws
        -> Messages_ListTemplatesResponse
    {
        let scope = try scope(request.scope, field: "scope")
        let locales = request.locale.isEmpty ? MessageLocale.allCases : [try locale(request.locale, field: "locale")]
        var r = Messages_ListTemplatesResponse()
        for k in kinds {
            for l in locales { r.templates.append(proto(k, l, scope: scope, try await queue.template(kind: k, locale: l, scope: scope))) }
        }
        return r
    }

    public func getTemplate(_ request: Messages_GetTemplateRequest, context: ServerContext) async throws -> Messages_Template {
        let k = try kind(request.kind, field: "kind")
        let l = try locale(request.locale, field: "locale")
        let scope = try scope(request.scope, field: "scope")
        return proto(k, l, scope: scope, try await queue.template(kind: k, locale: l, scope: scope))
    }

    public func putTemplate(_ request: Messages_PutTemplateRequest, context: ServerContext) async throws -> Messages_Template {
        guard let t = request.template else {
            throw RPCError.invalidArgument("no template given", violations: [.init(field: "template", description: "required")])
        }
        let k = try kind(t.kind, field: "template.kind")
        let l = try locale(t.locale, field: "template.locale")
        let scope = try scope(t.scope, field: "template.scope")
        do {
            _ = try MessageQueue.check(kind: k, subject: t.subject, body: t.body)
        } catch {
            throw RPCError.invalidArgument(
                "the \(k.rawValue) template is not valid; nothing was stored",
                violations: [.init(field: error.field, description: error.problem)])
        }
        let actor = Caller.name(or: request.actor.isEmpty ? "api" : request.actor)
        try await queue.putTemplate(kind: k, locale: l, scope: scope, subject: t.subject, body: t.body, actor: actor, now: now())
        return proto(k, l, scope: scope, try await queue.template(kind: k, locale: l, scope: scope))
    }

    public func resetTemplate(_ request: Messages_ResetTemplateRequest, context: ServerContext) async throws -> Messages_Template {
        let k = try kind(request.kind, field: "kind")
        let l = try locale(request.locale, field: "locale")
        let scope = try scope(request.scope, field: "scope")
        _ = try await queue.resetTemplate(kind: k, locale: l, scope: scope)
        return proto(k, l, scope: scope, try await queue.template(kind: k, locale: l, scope: scope))
    }

    public func previewTemplate(_ request: Messages_PreviewTemplateRequest, context: ServerContext) async throws -> Messages_RenderedMessage
    {
        let t = request.template ?? Messages_Template()
        let k = try kind(t.kind, field: "template.kind")
        let l = try locale(t.locale, field: "template.locale")
        let scope = try scope(t.scope, field: "template.scope")
        let inForce = try await queue.template(kind: k, locale: l, scope: scope)
        let subject = t.subject.isEmpty ? inForce.subjectText : t.subject
        let body = t.body.isEmpty ? inForce.bodyText : t.body
        let checked: (subject: Template, body: Template)
        do {
            checked = try MessageQueue.check(kind: k, subject: subject, body: body)
        } catch {
            throw RPCError.invalidArgument(
                "the \(k.rawValue) template is not valid", violations: [.init(field: error.field, description: error.problem)])
        }
        var values = k.sampleValues(l)
        let allowed = Set(k.placeholders)
        var wrong = [RPCError.FieldViolation]()
        for (i, v) in request.values.enumerated() {
            if allowed.contains(v.name) {
                values[v.name] = v.value
            } else {
                wrong.append(.init(field: "values[\(i)].name", description: "\"\(v.name)\" is not a placeholder of \(k.rawValue)"))
            }
        }
        guard wrong.isEmpty else { throw RPCError.invalidArgument("unknown placeholder values", violations: wrong) }
        if request.values.contains(where: { $0.name == "name" }) && !request.values.contains(where: { $0.name == "greeting" }) {
            values["greeting"] = l.greeting(values["name"] ?? "")
        }
        var r = Messages_RenderedMessage()
        r.subject = MessageQueue.oneLine(checked.subject.render(values))
        r.body = MessageQueue.tidy(checked.body.render(values))
        r.locale = l.rawValue
        return r
    }

    static func row(_ id: String) -> Int64? {
        guard id.hasPrefix("msg-"), let n = Int64(id.dropFirst(4)), n > 0 else { return nil }
        return n
    }

    public func listMessages(_ request: Messages_ListMessagesRequest, context: ServerContext) async throws -> Messages_ListMessagesResponse
    {
        guard (0...1000).contains(request.limit) else {
            throw RPCError.invalidArgument(
                "limit out of range", violations: [.init(field: "limit", description: "0 (default 100) to 1000, got \(request.limit)")])
        }
        var f = MessageQueue.Filter()
        let lead = request.leadId.trimmingSpaces
        if lead.uppercased().hasPrefix("L-") { f.registrationNumber = lead.uppercased() } else { f.leadID = lead }
        switch request.state {
        case .queued: f.state = .queued
        case .sent: f.state = .sent
        case .failed: f.state = .failed
        default: break
        }
        if !request.kind.isEmpty { f.kind = try kind(request.kind, field: "kind").rawValue }
        if !request.afterId.isEmpty {
            guard let n = Self.row(request.afterId) else {
                throw RPCError.invalidArgument(
                    "bad page cursor", violations: [.init(field: "after_id", description: "a message id such as \"msg-12\"")])
            }
            f.before = n
        }
        var r = Messages_ListMessagesResponse()
        r.messages = try await queue.list(f, limit: request.limit == 0 ? 100 : Int(request.limit)).map(\.proto)
        return r
    }

    public func retryMessage(_ request: Messages_RetryMessageRequest, context: ServerContext) async throws -> Messages_Message {
        guard let n = Self.row(request.id) else {
            throw RPCError.invalidArgument(
                "bad message id", violations: [.init(field: "id", description: "a message id such as \"msg-12\", got \"\(request.id)\"")])
        }
        guard let before = try await queue.message(n) else { throw RPCError(.notFound, "no message \(request.id)") }
        guard before.state == .failed else {
            throw RPCError.failedPrecondition(
                "message \(request.id) is \(before.state == .queued ? "still queued" : "already sent"); only a set-aside message can be retried",
                violations: [.init(type: "MESSAGE_NOT_SET_ASIDE", subject: "message:\(request.id)", description: "state: \(before.state)")])
        }
        guard let m = try await queue.retry(n, now: now()) else { throw RPCError(.notFound, "no message \(request.id)") }
        onQueued()
        return m.proto
    }
}

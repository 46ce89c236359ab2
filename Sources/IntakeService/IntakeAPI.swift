import Auth
import LeadwireAPI
import Logging
import NIOConcurrencyHelpers
import Store
import Wire

/// Lead changes for WatchLeads streams, each with its filter. A watcher that falls behind loses the
/// oldest changes rather than growing memory (it can re-read with ListLeads).
typealias LeadChangeHub = Broadcast<Intake_LeadChange, Intake_WatchLeadsRequest>

extension Broadcast where Element == Intake_LeadChange, Interest == Intake_WatchLeadsRequest {
    convenience init() { self.init(buffering: 1024) }

    func publish(_ kind: LeadEventKind, _ lead: Intake_Lead, at: Int64) {
        var change = Intake_LeadChange()
        change.kind = kind.rawValue
        change.lead = lead
        change.atMs = at
        publish(change)
    }

    func publish(_ change: Intake_LeadChange) {
        publish { filter in
            if !filter.sourceId.isEmpty && filter.sourceId != (change.lead?.sourceId ?? "") { return nil }
            if !filter.ownerId.isEmpty && filter.ownerId != (change.lead?.ownerId ?? "") { return nil }
            return change
        }
    }

    func watch(_ filter: Intake_WatchLeadsRequest) -> AsyncStream<Intake_LeadChange> { subscribe(filter) }
}

/// The Intake RPCs (proto/leadwire/intake/v1/intake.proto).
struct IntakeAPI: Intake_Service {
    let store: IntakeStore
    let hub: LeadChangeHub
    let now: Clock
    let logger: Logger
    /// The routing service (directory look-ups); nil when none is configured.
    var routing: Routing_ServiceClient? = nil
    /// Delivers route messages: SubmitLead sends a new lead's at once through it.
    var relay: OutboxRelay? = nil
    var routingOptions: @Sendable () -> CallOptions = { CallOptions() }
    /// How phone numbers without "+" are read when a source does not say (--phone-country).
    var phoneCountry: PhoneCountry = .russia
    /// The intake-wide switch, read on every new lead (kept in memory, stored on change).
    var intakeSwitch = IntakeSwitch()
    /// E-mail goes to an SMTP relay of our own (--smtp-host): TakeReplies hands out the rest only.
    var smtpDelivery = false

    /// Where SubmitLead's answer carries the lead as its transaction stored it.
    private static let leadField = EmbeddedField<Intake_SubmitLeadResponse, Intake_Lead>("lead")

    /// Who did it: the authenticated principal, else what the request says, else "api".
    private static func actor(_ requested: String) -> String {
        Caller.name(or: requested.isEmpty ? "api" : requested)
    }

    // MARK: Sources

    func createSource(_ request: Intake_CreateSourceRequest, context: ServerContext) async throws -> Intake_Source {
        guard let s = request.source else {
            throw IntakeError.invalid("no source given", [.init(field: "source", description: "required")])
        }
        let problems = LeadValidation.sourceProblems(s)
        guard problems.isEmpty else { throw IntakeError.invalid("the source definition is not valid", problems) }
        try await checkDefaults(s)
        return try await store.createSource(s, now: now())
    }

    func updateSource(_ request: Intake_UpdateSourceRequest, context: ServerContext) async throws -> Intake_Source {
        guard let s = request.source else {
            throw IntakeError.invalid("no source given", [.init(field: "source", description: "required")])
        }
        let problems = LeadValidation.sourceProblems(s)
        guard problems.isEmpty else { throw IntakeError.invalid("the source definition is not valid", problems) }
        try await checkDefaults(s)
        return try await store.updateSource(s, now: now())
    }

    /// A source's default owner and role must exist in routing's directory: otherwise its leads
    /// would wait with nobody told. NOT_FOUND names the field; UNAVAILABLE when routing cannot be
    /// asked (nothing is stored). Without a routing service configured there is nothing to check.
    private func checkDefaults(_ s: Intake_Source) async throws {
        guard let routing else { return }
        var options = routingOptions()
        options.timeout = .seconds(5)
        func exists(_ lookup: () async throws -> Void) async throws -> Bool {
            do {
                try await lookup()
                return true
            } catch let e as RPCError where e.code == .notFound {
                return false
            } catch let e as RPCError {
                throw IntakeError.routingUnavailable(
                    "cannot check the source's default owner and role with routing (\(e.code): \(e.message)); nothing was stored, retry")
            }
        }
        if !s.defaultOwnerId.isEmpty {
            var req = Routing_GetPersonRequest()
            req.id = s.defaultOwnerId
            if try await !exists({ _ = try await routing.getPerson(req, options: options) }) {
                throw IntakeError.missingInDirectory(field: "source.default_owner_id", value: Clip.value(s.defaultOwnerId))
            }
        }
        if !s.defaultRole.isEmpty {
            var req = Routing_GetRoleRequest()
            req.name = s.defaultRole
            if try await !exists({ _ = try await routing.getRole(req, options: options) }) {
                throw IntakeError.missingInDirectory(field: "source.default_role", value: Clip.value(s.defaultRole))
            }
        }
    }

    func getSource(_ request: Intake_GetSourceRequest, context: ServerContext) async throws -> Intake_Source {
        guard let s = try await store.source(request.id) else {
            throw IntakeError.notFound("no source \(request.id)")
        }
        return s
    }

    func listSources(_ request: Intake_ListSourcesRequest, context: ServerContext) async throws -> Intake_ListSourcesResponse {
        var r = Intake_ListSourcesResponse()
        r.sources = try await store.sources(includeDisabled: request.includeDisabled)
        return r
    }

    func setSourceEnabled(_ request: Intake_SetSourceEnabledRequest, context: ServerContext) async throws -> Intake_Source {
        try await store.setSourceEnabled(request.id, request.enabled, now: now())
    }

    // MARK: Registering

    func submitLead(_ request: Intake_SubmitLeadRequest, context: ServerContext) async throws -> EncodedMessage<Intake_SubmitLeadResponse> {
        let submitted = try await register(request)
        var r = Intake_SubmitLeadResponse()
        r.duplicate = submitted.duplicate
        // The lead is stored with its routing request in the outbox: send that request now, within a
        // short budget, so the answer usually carries the assignee. If routing is slow or down the
        // lead stays ROUTING_STATE_PENDING and the outbox relay sends the same request later.
        if let relay, let route = submitted.route {
            do {
                if let lead = try await relay.route(route, options: routingOptions()) {
                    r.lead = lead
                    return EncodedMessage(r)
                }
            } catch {
                // The relay retries and logs its own failures; one line per lead would flood the log
                // while routing is down, so this is debug.
                logger.debug(
                    "routing did not answer within SubmitLead's budget; the outbox relay will route the lead",
                    metadata: ["lead": "\(submitted.lead.id)", "error": "\(error)"])
            }
        }
        // The lead as its transaction stored it (or found it, for a duplicate): answered as those
        // bytes, not encoded a second time.
        return EncodedMessage(r, embedding: submitted.stored, as: Self.leadField)
    }

    private func register(_ request: Intake_SubmitLeadRequest) async throws -> IntakeStore.Submitted {
        let settings = intakeSwitch.current
        if !settings.open {
            throw IntakeError.intakeClosed(reason: settings.reason, since: settings.changedAtMs)
        }
        guard let source = try await store.source(request.sourceId) else {
            throw IntakeError.invalid(
                "unknown source", [.init(field: "source_id", description: "no source \"\(request.sourceId)\"; ListSources shows them")])
        }
        let validated = try LeadValidation.validate(request, source: source, phoneCountry: phoneCountry).get()
        // The request as sent (minus who sent it) decides whether a reused key is a retry; it is
        // only needed, and only kept, when there is a key.
        var canonical: [UInt8]?
        if !request.idempotencyKey.trimmingSpaces.isEmpty {
            var r = request
            r.actor = ""
            canonical = ProtoCodec.encode(r)
        }
        let submitted = try await store.submit(
            validated, canonical: canonical, source: source, actor: Self.actor(request.actor), now: now())
        if !submitted.duplicate { hub.publish(.registered, submitted.lead, at: submitted.lead.receivedAtMs) }
        return submitted
    }

    func importLeads(requests: RequestStream<Intake_SubmitLeadRequest>, context: ServerContext) async throws -> Intake_ImportLeadsResponse {
        // Items run concurrently (bounded) so they share group commits; results keep stream order.
        let window = 64
        var results = [Intake_ImportLeadsResult]()
        try await withThrowingTaskGroup(of: Intake_ImportLeadsResult.self) { group in
            var index: Int32 = 0
            var inFlight = 0
            for try await item in requests {
                if inFlight == window {
                    results.append(try await group.next()!)
                    inFlight -= 1
                }
                let i = index
                group.addTask { await importOne(item, index: i) }
                inFlight += 1
                index += 1
            }
            for try await r in group { results.append(r) }
        }
        results.sort { $0.index < $1.index }
        var response = Intake_ImportLeadsResponse()
        response.results = results
        response.accepted = Int32(results.filter { $0.errorCode == 0 }.count)
        response.refused = Int32(results.count) - response.accepted
        return response
    }

    private func importOne(_ item: Intake_SubmitLeadRequest, index: Int32) async -> Intake_ImportLeadsResult {
        var r = Intake_ImportLeadsResult()
        r.index = index
        do {
            var req = item
            if req.actor.isEmpty { req.actor = "import" }
            let s = try await register(req)
            r.leadId = s.lead.id
            r.registrationNumber = s.lead.registrationNumber
            r.duplicate = s.duplicate
        } catch {
            let e = RPCError.from(error)
            r.errorCode = Int32(e.code.rawValue)
            r.errorMessage = e.message
        }
        return r
    }

    func submitEmail(_ request: Intake_SubmitEmailRequest, context: ServerContext) async throws -> Intake_SubmitEmailResponse {
        let mail: EmailMessage
        do {
            mail = try EmailMessage.parse(request.rawMessage)
        } catch {
            let why = error == .noSender ? "it has no From address" : "it has no blank line between headers and body"
            throw IntakeError.invalid("raw_message is not an RFC 5322 message", [.init(field: "raw_message", description: why)])
        }
        var response = Intake_SubmitEmailResponse()
        if let number = RegistrationNumber.find(in: mail.subject),
            let (lead, _) = try await store.lead(registrationNumber: number)
        {
            // A reply about an existing request: it joins that lead as a public comment.
            var c = Intake_Comment()
            c.leadId = lead.id
            c.author = mail.fromAddress
            c.text = mail.body
            c.public = true
            c.mentions = Mentions.find(in: mail.body)
            let (comment, current) = try await store.addComment(c, fromApplicant: true, now: now())
            hub.publish(.commented, current, at: comment.createdAtMs)
            response.lead = current
            response.attachedAsComment = true
            response.commentId = comment.id
            return response
        }
        guard let source = try await store.source(mailbox: request.mailbox) else {
            throw IntakeError.invalid(
                "no source for this mailbox", [.init(field: "mailbox", description: "no source has mailbox \"\(request.mailbox)\"")])
        }
        var req = Intake_SubmitLeadRequest()
        req.sourceId = source.id
        req.channelDetails = "e-mail to \(request.mailbox)"
        var a = Intake_Applicant()
        a.name = mail.fromName
        a.email = mail.fromAddress
        req.applicant = a
        req.subject = mail.subject
        req.description = mail.body
        req.actor = "mail-gateway"
        response.lead = try await register(req).lead
        return response
    }

    // MARK: Reading

    func getLead(_ request: Intake_GetLeadRequest, context: ServerContext) async throws -> Intake_LeadDetails {
        guard let d = try await store.lead(request.id) else { throw IntakeStore.noLead(request.id) }
        return d
    }

    func lookupStatus(_ request: Intake_LookupStatusRequest, context: ServerContext) async throws -> Intake_PublicStatus {
        let number = request.registrationNumber.trimmingSpaces.uppercased()
        guard let (lead, comments) = try await store.lead(registrationNumber: number) else {
            throw IntakeError.notFound("no request with registration number \(request.registrationNumber)")
        }
        var s = Intake_PublicStatus()
        s.registrationNumber = lead.registrationNumber
        s.status = lead.status
        s.receivedAtMs = lead.receivedAtMs
        s.replyDueAtMs = lead.replyDueAtMs
        s.dueAtMs = lead.dueAtMs
        s.publicComments = comments
        return s
    }

    func listLeads(_ request: Intake_ListLeadsRequest, context: ServerContext) async throws -> Intake_ListLeadsResponse {
        var violations = [RPCError.FieldViolation]()
        var f = IntakeStore.LeadFilter()
        f.status = request.status
        f.ownerID = request.ownerId
        f.receivedFrom = request.receivedFromMs
        f.receivedTo = request.receivedToMs
        if !request.sourceId.isEmpty {
            f.sourceRow = IntakeStore.number(request.sourceId, prefix: "src")
            if f.sourceRow == nil {
                violations.append(.init(field: "source_id", description: "\"\(request.sourceId)\" is not a source id"))
            }
        }
        if !request.clientId.isEmpty {
            f.clientRow = IntakeStore.number(request.clientId, prefix: "client")
            if f.clientRow == nil {
                violations.append(.init(field: "client_id", description: "\"\(request.clientId)\" is not a client id"))
            }
        }
        if request.pageSize < 0 || request.pageSize > 500 {
            violations.append(.init(field: "page_size", description: "must be between 0 and 500"))
        }
        var cursor: (Int64, Int64)?
        if !request.pageToken.isEmpty {
            let p = request.pageToken.split(separator: "_")
            if p.count == 2, let at = Int64(p[0]), let id = Int64(p[1]) {
                cursor = (at, id)
            } else {
                violations.append(.init(field: "page_token", description: "not a token from a previous ListLeads answer"))
            }
        }
        guard violations.isEmpty else { throw IntakeError.invalid("cannot list leads", violations) }
        let limit = request.pageSize == 0 ? 50 : Int(request.pageSize)
        let page = try await store.leads(f, limit: limit + 1, after: cursor)
        var r = Intake_ListLeadsResponse()
        r.leads = Array(page.prefix(limit))
        if page.count > limit, let last = r.leads.last, let n = IntakeStore.number(last.id, prefix: "lead") {
            r.nextPageToken = "\(last.receivedAtMs)_\(n)"
        }
        return r
    }

    func watchLeads(_ request: Intake_WatchLeadsRequest, responses: ResponseWriter<Intake_LeadChange>, context: ServerContext) async throws
    {
        let changes = hub.watch(request)
        // Headers now, so the watcher knows it is attached before the first change.
        try await responses.sendHeaders()
        for await change in changes {
            try await responses.write(change)
        }
    }

    // MARK: Processing

    private func transition(_ id: String, _ action: LeadLifecycle.Action, actor: String, stockOverride: String = "") async throws
        -> Intake_Lead
    {
        let t = now()
        if let problem = LeadLifecycle.checkArguments(action, todayDayNumber: Int(t / 86_400_000)) { throw problem }
        let lead = try await store.transition(id, action, actor: Self.actor(actor), stockOverride: stockOverride.trimmingSpaces, now: t)
        hub.publish(LeadEventKind(status: lead.status), lead, at: t)
        return lead
    }

    func acceptLead(_ request: Intake_AcceptLeadRequest, context: ServerContext) async throws -> Intake_Lead {
        try await transition(request.id, .accept, actor: request.actor, stockOverride: request.stockOverrideReason)
    }

    func deferLead(_ request: Intake_DeferLeadRequest, context: ServerContext) async throws -> Intake_Lead {
        try await transition(request.id, .defer(reason: request.reason, revisitDate: request.revisitDate), actor: request.actor)
    }

    func rejectLead(_ request: Intake_RejectLeadRequest, context: ServerContext) async throws -> Intake_Lead {
        try await transition(request.id, .reject(reason: request.reason), actor: request.actor)
    }

    func completeLead(_ request: Intake_CompleteLeadRequest, context: ServerContext) async throws -> Intake_Lead {
        try await transition(request.id, .complete(outcome: request.outcome, reference: request.reference), actor: request.actor)
    }

    func requireInspection(_ request: Intake_RequireInspectionRequest, context: ServerContext) async throws -> Intake_Lead {
        var v = [RPCError.FieldViolation]()
        let today = CalendarDate.day(ofMillis: now())
        if let d = CalendarDate.parse(request.answerBy.trimmingSpaces) {
            if CalendarDate.dayNumber(d.year, d.month, d.day) <= today {
                v.append(
                    .init(
                        field: "answer_by", description: "must be after today (\(CalendarDate.format(day: today))), got \(request.answerBy)"
                    ))
            }
        } else {
            v.append(.init(field: "answer_by", description: "a date \"YYYY-MM-DD\", got \"\(Clip.value(request.answerBy))\""))
        }
        if request.note.count > 2000 { v.append(.init(field: "note", description: "at most 2,000 characters, got \(request.note.count)")) }
        guard v.isEmpty else { throw IntakeError.invalid("cannot ask for an inspection", v) }
        let lead = try await store.requireInspection(
            request.id, answerBy: request.answerBy.trimmingSpaces, note: request.note.trimmingSpaces, actor: Self.actor(request.actor),
            now: now())
        return lead
    }

    func addComment(_ request: Intake_AddCommentRequest, context: ServerContext) async throws -> Intake_Comment {
        var v = [RPCError.FieldViolation]()
        let author = request.author.trimmingSpaces.isEmpty ? (Caller.current?.sub ?? "") : request.author
        if request.text.trimmingSpaces.isEmpty { v.append(.init(field: "text", description: "must not be empty")) }
        if author.isEmpty { v.append(.init(field: "author", description: "say who writes it")) }
        guard v.isEmpty else { throw IntakeError.invalid("cannot add the comment", v) }
        var c = Intake_Comment()
        c.leadId = request.leadId
        c.author = author
        c.text = request.text
        c.public = request.public
        c.attachments = request.attachments
        c.mentions = Mentions.find(in: request.text)
        c.mentionedPersonIds = await resolve(c.mentions)
        // The author as a person, so they are not told of their own comment.
        let authorPerson = await resolve([author.trimmingSpaces.lowercased()]).first ?? ""
        let (comment, lead) = try await store.addComment(c, authorPersonID: authorPerson, now: now())
        hub.publish(.commented, lead, at: comment.createdAtMs)
        return comment
    }

    // MARK: Clients

    func setClientDebt(_ request: Intake_SetClientDebtRequest, context: ServerContext) async throws -> Intake_Client {
        guard let cents = FixedPoint.parse(request.debt, places: 2), cents >= 0 else {
            throw IntakeError.invalid(
                "cannot set the debt",
                [.init(field: "debt", description: "\"\(request.debt)\" is not a decimal >= 0 with at most 2 places")])
        }
        return try await store.setClientDebt(request.clientId, cents: cents)
    }

    /// People the mentions name, asked of routing within the routing budget; none when routing is
    /// not configured or does not answer (the comment is stored either way).
    private func resolve(_ mentions: [String]) async -> [String] {
        guard let routing, !mentions.isEmpty else { return [] }
        var ids = [String]()
        for m in mentions.prefix(20) {
            var req = Routing_SearchPeopleRequest()
            req.query = m
            req.limit = 2
            guard let found = try? await routing.searchPeople(req, options: routingOptions()).matches, let best = found.first?.person else {
                continue
            }
            let exact = best.login.lowercased() == m || best.email.lowercased() == m
            if (exact || found.count == 1) && !ids.contains(best.id) { ids.append(best.id) }
        }
        return ids
    }

    // MARK: Replies to applicants

    // MARK: The intake-wide switch

    func setIntakeOpen(_ request: Intake_SetIntakeOpenRequest, context: ServerContext) async throws -> Intake_IntakeSettings {
        let reason = request.reason.trimmingSpaces
        if !request.open && reason.isEmpty {
            throw IntakeError.invalid(
                "say why intake closes", [.init(field: "reason", description: "required when closing: callers are told it")])
        }
        let settings = try await store.setIntakeOpen(
            request.open, reason: request.open ? "" : reason, actor: Self.actor(request.actor), now: now())
        intakeSwitch.set(settings)
        logger.notice(
            settings.open ? "intake opened: new leads are accepted" : "intake closed: new leads are refused",
            metadata: [
                "by": "\(settings.changedBy)", "reason": "\(settings.reason)",
            ])
        return settings
    }

    func getIntakeSettings(_ request: Intake_GetIntakeSettingsRequest, context: ServerContext) async throws -> Intake_IntakeSettings {
        intakeSwitch.current
    }

    /// Messages for a gateway: SMS always, e-mail too when this service has no SMTP relay.
    func takeReplies(_ request: Intake_TakeRepliesRequest, context: ServerContext) async throws -> Intake_TakeRepliesResponse {
        guard (0...1000).contains(request.limit) else {
            throw IntakeError.invalid(
                "limit out of range", [.init(field: "limit", description: "0 (default 100) to 1000, got \(request.limit)")])
        }
        let rows = try await store.gatewayMessages(includeEmail: !smtpDelivery, limit: request.limit == 0 ? 100 : Int(request.limit))
        var r = Intake_TakeRepliesResponse()
        r.replies = rows.map { m in
            var o = Intake_OutgoingReply()
            o.id = m.row
            o.leadId = m.leadID
            o.registrationNumber = m.registrationNumber
            o.toName = m.recipientName
            o.toEmail = m.email
            o.toPhone = m.phone
            o.subject = m.about
            o.replyDueAtMs = m.answerDueAt
            o.createdAtMs = m.createdAt
            o.text = m.body
            o.channel = m.channel
            o.recipient = m.recipient
            o.messageSubject = m.subject
            o.kind = m.kind
            o.messageId = m.messageID
            o.inReplyTo = m.inReplyTo
            o.locale = m.locale
            return o
        }
        return r
    }

    func confirmReplies(_ request: Intake_ConfirmRepliesRequest, context: ServerContext) async throws -> Intake_ConfirmRepliesResponse {
        guard !request.ids.isEmpty, request.ids.count <= 1000 else {
            throw IntakeError.invalid(
                "no replies named", [.init(field: "ids", description: "1 to 1000 ids from TakeReplies, got \(request.ids.count)")])
        }
        var r = Intake_ConfirmRepliesResponse()
        r.confirmed = Int32(try await store.messages.confirm(request.ids, now: now()))
        return r
    }

    func rateLead(_ request: Intake_RateLeadRequest, context: ServerContext) async throws -> Intake_Lead {
        guard (1...5).contains(request.rating) else {
            throw IntakeError.invalid("cannot rate the lead", [.init(field: "rating", description: "1 to 5, got \(request.rating)")])
        }
        let t = now()
        let lead = try await store.rate(request.id, rating: request.rating, actor: Self.actor(request.actor), now: t)
        hub.publish(.rated, lead, at: t)
        return lead
    }

    func getClient(_ request: Intake_GetClientRequest, context: ServerContext) async throws -> Intake_Client {
        guard let c = try await store.client(request.id) else {
            throw IntakeError.notFound("no client \(request.id)")
        }
        return c
    }
}

/// The intake-wide switch as this process knows it: loaded at start, replaced on SetIntakeOpen.
final class IntakeSwitch: Sendable {
    private let box: NIOLockedValueBox<Intake_IntakeSettings>

    init(_ settings: Intake_IntakeSettings? = nil) {
        var open = Intake_IntakeSettings()
        open.open = true
        box = NIOLockedValueBox(settings ?? open)
    }

    var current: Intake_IntakeSettings { box.withLockedValue { $0 } }
    func set(_ s: Intake_IntakeSettings) { box.withLockedValue { $0 = s } }
}

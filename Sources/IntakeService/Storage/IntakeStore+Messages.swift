import LeadwireAPI
import Messaging
import Store
import Wire

/// The messages intake owes: to the applicant on registration, each decision and public comment;
/// to staff on comments, mentions and assignments. Each is queued in the transaction of the change
/// that owes it (`MessageQueue.enqueue`).
extension IntakeStore {
    // MARK: Messages

    /// The source of a lead, as stored (for its locale and template scope).
    static func sourceDefinition(_ db: Connection, _ sourceID: String) throws -> Intake_Source? {
        try db.first("SELECT definition FROM sources WHERE id = ?", Self.number(sourceID, prefix: "src")) {
            try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0))
        }
    }

    func locale(of source: Intake_Source?) -> MessageLocale {
        source.flatMap { MessageLocale(code: $0.locale) } ?? messages.defaultLocale
    }

    /// What every message about a lead can say. The number and the reference are not among them:
    /// the message row carries the lead's id and number, and rendering fills both in from there
    /// (`MessageQueue.render`), so a new lead's message is made before its number exists.
    func leadValues(_ lead: Intake_Lead, _ locale: MessageLocale) -> [String: String] {
        let subject = lead.subject.trimmingSpaces
        return [
            "subject": subject.isEmpty ? (locale == .ru ? "без темы" : "no subject") : subject,
            "received_date": locale.date(millis: lead.receivedAtMs),
            "answer_date": locale.date(millis: lead.replyDueAtMs),
            "due_date": lead.dueAtMs > 0 ? locale.date(millis: lead.dueAtMs) : "",
            "applicant": lead.applicant.map { a in a.name.trimmingSpaces.isEmpty ? a.email : a.name } ?? "",
        ]
    }

    /// A message to the lead's applicant, by the channel they came through: SMS for a phone call,
    /// a messenger or the app when there is a phone, else e-mail, else SMS. Nothing when the
    /// applicant left neither.
    func tellApplicant(
        _ db: Connection, _ kind: MessageKind, _ lead: Intake_Lead, source known: Intake_Source? = nil, extra: [String: String] = [:],
        byEmail: Bool = false, now: Int64
    ) throws {
        let source = try known ?? Self.sourceDefinition(db, lead.sourceId)
        try messages.enqueue(db, applicantMessage(kind, lead, source: source, extra: extra, byEmail: byEmail), now: now)
    }

    /// The message `tellApplicant` queues; needs no database, so a new lead's is made before its
    /// transaction (the lead's id and number, if it has none yet, are set when it is queued).
    func applicantMessage(
        _ kind: MessageKind, _ lead: Intake_Lead, source: Intake_Source?, extra: [String: String] = [:], byEmail: Bool = false
    ) -> OutgoingMessage {
        let locale = locale(of: source)
        let a = lead.applicant ?? Intake_Applicant()
        var m = OutgoingMessage(kind: kind, locale: locale, recipientName: a.name.trimmingSpaces, values: leadValues(lead, locale))
        m.values.merge(extra) { _, new in new }
        m.email = a.email
        m.phone = a.phone
        // Documents go by e-mail whatever the channel; other messages the way the applicant came.
        if byEmail { m.phone = "" }
        m.preferPhone = !byEmail && [.phone, .messenger, .mobileApp].contains(lead.channel)
        m.leadID = lead.id
        m.registrationNumber = lead.registrationNumber
        m.about = lead.subject
        m.answerDueAt = lead.replyDueAtMs
        m.scopes = ["source:\(lead.sourceId)"]
        return m
    }

    /// A message to a person in routing's directory (their address is looked up when it is sent).
    func tellPerson(_ db: Connection, _ kind: MessageKind, personID: String, _ lead: Intake_Lead, extra: [String: String], now: Int64)
        throws
    {
        guard !personID.isEmpty else { return }
        let locale = messages.defaultLocale
        var m = OutgoingMessage(kind: kind, locale: locale, recipientName: "", values: leadValues(lead, locale))
        m.values.merge(extra) { _, new in new }
        m.personID = personID
        m.leadID = lead.id
        m.registrationNumber = lead.registrationNumber
        m.about = lead.subject
        m.answerDueAt = lead.replyDueAtMs
        try messages.enqueue(db, m, now: now)
    }

    /// Who hears of a comment: the applicant when it is public (and not their own answer), each
    /// mentioned person, and the owner when someone else wrote it — each person once.
    func tellOfComment(_ db: Connection, _ c: Intake_Comment, _ lead: Intake_Lead, authorPersonID: String, fromApplicant: Bool, now: Int64)
        throws
    {
        let locale = messages.defaultLocale
        if c.public && !fromApplicant {
            try tellApplicant(db, .publicComment, lead, extra: ["comment": c.text, "author": c.author], now: now)
        }
        let visibility =
            c.public
            ? (locale == .ru ? "виден заявителю" : "visible to the applicant") : (locale == .ru ? "только для сотрудников" : "staff only")
        let about = ["comment": c.text, "author": c.author, "visibility": visibility]
        let author = c.author.lowercased()
        var told = Set<String>()
        for person in c.mentionedPersonIds where person != authorPersonID && person.lowercased() != author && !told.contains(person) {
            try tellPerson(db, .mentioned, personID: person, lead, extra: about, now: now)
            told.insert(person)
        }
        let owner = lead.ownerId
        if !owner.isEmpty && owner != authorPersonID && owner.lowercased() != author && !told.contains(owner) {
            try tellPerson(db, .ownerCommented, personID: owner, lead, extra: about, now: now)
        }
    }

    /// Who hears of routing's answer: the new owner, or the role's head when the lead waits in a
    /// queue; an escalation that hands the lead over says so.
    func tellOfAssignment(_ db: Connection, _ a: Routing_Assignment, _ lead: Intake_Lead, previousOwner: String, now: Int64) throws {
        let extra = ["role": a.role.isEmpty ? "—" : a.role, "explanation": a.explanation]
        if !a.personId.isEmpty {
            guard a.personId != previousOwner else { return }
            let escalated = a.history.last?.kind == "escalated" || (!a.escalatedTo.isEmpty && a.escalatedTo == a.personId)
            try tellPerson(db, escalated ? .leadEscalated : .leadAssigned, personID: a.personId, lead, extra: extra, now: now)
        } else if !a.notifiedId.isEmpty {
            try tellPerson(db, .leadQueued, personID: a.notifiedId, lead, extra: extra, now: now)
        }
    }

    // MARK: The gateway hand-off

    /// Queued messages a gateway sends: SMS always; e-mail too when the service has no SMTP relay.
    func gatewayMessages(includeEmail: Bool, limit: Int) async throws -> [QueuedMessage] {
        try await messages.due(channels: includeEmail ? ["email", "sms"] : ["sms"], now: Int64.max, limit: limit)
    }

    /// Registration replies queued in the outbox before messages had their own table (intake
    /// before migration 7) move to the message queue once, so no applicant misses theirs.
    func adoptQueuedReplies(now: Int64) async throws -> Int {
        try await db.write { db in
            let rows = try db.query("SELECT id, payload FROM outbox WHERE kind = 'reply' AND delivered_at IS NULL ORDER BY id") {
                ($0.int(0), $0.blob(1))
            }
            var n = 0
            for (id, payload) in rows {
                if let change = try? ProtoCodec.decode(Intake_LeadChange.self, from: payload), let told = change.lead,
                    let (_, lead) = try Self.leadRecord(db, told.id)
                {
                    try self.tellApplicant(db, .leadRegistered, lead, now: now)
                    n += 1
                }
                _ = try db.run("UPDATE outbox SET delivered_at = ?, failure = 'moved to the message queue' WHERE id = ?", now, id)
            }
            return n
        }
    }
}

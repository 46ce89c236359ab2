/// Who a message is for.
public enum Audience: String, Sendable, CaseIterable {
    case applicant, staff, contractor
}

/// Every message Leadwire sends, with the placeholders its template may use and the stock texts
/// (natural Russian and English). A deployment or a source (a contractor, for contractor mail)
/// replaces a text through the Messages RPCs; the stock one is used where nothing is stored.
public enum MessageKind: String, Sendable, CaseIterable {
    // To the applicant, through the channel they came by.
    case leadRegistered = "lead_registered"
    case leadAccepted = "lead_accepted"
    case leadDeferred = "lead_deferred"
    case leadRejected = "lead_rejected"
    case inspectionNeeded = "inspection_needed"
    case leadProcessed = "lead_processed"
    case publicComment = "public_comment"
    /// A commercial proposal, its PDF attached (e-mail only).
    case proposalSent = "proposal_sent"
    // To staff, at the address routing's directory has for them.
    case ownerCommented = "owner_commented"
    case mentioned = "mentioned"
    case leadAssigned = "lead_assigned"
    case leadQueued = "lead_queued"
    case leadEscalated = "lead_escalated"
    // To a contractor.
    case progressRequested = "progress_requested"

    public var audience: Audience {
        switch self {
        case .leadRegistered, .leadAccepted, .leadDeferred, .leadRejected, .inspectionNeeded, .leadProcessed, .publicComment, .proposalSent:
            .applicant
        case .ownerCommented, .mentioned, .leadAssigned, .leadQueued, .leadEscalated: .staff
        case .progressRequested: .contractor
        }
    }

    /// When it is sent, for people reading the template list.
    public var occasion: String {
        switch self {
        case .leadRegistered: "a lead is registered: its number and the date of the answer"
        case .leadAccepted: "the lead is accepted: the execution deadline"
        case .leadDeferred: "the lead is deferred: the reason and the date it is looked at again"
        case .leadRejected: "the lead is rejected: the reason"
        case .inspectionNeeded: "the lead needs an inspection first: the date of the answer"
        case .leadProcessed: "the work on the lead is done"
        case .publicComment: "a public comment on the lead (the applicant may answer by e-mail)"
        case .proposalSent: "a commercial proposal is sent: the PDF is attached"
        case .ownerCommented: "someone else commented on a lead the person owns"
        case .mentioned: "the person is @mentioned in a comment"
        case .leadAssigned: "a lead is assigned or handed over to the person"
        case .leadQueued: "nobody in the role could take a lead: it waits in the queue (to the role's head)"
        case .leadEscalated: "a lead's answer deadline passed without a decision (to whom it is escalated)"
        case .progressRequested: "execution control asks the contractor for progress on plan lines"
        }
    }

    /// The placeholders its template may use.
    public var placeholders: [String] {
        let lead = ["greeting", "name", "number", "subject", "received_date", "answer_date"]
        let staff = lead + ["reference", "applicant"]
        switch self {
        case .leadRegistered, .leadProcessed: return lead
        case .leadAccepted: return lead + ["due_date"]
        case .leadDeferred: return lead + ["reason", "revisit_date"]
        case .leadRejected: return lead + ["reason"]
        case .inspectionNeeded: return lead + ["note"]
        case .publicComment: return lead + ["comment", "author"]
        case .proposalSent: return lead + ["proposal", "total", "valid_until", "manager"]
        case .ownerCommented, .mentioned: return staff + ["comment", "author", "visibility"]
        case .leadAssigned, .leadQueued, .leadEscalated: return staff + ["role", "explanation"]
        case .progressRequested: return ["greeting", "name", "plan", "lines", "due_date", "note", "requested_by"]
        }
    }

    /// Values to preview a template with: a sample lead (or plan), written in the locale.
    public func sampleValues(_ locale: MessageLocale) -> [String: String] {
        let ru = locale == .ru
        var v: [String: String] = [
            "name": ru ? "Зоя Крылова" : "Zoya Krylova",
            "number": "L-2026-000123",
            "subject": ru ? "Не работает отопление в подъезде" : "No heating in the stairwell",
            "received_date": locale.date(year: 2026, month: 11, day: 30),
            "answer_date": locale.date(year: 2026, month: 12, day: 4),
            "due_date": locale.date(year: 2026, month: 12, day: 14),
            "revisit_date": locale.date(year: 2027, month: 1, day: 11),
            "reason": ru ? "нужно согласование с управляющей компанией" : "the management company must agree first",
            "note": ru ? "мастер приедет в четверг с 10 до 12" : "the engineer comes on Thursday, 10 to 12",
            "comment": ru ? "Мастер будет у вас завтра до обеда." : "The engineer will be with you tomorrow morning.",
            "author": ru ? "Ирина Петрова" : "Irina Petrova",
            "reference": "L-2026-000123 (lead-123)",
            "applicant": ru ? "Зоя Крылова" : "Zoya Krylova",
            "visibility": ru ? "виден заявителю" : "visible to the applicant",
            "role": ru ? "Диспетчеры" : "Dispatchers",
            "explanation": ru ? "по правилу «Отопление», по очереди после person-3" : "rule \"Heating\", round-robin after person-3",
            "plan": ru ? "plan-7 «Ремонт кровли, декабрь»" : "plan-7 \"Roof repairs, December\"",
            "lines": ru ? "— line-1: ул. Ленина, 5 — ремонт кровли, 120 м²" : "- line-1: 5 Lenin St — roof repair, 120 m²",
            "requested_by": ru ? "Отдел контроля исполнения" : "Execution control",
            "proposal": ru ? "КП-2026-000042" : "CP-2026-000042",
            "total": ru ? "35 982,00 ₽" : "35,982.00 RUB",
            "valid_until": locale.date(year: 2026, month: 12, day: 14),
            "manager": ru ? "Игорь Ковалёв, +7 495 123-45-67" : "Igor Kovalev, +7 495 123-45-67",
        ]
        if audience != .applicant { v["name"] = ru ? "Ирина Петрова" : "Irina Petrova" }
        if self == .progressRequested { v["name"] = ru ? "ООО «КровляСервис»" : "KrovlyaService LLC" }
        v["greeting"] = locale.greeting(v["name"]!)
        return v
    }

    /// The stock subject and body.
    public func stock(_ locale: MessageLocale) -> (subject: String, body: String) {
        switch locale {
        case .ru: russian
        case .en: english
        }
    }

    private var russian: (subject: String, body: String) {
        let sign = "\n\nС уважением,\nслужба приёма заявок\n"
        let reply = "\n\nПри обращении по этому вопросу, пожалуйста, называйте номер заявки {number}."
        switch self {
        case .leadRegistered:
            return (
                "Заявка {number} зарегистрирована",
                "{greeting}\n\nВаше обращение «{subject}» зарегистрировано под номером {number}.\n"
                    + "Ответ вы получите не позднее {answer_date}." + reply + sign
            )
        case .leadAccepted:
            return (
                "Заявка {number} принята в работу",
                "{greeting}\n\nВаша заявка {number} «{subject}» принята в работу.\nСрок выполнения — до {due_date}." + reply + sign
            )
        case .leadDeferred:
            return (
                "Заявка {number} отложена",
                "{greeting}\n\nРассмотрение вашей заявки {number} «{subject}» отложено.\nПричина: {reason}.\n"
                    + "Мы вернёмся к ней {revisit_date}." + reply + sign
            )
        case .leadRejected:
            return (
                "Заявка {number} отклонена",
                "{greeting}\n\nК сожалению, ваша заявка {number} «{subject}» отклонена.\nПричина: {reason}." + reply + sign
            )
        case .inspectionNeeded:
            return (
                "Заявка {number}: нужен предварительный осмотр",
                "{greeting}\n\nЧтобы ответить на вашу заявку {number} «{subject}», нам нужно сначала провести осмотр.\n"
                    + "{note}\nОтвет вы получите не позднее {answer_date}." + reply + sign
            )
        case .leadProcessed:
            return (
                "Заявка {number} выполнена",
                "{greeting}\n\nРаботы по вашей заявке {number} «{subject}» завершены.\n"
                    + "Если что-то осталось не так, ответьте на это письмо — ответ попадёт в ту же заявку." + sign
            )
        case .publicComment:
            return (
                "Заявка {number}: новый комментарий",
                "{greeting}\n\nПо вашей заявке {number} «{subject}» появился комментарий:\n\n{comment}\n\n— {author}\n\n"
                    + "Чтобы ответить, просто ответьте на это письмо: ответ будет добавлен к заявке." + sign
            )
        case .proposalSent:
            return (
                "Коммерческое предложение {proposal} по заявке {number}",
                "{greeting}\n\nНаправляем коммерческое предложение {proposal} по вашей заявке {number} «{subject}» — "
                    + "документ во вложении.\nСумма: {total}. Предложение действительно до {valid_until}.\n\n"
                    + "Вопросы по предложению: {manager}." + reply + sign
            )
        case .ownerCommented:
            return (
                "Комментарий к заявке {number}",
                "{greeting}\n\nК вашей заявке {number} «{subject}» добавлен комментарий ({visibility}).\nАвтор: {author}.\n\n{comment}\n\n"
                    + "Заявка: {reference}, заявитель: {applicant}.\n"
            )
        case .mentioned:
            return (
                "Вас упомянули в заявке {number}",
                "{greeting}\n\nВас упомянули в комментарии к заявке {number} «{subject}» ({visibility}).\nАвтор: {author}.\n\n{comment}\n\n"
                    + "Заявка: {reference}, заявитель: {applicant}.\n"
            )
        case .leadAssigned:
            return (
                "Вам передана заявка {number}",
                "{greeting}\n\nЗа вами закреплена заявка {number} «{subject}» (роль «{role}»).\n"
                    + "Ответить заявителю нужно не позднее {answer_date}.\n\nЗаявка: {reference}, заявитель: {applicant}.\n{explanation}\n"
            )
        case .leadQueued:
            return (
                "Заявка {number} ждёт в очереди роли «{role}»",
                "{greeting}\n\nНикто из роли «{role}» сейчас не может взять заявку {number} «{subject}»: она ждёт в очереди.\n"
                    + "Ответить заявителю нужно не позднее {answer_date}.\n\nЗаявка: {reference}, заявитель: {applicant}.\n{explanation}\n"
            )
        case .leadEscalated:
            return (
                "Срок ответа по заявке {number} истёк",
                "{greeting}\n\nПо заявке {number} «{subject}» не принято решение до {answer_date}; она передана вам.\n\n"
                    + "Заявка: {reference}, заявитель: {applicant}.\n{explanation}\n"
            )
        case .progressRequested:
            return (
                "Запрос о ходе работ: {plan}",
                "{greeting}\n\nПросим сообщить, как идут работы по плану {plan}, не позднее {due_date}:\n\n{lines}\n\n{note}\n\n"
                    + "Ответ отправьте через вашу систему (ReportProgress) по каждой строке.\n\n{requested_by}\n"
            )
        }
    }

    private var english: (subject: String, body: String) {
        let sign = "\n\nKind regards,\nthe request desk\n"
        let reply = "\n\nPlease quote the number {number} when you write or call about it."
        switch self {
        case .leadRegistered:
            return (
                "Request {number} is registered",
                "{greeting}\n\nYour request \"{subject}\" is registered under number {number}.\n"
                    + "You will have our answer by {answer_date}." + reply + sign
            )
        case .leadAccepted:
            return (
                "Request {number} is accepted",
                "{greeting}\n\nYour request {number} \"{subject}\" is accepted.\nIt will be done by {due_date}." + reply + sign
            )
        case .leadDeferred:
            return (
                "Request {number} is deferred",
                "{greeting}\n\nYour request {number} \"{subject}\" is deferred.\nReason: {reason}.\n"
                    + "We will come back to it on {revisit_date}." + reply + sign
            )
        case .leadRejected:
            return (
                "Request {number} is declined",
                "{greeting}\n\nWe are sorry: your request {number} \"{subject}\" is declined.\nReason: {reason}." + reply + sign
            )
        case .inspectionNeeded:
            return (
                "Request {number}: an inspection comes first",
                "{greeting}\n\nTo answer your request {number} \"{subject}\" we need to inspect first.\n"
                    + "{note}\nYou will have our answer by {answer_date}." + reply + sign
            )
        case .leadProcessed:
            return (
                "Request {number} is done",
                "{greeting}\n\nThe work on your request {number} \"{subject}\" is done.\n"
                    + "If anything is still wrong, reply to this message: your answer joins the same request." + sign
            )
        case .publicComment:
            return (
                "Request {number}: a new comment",
                "{greeting}\n\nThere is a new comment on your request {number} \"{subject}\":\n\n{comment}\n\n— {author}\n\n"
                    + "To answer, reply to this message: your answer joins the request." + sign
            )
        case .proposalSent:
            return (
                "Commercial proposal {proposal} for request {number}",
                "{greeting}\n\nPlease find attached our commercial proposal {proposal} for your request {number} \"{subject}\".\n"
                    + "Total: {total}. The offer is valid until {valid_until}.\n\nQuestions about it: {manager}." + reply + sign
            )
        case .ownerCommented:
            return (
                "Comment on request {number}",
                "{greeting}\n\nA comment was added to your request {number} \"{subject}\" ({visibility}).\nBy: {author}.\n\n{comment}\n\n"
                    + "Request: {reference}, applicant: {applicant}.\n"
            )
        case .mentioned:
            return (
                "You are mentioned on request {number}",
                "{greeting}\n\nYou are mentioned in a comment on request {number} \"{subject}\" ({visibility}).\nBy: {author}.\n\n{comment}\n\n"
                    + "Request: {reference}, applicant: {applicant}.\n"
            )
        case .leadAssigned:
            return (
                "Request {number} is yours",
                "{greeting}\n\nRequest {number} \"{subject}\" is assigned to you (role \"{role}\").\n"
                    + "The applicant must have an answer by {answer_date}.\n\nRequest: {reference}, applicant: {applicant}.\n{explanation}\n"
            )
        case .leadQueued:
            return (
                "Request {number} waits in the \"{role}\" queue",
                "{greeting}\n\nNobody in the role \"{role}\" can take request {number} \"{subject}\" now: it waits in the queue.\n"
                    + "The applicant must have an answer by {answer_date}.\n\nRequest: {reference}, applicant: {applicant}.\n{explanation}\n"
            )
        case .leadEscalated:
            return (
                "Request {number} is past its answer date",
                "{greeting}\n\nRequest {number} \"{subject}\" had no decision by {answer_date}; it is escalated to you.\n\n"
                    + "Request: {reference}, applicant: {applicant}.\n{explanation}\n"
            )
        case .progressRequested:
            return (
                "Progress requested: {plan}",
                "{greeting}\n\nPlease tell us how the work on {plan} stands, by {due_date}:\n\n{lines}\n\n{note}\n\n"
                    + "Answer through your system (ReportProgress), line by line.\n\n{requested_by}\n"
            )
        }
    }
}

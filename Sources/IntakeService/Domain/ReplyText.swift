import LeadwireAPI

/// The acknowledgement an applicant receives: the registration number to quote and the date by
/// which they get an answer (MISSION §2).
enum ReplyText {
    static func reply(id: Int64, lead: Intake_Lead, createdAt: Int64) -> Intake_OutgoingReply {
        var r = Intake_OutgoingReply()
        r.id = id
        r.leadId = lead.id
        r.registrationNumber = lead.registrationNumber
        r.toName = lead.applicant?.name ?? ""
        r.toEmail = lead.applicant?.email ?? ""
        r.toPhone = lead.applicant?.phone ?? ""
        r.subject = lead.subject
        r.replyDueAtMs = lead.replyDueAtMs
        r.createdAtMs = createdAt
        r.text = body(lead)
        return r
    }

    static func body(_ lead: Intake_Lead) -> String {
        let name = lead.applicant?.name.trimmingSpaces ?? ""
        let about = lead.subject.trimmingSpaces.isEmpty ? "Your request" : "Your request \"\(lead.subject.trimmingSpaces)\""
        return """
            \(name.isEmpty ? "Hello" : "Hello \(name)"),

            \(about) is registered under number \(lead.registrationNumber).
            You will have our answer by \(CalendarDate.format(day: CalendarDate.day(ofMillis: lead.replyDueAtMs))).
            Please quote the number when you write or call about it.

            """
    }
}

import LeadwireAPI
import Testing

@testable import IntakeService

@Suite struct ReplyTextTests {
    @Test func theReplyQuotesNumberSubjectAndDeadline() {
        var lead = Intake_Lead()
        lead.id = "lead-7"
        lead.registrationNumber = "L-2026-000007"
        lead.subject = "  Heater is cold "
        var a = Intake_Applicant()
        a.name = "Анна"
        a.email = "anna@example.com"
        lead.applicant = a
        lead.replyDueAtMs = Int64(CalendarDate.dayNumber(2026, 12, 4)) * 86_400_000 + 3_600_000
        let r = ReplyText.reply(id: 42, lead: lead, createdAt: 5)
        #expect(r.id == 42 && r.toEmail == "anna@example.com" && r.registrationNumber == "L-2026-000007")
        #expect(
            r.text
                == "Hello Анна,\n\nYour request \"Heater is cold\" is registered under number L-2026-000007.\nYou will have our answer by 2026-12-04.\nPlease quote the number when you write or call about it.\n"
        )
        lead.applicant = nil
        lead.subject = ""
        #expect(ReplyText.body(lead).hasPrefix("Hello,\n\nYour request is registered under number L-2026-000007."))
    }
}

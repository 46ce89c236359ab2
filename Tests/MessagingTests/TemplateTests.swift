import Testing

@testable import Messaging

@Suite struct TemplateTests {
    @Test func rendersPlaceholdersAndLiteralBraces() throws {
        let t = try Template("Заявка {number}: {{не плейсхолдер}} { name }", allowed: ["number", "name"])
        #expect(t.render(["number": "L-2026-000001", "name": "Зоя"]) == "Заявка L-2026-000001: {не плейсхолдер} Зоя")
        #expect(t.placeholders == ["number", "name"])
    }

    @Test func refusesAnUnknownPlaceholderNamingLineAndColumn() {
        do {
            _ = try Template("Здравствуйте!\n\nНомер: {numbr}.", allowed: ["number", "name"])
            Issue.record("an unknown placeholder was accepted")
        } catch {
            #expect(error.line == 3)
            #expect(error.column == 8)
            #expect(error.message.contains("unknown placeholder {numbr}"))
            #expect(error.message.contains("{name}, {number}"))
        }
    }

    @Test func refusesUnbalancedBraces() {
        for (text, line, column, words) in [
            ("Заявка {number", 1, 8, "not closed"), ("x\n}y", 2, 1, "without an opening"), ("{a{b}}", 1, 1, "not closed"),
            ("пусто {}", 1, 7, "empty placeholder"),
        ] {
            do {
                _ = try Template(text, allowed: ["number", "a", "b"])
                Issue.record("\(text) was accepted")
            } catch {
                #expect(error.line == line, "\(text)")
                #expect(error.column == column, "\(text)")
                #expect(error.message.contains(words), "\(text): \(error.message)")
            }
        }
    }

    @Test func russianAndEnglishDates() {
        #expect(MessageLocale.ru.date(year: 2026, month: 12, day: 4) == "4 декабря 2026 г.")
        #expect(MessageLocale.ru.date(iso: "2027-05-01") == "1 мая 2027 г.")
        #expect(MessageLocale.ru.date(iso: "2027-03-08") == "8 марта 2027 г.")
        #expect(MessageLocale.en.date(year: 2026, month: 12, day: 4) == "4 December 2026")
        #expect(MessageLocale.ru.date(year: 2027, month: 9, day: 30) == "30 сентября 2027 г.")
        #expect(MessageLocale.en.date(year: 2030, month: 1, day: 10) == "10 January 2030")
        #expect(MessageLocale.ru.date(year: 12026, month: 5, day: 1) == "1 мая 12026 г.")
        // 2026-12-04T10:00Z
        #expect(MessageLocale.ru.date(millis: 1_796_378_400_000) == "4 декабря 2026 г.")
        #expect(MessageLocale(code: "ru_RU") == .ru)
        #expect(MessageLocale(code: "EN-gb") == .en)
        #expect(MessageLocale(code: "de") == nil)
    }

    @Test func greetingsNeedNoGuessedGender() {
        #expect(MessageLocale.ru.greeting("Зоя Крылова") == "Здравствуйте, Зоя Крылова!")
        #expect(MessageLocale.ru.greeting("  ") == "Здравствуйте!")
        #expect(MessageLocale.en.greeting("Ivan Petrov") == "Hello Ivan Petrov,")
    }

    @Test func everyStockTextParsesAndCarriesTheNumberForApplicants() throws {
        for kind in MessageKind.allCases {
            for locale in MessageLocale.allCases {
                let stock = kind.stock(locale)
                let checked = try MessageQueue.check(kind: kind, subject: stock.subject, body: stock.body)
                let values = kind.sampleValues(locale)
                for p in checked.body.placeholders + checked.subject.placeholders {
                    #expect(values[p] != nil, "\(kind) \(locale): no sample for {\(p)}")
                }
                let body = checked.body.render(values)
                #expect(!body.contains("{") && !body.contains("}"), "\(kind) \(locale)")
            }
        }
    }

    @Test func aTemplateWithoutTheNumberInAnApplicantSubjectIsRefused() {
        #expect(
            throws: MessageQueue.TemplateProblem(
                field: "template.subject", problem: "must contain {number}: an applicant's answer by e-mail finds its lead by it")
        ) {
            _ = try MessageQueue.check(kind: .leadAccepted, subject: "Принято", body: "Текст")
        }
        #expect(throws: MessageQueue.TemplateProblem.self) { _ = try MessageQueue.check(kind: .mentioned, subject: "a\nb", body: "x") }
        #expect(throws: Never.self) { _ = try MessageQueue.check(kind: .mentioned, subject: "Упоминание", body: "{comment}") }
    }

    @Test func emptyPlaceholdersLeaveNoRunsOfBlankLines() {
        #expect(MessageQueue.tidy("a\n\n\n\nb  \n\n") == "a\n\nb\n")
        #expect(MessageQueue.tidy("\n \nПривет  \r\nмир") == "Привет\nмир\n")
        #expect(MessageQueue.tidy("") == "\n")
        #expect(MessageQueue.oneLine(" Заявка\nL-1 ") == "Заявка L-1")
    }

    @Test func retriesDoubleUpToTheLongestWait() {
        let p = RetryPolicy(first: .seconds(30), longest: .seconds(3600))
        #expect(p.delayMillis(afterAttempts: 1) == 30_000)
        #expect(p.delayMillis(afterAttempts: 2) == 60_000)
        #expect(p.delayMillis(afterAttempts: 4) == 240_000)
        #expect(p.delayMillis(afterAttempts: 30) == 3_600_000)
    }
}

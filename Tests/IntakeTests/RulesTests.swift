import LeadwireAPI
import Testing
import Wire

@testable import IntakeService

func webForm() -> Intake_Source {
    var s = Intake_Source()
    s.id = "src-1"
    s.name = "Site form"
    s.channel = .webForm
    s.enabled = true
    var region = Intake_FieldDefinition()
    region.name = "Region"
    region.type = .enum
    region.allowedValues = ["North", "South"]
    var staff = Intake_FieldDefinition()
    staff.name = "Employees"
    staff.type = .integer
    var since = Intake_FieldDefinition()
    since.name = "Client since"
    since.type = .date
    s.fields = [region, staff, since]
    s.requiredFields = ["applicant.email", "Region", "subject"]
    s.categories = ["repair", "install"]
    var d = Intake_FieldValue()
    d.name = "category"
    d.value = "repair"
    s.defaultValues = [d]
    return s
}

func field(_ name: String, _ value: String) -> Intake_FieldValue {
    var f = Intake_FieldValue()
    f.name = name
    f.value = value
    return f
}

func goodRequest() -> Intake_SubmitLeadRequest {
    var r = Intake_SubmitLeadRequest()
    r.sourceId = "src-1"
    var a = Intake_Applicant()
    a.name = "Ivan"
    a.email = "ivan@example.com"
    r.applicant = a
    r.subject = "Broken AC"
    r.fields = [field("Region", "North")]
    return r
}

func violations(_ r: Result<Intake_SubmitLeadRequest, IntakeError>) -> [String] {
    guard case .failure(.invalid(_, let v)) = r else { return [] }
    return v.map(\.field)
}

@Suite struct LeadValidationTests {
    @Test func acceptsAGoodLeadAndAppliesDefaults() throws {
        let r = try LeadValidation.validate(goodRequest(), source: webForm()).get()
        #expect(r.category == "repair", "the default category is filled in")
    }

    @Test func reportsEveryProblemAtOnce() {
        var r = goodRequest()
        r.applicant!.email = ""
        r.subject = ""
        r.fields = [field("Region", "East"), field("Employees", "many"), field("Client since", "2026-02-30"), field("Colour", "red")]
        let got = Set(violations(LeadValidation.validate(r, source: webForm())))
        #expect(got == ["applicant.email", "subject", "fields.Region", "fields.Employees", "fields.Client since", "fields.Colour"])
    }

    @Test func requiredAdditionalFieldMissing() {
        var r = goodRequest()
        r.fields = []
        #expect(violations(LeadValidation.validate(r, source: webForm())) == ["fields.Region"])
    }

    @Test func defaultsCountTowardsRequiredFields() throws {
        var s = webForm()
        s.defaultValues.append(field("Region", "South"))
        var r = goodRequest()
        r.fields = []
        let v = try LeadValidation.validate(r, source: s).get()
        #expect(v.fields == [field("Region", "South")])
    }

    @Test func disabledSourceIsRefusedAsAField() {
        var s = webForm()
        s.enabled = false
        #expect(violations(LeadValidation.validate(goodRequest(), source: s)) == ["source_id"])
    }

    @Test func categoryOutsideTheSourceIsAPrecondition() {
        var r = goodRequest()
        r.category = "warranty"
        guard case .failure(.categoryNotAccepted(let c, _, let accepted)) = LeadValidation.validate(r, source: webForm()) else {
            Issue.record("expected categoryNotAccepted")
            return
        }
        #expect(c == "warranty")
        #expect(accepted == ["repair", "install"])
        #expect(IntakeError.categoryNotAccepted(category: c, source: "s", accepted: accepted).rpcError.code == .failedPrecondition)
    }

    @Test func orderTotalsAreComputedNotTrusted() throws {
        var r = goodRequest()
        var line = Intake_OrderLine()
        line.productName = "AC unit"
        line.quantity = "2.5"
        line.price = "10.99"
        line.total = "0.01"
        var line2 = Intake_OrderLine()
        line2.productCode = "F-1"
        line2.quantity = "3"
        line2.price = "0.10"
        r.orderLines = [line, line2]
        let v = try LeadValidation.validate(r, source: webForm()).get()
        #expect(v.orderLines.map(\.total) == ["27.48", "0.30"])  // 27.475 rounds half up
        #expect(LeadValidation.orderTotal(v.orderLines) == "27.78")
    }

    @Test func badOrderLines() {
        var r = goodRequest()
        var l = Intake_OrderLine()
        l.quantity = "0"
        l.price = "-1"
        r.orderLines = [l]
        #expect(
            Set(violations(LeadValidation.validate(r, source: webForm())))
                == ["order_lines[0].product_name", "order_lines[0].quantity", "order_lines[0].price"])
    }

    @Test func badEmail() {
        var r = goodRequest()
        r.applicant!.email = "ivan at example"
        #expect(violations(LeadValidation.validate(r, source: webForm())) == ["applicant.email"])
    }

    @Test func sourceDefinitionProblems() {
        var s = webForm()
        s.name = ""
        s.defaultOwnerId = "p-1"
        s.defaultRole = "Sales manager"
        s.requiredFields.append("Nope")
        var bad = Intake_FieldDefinition()
        bad.name = "Region"
        bad.type = .enum
        s.fields.append(bad)
        let fields = Set(LeadValidation.sourceProblems(s).map(\.field))
        #expect(
            fields == [
                "source.name", "source.default_role", "source.fields[3].name", "source.fields[3].allowed_values",
                "source.required_fields[3]",
            ])
        #expect(LeadValidation.sourceProblems(webForm()).isEmpty)
    }
}

@Suite struct LifecycleTests {
    let all: [Intake_LeadStatus] = [.new, .accepted, .deferred, .rejected, .processed]
    let actions: [LeadLifecycle.Action] = [
        .accept, .defer(reason: "r", revisitDate: "2030-01-01"), .reject(reason: "r"),
        .complete(outcome: .businessProcess, reference: "BP-1"),
    ]

    @Test func everyTransitionLegalOrNot() {
        let legal: Set<String> = [
            "new>accept", "new>defer", "new>reject", "deferred>accept", "deferred>reject", "accepted>complete", "accepted>reject",
            "accepted>defer",
        ]
        for s in all {
            for a in actions {
                let key = "\(LeadLifecycle.name(s))>\(a.verb)"
                switch LeadLifecycle.next(from: s, a, lead: "L-1") {
                case .success(let next):
                    #expect(legal.contains(key), "\(key) must be refused")
                    #expect(next == a.target)
                case .failure(let e):
                    #expect(!legal.contains(key), "\(key) must be allowed")
                    let rpc = e.rpcError
                    #expect(rpc.code == .failedPrecondition)
                    #expect(rpc.message.contains("is \(LeadLifecycle.name(s))"), "the refusal names the current state")
                }
            }
        }
    }

    @Test func terminalStatesStayTerminal() {
        for s in [Intake_LeadStatus.rejected, .processed] {
            for a in actions {
                #expect((try? LeadLifecycle.next(from: s, a, lead: "L").get()) == nil)
            }
        }
    }

    @Test func actionArguments() {
        let today = CalendarDate.dayNumber(2026, 11, 29)
        #expect(LeadLifecycle.checkArguments(.defer(reason: "", revisitDate: "2026-11-29"), todayDayNumber: today) != nil)
        #expect(LeadLifecycle.checkArguments(.defer(reason: "no stock", revisitDate: "2026-11-30"), todayDayNumber: today) == nil)
        #expect(LeadLifecycle.checkArguments(.defer(reason: "no stock", revisitDate: "30.11.2026"), todayDayNumber: today) != nil)
        #expect(LeadLifecycle.checkArguments(.reject(reason: " "), todayDayNumber: today) != nil)
        #expect(LeadLifecycle.checkArguments(.complete(outcome: .unspecified, reference: "x"), todayDayNumber: today) != nil)
        #expect(LeadLifecycle.checkArguments(.complete(outcome: .customerInterest, reference: "CI-7"), todayDayNumber: today) == nil)
    }
}

@Suite struct ValueTests {
    /// The byte-level parsers answer exactly as the Character-level ones they replaced (kept here
    /// as the reference) on generated text: digits, signs, points, spaces, letters, Cyrillic, NBSP.
    @Test func byteLevelParsersAgreeWithTheCharacterLevelReference() {
        func referenceFixed(_ text: String, _ places: Int) -> Int64? {
            var s = Substring(text.trimmingSpaces)
            var negative = false
            if s.first == "-" {
                negative = true
                s = s.dropFirst()
            }
            let parts = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            var fraction = parts.count == 2 ? parts[1] : ""
            guard fraction.allSatisfy({ $0.isASCII && $0.isNumber }), parts.count == 1 || !fraction.isEmpty else { return nil }
            guard fraction.count <= places else { return nil }
            fraction += String(repeating: "0", count: places - fraction.count)
            guard whole.count <= 15, let w = Int64(whole), let f = Int64(fraction.isEmpty ? "0" : fraction) else { return nil }
            var scale: Int64 = 1
            for _ in 0..<places { scale *= 10 }
            return negative ? -(w * scale + f) : w * scale + f
        }
        func referenceEmail(_ s: String) -> Bool {
            let parts = s.split(separator: "@", omittingEmptySubsequences: false)
            return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !parts[1].hasPrefix(".")
                && !parts[1].hasSuffix(".") && !s.contains(where: \.isWhitespace)
        }
        let pieces = ["1", "0", "9", "12", ".", "-", " ", "a", "@", "x.y", "е", "\u{A0}", "\t", "1234567890", "..", "ru", "\u{2028}"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let text = (0..<Int.random(in: 0...6, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            for places in 0...3 {
                #expect(FixedPoint.parse(text, places: places) == referenceFixed(text, places), "\(text.debugDescription)")
            }
            #expect(LeadValidation.looksLikeEmail(text) == referenceEmail(text), "\(text.debugDescription)")
        }
    }

    /// `trimmingSpaces` answers clean text from its first and last bytes; anything else goes the
    /// Character way. Checked against a Character-level trim on text whose ends are ASCII, Cyrillic,
    /// NBSP, tabs, line separators and combining marks.
    @Test func trimmingSpacesAgreesWithACharacterLevelTrim() {
        func reference(_ s: String) -> String {
            var c = Substring(s)
            while let f = c.first, f.isWhitespace { c = c.dropFirst() }
            while let l = c.last, l.isWhitespace { c = c.dropLast() }
            return String(c)
        }
        #expect("".trimmingSpaces == "")
        #expect("  ".trimmingSpaces == "")
        #expect("Иванов".trimmingSpaces == "Иванов")
        #expect(" a b ".trimmingSpaces == "a b")
        #expect("\u{A0}Ёлка\t".trimmingSpaces == "Ёлка")
        let pieces = ["a", "1", " ", "\t", "\n", "е", "Ё", "\u{A0}", "\u{2028}", "e\u{301}", "~", "\u{7F}", "x y"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let text = (0..<Int.random(in: 0...5, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
            #expect(text.trimmingSpaces == reference(text), "\(text.debugDescription)")
        }
    }

    @Test func fixedPoint() {
        #expect(FixedPoint.parse("12.5", places: 2) == 1250)
        #expect(FixedPoint.parse("-0.25", places: 2) == -25)
        #expect(FixedPoint.parse("7", places: 3) == 7000)
        #expect(FixedPoint.parse("1.234", places: 2) == nil)
        #expect(FixedPoint.parse("1.", places: 2) == nil)
        #expect(FixedPoint.parse(".5", places: 2) == nil)
        #expect(FixedPoint.parse("1e3", places: 2) == nil)
        #expect(FixedPoint.format(1250, places: 2) == "12.50")
        #expect(FixedPoint.format(-5, places: 2) == "-0.05")
        #expect(FixedPoint.format(0, places: 0) == "0" && FixedPoint.format(0, places: 3) == "0.000")
        #expect(FixedPoint.format(Int64.min, places: 2) == "-92233720368547758.08")
        #expect(FixedPoint.lineTotal(quantityMilli: 2500, priceCents: 1099) == 2748)
    }

    @Test func formattingAgreesWithTheDecimalArithmeticItStandsFor() {
        // Whole part and fraction worked out by division, the way the text reads; amounts of the
        // size parse accepts also parse back to themselves.
        var values: [Int64] = [0, 1, -1, 9, 10, 99, 100, 101, 999, 1000, 123_456_789, Int64.max, -Int64.max]
        var x: Int64 = 7
        for _ in 0..<200 {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            values.append(x >> (x & 63))  // all magnitudes, both signs
        }
        for v in values {
            for places in 0...6 {
                var scale: UInt64 = 1
                for _ in 0..<places { scale *= 10 }
                let whole = String(v.magnitude / scale)
                let fraction = String(v.magnitude % scale)
                let expected =
                    (v < 0 ? "-" : "") + whole
                    + (places == 0 ? "" : "." + String(repeating: "0", count: places - fraction.count) + fraction)
                #expect(FixedPoint.format(v, places: places) == expected, "\(v), \(places) places")
                if v.magnitude < 1_000_000_000_000 { #expect(FixedPoint.parse(expected, places: places) == v) }
            }
        }
    }

    @Test func dates() {
        #expect(CalendarDate.parse("2024-02-29") != nil)
        #expect(CalendarDate.parse("2026-02-29") == nil)
        #expect(CalendarDate.parse("2026-13-01") == nil)
        #expect(CalendarDate.dayNumber(1970, 1, 1) == 0)
        #expect(CalendarDate.dayNumber(2026, 11, 29) == 20_786)
        #expect(CalendarDate.year(ofMillis: 1_795_922_717_921) == 2026)
        #expect(CalendarDate.year(ofMillis: 0) == 1970)
    }

    @Test func registrationNumbers() {
        #expect(RegistrationNumber.format(year: 2026, sequence: 123) == "L-2026-000123")
        #expect(RegistrationNumber.format(year: 2026, sequence: 1_234_567) == "L-2026-1234567")
        #expect(RegistrationNumber.format(year: 2027, sequence: 1) == "L-2027-000001")
        #expect(RegistrationNumber.format(year: 2026, sequence: 999_999) == "L-2026-999999")
        #expect(RegistrationNumber.find(in: "Re: your request l-2026-000123 (AC)") == "L-2026-000123")
        #expect(RegistrationNumber.find(in: "Re: XL-2026-000123") == nil)
        #expect(RegistrationNumber.find(in: "L-2026-12345 too short") == nil)
        #expect(RegistrationNumber.find(in: "no number here") == nil)
    }

    @Test func clientKeys() {
        #expect(ClientKeys.email("  Ivan@Example.COM ") == "ivan@example.com")
        #expect(ClientKeys.phone("+7 (495) 123-45-67") == "+74951234567")
        #expect(ClientKeys.phone("8 495 123 45 67") == "+74951234567", "one number, whatever its form")
        #expect(ClientKeys.phone("12") == nil)
        #expect(ClientKeys.taxID("77-07 083893") == "7707083893")
    }

    @Test func mentions() {
        #expect(
            Mentions.find(in: "@ivanov please call, cc @anna.petrova@example.com and @example.org.") == [
                "ivanov", "anna.petrova@example.com", "example.org",
            ])
        #expect(Mentions.find(in: "mail me at ivan@example.com") == [])
        #expect(Mentions.find(in: "@Петров посмотри") == ["петров"])
    }
}

@Suite struct EmailTests {
    @Test func plainMessage() throws {
        let raw = "From: \"Ivan Petrov\" <ivan@example.com>\r\nSubject: Broken AC\r\n  in the office\r\n\r\nIt does not cool.\r\n"
        let m = try EmailMessage.parse(Array(raw.utf8))
        #expect(
            m
                == EmailMessage(
                    fromName: "Ivan Petrov", fromAddress: "ivan@example.com", subject: "Broken AC in the office", body: "It does not cool.")
        )
    }

    @Test func encodedWordsAndQuotedPrintable() throws {
        let raw = """
            From: =?UTF-8?B?0JjQstCw0L0=?= <ivan@example.com>
            Subject: =?UTF-8?Q?Re:_=D0=B7=D0=B0=D1=8F=D0=B2=D0=BA=D0=B0?= L-2026-000007
            Content-Type: text/plain; charset=utf-8
            Content-Transfer-Encoding: quoted-printable

            =D0=A1=D0=BF=D0=B0=D1=81=D0=B8=D0=B1=D0=BE, soft=
             break
            """
        let m = try EmailMessage.parse(Array(raw.utf8))
        #expect(m.fromName == "Иван")
        #expect(m.subject == "Re: заявка L-2026-000007")
        #expect(m.body == "Спасибо, soft break")
    }

    @Test func multipartTakesTheFirstPlainPart() throws {
        let raw = """
            From: ivan@example.com
            Subject: Order
            Content-Type: multipart/alternative; boundary="b1"

            preamble
            --b1
            Content-Type: text/html

            <p>html</p>
            --b1
            Content-Type: text/plain
            Content-Transfer-Encoding: base64

            UGxlYXNlIGNhbGwgbWUu
            --b1--
            """
        let m = try EmailMessage.parse(Array(raw.utf8))
        #expect(m.fromName == "")
        #expect(m.fromAddress == "ivan@example.com")
        #expect(m.body == "Please call me.")
    }

    @Test func refusesMessagesWithoutSenderOrBody() {
        #expect(throws: EmailMessage.Failure.noSender) { try EmailMessage.parse(Array("Subject: x\n\nbody".utf8)) }
        #expect(throws: EmailMessage.Failure.noHeaderSeparator) { try EmailMessage.parse(Array("From: a@b.c".utf8)) }
    }
}

import Catalog
import LeadwireAPI
import Messaging
import Wire

/// Checks a new lead against its source (MISSION §1–2): defaults first, then every field, all
/// problems reported at once. Pure: no storage, no clock.
enum LeadValidation {
    static let standardFields = [
        "applicant.name", "applicant.email", "applicant.phone", "applicant.company", "applicant.tax_id",
        "subject", "description", "category", "channel_details",
    ]

    /// The request with the source's defaults applied and order totals computed, or the refusal.
    /// `phoneCountry`: how numbers without "+" are read when the source does not say.
    static func validate(_ input: Intake_SubmitLeadRequest, source: Intake_Source, phoneCountry: PhoneCountry = .russia) -> Result<
        Intake_SubmitLeadRequest, IntakeError
    > {
        var req = input
        var violations = [RPCError.FieldViolation]()
        if !source.enabled {
            violations.append(
                .init(field: "source_id", description: "source \(source.name) (\(source.id)) is disabled and takes no new leads"))
        }

        // Defaults fill what the caller left empty, before required fields are checked.
        for d in source.defaultValues {
            if standardFields.contains(d.name) {
                if standardValue(req, d.name).isEmpty { setStandard(&req, d.name, d.value) }
            } else if !req.fields.contains(where: { $0.name == d.name }) {
                var f = Intake_FieldValue()
                f.name = d.name
                f.value = d.value
                req.fields.append(f)
            }
        }

        // Duplicates and definitions are found by scanning: a lead carries a few fields and a source
        // defines a few (at most 200 and 100), and a dictionary and a set built per lead cost more.
        var unknown = 0
        for (n, f) in req.fields.enumerated() {
            func path() -> String { "fields.\(Clip.value(f.name))" }
            if req.fields[..<n].contains(where: { $0.name == f.name }) {
                violations.append(.init(field: path(), description: "given more than once"))
                continue
            }
            guard let def = source.fields.first(where: { $0.name == f.name }) else {
                // The source's fields are listed once, with the first unknown one: a caller sending
                // 300 unknown columns gets one list, not 300.
                let known = source.fields.map(\.name)
                let list =
                    unknown == 0 ? " (source \(source.name) has: \(known.isEmpty ? "no fields" : known.joined(separator: ", ")))" : ""
                unknown += 1
                violations.append(.init(field: path(), description: "not a field of this source" + list))
                continue
            }
            if !f.value.isEmpty, let problem = typeProblem(f.value, def) {
                violations.append(.init(field: path(), description: problem))
            }
        }

        for name in source.requiredFields {
            let filled: Bool
            if standardFields.contains(name) {
                filled = !standardValue(req, name).trimmingSpaces.isEmpty
            } else {
                filled = req.fields.contains { $0.name == name && !$0.value.trimmingSpaces.isEmpty }
            }
            if !filled {
                violations.append(
                    .init(field: standardFields.contains(name) ? name : "fields.\(name)", description: "required by source \(source.name)"))
            }
        }

        let email = req.applicant?.email.trimmingSpaces ?? ""
        if !email.isEmpty && !looksLikeEmail(email) {
            violations.append(.init(field: "applicant.email", description: "\"\(Clip.value(email))\" is not an e-mail address"))
        }
        // Stored in one form, so the same number written another way finds the same client.
        let phone = req.applicant?.phone.trimmingSpaces ?? ""
        if !phone.isEmpty {
            let country = PhoneCountry.named(source.phoneCountry) ?? phoneCountry
            switch Phone.normalize(phone, country: country) {
            case .success(let e164): req.applicant!.phone = e164
            case .failure(let why): violations.append(.init(field: "applicant.phone", description: "\"\(Clip.value(phone))\" \(why)"))
            }
        }
        let tax = req.applicant?.taxId.trimmingSpaces ?? ""
        if !tax.isEmpty {
            switch INN.check(tax) {
            case .success(let inn): req.applicant!.taxId = inn
            case .failure(let why): violations.append(.init(field: "applicant.tax_id", description: "\"\(Clip.value(tax))\" \(why)"))
            }
        }

        for i in req.orderLines.indices {
            let line = req.orderLines[i]
            var path: String { "order_lines[\(i)]" }
            // A line naming a catalogue item takes its code, name and price from the item where it
            // leaves them empty (filled when the lead is stored).
            let fromCatalogue = !line.itemId.isEmpty
            if fromCatalogue && CatalogStore.itemNumber(line.itemId) == nil {
                violations.append(
                    .init(field: "\(path).item_id", description: "\"\(Clip.value(line.itemId))\" is not a catalogue item id (like item-17)")
                )
            }
            if !fromCatalogue && line.productCode.trimmingSpaces.isEmpty && line.productName.trimmingSpaces.isEmpty {
                violations.append(.init(field: "\(path).product_name", description: "a line needs a product code or a product name"))
            }
            let q = FixedPoint.parse(line.quantity, places: 3)
            let priceLater = fromCatalogue && line.price.trimmingSpaces.isEmpty
            let p = FixedPoint.parse(line.price.isEmpty ? "0" : line.price, places: 2)
            if q == nil || q! <= 0 {
                violations.append(
                    .init(field: "\(path).quantity", description: "\"\(line.quantity)\" is not a positive decimal with at most 3 places"))
            }
            if p == nil || p! < 0 {
                violations.append(
                    .init(field: "\(path).price", description: "\"\(line.price)\" is not a decimal >= 0 with at most 2 places"))
            }
            if let q, let p, q > 0, p >= 0 {
                if let total = FixedPoint.lineTotal(quantityMilli: q, priceCents: p) {
                    // The total is computed here; whatever the caller sent is ignored.
                    req.orderLines[i].total = priceLater ? "" : FixedPoint.format(total, places: 2)
                    req.orderLines[i].quantity = FixedPoint.format(q, places: 3)
                    req.orderLines[i].price = priceLater ? "" : FixedPoint.format(p, places: 2)
                } else {
                    violations.append(.init(field: "\(path).quantity", description: "quantity × price is too large"))
                }
            }
        }

        if !violations.isEmpty {
            return .failure(.invalid("the lead does not fit source \(source.name)", violations))
        }
        let category = req.category.trimmingSpaces
        if !source.categories.isEmpty && !source.categories.contains(category) {
            return .failure(.categoryNotAccepted(category: category, source: source.name, accepted: source.categories))
        }
        return .success(req)
    }

    static func orderTotal(_ lines: [Intake_OrderLine]) -> String {
        FixedPoint.format(lines.reduce(0) { $0 + (FixedPoint.parse($1.total, places: 2) ?? 0) }, places: 2)
    }

    static func typeProblem(_ value: String, _ def: Intake_FieldDefinition) -> String? {
        switch def.type {
        case .integer:
            return Int64(value.trimmingSpaces) == nil ? "\"\(value)\" is not an integer" : nil
        case .decimal:
            return FixedPoint.parse(value, places: 6) == nil ? "\"\(value)\" is not a decimal number" : nil
        case .boolean:
            return value == "true" || value == "false" ? nil : "\"\(value)\" is not true or false"
        case .date:
            return CalendarDate.parse(value) == nil ? "\"\(value)\" is not a date (YYYY-MM-DD)" : nil
        case .enum:
            return def.allowedValues.contains(value) ? nil : "\"\(value)\" is not one of: \(def.allowedValues.joined(separator: ", "))"
        default:
            return nil
        }
    }

    /// One "@" with something before it, a domain with an inner dot, no white space. On UTF-8
    /// bytes (every lead's e-mail passes here); only text beyond ASCII is checked for Unicode spaces.
    static func looksLikeEmail(_ s: String) -> Bool {
        let bytes = s.utf8
        guard let at = bytes.firstIndex(of: UInt8(ascii: "@")), at != bytes.startIndex else { return false }
        let domain = bytes[bytes.index(after: at)...]
        guard !domain.contains(UInt8(ascii: "@")), domain.contains(UInt8(ascii: ".")), domain.first != UInt8(ascii: "."),
            domain.last != UInt8(ascii: ".")
        else { return false }
        var ascii = true
        for b in bytes {
            if b == 0x20 || (b >= 0x09 && b <= 0x0D) { return false }
            if b >= 0x80 { ascii = false }
        }
        return ascii || !s.contains(where: \.isWhitespace)
    }

    static func standardValue(_ r: Intake_SubmitLeadRequest, _ name: String) -> String {
        switch name {
        case "applicant.name": r.applicant?.name ?? ""
        case "applicant.email": r.applicant?.email ?? ""
        case "applicant.phone": r.applicant?.phone ?? ""
        case "applicant.company": r.applicant?.company ?? ""
        case "applicant.tax_id": r.applicant?.taxId ?? ""
        case "subject": r.subject
        case "description": r.description
        case "category": r.category
        case "channel_details": r.channelDetails
        default: ""
        }
    }

    static func setStandard(_ r: inout Intake_SubmitLeadRequest, _ name: String, _ value: String) {
        var a = r.applicant ?? Intake_Applicant()
        switch name {
        case "applicant.name": a.name = value
        case "applicant.email": a.email = value
        case "applicant.phone": a.phone = value
        case "applicant.company": a.company = value
        case "applicant.tax_id": a.taxId = value
        case "subject": r.subject = value
        case "description": r.description = value
        case "category": r.category = value
        case "channel_details": r.channelDetails = value
        default: return
        }
        if name.hasPrefix("applicant.") { r.applicant = a }
    }

    /// Problems with a source definition itself (CreateSource / UpdateSource).
    static func sourceProblems(_ s: Intake_Source) -> [RPCError.FieldViolation] {
        var v = [RPCError.FieldViolation]()
        if s.name.trimmingSpaces.isEmpty { v.append(.init(field: "source.name", description: "must not be empty")) }
        if s.channel == .unspecified {
            v.append(.init(field: "source.channel", description: "choose a channel (CHANNEL_WEB_FORM, CHANNEL_EMAIL, ...)"))
        }
        if !s.defaultOwnerId.isEmpty && !s.defaultRole.isEmpty {
            v.append(.init(field: "source.default_role", description: "give a default owner or a default role, not both"))
        }
        if s.replyDays < 0 { v.append(.init(field: "source.reply_days", description: "must be >= 0")) }
        if !s.locale.isEmpty && MessageLocale(code: s.locale) == nil {
            v.append(
                .init(field: "source.locale", description: "\"\(Clip.value(s.locale))\" is not one of: ru, en (empty = the deployment's)"))
        }
        if !s.phoneCountry.isEmpty && PhoneCountry.named(s.phoneCountry) == nil {
            v.append(
                .init(
                    field: "source.phone_country",
                    description:
                        "\"\(Clip.value(s.phoneCountry))\" is not one of \(PhoneCountry.known.keys.sorted().joined(separator: ", "))"))
        }
        if s.dueDays < 0 { v.append(.init(field: "source.due_days", description: "must be >= 0")) }
        var names = Set<String>()
        for (i, f) in s.fields.enumerated() {
            let path = "source.fields[\(i)]"
            if f.name.trimmingSpaces.isEmpty || !f.name.allSatisfy({ $0.isLetter || $0.isNumber || " _-".contains($0) }) {
                v.append(.init(field: "\(path).name", description: "\"\(f.name)\": use letters, digits, spaces, '_' or '-'"))
            }
            if standardFields.contains(f.name) { v.append(.init(field: "\(path).name", description: "\"\(f.name)\" is a standard field")) }
            if !names.insert(f.name).inserted { v.append(.init(field: "\(path).name", description: "\"\(f.name)\" is defined twice")) }
            if f.type == .unspecified { v.append(.init(field: "\(path).type", description: "choose a type")) }
            if f.type == .enum && f.allowedValues.isEmpty {
                v.append(.init(field: "\(path).allowed_values", description: "an ENUM field needs its allowed values"))
            }
        }
        for (i, r) in s.requiredFields.enumerated() where !standardFields.contains(r) && !names.contains(r) {
            v.append(
                .init(
                    field: "source.required_fields[\(i)]",
                    description: "\"\(r)\" is neither a standard field nor one of this source's fields"))
        }
        let byName = Dictionary(s.fields.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (i, d) in s.defaultValues.enumerated() {
            if let def = byName[d.name] {
                if let p = typeProblem(d.value, def) { v.append(.init(field: "source.default_values[\(i)]", description: p)) }
            } else if !standardFields.contains(d.name) {
                v.append(
                    .init(
                        field: "source.default_values[\(i)]",
                        description: "\"\(d.name)\" is neither a standard field nor one of this source's fields"))
            }
        }
        return v
    }
}

/// The lead lifecycle (MISSION §4): new → accepted | deferred | rejected; deferred → accepted |
/// rejected; accepted → processed. Every lead ends rejected or processed.
enum LeadLifecycle {
    enum Action: Equatable {
        case accept
        case `defer`(reason: String, revisitDate: String)
        case reject(reason: String)
        case complete(outcome: Intake_OutcomeKind, reference: String)

        var verb: String {
            switch self {
            case .accept: "accept"
            case .defer: "defer"
            case .reject: "reject"
            case .complete: "complete"
            }
        }

        var allowedFrom: [Intake_LeadStatus] {
            switch self {
            // An accepted lead can still be cancelled (rejected) or put off (deferred): the stock it
            // holds is released.
            case .accept: [.new, .deferred]
            case .reject: [.new, .deferred, .accepted]
            case .defer: [.new, .accepted]
            case .complete: [.accepted]
            }
        }

        var target: Intake_LeadStatus {
            switch self {
            case .accept: .accepted
            case .defer: .deferred
            case .reject: .rejected
            case .complete: .processed
            }
        }
    }

    static func name(_ s: Intake_LeadStatus) -> String {
        switch s {
        case .new: "new"
        case .accepted: "accepted"
        case .deferred: "deferred"
        case .rejected: "rejected"
        case .processed: "processed"
        default: "unknown"
        }
    }

    /// Checks the action's own arguments (reasons, dates, outcome): INVALID_ARGUMENT if wrong.
    static func checkArguments(_ action: Action, todayDayNumber: Int) -> IntakeError? {
        var v = [RPCError.FieldViolation]()
        switch action {
        case .accept:
            break
        case .defer(let reason, let date):
            if reason.trimmingSpaces.isEmpty { v.append(.init(field: "reason", description: "say why the lead is deferred")) }
            if let d = CalendarDate.parse(date) {
                if CalendarDate.dayNumber(d.year, d.month, d.day) <= todayDayNumber {
                    v.append(.init(field: "revisit_date", description: "\(date) is not after today"))
                }
            } else {
                v.append(.init(field: "revisit_date", description: "\"\(date)\" is not a date (YYYY-MM-DD)"))
            }
        case .reject(let reason):
            if reason.trimmingSpaces.isEmpty { v.append(.init(field: "reason", description: "say why the lead is rejected")) }
        case .complete(let outcome, let reference):
            if outcome != .businessProcess && outcome != .customerInterest {
                v.append(.init(field: "outcome", description: "OUTCOME_KIND_BUSINESS_PROCESS or OUTCOME_KIND_CUSTOMER_INTEREST"))
            }
            if reference.trimmingSpaces.isEmpty {
                v.append(.init(field: "reference", description: "name the business process or customer interest started"))
            }
        }
        return v.isEmpty ? nil : .invalid("cannot \(action.verb) the lead", v)
    }

    /// The next status, or the refusal naming the current one.
    static func next(from current: Intake_LeadStatus, _ action: Action, lead: String) -> Result<Intake_LeadStatus, IntakeError> {
        guard action.allowedFrom.contains(current) else {
            return .failure(.illegalTransition(lead: lead, current: current, action: action.verb, allowedFrom: action.allowedFrom))
        }
        return .success(action.target)
    }
}

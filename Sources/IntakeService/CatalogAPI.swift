import Auth
import Catalog
import Crypto
import Dispatch
import LeadwireAPI
import Messaging
import Store
import Wire

/// The Catalog RPCs (proto/leadwire/catalog/v1/catalog.proto), served by the intake process on
/// intake's database: price lists and search, and commercial proposals for intake's leads.
struct CatalogAPI: Catalog_Service {
    let store: IntakeStore
    let now: Clock
    /// The company the proposals come from, and its signature and stamp images.
    var seller = ProposalSeller(name: "")
    /// VAT in basis points (2000 = 20%) when a proposal does not say.
    var vatBasisPoints: Int64 = 2000
    var defaultLocale: MessageLocale = .ru
    /// The manager's contacts from routing's directory (the lead's owner), when a proposal does not give them.
    var lookUpPerson: (@Sendable (String) async throws -> PersonAddress?)? = nil

    /// The most an imported file may be: a price list of a few hundred thousand rows fits easily.
    static let maxImportBytes = 64 << 20
    static let chunkSize = 64 << 10

    /// Price lists are read one file at a time; documents are rendered beside them, never queued
    /// behind a large file.
    static let reading = DispatchQueue(label: "leadwire.catalog.reading")
    static let rendering = DispatchQueue(label: "leadwire.catalog.rendering", attributes: .concurrent)

    /// Runs CPU-heavy work (reading a price list, rendering a document) off the event loop that
    /// runs the handler.
    static func offThePool<T: Sendable>(on queue: DispatchQueue = reading, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    private static func actor(_ requested: String) -> String {
        Caller.name(or: requested.trimmingSpaces.isEmpty ? "api" : requested.trimmingSpaces)
    }

    // MARK: Price lists

    func importPriceList(requests: RequestStream<Catalog_ImportPriceListRequest>, context: ServerContext) async throws
        -> Catalog_ImportReport
    {
        var start: Catalog_ImportStart?
        var bytes = [UInt8]()
        var index = 0
        for try await r in requests {
            if let s = r.start {
                guard start == nil else {
                    throw CatalogError.invalid("start is given once, in the first message (message \(index) has another)", field: "start")
                }
                guard index == 0 else {
                    throw CatalogError.invalid("start must come in the first message, not message \(index)", field: "start")
                }
                start = s
            } else if index == 0 {
                throw CatalogError.invalid("the first message must carry start (supplier, file name, mapping)", field: "start")
            }
            guard bytes.count + r.data.count <= Self.maxImportBytes else {
                throw CatalogError.tooLarge(
                    "the price list is larger than \(Self.maxImportBytes >> 20) MiB; split it into several files of one supplier")
            }
            bytes += r.data
            index += 1
        }
        guard let start else { throw CatalogError.invalid("no messages: send start, then the file's bytes", field: "start") }
        let supplier = start.supplier.trimmingSpaces
        guard !supplier.isEmpty else { throw CatalogError.invalid("name the supplier whose price list this is", field: "start.supplier") }
        guard !bytes.isEmpty else { throw CatalogError.invalid("the file is empty: send its bytes in data after start", field: "data") }
        let mapping: Catalog_ColumnMapping
        if let given = start.mapping {
            mapping = given
        } else if let stored = try await store.db.read({ try CatalogStore.mapping($0, supplier: supplier) }) {
            mapping = stored
        } else {
            throw CatalogError.noMapping(supplier: supplier)
        }
        let format = start.format
        let name = start.fileName
        let file = bytes
        // Reading a large list takes a second or more of CPU: on a thread of its own, not one of the
        // few that run every call's tasks.
        let (list, sha) = try await Self.offThePool {
            let grid = try PriceListGrid.read(file, format: format, fileName: name, mapping: mapping)
            return (
                try PriceListImport(grid: grid, mapping: mapping),
                SHA256.hash(data: file).map { String($0, radix: 16).leftPadded(2) }.joined()
            )
        }
        let fileName = start.fileName
        let actor = Self.actor(start.actor)
        let t = now()
        var progress = try await store.db.write { db in
            try CatalogStore.begin(
                db, supplier: supplier, list: list, fileName: fileName, sha256: sha, mapping: mapping, actor: actor, now: t)
        }
        // In batches, each its own transaction: registering leads is never held up for a whole file.
        // Cut off midway (a crash), the import is simply run again: what was written is unchanged.
        var offset = 0
        while offset < list.rows.count {
            let rows = list.rows[offset..<min(offset + CatalogStore.importBatch, list.rows.count)]
            let before = progress
            progress = try await store.db.write { db in
                var p = before
                try CatalogStore.apply(db, rows: rows, progress: &p, now: t)
                return p
            }
            offset += rows.count
        }
        let done = progress
        try await store.db.write { db in try CatalogStore.finish(db, done) }
        return progress.report
    }

    func getMapping(_ request: Catalog_GetMappingRequest, context: ServerContext) async throws -> Catalog_ColumnMapping {
        let supplier = request.supplier.trimmingSpaces
        guard let m = try await store.db.read({ try CatalogStore.mapping($0, supplier: supplier) }) else {
            throw CatalogError.notFound(
                "no column mapping stored for supplier \"\(Clip.value(supplier))\" (one is stored by its first import)")
        }
        return m
    }

    func putMapping(_ request: Catalog_PutMappingRequest, context: ServerContext) async throws -> Catalog_ColumnMapping {
        let supplier = request.supplier.trimmingSpaces
        var v = PriceListImport.validate(request.mapping ?? Catalog_ColumnMapping())
        if supplier.isEmpty { v.insert(.init(field: "supplier", description: "name the supplier"), at: 0) }
        if request.mapping == nil { v.insert(.init(field: "mapping", description: "required"), at: 0) }
        guard v.isEmpty else { throw CatalogError.invalid("the mapping is not valid", v) }
        let m = request.mapping!
        let t = now()
        try await store.db.write { db in try CatalogStore.putMapping(db, supplier: supplier, m, now: t) }
        return m
    }

    // MARK: Items

    func searchItems(_ request: Catalog_SearchItemsRequest, context: ServerContext) async throws -> Catalog_SearchItemsResponse {
        var v = [RPCError.FieldViolation]()
        let query = request.query.trimmingSpaces
        if query.isEmpty { v.append(.init(field: "query", description: "a SKU or words of an item's name")) }
        if query.count > 200 { v.append(.init(field: "query", description: "at most 200 characters, got \(query.count)")) }
        if request.limit < 0 || request.limit > 100 {
            v.append(.init(field: "limit", description: "1..100 (0 = 20), got \(request.limit)"))
        }
        guard v.isEmpty else { throw CatalogError.invalid("cannot search", v) }
        let limit = request.limit == 0 ? 20 : Int(request.limit)
        let supplier = request.supplier.trimmingSpaces
        return try await store.db.read { db in try CatalogSearch.search(db, query: query, supplier: supplier, limit: limit) }
    }

    func getItem(_ request: Catalog_GetItemRequest, context: ServerContext) async throws -> Catalog_ItemDetails {
        guard let n = CatalogStore.itemNumber(request.id) else {
            throw CatalogError.invalid("\"\(Clip.value(request.id))\" is not an item id (like item-17)", field: "id")
        }
        guard let d = try await store.db.read({ try CatalogStore.details($0, id: n) }) else {
            throw CatalogError.notFound("no catalogue item \(request.id)")
        }
        return d
    }

    // MARK: Proposals

    struct Terms {
        var vatBasisPoints: Int64
        var validUntil: String
        var locale: String
    }

    /// VAT, validity and language as given, or the defaults; every problem named.
    private func terms(vat: String, validUntil: String, locale: String, fallback: Terms?) throws -> Terms {
        var v = [RPCError.FieldViolation]()
        let today = CalendarDate.day(ofMillis: now())
        var t =
            fallback
            ?? Terms(vatBasisPoints: vatBasisPoints, validUntil: CalendarDate.format(day: today + 14), locale: defaultLocale.rawValue)
        if !vat.trimmingSpaces.isEmpty {
            if let r = FixedPoint.parse(vat, places: 2), r >= 0, r <= 10_000 {
                t.vatBasisPoints = r
            } else {
                v.append(
                    .init(
                        field: "vat_rate", description: "a percentage 0..100 (\"20\", \"10\", \"0\" for none), got \"\(Clip.value(vat))\""))
            }
        }
        if !validUntil.trimmingSpaces.isEmpty {
            if let d = CalendarDate.dayNumber(validUntil.trimmingSpaces), d >= today {
                t.validUntil = validUntil.trimmingSpaces
            } else {
                v.append(
                    .init(
                        field: "valid_until",
                        description:
                            "a date \"YYYY-MM-DD\" from today (\(CalendarDate.format(day: today))) on, got \"\(Clip.value(validUntil))\""))
            }
        } else if let f = fallback, (CalendarDate.dayNumber(f.validUntil) ?? 0) < today {
            t.validUntil = CalendarDate.format(day: today + 14)
        }
        if !locale.trimmingSpaces.isEmpty {
            if let l = MessageLocale(code: locale) {
                t.locale = l.rawValue
            } else {
                v.append(.init(field: "locale", description: "\"ru\" or \"en\", got \"\(Clip.value(locale))\""))
            }
        }
        guard v.isEmpty else { throw CatalogError.invalid("the proposal's terms are not valid", v) }
        return t
    }

    /// The manager as given, completed from the directory entry of the lead's owner.
    private func manager(_ given: Catalog_Party?, owner: String) async -> Catalog_Party {
        var m = given ?? Catalog_Party()
        if m.name.isEmpty || (m.email.isEmpty && m.phone.isEmpty), !owner.isEmpty, let lookUpPerson,
            let p = try? await lookUpPerson(owner)
        {
            if m.name.isEmpty { m.name = p.name }
            if m.email.isEmpty { m.email = p.email }
            if m.phone.isEmpty { m.phone = p.phone }
        }
        if m.name.isEmpty { m.name = Caller.name(or: "") }
        return m
    }

    /// The lead's order lines as proposal lines, when a proposal names none.
    static func inputs(from lead: Intake_Lead) -> [Catalog_ProposalLineInput] {
        lead.orderLines.map { l in
            var i = Catalog_ProposalLineInput()
            i.itemId = l.itemId
            i.name = l.itemId.isEmpty ? (l.productName.isEmpty ? l.productCode : l.productName) : ""
            i.quantity = l.quantity
            if l.itemId.isEmpty { i.price = l.price }
            return i
        }
    }

    func createProposal(_ request: Catalog_CreateProposalRequest, context: ServerContext) async throws -> Catalog_Proposal {
        let leadRef = request.leadId.trimmingSpaces
        guard !leadRef.isEmpty else { throw CatalogError.invalid("name the lead the proposal answers", field: "lead_id") }
        let terms = try terms(vat: request.vatRate, validUntil: request.validUntil, locale: request.locale, fallback: nil)
        guard let (_, found) = try await store.db.read({ try IntakeStore.leadRecord($0, leadRef) }) else {
            throw CatalogError.notFound("no lead \(Clip.value(leadRef))")
        }
        let manager = await manager(request.manager, owner: found.ownerId)
        let actor = Self.actor(request.actor)
        let t = now()
        return try await store.db.write { db in
            guard let (n, lead) = try IntakeStore.leadRecord(db, leadRef) else { throw CatalogError.notFound("no lead \(leadRef)") }
            let inputs = request.lines.isEmpty ? Self.inputs(from: lead) : request.lines
            if inputs.isEmpty {
                throw CatalogError.invalid("lead \(lead.registrationNumber) has no order lines: give the proposal's lines", field: "lines")
            }
            let (lines, currency) = try ProposalMath.lines(inputs) { try CatalogStore.item(db, id: $0) }
            var p = Catalog_Proposal()
            p.number = try ProposalStore.nextNumber(db, year: CalendarDate.year(ofMillis: t), locale: terms.locale)
            p.version = 1
            p.status = .draft
            p.leadId = lead.id
            p.leadRegistrationNumber = lead.registrationNumber
            p.client = try Self.clientParty(db, lead: lead, address: request.clientAddress)
            p.manager = manager
            p.lines = lines
            p.currency = currency
            Self.setTotals(&p, vat: terms.vatBasisPoints)
            p.validUntil = terms.validUntil
            p.note = request.note.trimmingSpaces
            p.locale = terms.locale
            p.createdAtMs = t
            p.createdBy = actor
            p.history = [Self.event(t, actor, .draft, "created")]
            return try ProposalStore.insert(db, p, lead: n)
        }
    }

    static func setTotals(_ p: inout Catalog_Proposal, vat: Int64) {
        let totals = ProposalMath.totals(p.lines, vatBasisPoints: vat)
        p.subtotal = FixedPoint.format(totals.subtotal, places: 2)
        p.vatRate = ProposalMath.percentText(vat)
        p.vat = FixedPoint.format(totals.vat, places: 2)
        p.total = FixedPoint.format(totals.total, places: 2)
    }

    static func event(_ at: Int64, _ actor: String, _ status: Catalog_ProposalStatus, _ note: String) -> Catalog_ProposalEvent {
        var e = Catalog_ProposalEvent()
        e.atMs = at
        e.actor = actor
        e.status = status
        e.note = note
        return e
    }

    /// The client's organisation from the client card: the company (else the person's name), INN,
    /// address; the applicant as the contact.
    static func clientParty(_ db: Connection, lead: Intake_Lead, address: String) throws -> Catalog_Party {
        var party = Catalog_Party()
        let a = lead.applicant ?? Intake_Applicant()
        if let n = IntakeStore.number(lead.clientId, prefix: "client"), let c = try IntakeStore.client(db, n) {
            party.name = c.company.isEmpty ? c.name : c.company
            party.taxId = c.taxId
            party.address = c.address
            party.email = c.email
            party.phone = c.phone
            party.contact = c.company.isEmpty ? "" : c.name
        } else {
            party.name = a.company.isEmpty ? a.name : a.company
            party.taxId = a.taxId
            party.email = a.email
            party.phone = a.phone
        }
        if party.address.isEmpty { party.address = a.address }
        if !address.trimmingSpaces.isEmpty { party.address = address.trimmingSpaces }
        if party.contact.isEmpty && !a.company.isEmpty { party.contact = a.name }
        return party
    }

    private func proposalNumber(_ id: String) throws -> Int64 {
        guard let n = ProposalStore.number(id) else {
            throw CatalogError.invalid("\"\(Clip.value(id))\" is not a proposal id (like proposal-3)", field: "id")
        }
        return n
    }

    func reviseProposal(_ request: Catalog_ReviseProposalRequest, context: ServerContext) async throws -> Catalog_Proposal {
        let n = try proposalNumber(request.id)
        guard let old = try await store.db.read({ try ProposalStore.get($0, id: n) }) else {
            throw CatalogError.notFound("no proposal \(request.id)")
        }
        let fallback = Terms(
            vatBasisPoints: FixedPoint.parse(old.vatRate, places: 2) ?? vatBasisPoints, validUntil: old.validUntil, locale: old.locale)
        let terms = try terms(vat: request.vatRate, validUntil: request.validUntil, locale: "", fallback: fallback)
        let manager = request.manager.map { m -> Catalog_Party in
            var merged = old.manager ?? Catalog_Party()
            if !m.name.isEmpty { merged.name = m.name }
            if !m.email.isEmpty { merged.email = m.email }
            if !m.phone.isEmpty { merged.phone = m.phone }
            if !m.contact.isEmpty { merged.contact = m.contact }
            return merged
        }
        let actor = Self.actor(request.actor)
        let t = now()
        return try await store.db.write { db in
            guard let current = try ProposalStore.get(db, id: n) else { throw CatalogError.notFound("no proposal \(request.id)") }
            guard try ProposalStore.isLatest(db, id: n) else {
                throw CatalogError.illegalProposalStep(
                    proposal: "\(current.number) v\(current.version)", current: "superseded by a later version", action: "revising",
                    allowedFrom: ["the latest version"])
            }
            if current.status == .accepted {
                throw CatalogError.illegalProposalStep(
                    proposal: current.number, current: "accepted", action: "revising",
                    allowedFrom: ["draft", "approved", "sent", "declined"])
            }
            guard let (leadRow, lead) = try IntakeStore.leadRecord(db, current.leadId) else {
                throw CatalogError.notFound("no lead \(current.leadId)")
            }
            let inputs = request.lines.isEmpty ? current.lines.map(Self.input) : request.lines
            let (lines, currency) = try ProposalMath.lines(inputs) { try CatalogStore.item(db, id: $0) }
            var p = current
            p.id = ""
            p.version = current.version + 1
            p.status = .draft
            p.client = try Self.clientParty(db, lead: lead, address: current.client?.address ?? "")
            if let manager { p.manager = manager }
            p.lines = lines
            p.currency = currency
            Self.setTotals(&p, vat: terms.vatBasisPoints)
            p.validUntil = terms.validUntil
            if !request.note.trimmingSpaces.isEmpty { p.note = request.note.trimmingSpaces }
            p.createdAtMs = t
            p.createdBy = actor
            p.history = [Self.event(t, actor, .draft, "version \(p.version) of \(p.number), revising version \(current.version)")]
            return try ProposalStore.insert(db, p, lead: leadRow)
        }
    }

    /// A stored line as the input that gives it again.
    static func input(_ l: Catalog_ProposalLine) -> Catalog_ProposalLineInput {
        var i = Catalog_ProposalLineInput()
        i.itemId = l.itemId
        i.name = l.itemId.isEmpty ? l.name : ""
        i.unit = l.itemId.isEmpty ? l.unit : ""
        i.quantity = l.quantity
        // A catalogue line keeps its edited price; otherwise the catalogue's current one applies.
        if l.itemId.isEmpty || !l.cataloguePrice.isEmpty { i.price = l.price }
        i.priceReason = l.priceReason
        i.discountPercent = l.discountPercent
        return i
    }

    func getProposal(_ request: Catalog_GetProposalRequest, context: ServerContext) async throws -> Catalog_Proposal {
        let n = try proposalNumber(request.id)
        guard let p = try await store.db.read({ try ProposalStore.get($0, id: n) }) else {
            throw CatalogError.notFound("no proposal \(request.id)")
        }
        return p
    }

    func listProposals(_ request: Catalog_ListProposalsRequest, context: ServerContext) async throws -> Catalog_ListProposalsResponse {
        guard request.limit >= 0 && request.limit <= 500 else {
            throw CatalogError.invalid("limit is 1..500 (0 = 100), got \(request.limit)", field: "limit")
        }
        let limit = request.limit == 0 ? 100 : Int(request.limit)
        var lead: Int64? = nil
        if !request.leadId.trimmingSpaces.isEmpty {
            let ref = request.leadId.trimmingSpaces
            guard let (n, _) = try await store.db.read({ try IntakeStore.leadRecord($0, ref) }) else {
                throw CatalogError.notFound("no lead \(Clip.value(ref))")
            }
            lead = n
        }
        let status = request.status
        let leadRow = lead
        var r = Catalog_ListProposalsResponse()
        r.proposals = try await store.db.read { db in try ProposalStore.list(db, lead: leadRow, status: status, limit: limit) }
        return r
    }

    func actOnProposal(_ request: Catalog_ActOnProposalRequest, context: ServerContext) async throws -> Catalog_Proposal {
        let n = try proposalNumber(request.id)
        if request.action == .approve || request.action == .return {
            try Caller.require(Permission.proposalsApprove, for: "approving a proposal (or returning it for correction)")
        }
        let note = request.note.trimmingSpaces
        if (request.action == .decline || request.action == .return) && note.isEmpty {
            throw CatalogError.invalid("say why (note): the reason is kept in the proposal's history", field: "note")
        }
        let actor = Self.actor(request.actor)
        let t = now()
        return try await store.db.write { db in
            guard var p = try ProposalStore.get(db, id: n) else { throw CatalogError.notFound("no proposal \(request.id)") }
            let to = try ProposalMath.next(p.status, request.action, proposal: "\(p.number) v\(p.version)")
            p.status = to
            var entry = note
            if to == .sent, let (_, lead) = try IntakeStore.leadRecord(db, p.leadId) {
                // The applicant gets the PDF by e-mail (made when the mail goes out), queued with this step.
                if let email = lead.applicant?.email, !email.trimmingSpaces.isEmpty {
                    let locale = MessageLocale(code: p.locale) ?? .ru
                    let manager = [p.manager?.name ?? "", p.manager?.phone ?? "", p.manager?.email ?? ""].filter { !$0.isEmpty }
                    try store.tellApplicant(
                        db, .proposalSent, lead,
                        extra: [
                            "proposal": p.number, "attachment": p.id, "valid_until": locale.date(iso: p.validUntil),
                            "total": ProposalPDF.money(p.total, locale: p.locale) + " "
                                + ProposalPDF.currencySign(p.currency, locale: p.locale),
                            "manager": manager.joined(separator: ", "),
                        ], byEmail: true, now: t)
                    entry = [note, "e-mailed to \(email)"].filter { !$0.isEmpty }.joined(separator: "; ")
                } else {
                    entry = [note, "not e-mailed: the applicant left no e-mail address"].filter { !$0.isEmpty }.joined(separator: "; ")
                }
            }
            p.history.append(Self.event(t, actor, to, entry))
            try ProposalStore.update(db, id: n, p)
            return p
        }
    }

    /// The PDF a queued e-mail names ("proposal-3"), for the mailer; nil for anything else.
    static func attachment(_ store: IntakeStore, seller: ProposalSeller) -> @Sendable (String) async throws -> MailAttachment? {
        { reference in
            guard let n = ProposalStore.number(reference), let p = try await store.db.read({ try ProposalStore.get($0, id: n) }) else {
                return nil
            }
            return MailAttachment(
                fileName: "\(p.number)-v\(p.version).pdf", contentType: "application/pdf", bytes: ProposalPDF.render(p, seller: seller))
        }
    }

    func renderProposal(_ request: Catalog_RenderProposalRequest, responses: ResponseWriter<Catalog_DocumentChunk>, context: ServerContext)
        async throws
    {
        let p = try await getProposal(
            {
                var g = Catalog_GetProposalRequest()
                g.id = request.id
                return g
            }(), context: context)
        // Rendering takes milliseconds of CPU: not on the event loop the handler runs on.
        let seller = self.seller
        let pdf = try await Self.offThePool(on: Self.rendering) { ProposalPDF.render(p, seller: seller) }
        var offset = 0
        repeat {
            var chunk = Catalog_DocumentChunk()
            if offset == 0 {
                chunk.contentType = "application/pdf"
                chunk.fileName = "\(p.number)-v\(p.version).pdf"
                chunk.totalSize = Int64(pdf.count)
            }
            let end = min(offset + Self.chunkSize, pdf.count)
            chunk.data = Array(pdf[offset..<end])
            try await responses.write(chunk)
            offset = end
        } while offset < pdf.count
    }

    func proposalFigures(_ request: Catalog_ProposalFiguresRequest, context: ServerContext) async throws -> Catalog_ProposalFiguresResponse
    {
        let period = request.period.isEmpty ? "month" : request.period
        guard ["day", "month", "year"].contains(period) else {
            throw CatalogError.invalid("period is \"day\", \"month\" or \"year\", got \"\(Clip.value(request.period))\"", field: "period")
        }
        guard request.fromMs >= 0, request.toMs >= 0, request.toMs == 0 || request.toMs > request.fromMs else {
            throw CatalogError.invalid("from_ms and to_ms: instants >= 0, to after from (0 = unbounded)", field: "to_ms")
        }
        let (from, to) = (request.fromMs, request.toMs)
        return try await store.db.read { db in try ProposalStore.figures(db, from: from, to: to, period: period) }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

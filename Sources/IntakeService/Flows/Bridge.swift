import LeadwireAPI

/// Translations from Intake's records to what the routing and report services take (pure).
enum Bridge {
    /// "web_form": the channel names routing rules and reports use.
    static func channelName(_ c: Intake_Channel) -> String { c.shortName ?? "channel_\(c.rawValue)" }

    static func summary(_ lead: Intake_Lead, source: Intake_Source) -> Routing_LeadSummary {
        var s = Routing_LeadSummary()
        s.leadId = lead.id
        s.registrationNumber = lead.registrationNumber
        s.sourceId = lead.sourceId
        s.channel = channelName(lead.channel)
        s.category = lead.category
        s.fields = lead.fields.map { f in
            var v = Routing_FieldValue()
            v.name = f.name
            v.value = f.value
            return v
        }
        s.sourceDefaultOwnerId = source.defaultOwnerId
        s.sourceDefaultRole = source.defaultRole
        s.replyDeadlineMs = lead.replyDueAtMs
        s.receivedAtMs = lead.receivedAtMs
        return s
    }

    /// What a lead event in the outbox keeps of the lead: what `reportEvent` reads. The applicant,
    /// texts and order lines stay in the lead's row; copying them into every event roughly doubled
    /// the bytes each SubmitLead writes.
    static func eventView(_ lead: Intake_Lead) -> Intake_Lead {
        var v = Intake_Lead()
        v.id = lead.id
        v.registrationNumber = lead.registrationNumber
        v.sourceId = lead.sourceId
        v.channel = lead.channel
        v.category = lead.category
        v.ownerId = lead.ownerId
        v.status = lead.status
        v.fields = lead.fields
        v.receivedAtMs = lead.receivedAtMs
        v.replyDueAtMs = lead.replyDueAtMs
        v.rating = lead.rating
        v.clientId = lead.clientId
        return v
    }

    /// An outbox lead change as a report event; its id is the outbox row's, so a redelivery is
    /// recognised by the report service.
    static func reportEvent(_ change: Intake_LeadChange, outboxID: Int64) -> Report_LeadEvent {
        let lead = change.lead ?? Intake_Lead()
        var e = Report_LeadEvent()
        e.eventId = "intake:\(outboxID)"
        // A kind this build does not know (written by a newer one) reaches report as a change of
        // state, which report counts by the lead's status.
        e.kind = LeadEventKind(rawValue: change.kind)?.reportKind ?? "state_changed"
        e.atMs = change.atMs
        e.leadId = lead.id
        e.registrationNumber = lead.registrationNumber
        e.sourceId = lead.sourceId
        e.channel = channelName(lead.channel)
        e.category = lead.category
        e.ownerId = lead.ownerId
        e.status = LeadLifecycle.name(lead.status)
        e.fields = lead.fields.map { f in
            var v = Report_FieldValue()
            v.name = f.name
            v.value = f.value
            return v
        }
        e.receivedAtMs = lead.receivedAtMs
        e.replyDeadlineMs = lead.replyDueAtMs
        e.rating = lead.rating
        e.clientId = lead.clientId
        e.publicComment = change.publicComment
        return e
    }
}

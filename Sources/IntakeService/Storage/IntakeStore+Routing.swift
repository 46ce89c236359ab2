import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// Routing's answers and later changes of owner, recorded on the leads.
extension IntakeStore {
    // MARK: Routing results

    /// Records routing's decision on the lead (owner, role, explanation), with an "assigned" event,
    /// in one transaction; the outbox request for it is marked delivered. Idempotent: a
    /// second answer for the same lead changes nothing.
    /// Records routing's answer to a route message (and marks the message delivered). Returns the
    /// lead and whether the answer changed it: a late answer for a lead routing has since handed on
    /// changes nothing.
    func applyAssignment(_ a: Routing_Assignment, now: Int64) async throws -> (lead: Intake_Lead, changed: Bool)? {
        guard let n = Self.number(a.leadId, prefix: "lead") else { return nil }
        return try await db.write { db -> (lead: Intake_Lead, changed: Bool)? in
            try db.run("UPDATE outbox SET delivered_at = ? WHERE kind = 'route' AND lead_id = ? AND delivered_at IS NULL", now, n)
            guard
                var lead = try db.first(
                    "SELECT body FROM leads WHERE id = ?", n, map: { try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(0)) })
            else {
                return nil
            }
            // Pending: the first answer. Queued: routing has since handed the lead to someone.
            guard lead.routing == .pending || (lead.routing == .queued && !a.personId.isEmpty) else { return (lead, false) }
            let previous = lead.ownerId
            try Self.setOwner(db, n, &lead, from: a, actor: "routing", note: a.explanation, now: now)
            try self.tellOfAssignment(db, a, lead, previousOwner: previous, now: now)
            return (lead, true)
        }
    }

    /// Records routing's answer on the lead: owner, role, explanation, queued or assigned; a history
    /// line and an "assigned" event for report, in the caller's transaction.
    static func setOwner(
        _ db: Connection, _ n: Int64, _ lead: inout Intake_Lead, from a: Routing_Assignment, actor: String, note: String, now: Int64
    ) throws {
        lead.ownerId = a.personId
        lead.routedRole = a.role
        lead.routingExplanation = a.explanation
        lead.routing = a.personId.isEmpty ? .queued : .assigned
        lead.updatedAtMs = now
        try db.run(
            "UPDATE leads SET owner_id = ?, queued = ?, body = ? WHERE id = ?", a.personId, lead.routing == .queued,
            ProtoCodec.encode(lead), n)
        try appendHistory(db, n, actor: actor, action: "assigned", from: lead.status, to: lead.status, note: note, now: now)
        try appendEvent(db, n, kind: .assigned, lead: lead, now: now)
    }

    /// The last of routing's owner changes applied here.
    func ownerChangesCursor() async throws -> Int64 {
        try await db.read { db in try db.first("SELECT seq FROM feed_cursors WHERE name = 'routing-owner-changes'") { $0.int(0) } ?? 0 }
    }

    /// Applies one of routing's owner changes, exactly once and in order: the cursor moves in the
    /// same transaction, and a change at or below it is skipped. The lead takes the new owner (or
    /// goes back to waiting in a queue), its history says who changed it and why, and report hears
    /// of it (an "assigned" event through the outbox). Returns the lead when it changed.
    func applyOwnerChange(_ change: Routing_OwnerChange, now: Int64) async throws -> Intake_Lead? {
        try await db.write { db -> Intake_Lead? in
            let cursor = try db.first("SELECT seq FROM feed_cursors WHERE name = 'routing-owner-changes'") { $0.int(0) } ?? 0
            guard change.seq > cursor else { return nil }
            try db.run(
                "INSERT INTO feed_cursors(name, seq) VALUES ('routing-owner-changes', ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                change.seq)
            let a = change.assignment ?? Routing_Assignment()
            guard let n = Self.number(a.leadId, prefix: "lead"),
                var lead = try db.first(
                    "SELECT body FROM leads WHERE id = ?", n, map: { try ProtoCodec.decode(Intake_Lead.self, from: $0.blob(0)) })
            else { return nil }
            guard lead.ownerId != a.personId else { return nil }
            let previous = lead.ownerId
            let step = a.history.last
            let note = [step?.kind, step?.note].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            try Self.setOwner(
                db, n, &lead, from: a, actor: step?.actor.isEmpty == false ? step!.actor : "routing",
                note: note.isEmpty ? a.explanation : note, now: now)
            try self.tellOfAssignment(db, a, lead, previousOwner: previous, now: now)
            return lead
        }
    }
}

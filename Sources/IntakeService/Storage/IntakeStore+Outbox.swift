import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// The transactional outbox: what is owed to routing, report and the applicant's gateway.
extension IntakeStore {
    // MARK: Outbox

    /// What an outbox row carries, as stored in its `kind` column.
    enum OutboxKind: String, Sendable, CaseIterable {
        /// A registration reply from before migration 7; moved to the message queue at start.
        case reply
        /// A lead event for report (Intake_LeadChange).
        case event
        /// Routing requests: route a new lead, a decision was taken, the lead is finished.
        case route, decided, release

        static let routing: [OutboxKind] = [.route, .decided, .release]
    }

    struct OutboxRow: Sendable {
        var id: Int64
        var kind: OutboxKind
        var payload: [UInt8]
        var createdAt: Int64
    }

    /// Undelivered messages of these kinds, oldest first.
    func pendingOutbox(kinds: [OutboxKind], limit: Int) async throws -> [OutboxRow] {
        try await db.read { db in
            var rows = [OutboxRow]()
            for k in kinds {
                rows += try db.query(
                    "SELECT id, payload, created_at FROM outbox WHERE kind = ? AND delivered_at IS NULL ORDER BY id LIMIT ?", k.rawValue,
                    limit
                ) {
                    OutboxRow(id: $0.int(0), kind: k, payload: $0.blob(1), createdAt: $0.int(2))
                }
            }
            rows.sort { $0.id < $1.id }
            return Array(rows.prefix(limit))
        }
    }

    func markDelivered(_ ids: [Int64], now: Int64, failure: String? = nil) async throws {
        guard !ids.isEmpty else { return }
        try await db.write { db in
            for id in ids { try db.run("UPDATE outbox SET delivered_at = ?, failure = ? WHERE id = ?", now, failure, id) }
        }
    }

    /// Per kind: undelivered messages and the creation time of the oldest.
    func outboxBacklog(kinds: [OutboxKind]) async throws -> [OutboxKind: (count: Int, oldest: Int64?)] {
        try await db.read { db in
            var out = [OutboxKind: (count: Int, oldest: Int64?)]()
            for k in kinds {
                let count =
                    try db.first("SELECT COUNT(*) FROM outbox WHERE kind = ? AND delivered_at IS NULL", k.rawValue) { Int($0.int(0)) } ?? 0
                let oldest = try db.first(
                    "SELECT created_at FROM outbox WHERE kind = ? AND delivered_at IS NULL ORDER BY id LIMIT 1", k.rawValue
                ) {
                    $0.int(0)
                }
                out[k] = (count, oldest)
            }
            return out
        }
    }

    /// Drops delivered messages older than `before` (the outbox is not an archive: history is).
    func purgeDelivered(before: Int64) async throws -> Int {
        try await db.write { db in try db.run("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", before) }
    }
}

import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// Client cards: debt and lookups.
extension IntakeStore {
    // MARK: Clients

    func setClientDebt(_ id: String, cents: Int64) async throws -> Intake_Client {
        guard let n = Self.number(id, prefix: "client") else { throw IntakeError.notFound("no client \(id)") }
        return try await db.write { db in
            guard try db.run("UPDATE clients SET debt_cents = ? WHERE id = ?", cents, n) == 1 else {
                throw IntakeError.notFound("no client \(id)")
            }
            return try Self.client(db, n)!
        }
    }

    func client(_ id: String) async throws -> Intake_Client? {
        guard let n = Self.number(id, prefix: "client") else { return nil }
        return try await db.read { try Self.client($0, n) }
    }

    static func client(_ db: Connection, _ n: Int64) throws -> Intake_Client? {
        guard
            var c = try db.first(
                "SELECT name, email, phone, company, tax_id, debt_cents, created_at, address FROM clients WHERE id = ?", n,
                map: { r -> Intake_Client in
                    var c = Intake_Client()
                    c.name = r.string(0)
                    c.email = r.optionalString(1) ?? ""
                    c.phone = r.optionalString(2) ?? ""
                    c.company = r.string(3)
                    c.taxId = r.optionalString(4) ?? ""
                    c.debt = FixedPoint.format(r.int(5), places: 2)
                    c.createdAtMs = r.int(6)
                    c.address = r.string(7)
                    return c
                })
        else { return nil }
        c.id = clientID(n)
        c.leadIds = try db.query("SELECT id FROM leads WHERE client_id = ? ORDER BY id", n) { leadID($0.int(0)) }
        return c
    }
}

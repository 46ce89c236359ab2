import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// Sources: created, changed and switched on or off; read through the cache the store keeps.
extension IntakeStore {
    // MARK: Sources

    func createSource(_ source: Intake_Source, now: Int64) async throws -> Intake_Source {
        try await db.write { db in
            var s = source
            s.createdAtMs = now
            s.updatedAtMs = now
            do {
                try db.run(
                    "INSERT INTO sources(name, mailbox, enabled, definition, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    s.name, s.mailbox.isEmpty ? nil : ClientKeys.email(s.mailbox), s.enabled, [UInt8](), now, now)
            } catch let e as StoreError where e.isConstraintViolation {
                throw IntakeError.sourceNameTaken(s.name)
            }
            s.id = Self.sourceID(try db.lastInsertRowID())
            try db.run("UPDATE sources SET definition = ? WHERE id = ?", ProtoCodec.encode(s), try db.lastInsertRowID())
            return s
        }.cached(in: sourceCache)
    }

    func updateSource(_ source: Intake_Source, now: Int64) async throws -> Intake_Source {
        guard let n = Self.number(source.id, prefix: "src") else { throw IntakeError.notFound("no source \(source.id)") }
        return try await db.write { db in
            guard var s = try Self.source(db, n) else { throw IntakeError.notFound("no source \(source.id)") }
            let created = s.createdAtMs
            s = source
            s.createdAtMs = created
            s.updatedAtMs = now
            do {
                try db.run(
                    "UPDATE sources SET name = ?, mailbox = ?, enabled = ?, definition = ?, updated_at = ? WHERE id = ?",
                    s.name, s.mailbox.isEmpty ? nil : ClientKeys.email(s.mailbox), s.enabled, ProtoCodec.encode(s), now, n)
            } catch let e as StoreError where e.isConstraintViolation {
                throw IntakeError.sourceNameTaken(s.name)
            }
            return s
        }.cached(in: sourceCache)
    }

    func setSourceEnabled(_ id: String, _ enabled: Bool, now: Int64) async throws -> Intake_Source {
        guard let n = Self.number(id, prefix: "src") else { throw IntakeError.notFound("no source \(id)") }
        return try await db.write { db in
            guard var s = try Self.source(db, n) else { throw IntakeError.notFound("no source \(id)") }
            s.enabled = enabled
            s.updatedAtMs = now
            try db.run("UPDATE sources SET enabled = ?, definition = ?, updated_at = ? WHERE id = ?", enabled, ProtoCodec.encode(s), now, n)
            return s
        }.cached(in: sourceCache)
    }

    func source(_ id: String) async throws -> Intake_Source? {
        if let s = sourceCache.withLockedValue({ $0[id] }) { return s }
        guard let n = Self.number(id, prefix: "src") else { return nil }
        guard let s = try await db.read({ try Self.source($0, n) }) else { return nil }
        return s.cached(in: sourceCache)
    }

    func source(mailbox: String) async throws -> Intake_Source? {
        guard let m = ClientKeys.email(mailbox) else { return nil }
        return try await db.read { db in
            try db.first("SELECT definition FROM sources WHERE mailbox = ?", m) {
                try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0))
            }
        }
    }

    static func source(_ db: Connection, _ n: Int64) throws -> Intake_Source? {
        try db.first("SELECT definition FROM sources WHERE id = ?", n) { try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0)) }
    }

    func sources(includeDisabled: Bool) async throws -> [Intake_Source] {
        try await db.read { db in
            try db.query("SELECT definition FROM sources WHERE enabled = 1 OR ? = 1 ORDER BY id", includeDisabled) {
                try ProtoCodec.decode(Intake_Source.self, from: $0.blob(0))
            }
        }
    }
}

extension Intake_Source {
    /// Two updates of one source may finish in either order: the cache keeps the newer definition.
    fileprivate func cached(in cache: NIOLockedValueBox<[String: Intake_Source]>) -> Intake_Source {
        cache.withLockedValue { c in
            if let old = c[id], old.updatedAtMs > updatedAtMs { return }
            c[id] = self
        }
        return self
    }
}

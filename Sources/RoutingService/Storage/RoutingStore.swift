import LeadwireAPI
import NIOConcurrencyHelpers
import Store
import Wire

/// Routing's persistence (every SQL statement of the service is here) and its working state.
///
/// The directory, rules, round-robin positions and open-lead counts are small and read on every
/// decision, so they live in memory as well as in the database, in two copies:
///
/// - `working`, the state after every write run so far, confined to the store's writer queue. Writes
///   run there one at a time and change it as they go, so a decision sees every earlier decision,
///   including those waiting in the same group commit; the rotation it advances is written in the
///   same transaction as the decision.
/// - `published`, what readers (GetPerson, ListRoles, the escalation sweep) see: the working state as
///   of the last COMMIT, replaced by the database's transaction observer once the COMMIT has returned.
///   A reader therefore never sees a decision that a crash could still undo.
///
/// A write that throws a `RoutingError` has been refused before it changed anything; any other
/// failure (storage) leaves the working state suspect, and it is rebuilt from the database before
/// the next write runs. A transaction that fails to commit rebuilds it too.
final class RoutingStore: Sendable {
    let db: Database

    struct State: Sendable {
        var people: [String: Routing_Person] = [:]
        var roles: [String: Routing_Role] = [:]
        var ruleSet = Routing_RuleSet()
        var directory = Directory()
        var rules: [RoutingRule] = []
        var rotation: RotationState = [:]
        var load: [PersonID: Int] = [:]
    }

    private let published = NIOLockedValueBox(State())
    // Confined to the database's writer queue (write bodies and the transaction observer).
    nonisolated(unsafe) private var working = State()
    nonisolated(unsafe) private var workingSuspect = false
    /// The directory's version (`meta.directory_version`: people, roles, rules) that `working` holds.
    /// Writer queue only. When another replica wrote but this has not moved, only the rotation and
    /// the loads are read again (a decision's catch-up), not the whole directory.
    nonisolated(unsafe) private var workingDirectory = ""

    static let migrations = [
        Migration(
            1, "routing schema",
            """
            CREATE TABLE people (
                id INTEGER PRIMARY KEY,
                login TEXT NOT NULL UNIQUE,
                body BLOB NOT NULL
            );
            CREATE TABLE roles (name TEXT PRIMARY KEY, body BLOB NOT NULL);
            -- Every version of the rule set is kept; the highest is in force.
            CREATE TABLE rule_sets (version INTEGER PRIMARY KEY, body BLOB NOT NULL, created_at INTEGER NOT NULL);
            -- Round-robin position per role: the last person served.
            CREATE TABLE rotation (role TEXT PRIMARY KEY, last_person TEXT NOT NULL);
            CREATE TABLE assignments (
                lead_id TEXT PRIMARY KEY,
                person_id TEXT NOT NULL,
                role TEXT NOT NULL,
                queued INTEGER NOT NULL,
                open INTEGER NOT NULL,
                awaiting_decision INTEGER NOT NULL,
                reply_deadline INTEGER NOT NULL,
                routed_at INTEGER NOT NULL,
                lead BLOB NOT NULL,
                body BLOB NOT NULL
            );
            CREATE INDEX assignments_open ON assignments(person_id) WHERE open = 1;
            CREATE INDEX assignments_queue ON assignments(role, routed_at) WHERE queued = 1 AND open = 1;
            CREATE INDEX assignments_due ON assignments(reply_deadline) WHERE awaiting_decision = 1 AND reply_deadline > 0;
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """),
        Migration(
            2, "owner changes for intake to follow",
            """
            -- One row per change of a lead's person after routing first answered, in commit order.
            CREATE TABLE owner_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, lead_id TEXT NOT NULL, at INTEGER NOT NULL, body BLOB NOT NULL);
            """),
    ]

    /// `path`: the SQLite file, or a PostgreSQL URL whose schema `schema` holds the tables.
    init(
        path: String, schema: String = "routing", now: Int64, onCommit: (@Sendable (Int) -> Void)? = nil, integrityCheckSeconds: Double = 30
    ) async throws {
        var config = Database.Configuration(path: path)
        config.schema = schema
        config.applicationName = "routing-service"
        config.integrityCheckSeconds = integrityCheckSeconds
        config.onCommit = onCommit
        db = try Database(configuration: config, migrations: Self.migrations)
        db.observeTransactions { [weak self] c, outcome in self?.transactionEnded(c, outcome) }
        // Another replica decided or changed the directory: this one's working state is stale.
        db.onOtherWriters { [weak self] c in
            guard let self else { return }
            let directory = try Self.directoryVersion(c)
            if directory == self.workingDirectory && !self.workingSuspect {
                try Self.loadDecisions(c, into: &self.working)
            } else {
                self.working = try Self.load(c)
                self.workingSuspect = false
            }
            self.workingDirectory = directory
        }
        try await db.write { c in
            // The stock roles of the material exist from the first start (and only then: a later
            // deletion or change by the operator is theirs to keep).
            if try c.first("SELECT value FROM meta WHERE key = 'stock_roles'", map: { $0.string(0) }) == nil {
                for r in RoutingModel.stockRoles {
                    try c.run("INSERT OR IGNORE INTO roles(name, body) VALUES (?, ?)", r.name, ProtoCodec.encode(r))
                }
                try c.run("INSERT INTO meta(key, value) VALUES ('stock_roles', ?)", String(now))
                try self.directoryChanged(c)
            }
        }
        try await reload()
    }

    /// Rebuilds the working state from the database (and publishes it with the commit).
    func reload() async throws {
        try await db.write { c in
            self.working = try Self.load(c)
            self.workingDirectory = try Self.directoryVersion(c)
            self.workingSuspect = false
        }
    }

    /// The database's transaction observer, on the writer queue after COMMIT or rollback.
    private func transactionEnded(_ c: Connection, _ outcome: Database.TransactionOutcome) {
        if outcome == .rolledBack || workingSuspect {
            // What the database holds now is the truth; if even that cannot be read, the last
            // published state is the best left (and the store's errors tell the operator).
            working = (try? Self.load(c)) ?? published.withLockedValue { $0 }
            workingSuspect = false
        }
        let state = working
        published.withLockedValue { $0 = state }
    }

    /// What decisions change: the round-robin positions and each person's open leads.
    private static func loadDecisions(_ c: Connection, into s: inout State) throws {
        s.rotation = [:]
        for (role, last) in try c.query("SELECT role, last_person FROM rotation", map: { ($0.string(0), $0.string(1)) }) {
            s.rotation[role] = last
        }
        s.load = [:]
        for (p, n) in try c.query(
            "SELECT person_id, COUNT(*) FROM assignments WHERE open = 1 AND person_id <> '' GROUP BY person_id",
            map: { ($0.string(0), Int($0.int(1))) })
        {
            s.load[p] = n
        }
    }

    static func directoryVersion(_ c: Connection) throws -> String {
        try c.first("SELECT value FROM meta WHERE key = 'directory_version'") { $0.string(0) } ?? ""
    }

    /// Every write to people, roles or rules moves the directory's version (see `workingDirectory`).
    private func directoryChanged(_ c: Connection) throws {
        let next = String((Int64(try Self.directoryVersion(c)) ?? 0) + 1)
        try c.run(
            "INSERT INTO meta(key, value) VALUES ('directory_version', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", next)
        workingDirectory = next
    }

    private static func load(_ c: Connection) throws -> State {
        var s = State()
        for p in try c.query("SELECT body FROM people", map: { try ProtoCodec.decode(Routing_Person.self, from: $0.blob(0)) }) {
            s.people[p.id] = p
        }
        for r in try c.query("SELECT body FROM roles", map: { try ProtoCodec.decode(Routing_Role.self, from: $0.blob(0)) }) {
            s.roles[r.name] = r
        }
        if let rs = try c.first(
            "SELECT body FROM rule_sets ORDER BY version DESC LIMIT 1",
            map: { try ProtoCodec.decode(Routing_RuleSet.self, from: $0.blob(0)) })
        {
            s.ruleSet = rs
            s.rules = RoutingModel.rules(rs)
        }
        try loadDecisions(c, into: &s)
        s.directory = Directory(
            people: Dictionary(uniqueKeysWithValues: s.people.values.map { ($0.id, RoutingModel.person($0)) }),
            roles: Dictionary(uniqueKeysWithValues: s.roles.values.map { ($0.name, RoutingModel.role($0)) }))
        return s
    }

    /// Runs a write with the working state. A refusal (`RoutingError`) changed nothing; after any
    /// other failure the state is rebuilt from the database (rolled back to before this write) before
    /// the next write runs.
    private func write<T: Sendable>(_ body: @escaping @Sendable (Connection, inout State) throws -> T) async throws -> T {
        try await db.write { c in
            if self.workingSuspect {
                self.working = try Self.load(c)
                self.workingSuspect = false
            }
            do {
                return try body(c, &self.working)
            } catch let refusal as RoutingError {
                throw refusal
            } catch {
                self.workingSuspect = true
                throw error
            }
        }
    }

    /// The state as of the last commit.
    var snapshot: State { published.withLockedValue { $0 } }

    // MARK: People

    static func personID(_ n: Int64) -> String { "person-\(n)" }

    static func personNumber(_ id: String) -> Int64? {
        guard id.hasPrefix("person-"), let n = Int64(id.dropFirst(7)), n > 0 else { return nil }
        return n
    }

    /// People and roles a record refers to must exist.
    private static func checkReferences(_ p: Routing_Person, _ s: State) throws {
        for r in p.roles where s.roles[r] == nil {
            throw RoutingError.notFound("no role \"\(r)\" (person.roles); ListRoles shows them, PutRole adds one")
        }
        for a in p.absences where !a.substituteId.isEmpty && s.people[a.substituteId] == nil {
            throw RoutingError.notFound("no person \(a.substituteId) (person.absences.substitute_id)")
        }
    }

    func createPerson(_ person: Routing_Person, now: Int64) async throws -> Routing_Person {
        try await write { c, state in
            var p = person
            try Self.checkReferences(p, state)
            p.active = true
            p.openLeads = 0
            p.createdAtMs = now
            p.updatedAtMs = now
            do {
                try c.run("INSERT INTO people(login, body) VALUES (?, ?)", p.login, [UInt8]())
            } catch let e as StoreError where e.isConstraintViolation {
                throw Self.loginTaken(p.login, state)
            }
            p.id = Self.personID(try c.lastInsertRowID())
            try c.run("UPDATE people SET body = ? WHERE id = ?", ProtoCodec.encode(p), try c.lastInsertRowID())
            try self.directoryChanged(c)
            state.people[p.id] = p
            state.directory.put(RoutingModel.person(p))
            // A newcomer to a role takes the leads that waited in its queue for somebody.
            for role in p.roles { try Self.drainQueue(c, &state, role: role, now: now) }
            return p
        }
    }

    /// The refusal for a login in use, naming who holds it so the caller can tell a re-run from a clash.
    private static func loginTaken(_ login: String, _ s: State) -> RoutingError {
        let holder = s.people.values.first { $0.login.lowercased() == login.lowercased() }
        return .loginTaken(login: login, holder: holder?.id ?? "another person", name: holder?.name ?? "")
    }

    func updatePerson(_ person: Routing_Person, now: Int64) async throws -> Routing_Person {
        try await write { c, state in
            guard let n = Self.personNumber(person.id), let old = state.people[person.id] else {
                throw RoutingError.notFound("no person \(person.id)")
            }
            try Self.checkReferences(person, state)
            var p = person
            p.createdAtMs = old.createdAtMs
            p.updatedAtMs = now
            p.openLeads = 0
            do {
                try c.run("UPDATE people SET login = ?, body = ? WHERE id = ?", p.login, ProtoCodec.encode(p), n)
            } catch let e as StoreError where e.isConstraintViolation {
                throw Self.loginTaken(p.login, state)
            }
            try self.directoryChanged(c)
            state.people[p.id] = p
            state.directory.put(RoutingModel.person(p))
            // Someone may have come back, gained capacity or joined a role: queued leads can move.
            for role in p.roles { try Self.drainQueue(c, &state, role: role, now: now) }
            return p
        }
    }

    func person(_ id: String) -> Routing_Person? {
        published.withLockedValue { s in
            guard var p = s.people[id] else { return nil }
            p.openLeads = Int32(s.load[id] ?? 0)
            return p
        }
    }

    func people(role: String, includeInactive: Bool) -> [Routing_Person] {
        published.withLockedValue { s in
            s.people.values
                .filter { (role.isEmpty || $0.roles.contains(role)) && (includeInactive || $0.active) }
                .map { p in
                    var p = p
                    p.openLeads = Int32(s.load[p.id] ?? 0)
                    return p
                }
                .sorted { (Self.personNumber($0.id) ?? 0) < (Self.personNumber($1.id) ?? 0) }
        }
    }

    // MARK: Roles

    func putRole(_ role: Routing_Role) async throws -> Routing_Role {
        let saved = try await write { c, state in
            var r = role
            r.memberIds = []
            if !r.headId.isEmpty, state.people[r.headId] == nil {
                throw RoutingError.notFound("no person \(r.headId) (role.head_id)")
            }
            try c.run(
                "INSERT INTO roles(name, body) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body", r.name,
                ProtoCodec.encode(r))
            try self.directoryChanged(c)
            state.roles[r.name] = r
            state.directory.roles[r.name] = RoutingModel.role(r)
            return r.name
        }
        return self.role(saved)!
    }

    func role(_ name: String) -> Routing_Role? {
        published.withLockedValue { s in
            guard var r = s.roles[name] else { return nil }
            r.memberIds = s.directory.members(of: name).map(\.id)
            return r
        }
    }

    func roles() -> [Routing_Role] {
        let names = published.withLockedValue { $0.roles.keys.sorted() }
        return names.compactMap { role($0) }
    }

    // MARK: Rules

    func setRules(_ proposed: Routing_RuleSet, expectedVersion: Int64, now: Int64) async throws -> Routing_RuleSet {
        try await write { c, state in
            if expectedVersion != 0 && expectedVersion != state.ruleSet.version {
                throw RoutingError.staleRules(expected: expectedVersion, actual: state.ruleSet.version)
            }
            try Self.checkRuleReferences(proposed, state)
            var rs = proposed
            rs.version = state.ruleSet.version + 1
            rs.updatedAtMs = now
            try c.run("INSERT INTO rule_sets(version, body, created_at) VALUES (?, ?, ?)", rs.version, ProtoCodec.encode(rs), now)
            try self.directoryChanged(c)
            state.ruleSet = rs
            state.rules = RoutingModel.rules(rs)
            return rs
        }
    }

    static func checkRuleReferences(_ rs: Routing_RuleSet, _ s: State) throws {
        for (i, r) in rs.rules.enumerated() {
            switch r.target {
            case .personId(let p) where s.people[p] == nil:
                throw RoutingError.notFound("no person \(p) (rules[\(i)].person_id, rule \"\(r.name)\")")
            case .role(let ro) where s.roles[ro] == nil:
                throw RoutingError.notFound("no role \"\(ro)\" (rules[\(i)].role, rule \"\(r.name)\")")
            default: break
            }
        }
        if !rs.defaultRole.isEmpty, s.roles[rs.defaultRole] == nil {
            throw RoutingError.notFound("no role \"\(rs.defaultRole)\" (default_role)")
        }
    }

    // MARK: Deciding

    /// Decides and stores who handles `lead`, or returns the stored decision for a retry.
    /// The decision as stored: the bytes written are the bytes answered, and a retry answers the
    /// stored bytes without decoding them.
    func route(_ lead: Routing_LeadSummary, actor: String, now: Int64) async throws -> EncodedMessage<Routing_Assignment> {
        try await write { c, state in
            if let existing = try Self.storedAssignment(c, lead.leadId) { return existing }
            var a = try Self.decide(c, &state, lead, now: now)
            a.history = [Self.event("routed", a.personId, actor: actor, note: a.explanation, at: now)]
            let stored = EncodedMessage(a)
            try c.run(
                """
                INSERT INTO assignments(lead_id, person_id, role, queued, open, awaiting_decision, reply_deadline, routed_at, lead, body)
                VALUES (?, ?, ?, ?, 1, 1, ?, ?, ?, ?)
                """,
                a.leadId, a.personId, a.role, a.personId.isEmpty, a.replyDeadlineMs, now, ProtoCodec.encode(lead), stored.bytes)
            return stored
        }
    }

    /// Runs the pure decision on the working state, applies its effects there (rotation, load) and
    /// writes the rotation row in the same transaction.
    private static func decide(_ c: Connection, _ state: inout State, _ lead: Routing_LeadSummary, now: Int64) throws -> Routing_Assignment
    {
        let decision = Router.decide(
            RoutingModel.lead(lead), directory: state.directory, rules: state.rules, rotation: state.rotation, load: state.load,
            now: now, defaultRole: state.ruleSet.defaultRole.isEmpty ? nil : state.ruleSet.defaultRole)
        if let role = decision.assignment.role, let last = decision.rotation[role], state.rotation[role] != last {
            try c.run(
                "INSERT INTO rotation(role, last_person) VALUES (?, ?) ON CONFLICT(role) DO UPDATE SET last_person = excluded.last_person",
                role, last)
        }
        state.rotation = decision.rotation
        if let p = decision.assignment.person { state.load[p, default: 0] += 1 }
        return RoutingModel.assignment(decision.assignment, lead: lead, now: now)
    }

    private static func event(_ kind: String, _ person: String, actor: String, note: String, at: Int64) -> Routing_AssignmentEvent {
        var e = Routing_AssignmentEvent()
        e.atMs = at
        e.kind = kind
        e.personId = person
        e.actor = actor
        e.note = note
        return e
    }

    private static func assignment(_ c: Connection, _ leadID: String) throws -> Routing_Assignment? {
        try c.first("SELECT body FROM assignments WHERE lead_id = ?", leadID) {
            try ProtoCodec.decode(Routing_Assignment.self, from: $0.blob(0))
        }
    }

    private static func storedAssignment(_ c: Connection, _ leadID: String) throws -> EncodedMessage<Routing_Assignment>? {
        try c.first("SELECT body FROM assignments WHERE lead_id = ?", leadID) { EncodedMessage(bytes: $0.blob(0)) }
    }

    private static func save(_ c: Connection, _ a: Routing_Assignment) throws {
        // Every change of person is recorded for intake (ListOwnerChanges), in the same
        // transaction as the change itself: none is lost, none is reported that did not happen.
        let before = try c.first("SELECT person_id FROM assignments WHERE lead_id = ?", a.leadId) { $0.string(0) }
        if let before, before != a.personId {
            try c.run(
                "INSERT INTO owner_changes(lead_id, at, body) VALUES (?, ?, ?)", a.leadId, a.history.last?.atMs ?? 0, ProtoCodec.encode(a))
        }
        let open = !a.released
        try c.run(
            "UPDATE assignments SET person_id = ?, role = ?, queued = ?, open = ?, awaiting_decision = ?, body = ? WHERE lead_id = ?",
            a.personId, a.role, a.personId.isEmpty, open, open && !a.decided && a.escalatedTo.isEmpty, ProtoCodec.encode(a), a.leadId)
    }

    func assignment(_ leadID: String) async throws -> EncodedMessage<Routing_Assignment>? {
        try await db.read { c in try Self.storedAssignment(c, leadID) }
    }

    func ownerChanges(after seq: Int64, limit: Int) async throws -> [Routing_OwnerChange] {
        try await db.read { c in
            try c.query("SELECT seq, at, body FROM owner_changes WHERE seq > ? ORDER BY seq LIMIT ?", seq, limit) { r in
                var change = Routing_OwnerChange()
                change.seq = r.int(0)
                change.atMs = r.int(1)
                change.assignment = try ProtoCodec.decode(Routing_Assignment.self, from: r.blob(2))
                return change
            }
        }
    }

    func reassign(_ leadID: String, to person: String, reason: String, actor: String, now: Int64) async throws -> Routing_Assignment {
        try await write { c, state in
            guard var a = try Self.assignment(c, leadID) else {
                throw RoutingError.notFound("no assignment for lead \(leadID); RouteLead it first")
            }
            guard state.people[person] != nil else { throw RoutingError.notFound("no person \(person) (person_id)") }
            if a.released { throw RoutingError.released(lead: leadID) }
            let from = a.personId
            if !from.isEmpty { state.load[from, default: 1] -= 1 }
            state.load[person, default: 0] += 1
            a.personId = person
            a.reason = .manual
            a.skipped = []
            a.tieBreak = ""
            a.explanation = "reassigned by hand from \(from.isEmpty ? "the queue" : from) to \(person): \(reason)"
            a.history.append(Self.event("reassigned", person, actor: actor, note: reason, at: now))
            try Self.save(c, a)
            if !from.isEmpty, let p = state.people[from] {
                for role in p.roles { try Self.drainQueue(c, &state, role: role, now: now) }
            }
            return a
        }
    }

    func release(_ leadID: String, actor: String, note: String, now: Int64) async throws -> Routing_Assignment {
        try await write { c, state in
            guard var a = try Self.assignment(c, leadID) else { throw RoutingError.notFound("no assignment for lead \(leadID)") }
            if a.released { return a }  // a retried release changes nothing
            a.released = true
            a.history.append(Self.event("released", a.personId, actor: actor, note: note, at: now))
            try Self.save(c, a)
            if !a.personId.isEmpty {
                state.load[a.personId, default: 1] -= 1
                for role in state.people[a.personId]?.roles ?? [] { try Self.drainQueue(c, &state, role: role, now: now) }
            }
            return a
        }
    }

    func markDecided(_ leadID: String, actor: String, now: Int64) async throws -> Routing_Assignment {
        try await write { c, state in
            guard var a = try Self.assignment(c, leadID) else { throw RoutingError.notFound("no assignment for lead \(leadID)") }
            if a.decided { return a }
            a.decided = true
            a.history.append(Self.event("decided", a.personId, actor: actor, note: "", at: now))
            try Self.save(c, a)
            return a
        }
    }

    /// Hands queued leads on in every role that has some: absences end by the clock, not by a call,
    /// so the periodic sweep runs this. Returns how many found a person.
    func drainAllQueues(now: Int64) async throws -> Int {
        try await write { c, state in
            let roles = try c.query("SELECT DISTINCT role FROM assignments WHERE queued = 1 AND open = 1 AND role <> ''") { $0.string(0) }
            let before = try c.first("SELECT COUNT(*) FROM assignments WHERE queued = 1 AND open = 1") { $0.int(0) } ?? 0
            for role in roles { try Self.drainQueue(c, &state, role: role, now: now) }
            let after = try c.first("SELECT COUNT(*) FROM assignments WHERE queued = 1 AND open = 1") { $0.int(0) } ?? 0
            return Int(before - after)
        }
    }

    /// Gives the oldest queued leads of `role` to whoever can now take them (writer queue only).
    private static func drainQueue(_ c: Connection, _ state: inout State, role: String, now: Int64) throws {
        let queued = try c.query(
            "SELECT lead, body FROM assignments WHERE queued = 1 AND open = 1 AND role = ? ORDER BY routed_at, lead_id LIMIT 50", role
        ) {
            (
                try ProtoCodec.decode(Routing_LeadSummary.self, from: $0.blob(0)),
                try ProtoCodec.decode(Routing_Assignment.self, from: $0.blob(1))
            )
        }
        for (lead, old) in queued {
            var fresh = try decide(c, &state, lead, now: now)
            guard !fresh.personId.isEmpty else { break }  // still nobody: the rest wait too
            fresh.history = old.history + [Self.event("dequeued", fresh.personId, actor: "routing", note: fresh.explanation, at: now)]
            fresh.routedAtMs = old.routedAtMs
            fresh.decided = old.decided
            fresh.escalatedTo = old.escalatedTo
            fresh.escalatedAtMs = old.escalatedAtMs
            try Self.save(c, fresh)
        }
    }

    // MARK: Escalation

    /// Open leads past their reply deadline with no decision; with `record`, each is escalated to its
    /// role's head once.
    func escalate(now: Int64, record: Bool) async throws -> [Routing_Escalation] {
        let find: @Sendable (Connection) throws -> [Routing_Assignment] = { c in
            try c.query(
                "SELECT body FROM assignments WHERE awaiting_decision = 1 AND reply_deadline > 0 AND reply_deadline < ? ORDER BY reply_deadline LIMIT 1000",
                now
            ) { try ProtoCodec.decode(Routing_Assignment.self, from: $0.blob(0)) }
        }
        let s = snapshot
        let heads: @Sendable (Routing_Assignment) -> String = { a in
            if let h = s.roles[a.role]?.headId, !h.isEmpty { return h }
            for r in s.people[a.personId]?.roles ?? [] { if let h = s.roles[r]?.headId, !h.isEmpty { return h } }
            return ""
        }
        let build: @Sendable (Routing_Assignment) -> Routing_Escalation = { a in
            var e = Routing_Escalation()
            e.assignment = a
            e.headId = heads(a)
            e.overdueMs = now - a.replyDeadlineMs
            return e
        }
        guard record else { return try await db.read { c in try find(c).map(build) } }
        return try await write { c, state in
            try find(c).map { a in
                var a = a
                let head = heads(a)
                a.escalatedTo = head.isEmpty ? "(no head)" : head
                a.escalatedAtMs = now
                a.history.append(
                    Self.event(
                        "escalated", head, actor: "routing",
                        note: "reply deadline passed \((now - a.replyDeadlineMs) / 60_000) min ago without a decision", at: now))
                try Self.save(c, a)
                return build(a)
            }
        }
    }
}

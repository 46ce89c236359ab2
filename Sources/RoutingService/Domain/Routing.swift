/// Routing's decision (MISSION §3, issue 4) as a pure function of the lead, the directory, the
/// rules, the rotation state, the current load and the clock — no storage, no I/O — so it can be
/// tested exhaustively and run in simulation without touching anything.

typealias PersonID = String
typealias RoleName = String

/// When someone is away, and who stands in for them.
struct Absence: Sendable, Hashable {
    var from: Int64  // epoch ms, inclusive
    var until: Int64  // epoch ms, exclusive
    var substitute: PersonID?
}

struct Person: Sendable, Hashable {
    var id: PersonID
    var name: String
    var login: String
    var email: String
    var roles: [RoleName]
    var active = true
    /// Most open leads this person may hold; nil = no cap.
    var capacity: Int?
    var absences: [Absence] = []

    func absence(at now: Int64) -> Absence? {
        absences.first { $0.from <= now && now < $0.until }
    }
}

enum DistributionStrategy: Sendable, Hashable {
    case roundRobin
    case leastLoaded
}

struct Role: Sendable, Hashable {
    var name: RoleName
    /// Receives escalations and the notice when nobody in the role can take a lead.
    var head: PersonID?
    var strategy: DistributionStrategy = .roundRobin
}

/// What routing knows of a lead.
struct LeadSummary: Sendable, Hashable {
    var id: String
    var sourceID: String
    var channel: String
    var category: String
    var fields: [String: String] = [:]
    /// The source's defaults.
    var sourceDefaultOwner: PersonID?
    var sourceDefaultRole: RoleName?
}

/// One condition on a lead's field. `field` is "source", "channel", "category" or an additional
/// field's name.
///
/// A class, though immutable: a decision tests hundreds of conditions, and Swift copied the struct
/// this was for each test (retaining and releasing each of its strings, a fifth of a decision);
/// a reference is one retain.
final class Condition: Sendable, Hashable {
    enum Test: Sendable, Hashable {
        case equals(String)
        case oneOf([String])
        case prefix(String)
        /// Numeric range, inclusive; either end may be open.
        case range(min: Double?, max: Double?)
    }

    let field: String
    let test: Test
    /// What the condition reads, resolved from `field` once when the condition is made (comparing
    /// the name with the built-in ones on every test cost more than the tests themselves), and
    /// `test` again as plain stored values, which a test reads in place instead of taking them out
    /// of the enum's payload.
    private let reads: Reads
    private let kind: Kind
    private let text: String
    private let list: [String]
    private let bounds: (min: Double?, max: Double?)

    private enum Reads { case source, channel, category, field }
    private enum Kind { case equals, oneOf, prefix, range }

    init(field: String, test: Test) {
        self.field = field
        self.test = test
        switch field {
        case "source": reads = .source
        case "channel": reads = .channel
        case "category": reads = .category
        default: reads = .field
        }
        var (text, list, bounds): (String, [String], (min: Double?, max: Double?)) = ("", [], (nil, nil))
        switch test {
        case .equals(let x): (kind, text) = (.equals, x)
        case .oneOf(let xs): (kind, list) = (.oneOf, xs)
        case .prefix(let p): (kind, text) = (.prefix, p)
        case .range(let lo, let hi): (kind, bounds) = (.range, (lo, hi))
        }
        (self.text, self.list, self.bounds) = (text, list, bounds)
    }

    static func == (a: Condition, b: Condition) -> Bool { a.field == b.field && a.test == b.test }

    func hash(into hasher: inout Hasher) {
        hasher.combine(field)
        hasher.combine(test)
    }

    func matches(_ lead: LeadSummary) -> Bool {
        var fields = LeadFields(lead)
        return matches(&fields)
    }

    func matches(_ fields: inout LeadFields) -> Bool {
        let value: String?
        switch reads {
        case .source: value = fields.lead.sourceID
        case .channel: value = fields.lead.channel
        case .category: value = fields.lead.category
        case .field: value = fields.value(of: field)
        }
        guard let v = value else { return false }
        switch kind {
        case .equals: return v == text
        case .oneOf: return list.contains(v)
        case .prefix: return v.hasPrefix(text)
        case .range:
            guard let d = Double(v) else { return false }
            return (bounds.min.map { d >= $0 } ?? true) && (bounds.max.map { d <= $0 } ?? true)
        }
    }
}

/// A lead's additional fields as one decision's conditions read them: each field is looked up in
/// the lead once, however many conditions test it (a rule set tests a handful of fields hundreds
/// of times, and hashing the name for every test was a third of a decision).
struct LeadFields {
    let lead: LeadSummary
    private var looked: [(name: String, value: String?)] = []

    init(_ lead: LeadSummary) { self.lead = lead }

    mutating func value(of name: String) -> String? {
        // By index, like the rules in `decide`: `first(where:)` copied each pair it passed over.
        for i in looked.indices where looked[i].name == name { return looked[i].value }
        let value = lead.fields[name]
        looked.append((name, value))
        return value
    }
}

struct RoutingRule: Sendable, Hashable {
    enum Target: Sendable, Hashable {
        case person(PersonID)
        case role(RoleName)
    }

    var name: String
    /// All must hold.
    var conditions: [Condition]
    var target: Target
}

/// Where a lead went and why — stored with the decision and shown to whoever asks.
struct Assignment: Sendable, Hashable {
    enum Reason: Sendable, Hashable {
        case sourceDefaultOwner
        case substituteFor(PersonID)
        case rule(String)
        case sourceDefaultRole
        /// The rule set's default role (no rule matched, the source names no role).
        case defaultRole
        /// Nobody available: the lead waits in the role's queue; the head was notified.
        case queued
    }

    struct Skip: Sendable, Hashable {
        enum Why: Sendable, Hashable {
            case away
            case overCapacity(open: Int, capacity: Int)
            case inactive
            case unknown
        }
        var person: PersonID
        var why: Why
    }

    var leadID: String
    var person: PersonID?
    var role: RoleName?
    var reason: Reason
    var candidates: [PersonID] = []
    var skipped: [Skip] = []
    /// How the person was chosen among several candidates.
    var tieBreak: String?
    /// The role head told that nobody could take the lead.
    var notified: PersonID?
}

struct Directory: Sendable {
    /// Changed through `put`, which keeps the role index in step.
    private(set) var people: [PersonID: Person]
    var roles: [RoleName: Role]
    /// Members per role, sorted by id: kept with the people so a decision does not scan them all.
    private var membersByRole: [RoleName: [Person]] = [:]

    init(people: [PersonID: Person] = [:], roles: [RoleName: Role] = [:]) {
        self.people = people
        self.roles = roles
        var index = [RoleName: [Person]]()
        for p in people.values {
            for r in p.roles { index[r, default: []].append(p) }
        }
        for k in index.keys { index[k]!.sort { $0.id < $1.id } }
        membersByRole = index
    }

    /// Adds a person or replaces their record, updating only their roles' member lists: a directory
    /// is loaded one CreatePerson at a time, and indexing everyone again on each made loading N
    /// people take N² steps.
    mutating func put(_ person: Person) {
        if let old = people[person.id] {
            for r in old.roles { membersByRole[r]?.removeAll { $0.id == person.id } }
        }
        people[person.id] = person
        for r in person.roles {
            // Taken out and put back, so the insert does not copy the list.
            var members = membersByRole.removeValue(forKey: r) ?? []
            members.insert(person, at: members.firstIndex { $0.id > person.id } ?? members.endIndex)
            membersByRole[r] = members
        }
    }

    /// Members of a role in a stable order (by id), the order round-robin walks.
    func members(of role: RoleName) -> [Person] {
        membersByRole[role] ?? []
    }
}

/// Round-robin positions per role: the id of the last person given a lead. Kept in the store, so
/// fairness survives restarts.
typealias RotationState = [RoleName: PersonID]

enum Router {
    struct Decision: Sendable {
        var assignment: Assignment
        var rotation: RotationState
    }

    /// Decides who handles `lead`. `previous` is the stored decision for this lead, if any: a retry
    /// gets it back unchanged (routing is idempotent by lead id). `load` counts open leads per person.
    static func decide(
        _ lead: LeadSummary, directory: Directory, rules: [RoutingRule], rotation: RotationState,
        load: [PersonID: Int], now: Int64, previous: Assignment? = nil, defaultRole: RoleName? = nil
    ) -> Decision {
        if let previous { return Decision(assignment: previous, rotation: rotation) }
        var skipped = [Assignment.Skip]()

        // 1. The first rule whose conditions all hold: rules come before the source's defaults, so a
        //    Region rule applies to a source that also names a default owner (a rule can be limited
        //    to some sources with a condition on `source`).
        var fields = LeadFields(lead)
        // By index: `first(where:)` copied every rule it tested (its name, conditions and target
        // retained and released, 200 rules a decision); only the conditions are read in place.
        if let i = rules.indices.first(where: { rules[$0].conditions.allSatisfy { $0.matches(&fields) } }) {
            let rule = rules[i]
            switch rule.target {
            case .role(let role):
                return pick(
                    in: role, lead: lead, reason: .rule(rule.name), directory: directory, rotation: rotation, load: load, now: now,
                    skipped: skipped)
            case .person(let p):
                switch availability(p, directory: directory, load: load, now: now) {
                case .available:
                    return Decision(
                        assignment: Assignment(
                            leadID: lead.id, person: p, role: nil, reason: .rule(rule.name), candidates: [p], skipped: skipped),
                        rotation: rotation)
                case .unavailable(let why):
                    skipped.append(.init(person: p, why: why))
                    if case .away = why, let sub = directory.people[p]?.absence(at: now)?.substitute,
                        case .available = availability(sub, directory: directory, load: load, now: now)
                    {
                        return Decision(
                            assignment: Assignment(
                                leadID: lead.id, person: sub, role: nil, reason: .substituteFor(p), candidates: [p, sub], skipped: skipped),
                            rotation: rotation)
                    }
                }
            }
        }

        // 2. The source's default owner, if available; else their substitute; else the source's role.
        if let owner = lead.sourceDefaultOwner {
            switch availability(owner, directory: directory, load: load, now: now) {
            case .available:
                return Decision(
                    assignment: Assignment(leadID: lead.id, person: owner, role: nil, reason: .sourceDefaultOwner, candidates: [owner]),
                    rotation: rotation)
            case .unavailable(let why):
                skipped.append(.init(person: owner, why: why))
                if case .away = why, let sub = directory.people[owner]?.absence(at: now)?.substitute {
                    switch availability(sub, directory: directory, load: load, now: now) {
                    case .available:
                        return Decision(
                            assignment: Assignment(
                                leadID: lead.id, person: sub, role: nil, reason: .substituteFor(owner), candidates: [owner, sub],
                                skipped: skipped),
                            rotation: rotation)
                    case .unavailable(let why2):
                        skipped.append(.init(person: sub, why: why2))
                    }
                }
                if let role = lead.sourceDefaultRole {
                    return pick(
                        in: role, lead: lead, reason: .sourceDefaultRole, directory: directory, rotation: rotation, load: load, now: now,
                        skipped: skipped)
                }
            }
        }

        // 3. The source's default role; with none at all, the lead waits unassigned (never dropped).
        if let role = lead.sourceDefaultRole {
            return pick(
                in: role, lead: lead, reason: .sourceDefaultRole, directory: directory, rotation: rotation, load: load, now: now,
                skipped: skipped)
        }
        if let role = defaultRole {
            return pick(
                in: role, lead: lead, reason: .defaultRole, directory: directory, rotation: rotation, load: load, now: now, skipped: skipped
            )
        }
        return Decision(
            assignment: Assignment(leadID: lead.id, person: nil, role: nil, reason: .queued, skipped: skipped), rotation: rotation)
    }

    private enum Availability {
        case available
        case unavailable(Assignment.Skip.Why)
    }

    private static func availability(_ id: PersonID, directory: Directory, load: [PersonID: Int], now: Int64) -> Availability {
        guard let p = directory.people[id] else { return .unavailable(.unknown) }
        return availability(of: p, load: load, now: now)
    }

    private static func availability(of p: Person, load: [PersonID: Int], now: Int64) -> Availability {
        let id = p.id
        if !p.active { return .unavailable(.inactive) }
        if p.absence(at: now) != nil { return .unavailable(.away) }
        if let cap = p.capacity, (load[id] ?? 0) >= cap { return .unavailable(.overCapacity(open: load[id] ?? 0, capacity: cap)) }
        return .available
    }

    /// A member of `role` by its strategy, skipping whoever is away, full or inactive; the role's
    /// queue (head notified) when nobody is left.
    private static func pick(
        in roleName: RoleName, lead: LeadSummary, reason: Assignment.Reason, directory: Directory, rotation: RotationState,
        load: [PersonID: Int], now: Int64, skipped: [Assignment.Skip]
    ) -> Decision {
        var skipped = skipped
        let members = directory.members(of: roleName)
        // Ids, not the people: a copy of a person is seven reference counts, twenty members a
        // decision. The members are the directory's own records, read in place by index.
        var available = [PersonID]()
        available.reserveCapacity(members.count)
        skipped.reserveCapacity(skipped.count + members.count)
        for i in members.indices {
            switch availability(of: members[i], load: load, now: now) {
            case .available: available.append(members[i].id)
            case .unavailable(let why): skipped.append(.init(person: members[i].id, why: why))
            }
        }
        let role = directory.roles[roleName]
        var a = Assignment(leadID: lead.id, person: nil, role: roleName, reason: reason, candidates: members.map(\.id), skipped: skipped)
        guard !available.isEmpty else {
            a.reason = .queued
            a.notified = role?.head
            return Decision(assignment: a, rotation: rotation)
        }
        var rotation = rotation
        switch role?.strategy ?? .roundRobin {
        case .roundRobin:
            // The next available member after the last one served, in id order, wrapping around.
            let last = rotation[roleName]
            let next = available.first { last == nil || $0 > last! } ?? available[0]
            a.person = next
            a.tieBreak = "round-robin after \(last ?? "(start)")"
            rotation[roleName] = next
        case .leastLoaded:
            let best = available.min { (load[$0] ?? 0, $0) < (load[$1] ?? 0, $1) }!
            a.person = best
            a.tieBreak = "least loaded (\(load[best] ?? 0) open), then lowest id"
        }
        return Decision(assignment: a, rotation: rotation)
    }

    /// Runs a proposed rule set over past leads without changing anything: per lead, the decision it
    /// would make and whether it differs from what `current` rules decide. Works on copies of the
    /// rotation state and load (value types), so nothing outside can change.
    static func simulate(
        _ leads: [LeadSummary], proposed: [RoutingRule], current: [RoutingRule], directory: Directory,
        rotation: RotationState, load: [PersonID: Int], now: Int64,
        proposedDefaultRole: RoleName? = nil, currentDefaultRole: RoleName? = nil
    ) -> [(lead: String, proposed: Assignment, current: Assignment, differs: Bool)] {
        var rotP = rotation
        var rotC = rotation
        var loadP = load
        var loadC = load
        var out = [(String, Assignment, Assignment, Bool)]()
        for l in leads {
            let p = decide(
                l, directory: directory, rules: proposed, rotation: rotP, load: loadP, now: now, defaultRole: proposedDefaultRole)
            let c = decide(l, directory: directory, rules: current, rotation: rotC, load: loadC, now: now, defaultRole: currentDefaultRole)
            rotP = p.rotation
            rotC = c.rotation
            if let who = p.assignment.person { loadP[who, default: 0] += 1 }
            if let who = c.assignment.person { loadC[who, default: 0] += 1 }
            out.append(
                (l.id, p.assignment, c.assignment, p.assignment.person != c.assignment.person || p.assignment.role != c.assignment.role))
        }
        return out
    }
}

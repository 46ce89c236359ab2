import Testing

@testable import RoutingService

let now: Int64 = 1_795_922_717_921
let hour: Int64 = 3_600_000

func person(_ id: String, roles: [String] = ["Sales manager"], capacity: Int? = nil, active: Bool = true, absences: [Absence] = [])
    -> Person
{
    Person(
        id: id, name: id.uppercased(), login: id, email: "\(id)@example.com", roles: roles, active: active, capacity: capacity,
        absences: absences)
}

func directory(_ people: [Person], roles: [Role] = [Role(name: "Sales manager", head: "boss"), Role(name: "North desk", head: "boss")])
    -> Directory
{
    Directory(
        people: Dictionary(uniqueKeysWithValues: people.map { ($0.id, $0) }),
        roles: Dictionary(uniqueKeysWithValues: roles.map { ($0.name, $0) }))
}

func lead(_ id: String = "lead-1", owner: String? = nil, role: String? = "Sales manager", fields: [String: String] = [:]) -> LeadSummary {
    LeadSummary(
        id: id, sourceID: "src-1", channel: "web_form", category: "repair", fields: fields, sourceDefaultOwner: owner,
        sourceDefaultRole: role)
}

let regionRules = [
    RoutingRule(name: "north", conditions: [Condition(field: "Region", test: .equals("North"))], target: .role("North desk")),
    RoutingRule(name: "big clients", conditions: [Condition(field: "Employees", test: .range(min: 500, max: nil))], target: .person("vip")),
]

@Suite struct RouterTests {
    @Test func sourceDefaultOwnerWhenAvailable() {
        let d = Router.decide(
            lead(owner: "anna"), directory: directory([person("anna"), person("boris")]), rules: regionRules, rotation: [:], load: [:],
            now: now)
        #expect(d.assignment.person == "anna")
        #expect(d.assignment.reason == .sourceDefaultOwner)
    }

    @Test func aMatchingRuleBeatsTheSourceDefaultOwner() {
        let people = directory([person("anna"), person("nord", roles: ["North desk"])])
        let north = Router.decide(
            lead(owner: "anna", fields: ["Region": "North"]), directory: people, rules: regionRules, rotation: [:], load: [:], now: now)
        #expect(north.assignment.person == "nord")
        #expect(north.assignment.reason == .rule("north"))
        // No rule matches: the default owner, as before.
        let south = Router.decide(
            lead(owner: "anna", fields: ["Region": "South"]), directory: people, rules: regionRules, rotation: [:], load: [:], now: now)
        #expect(south.assignment.person == "anna" && south.assignment.reason == .sourceDefaultOwner)
        // A rule limited to another source leaves this source's default owner alone.
        let elsewhere = [
            RoutingRule(
                name: "north, src-2 only",
                conditions: [Condition(field: "Region", test: .equals("North")), Condition(field: "source", test: .equals("src-2"))],
                target: .role("North desk"))
        ]
        let kept = Router.decide(
            lead(owner: "anna", fields: ["Region": "North"]), directory: people, rules: elsewhere, rotation: [:], load: [:], now: now)
        #expect(kept.assignment.person == "anna")
    }

    @Test func theFirstRuleWhoseConditionsAllHoldDecides() {
        let people = directory([person("nord", roles: ["North desk"]), person("vip")])
        // Both rules match a big northern client: the earlier one decides, whichever it is.
        let big = lead(fields: ["Region": "North", "Employees": "900"])
        let northFirst = Router.decide(big, directory: people, rules: regionRules, rotation: [:], load: [:], now: now)
        #expect(northFirst.assignment.reason == .rule("north") && northFirst.assignment.person == "nord")
        let bigFirst = Router.decide(big, directory: people, rules: regionRules.reversed(), rotation: [:], load: [:], now: now)
        #expect(bigFirst.assignment.reason == .rule("big clients") && bigFirst.assignment.person == "vip")
        // A rule holds only when all its conditions do: the first condition holding is not enough, and
        // the field both rules read is looked up once for the two.
        let both = [
            RoutingRule(
                name: "north and big",
                conditions: [
                    Condition(field: "Region", test: .equals("North")), Condition(field: "Employees", test: .range(min: 1000, max: nil)),
                ],
                target: .person("vip")),
            RoutingRule(name: "north", conditions: [Condition(field: "Region", test: .equals("North"))], target: .role("North desk")),
        ]
        let d = Router.decide(big, directory: people, rules: both, rotation: [:], load: [:], now: now)
        #expect(d.assignment.reason == .rule("north") && d.assignment.person == "nord")
    }

    @Test func anUnknownDefaultOwnerFallsBackToTheRoleNeverASilentWait() {
        let d = Router.decide(
            lead(owner: "person-987654"), directory: directory([person("boris")]), rules: [], rotation: [:], load: [:], now: now)
        #expect(d.assignment.person == "boris" && d.assignment.reason == .sourceDefaultRole)
        #expect(d.assignment.skipped == [.init(person: "person-987654", why: .unknown)])
    }

    @Test func substituteWhenTheOwnerIsAway() {
        let away = Absence(from: now - hour, until: now + hour, substitute: "boris")
        let d = Router.decide(
            lead(owner: "anna"), directory: directory([person("anna", absences: [away]), person("boris")]), rules: [], rotation: [:],
            load: [:], now: now)
        #expect(d.assignment.person == "boris")
        #expect(d.assignment.reason == .substituteFor("anna"))
        #expect(d.assignment.skipped == [.init(person: "anna", why: .away)])
    }

    @Test func sourceRoleWhenOwnerAndSubstituteAreUnavailable() {
        let away = Absence(from: now - hour, until: now + hour, substitute: "boris")
        let dir = directory([person("anna", absences: [away]), person("boris", capacity: 1), person("clara")])
        let d = Router.decide(lead(owner: "anna"), directory: dir, rules: [], rotation: [:], load: ["boris": 1], now: now)
        #expect(d.assignment.reason == .sourceDefaultRole)
        #expect(d.assignment.person == "clara")
        #expect(d.assignment.skipped.contains(.init(person: "boris", why: .overCapacity(open: 1, capacity: 1))))
    }

    @Test func absenceWindowsAreHalfOpen() {
        let ended = Absence(from: now - 2 * hour, until: now, substitute: nil)
        let d = Router.decide(
            lead(owner: "anna"), directory: directory([person("anna", absences: [ended])]), rules: [], rotation: [:], load: [:], now: now)
        #expect(d.assignment.person == "anna", "an absence ending now no longer applies")
    }

    @Test func rulesByRegionAndFirstMatchWins() {
        let dir = directory([person("anna"), person("nick", roles: ["North desk"]), person("vip", roles: [])])
        let north = Router.decide(
            lead(fields: ["Region": "North", "Employees": "900"]), directory: dir, rules: regionRules, rotation: [:], load: [:], now: now)
        #expect(north.assignment.person == "nick")
        #expect(north.assignment.reason == .rule("north"))
        let big = Router.decide(
            lead(fields: ["Region": "South", "Employees": "900"]), directory: dir, rules: regionRules, rotation: [:], load: [:], now: now)
        #expect(big.assignment.person == "vip")
        #expect(big.assignment.reason == .rule("big clients"))
        let none = Router.decide(
            lead(fields: ["Region": "South", "Employees": "12"]), directory: dir, rules: regionRules, rotation: [:], load: [:], now: now)
        #expect(none.assignment.reason == .sourceDefaultRole, "no rule matches: the source's role")
        #expect(none.assignment.person == "anna")
    }

    @Test func conditionTests() {
        let l = lead(fields: ["Region": "North-West", "Employees": "250"])
        #expect(Condition(field: "Region", test: .prefix("North")).matches(l))
        #expect(Condition(field: "Region", test: .oneOf(["South", "North-West"])).matches(l))
        #expect(Condition(field: "Employees", test: .range(min: 100, max: 250)).matches(l))
        #expect(!Condition(field: "Employees", test: .range(min: 251, max: nil)).matches(l))
        #expect(!Condition(field: "Missing", test: .equals("")).matches(l))
        #expect(Condition(field: "category", test: .equals("repair")).matches(l))
    }

    @Test func roundRobinIsFairOverTenThousandLeads() {
        let people = (1...7).map { person("p\($0)") }
        let dir = directory(people)
        var rotation = RotationState()
        var count = [String: Int]()
        for i in 0..<10_000 {
            let d = Router.decide(lead("lead-\(i)"), directory: dir, rules: [], rotation: rotation, load: [:], now: now)
            rotation = d.rotation
            count[d.assignment.person!, default: 0] += 1
        }
        #expect(count.count == 7)
        #expect(count.values.max()! - count.values.min()! <= 1)
    }

    @Test func roundRobinResumesFromTheStoredPosition() {
        let dir = directory((1...3).map { person("p\($0)") })
        let d = Router.decide(lead(), directory: dir, rules: [], rotation: ["Sales manager": "p2"], load: [:], now: now)
        #expect(d.assignment.person == "p3")
        let wrap = Router.decide(lead(), directory: dir, rules: [], rotation: ["Sales manager": "p3"], load: [:], now: now)
        #expect(wrap.assignment.person == "p1")
    }

    @Test func roundRobinSkipsAwayFullAndInactive() {
        let away = Absence(from: now - hour, until: now + hour, substitute: nil)
        let dir = directory([person("p1", absences: [away]), person("p2", capacity: 2), person("p3", active: false), person("p4")])
        var rotation = RotationState()
        var got = [String]()
        for i in 0..<4 {
            let d = Router.decide(lead("l\(i)"), directory: dir, rules: [], rotation: rotation, load: ["p2": 2], now: now)
            rotation = d.rotation
            got.append(d.assignment.person!)
            #expect(
                Set(d.assignment.skipped) == [
                    .init(person: "p1", why: .away), .init(person: "p2", why: .overCapacity(open: 2, capacity: 2)),
                    .init(person: "p3", why: .inactive),
                ])
        }
        #expect(got == ["p4", "p4", "p4", "p4"])
    }

    @Test func leastLoadedPicksTheLightestThenLowestID() {
        let dir = directory(
            [person("p1"), person("p2"), person("p3")], roles: [Role(name: "Sales manager", head: "boss", strategy: .leastLoaded)])
        let d = Router.decide(lead(), directory: dir, rules: [], rotation: [:], load: ["p1": 5, "p2": 1, "p3": 1], now: now)
        #expect(d.assignment.person == "p2")
        #expect(d.assignment.tieBreak?.contains("least loaded") == true)
    }

    @Test func emptyRoleQueuesTheLeadAndNotifiesTheHead() {
        let dir = directory([person("p1", active: false)])
        let d = Router.decide(lead(), directory: dir, rules: [], rotation: [:], load: [:], now: now)
        #expect(d.assignment.person == nil)
        #expect(d.assignment.role == "Sales manager")
        #expect(d.assignment.reason == .queued)
        #expect(d.assignment.notified == "boss")
        let nowhere = Router.decide(lead(role: nil), directory: dir, rules: [], rotation: [:], load: [:], now: now)
        #expect(nowhere.assignment.reason == .queued, "with no role at all the lead still waits, never dropped")
    }

    @Test func aRetryGetsTheSameDecision() {
        let dir = directory((1...3).map { person("p\($0)") })
        let first = Router.decide(lead(), directory: dir, rules: [], rotation: [:], load: [:], now: now)
        let retry = Router.decide(
            lead(), directory: dir, rules: [], rotation: first.rotation, load: ["p1": 1], now: now, previous: first.assignment)
        #expect(retry.assignment == first.assignment)
        #expect(retry.rotation == first.rotation, "a retry does not advance the rotation")
    }

    @Test func simulationWritesNothingAndReportsDifferences() {
        let dir = directory([person("anna"), person("nick", roles: ["North desk"])])
        let rotation: RotationState = ["Sales manager": "anna"]
        let load = ["anna": 3]
        let leads = [lead("a", fields: ["Region": "North"]), lead("b", fields: ["Region": "South"])]
        let result = Router.simulate(leads, proposed: regionRules, current: [], directory: dir, rotation: rotation, load: load, now: now)
        #expect(result.map(\.lead) == ["a", "b"])
        #expect(result[0].proposed.person == "nick" && result[0].differs)
        #expect(result[1].proposed.person == "anna" && !result[1].differs)
        // The inputs are values: the caller's state is unchanged.
        #expect(rotation == ["Sales manager": "anna"])
        #expect(load == ["anna": 3])
    }
}

@Suite struct DirectoryTests {
    /// People put one at a time (created, moved between roles, deactivated) leave each role's
    /// members exactly as a directory made at once from the final records lists them.
    @Test func puttingPeopleOneByOneIndexesRolesAsMakingThemAtOnce() {
        let roles = ["A", "B", "C"]
        var rng = SystemRandomNumberGenerator()
        var dir = Directory()
        var final = [PersonID: Person]()
        for step in 0..<600 {
            let id = "p\(Int.random(in: 0..<80, using: &rng))"
            let mine = roles.filter { _ in Bool.random(using: &rng) }
            let p = person(id, roles: mine, active: step % 7 != 0)
            dir.put(p)
            final[id] = p
        }
        let atOnce = Directory(people: final)
        for r in roles {
            #expect(dir.members(of: r) == atOnce.members(of: r), "role \(r)")
            #expect(dir.members(of: r).map(\.id) == final.values.filter { $0.roles.contains(r) }.map(\.id).sorted())
        }
        #expect(dir.people == final)
    }
}

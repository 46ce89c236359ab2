import LeadwireAPI
import Testing

@testable import RoutingService

@Suite struct RoutingModelTests {
    func condition(_ field: String, _ test: Routing_Condition.OneOf_Test?) -> Routing_Condition {
        var c = Routing_Condition()
        c.field = field
        c.test = test
        return c
    }

    func rule(_ name: String, _ conditions: [Routing_Condition], _ target: Routing_Rule.OneOf_Target?) -> Routing_Rule {
        var r = Routing_Rule()
        r.name = name
        r.conditions = conditions
        r.target = target
        return r
    }

    @Test func ruleProblemsNameEveryPart() {
        var range = Routing_Range()
        range.min = "9"
        range.max = "3"
        var set = Routing_RuleSet()
        set.rules = [
            rule("a", [condition("Region", .equals("North"))], .role("r")),
            rule("a", [condition("Employees", .range(range)), condition("", .oneOf(Routing_StringList()))], nil),
            rule("b", [condition("x", nil), condition("y", .prefix(""))], .personId(" ")),
        ]
        let fields = Set(RoutingModel.ruleProblems(set).map(\.field))
        #expect(
            fields == [
                "rules[1].name", "rules[1].target", "rules[1].conditions[0].range.min", "rules[1].conditions[1].field",
                "rules[1].conditions[1].one_of.values", "rules[2].person_id", "rules[2].conditions[0].test",
                "rules[2].conditions[1].prefix",
            ])
        set.rules = [set.rules[0]]
        #expect(RoutingModel.ruleProblems(set).isEmpty)
    }

    @Test func rulesTranslateToTheDecisionModel() {
        var range = Routing_Range()
        range.min = "500"
        var set = Routing_RuleSet()
        set.rules = [rule("big", [condition("Employees", .range(range))], .role("Key accounts"))]
        let rules = RoutingModel.rules(set)
        let big = LeadSummary(id: "l", sourceID: "s", channel: "web_form", category: "c", fields: ["Employees": "900"])
        let small = LeadSummary(id: "l", sourceID: "s", channel: "web_form", category: "c", fields: ["Employees": "20"])
        #expect(rules[0].conditions[0].matches(big))
        #expect(!rules[0].conditions[0].matches(small))
        #expect(rules[0].target == .role("Key accounts"))
    }

    @Test func mentionSearchRanksLoginThenNameThenEmailThenDomain() {
        func p(_ id: String, _ name: String, _ login: String, _ email: String, active: Bool = true) -> Routing_Person {
            var x = Routing_Person()
            x.id = id
            x.name = name
            x.login = login
            x.email = email
            x.active = active
            return x
        }
        let people = [
            p("1", "Анна Серова", "aserova", "anna@serov.ru"),
            p("2", "Сергей Иванов", "sivanov", "s.ivanov@corp.example"),
            p("3", "Serge Blanc", "serge", "serge@blanc.fr", active: false),
            p("4", "Olga Ser", "olga", "o@sermash.com"),
        ]
        #expect(MentionSearch.search("@серг", in: people, limit: 10).map(\.person.id) == ["2"])
        #expect(MentionSearch.search("СЕР", in: people, limit: 10).map(\.person.id) == ["2", "1"])
        let ser = MentionSearch.search("ser", in: people, limit: 10)
        #expect(ser.map(\.person.id) == ["4", "1", "3"])
        #expect(ser.map(\.matched) == ["name", "domain", "login"])  // the inactive login match comes last
        #expect(MentionSearch.search("sermash", in: people, limit: 10).map(\.matched) == ["domain"])
        #expect(MentionSearch.search("@", in: people, limit: 10).isEmpty)
        #expect(MentionSearch.search("s", in: people, limit: 2).count == 2)
    }

    @Test func explanationSaysWhoWasSkippedAndWhy() {
        let dir = Directory(
            people: [
                "a": Person(id: "a", name: "A", login: "a", email: "", roles: ["R"], capacity: 1),
                "b": Person(id: "b", name: "B", login: "b", email: "", roles: ["R"]),
            ],
            roles: ["R": Role(name: "R", head: "h")])
        let d = Router.decide(
            LeadSummary(id: "l", sourceID: "s", channel: "", category: "", sourceDefaultRole: "R"), directory: dir, rules: [],
            rotation: [:], load: ["a": 1], now: 0)
        var summary = Routing_LeadSummary()
        summary.leadId = "l"
        let w = RoutingModel.assignment(d.assignment, lead: summary, now: 5)
        #expect(w.personId == "b" && w.reason == .sourceDefaultRole && w.role == "R")
        #expect(
            w.explanation
                == "no rule matched; the source's default role R -> b; skipped a (over capacity (1 of 1 open)); round-robin after (start)")
        // Several passed over: listed in order, separated by commas.
        var away = Person(id: "c", name: "C", login: "c", email: "", roles: ["R"])
        away.absences = [Absence(from: 0, until: 10)]
        var many = dir
        many.put(away)
        let d2 = Router.decide(
            LeadSummary(id: "l", sourceID: "s", channel: "", category: "", sourceDefaultRole: "R"), directory: many, rules: [],
            rotation: ["R": "b"], load: ["a": 1], now: 5)
        let w2 = RoutingModel.assignment(d2.assignment, lead: summary, now: 5)
        #expect(w2.explanation.contains("; skipped a (over capacity (1 of 1 open)), c (away); "), "\(w2.explanation)")
    }
}

"""The routing service driven by grpcio: the directory, rules and decisions over a real socket and
a real SQLite file, every refusal with its status and details, and fairness across a restart."""
import itertools
import time
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import ServerProcess
from leadwire.routing.v1 import routing_pb2 as pb
from leadwire.routing.v1 import routing_pb2_grpc

_seq = itertools.count()


def uniq(prefix):
    return "%s-%d-%s" % (prefix, next(_seq), uuid.uuid4().hex[:6])


def person(routing, name=None, roles=(), **kw):
    login = kw.pop("login", uniq("u"))
    return routing.CreatePerson(pb.CreatePersonRequest(person=pb.Person(name=name or login, login=login, roles=list(roles), **kw)))


def role(routing, name=None, **kw):
    return routing.PutRole(pb.PutRoleRequest(role=pb.Role(name=name or uniq("Role"), **kw)))


def lead(lead_id=None, **kw):
    return pb.LeadSummary(lead_id=lead_id or uniq("lead"), **kw)


def bad_request(err):
    status = rpc_status.from_call(err)
    assert status is not None, "no grpc-status-details-bin"
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            return {v.field: v.description for v in br.field_violations}
    raise AssertionError("no BadRequest detail")


def test_stock_roles_exist_after_first_start(routing):
    roles = {r.name: r for r in routing.ListRoles(pb.ListRolesRequest()).roles}
    for name in ("Sales manager", "Marketer", "Head of sales"):
        assert name in roles
        assert "leads.write" in roles[name].permissions


def test_people_roles_and_round_robin_with_explanations(routing):
    team = role(routing)
    people = [person(routing, roles=[team.name]) for _ in range(3)]
    assert [p.active for p in people] == [True] * 3
    assert routing.GetRole(pb.GetRoleRequest(name=team.name)).member_ids == [p.id for p in people]
    got = [routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name))) for _ in range(9)]
    assert [a.person_id for a in got] == [p.id for p in people] * 3
    assert all(a.reason == pb.REASON_SOURCE_DEFAULT_ROLE and a.role == team.name for a in got)
    assert "round-robin" in got[1].tie_break and got[1].explanation
    # Open leads count against people and show on their record.
    assert routing.GetPerson(pb.GetPersonRequest(id=people[0].id)).open_leads == 3


def test_default_owner_substitute_and_skips(routing):
    team = role(routing)
    sub = person(routing, roles=[team.name])
    now = int(time.time() * 1000)
    owner = person(routing, roles=[team.name], absences=[pb.Absence(from_ms=now - 60000, until_ms=now + 3600000, substitute_id=sub.id)])
    a = routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_owner_id=owner.id, source_default_role=team.name)))
    assert a.person_id == sub.id and a.reason == pb.REASON_SUBSTITUTE and a.substitute_for == owner.id
    assert [(s.person_id, s.why) for s in a.skipped] == [(owner.id, "away")]
    assert "substitutes for" in a.explanation


def test_rules_by_region_and_idempotent_retry(routing):
    north = role(routing)
    south = role(routing)
    n = person(routing, roles=[north.name])
    s = person(routing, roles=[south.name])
    current = routing.GetRules(pb.GetRulesRequest())
    rules = pb.RuleSet(rules=[
        pb.Rule(name="North", conditions=[pb.Condition(field="Region", equals="North")], role=north.name),
        pb.Rule(name="Big south", conditions=[pb.Condition(field="Region", equals="South"),
                                              pb.Condition(field="Employees", range=pb.Range(min="500"))], role=south.name),
    ])
    stored = routing.SetRules(pb.SetRulesRequest(rules=rules, expected_version=current.version))
    assert stored.version == current.version + 1
    l1 = lead(fields=[pb.FieldValue(name="Region", value="North")])
    a = routing.RouteLead(pb.RouteLeadRequest(lead=l1))
    assert (a.person_id, a.reason, a.rule_name) == (n.id, pb.REASON_RULE, "North")
    # A retry (same lead id) returns the stored decision, and the rotation does not move.
    again = routing.RouteLead(pb.RouteLeadRequest(lead=l1))
    assert again == a
    assert routing.GetAssignment(pb.GetAssignmentRequest(lead_id=l1.lead_id)) == a
    big = routing.RouteLead(pb.RouteLeadRequest(lead=lead(fields=[pb.FieldValue(name="Region", value="South"), pb.FieldValue(name="Employees", value="900")])))
    assert big.person_id == s.id and big.rule_name == "Big south"
    # A stale expected version is refused (no lost update).
    with pytest.raises(grpc.RpcError) as e:
        routing.SetRules(pb.SetRulesRequest(rules=rules, expected_version=stored.version + 5))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "changed since version" in e.value.details()


def test_capacity_queue_head_and_release(routing):
    team_head = person(routing)
    team = role(routing, head_id=team_head.id)
    p = person(routing, roles=[team.name], capacity=1)
    first = routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name)))
    assert first.person_id == p.id
    queued = routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name)))
    assert queued.person_id == "" and queued.reason == pb.REASON_QUEUED and queued.notified_id == team_head.id
    assert queued.skipped[0].why == "over capacity (1 of 1 open)"
    # Releasing the first lead frees capacity and hands the queued lead over.
    released = routing.Release(pb.ReleaseRequest(lead_id=first.lead_id, note="processed"))
    assert released.released
    moved = routing.GetAssignment(pb.GetAssignmentRequest(lead_id=queued.lead_id))
    assert moved.person_id == p.id and [h.kind for h in moved.history] == ["routed", "dequeued"]
    with pytest.raises(grpc.RpcError) as e:
        routing.Reassign(pb.ReassignRequest(lead_id=first.lead_id, person_id=p.id, reason="try"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_reassign_keeps_history(routing):
    team = role(routing)
    a, b = person(routing, roles=[team.name]), person(routing)
    routed = routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_owner_id=a.id), actor="intake"))
    moved = routing.Reassign(pb.ReassignRequest(lead_id=routed.lead_id, person_id=b.id, reason="speaks Finnish", actor="boss"))
    assert moved.person_id == b.id and moved.reason == pb.REASON_MANUAL
    assert [(h.kind, h.actor) for h in moved.history] == [("routed", "intake"), ("reassigned", "boss")]
    assert "speaks Finnish" in moved.history[1].note


def test_simulation_changes_nothing(routing):
    x, y = role(routing), role(routing)
    px, py = person(routing, roles=[x.name]), person(routing, roles=[y.name])
    before = routing.GetRules(pb.GetRulesRequest())
    leads = [lead(source_default_role=x.name, fields=[pb.FieldValue(name="Region", value=r)]) for r in ("West", "East")]
    proposed = pb.RuleSet(rules=[pb.Rule(name="West", conditions=[pb.Condition(field="Region", one_of=pb.StringList(values=["West"]))], role=y.name)])
    r = routing.Simulate(pb.SimulateRequest(proposed=proposed, leads=leads))
    assert [x.proposed.person_id for x in r.results] == [py.id, px.id]
    assert [x.differs for x in r.results] == [True, False] and r.differing == 1
    assert routing.GetRules(pb.GetRulesRequest()) == before
    for l in leads:
        with pytest.raises(grpc.RpcError) as e:
            routing.GetAssignment(pb.GetAssignmentRequest(lead_id=l.lead_id))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert routing.GetPerson(pb.GetPersonRequest(id=py.id)).open_leads == 0


def test_mentions_search_cyrillic_login_email_domain(routing):
    tag = uuid.uuid4().hex[:5]
    irina = person(routing, name="Ирина Петрова", login="ipetrova" + tag, email="irina%s@ural-service.ru" % tag)
    person(routing, name="Игорь Смирнов", login="ismirnov" + tag, email="igor%s@example.com" % tag)
    m = routing.SearchPeople(pb.SearchPeopleRequest(query="@петр")).matches
    assert irina.id in [x.person.id for x in m]
    assert [x.matched for x in m if x.person.id == irina.id] == ["name"]
    m = routing.SearchPeople(pb.SearchPeopleRequest(query="IPETROVA" + tag.upper())).matches
    assert m[0].person.id == irina.id and m[0].matched == "login"
    m = routing.SearchPeople(pb.SearchPeopleRequest(query="ural-serv")).matches
    assert [x.person.id for x in m] == [irina.id] and m[0].matched == "domain"


def test_escalation_goes_to_the_head_once(routing):
    head = person(routing)
    team = role(routing, head_id=head.id)
    person(routing, roles=[team.name])
    past = int(time.time() * 1000) - 3600_000
    late = routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name, reply_deadline_ms=past)))
    decided = routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name, reply_deadline_ms=past)))
    routing.MarkDecided(pb.MarkDecidedRequest(lead_id=decided.lead_id))
    dry = routing.Escalate(pb.EscalateRequest(dry_run=True)).escalations
    ids = [e.assignment.lead_id for e in dry]
    assert late.lead_id in ids and decided.lead_id not in ids
    done = {e.assignment.lead_id: e for e in routing.Escalate(pb.EscalateRequest()).escalations}
    assert done[late.lead_id].head_id == head.id and done[late.lead_id].overdue_ms >= 3600_000
    assert late.lead_id not in [e.assignment.lead_id for e in routing.Escalate(pb.EscalateRequest(dry_run=True)).escalations]
    assert routing.GetAssignment(pb.GetAssignmentRequest(lead_id=late.lead_id)).escalated_to == head.id


def test_refusals(routing):
    def code_of(call):
        with pytest.raises(grpc.RpcError) as e:
            call()
        return e.value

    e = code_of(lambda: routing.GetPerson(pb.GetPersonRequest(id="person-999999")))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "person-999999" in e.details()
    e = code_of(lambda: routing.GetRole(pb.GetRoleRequest(name="Astronaut")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = code_of(lambda: person(routing, roles=["Astronaut"]))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "Astronaut" in e.details()
    e = code_of(lambda: routing.SetRules(pb.SetRulesRequest(rules=pb.RuleSet(rules=[pb.Rule(name="x", role="Astronaut")]))))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "rules[0].role" in e.details()
    e = code_of(lambda: routing.Reassign(pb.ReassignRequest(lead_id="nope", person_id="person-1", reason="r")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # A bad rule: INVALID_ARGUMENT naming each wrong part.
    bad = pb.RuleSet(rules=[
        pb.Rule(name="ok", conditions=[pb.Condition(field="Region", equals="North")], role="Marketer"),
        pb.Rule(name="", conditions=[pb.Condition(field="Employees", range=pb.Range(min="ten", max="5")), pb.Condition(field="")], role="Marketer"),
        pb.Rule(name="ok"),
    ])
    e = code_of(lambda: routing.SetRules(pb.SetRulesRequest(rules=bad)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    v = bad_request(e)
    assert set(v) >= {"rules.rules[1].name", "rules.rules[1].conditions[0].range.min", "rules.rules[1].conditions[1].field",
                      "rules.rules[1].conditions[1].test", "rules.rules[2].name", "rules.rules[2].target"}
    assert "not a number" in v["rules.rules[1].conditions[0].range.min"]
    e = code_of(lambda: routing.CreatePerson(pb.CreatePersonRequest(person=pb.Person(login="bad login!", email="nope", capacity=-1))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request(e)) == {"person.name", "person.login", "person.email", "person.capacity"}
    login = uniq("dup")
    person(routing, login=login)
    e = code_of(lambda: person(routing, login=login))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS
    e = code_of(lambda: routing.RouteLead(pb.RouteLeadRequest(lead=pb.LeadSummary())))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "lead.lead_id" in bad_request(e)


def test_rotation_survives_restart(tmp_path):
    data = str(tmp_path)
    first = ServerProcess("routing-service", ["--data-dir", data, "--auth", "off"])
    try:
        ch = grpc.insecure_channel(first.address)
        r = routing_pb2_grpc.RoutingStub(ch)
        team = role(r)
        people = [person(r, roles=[team.name]) for _ in range(3)]
        got = [r.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name))).person_id for _ in range(2)]
        ch.close()
    finally:
        assert first.stop() == 0
    second = ServerProcess("routing-service", ["--data-dir", data, "--auth", "off"])
    try:
        ch = grpc.insecure_channel(second.address)
        r = routing_pb2_grpc.RoutingStub(ch)
        got += [r.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name))).person_id for _ in range(4)]
        assert got == [p.id for p in people] * 2
        assert r.GetPerson(pb.GetPersonRequest(id=people[0].id)).open_leads == 2
        ch.close()
    finally:
        assert second.stop() == 0


def test_queued_lead_goes_to_a_newcomer_in_the_role(routing):
    """The README's order reversed: a lead queued in an empty role is handed on as soon as someone
    joins it, without waiting for a release."""
    team = role(routing)
    queued = routing.RouteLead(pb.RouteLeadRequest(lead=lead(source_default_role=team.name)))
    assert queued.person_id == "" and queued.reason == pb.REASON_QUEUED
    newcomer = person(routing, roles=[team.name])
    moved = routing.GetAssignment(pb.GetAssignmentRequest(lead_id=queued.lead_id))
    assert moved.person_id == newcomer.id and [h.kind for h in moved.history] == ["routed", "dequeued"]


def test_taken_login_names_who_has_it(routing):
    anna = person(routing, name="Анна Орлова")
    with pytest.raises(grpc.RpcError) as e:
        person(routing, name="Анна Орлова", login=anna.login)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert anna.id in e.value.details() and "Анна Орлова" in e.value.details(), e.value.details()

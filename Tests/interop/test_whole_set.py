"""The three real services together, with authentication on, driven by grpcio: the end-to-end
scenario of the issue, the access rules, and a fault test (routing and report killed while leads
arrive). Tokens are made here with Python's hmac (HS256 JWTs), so the format is checked to be the
standard one, and with leadctl."""
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import grpc
import pytest

from conftest import BIN_DIR, ServerProcess, wait_for
from leadwire.intake.v1 import intake_pb2 as ipb
from leadwire.intake.v1 import intake_pb2_grpc
from leadwire.report.v1 import report_pb2 as rpb
from leadwire.report.v1 import report_pb2_grpc
from leadwire.routing.v1 import routing_pb2 as gpb
from leadwire.routing.v1 import routing_pb2_grpc


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(key, sub, roles, ctr=None, ttl=3600, exp=None):
    now = int(time.time())
    claims = {"sub": sub, "roles": roles, "iat": now, "exp": exp if exp is not None else now + ttl, "iss": "leadwire"}
    if ctr:
        claims["ctr"] = ctr
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64url(mac)


class WholeSet:
    """intake, routing and report on fixed free ports, sharing one data directory and key."""

    def __init__(self, data):
        self.data = data
        self.ports = {"intake": free_port(), "routing": free_port(), "report": free_port()}
        self.procs = {}
        for svc in ("routing", "report", "intake"):
            self.start(svc)
        with open(os.path.join(data, "signing.key"), "rb") as fh:
            self.key = base64.b64decode(fh.read().strip())

    def addr(self, svc):
        return "127.0.0.1:%d" % self.ports[svc]

    def start(self, svc):
        args = ["--data-dir", self.data, "--metrics-port", "0"]
        if svc == "intake":
            args += ["--routing", self.addr("routing"), "--report", self.addr("report")]
        elif svc == "report":
            args += ["--intake", self.addr("intake")]
        elif svc == "routing":
            args += ["--escalate-every", "0"]
        self.procs[svc] = ServerProcess(svc + "-service", args, port=self.ports[svc])

    def stub(self, svc, token):
        ch = grpc.insecure_channel(self.addr(svc))
        stub = {"intake": intake_pb2_grpc.IntakeStub, "routing": routing_pb2_grpc.RoutingStub, "report": report_pb2_grpc.ReportStub}[svc](ch)
        return Authed(stub, token)

    def stop(self):
        codes = {}
        for svc, p in self.procs.items():
            codes[svc] = p.stop()
        return codes


class Authed:
    """A stub whose every call carries the bearer token."""

    def __init__(self, stub, token):
        self._stub, self._token = stub, token

    def __getattr__(self, name):
        method = getattr(self._stub, name)
        md = [("authorization", "Bearer " + self._token)] if self._token else []

        def call(req, **kw):
            return method(req, metadata=md, timeout=kw.pop("timeout", 10), **kw)
        return call


def refused(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value


@pytest.fixture
def whole_set(tmp_path):
    s = WholeSet(str(tmp_path))
    yield s
    codes = s.stop()
    assert codes == {"routing": 0, "report": 0, "intake": 0}, codes


def leadctl_token(data, *args):
    out = subprocess.run([os.path.join(BIN_DIR, "leadctl"), "token", "issue", "--data-dir", data, *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def test_end_to_end_with_auth(whole_set):
    s = whole_set
    assert oct(os.stat(os.path.join(s.data, "signing.key")).st_mode & 0o777) == "0o600"
    admin = leadctl_token(s.data, "--role", "admin", "--subject", "e2e-admin")
    dashboard = jwt(s.key, "wallboard", ["dashboard"])
    ctr_a, ctr_b = "ctr-a-" + uuid.uuid4().hex[:4], "ctr-b-" + uuid.uuid4().hex[:4]
    routing = s.stub("routing", admin)
    intake = s.stub("intake", admin)
    report = s.stub("report", admin)

    # Directory: three sales managers round-robin, a North desk with its own person and head.
    head = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Head", login="head")))
    sales = [routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Sales %d" % i, login="sales%d" % i, roles=["Sales manager"])))
             for i in range(3)]
    routing.PutRole(gpb.PutRoleRequest(role=gpb.Role(name="North desk", head_id=head.id, permissions=["leads.write"])))
    north = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Nord", login="nord", roles=["North desk"])))
    routing.SetRules(gpb.SetRulesRequest(rules=gpb.RuleSet(rules=[
        gpb.Rule(name="North region", conditions=[gpb.Condition(field="Region", equals="North")], role="North desk")])))
    # Sources on three channels, all with the default role and a Region field.
    sources = []
    for ch in (ipb.CHANNEL_WEB_FORM, ipb.CHANNEL_EMAIL, ipb.CHANNEL_PHONE):
        sources.append(intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(
            name="src-%d-%s" % (ch, uuid.uuid4().hex[:4]), channel=ch, default_role="Sales manager", enabled=True,
            fields=[ipb.FieldDefinition(name="Region", type=ipb.FIELD_TYPE_ENUM, allowed_values=["North", "South"])],
            required_fields=["Region"]))))
    leads = []
    for i in range(12):
        region = "North" if i % 4 == 3 else "South"
        r = intake.SubmitLead(ipb.SubmitLeadRequest(
            source_id=sources[i % 3].id, applicant=ipb.Applicant(name="Client %d" % i, email="c%d@example.com" % i),
            subject="Request %d" % i, fields=[ipb.FieldValue(name="Region", value=region)]))
        assert r.lead.routing == ipb.ROUTING_STATE_ASSIGNED, r.lead
        leads.append((r.lead, region))
    south_owners = [l.owner_id for l, reg in leads if reg == "South"]
    assert sorted(south_owners.count(p.id) for p in sales) == [3, 3, 3]  # fair
    assert all(l.owner_id == north.id and l.routed_role == "North desk" for l, reg in leads if reg == "North")
    assert "round-robin" in leads[0][0].routing_explanation

    # Processing: accept 8, complete 4 of them, reject 2, rate 3.
    for l, _ in leads[:8]:
        intake.AcceptLead(ipb.AcceptLeadRequest(id=l.id))
    for l, _ in leads[:4]:
        intake.CompleteLead(ipb.CompleteLeadRequest(id=l.id, outcome=ipb.OUTCOME_KIND_BUSINESS_PROCESS, reference="deal-%s" % l.id))
    for l, _ in leads[8:10]:
        intake.RejectLead(ipb.RejectLeadRequest(id=l.id, reason="spam"))
    for l, _ in leads[:3]:
        intake.RateLead(ipb.RateLeadRequest(id=l.id, rating=4))
    # @mentions resolved against routing's directory: a login, a name word matching one person; a
    # client's address is kept as a mention but names nobody.
    c = intake.AddComment(ipb.AddCommentRequest(lead_id=leads[4][0].id, text="@sales1 and @nord, please call @c4@example.com"))
    assert list(c.mentions) == ["sales1", "nord", "c4@example.com"]
    assert list(c.mentioned_person_ids) == [sales[1].id, north.id] and c.author == "e2e-admin"
    # Routing heard the decisions and releases through the outbox.
    wait_for("releases", lambda: all(routing.GetAssignment(gpb.GetAssignmentRequest(lead_id=l.id)).released for l, _ in leads[:4] + leads[8:10]))

    # Plans: lines for accepted leads, checked against Intake by number.
    accepted = [l for l, _ in leads[4:8]]
    plan = report.CreatePlan(rpb.CreatePlanRequest(title="Q plan", lines=[
        rpb.PlanLine(registration_number=l.registration_number, object_address="Street %d" % i, work_kind="Install", volume="5",
                     unit="pcs", deadline=time.strftime("%Y-%m-%d", time.gmtime(time.time() + 20 * 86400)), contractor_id=(ctr_a if i % 2 == 0 else ctr_b))
        for i, l in enumerate(accepted)]))
    e = refused(lambda: report.CreatePlan(rpb.CreatePlanRequest(title="bad", lines=[
        rpb.PlanLine(registration_number=leads[10][0].registration_number, object_address="x", work_kind="x", volume="1", unit="pcs",
                     deadline="2030-01-01", contractor_id=ctr_a)])))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "is new" in e.details()
    planner = s.stub("report", jwt(s.key, "pat", ["planner"]))
    dept = s.stub("report", jwt(s.key, "dora", ["department-head"]))
    mgmt = s.stub("report", jwt(s.key, "max", ["management"]))
    planner.ActOnPlan(rpb.PlanActionRequest(plan_id=plan.id, action=rpb.PLAN_ACTION_SUBMIT))
    e = refused(lambda: planner.ActOnPlan(rpb.PlanActionRequest(plan_id=plan.id, action=rpb.PLAN_ACTION_APPROVE_AS_HEAD)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    dept.ActOnPlan(rpb.PlanActionRequest(plan_id=plan.id, action=rpb.PLAN_ACTION_APPROVE_AS_HEAD))
    mgmt.ActOnPlan(rpb.PlanActionRequest(plan_id=plan.id, action=rpb.PLAN_ACTION_APPROVE_AS_MANAGEMENT))
    handed = planner.ActOnPlan(rpb.PlanActionRequest(plan_id=plan.id, action=rpb.PLAN_ACTION_HAND_OVER))
    assert [h.actor for h in handed.history][-4:] == ["pat", "dora", "max", "pat"]

    # Contractor A: only its own plan lines; signs, reports progress, submits an act.
    a = s.stub("report", jwt(s.key, "a-foreman", ["contractor"], ctr=ctr_a))
    mine = a.ListWorkPlans(rpb.ContractorRequest()).plans
    assert len(mine) == 1 and {l.contractor_id for l in mine[0].plan.lines} == {ctr_a} and len(mine[0].plan.lines) == 2
    e = refused(lambda: a.GetWorkPlan(rpb.GetWorkPlanRequest(contractor_id=ctr_b, plan_id=plan.id)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    e = refused(lambda: a.LeadSummary(rpb.LeadReportRequest()))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    a.Acknowledge(rpb.AcknowledgeRequest(plan_id=plan.id, signer="A. Foreman"))
    line = mine[0].plan.lines[0]
    a.ReportProgress(rpb.ReportProgressRequest(plan_id=plan.id, line_id=line.id, percent=50))
    today = time.strftime("%Y-%m-%d", time.gmtime())
    closed = a.SubmitAct(rpb.SubmitActRequest(act=rpb.CompletionAct(plan_id=plan.id, line_id=line.id, work_done="Installed", volume="5",
                                                                     started_on=today, finished_on=today, signer="A. Foreman")))
    assert closed.execution.closed
    b = s.stub("report", jwt(s.key, "b-foreman", ["contractor"], ctr=ctr_b))
    e = refused(lambda: b.SubmitAct(rpb.SubmitActRequest(act=rpb.CompletionAct(plan_id=plan.id, line_id=mine[0].plan.lines[1].id, work_done="x",
                                                                             volume="1", started_on=today, finished_on=today, signer="B"))))
    assert e.code() == grpc.StatusCode.NOT_FOUND  # A's line is invisible to B

    # The dashboard reads consistent figures (events arrive through the outbox), and cannot write.
    dash = s.stub("report", dashboard)

    def totals():
        rows = dash.LeadSummary(rpb.LeadReportRequest()).rows
        t = {f: sum(getattr(r, f) for r in rows) for f in ("received", "new", "accepted", "rejected", "processed")}
        return t if t == {"received": 12, "new": 2, "accepted": 4, "rejected": 2, "processed": 4} else None
    wait_for("figures", totals)
    funnel = dash.LeadFunnel(rpb.FunnelRequest())
    assert (funnel.received, funnel.accepted, funnel.processed, funnel.reacted) == (12, 8, 4, 10)
    kpi = {k.person_id: k for k in dash.EmployeeKpis(rpb.KpiRequest()).employees}
    assert sum(k.handled for k in kpi.values()) == 10 and sum(k.ratings for k in kpi.values()) == 3
    by_owner = {r.key: r.received for r in dash.LeadSummary(rpb.LeadReportRequest(dimension=rpb.DIMENSION_OWNER)).rows}
    assert by_owner[north.id] == 3 and sorted(by_owner[p.id] for p in sales) == [3, 3, 3]
    figures = {r.contractor_id: r for r in dash.PlanFigures(rpb.PlanReportRequest(plan_id=plan.id)).rows}
    assert (figures[ctr_a].completed, figures[ctr_a].not_completed, figures[ctr_b].completed) == (1, 1, 0)
    dash_intake = s.stub("intake", dashboard)
    assert len(dash_intake.ListLeads(ipb.ListLeadsRequest()).leads) == 12  # read access
    e = refused(lambda: dash_intake.SubmitLead(ipb.SubmitLeadRequest(source_id=sources[0].id)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "leads.write" in e.details()

    # Authentication failures, and the open health service.
    for bad in ("", "not-a-token", jwt(os.urandom(32), "mallory", ["admin"]), jwt(s.key, "late", ["admin"], exp=int(time.time()) - 5)):
        e = refused(lambda: s.stub("intake", bad).ListSources(ipb.ListSourcesRequest()))
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, bad
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    for svc in ("intake", "routing", "report"):
        h = health_pb2_grpc.HealthStub(grpc.insecure_channel(s.addr(svc)))
        assert h.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def test_routing_and_report_down_then_back(whole_set):
    s = whole_set
    admin = jwt(s.key, "fault-admin", ["admin"])
    routing = s.stub("routing", admin)
    intake = s.stub("intake", admin)
    people = [routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="P%d" % i, login="p%d" % i, roles=["Marketer"]))) for i in range(2)]
    src = intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(name="Ads", channel=ipb.CHANNEL_SOCIAL, default_role="Marketer", enabled=True)))
    first = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="Early")))
    assert first.lead.routing == ipb.ROUTING_STATE_ASSIGNED

    s.procs["routing"].stop(signal.SIGKILL)
    s.procs["report"].stop(signal.SIGKILL)
    ids = [first.lead.id]
    t0 = time.time()
    for i in range(20):
        r = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="During %d" % i)))
        assert r.lead.routing == ipb.ROUTING_STATE_PENDING  # accepted, routed later
        ids.append(r.lead.id)
    assert time.time() - t0 < 15  # each answered within the routing budget, not hanging on the dead peer
    intake.AcceptLead(ipb.AcceptLeadRequest(id=ids[1]))

    s.start("routing")
    s.start("report")
    routing = s.stub("routing", admin)
    wait_for("every lead routed", lambda: all(intake.GetLead(ipb.GetLeadRequest(id=i)).lead.routing == ipb.ROUTING_STATE_ASSIGNED for i in ids))
    owners = [intake.GetLead(ipb.GetLeadRequest(id=i)).lead.owner_id for i in ids]
    assert sorted(owners.count(p.id) for p in people) == [10, 11]  # fair across the outage and restart
    # Routed exactly once: open leads per person add up to the leads, each assignment has one "routed".
    assert sum(routing.GetPerson(gpb.GetPersonRequest(id=p.id)).open_leads for p in people) == 21
    for i in ids:
        a = routing.GetAssignment(gpb.GetAssignmentRequest(lead_id=i))
        assert [h.kind for h in a.history].count("routed") == 1
    assert routing.GetAssignment(gpb.GetAssignmentRequest(lead_id=ids[1])).decided
    # Counted exactly once by report.
    dash = s.stub("report", jwt(s.key, "wall", ["dashboard"]))

    def counted():
        rows = dash.LeadSummary(rpb.LeadReportRequest()).rows
        got = (sum(r.received for r in rows), sum(r.accepted for r in rows))
        return got if got == (21, 1) else None
    wait_for("report figures", counted)
    time.sleep(1)  # late redeliveries would show up now
    assert counted() == (21, 1)
    by_owner = {r.key: r.received for r in dash.LeadSummary(rpb.LeadReportRequest(dimension=rpb.DIMENSION_OWNER)).rows}
    assert sum(by_owner.get(p.id, 0) for p in people) == 21


def test_leadctl_against_the_set(whole_set):
    """What a person sees: tables, and refusals in plain words with the field-level details."""
    s = whole_set
    env = dict(os.environ, LEADWIRE_INTAKE_ADDR=s.addr("intake"), LEADWIRE_ROUTING_ADDR=s.addr("routing"),
               LEADWIRE_REPORT_ADDR=s.addr("report"), LEADWIRE_TOKEN=leadctl_token(s.data, "--role", "admin", "--subject", "cli"))
    ctl = os.path.join(BIN_DIR, "leadctl")

    def run(*args, ok=True):
        p = subprocess.run([ctl, *args], env=env, capture_output=True, text=True, timeout=30)
        assert (p.returncode == 0) == ok, (args, p.returncode, p.stdout, p.stderr)
        return p.stdout + p.stderr

    assert run("person", "add", "--name", "Анна Орлова", "--login", "aorlova", "--role", "Sales manager").strip() == "person-1"
    src = run("source", "create", "--name", "Site", "--default-role", "Sales manager", "--field", "Region:enum:North,South",
              "--required", "applicant.email").strip()
    out = run("lead", "submit", "--source", src, "--name", "Ivan", "--email", "ivan@example.com", "--field", "Region=North")
    assert "L-" in out and "assigned to Анна Орлова (person-1)" in out
    err = run("lead", "submit", "--source", src, "--email", "not-an-address", "--field", "Region=West", ok=False)
    assert "INVALID_ARGUMENT" in err and "fields.Region" in err and "applicant.email" in err
    table = run("lead", "list")
    assert "number" in table.splitlines()[0] and "Анна Орлова (person-1)" in table
    assert "SERVING" in run("health", "--address", s.addr("report"))
    bad = dict(env, LEADWIRE_TOKEN="garbage")
    p = subprocess.run([ctl, "lead", "list"], env=bad, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "UNAUTHENTICATED" in p.stderr and "hint:" in p.stderr


def test_a_queued_lead_reaches_intake_when_someone_is_free(whole_set):
    s = whole_set
    admin = jwt(s.key, "queue-admin", ["admin"])
    routing, intake = s.stub("routing", admin), s.stub("intake", admin)
    head = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Boss", login="boss")))
    routing.PutRole(gpb.PutRoleRequest(role=gpb.Role(name="Small team", head_id=head.id)))
    only = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Solo", login="solo", roles=["Small team"], capacity=1)))
    src = intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(name="Phone line", channel=ipb.CHANNEL_PHONE, default_role="Small team", enabled=True)))
    first = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="A"))).lead
    second = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="B"))).lead
    assert first.owner_id == only.id
    assert second.routing == ipb.ROUTING_STATE_QUEUED and second.owner_id == "" and "head %s notified" % head.id in second.routing_explanation
    intake.RejectLead(ipb.RejectLeadRequest(id=first.id, reason="duplicate of a phone call"))  # finished: frees Solo
    got = wait_for("the queued lead assigned at intake", lambda: (lambda l: l if l.routing == ipb.ROUTING_STATE_ASSIGNED else None)(
        intake.GetLead(ipb.GetLeadRequest(id=second.id)).lead), timeout=30)
    assert got.owner_id == only.id
    history = [h.action for h in intake.GetLead(ipb.GetLeadRequest(id=second.id)).history]
    assert history.count("assigned") == 2  # queued, then handed to Solo


def test_logs_and_metrics(whole_set):
    """One log line per RPC (method, status, duration, principal) and Prometheus metrics: per-RPC
    counts and latency, store commit batch sizes, outbox backlog and lag."""
    import urllib.request

    s = whole_set
    admin = jwt(s.key, "metrics-admin", ["admin"])
    intake = s.stub("intake", admin)
    src = intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(name="Chat", channel=ipb.CHANNEL_MESSENGER, enabled=True)))
    for i in range(3):
        intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="M%d" % i)))
    refused(lambda: intake.GetLead(ipb.GetLeadRequest(id="lead-999999")))
    refused(lambda: s.stub("intake", "").ListSources(ipb.ListSourcesRequest()))

    def scrape():
        with urllib.request.urlopen(s.procs["intake"].metrics_url, timeout=5) as r:
            assert r.headers["content-type"].startswith("text/plain")
            return r.read().decode()

    text = wait_for("metrics", lambda: (lambda t: t if 'leadwire_outbox_lag_seconds{kind="event"}' in t else None)(scrape()), timeout=10)
    counts = {}
    for line in text.splitlines():
        m = re.match(r'leadwire_rpc_total\{(.*)\} (\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            counts[(labels["method"], labels["code"])] = float(m.group(2))
    assert counts[("/leadwire.intake.v1.Intake/SubmitLead", "OK")] == 3
    assert counts[("/leadwire.intake.v1.Intake/GetLead", "NOT_FOUND")] == 1
    assert counts[("/leadwire.intake.v1.Intake/ListSources", "UNAUTHENTICATED")] == 1
    assert re.search(r'leadwire_rpc_duration_seconds_bucket\{.*method="/leadwire.intake.v1.Intake/SubmitLead".*\} 3', text)
    assert re.search(r'leadwire_store_commit_batch_size_count\{db="intake"\} [1-9]', text)
    assert 'leadwire_outbox_pending{kind="route"}' in text
    # The log lines: one per call, with who made it.
    log = s.procs["intake"].log()
    submits = [l for l in log.splitlines() if "method=/leadwire.intake.v1.Intake/SubmitLead" in l]
    assert len(submits) == 3 and all("principal=metrics-admin" in l and "status=OK" in l and "duration_ms=" in l for l in submits)
    assert any("method=/leadwire.intake.v1.Intake/ListSources" in l and "status=UNAUTHENTICATED" in l and "principal=-" in l for l in log.splitlines())


def test_reassign_in_routing_reaches_intake_watchers_and_report(whole_set):
    """One owner everywhere: a Reassign made in routing shows in intake's GetLead and history, in a
    WatchLeads stream, and in report's leads-by-owner figures, within seconds."""
    import threading

    s = whole_set
    admin = jwt(s.key, "owner-admin", ["admin"])
    routing, intake, report = s.stub("routing", admin), s.stub("intake", admin), s.stub("report", admin)
    anna = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Анна", login="anna", roles=["Marketer"])))
    boris = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Борис", login="boris")))
    src = intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(name="Owners", channel=ipb.CHANNEL_WEB_FORM, default_role="Marketer", enabled=True)))
    lead = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="Клиент"), subject="s")).lead
    assert lead.owner_id == anna.id
    seen = []
    watch = intake.WatchLeads(ipb.WatchLeadsRequest(owner_id=boris.id), timeout=20)

    def read():
        try:
            for change in watch:
                seen.append(change)
                if change.lead.id == lead.id:
                    return
        except grpc.RpcError:
            pass

    watch.initial_metadata()  # attached (intake answers headers once it watches): the change cannot be missed
    t = threading.Thread(target=read)
    t.start()
    routing.Reassign(gpb.ReassignRequest(lead_id=lead.id, person_id=boris.id, reason="Анна в отпуске"))
    got = wait_for("the new owner at intake", lambda: (lambda l: l if l.owner_id == boris.id else None)(
        intake.GetLead(ipb.GetLeadRequest(id=lead.id)).lead), timeout=5)
    assert got.owner_id == boris.id
    history = intake.GetLead(ipb.GetLeadRequest(id=lead.id)).history
    assert history[-1].action == "assigned" and "Анна в отпуске" in history[-1].note
    t.join(timeout=5)
    watch.cancel()
    assert any(c.lead.id == lead.id and c.lead.owner_id == boris.id for c in seen)

    def by_owner():
        rows = report.LeadSummary(rpb.LeadReportRequest(dimension=rpb.DIMENSION_OWNER)).rows
        return {r.key: r.received for r in rows}

    figures = wait_for("report's by-owner figures follow", lambda: (lambda f: f if f.get(boris.id) == 1 else None)(by_owner()), timeout=5)
    assert figures.get(anna.id, 0) == 0


def test_source_defaults_must_exist_in_routing_and_rules_come_first(whole_set):
    s = whole_set
    admin = jwt(s.key, "defaults-admin", ["admin"])
    routing, intake = s.stub("routing", admin), s.stub("intake", admin)
    with pytest.raises(grpc.RpcError) as e:
        intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(name="Ghost owner", channel=ipb.CHANNEL_WEB_FORM, default_owner_id="person-987654")))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "source.default_owner_id" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(name="Ghost role", channel=ipb.CHANNEL_WEB_FORM, default_role="Nobody's role")))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "source.default_role" in e.value.details()
    # A Region rule beats the source's default owner.
    owner = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Владелец", login="owner-%s" % uuid.uuid4().hex[:4])))
    routing.PutRole(gpb.PutRoleRequest(role=gpb.Role(name="Север")))
    nord = routing.CreatePerson(gpb.CreatePersonRequest(person=gpb.Person(name="Северный", login="nord-%s" % uuid.uuid4().hex[:4], roles=["Север"])))
    routing.SetRules(gpb.SetRulesRequest(rules=gpb.RuleSet(rules=[gpb.Rule(name="Север", conditions=[gpb.Condition(field="Region", equals="North")], role="Север")])))
    src = intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(
        name="Owned %s" % uuid.uuid4().hex[:4], channel=ipb.CHANNEL_WEB_FORM, default_owner_id=owner.id, enabled=True,
        fields=[ipb.FieldDefinition(name="Region", type=ipb.FIELD_TYPE_ENUM, allowed_values=["North", "South"])])))
    north = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="N"), subject="s",
                                                    fields=[ipb.FieldValue(name="Region", value="North")])).lead
    south = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="S"), subject="s",
                                                    fields=[ipb.FieldValue(name="Region", value="South")])).lead
    assert north.owner_id == nord.id and "rule" in north.routing_explanation
    assert south.owner_id == owner.id

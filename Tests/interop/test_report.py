"""The report service driven by grpcio: lead events in (idempotent), a whole plan from draft to
completion acts, the contractor stream, figures with their as-of instant, CSV, and refusals."""
import datetime
import itertools
import queue
import threading
import time
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from leadwire.report.v1 import report_pb2 as pb

_seq = itertools.count(1)


def now_ms():
    return int(time.time() * 1000)


def today(offset=0):
    return (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=offset)).isoformat()


def accepted_lead(report):
    """Registers a lead through events (created, then accepted) and returns its number."""
    n = next(_seq)
    lead_id = "lead-%s-%d" % (uuid.uuid4().hex[:6], n)
    number = "L-2026-9%05d" % n
    t = now_ms() - 60_000
    report.IngestEvents(pb.IngestEventsRequest(events=[
        pb.LeadEvent(event_id=lead_id + "-1", kind="created", at_ms=t, lead_id=lead_id, registration_number=number, status="new", received_at_ms=t),
        pb.LeadEvent(event_id=lead_id + "-2", kind="state_changed", at_ms=t + 1000, lead_id=lead_id, registration_number=number, status="accepted", owner_id="anna"),
    ]))
    return number


def line(number, contractor, volume="10", deadline=None):
    return pb.PlanLine(registration_number=number, client="OOO Romashka", object_address="Lenina 1", work_kind="Install AC",
                       volume=volume, unit="pcs", deadline=deadline or today(30), contractor_id=contractor)


def precondition_types(err):
    status = rpc_status.from_call(err)
    out = []
    for d in status.details:
        if d.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            d.Unpack(pf)
            out += [v.type for v in pf.violations]
    return out


def bad_fields(err):
    status = rpc_status.from_call(err)
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            return {v.field: v.description for v in br.field_violations}
    return {}


def refused(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value


def test_events_are_idempotent_and_figures_consistent(report):
    base = now_ms() - 3_600_000
    lead = "lead-idem-" + uuid.uuid4().hex[:6]
    before = report.LeadSummary(pb.LeadReportRequest())
    events = [
        pb.LeadEvent(event_id=lead + "-c", kind="created", at_ms=base, lead_id=lead, source_id="src-idem", channel="email", status="new",
                     received_at_ms=base, reply_deadline_ms=base + 7_200_000, fields=[pb.FieldValue(name="Region", value="Ural")]),
        pb.LeadEvent(event_id=lead + "-a", kind="state_changed", at_ms=base + 600_000, lead_id=lead, status="accepted", owner_id="olga"),
    ]
    r1 = report.IngestEvents(pb.IngestEventsRequest(events=events))
    assert (r1.applied, r1.duplicates) == (2, 0) and r1.consistent_as_of_ms >= base + 600_000
    r2 = report.IngestEvents(pb.IngestEventsRequest(events=events))  # redelivery
    assert (r2.applied, r2.duplicates) == (0, 2)
    after = report.LeadSummary(pb.LeadReportRequest())
    total = lambda rep, f: sum(getattr(r, f) for r in rep.rows)
    assert total(after, "received") == total(before, "received") + 1
    assert total(after, "accepted") == total(before, "accepted") + 1
    assert after.consistent_as_of_ms >= base + 600_000
    by_region = report.LeadSummary(pb.LeadReportRequest(dimension=pb.DIMENSION_FIELD, field="Region", period=pb.PERIOD_DAY))
    ural = [r for r in by_region.rows if r.key == "Ural"]
    assert len(ural) == 1 and ural[0].accepted == 1
    assert ural[0].period == datetime.datetime.fromtimestamp(base / 1000, datetime.timezone.utc).date().isoformat()
    by_channel = report.LeadSummary(pb.LeadReportRequest(dimension=pb.DIMENSION_CHANNEL))
    assert [r.accepted for r in by_channel.rows if r.key == "email"] == [1]
    kpi = {e.person_id: e for e in report.EmployeeKpis(pb.KpiRequest()).employees}
    assert kpi["olga"].handled == 1 and kpi["olga"].on_time == 1
    funnel = report.LeadFunnel(pb.FunnelRequest())
    assert funnel.received >= 1 and funnel.accepted >= 1 and 0 < funnel.share_within_deadline <= 1
    # A bad batch is refused whole, naming each bad event.
    e = refused(lambda: report.IngestEvents(pb.IngestEventsRequest(events=[events[0], pb.LeadEvent(kind="lost")])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"events[1].event_id", "events[1].lead_id", "events[1].kind", "events[1].at_ms"} <= set(bad_fields(e))


def test_whole_plan_from_draft_to_completion_acts(report):
    a, b = "ctr-a-" + uuid.uuid4().hex[:5], "ctr-b-" + uuid.uuid4().hex[:5]
    n1, n2 = accepted_lead(report), accepted_lead(report)
    plan = report.CreatePlan(pb.CreatePlanRequest(title="Q4 installs", department="Service", lines=[line(n1, a), line(n2, b)], actor="planner"))
    assert plan.state == pb.PLAN_STATE_DRAFT and plan.version == 1 and plan.id.startswith("plan-")
    assert plan.period_start.endswith(("-01-01", "-04-01", "-07-01", "-10-01"))  # the current quarter
    # Edit: a new version, comparable with the previous one.
    lines = list(plan.lines)
    lines[0].volume = "12"
    plan = report.UpdatePlan(pb.UpdatePlanRequest(plan_id=plan.id, expected_version=1, lines=lines, actor="planner"))
    assert plan.version == 2
    diff = report.ComparePlan(pb.ComparePlanRequest(plan_id=plan.id))
    assert [(c.change, list(c.fields)) for c in diff.changes] == [("changed", ["volume"])]
    assert report.GetPlan(pb.GetPlanRequest(plan_id=plan.id, version=1)).lines[0].volume == "10"
    act = lambda action, **kw: report.ActOnPlan(pb.PlanActionRequest(plan_id=plan.id, action=action, **kw))
    act(pb.PLAN_ACTION_SUBMIT, actor="planner")
    returned = act(pb.PLAN_ACTION_RETURN, comment="volume on line 1 is wrong", actor="head")
    assert returned.state == pb.PLAN_STATE_DRAFT and returned.history[-1].comment == "volume on line 1 is wrong"
    act(pb.PLAN_ACTION_SUBMIT, actor="planner")
    act(pb.PLAN_ACTION_APPROVE_AS_HEAD, actor="head")
    final = act(pb.PLAN_ACTION_APPROVE_AS_MANAGEMENT, actor="director")
    assert final.state == pb.PLAN_STATE_FINAL
    # Contractor b follows before the hand-over and receives it without polling.
    updates = queue.Queue()
    stream = report.FollowWorkPlans(pb.ContractorRequest(contractor_id=b))

    def pump():
        try:
            for u in stream:
                updates.put(u)
        except grpc.RpcError:
            pass

    stream.initial_metadata()  # attached (report answers headers once it follows): the hand-over cannot be missed
    threading.Thread(target=pump, daemon=True).start()
    handed = act(pb.PLAN_ACTION_HAND_OVER, actor="director")
    assert handed.state == pb.PLAN_STATE_HANDED_OVER
    assert [s.action for s in handed.history] == ["created", "edited", "submitted", "returned", "submitted", "head_approved", "management_approved", "handed_over"]
    u = updates.get(timeout=10)
    assert u.kind == "handed_over" and u.plan.plan.id == plan.id and [l.contractor_id for l in u.plan.plan.lines] == [b]
    # Each contractor sees only their line.
    mine = report.GetWorkPlan(pb.GetWorkPlanRequest(contractor_id=a, plan_id=plan.id))
    assert [l.registration_number for l in mine.plan.lines] == [n1]
    line_a = mine.plan.lines[0].id
    # Progress before the signature is refused; then sign, report, close with an act.
    e = refused(lambda: report.ReportProgress(pb.ReportProgressRequest(contractor_id=a, plan_id=plan.id, line_id=line_a, percent=10)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and precondition_types(e) == ["NOT_ACKNOWLEDGED"]
    signed = report.Acknowledge(pb.AcknowledgeRequest(contractor_id=a, plan_id=plan.id, signer="I. Builder"))
    assert signed.acknowledgement.signer == "I. Builder" and signed.acknowledgement.at_ms > 0
    p = report.ReportProgress(pb.ReportProgressRequest(contractor_id=a, plan_id=plan.id, line_id=line_a, percent=40, note="pipes laid"))
    assert p.execution.progress_percent == 40
    e = refused(lambda: report.ReportProgress(pb.ReportProgressRequest(contractor_id=a, plan_id=plan.id, line_id=line_a, percent=30)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_act = pb.CompletionAct(plan_id=plan.id, line_id=line_a, contractor_id=a, work_done="Installed", volume="30", started_on=today(-1), finished_on=today(1), signer="I. Builder")
    e = refused(lambda: report.SubmitAct(pb.SubmitActRequest(act=bad_act)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and {"act.volume", "act.finished_on"} <= set(bad_fields(e))
    good = pb.CompletionAct(plan_id=plan.id, line_id=line_a, contractor_id=a, work_done="Installed 11 units", volume="11", started_on=today(-1), finished_on=today(), signer="I. Builder")
    closed = report.SubmitAct(pb.SubmitActRequest(act=good))
    assert closed.execution.closed and closed.execution.act.volume == "11"
    e = refused(lambda: report.SubmitAct(pb.SubmitActRequest(act=good)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and precondition_types(e) == ["LINE_CLOSED"]
    # Plan-vs-fact.
    rows = {r.contractor_id: r for r in report.PlanFigures(pb.PlanReportRequest(plan_id=plan.id)).rows}
    assert (rows[a].completed, rows[a].planned_volume, rows[a].actual_volume) == (1, "12.000", "11.000")
    assert (rows[b].completed, rows[b].not_completed) == (0, 1)
    # Contractor b's follow stream heard nothing about a's line (it is not theirs).
    assert updates.empty()
    stream.cancel()
    # CSV of the same figures.
    csv = b"".join(c.data for c in report.ExportCsv(pb.ExportCsvRequest(plans=pb.PlanReportRequest(plan_id=plan.id)))).decode()
    lines_csv = csv.split("\r\n")
    assert lines_csv[0].startswith("# consistent as of ") and lines_csv[1].startswith("plan_id,period_start,contractor_id")
    assert any(l.startswith("%s,%s,%s,1,1,0,12.000,11.000" % (plan.id, plan.period_start, a)) for l in lines_csv)


def test_refusals(report):
    a, other = "ctr-r-" + uuid.uuid4().hex[:5], "ctr-x-" + uuid.uuid4().hex[:5]
    n = accepted_lead(report)
    plan = report.CreatePlan(pb.CreatePlanRequest(title="Refusals", lines=[line(n, a)]))
    # Wrong state -> FAILED_PRECONDITION naming it.
    e = refused(lambda: report.ActOnPlan(pb.PlanActionRequest(plan_id=plan.id, action=pb.PLAN_ACTION_HAND_OVER)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "is a draft" in e.details() and precondition_types(e) == ["PLAN_STATE"]
    e = refused(lambda: report.ActOnPlan(pb.PlanActionRequest(plan_id=plan.id, action=pb.PLAN_ACTION_APPROVE_AS_HEAD)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    report.ActOnPlan(pb.PlanActionRequest(plan_id=plan.id, action=pb.PLAN_ACTION_SUBMIT))
    e = refused(lambda: report.UpdatePlan(pb.UpdatePlanRequest(plan_id=plan.id, lines=[line(n, a)])))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "submitted" in e.details()
    e = refused(lambda: report.ActOnPlan(pb.PlanActionRequest(plan_id=plan.id, action=pb.PLAN_ACTION_RETURN)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "comment" in bad_fields(e)
    for action in (pb.PLAN_ACTION_APPROVE_AS_HEAD, pb.PLAN_ACTION_APPROVE_AS_MANAGEMENT, pb.PLAN_ACTION_HAND_OVER):
        report.ActOnPlan(pb.PlanActionRequest(plan_id=plan.id, action=action))
    # Another contractor's plan is indistinguishable from a missing one.
    e = refused(lambda: report.GetWorkPlan(pb.GetWorkPlanRequest(contractor_id=other, plan_id=plan.id)))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = refused(lambda: report.Acknowledge(pb.AcknowledgeRequest(contractor_id=other, plan_id=plan.id, signer="x")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert report.ListWorkPlans(pb.ContractorRequest(contractor_id=other)).plans == []
    # Lines must name accepted leads, and be complete.
    e = refused(lambda: report.CreatePlan(pb.CreatePlanRequest(title="x", lines=[line("L-2026-777777", a)])))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and precondition_types(e) == ["LEAD_UNKNOWN"]
    e = refused(lambda: report.CreatePlan(pb.CreatePlanRequest(lines=[pb.PlanLine(volume="lots", deadline="soon")])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"title", "lines[0].volume", "lines[0].deadline", "lines[0].contractor_id", "lines[0].registration_number"} <= set(bad_fields(e))
    e = refused(lambda: report.GetPlan(pb.GetPlanRequest(plan_id="plan-99999")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    e = refused(lambda: report.LeadSummary(pb.LeadReportRequest(from_date="2026-13-01")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "from_date" in bad_fields(e)
    e = refused(lambda: report.LeadSummary(pb.LeadReportRequest(dimension=pb.DIMENSION_FIELD)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "field" in bad_fields(e)
    # A line just handed over, due in a month, is neither overdue nor stale (overdue lines: next test).
    items = report.ExecutionControl(pb.ExecutionControlRequest(contractor_id=a, stale_days=100)).items
    assert items == []


def test_overdue_line_in_execution_control(report):
    a = "ctr-o-" + uuid.uuid4().hex[:5]
    n = accepted_lead(report)
    start = today(-40)
    plan = report.CreatePlan(pb.CreatePlanRequest(title="Late", period_start=start, period_end=today(60), lines=[line(n, a, deadline=today(-3))]))
    for action in (pb.PLAN_ACTION_SUBMIT, pb.PLAN_ACTION_APPROVE_AS_HEAD, pb.PLAN_ACTION_APPROVE_AS_MANAGEMENT, pb.PLAN_ACTION_HAND_OVER):
        report.ActOnPlan(pb.PlanActionRequest(plan_id=plan.id, action=action))
    items = report.ExecutionControl(pb.ExecutionControlRequest(contractor_id=a)).items
    assert [(i.plan_id, i.overdue, i.days_overdue) for i in items] == [(plan.id, True, 3)]
    rows = report.PlanFigures(pb.PlanReportRequest(contractor_id=a)).rows
    assert [(r.late_lines, r.lateness_days) for r in rows] == [(1, 3)]

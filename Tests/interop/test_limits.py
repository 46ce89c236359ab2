"""Field limits and enum values, refused at decode for every RPC of the three services, naming the
field path and the limit (the limits are in the proto comments, "At most N characters/items")."""
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from leadwire.intake.v1 import intake_pb2 as ipb
from leadwire.report.v1 import report_pb2 as rpb
from leadwire.routing.v1 import routing_pb2 as gpb

MB = "я" * (1024 * 1024 // 2)


def violations(err):
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            for any_ in st.details:
                if any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    br = error_details_pb2.BadRequest()
                    any_.Unpack(br)
                    return {v.field: v.description for v in br.field_violations}
    return {}


def refused(call, *args):
    with pytest.raises(grpc.RpcError) as e:
        call(*args, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    return e.value


def test_one_megabyte_fields_are_refused_naming_field_and_limit(intake, routing, report):
    e = refused(intake.SubmitLead, ipb.SubmitLeadRequest(source_id="src-1", subject=MB))
    assert "at most 500" in violations(e)["subject"]
    e = refused(intake.SubmitLead, ipb.SubmitLeadRequest(source_id="src-1", applicant=ipb.Applicant(name=MB)))
    assert "at most 200" in violations(e)["applicant.name"]
    e = refused(intake.AddComment, ipb.AddCommentRequest(lead_id="lead-1", text=MB))
    assert "at most 65536" in violations(e)["text"]
    e = refused(routing.CreatePerson, gpb.CreatePersonRequest(person=gpb.Person(name=MB, login="x")))
    assert "person.name" in violations(e)
    e = refused(report.CreatePlan, rpb.CreatePlanRequest(title=MB))
    assert "at most 500" in violations(e)["title"]
    # Unannotated strings take the default of 1,000 characters.
    e = refused(intake.GetLead, ipb.GetLeadRequest(id="x" * 1001))
    assert "at most 1000" in violations(e)["id"]


def test_too_many_repeated_elements_are_refused_with_the_index_path(intake):
    src = ipb.Source(name="s", channel=ipb.CHANNEL_WEB_FORM, fields=[ipb.FieldDefinition(name="f%d" % i) for i in range(101)])
    e = refused(intake.CreateSource, ipb.CreateSourceRequest(source=src))
    assert "at most 100" in violations(e)["source.fields"]
    src = ipb.Source(name="s", channel=ipb.CHANNEL_WEB_FORM, fields=[ipb.FieldDefinition(name="ok"), ipb.FieldDefinition(name="n" * 101)])
    e = refused(intake.CreateSource, ipb.CreateSourceRequest(source=src))
    assert "source.fields[1].name" in violations(e)


def test_enum_values_outside_the_declared_ones_are_refused(intake, routing, report):
    e = refused(intake.CreateSource, ipb.CreateSourceRequest(source=ipb.Source(name="s", channel=42)))
    assert "source.channel" in violations(e)
    assert "42" in violations(e)["source.channel"]
    refused(intake.ListLeads, ipb.ListLeadsRequest(status=42))
    e = refused(intake.CreateSource, ipb.CreateSourceRequest(source=ipb.Source(
        name="s", channel=ipb.CHANNEL_WEB_FORM, fields=[ipb.FieldDefinition(name="f", type=42)])))
    assert "source.fields[0].type" in violations(e)
    e = refused(report.LeadSummary, rpb.LeadReportRequest(period=42))
    assert "period" in violations(e)
    e = refused(routing.ListPeople, gpb.ListPeopleRequest(role="r" * 1001))
    assert "role" in violations(e)


def test_values_within_limits_still_pass(intake):
    src = intake.CreateSource(ipb.CreateSourceRequest(source=ipb.Source(name="Лимиты", channel=ipb.CHANNEL_WEB_FORM, enabled=True)))
    lead = intake.SubmitLead(ipb.SubmitLeadRequest(source_id=src.id, applicant=ipb.Applicant(name="Я" * 200, email="a@example.ru"),
                                                   subject="т" * 500, description="д" * 65536), timeout=10).lead
    assert len(lead.subject) == 500 and len(lead.description) == 65536

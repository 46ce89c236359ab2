"""The intake service driven by grpcio as internal systems and employees' tools would: the issue's
scenario, every refusal with its status and machine-readable details, and a SIGKILL durability test."""
import datetime
import itertools
import signal
import threading
import time
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import ServerProcess
from leadwire.intake.v1 import intake_pb2 as pb
from leadwire.intake.v1 import intake_pb2_grpc

_names = itertools.count()


def make_source(intake, **kw):
    src = pb.Source(
        name=kw.pop("name", "Site form %d-%s" % (next(_names), uuid.uuid4().hex[:6])),
        channel=kw.pop("channel", pb.CHANNEL_WEB_FORM),
        default_role="Sales manager",
        enabled=kw.pop("enabled", True),
        fields=[pb.FieldDefinition(name="Region", type=pb.FIELD_TYPE_ENUM, allowed_values=["North", "South"]),
                pb.FieldDefinition(name="Employees", type=pb.FIELD_TYPE_INTEGER)],
        required_fields=["applicant.email", "Region"],
        categories=["repair", "install"],
        default_values=[pb.FieldValue(name="category", value="repair")],
        **kw)
    return intake.CreateSource(pb.CreateSourceRequest(source=src))


def lead_request(source, email="ivan@example.com", key="", **kw):
    return pb.SubmitLeadRequest(
        source_id=source.id, applicant=pb.Applicant(name="Ivan Petrov", email=email, phone=kw.pop("phone", "")),
        subject=kw.pop("subject", "Broken AC"), fields=kw.pop("fields", [pb.FieldValue(name="Region", value="North")]),
        idempotency_key=key, **kw)


def details(err, kind):
    status = rpc_status.from_call(err)
    assert status is not None, "no grpc-status-details-bin"
    for d in status.details:
        msg = kind()
        if d.Unpack(msg):
            return msg
    raise AssertionError("no %s in the details" % kind.DESCRIPTOR.full_name)


def test_full_scenario(intake):
    source = make_source(intake)
    first = intake.SubmitLead(lead_request(source, key="crm-1001"))
    lead = first.lead
    assert not first.duplicate
    assert lead.registration_number.startswith("L-%d-" % datetime.date.today().year)
    assert lead.status == pb.LEAD_STATUS_NEW and lead.category == "repair"
    assert lead.reply_due_at_ms - lead.received_at_ms == 5 * 86_400_000

    again = intake.SubmitLead(lead_request(source, key="crm-1001"))
    assert again.duplicate and again.lead.registration_number == lead.registration_number

    status = intake.LookupStatus(pb.LookupStatusRequest(registration_number=lead.registration_number.lower()))
    assert status.status == pb.LEAD_STATUS_NEW and status.reply_due_at_ms == lead.reply_due_at_ms

    intake.SetClientDebt(pb.SetClientDebtRequest(client_id=lead.client_id, debt="1500.00"))
    with pytest.raises(grpc.RpcError) as e:
        intake.AcceptLead(pb.AcceptLeadRequest(id=lead.id, actor="manager"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(e.value, error_details_pb2.PreconditionFailure).violations[0].type == "CLIENT_HAS_DEBT"

    tomorrow = (datetime.date.today() + datetime.timedelta(days=7)).isoformat()
    deferred = intake.DeferLead(pb.DeferLeadRequest(id=lead.id, actor="manager", reason="waiting for payment", revisit_date=tomorrow))
    assert deferred.status == pb.LEAD_STATUS_DEFERRED and deferred.revisit_date == tomorrow

    intake.SetClientDebt(pb.SetClientDebtRequest(client_id=lead.client_id, debt="0"))
    accepted = intake.AcceptLead(pb.AcceptLeadRequest(id=lead.id, actor="manager"))
    assert accepted.status == pb.LEAD_STATUS_ACCEPTED and accepted.due_at_ms > 0

    intake.AddComment(pb.AddCommentRequest(lead_id=lead.id, author="manager", text="Technician booked, @ivanov", public=True))
    intake.AddComment(pb.AddCommentRequest(lead_id=lead.id, author="manager", text="client is difficult", public=False))
    done = intake.CompleteLead(pb.CompleteLeadRequest(id=lead.id, actor="manager", outcome=pb.OUTCOME_KIND_BUSINESS_PROCESS, reference="BP-2026-17"))
    assert done.status == pb.LEAD_STATUS_PROCESSED

    d = intake.GetLead(pb.GetLeadRequest(id=lead.id))
    assert [h.action for h in d.history] == ["registered", "deferred", "accepted", "commented", "commented", "processed"]
    assert all(h.actor for h in d.history)
    assert d.comments[0].mentions == ["ivanov"]
    public = intake.LookupStatus(pb.LookupStatusRequest(registration_number=lead.registration_number))
    assert public.status == pb.LEAD_STATUS_PROCESSED
    assert [c.text for c in public.public_comments] == ["Technician booked, @ivanov"]


def test_field_by_field_refusal(intake):
    source = make_source(intake)
    req = lead_request(source, email="not-an-email", fields=[
        pb.FieldValue(name="Region", value="East"), pb.FieldValue(name="Employees", value="many"), pb.FieldValue(name="Colour", value="red")])
    with pytest.raises(grpc.RpcError) as e:
        intake.SubmitLead(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations}
    assert fields == {"applicant.email", "fields.Region", "fields.Employees", "fields.Colour"}
    assert "fields.Region" in e.value.details()

    with pytest.raises(grpc.RpcError) as e:
        intake.SubmitLead(lead_request(source, email="", fields=[]))
    assert {v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations} == {"applicant.email", "fields.Region"}


def test_category_refused_and_not_stored(intake):
    source = make_source(intake)
    with pytest.raises(grpc.RpcError) as e:
        intake.SubmitLead(lead_request(source, category="warranty"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(e.value, error_details_pb2.PreconditionFailure).violations[0].type == "CATEGORY_NOT_ACCEPTED"
    assert len(intake.ListLeads(pb.ListLeadsRequest(source_id=source.id)).leads) == 0


def test_disabled_source_refuses(intake):
    source = make_source(intake)
    intake.SetSourceEnabled(pb.SetSourceEnabledRequest(id=source.id, enabled=False))
    with pytest.raises(grpc.RpcError) as e:
        intake.SubmitLead(lead_request(source))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations] == ["source_id"]
    assert source.id not in [s.id for s in intake.ListSources(pb.ListSourcesRequest()).sources]
    assert source.id in [s.id for s in intake.ListSources(pb.ListSourcesRequest(include_disabled=True)).sources]


def test_idempotency_key_reused_with_other_content(intake):
    source = make_source(intake)
    intake.SubmitLead(lead_request(source, key="ext-77"))
    with pytest.raises(grpc.RpcError) as e:
        intake.SubmitLead(lead_request(source, key="ext-77", subject="Something else"))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "ext-77" in e.value.details()


def test_illegal_transition_names_the_state(intake):
    source = make_source(intake)
    lead = intake.SubmitLead(lead_request(source)).lead
    intake.RejectLead(pb.RejectLeadRequest(id=lead.id, actor="m", reason="spam"))
    with pytest.raises(grpc.RpcError) as e:
        intake.AcceptLead(pb.AcceptLeadRequest(id=lead.id, actor="m"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is rejected" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        intake.CompleteLead(pb.CompleteLeadRequest(id=lead.id, outcome=pb.OUTCOME_KIND_CUSTOMER_INTEREST, reference="CI-1"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:
        intake.DeferLead(pb.DeferLeadRequest(id=lead.id, reason="", revisit_date="yesterday"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations} == {"reason", "revisit_date"}


def test_not_found_and_bad_input(intake):
    for call, req in [(intake.GetLead, pb.GetLeadRequest(id="lead-999999")), (intake.GetSource, pb.GetSourceRequest(id="src-999999")),
                      (intake.GetClient, pb.GetClientRequest(id="client-999999")),
                      (intake.LookupStatus, pb.LookupStatusRequest(registration_number="L-2000-000001")),
                      (intake.AcceptLead, pb.AcceptLeadRequest(id="nonsense"))]:
        with pytest.raises(grpc.RpcError) as e:
            call(req)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, call
    with pytest.raises(grpc.RpcError) as e:
        intake.ListLeads(pb.ListLeadsRequest(page_token="garbage", page_size=9999))
    assert {v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations} == {"page_token", "page_size"}
    with pytest.raises(grpc.RpcError) as e:
        intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="", channel=pb.CHANNEL_UNSPECIFIED)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        intake.SetClientDebt(pb.SetClientDebtRequest(client_id="client-1", debt="-5"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_matching(intake):
    source = make_source(intake)
    tag = uuid.uuid4().hex[:8]
    digits = "".join(str(int(c, 16) % 10) for c in tag)  # unique per run, so earlier runs' clients never match
    region = [pb.FieldValue(name="Region", value="South")]
    a = intake.SubmitLead(lead_request(source, email="Anna.%s@Example.com" % tag, phone="+7 (495) 111-%s" % digits[:4])).lead
    b = intake.SubmitLead(lead_request(source, email="  anna.%s@example.com " % tag)).lead
    assert a.client_id == b.client_id, "matched by e-mail, case and spaces ignored"
    c = intake.SubmitLead(pb.SubmitLeadRequest(
        source_id=source.id, applicant=pb.Applicant(email="other.%s@example.com" % tag, phone="+7 495 111 %s" % digits[:4]), fields=region)).lead
    assert c.client_id == a.client_id, "matched by phone when the e-mail is new"
    t1 = intake.SubmitLead(pb.SubmitLeadRequest(
        source_id=source.id, applicant=pb.Applicant(email="t1.%s@example.com" % tag, tax_id=inn10("77" + digits[:7])), fields=region)).lead
    assert t1.client_id != a.client_id, "a new client"
    client = intake.GetClient(pb.GetClientRequest(id=a.client_id))
    assert set(client.lead_ids) == {a.id, b.id, c.id}


def inn10(first9):
    """A valid organisation INN from its first nine digits (the tenth is the check digit)."""
    weights = [2, 4, 10, 3, 5, 9, 4, 6, 8]
    return first9 + str(sum(w * int(d) for w, d in zip(weights, first9)) % 11 % 10)


def test_import_one_bad_item_never_aborts_the_rest(intake):
    source = make_source(intake)
    items = []
    for i in range(120):
        if i % 10 == 3:
            items.append(lead_request(source, fields=[pb.FieldValue(name="Region", value="Mars")], key="imp-%d" % i))
        else:
            items.append(lead_request(source, email="imp%d@example.com" % i, key="imp-%s-%d" % (source.id, i)))
    items.append(items[0])  # a re-sent item: same key, same content
    r = intake.ImportLeads(iter(items))
    assert [x.index for x in r.results] == list(range(121))
    assert r.refused == 12 and r.accepted == 109
    for x in r.results:
        if x.index % 10 == 3 and x.index < 120:
            assert x.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "Region" in x.error_message
        else:
            assert x.error_code == 0 and x.registration_number
    assert r.results[120].duplicate and r.results[120].registration_number == r.results[0].registration_number
    assert len({x.registration_number for x in r.results if x.error_code == 0}) == 108


def test_email_creates_a_lead_then_a_reply_becomes_a_public_comment(intake):
    mailbox = "support-%s@leadwire.test" % uuid.uuid4().hex[:6]
    source = intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(
        name="Mailbox " + mailbox, channel=pb.CHANNEL_EMAIL, enabled=True, mailbox=mailbox, default_role="Sales manager")))
    raw = ("From: \"Olga Smirnova\" <olga@example.com>\r\nTo: %s\r\nSubject: =?UTF-8?B?0J3QtSDRgNCw0LHQvtGC0LDQtdGC?=\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nThe heater is broken.\r\n" % mailbox).encode()
    created = intake.SubmitEmail(pb.SubmitEmailRequest(raw_message=raw, mailbox=mailbox))
    assert not created.attached_as_comment
    lead = created.lead
    assert lead.source_id == source.id and lead.channel == pb.CHANNEL_EMAIL
    assert lead.applicant.email == "olga@example.com" and lead.applicant.name == "Olga Smirnova"
    assert lead.subject == "Не работает" and lead.description == "The heater is broken."

    reply = ("From: olga@example.com\r\nSubject: Re: %s\r\n\r\nAny news?\r\n" % lead.registration_number).encode()
    attached = intake.SubmitEmail(pb.SubmitEmailRequest(raw_message=reply, mailbox=mailbox))
    assert attached.attached_as_comment and attached.lead.id == lead.id
    public = intake.LookupStatus(pb.LookupStatusRequest(registration_number=lead.registration_number))
    assert [c.text for c in public.public_comments] == ["Any news?"]

    with pytest.raises(grpc.RpcError) as e:
        intake.SubmitEmail(pb.SubmitEmailRequest(raw_message=b"no headers at all", mailbox=mailbox))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_pages_newest_first_without_gaps(intake):
    source = make_source(intake)
    made = [intake.SubmitLead(lead_request(source, email="p%d@example.com" % i)).lead.id for i in range(120)]
    seen, token, pages = [], "", 0
    while True:
        r = intake.ListLeads(pb.ListLeadsRequest(source_id=source.id, page_size=50, page_token=token))
        seen += [l.id for l in r.leads]
        pages += 1
        token = r.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == list(reversed(made))
    assert len(intake.ListLeads(pb.ListLeadsRequest(source_id=source.id, status=pb.LEAD_STATUS_ACCEPTED)).leads) == 0


def test_watch_streams_changes(intake):
    source = make_source(intake)
    watch = intake.WatchLeads(pb.WatchLeadsRequest(source_id=source.id))
    watch.initial_metadata()  # attached
    lead = intake.SubmitLead(lead_request(source)).lead
    intake.RejectLead(pb.RejectLeadRequest(id=lead.id, actor="m", reason="duplicate"))
    first, second = next(watch), next(watch)
    watch.cancel()
    assert (first.kind, first.lead.id) == ("registered", lead.id)
    assert (second.kind, second.lead.status) == ("rejected", pb.LEAD_STATUS_REJECTED)


def test_acknowledged_leads_survive_sigkill(tmp_path):
    data = str(tmp_path / "intake")
    server = ServerProcess("intake-service", ["--data-dir", data, "--auth", "off"])
    ch = grpc.insecure_channel(server.address)
    stub = intake_pb2_grpc.IntakeStub(ch)
    source = make_source(stub)
    acknowledged = []
    stop = threading.Event()

    def submitter(n):
        i = 0
        while not stop.is_set():
            try:
                r = stub.SubmitLead(lead_request(source, email="k%d-%d@example.com" % (n, i), key="kill-%d-%d" % (n, i)), timeout=5)
                acknowledged.append(r.lead.registration_number)
            except grpc.RpcError:
                return
            i += 1

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(acknowledged) < 300 and time.time() < deadline:
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    ch.close()
    assert len(acknowledged) >= 300

    again = ServerProcess("intake-service", ["--data-dir", data, "--auth", "off"])
    try:
        ch = grpc.insecure_channel(again.address)
        stub = intake_pb2_grpc.IntakeStub(ch)
        for number in acknowledged:
            assert stub.LookupStatus(pb.LookupStatusRequest(registration_number=number)).registration_number == number
        total = 0
        token = ""
        while True:
            r = stub.ListLeads(pb.ListLeadsRequest(source_id=source.id, page_size=500, page_token=token))
            total += len(r.leads)
            token = r.next_page_token
            if not token:
                break
        assert total >= len(acknowledged)
        ch.close()
    finally:
        assert again.stop() == 0


def test_replies_for_a_mail_gateway(intake):
    src = make_source(intake)
    lead = intake.SubmitLead(lead_request(src, email="reply-me@example.com", subject="Heater")).lead
    taken = intake.TakeReplies(pb.TakeRepliesRequest(limit=1000)).replies
    mine = [r for r in taken if r.lead_id == lead.id]
    assert len(mine) == 1
    r = mine[0]
    assert (r.registration_number, r.to_email, r.to_name, r.subject) == (lead.registration_number, "reply-me@example.com", "Ivan Petrov", "Heater")
    assert lead.registration_number in r.text and "Здравствуйте, Ivan Petrov!" in r.text and r.reply_due_at_ms == lead.reply_due_at_ms
    assert (r.kind, r.channel, r.recipient) == ("lead_registered", "email", "reply-me@example.com") and r.message_id == "registered.%s@leadwire.localhost" % lead.registration_number
    # Not confirmed: it comes back. Confirmed: gone, and a second confirmation changes nothing.
    assert lead.id in [x.lead_id for x in intake.TakeReplies(pb.TakeRepliesRequest(limit=1000)).replies]
    assert intake.ConfirmReplies(pb.ConfirmRepliesRequest(ids=[r.id])).confirmed == 1
    assert lead.id not in [x.lead_id for x in intake.TakeReplies(pb.TakeRepliesRequest(limit=1000)).replies]
    assert intake.ConfirmReplies(pb.ConfirmRepliesRequest(ids=[r.id])).confirmed == 0
    with pytest.raises(grpc.RpcError) as e:
        intake.ConfirmReplies(pb.ConfirmRepliesRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_lead_is_found_by_its_registration_number(intake):
    """The number the applicant was told works wherever the id does (in any case, with spaces)."""
    src = make_source(intake)
    lead = intake.SubmitLead(lead_request(src)).lead
    number = lead.registration_number
    for reference in (number, number.lower(), "  %s " % number):
        got = intake.GetLead(pb.GetLeadRequest(id=reference))
        assert got.lead.id == lead.id
    commented = intake.AddComment(pb.AddCommentRequest(lead_id=number, author="aorlova", text="перезвонить"))
    assert commented.lead_id == lead.id
    accepted = intake.AcceptLead(pb.AcceptLeadRequest(id=number))
    assert accepted.id == lead.id and accepted.status == pb.LEAD_STATUS_ACCEPTED
    with pytest.raises(grpc.RpcError) as e:
        intake.GetLead(pb.GetLeadRequest(id="L-1999-000001"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "registration number" in e.value.details()


def test_five_ways_of_writing_a_phone_make_one_client(intake):
    source = intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Phones %s" % uuid.uuid4().hex[:6], channel=pb.CHANNEL_PHONE, enabled=True)))
    clients = set()
    for phone in ["+7 (912) 345-67-89", "89123456789", "8 912 345 67 89", "79123456789", "9123456789"]:
        lead = intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="Зоя Крылова", phone=phone),
                                                      subject="Звонок"), timeout=10).lead
        assert lead.applicant.phone == "+79123456789"
        clients.add(lead.client_id)
    assert len(clients) == 1
    assert intake.GetClient(pb.GetClientRequest(id=clients.pop())).phone == "+79123456789"


def test_bad_phone_and_inn_are_refused_naming_the_field(intake):
    source = intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Checks %s" % uuid.uuid4().hex[:6], channel=pb.CHANNEL_PHONE, enabled=True)))
    for phone in ["звоните вечером", "12", "1" * 20]:
        with pytest.raises(grpc.RpcError) as e:
            intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="X", phone=phone), subject="s"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations} == {"applicant.phone"}
    for inn in ["7707083894", "12345", "ИНН"]:
        with pytest.raises(grpc.RpcError) as e:
            intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="X", tax_id=inn), subject="s"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations} == {"applicant.tax_id"}
    a = intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="ООО Ромашка", tax_id="7707083893"), subject="s")).lead
    b = intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="Ромашка", tax_id=" 7707083893 "), subject="s")).lead
    assert a.client_id == b.client_id


def test_source_phone_country_reads_national_numbers(intake):
    with pytest.raises(grpc.RpcError) as e:
        intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Nowhere", channel=pb.CHANNEL_PHONE, phone_country="XX")))
    assert "source.phone_country" in {v.field for v in details(e.value, error_details_pb2.BadRequest).field_violations}
    minsk = intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Минск %s" % uuid.uuid4().hex[:6], channel=pb.CHANNEL_PHONE,
                                                                        enabled=True, phone_country="BY")))
    lead = intake.SubmitLead(pb.SubmitLeadRequest(source_id=minsk.id, applicant=pb.Applicant(name="X", phone="80 29 123-45-67"), subject="s")).lead
    assert lead.applicant.phone == "+375291234567"


@pytest.mark.sqlite_only
def test_migration_normalises_old_phones_and_reports_duplicates(tmp_path):
    """A database from before E.164: two clients whose phones are one number in two forms. The new
    build rewrites them and lists the pair in client_duplicates; it merges nothing."""
    import sqlite3

    from conftest import ServerProcess

    server = ServerProcess("intake-service", ["--data-dir", str(tmp_path), "--auth", "off", "--metrics-port=-1"])
    server.stop()
    db = sqlite3.connect(str(tmp_path / "intake.sqlite"))
    db.execute("DELETE FROM store_tasks")
    db.execute("INSERT INTO clients(name, email, phone, company, tax_id, created_at) VALUES ('A', NULL, '89123456789', '', NULL, 1)")
    db.execute("INSERT INTO clients(name, email, phone, company, tax_id, created_at) VALUES ('B', NULL, '+7 912 345 67 89', '', NULL, 2)")
    db.commit()
    db.close()
    server = ServerProcess("intake-service", ["--data-dir", str(tmp_path), "--auth", "off", "--metrics-port=-1"])
    server.stop()
    db = sqlite3.connect(str(tmp_path / "intake.sqlite"))
    assert [r[0] for r in db.execute("SELECT phone FROM clients ORDER BY id")] == ["+79123456789", "+79123456789"]
    assert db.execute("SELECT client_id, same_phone_as FROM client_duplicates").fetchall() == [(2, 1)]
    db.close()
    assert "two clients have the same phone number" in server.log()


def test_intake_switch_refuses_new_leads_while_reads_go_on(intake):
    source = intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Switch %s" % uuid.uuid4().hex[:6], channel=pb.CHANNEL_WEB_FORM, enabled=True)))
    before = intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="A", email="a@example.ru"), subject="s")).lead
    with pytest.raises(grpc.RpcError) as e:
        intake.SetIntakeOpen(pb.SetIntakeOpenRequest(open=False))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    closed = intake.SetIntakeOpen(pb.SetIntakeOpenRequest(open=False, reason="переезд на новую систему до 18:00", actor="admin"))
    assert not closed.open and intake.GetIntakeSettings(pb.GetIntakeSettingsRequest()).reason == "переезд на новую систему до 18:00"
    try:
        with pytest.raises(grpc.RpcError) as e:
            intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="B", email="b@example.ru"), subject="s"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "intake is closed" in e.value.details() and "переезд" in e.value.details()
        results = intake.ImportLeads(iter([pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="C", email="c@example.ru"), subject="s")]))
        assert [(r.error_code, "intake is closed" in r.error_message) for r in results.results] == [(grpc.StatusCode.FAILED_PRECONDITION.value[0], True)]
        # Reads and processing go on.
        assert intake.GetLead(pb.GetLeadRequest(id=before.id)).lead.id == before.id
        assert intake.AcceptLead(pb.AcceptLeadRequest(id=before.id)).status == pb.LEAD_STATUS_ACCEPTED
    finally:
        opened = intake.SetIntakeOpen(pb.SetIntakeOpenRequest(open=True))
    assert opened.open
    intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="D", email="d@example.ru"), subject="s"))


def test_a_refusal_naming_three_hundred_unknown_columns_arrives_whole(intake, intake_server):
    """A source with 30 fields, an import row with 300 unknown columns: the refusal reaches grpcio
    at once (INVALID_ARGUMENT, the source's fields listed once, the violations capped), and a raw
    peer that accepts only 4 KiB of headers still gets the status."""
    import time as _time

    import h2.settings
    from h2raw import RawConnection, grpc_frame, status_of

    fields = [pb.FieldDefinition(name="Поле %d" % i, type=pb.FIELD_TYPE_TEXT if hasattr(pb, "FIELD_TYPE_TEXT") else 1) for i in range(30)]
    source = intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Wide %s" % uuid.uuid4().hex[:6], channel=pb.CHANNEL_IMPORT, enabled=True, fields=fields)))
    req = pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="X"), subject="s",
                               fields=[pb.FieldValue(name="Неизвестная колонка %d" % i, value="v") for i in range(100)])
    started = _time.time()
    with pytest.raises(grpc.RpcError) as e:
        intake.SubmitLead(req, timeout=10)
    assert _time.time() - started < 2
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = details(e.value, error_details_pb2.BadRequest).field_violations
    assert len(violations) <= 51
    assert sum("Поле 29" in v.description for v in violations) == 1
    results = intake.ImportLeads(iter([pb.SubmitLeadRequest(source_id=source.id, applicant=pb.Applicant(name="Y"), subject="s",
                                                             fields=[pb.FieldValue(name="col%d" % i, value="v") for i in range(100)])] * 3), timeout=10)
    assert [r.error_code for r in results.results] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 3
    c = RawConnection(intake_server.port, settings={h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 4096})
    c.pump(0.2)
    headers, _, trailers, reset = c.call("/leadwire.intake.v1.Intake/SubmitLead", grpc_frame(req.SerializeToString()))
    assert reset is None and status_of(headers, trailers) == 3
    block = trailers or headers
    assert sum(len(k.encode()) + len(v.encode()) + 32 for k, v in block.items()) <= 4096
    c.close()

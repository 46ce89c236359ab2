"""Messages to people, end to end: real intake, routing and report processes delivering to a real
SMTP server on loopback (aiosmtpd), read back with Python's email parser."""
import datetime
import email
import email.policy
import socket
import ssl
import subprocess
import threading
import time
import uuid

import grpc
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from conftest import ServerProcess, wait_for
from leadwire.intake.v1 import intake_pb2 as pb, intake_pb2_grpc
from leadwire.messages.v1 import messages_pb2 as mpb, messages_pb2_grpc
from leadwire.report.v1 import report_pb2 as rpb, report_pb2_grpc
from leadwire.routing.v1 import routing_pb2 as rtpb, routing_pb2_grpc


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts; recipients in `refuse` get a 550."""

    def __init__(self, refuse=()):
        self.messages = []
        self.sessions = []
        self.refuse = set(refuse)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 <%s>: no such mailbox here" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope.rcpt_tos[0], msg))
            self.sessions.append((bool(session.ssl), session.authenticated))
        return "250 Message accepted"

    def wait(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.1)
        with self.lock:
            raise AssertionError("expected %d messages, got %d: %s" % (n, len(self.messages), [(t, m["Subject"]) for t, m in self.messages]))

    def to(self, address):
        with self.lock:
            return [m for t, m in self.messages if t == address]


def smtp_args(port, security="none", extra=()):
    return ["--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-security", security, "--smtp-from", "desk@leadwire.test",
            "--smtp-from-name", "Служба заявок", "--smtp-retry-seconds", "0.3", *extra]


def start(name, data_dir, args):
    return ServerProcess(name + "-service", ["--data-dir", str(data_dir), "--auth", "off", *args])


def stub(server, make):
    ch = grpc.insecure_channel(server.address)
    grpc.channel_ready_future(ch).result(timeout=10)
    return make(ch), ch


def all_sent(ms, request, n):
    """Waits until the listed messages are n, all marked sent: the mark follows the relay's 250,
    which the mailbox has already seen, so it is waited for rather than expected at once."""
    def check():
        listed = ms.ListMessages(request).messages
        return len(listed) == n and all(m.state == mpb.MESSAGE_STATE_SENT for m in listed)
    wait_for("%d messages marked sent" % n, check)


def body(msg):
    """The text part decoded (UTF-8 base64 on the wire), with the CRLF line ends as "\\n"."""
    return msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


@pytest.fixture
def mailbox():
    box = Mailbox(refuse={"bounce@example.com"})
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.port = port
    yield box
    controller.stop()


@pytest.fixture
def whole_set(tmp_path, mailbox):
    routing = start("routing", tmp_path / "routing", [])
    intake = start("intake", tmp_path / "intake", ["--routing", routing.address, *smtp_args(mailbox.port)])
    servers = [routing, intake]
    channels = []
    try:
        rt, ch1 = stub(routing, routing_pb2_grpc.RoutingStub)
        it, ch2 = stub(intake, intake_pb2_grpc.IntakeStub)
        ms, ch3 = stub(intake, messages_pb2_grpc.MessagesStub)
        channels = [ch1, ch2, ch3]
        yield rt, it, ms, intake
    finally:
        for c in channels:
            c.close()
        for s in servers:
            assert s.alive(), "%s died" % s.binary
            assert s.stop() == 0


def directory(rt):
    irina = rt.CreatePerson(rtpb.CreatePersonRequest(person=rtpb.Person(name="Ирина Петрова", login="ipetrova", email="irina@corp.test")))
    oleg = rt.CreatePerson(rtpb.CreatePersonRequest(person=rtpb.Person(name="Олег Сидоров", login="osidorov", email="oleg@corp.test")))
    role = "Диспетчеры-" + uuid.uuid4().hex[:4]
    rt.PutRole(rtpb.PutRoleRequest(role=rtpb.Role(name=role, head_id=oleg.id)))
    rt.UpdatePerson(rtpb.UpdatePersonRequest(person=rtpb.Person(id=irina.id, name=irina.name, login=irina.login, email=irina.email, roles=[role], active=True)))
    return irina, oleg, role


def test_the_seed_workflow_sends_each_message_once_in_russian(whole_set, mailbox):
    rt, it, ms, _ = whole_set
    irina, oleg, role = directory(rt)
    src = it.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Сайт " + uuid.uuid4().hex[:4], channel=pb.CHANNEL_WEB_FORM, default_role=role, enabled=True)))
    lead = it.SubmitLead(pb.SubmitLeadRequest(source_id=src.id, applicant=pb.Applicant(name="Зоя Крылова", email="zoya@example.com"), subject="Не работает отопление")).lead
    number = lead.registration_number
    # Registration reaches the applicant; the assignment reaches Ирина (the role's only member).
    mailbox.wait(2)
    reg = mailbox.to("zoya@example.com")[0]
    assert reg["Subject"] == "Заявка %s зарегистрирована" % number
    assert "=?utf-8?" in reg.as_string().split("\n\n")[0], "the Cyrillic subject travels RFC 2047-encoded"
    text = body(reg)
    assert text.startswith("Здравствуйте, Зоя Крылова!")
    assert "«Не работает отопление» зарегистрировано под номером %s" % number in text
    assert " г." in text and "Ответ вы получите не позднее" in text
    assert reg["From"].addresses[0].display_name == "Служба заявок"
    assigned = mailbox.to("irina@corp.test")[0]
    assert assigned["Subject"] == "Вам передана заявка %s" % number
    assert body(assigned).startswith("Здравствуйте, Ирина Петрова!"), "staff are greeted by the name in routing's directory"
    assert assigned["To"].addresses[0].display_name == "Ирина Петрова"

    # A public comment by the desk mentioning Олег: the applicant, Олег (mention) and Ирина (owner) hear of it.
    it.AddComment(pb.AddCommentRequest(lead_id=lead.id, author="desk", text="Мастер придёт завтра, @osidorov проверьте запчасти", public=True))
    mailbox.wait(5)
    comment = mailbox.to("zoya@example.com")[1]
    assert comment["Subject"] == "Заявка %s: новый комментарий" % number
    assert "Мастер придёт завтра" in body(comment)
    assert comment["In-Reply-To"] == reg["Message-ID"], "later messages thread onto the registration"
    assert mailbox.to("oleg@corp.test")[0]["Subject"] == "Вас упомянули в заявке %s" % number
    assert mailbox.to("irina@corp.test")[1]["Subject"] == "Комментарий к заявке %s" % number

    # The applicant answers by e-mail: the answer joins the lead, the owner is told, the applicant is not.
    answer = ("From: Зоя Крылова <zoya@example.com>\r\nSubject: Re: %s\r\n\r\nСпасибо, буду дома.\r\n" % comment["Subject"]).encode()
    r = it.SubmitEmail(pb.SubmitEmailRequest(raw_message=answer, mailbox="any@leadwire.test"))
    assert r.attached_as_comment and r.lead.id == lead.id
    mailbox.wait(6)
    assert "Спасибо, буду дома." in body(mailbox.to("irina@corp.test")[2])

    # Inspection first, then acceptance and completion.
    answer_by = (datetime.date.today() + datetime.timedelta(days=3)).isoformat()
    it.RequireInspection(pb.RequireInspectionRequest(id=lead.id, answer_by=answer_by, note="Мастер приедет в четверг."))
    it.AcceptLead(pb.AcceptLeadRequest(id=lead.id, actor="ipetrova"))
    it.CompleteLead(pb.CompleteLeadRequest(id=lead.id, outcome=pb.OUTCOME_KIND_BUSINESS_PROCESS, reference="BP-1"))
    other = it.SubmitLead(pb.SubmitLeadRequest(source_id=src.id, applicant=pb.Applicant(name="Пётр", email="petr@example.com"), subject="Шум")).lead
    it.DeferLead(pb.DeferLeadRequest(id=other.id, reason="ждём подрядчика", revisit_date=(datetime.date.today() + datetime.timedelta(days=10)).isoformat()))
    third = it.SubmitLead(pb.SubmitLeadRequest(source_id=src.id, applicant=pb.Applicant(name="Анна", email="anna@example.com"), subject="Лифт")).lead
    it.RejectLead(pb.RejectLeadRequest(id=third.id, reason="дом обслуживает другая компания"))
    mailbox.wait(6 + 3 + 3 + 3)
    time.sleep(1.5)  # nothing more may come
    subjects = [m["Subject"] for m in mailbox.to("zoya@example.com")]
    assert subjects == [
        "Заявка %s зарегистрирована" % number, "Заявка %s: новый комментарий" % number,
        "Заявка %s: нужен предварительный осмотр" % number, "Заявка %s принята в работу" % number, "Заявка %s выполнена" % number,
    ]
    assert "Мастер приедет в четверг." in body(mailbox.to("zoya@example.com")[2])
    assert [m["Subject"] for m in mailbox.to("petr@example.com")] == [
        "Заявка %s зарегистрирована" % other.registration_number, "Заявка %s отложена" % other.registration_number]
    assert "Причина: ждём подрядчика." in body(mailbox.to("petr@example.com")[1])
    assert "Причина: дом обслуживает другая компания." in body(mailbox.to("anna@example.com")[1])
    ids = [m["Message-ID"] for _, m in mailbox.messages]
    assert len(ids) == len(set(ids)) == 6 + 3 + 3 + 3, "each message once (the new owner hears of each lead)"
    all_sent(ms, mpb.ListMessagesRequest(lead_id=number), 9)


def test_a_relay_down_for_a_while_delays_but_never_loses_or_duplicates(tmp_path):
    port = free_port()
    intake = start("intake", tmp_path / "intake", smtp_args(port))
    box = Mailbox()
    controller = None
    try:
        it, ch = stub(intake, intake_pb2_grpc.IntakeStub)
        ms, ch2 = stub(intake, messages_pb2_grpc.MessagesStub)
        src = it.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Форма", channel=pb.CHANNEL_WEB_FORM, enabled=True)))
        for i in range(5):
            it.SubmitLead(pb.SubmitLeadRequest(source_id=src.id, applicant=pb.Applicant(name="N%d" % i, email="n%d@example.com" % i), subject="s"))
        deadline = time.time() + 10
        while time.time() < deadline:
            queued = ms.ListMessages(mpb.ListMessagesRequest(state=mpb.MESSAGE_STATE_QUEUED)).messages
            if len(queued) == 5 and all(m.attempts >= 1 for m in queued):
                break
            time.sleep(0.2)
        assert len(queued) == 5 and all(m.attempts >= 1 and m.last_error for m in queued), queued
        controller = Controller(box, hostname="127.0.0.1", port=port)
        controller.start()
        box.wait(5, timeout=60)
        # Once every message is marked sent, none may be delivered again.
        all_sent(ms, mpb.ListMessagesRequest(), 5)
        time.sleep(1)
        assert sorted(t for t, _ in box.messages) == sorted("n%d@example.com" % i for i in range(5))
        assert len({m["Message-ID"] for _, m in box.messages}) == 5
        ch.close()
        ch2.close()
    finally:
        if controller:
            controller.stop()
        assert intake.stop() == 0


def test_a_550_is_set_aside_with_its_reason_and_can_be_retried(whole_set, mailbox):
    _, it, ms, _ = whole_set
    src = it.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Почта " + uuid.uuid4().hex[:4], channel=pb.CHANNEL_EMAIL, enabled=True)))
    lead = it.SubmitLead(pb.SubmitLeadRequest(source_id=src.id, applicant=pb.Applicant(name="X", email="bounce@example.com"), subject="s")).lead
    deadline = time.time() + 15
    while time.time() < deadline:
        failed = ms.ListMessages(mpb.ListMessagesRequest(lead_id=lead.id, state=mpb.MESSAGE_STATE_FAILED)).messages
        if failed:
            break
        time.sleep(0.2)
    assert len(failed) == 1 and "550" in failed[0].last_error and "no such mailbox" in failed[0].last_error
    assert mailbox.to("bounce@example.com") == []
    with pytest.raises(grpc.RpcError) as e:
        ms.RetryMessage(mpb.RetryMessageRequest(id="msg-999999"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    again = ms.RetryMessage(mpb.RetryMessageRequest(id=failed[0].id))
    assert again.state == mpb.MESSAGE_STATE_QUEUED
    with pytest.raises(grpc.RpcError) as e:
        ms.RetryMessage(mpb.RetryMessageRequest(id=failed[0].id))
    assert e.value.code() in (grpc.StatusCode.FAILED_PRECONDITION,)


def test_starttls_and_auth(tmp_path):
    cert, key = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append(mechanism)
        ok = auth_data.login == b"desk" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True)
    controller.start()
    (tmp_path / "pw").write_text("s3cret\n")
    args = smtp_args(port, "require-starttls", ["--smtp-user", "desk", "--smtp-password-file", str(tmp_path / "pw"), "--smtp-ca", str(cert)])
    args[1] = "localhost"
    intake = start("intake", tmp_path / "intake", args)
    try:
        it, ch = stub(intake, intake_pb2_grpc.IntakeStub)
        src = it.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="TLS", channel=pb.CHANNEL_WEB_FORM, enabled=True, locale="en")))
        lead = it.SubmitLead(pb.SubmitLeadRequest(source_id=src.id, applicant=pb.Applicant(name="Ivan Petrov", email="ivan@example.com"), subject="Heater")).lead
        msg = box.wait(1)[0][1]
        assert box.sessions[0] == (True, True), "sent over TLS, authenticated"
        assert seen and seen[0] in ("PLAIN", "LOGIN")
        assert msg["Subject"] == "Request %s is registered" % lead.registration_number
        assert body(msg).startswith("Hello Ivan Petrov,")
        ch.close()
    finally:
        controller.stop()
        assert intake.stop() == 0


def test_templates_are_checked_previewed_and_used(whole_set, mailbox):
    _, it, ms, _ = whole_set
    kinds = {t.kind for t in ms.ListTemplates(mpb.ListTemplatesRequest(locale="ru")).templates}
    assert {"lead_registered", "lead_accepted", "public_comment", "mentioned", "lead_queued"} <= kinds
    assert "progress_requested" not in kinds, "contractor messages are report's"
    with pytest.raises(grpc.RpcError) as e:
        ms.PutTemplate(mpb.PutTemplateRequest(template=mpb.Template(kind="lead_registered", locale="ru", subject="Заявка {number}", body="Здравствуйте!\n{nmae}")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "line 2, column 1" in e.value.details() + str(e.value.trailing_metadata())
    with pytest.raises(grpc.RpcError) as e:
        ms.PutTemplate(mpb.PutTemplateRequest(template=mpb.Template(kind="lead_registered", locale="ru", subject="Заявка {number", body="x")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    src = it.CreateSource(pb.CreateSourceRequest(source=pb.Source(name="Своя " + uuid.uuid4().hex[:4], channel=pb.CHANNEL_WEB_FORM, enabled=True)))
    scope = "source:" + src.id
    ms.PutTemplate(mpb.PutTemplateRequest(template=mpb.Template(kind="lead_registered", locale="ru", scope=scope, subject="Ваша заявка {number}", body="{greeting} Номер {{{number}}}.")))
    preview = ms.PreviewTemplate(mpb.PreviewTemplateRequest(template=mpb.Template(kind="lead_registered", locale="ru", scope=scope)))
    assert preview.subject == "Ваша заявка L-2026-000123" and preview.body == "Здравствуйте, Зоя Крылова! Номер {L-2026-000123}.\n"
    lead = it.SubmitLead(pb.SubmitLeadRequest(source_id=src.id, applicant=pb.Applicant(name="Юлия", email="julia@example.com"), subject="s")).lead
    deadline = time.time() + 15
    while not mailbox.to("julia@example.com") and time.time() < deadline:
        time.sleep(0.1)
    m = mailbox.to("julia@example.com")[0]
    assert m["Subject"] == "Ваша заявка %s" % lead.registration_number
    assert body(m) == "Здравствуйте, Юлия! Номер {%s}.\n" % lead.registration_number
    reset = ms.ResetTemplate(mpb.ResetTemplateRequest(kind="lead_registered", locale="ru", scope=scope))
    assert reset.stock


def test_contractor_progress_requests(tmp_path, mailbox):
    report = start("report", tmp_path / "report", smtp_args(mailbox.port))
    try:
        rp, ch = stub(report, report_pb2_grpc.ReportStub)
        lead_id = "lead-m-" + uuid.uuid4().hex[:6]
        number = "L-2026-8%05d" % (int(time.time()) % 100000)
        t = int(time.time() * 1000) - 60_000
        rp.IngestEvents(rpb.IngestEventsRequest(events=[
            rpb.LeadEvent(event_id=lead_id + "-1", kind="created", at_ms=t, lead_id=lead_id, registration_number=number, status="new", received_at_ms=t),
            rpb.LeadEvent(event_id=lead_id + "-2", kind="state_changed", at_ms=t + 1000, lead_id=lead_id, registration_number=number, status="accepted", owner_id="anna"),
        ]))
        rp.PutContractor(rpb.Contractor(id="krovlya", name="ООО «КровляСервис»", email="works@krovlya.test"))
        today = datetime.datetime.now(datetime.timezone.utc).date()
        deadline = (today + datetime.timedelta(days=20)).isoformat()
        plan = rp.CreatePlan(rpb.CreatePlanRequest(title="Кровля, декабрь", period_start=today.isoformat(), period_end=(today + datetime.timedelta(days=60)).isoformat(), lines=[
            rpb.PlanLine(registration_number=number, client="ТСЖ", object_address="ул. Ленина, 5", work_kind="ремонт кровли", volume="120", unit="м²", deadline=deadline, contractor_id="krovlya")]))
        for action in (rpb.PLAN_ACTION_SUBMIT, rpb.PLAN_ACTION_APPROVE_AS_HEAD, rpb.PLAN_ACTION_APPROVE_AS_MANAGEMENT, rpb.PLAN_ACTION_HAND_OVER):
            plan = rp.ActOnPlan(rpb.PlanActionRequest(plan_id=plan.id, action=action))
        stream = rp.FollowWorkPlans(rpb.ContractorRequest(contractor_id="krovlya"))
        first = next(stream)
        assert first.kind == "current"
        due = today.isoformat()
        req = rp.RequestProgress(rpb.RequestProgressRequest(plan_id=plan.id, contractor_id="krovlya", due_date=due, note="Нужны фото."))
        line_id = plan.lines[0].id
        assert list(req.line_ids) == [line_id]
        update = next(stream)
        assert update.kind == "progress_requested" and update.progress_request.id == req.id
        stream.cancel()
        msg = mailbox.wait(1)[0][1]
        assert msg["To"].addresses[0].username == "works"
        assert msg["Subject"].startswith("Запрос о ходе работ: %s" % plan.id)
        text = body(msg)
        assert text.startswith("Здравствуйте, ООО «КровляСервис»!") and "ул. Ленина, 5" in text and "Нужны фото." in text
        control = rp.ExecutionControl(rpb.ExecutionControlRequest())
        assert [r.id for r in control.open_requests] == [req.id] and not control.open_requests[0].overdue
        rp.Acknowledge(rpb.AcknowledgeRequest(contractor_id="krovlya", plan_id=plan.id, signer="Иванов"))
        rp.ReportProgress(rpb.ReportProgressRequest(contractor_id="krovlya", plan_id=plan.id, line_id=line_id, percent=30, note="Начали"))
        assert list(rp.ExecutionControl(rpb.ExecutionControlRequest()).open_requests) == []
        # A request past its due date shows as overdue: asked with today's date, it is not yet; the
        # store marks overdue strictly after the day (checked in Swift's tests with a fixed clock).
        with pytest.raises(grpc.RpcError) as e:
            rp.RequestProgress(rpb.RequestProgressRequest(plan_id=plan.id, contractor_id="krovlya", due_date="2020-01-01"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        ch.close()
    finally:
        assert report.stop() == 0


def test_a_sent_proposal_reaches_the_applicant_with_its_pdf_attached(whole_set, mailbox, tmp_path):
    """SEND queues an e-mail to the applicant; the mailer attaches the proposal's PDF, made when it
    goes out. The manager's contacts come from the lead's owner in routing's directory."""
    import subprocess
    from leadwire.catalog.v1 import catalog_pb2 as cpb
    from leadwire.catalog.v1 import catalog_pb2_grpc

    rt, it, _, intake = whole_set
    irina, _, role = directory(rt)
    catalog, ch = stub(intake, catalog_pb2_grpc.CatalogStub)
    try:
        csv = "Артикул;Наименование;Цена;Остаток\nHP1630;Дрель ударная Makita HP1630;4 990,00;12\n".encode()
        catalog.ImportPriceList(iter([
            cpb.ImportPriceListRequest(start=cpb.ImportStart(supplier="Альфа", file_name="a.csv", mapping=cpb.ColumnMapping(
                sku_column="Артикул", name_columns=["Наименование"], price_column="Цена", stock_column="Остаток"))),
            cpb.ImportPriceListRequest(data=csv)]))
        drill = catalog.SearchItems(cpb.SearchItemsRequest(query="HP1630")).hits[0].item
        source = it.CreateSource(pb.CreateSourceRequest(source=pb.Source(
            name="КП " + uuid.uuid4().hex[:4], channel=pb.CHANNEL_PHONE, enabled=True, default_role=role)))
        lead = it.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, subject="Инструмент", applicant=pb.Applicant(
            name="Анна Смирнова", email="anna@example.com", phone="+79123456789", company="ООО «Ромашка»", tax_id="7707083893"),
            order_lines=[pb.OrderLine(item_id=drill.id, quantity="3")])).lead
        assert lead.owner_id == irina.id
        # The applicant came by phone: her replies go by SMS (waiting for a gateway here), but a
        # document goes by e-mail.
        before = len(mailbox.to("anna@example.com"))
        assert before == 0
        p = catalog.CreateProposal(cpb.CreateProposalRequest(lead_id=lead.registration_number))
        assert p.manager.name == "Ирина Петрова" and p.manager.email == "irina@corp.test"
        assert [l.total for l in p.lines] == ["14970.00"]
        for action in (cpb.PROPOSAL_ACTION_APPROVE, cpb.PROPOSAL_ACTION_SEND):
            p = catalog.ActOnProposal(cpb.ActOnProposalRequest(id=p.id, action=action, actor="head"))
        assert "e-mailed to anna@example.com" in p.history[-1].note
        deadline = time.time() + 30
        while len(mailbox.to("anna@example.com")) <= before and time.time() < deadline:
            time.sleep(0.1)
        msg = [m for m in mailbox.to("anna@example.com") if p.number in m["Subject"]][0]
        assert "Коммерческое предложение" in msg["Subject"]
        text = body(msg)
        assert "14 970,00 ₽" in text and "Ирина Петрова" in text and lead.registration_number in text
        pdfs = [part for part in msg.iter_attachments() if part.get_content_type() == "application/pdf"]
        assert len(pdfs) == 1 and pdfs[0].get_filename() == "%s-v1.pdf" % p.number
        pdf = pdfs[0].get_content()
        assert pdf.startswith(b"%PDF-")
        path = tmp_path / "attached.pdf"
        path.write_bytes(pdf)
        extracted = " ".join(subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True).stdout.decode().split())
        assert "ООО «Ромашка»" in extracted and "7707083893" in extracted and "14 970,00" in extracted
    finally:
        ch.close()

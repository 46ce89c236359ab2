"""The catalogue and commercial proposals through grpcio, as a manager's tools would use them: two
supplier price lists in different layouts (a semicolon CSV in Windows-1251 whose name spans two
columns, an XLSX without SKUs, both made here), search, stock checked and reserved at acceptance,
and a proposal rendered to a PDF that poppler reads back."""
import io
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import grpc
import openpyxl
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest import ServerProcess
from leadwire.catalog.v1 import catalog_pb2 as cpb
from leadwire.catalog.v1 import catalog_pb2_grpc
from leadwire.intake.v1 import intake_pb2 as pb
from leadwire.intake.v1 import intake_pb2_grpc


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("catalog-data")
    s = ServerProcess("intake-service", ["--data-dir", str(data), "--auth", "off",
                                         "--seller-name", "ООО «Тепломонтаж»", "--seller-details", "ИНН 7701234567, Москва"])
    yield s
    assert s.alive(), "intake-service died during the tests"
    assert s.stop() == 0


@pytest.fixture(scope="module")
def stubs(server):
    ch = grpc.insecure_channel(server.address)
    grpc.channel_ready_future(ch).result(timeout=10)
    yield catalog_pb2_grpc.CatalogStub(ch), intake_pb2_grpc.IntakeStub(ch)
    ch.close()


def supplier():
    return "supplier-" + uuid.uuid4().hex[:8]


def chunks(start, data, size=1000):
    yield cpb.ImportPriceListRequest(start=start)
    for i in range(0, len(data), size):
        yield cpb.ImportPriceListRequest(data=data[i:i + size])


# Supplier A: a semicolon CSV as Russian Excel writes it (Windows-1251), a title line above the
# header, the name across two columns (kind + model) and the model also the SKU; prices with
# spaces and commas; two bad rows.
CSV_A = """Прайс-лист ООО «Альфа» на 30.11.2026;;;;
Наименование;Модель;Цена, руб.;Остаток;Ед.
Перфоратор;BOSCH GBH 2-26;12 345,50;5;шт
Дрель ударная;Makita HP1630;4 990,00;12;шт
Кабель ВВГнг 3х2,5;VVG-325;85,40;1 200;м
Шуруповёрт;DeWalt DCD777;abc;3;шт
;;100;1;шт
Смеситель для кухни;GROHE-32;7 450;0;шт
""".encode("cp1251")

MAPPING_A = cpb.ColumnMapping(header_row=2, sku_column="Модель", name_columns=["Наименование", "Модель"],
                              price_column="Цена, руб.", stock_column="Остаток", unit_column="Ед.")


def xlsx_b(rows):
    """Supplier B: an XLSX without SKUs (name, price, quantity), made with openpyxl."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Прайс"
    ws.append(["Товар", "Стоимость", "Кол-во на складе"])
    for r in rows:
        ws.append(list(r))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


ROWS_B = [("Радиатор биметаллический 10 секций", 8990.0, 7), ("Котёл газовый настенный", 45000, 2),
          ("Труба PPR 20 мм", 95.5, 300), ("", 10, 1), ("Кран шаровой 1/2", "дёшево", 40)]
MAPPING_B = cpb.ColumnMapping(name_columns=["A"], price_column="Стоимость", stock_column="C")


def test_two_layouts_import_into_one_catalogue_with_row_errors_and_reimport_is_a_no_op(stubs):
    catalog, _ = stubs
    a, b = supplier(), supplier()
    report = catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=a, file_name="alfa.csv", mapping=MAPPING_A), CSV_A))
    assert (report.rows, report.created, report.updated, report.unchanged, report.rejected) == (6, 4, 0, 0, 2)
    rejected = {r.row: r.reason for r in report.rejected_rows}
    assert set(rejected) == {6, 7}, rejected
    assert "abc" in rejected[6] and "price" in rejected[6]
    assert report.keyed_by_name == 0 and len(report.sha256) == 64

    data_b = xlsx_b(ROWS_B)
    rb = catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=b, file_name="beta.xlsx", mapping=MAPPING_B), data_b, 4096))
    assert (rb.created, rb.rejected, rb.keyed_by_name) == (3, 2, 3)
    reasons = {r.row: r.reason for r in rb.rejected_rows}
    assert set(reasons) == {5, 6} and "name" in reasons[5] and "дёшево" in reasons[6]

    # The same files again, with the stored mappings: nothing changes.
    again = catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=a, file_name="alfa.csv"), CSV_A))
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 4, 2)
    again_b = catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=b, file_name="beta.xlsx"), data_b))
    assert (again_b.created, again_b.updated, again_b.unchanged) == (0, 0, 3)

    # A changed price updates the item and adds to its history.
    hit = catalog.SearchItems(cpb.SearchItemsRequest(query="BOSCH GBH 2-26", supplier=a)).hits[0]
    assert hit.match == "sku" and hit.item.price == "12345.50" and hit.item.stock == "5"
    assert hit.item.name == "Перфоратор BOSCH GBH 2-26" and hit.item.unit == "шт"
    changed = CSV_A.replace("12 345,50".encode("cp1251"), "12 999,00".encode("cp1251"))
    upd = catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=a, file_name="alfa-2.csv"), changed))
    assert (upd.created, upd.updated, upd.unchanged) == (0, 1, 3)
    details = catalog.GetItem(cpb.GetItemRequest(id=hit.item.id))
    assert details.item.price == "12999.00"
    assert [p.price for p in details.history] == ["12999.00", "12345.50"]


def test_import_refusals(stubs):
    catalog, _ = stubs
    with pytest.raises(grpc.RpcError) as e:
        catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=supplier(), file_name="x.csv"), CSV_A))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "mapping" in e.value.details()
    bad = cpb.ColumnMapping(header_row=2, name_columns=["Название"], price_column="Цена, руб.")
    with pytest.raises(grpc.RpcError) as e:
        catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=supplier(), mapping=bad), CSV_A))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(e.value)
    br = error_details_pb2.BadRequest()
    assert any(d.Unpack(br) for d in status.details)
    assert br.field_violations[0].field == "mapping.name_columns[0]" and "Наименование" in br.field_violations[0].description
    with pytest.raises(grpc.RpcError) as e:
        catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=supplier(), file_name="x.xlsx", format=cpb.FILE_FORMAT_XLSX,
                                                       mapping=MAPPING_B), b"not a zip file at all"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "XLSX" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        catalog.ImportPriceList(iter([cpb.ImportPriceListRequest(data=b"a;b")]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "start" in e.value.details()


def test_search_by_sku_name_typo_and_cyrillic(stubs):
    catalog, _ = stubs
    s = supplier()
    catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=s, file_name="alfa.csv", mapping=MAPPING_A), CSV_A))
    by_sku = catalog.SearchItems(cpb.SearchItemsRequest(query="Makita HP1630", supplier=s))
    assert by_sku.hits[0].match == "sku" and by_sku.hits[0].item.name == "Дрель ударная Makita HP1630"
    # Cyrillic words, prefix of a word, any order.
    r = catalog.SearchItems(cpb.SearchItemsRequest(query="ударн дрель", supplier=s))
    assert [h.item.sku for h in r.hits] == ["Makita HP1630"] and r.hits[0].match == "name"
    # "ё" and "е" are the same letter; Latin words of a name.
    assert catalog.SearchItems(cpb.SearchItemsRequest(query="смеситель grohe", supplier=s)).hits[0].item.sku == "GROHE-32"
    # A typo: "перфаратор" finds "Перфоратор", with a suggestion.
    typo = catalog.SearchItems(cpb.SearchItemsRequest(query="перфаратор", supplier=s))
    assert typo.hits and typo.hits[0].item.sku == "BOSCH GBH 2-26" and typo.hits[0].match == "similar"
    assert typo.suggestion == "Перфоратор BOSCH GBH 2-26"
    assert catalog.SearchItems(cpb.SearchItemsRequest(query="makitta", supplier=s)).hits[0].item.sku == "Makita HP1630"
    assert not catalog.SearchItems(cpb.SearchItemsRequest(query="экскаватор", supplier=s)).hits
    with pytest.raises(grpc.RpcError) as e:
        catalog.SearchItems(cpb.SearchItemsRequest(query="  "))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def make_source(intake):
    return intake.CreateSource(pb.CreateSourceRequest(source=pb.Source(
        name="Catalogue orders " + uuid.uuid4().hex[:6], channel=pb.CHANNEL_WEB_FORM, enabled=True)))


def item_by_sku(catalog, s, sku):
    return catalog.SearchItems(cpb.SearchItemsRequest(query=sku, supplier=s)).hits[0].item


def test_acceptance_checks_and_reserves_stock(stubs):
    catalog, intake = stubs
    s = supplier()
    catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=s, file_name="alfa.csv", mapping=MAPPING_A), CSV_A))
    drill = item_by_sku(catalog, s, "Makita HP1630")      # 12 in stock
    mixer = item_by_sku(catalog, s, "GROHE-32")           # 0 in stock
    source = make_source(intake)

    def lead(*lines, email=None):
        return intake.SubmitLead(pb.SubmitLeadRequest(
            source_id=source.id, subject="Order", applicant=pb.Applicant(name="Пётр", email=email or "p%s@example.com" % uuid.uuid4().hex[:6]),
            order_lines=[pb.OrderLine(item_id=i, quantity=q) for i, q in lines])).lead

    first = lead((drill.id, "5"))
    # Code, name and price come from the catalogue.
    assert first.order_lines[0].product_code == "Makita HP1630" and first.order_lines[0].price == "4990.00"
    assert first.order_total == "24950.00"
    intake.AcceptLead(pb.AcceptLeadRequest(id=first.id, actor="manager"))
    assert catalog.GetItem(cpb.GetItemRequest(id=drill.id)).item.reserved == "5"

    # 5 held + 8 asked > 12, and the mixer has none: refused, each short line listed.
    second = lead((drill.id, "4"), (mixer.id, "1"), (drill.id, "4"))
    with pytest.raises(grpc.RpcError) as e:
        intake.AcceptLead(pb.AcceptLeadRequest(id=second.id, actor="manager"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    pf = error_details_pb2.PreconditionFailure()
    assert any(d.Unpack(pf) for d in rpc_status.from_call(e.value).details)
    assert sorted(v.subject for v in pf.violations) == ["order_lines[0]", "order_lines[1]", "order_lines[2]"]
    assert all(v.type == "STOCK_SHORT" for v in pf.violations)
    assert "available 7" in e.value.details() and "needs 8" in e.value.details()
    assert intake.GetLead(pb.GetLeadRequest(id=second.id)).lead.status == pb.LEAD_STATUS_NEW
    assert catalog.GetItem(cpb.GetItemRequest(id=drill.id)).item.reserved == "5"

    # Overridden with a reason: accepted, reserved anyway, the reason in the history.
    intake.AcceptLead(pb.AcceptLeadRequest(id=second.id, actor="head", stock_override_reason="supplier delivers Monday"))
    d = catalog.GetItem(cpb.GetItemRequest(id=drill.id)).item
    assert (d.reserved, d.available) == ("13", "-1")
    assert catalog.GetItem(cpb.GetItemRequest(id=mixer.id)).item.reserved == "1"
    history = intake.GetLead(pb.GetLeadRequest(id=second.id)).history
    assert any("supplier delivers Monday" in h.note for h in history if h.action == "accepted")

    # Rejecting the accepted lead gives its stock back; completing the first consumes it.
    intake.RejectLead(pb.RejectLeadRequest(id=second.id, actor="head", reason="client cancelled"))
    d = catalog.GetItem(cpb.GetItemRequest(id=drill.id)).item
    assert (d.stock, d.reserved, d.available) == ("12", "5", "7")
    assert catalog.GetItem(cpb.GetItemRequest(id=mixer.id)).item.reserved == "0"
    intake.CompleteLead(pb.CompleteLeadRequest(id=first.id, actor="manager", outcome=pb.OUTCOME_KIND_CUSTOMER_INTEREST, reference="deal-1"))
    d = catalog.GetItem(cpb.GetItemRequest(id=drill.id)).item
    assert (d.stock, d.reserved, d.available) == ("7", "0", "7")

    # An unknown item is refused at submission.
    with pytest.raises(grpc.RpcError) as e:
        lead(("item-999999", "1"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "order_lines[0].item_id" in str(rpc_status.from_call(e.value))


def pdf_text(pdf):
    d = tempfile.mkdtemp()
    try:
        path = os.path.join(d, "p.pdf")
        with open(path, "wb") as fh:
            fh.write(pdf)
        text = subprocess.run(["pdftotext", "-layout", path, "-"], check=True, capture_output=True).stdout.decode()
        subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", path, os.path.join(d, "page")], check=True)
        pages = [f for f in os.listdir(d) if f.endswith(".png")]
        assert pages, "pdftoppm rendered no page"
        with open(os.path.join(d, pages[0]), "rb") as fh:
            png = fh.read()
        assert png.startswith(b"\x89PNG") and len(png) > 2000
        return text
    finally:
        shutil.rmtree(d)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed (scripts/install-deps installs it)")
def test_proposal_for_a_lead_renders_a_pdf_with_client_lines_and_total(stubs):
    catalog, intake = stubs
    s = supplier()
    catalog.ImportPriceList(chunks(cpb.ImportStart(supplier=s, file_name="alfa.csv", mapping=MAPPING_A), CSV_A))
    drill = item_by_sku(catalog, s, "Makita HP1630")
    cable = item_by_sku(catalog, s, "VVG-325")
    source = make_source(intake)
    lead = intake.SubmitLead(pb.SubmitLeadRequest(
        source_id=source.id, subject="Материалы для ремонта",
        applicant=pb.Applicant(name="Анна Смирнова", email="anna-%s@example.com" % uuid.uuid4().hex[:6], company="ООО «Ромашка»",
                               tax_id="7707083893", address="г. Москва, ул. Тверская, д. 1"),
        order_lines=[pb.OrderLine(item_id=drill.id, quantity="2")])).lead
    p = catalog.CreateProposal(cpb.CreateProposalRequest(
        lead_id=lead.id, actor="sales",
        manager=cpb.Party(name="Игорь Ковалёв", phone="+7 495 123-45-67", email="igor@example.com"),
        lines=[cpb.ProposalLineInput(item_id=drill.id, quantity="2", discount_percent="10"),
               cpb.ProposalLineInput(item_id=cable.id, quantity="150", price="80.00", price_reason="оптовая цена"),
               cpb.ProposalLineInput(name="Монтаж и пусконаладка", unit="усл.", quantity="1", price="15000")]))
    assert p.number.startswith("КП-") and p.version == 1 and p.status == cpb.PROPOSAL_STATUS_DRAFT
    assert p.client.name == "ООО «Ромашка»" and p.client.tax_id == "7707083893" and "Тверская" in p.client.address
    # 2 × 4990 − 10% = 8982.00; 150 × 80 = 12000.00; 15000.00; total 35982.00, VAT 20/120 of it.
    assert [l.total for l in p.lines] == ["8982.00", "12000.00", "15000.00"]
    assert p.lines[1].catalogue_price == "85.40" and p.lines[1].price_reason == "оптовая цена"
    assert (p.total, p.vat, p.vat_rate) == ("35982.00", "5997.00", "20")
    # An edited price needs its reason.
    with pytest.raises(grpc.RpcError) as e:
        catalog.CreateProposal(cpb.CreateProposalRequest(lead_id=lead.id, lines=[cpb.ProposalLineInput(item_id=cable.id, quantity="1", price="1")]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "price_reason" in str(rpc_status.from_call(e.value))

    pieces = list(catalog.RenderProposal(cpb.RenderProposalRequest(id=p.id)))
    assert pieces[0].content_type == "application/pdf" and pieces[0].file_name.endswith(".pdf")
    pdf = b"".join(c.data for c in pieces)
    assert pdf.startswith(b"%PDF-") and len(pdf) == pieces[0].total_size
    text = " ".join(pdf_text(pdf).split())
    for expected in ["ООО «Ромашка»", "7707083893", "Тверская", "Дрель ударная Makita HP1630", "Кабель ВВГнг 3х2,5",
                     "Монтаж и пусконаладка", "35 982,00", "5 997,00", "Игорь Ковалёв", "ООО «Тепломонтаж»", p.number,
                     "Здравствуйте, Анна Смирнова!"]:
        assert expected in text, "%r not in the PDF's text:\n%s" % (expected, text)

    # Steps: draft -> approved -> sent -> accepted; a revision is a new version, the old superseded.
    with pytest.raises(grpc.RpcError) as e:
        catalog.ActOnProposal(cpb.ActOnProposalRequest(id=p.id, action=cpb.PROPOSAL_ACTION_SEND))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    v2 = catalog.ReviseProposal(cpb.ReviseProposalRequest(id=p.id, note="скидка на монтаж",
                                                          lines=[cpb.ProposalLineInput(item_id=drill.id, quantity="2")]))
    assert (v2.number, v2.version, v2.total) == (p.number, 2, "9980.00")
    assert catalog.GetProposal(cpb.GetProposalRequest(id=p.id)).status == cpb.PROPOSAL_STATUS_SUPERSEDED
    for action in (cpb.PROPOSAL_ACTION_APPROVE, cpb.PROPOSAL_ACTION_SEND, cpb.PROPOSAL_ACTION_ACCEPT):
        v2 = catalog.ActOnProposal(cpb.ActOnProposalRequest(id=v2.id, action=action, actor="head"))
    assert v2.status == cpb.PROPOSAL_STATUS_ACCEPTED and len(v2.history) == 4
    listed = catalog.ListProposals(cpb.ListProposalsRequest(lead_id=lead.id))
    assert [x.version for x in listed.proposals] == [2, 1]

    figures = catalog.ProposalFigures(cpb.ProposalFiguresRequest())
    accepted = [c for c in figures.by_status if c.status == cpb.PROPOSAL_STATUS_ACCEPTED]
    assert accepted and accepted[0].count >= 1
    assert any(m.manager == "Игорь Ковалёв" and m.accepted >= 1 for m in figures.by_manager)
    assert figures.leads_with_proposal >= 1


def test_leadctl_imports_searches_and_writes_the_pdf(stubs, server, tmp_path):
    from conftest import BIN_DIR

    _, intake = stubs

    def leadctl(*args):
        env = dict(os.environ)
        env.pop("LEADWIRE_TOKEN", None)
        r = subprocess.run([os.path.join(BIN_DIR, "leadctl"), *args, "--intake", server.address], capture_output=True, text=True,
                           timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout

    s = supplier()
    xlsx = tmp_path / "beta.xlsx"
    xlsx.write_bytes(xlsx_b(ROWS_B))
    out = leadctl("catalog", "import", str(xlsx), "--supplier", s, "--name", "Товар", "--price", "Стоимость", "--stock", "C")
    assert "3 new" in out and "2 refused" in out and "row 5:" in out and "keyed by their name" in out, out
    # The mapping was kept: the same file again needs no columns, and changes nothing.
    assert "3 unchanged" in leadctl("catalog", "import", str(xlsx), "--supplier", s)
    found = leadctl("catalog", "search", "радиатор", "биметал", "--supplier", s, "--csv")
    item = re.search(r"(item-\d+),", found).group(1)
    assert "Радиатор биметаллический 10 секций" in found
    shown = leadctl("catalog", "show", item)
    assert "8990.00 RUB" in shown and "stock 7" in shown and "keyed by name" in shown

    source = make_source(intake)
    lead = intake.SubmitLead(pb.SubmitLeadRequest(source_id=source.id, subject="Отопление", applicant=pb.Applicant(
        name="Олег", email="oleg-%s@example.com" % uuid.uuid4().hex[:6], company="ИП Олегов", tax_id="500100732259"))).lead
    created = leadctl("proposal", "create", lead.registration_number, "--item", item + ":3", "--line", "Доставка:1:1500")
    pid = re.search(r"(proposal-\d+)", created).group(1)
    assert "28470.00 RUB" in created, created
    pdf = tmp_path / "offer.pdf"
    assert "bytes" in leadctl("proposal", "pdf", pid, "-o", str(pdf))
    text = " ".join(pdf_text(pdf.read_bytes()).split())
    assert "ИП Олегов" in text and "500100732259" in text and "28 470,00" in text and "Доставка" in text

    figures = leadctl("proposal", "figures", "--period", "day")
    assert "draft" in figures and "leads with a proposal:" in figures, figures

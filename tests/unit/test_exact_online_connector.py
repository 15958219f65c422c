"""The Exact Online connector: OData plumbing, errors, wire format, webhooks, pacing (pure or
against recorded-shape fixtures through httpx.MockTransport)."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from connectors import exact_online as eo
from connectors.auth import MemoryTokenStore, TokenSet
from connectors.documents import DocumentLine, DocumentTax, ErpDocument
from connectors.errors import MappingMissing, RateLimited, Rejected, Unavailable

FIXTURES = Path(__file__).parent.parent / "fixtures" / "exact_online"
BASE = "https://start.exactonline.nl"
CREDS = {"client_id": "6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", "client_secret": "app-secret-1"}
WEBHOOK_SECRET = "webhook-secret-from-app-center"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fresh_tokens() -> TokenSet:
    return TokenSet(access_token="access-1", refresh_token="refresh-1",
                    expires_at=datetime.now(timezone.utc) + timedelta(seconds=500))


class Recorder:
    """A fake Exact host answering from fixtures; keeps every request."""

    def __init__(self, routes: dict[tuple[str, str], list[httpx.Response] | httpx.Response]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        answer = self.routes.get(key)
        if isinstance(answer, list):
            answer = answer.pop(0)
        if answer is None:
            return httpx.Response(404, content=fixture("error_wrong_division.json"))
        return answer


def ok(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=fixture(name),
                          headers={"Content-Type": "application/json", **headers})


def erp_with(recorder: Recorder, settings: dict | None = None, changes: list | None = None):
    return eo.open_connector({"region": "NL", **(settings or {})}, CREDS,
                             tokens=MemoryTokenStore(fresh_tokens()),
                             transport=httpx.MockTransport(recorder),
                             on_settings_change=(changes.append if changes is not None else None))


# --- OData ------------------------------------------------------------------------------------

def test_literals():
    assert eo.guid_literal("3FA85F64-5717-4562-B3FC-2C963F66AFA6") == \
        "guid'3fa85f64-5717-4562-b3fc-2c963f66afa6'"
    cet = timezone(timedelta(hours=2))
    assert eo.datetime_literal(datetime(2024, 5, 1, 12, 0, tzinfo=cet)) == \
        "datetime'2024-05-01T10:00:00.000'"
    assert eo.string_literal("O'Brien") == "'O''Brien'"
    assert eo.account_code(25) == " " * 16 + "25" and len(eo.account_code("25")) == 18
    url = eo.with_query("/x", {"$filter": "Code eq '  25'", "$select": "ID,Code"})
    assert url == "/x?$filter=Code%20eq%20'%20%2025'&$select=ID,Code"


def test_envelope_results_single_and_missing():
    assert [r["CurrentDivision"] for r in eo.results(json.loads(fixture("me.json")))] == [654321]
    assert eo.results({"d": {"InvoiceID": "x"}}) == [{"InvoiceID": "x"}]
    assert eo.next_link(json.loads(fixture("items_page2.json"))) is None
    with pytest.raises(Unavailable):
        eo.results({"value": []})


def test_dates():
    assert eo.parse_date("/Date(1714557600000)/") == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert eo.odata_date(date(2024, 5, 1)) == "/Date(1714521600000)/"


def test_error_message_verbatim():
    resp = httpx.Response(400, content=fixture("error_vat_code.json"),
                          request=httpx.Request("POST", BASE + "/api/v1/1/salesinvoice/SalesInvoices"))
    message, _ = eo.read_error(resp)
    assert message == "SalesInvoiceLines[0].VATCode: VAT code 99 does not exist.\r\nThe invoice was not saved."


async def test_paging_follows_next_and_division_is_discovered():
    rec = Recorder({("GET", "/api/v1/current/Me"): ok("me.json"),
                    ("GET", "/api/v1/654321/logistics/Items"): [ok("items_page1.json"),
                                                                 ok("items_page2.json")]})
    changes: list = []
    erp = erp_with(rec, changes=changes)
    try:
        items = [c async for c in erp.iter_item_changes(datetime(2024, 5, 1, tzinfo=timezone.utc))]
    finally:
        await erp.aclose()
    assert [i.sku for i in items] == ["HOODIE-M", "SHIPPING", "CAP-RED"]
    assert items[0].price == D("39.95") and items[0].cost == D("12.5") and items[0].quantity_available == D(7)
    assert items[1].price is None and items[2].modified_at == datetime(2024, 5, 1, 11, tzinfo=timezone.utc)
    assert changes == [{"division": 654321}]
    first, second = rec.requests[1], rec.requests[2]
    assert "$select=" in str(first.url) and "datetime'2024-05-01T00:00:00.000'" in first.url.params["$filter"]
    assert second.url.params["$skiptoken"] == "guid'22222222-2222-4222-8222-222222222222'"
    assert all(r.headers["Authorization"] == "Bearer access-1" for r in rec.requests)


async def test_error_is_typed_with_exacts_own_words():
    rec = Recorder({("GET", "/api/v1/7/salesinvoice/SalesInvoices"):
                    ok("error_wrong_division.json", 403)})
    erp = erp_with(rec, {"division": 7})
    try:
        with pytest.raises(Exception) as err:
            await erp.find_document("invoice", "WC-1")
    finally:
        await erp.aclose()
    assert err.value.kind == "AuthFailed" and "Forbidden - WrongDivision" in str(err.value)


async def test_maintenance_page_is_unavailable():
    rec = Recorder({("GET", "/api/v1/7/salesinvoice/SalesInvoices"): httpx.Response(
        200, content=b"<html>Onderhoud</html>", headers={"Content-Type": "text/html"})})
    erp = erp_with(rec, {"division": 7})
    try:
        with pytest.raises(Unavailable):
            await erp.find_document("invoice", "WC-1")
    finally:
        await erp.aclose()


# --- documents ------------------------------------------------------------------------------

def invoice_doc(**over) -> ErpDocument:
    doc = ErpDocument(
        kind="invoice", external_ref="WC-1001", order_number="1001", store_order_id="1001",
        currency="EUR", date=date(2026, 3, 1), customer_key="77777777-7777-4777-8777-777777777777",
        description="woocommerce order 1001",
        lines=[DocumentLine(item_id="HOODIE-M", sku="HOODIE-M", quantity=D(3), unit_price=D("33.333333"),
                            discount=D("10.00"), amount=D("90.00"), tax=D("18.90"), tax_code="2",
                            gl_account="8000", cost_center="WEB"),
               DocumentLine(item_id="SHIPPING", kind="shipping", quantity=D(1), unit_price=D("5.00"),
                            amount=D("5.00"), tax=D("1.05"), tax_code="2", gl_account="8100")],
        taxes=[DocumentTax(tax_code="2", taxable_amount=D("95.00"), amount=D("19.96"))])
    return doc.model_copy(update=over)


async def test_invoice_wire_format():
    rec = Recorder({("GET", "/api/v1/654321/logistics/Items"): ok("items_by_code.json"),
                    ("GET", "/api/v1/654321/financial/GLAccounts"): ok("gl_accounts.json"),
                    ("POST", "/api/v1/654321/salesinvoice/SalesInvoices"): ok("invoice_created.json", 201)})
    erp = erp_with(rec, {"division": 654321, "sales_journal": "70"})
    try:
        ref = await erp.create_document(invoice_doc())
    finally:
        await erp.aclose()
    post = rec.requests[-1]
    body = json.loads(post.content, parse_float=D)
    assert post.headers["Content-Type"] == "application/json"
    assert {k: body[k] for k in ("Type", "OrderedBy", "Journal", "YourRef", "Currency")} == {
        "Type": 8020, "OrderedBy": "77777777-7777-4777-8777-777777777777", "Journal": "70",
        "YourRef": "WC-1001", "Currency": "EUR"}
    assert body["OrderDate"] == "/Date(1772323200000)/"
    first, shipping = body["SalesInvoiceLines"]
    assert first == {"Item": "11111111-1111-4111-8111-111111111111", "Quantity": D(3),
                     "NetPrice": D("30.000000"), "AmountFC": D("90.00"),
                     "GLAccount": "44444444-4444-4444-8444-444444444444", "Description": "HOODIE-M",
                     "VATCode": "2", "VATAmountFC": D("18.91"), "CostCenter": "WEB"}
    assert shipping["VATAmountFC"] == D("1.05") and "CostCenter" not in shipping
    assert b'"AmountFC":90.00' in post.content  # exact decimals on the wire, never floats
    assert (ref.number, ref.id, ref.total, ref.doc_type) == (
        "26000017", "66666666-6666-4666-8666-666666666666", D("114.96"), "Sales invoice")


def odata(*rows: dict) -> httpx.Response:
    return httpx.Response(200, json={"d": {"results": list(rows)}})


async def test_guest_account_code_is_looked_up_once_and_an_unknown_one_is_a_mapping():
    guests = "99999999-9999-4999-8999-999999999999"
    rec = Recorder({("GET", "/api/v1/654321/logistics/Items"): ok("items_by_code.json"),
                    ("GET", "/api/v1/654321/financial/GLAccounts"): ok("gl_accounts.json"),
                    ("GET", "/api/v1/654321/crm/Accounts"): [odata({"ID": guests, "Code": eo.account_code("4000")}), odata()]})
    erp = erp_with(rec, {"division": 654321})
    try:
        for _ in range(2):
            record = await erp._document_record(invoice_doc(customer_key="4000"))
            assert record["OrderedBy"] == guests
        with pytest.raises(MappingMissing, match="no account with code 4001"):
            await erp._document_record(invoice_doc(customer_key="4001"))
    finally:
        await erp.aclose()
    lookups = [r for r in rec.requests if r.url.path.endswith("crm/Accounts")]
    assert len(lookups) == 2  # 4000 once (then cached), 4001 once
    assert "Code eq '              4000'" in str(lookups[0].url.params["$filter"])


async def test_credit_note_is_type_8021_with_negative_lines():
    rec = Recorder({("GET", "/api/v1/654321/logistics/Items"): ok("items_by_code.json"),
                    ("GET", "/api/v1/654321/financial/GLAccounts"): ok("gl_accounts.json")})
    erp = erp_with(rec, {"division": 654321})
    try:
        record = await erp._document_record(invoice_doc(kind="credit_memo", external_ref="WC-1001-R5"))
    finally:
        await erp.aclose()
    assert record["Type"] == 8021 and record["YourRef"] == "WC-1001-R5"
    line = record["SalesInvoiceLines"][0]
    assert (line["Quantity"], line["AmountFC"], line["VATAmountFC"]) == (D(-3), D("-90.00"), D("-18.91"))


async def test_line_without_gl_rule_is_a_mapping_to_add():
    doc = invoice_doc()
    doc.lines[0].gl_account = ""
    erp = erp_with(Recorder({}), {"division": 654321})
    try:
        with pytest.raises(MappingMissing) as err:
            await erp.create_document(doc)
    finally:
        await erp.aclose()
    assert "HOODIE-M" in str(err.value) and "Resolution" in str(err.value) and "Exact Online" in str(err.value)


async def test_unknown_gl_code_and_item_are_mappings():
    rec = Recorder({("GET", "/api/v1/654321/logistics/Items"): ok("items_by_code.json"),
                    ("GET", "/api/v1/654321/financial/GLAccounts"): ok("gl_accounts.json")})
    erp = erp_with(rec, {"division": 654321})
    doc = invoice_doc()
    doc.lines[1].gl_account = "9999"
    try:
        with pytest.raises(MappingMissing, match="G/L account 9999"):
            await erp.create_document(doc)
        doc = invoice_doc()
        doc.lines[0].item_id = doc.lines[0].sku = "NOPE-1"
        with pytest.raises(MappingMissing, match="SKU NOPE-1"):
            await erp.create_document(doc)
    finally:
        await erp.aclose()


def test_refused_vat_code_names_the_mapping():
    exc = Rejected("HTTP 400 on POST x: SalesInvoiceLines[0].VATCode: VAT code 99 does not exist.")
    assert isinstance(eo.mapping_error(exc), MappingMissing)
    assert type(eo.mapping_error(Rejected("private label"))) is Rejected


def test_vat_per_line_adds_up_to_the_stores_tax_per_code():
    doc = invoice_doc()
    assert eo.line_vat(doc) == [D("18.91"), D("1.05")]  # remainder on the largest line
    doc.taxes.append(DocumentTax(tax_code="9", taxable_amount=D(0), amount=D("0.40")))
    assert eo.orphan_vat(doc) == [("9", D("0.40"))]


def test_your_ref_must_fit_whole():
    assert eo.your_ref_for("WC-123-A1") == "WC-123-A1"
    with pytest.raises(Rejected, match="longer than the 30"):
        eo.your_ref_for("WOOCOMMERCE-STORE-EU-1234567-R99")


def test_settings_refuse_an_early_refresh_margin_and_unknown_region():
    assert eo.ExactSettings().refresh_margin_seconds <= eo.MAX_REFRESH_MARGIN == 30
    with pytest.raises(ValueError):
        eo.ExactSettings(refresh_margin_seconds=60)
    with pytest.raises(ValueError):
        eo.ExactSettings(region="IT")
    assert eo.ExactSettings(region="uk").host == "https://start.exactonline.co.uk"
    assert eo.ExactSettings(region="US", base_url="https://127.0.0.1:9/").host == "https://127.0.0.1:9"
    assert set(eo.REGIONS) == {"NL", "BE", "UK", "DE", "FR", "ES", "US"}


# --- webhooks ---------------------------------------------------------------------------------

def test_webhook_hashcode_over_the_raw_content():
    body = fixture("webhook_items_update.txt")
    assert eo.verify_webhook({}, body, WEBHOOK_SECRET)
    assert not eo.verify_webhook({}, body, "another-secret")
    assert not eo.verify_webhook({}, body.replace(b'"Update"', b'"Delete"'), WEBHOOK_SECRET)
    hashed = json.loads(body)["HashCode"]
    assert not eo.verify_webhook({}, body.replace(hashed.encode(), hashed.lower().encode()), WEBHOOK_SECRET)
    reserialized = json.dumps(json.loads(body)).encode()  # spaces: not the bytes Exact signed
    assert not eo.verify_webhook({}, reserialized, WEBHOOK_SECRET)
    event = eo.parse_webhook({}, body)
    assert (event.topic, event.event, event.resource_id) == (
        "Items", "update", "11111111-1111-4111-8111-111111111111")


def test_webhook_validation_call_is_a_ping():
    assert eo.is_ping({}, b"") and eo.parse_webhook({}, b"") is None
    assert not eo.verify_webhook({}, b"", WEBHOOK_SECRET)
    with pytest.raises(ValueError):
        eo.parse_webhook({}, b'{"nope": 1}')


# --- pacing -----------------------------------------------------------------------------------

class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(minutely: int, reset_in: float, clock: Clock, daily: int = 4000) -> httpx.Response:
    reset = str(int((clock.now + reset_in) * 1000))
    return httpx.Response(200, headers={
        "X-RateLimit-Minutely-Remaining": str(minutely), "X-RateLimit-Minutely-Reset": reset,
        "X-RateLimit-Remaining": str(daily), "X-RateLimit-Reset": str(int((clock.now + 3600) * 1000))})


async def test_pacer_slows_before_the_minute_runs_out():
    clock = Clock()
    pacer = eo.rate_pacer(reserve=1, slow_below=10, clock=clock)
    assert pacer.delay() == 0
    pacer.observe(headers(30, 40, clock))
    assert pacer.delay() == 0
    pacer.observe(headers(5, 40, clock))
    assert pacer.delay() == pytest.approx(8.0)  # the 40 s left spread over 5 calls
    pacer.observe(headers(1, 40, clock))
    assert pacer.delay() == pytest.approx(40.0)  # the reserve: wait for the reset
    clock.now += 41
    assert pacer.delay() == 0


async def test_pacer_daily_quota_and_429_reset():
    clock = Clock()
    pacer = eo.rate_pacer(clock=clock)
    pacer.observe(headers(50, 20, clock, daily=0))
    with pytest.raises(RateLimited) as err:
        pacer.delay()
    assert err.value.retry_after == pytest.approx(3600)
    assert pacer.retry_after(30) == pytest.approx(3600)
    pacer = eo.rate_pacer(clock=clock)
    pacer.observe(httpx.Response(429, headers={
        "X-RateLimit-Minutely-Remaining": "0",
        "X-RateLimit-Minutely-Reset": str(int((clock.now + 12) * 1000))}))
    assert pacer.retry_after(30) == pytest.approx(12)

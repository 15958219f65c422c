"""The Oracle Fusion connector against recorded-shape responses: wire format, error mapping,
customer matching order, GL rules and reference-data validation; and customer updates against
the simulator through the ASGI transport."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.auth import MemoryTokenStore
from connectors.documents import DocumentLine, DocumentTax, ErpDocument, ReceiptDocument
from connectors.errors import AuthFailed, MappingMissing, RateLimited, Rejected, Unavailable
from connectors.model import Address, Customer, ErpDocumentRef
from connectors import oracle_fusion as oracle
from connectors.oracle_fusion import allocate_taxes, open_connector, read_error

FIXTURES = Path(__file__).parents[1] / "fixtures" / "oracle_fusion"
BASE = "https://pod.fa.ocs.oraclecloud.com"
SETTINGS = {"instance_url": BASE, "business_unit": "Vision Operations",
            "account_template": "01-{cost_center}-{account}-000-000", "default_cost_center": "000"}
CREDENTIALS = {"username": "integration.user", "password": "Welcome1"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Recorder:
    """A MockTransport whose answers are chosen by (method, resource) and which keeps every
    request it saw."""

    def __init__(self, answers: dict[tuple[str, str], list[httpx.Response] | httpx.Response]):
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        resource = path.split("/resources/11.13.18.05/")[-1].split("/")[0] if "/resources/" in path else path
        answer = self.answers.get((request.method, resource))
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if answer is None:
            return httpx.Response(200, content=fixture("empty_collection.json"))
        return answer

    def queries(self, resource: str) -> list[str]:
        return [parse_qs(urlsplit(str(r.url)).query)["q"][0] for r in self.requests
                if resource in r.url.path and r.method == "GET" and "q=" in str(r.url)]

    def patches(self) -> list[tuple[str, dict]]:
        return [(r.url.path.split("/resources/11.13.18.05/")[-1], json.loads(r.content))
                for r in self.requests if r.method == "PATCH"]

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


def erp(recorder: Recorder, **settings):
    return open_connector({**SETTINGS, **settings}, CREDENTIALS, tokens=MemoryTokenStore(),
                          transport=httpx.MockTransport(recorder))


def invoice(**changes) -> ErpDocument:
    doc = ErpDocument(
        kind="invoice", external_ref="WC-1001", order_number="1001", store_order_id="1001",
        currency="EUR", date=date(2026, 3, 1), customer_key="10001", description="order 1001",
        lines=[DocumentLine(item_id="HOODIE-M", sku="HOODIE-M", description="Hoodie M",
                            quantity=D(3), unit_price=D("33.333333"), discount=D("10.00"),
                            amount=D("90.00"), tax=D("7.42"), tax_code="CA-STD",
                            gl_account="4000", cost_center="100"),
               DocumentLine(item_id="SHIPPING", kind="shipping", description="Shipping",
                            quantity=D(1), unit_price=D("5.00"), amount=D("5.00"), tax=D("0.41"),
                            tax_code="CA-STD", gl_account="4000", cost_center="100")],
        taxes=[DocumentTax(tax_code="CA-STD", taxable_amount=D("95.00"), amount=D("7.84"))])
    return doc.model_copy(update=changes)


def combos_ok() -> httpx.Response:
    return httpx.Response(200, content=fixture("account_combinations.json"))


async def test_invoice_wire_format_with_tax_lines_and_distributions():
    rec = Recorder({("GET", "accountCombinationsLOV"): combos_ok(),
                    ("POST", "receivablesInvoices"): httpx.Response(
                        201, content=fixture("invoice_created.json"))})
    connector = erp(rec)
    ref = await connector.create_document(invoice())
    await connector.aclose()
    [post] = rec.posts()
    assert post.url.path == "/fscmRestApi/resources/11.13.18.05/receivablesInvoices"
    assert post.headers["REST-Framework-Version"] == "4"
    assert post.headers["Content-Type"] == "application/vnd.oracle.adf.resourceitem+json"
    assert post.headers["Authorization"].startswith("Basic ")
    raw = post.content.decode()
    assert '"LineAmount":90.00' in raw and '"TaxAmount":7.43' in raw  # exact, never floats
    body = json.loads(raw, parse_float=D)
    assert {k: body[k] for k in ("BusinessUnit", "TransactionSource", "TransactionType",
                                 "TransactionNumber", "TransactionDate", "BillToCustomerNumber",
                                 "InvoiceCurrencyCode", "AllowCompletion")} == {
        "BusinessUnit": "Vision Operations", "TransactionSource": "Manual",
        "TransactionType": "Invoice", "TransactionNumber": "WC-1001",
        "TransactionDate": "2026-03-01", "BillToCustomerNumber": "10001",
        "InvoiceCurrencyCode": "EUR", "AllowCompletion": "Y"}
    first, shipping = body["receivablesInvoiceLines"]
    # no discount field on Oracle lines: the net amount with a unit price that multiplies back
    assert (first["Quantity"], first["UnitSellingPrice"], first["LineAmount"]) == (
        D(3), D("30.000000"), D("90.00"))
    assert first["ItemNumber"] == "HOODIE-M" and first["TaxClassificationCode"] == "CA-STD"
    # the store's 7.84: 7.42 + 0.41 per line, the cent of rounding on the largest line
    assert first["receivablesInvoiceLineTaxLines"] == [{"TaxRateCode": "CA-STD",
                                                        "TaxAmount": D("7.43")}]
    assert shipping["receivablesInvoiceLineTaxLines"][0]["TaxAmount"] == D("0.41")
    assert body["receivablesInvoiceDistributions"] == [
        {"InvoiceLineNumber": 1, "AccountClass": "Revenue",
         "AccountCombination": "01-100-4000-000-000", "Percent": 100},
        {"InvoiceLineNumber": 2, "AccountClass": "Revenue",
         "AccountCombination": "01-100-4000-000-000", "Percent": 100}]
    assert (ref.number, ref.id, ref.total, ref.currency) == (
        "WC-1001", "300100184722046", D("102.84"), "EUR")


def test_credit_memo_body_is_negative_with_its_own_field_names():
    connector = erp(Recorder({}))
    memo = invoice(kind="credit_memo", external_ref="WC-1001-R7",
                   applies_to=ErpDocumentRef(system="oracle_fusion", kind="invoice",
                                             number="WC-1001", id="300100184722046"))
    body = connector._memo_body(memo, {1: "01-100-4000-000-000", 2: "01-100-4000-000-000"})
    line = body["receivablesCreditMemoLines"][0]
    assert body["CreditMemoCurrency"] == "EUR" and "InvoiceCurrencyCode" not in body
    assert (line["LineDescription"], line["LineQuantityCredit"], line["UnitSellingPrice"],
            line["LineAmountCredit"]) == ("Hoodie M (discount 10.00)", D(3), D("-30.000000"),
                                          D("-90.00"))
    assert line["receivablesCreditMemoLineTaxLines"][0]["TaxAmount"] == D("-7.43")
    assert body["receivablesCreditMemoDistributions"][0]["CreditMemoLineNumber"] == 1
    assert body["CreditMemoComments"].endswith("[invoice WC-1001 id 300100184722046]")


def test_taxes_without_a_line_of_their_code_sit_on_the_first_line():
    doc = invoice(lines=[DocumentLine(item_id="ADJUSTMENT", kind="adjustment", quantity=D(1),
                                      unit_price=D("10.00"), amount=D("10.00"),
                                      gl_account="4300")],
                  taxes=[DocumentTax(tax_code="CA-STD", taxable_amount=D(0), amount=D("0.83"))])
    assert allocate_taxes(doc) == {1: {"CA-STD": D("0.83")}}


def test_read_error_takes_oracle_text_in_both_framework_shapes():
    request = httpx.Request("POST", f"{BASE}/fscmRestApi/resources/11.13.18.05/receivablesInvoices")
    v4 = httpx.Response(400, content=fixture("error_v4_unknown_item.json"), request=request)
    message, fields = read_error(v4)
    assert message == "AR_INVALID_INVENTORY_ITEM: The item NOPE-1 isn't valid."
    assert fields == {"receivablesInvoices/receivablesInvoiceLines/0/ItemNumber":
                      "The item NOPE-1 isn't valid."}
    v1 = httpx.Response(400, text="Invalid operation create for the specified resource.",
                        request=request)
    assert read_error(v1) == ("Invalid operation create for the specified resource.", {})


@pytest.mark.parametrize("response, error", [
    (httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "7"}), RateLimited),
    (httpx.Response(401, text="Unauthorized"), AuthFailed),  # Basic: wrong user, not expiry
    (httpx.Response(503, text="Service Unavailable"), Unavailable),
    (httpx.Response(400, text="AR-856749 The transaction date isn't valid."), Rejected),
])
async def test_statuses_become_typed_errors(response, error):
    connector = erp(Recorder({("GET", "receivablesInvoices"): response}))
    with pytest.raises(error) as caught:
        await connector.find_document("invoice", "WC-1001")
    await connector.aclose()
    assert response.text in str(caught.value)
    assert "Welcome1" not in str(caught.value)
    if error is RateLimited:
        assert caught.value.retry_after == 7


async def test_unknown_item_is_a_mapping_to_add():
    rec = Recorder({("GET", "accountCombinationsLOV"): combos_ok(),
                    ("POST", "receivablesInvoices"): httpx.Response(
                        400, content=fixture("error_v4_unknown_item.json"))})
    doc = invoice()
    doc.lines[0].item_id = doc.lines[0].sku = "NOPE-1"
    with pytest.raises(MappingMissing) as caught:
        await erp(rec).create_document(doc)
    assert "SKU NOPE-1" in str(caught.value) and "Resolution:" in str(caught.value)


async def test_soap_fault_is_rejected_with_oracle_text():
    rec = Recorder({("POST", "/crmService/CustomerAccountService"): httpx.Response(
        500, content=fixture("soap_fault.xml"), headers={"Content-Type": "text/xml"})})
    party = {"PartyId": 300100011, "PartyNumber": "CDRM_300100011", "OrganizationName": "Ann",
             "PrimaryAddress": [{"AddressId": 42}]}
    with pytest.raises(Rejected) as caught:
        await erp(rec)._create_account(party, Customer(email="ann@example.com"))
    assert "doesn't belong to party" in str(caught.value)
    assert not isinstance(caught.value, Unavailable)


async def test_a_party_the_merchant_made_is_never_written_to_against_the_sandbox():
    """Through the simulator (ASGI): parties with the buyer's name or e-mail (in another case)
    are not ours. "own" creates ours beside them; "email" books to the one that already is a
    customer, untouched, and never makes a prospect one."""
    from sandbox import oracle_fusion as sandbox

    app = sandbox.create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as control:
        await control.post("/_sandbox/customers", json=[
            {"name": "Ann Buyer", "email": "", "phone": "555-0001"},
            {"name": "Prospect Ann", "email": "ANN@example.com", "account": False}])
        before = (await control.get("/_sandbox/parties")).json()
        connector = open_connector({**SETTINGS}, CREDENTIALS, tokens=MemoryTokenStore(),
                                   transport=transport)
        ann = Customer(store_id="5", email="ann@example.com", first_name="Ann", last_name="Buyer",
                       billing=Address(line1="1 Main St", city="Oakland", country="US"))
        prospect = await connector.upsert_customer(ann, "WC-C5", match="email")
        assert prospect.created  # the prospect stays one: ours is made
        await control.post("/_sandbox/customers", json=[
            {"name": "ACME", "email": "Pat@ACME.example"}])
        [acme] = [a for a in (await control.get("/_sandbox/customers")).json()
                  if a["CustomerName"] == "ACME"]
        pat = ann.model_copy(update={"store_id": "6", "email": "pat@acme.example"})
        linked = await connector.upsert_customer(pat, "WC-C6", match="email")
        own = await connector.upsert_customer(pat, "WC-C7")
        assert (linked.number, linked.created) == (acme["AccountNumber"], False)
        assert own.created and own.number != linked.number
        after = {p["PartyNumber"]: p for p in (await control.get("/_sandbox/parties")).json()}
        assert all(after[p["PartyNumber"]] == p for p in before)
        assert app.state.oracle.stats["by_route"].get("PATCH accounts", 0) == 0
        await connector.aclose()


def party(number: int, **fields) -> dict:
    return {"PartyId": number, "PartyNumber": f"CDRM_{number}", "OrganizationName": "Ann Buyer",
            "EmailAddress": None, "SourceSystem": None, "SourceSystemReferenceValue": None, **fields}


def test_only_a_party_with_our_source_reference_is_ours():
    rows = [party(1), party(2, EmailAddress="Ann@Example.com"),
            party(3, SourceSystem="OTHER", SourceSystemReferenceValue="WC-C5", OrganizationName="X"),
            party(4, SourceSystem="WEBSTORE", SourceSystemReferenceValue="WC-GABC"),
            party(5, SourceSystem="WEBSTORE", SourceSystemReferenceValue="WC-C5")]
    def ours(rows: list[dict]) -> int | None:
        found = oracle.owned_party(rows, "WEBSTORE", ["WC-C5", "WC-GABC"])
        return found["PartyId"] if found else None
    assert (ours(rows), ours(rows[:4]), ours(rows[:3])) == (5, 4, None)
    assert [p["PartyId"] for p in oracle.parties_by_email(rows, "ann@example.COM")] == [2]
    assert oracle.q_ours_or_email("WEBSTORE", ["WC-C5"], "o'b@x.com") == (
        "(SourceSystem='WEBSTORE' and (SourceSystemReferenceValue='WC-C5')) or "
        "UPPER(EmailAddress)='O''B@X.COM'")


async def test_a_full_page_of_email_matches_asks_for_ours_on_its_own():
    page = {"items": [party(n, EmailAddress="ann@example.com") for n in range(25)],
            "count": 25, "hasMore": True}
    ours = {"items": [party(99, SourceSystem="WEBSTORE", SourceSystemReferenceValue="WC-C5")],
            "count": 1, "hasMore": False}
    rec = Recorder({("GET", "accounts"): [httpx.Response(200, json=page),
                                          httpx.Response(200, json=ours)]})
    rows = await erp(rec)._candidate_parties(["WC-C5"], "ann@example.com")
    assert oracle.owned_party(rows, "WEBSTORE", ["WC-C5"])["PartyId"] == 99
    assert rec.queries("accounts")[1:] == [
        "SourceSystem='WEBSTORE' and (SourceSystemReferenceValue='WC-C5')"]


async def test_line_without_gl_rule_parks_before_any_request():
    rec = Recorder({})
    doc = invoice()
    doc.lines[1].gl_account = ""
    with pytest.raises(MappingMissing) as caught:
        await erp(rec).create_document(doc)
    assert "Resolution:" in str(caught.value) and "Oracle Fusion GL rule" in str(caught.value)
    assert rec.requests == []


async def test_unknown_cost_center_is_named_before_any_write_and_lookups_are_cached():
    def lov(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)["q"][0]
        known = "Segment2='999'" not in q  # the cost centre 999 does not exist
        return combos_ok() if known else httpx.Response(200, content=fixture("empty_collection.json"))

    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if "accountCombinationsLOV" in request.url.path:
            return lov(request)
        return httpx.Response(201, content=fixture("invoice_created.json"))

    connector = open_connector(SETTINGS, CREDENTIALS, tokens=MemoryTokenStore(),
                               transport=httpx.MockTransport(handler))
    doc = invoice()
    doc.lines[1].cost_center = "999"
    with pytest.raises(MappingMissing) as caught:
        await connector.create_document(doc)
    assert "cost center 999" in str(caught.value) and "account 4000" not in str(caught.value)
    assert "Resolution:" in str(caught.value)
    assert all(r.method == "GET" for r in calls)
    before = len(calls)
    await connector.create_document(invoice())  # the known combination: cached, one POST
    assert [r.method for r in calls[before:]] == ["POST"]


async def test_unknown_receipt_method_is_a_mapping_to_add():
    rec = Recorder({})
    receipt = ReceiptDocument(
        external_ref="WC-1001-P1", order_number="1001", store_order_id="1001", payment_id="1",
        currency="EUR", date=date(2026, 3, 1), customer_key="10001", amount=D("102.84"),
        payment_method="Crypto", applies_to=ErpDocumentRef(system="oracle_fusion",
                                                           kind="invoice", number="WC-1001"))
    with pytest.raises(MappingMissing) as caught:
        await erp(rec).create_receipt(receipt)
    assert "receipt method 'Crypto'" in str(caught.value) and rec.posts() == []


def test_oauth_needs_a_token_url():
    with pytest.raises(ValueError, match="token_url"):
        open_connector({**SETTINGS, "auth": "oauth2"}, {"client_id": "c", "client_secret": "s"},
                       tokens=MemoryTokenStore())


async def test_changed_store_customer_updates_the_matched_party_against_the_sandbox():
    """Through the simulator (ASGI): a second upsert with a new e-mail, name and address PATCHes
    the party and its primary address, the account stays, and get_customer reads it back."""
    from sandbox import oracle_fusion as sandbox

    app = sandbox.create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as control:
        connector = open_connector({**SETTINGS}, CREDENTIALS, tokens=MemoryTokenStore(),
                                   transport=transport)
        ann = Customer(store_id="5", email="ann@example.com", first_name="Ann", last_name="Buyer",
                       billing=Address(line1="1 Main St", city="Oakland", state="CA",
                                       postcode="94607", country="US"))
        first = await connector.upsert_customer(ann, "WC-C5")
        moved = ann.model_copy(update={
            "email": "ann.smith@example.com", "last_name": "Smith", "phone": "555-0101",
            "billing": ann.billing.model_copy(update={"line1": "9 New Rd", "city": "Berkeley"})})
        again = await connector.upsert_customer(moved, "WC-C5")
        assert (again.number, again.created, first.created) == (first.number, False, True)
        [party] = (await control.get("/_sandbox/parties")).json()
        assert (party["OrganizationName"], party["EmailAddress"], party["PhoneNumber"]) == (
            "Ann Smith", "ann.smith@example.com", "555-0101")
        assert (party["PrimaryAddress"][0]["Address1"], party["PrimaryAddress"][0]["City"]) == (
            "9 New Rd", "Berkeley")
        back = await connector.get_customer("WC-C5")
        assert (back.company, back.email, back.billing.city, back.billing.postcode) == (
            "Ann Smith", "ann.smith@example.com", "Berkeley", "94607")
        assert await connector.get_customer("WC-C6") is None
        routes = app.state.oracle.stats["by_route"]
        patches = routes.get("PATCH accounts", 0)
        assert patches == 2  # the party, then its address
        await connector.upsert_customer(moved, "WC-C5")
        assert app.state.oracle.stats["by_route"].get("PATCH accounts", 0) == patches
        assert len((await control.get("/_sandbox/customers")).json()) == 1
        await connector.aclose()

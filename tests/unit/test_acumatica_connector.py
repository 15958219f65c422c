"""AcumaticaErp against a small in-memory fake of the contract-based API (httpx.MockTransport)."""
from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from connectors.acumatica import AcumaticaCredentials, AcumaticaErp, AcumaticaSettings
from connectors.acumatica_mapping import customer_id_for, entity_errors, read_error, unwrap, wrap
from connectors.auth import MemoryTokenStore
from connectors.base import Erp, post_document
from connectors.documents import DocumentLine, DocumentTax, ErpDocument, ReceiptDocument
from connectors.errors import (ConfigurationError, MappingMissing, RateLimited, Rejected,
                               Unavailable)
from connectors.http import to_json
from connectors.model import Address, Customer, ErpDocumentRef

INSTANCE = "https://acme.test/site"
BASE = "/site/entity/Default/24.200.001/"


def v(record: dict) -> dict:
    return unwrap(record)


class FakeAcumatica:
    """Just enough of Acumatica: bearer tokens, discovery, Customer, SalesInvoice (422 on an
    unknown item or tax, release as a long-running action), SalesOrder, Payment (422 on an
    unknown payment method), StockItem and Shipment paging, 429 on demand."""

    def __init__(self, served: tuple[str, ...] = ("23.200.001", "24.200.001")) -> None:
        self.served = served
        self.items = {"WIDGET", "GADGET", "SHIPPING"}
        self.taxes = {"VAT20"}
        self.customers: dict[str, dict] = {}
        self.invoices: dict[tuple[str, str], dict] = {}
        self.orders: dict[tuple[str, str], dict] = {}
        self.payments: dict[tuple[str, str], dict] = {}
        self.methods = {"CARD"}
        self.stock: list[dict] = []
        self.shipments: list[dict] = []
        self.requests: list[httpx.Request] = []
        self.puts: list[dict] = []
        self.fail_next: list[httpx.Response] = []
        self.lose_next_put = False
        self.amount_offset = Decimal(0)
        self.running_polls = 0  # status polls that answer 202 before the 204

    # --- plumbing ---
    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/site/identity/connect/token":
            return httpx.Response(200, json={"access_token": "tok", "refresh_token": "ref",
                                             "expires_in": 3600})
        if request.headers.get("Authorization") != "Bearer tok":
            return httpx.Response(401, json={"message": "You are not logged in."})
        if path == "/site/entity":
            return httpx.Response(200, json={
                "version": {"acumaticaBuildVersion": "24.201.0016"},
                "endpoints": [{"name": "Default", "version": ver,
                               "href": f"/site/entity/Default/{ver}/"} for ver in self.served]})
        if self.fail_next:
            return self.fail_next.pop(0)
        match = re.fullmatch(r"/site/entity/Default/([^/]+)/(.+)", path)
        if not match or match.group(1) not in self.served:
            return httpx.Response(404, text="The resource cannot be found.")
        route = match.group(2)
        query = {k: vals[0] for k, vals in parse_qs(urlsplit(str(request.url)).query).items()}
        body = json.loads(request.content, parse_float=Decimal) if request.content else None
        response = self.route(request.method, route, query, body)
        if request.method == "PUT" and self.lose_next_put:
            self.lose_next_put = False
            raise httpx.ReadTimeout("response lost", request=request)
        return response

    def route(self, method: str, route: str, query: dict, body: Any) -> httpx.Response:
        if route == "Customer":
            return self.customer_get(query) if method == "GET" else self.customer_put(body)
        if route == "SalesInvoice":
            return self.invoice_get(query) if method == "GET" else self.invoice_put(body)
        if route == "SalesOrder":
            return self.find(self.orders, query) if method == "GET" else self.order_put(body)
        if route == "Payment":
            return self.find(self.payments, query) if method == "GET" else self.payment_put(body)
        for entity, action, docs, status in (("SalesInvoice", "ReleaseSalesInvoice", self.invoices, "Open"),
                                             ("Payment", "ReleasePayment", self.payments, "Closed")):
            if route == f"{entity}/{action}":
                keys = v(body["entity"])
                docs[(keys["Type"], keys["ReferenceNbr"])]["Status"] = status
                return httpx.Response(202, headers={
                    "Location": f"{BASE}{entity}/{action}/status/{uuid.uuid4()}"})
            if route.startswith(f"{entity}/{action}/status/"):
                if self.running_polls:
                    self.running_polls -= 1
                    return httpx.Response(202)
                return httpx.Response(204)
        by_keys = re.fullmatch(r"(SalesInvoice|SalesOrder)/([^/]+)/([^/]+)", route)
        if method == "GET" and by_keys:
            docs = self.invoices if by_keys.group(1) == "SalesInvoice" else self.orders
            found = docs.get((by_keys.group(2), by_keys.group(3)))
            return (httpx.Response(200, content=to_json(wrap(found))) if found
                    else httpx.Response(404, json={"message": "No entity satisfies the condition."}))
        if method == "DELETE" and route.startswith("SalesInvoice/"):
            guid = route.split("/")[1]
            self.invoices = {k: r for k, r in self.invoices.items() if r["id"] != guid}
            return httpx.Response(204)
        if route in ("StockItem", "Shipment"):
            rows = self.stock if route == "StockItem" else self.shipments
            top, skip = int(query["$top"]), int(query.get("$skip", 0))
            page = rows[skip:skip + top]
            return httpx.Response(200, content=to_json([wrap(r) for r in page]))
        return httpx.Response(404)

    @staticmethod
    def conditions(query: dict) -> list[tuple[str, str]]:
        return [(f, val.replace("''", "'")) for f, val in
                re.findall(r"([\w/]+) eq '((?:[^']|'')*)'", query.get("$filter", ""))]

    # --- customers ---
    def customer_get(self, query: dict) -> httpx.Response:
        def field(rec: dict, path: str) -> Any:
            for part in path.split("/"):
                rec = (rec or {}).get(part)
            return rec
        match = any if " or " in query.get("$filter", "") else all
        rows = [c for c in self.customers.values()  # text compares case-insensitively
                if match(str(field(c, f) or "").casefold() == val.casefold()
                         for f, val in self.conditions(query))]
        return httpx.Response(200, content=to_json([wrap(r) for r in rows]))

    def customer_put(self, body: dict) -> httpx.Response:
        self.puts.append(body)
        rec = v(body)
        current = self.customers.setdefault(rec["CustomerID"], {"id": str(uuid.uuid4())})
        merge(current, rec)
        return httpx.Response(200, content=to_json(wrap({k: val for k, val in current.items()
                                                          if not isinstance(val, dict)})))

    # --- invoices ---
    def invoice_get(self, query: dict) -> httpx.Response:
        cond = dict(self.conditions(query))
        rows = [r for r in self.invoices.values()
                if r["ExternalRef"] == cond["ExternalRef"] and r["Type"] == cond["Type"]]
        return httpx.Response(200, content=to_json([wrap(r) for r in rows[:1]]))

    def find(self, docs: dict, query: dict) -> httpx.Response:
        cond = self.conditions(query)
        rows = [r for r in docs.values() if all(r.get(f) == val for f, val in cond)]
        return httpx.Response(200, content=to_json([wrap(r) for r in rows[:1]]))

    def order_put(self, body: dict) -> httpx.Response:
        self.puts.append(body)
        rec = v(body)
        net = sum((ln["OrderQty"] * ln["UnitPrice"] - ln["DiscountAmount"] for ln in rec["Details"]),
                  Decimal(0))
        total = net + sum((t["TaxAmount"] for t in rec.get("TaxDetails", [])), Decimal(0))
        nbr = f"{len(self.orders) + 1:06d}"
        rec.update(id=str(uuid.uuid4()), OrderNbr=nbr, Status="Open", OrderTotal=total,
                   Totals={"UnpaidBalance": total})
        self.orders[(rec["OrderType"], nbr)] = rec
        return httpx.Response(200, content=to_json(wrap(rec)))

    def payment_put(self, body: dict) -> httpx.Response:
        self.puts.append(body)
        if body["PaymentMethod"]["value"] not in self.methods:
            body["PaymentMethod"]["error"] = "'Payment Method' cannot be found in the system."
            return httpx.Response(422, content=to_json(body))
        refused = False
        for row in body.get("DocumentsToApply", []):  # open invoices only, within the balance
            invoice = self.invoices.get((row["DocType"]["value"], row["ReferenceNbr"]["value"]))
            if invoice is None or invoice["Status"] != "Open":
                row["ReferenceNbr"]["error"] = "'Reference Nbr.' cannot be found in the system."
                refused = True
            elif row["AmountPaid"]["value"] > invoice["Balance"]:
                row["AmountPaid"]["error"] = "The amount paid exceeds the balance of the document."
                refused = True
        if refused:
            return httpx.Response(422, content=to_json(body))
        rec = v(body)
        nbr = f"{len(self.payments) + 1:06d}"
        rec.update(id=str(uuid.uuid4()), ReferenceNbr=nbr, Status="Balanced")
        self.payments[(rec["Type"], nbr)] = rec
        return httpx.Response(200, content=to_json(wrap(rec)))

    def invoice_put(self, body: dict) -> httpx.Response:
        self.puts.append(body)
        errors = False
        for row in body["Details"]:
            if row["InventoryID"]["value"] not in self.items:
                row["InventoryID"]["error"] = "'Inventory ID' cannot be found in the system."
                errors = True
        for row in body.get("TaxDetails", []):
            if row["TaxID"]["value"] not in self.taxes:
                row["TaxID"]["error"] = "'Tax ID' cannot be found in the system."
                errors = True
        if errors:
            return httpx.Response(422, content=to_json(body))
        rec = v(body)
        net = sum((ln["Qty"] * ln["UnitPrice"] - ln["DiscountAmount"] for ln in rec["Details"]),
                  Decimal(0))
        amount = net + sum((t["TaxAmount"] for t in rec.get("TaxDetails", [])), Decimal(0))
        nbr = f"{'INV' if rec['Type'] == 'Invoice' else 'CRM'}{len(self.invoices) + 1:06d}"
        rec.update(id=str(uuid.uuid4()), ReferenceNbr=nbr, Status="Balanced",
                   Amount=amount.quantize(Decimal("0.01")) + self.amount_offset)
        rec["Balance"] = rec["Amount"]
        self.invoices[(rec["Type"], nbr)] = rec
        return httpx.Response(200, content=to_json(wrap(rec)))


def merge(target: dict, source: dict) -> None:
    for key, val in source.items():
        if isinstance(val, dict):
            merge(target.setdefault(key, {}), val)
        else:
            target[key] = val


def erp_for(fake: FakeAcumatica, **settings: Any) -> AcumaticaErp:
    erp = AcumaticaErp(
        AcumaticaSettings(instance_url=INSTANCE + "/", **settings),
        AcumaticaCredentials(client_id="guid@Tenant", client_secret="secret", username="admin",
                             password="pw"),
        MemoryTokenStore(), transport=httpx.MockTransport(fake.handler))
    erp.release_first_poll_seconds = erp.release_poll_seconds = 0
    return erp


def invoice_doc(**overrides: Any) -> ErpDocument:
    fields: dict[str, Any] = dict(
        kind="invoice", external_ref="WC-1001", order_number="1001", store_order_id="1001",
        currency="USD", date=date(2024, 5, 5), customer_key="C0000000A",
        description="woocommerce order 1001",
        lines=[DocumentLine(item_id="WIDGET", sku="W-1", description="Widget", quantity=Decimal(3),
                            unit_price=Decimal("19.99"), discount=Decimal("5.97"),
                            amount=Decimal("54.00"), source_line_id="11"),
               DocumentLine(item_id="SHIPPING", description="Shipping", quantity=Decimal(1),
                            unit_price=Decimal("10.00"), amount=Decimal("10.00"))],
        taxes=[DocumentTax(tax_code="VAT20", taxable_amount=Decimal("64.00"),
                           amount=Decimal("12.80"))])
    fields.update(overrides)
    return ErpDocument(**fields)


# --- wrapping --------------------------------------------------------------------------------

def test_wrap_unwrap_round_trip_with_linked_and_detail_entities() -> None:
    plain = {"id": "2b1c", "CustomerID": "C1", "Hold": False, "Date": "2024-05-05",
             "Amount": Decimal("76.80"), "note": "from the store", "custom": {"Document": {
                 "UsrX": {"type": "CustomStringField", "value": "A"}}},
             "MainContact": {"Email": "a@b.c", "Address": {"City": "Oslo", "Country": "NO"}},
             "Details": [{"rowNumber": 1, "InventoryID": "W", "Qty": Decimal("1.5")},
                         {"id": "9", "delete": True}]}
    wrapped = wrap(plain)
    assert wrapped["CustomerID"] == {"value": "C1"}
    assert wrapped["note"] == {"value": "from the store"}
    assert wrapped["id"] == "2b1c" and wrapped["custom"] == plain["custom"]
    assert wrapped["MainContact"]["Address"]["City"] == {"value": "Oslo"}
    assert wrapped["Details"][0] == {"rowNumber": 1, "InventoryID": {"value": "W"},
                                     "Qty": {"value": Decimal("1.5")}}
    assert wrapped["Details"][1] == {"id": "9", "delete": True}
    assert unwrap(wrapped) == plain
    assert unwrap(json.loads(to_json(wrapped), parse_float=Decimal)) == plain


def test_json_keeps_decimals_exact_and_dates_iso() -> None:
    body = to_json(wrap({"UnitPrice": Decimal("0.1000001"), "Big": Decimal("12345678901234.57"),
                         "Date": date(2024, 5, 5), "Clear": None}))
    assert body == (b'{"UnitPrice":{"value":0.1000001},"Big":{"value":12345678901234.57},'
                    b'"Date":{"value":"2024-05-05"},"Clear":{"value":null}}')


def test_422_entity_errors_are_collected_from_fields_and_lines() -> None:
    body = {"Type": {"value": "Invoice"}, "error": "Inserting 'SO Invoice' raised errors.",
            "CustomerID": {"value": "X", "error": "'Customer' cannot be found in the system."},
            "Details": [{"InventoryID": {"value": "W"}},
                        {"InventoryID": {"value": "Q", "error": "'Inventory ID' cannot be found "
                                                                "in the system."}}]}
    resp = httpx.Response(422, content=json.dumps(body).encode(),
                          request=httpx.Request("PUT", "https://x/SalesInvoice"))
    message, fields = read_error(resp)
    assert fields == {"CustomerID": "'Customer' cannot be found in the system.",
                      "Details[1].InventoryID": "'Inventory ID' cannot be found in the system."}
    assert message.startswith("Inserting 'SO Invoice' raised errors.; CustomerID:")
    assert entity_errors({"Details": [{"error": "line refused"}]}) == {"Details[0]": "line refused"}


def test_http_error_body_gives_the_exception_message() -> None:
    resp = httpx.Response(400, json={"message": "An error has occurred.",
                                     "exceptionMessage": "Optimization cannot be performed.",
                                     "modelState": {"Qty": ["must be positive"]}},
                          request=httpx.Request("PUT", "https://x/SalesInvoice"))
    assert read_error(resp) == ("Optimization cannot be performed.", {"Qty": "must be positive"})


# --- documents -------------------------------------------------------------------------------

async def test_find_then_create_posts_once_and_releases() -> None:
    fake = FakeAcumatica()
    erp = erp_for(fake)
    assert isinstance(erp, Erp)
    first = await post_document(erp, invoice_doc())
    again = await post_document(erp, invoice_doc())
    assert first.created and not again.created
    assert (first.number, first.doc_type, first.total, first.currency) == (
        "INV000001", "Invoice", Decimal("76.80"), "USD")
    assert again.number == first.number and again.total == Decimal("76.80")
    assert len(fake.invoices) == 1 and fake.invoices[("Invoice", "INV000001")]["Status"] == "Open"
    poll = next(r for r in fake.requests if "/status/" in r.url.path)
    assert (poll.method, poll.url.host) == ("GET", "acme.test")
    assert poll.url.path.startswith(BASE)
    sent = v(fake.puts[0])
    assert {k: sent[k] for k in ("Type", "CustomerID", "Date", "CustomerOrder", "ExternalRef",
                                 "Currency", "Hold")} == {
        "Type": "Invoice", "CustomerID": "C0000000A", "Date": "2024-05-05",
        "CustomerOrder": "1001", "ExternalRef": "WC-1001", "Currency": "USD", "Hold": False}
    assert sent["Details"][0] == {"InventoryID": "WIDGET", "Qty": 3, "UnitPrice": Decimal("19.99"),
                                  "DiscountAmount": Decimal("5.97"), "ManualPrice": True,
                                  "TransactionDescr": "Widget", "ManualDiscount": True}
    assert sent["TaxDetails"] == [{"TaxID": "VAT20", "TaxableAmount": 64,
                                   "TaxAmount": Decimal("12.8")}]
    find = next(r for r in fake.requests if r.method == "GET" and "SalesInvoice" in r.url.path)
    assert unquote(find.url.query.decode()) == (
        "$filter=ExternalRef eq 'WC-1001' and Type eq 'Invoice'"
        "&$select=Type,ReferenceNbr,Amount,Currency,Status,ExternalRef&$top=1")
    await erp.aclose()


async def test_release_polls_first_after_a_release_has_had_time_then_more_often(monkeypatch) -> None:
    fake = FakeAcumatica()
    fake.running_polls = 2
    erp = erp_for(fake)
    erp.release_first_poll_seconds, erp.release_poll_seconds = 1.0, 0.5
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("connectors.acumatica.asyncio.sleep", sleep)
    await erp.create_document(invoice_doc())
    assert slept == [1.0, 0.5, 0.5]
    assert len([r for r in fake.requests if "/status/" in r.url.path]) == 3


async def test_credit_memo_applies_to_its_invoice() -> None:
    fake = FakeAcumatica()
    erp = erp_for(fake)
    invoice = await erp.create_document(invoice_doc())
    memo = invoice_doc(kind="credit_memo", external_ref="WC-1001-R5", applies_to=invoice,
                       lines=invoice_doc().lines[:1],
                       taxes=[DocumentTax(tax_code="VAT20", taxable_amount=Decimal("54.00"),
                                          amount=Decimal("10.80"))])
    ref = await erp.create_document(memo)
    assert (ref.doc_type, ref.number, ref.total) == ("Credit Memo", "CRM000002", Decimal("64.80"))
    sent = v(fake.puts[1])
    assert sent["Type"] == "Credit Memo"
    assert sent["ApplicationsCreditMemo"] == [{"DocType": "Invoice", "ReferenceNbr": "INV000001",
                                               "AmountPaid": Decimal("64.80")}]
    assert (sent["Details"][0]["OrigInvType"], sent["Details"][0]["OrigInvNbr"]) == (
        "Invoice", "INV000001")
    assert await erp.find_document("credit_memo", "WC-1001-R5") is not None
    assert await erp.find_document("invoice", "WC-1001-R5") is None


async def test_unknown_inventory_id_is_a_mapping_naming_the_store_sku() -> None:
    fake = FakeAcumatica()
    fake.items.discard("WIDGET")
    with pytest.raises(MappingMissing) as caught:
        await erp_for(fake).create_document(invoice_doc())
    err = caught.value
    assert err.field_errors == {
        "Details[0].InventoryID": "'Inventory ID' cannot be found in the system."}
    assert err.resolution == ("map SKU W-1 to an Acumatica InventoryID (ml-connector connections "
                              "map CONNECTION --sku W-1=INVENTORYID) or create the item in "
                              "Acumatica")
    assert not fake.invoices


async def test_unknown_tax_id_is_a_mapping_naming_the_tax() -> None:
    fake = FakeAcumatica()
    fake.taxes.clear()
    with pytest.raises(MappingMissing, match="tax ID VAT20"):
        await erp_for(fake).create_document(invoice_doc())


async def test_other_422_is_rejected_with_acumaticas_message() -> None:
    fake = FakeAcumatica()
    fake.fail_next.append(httpx.Response(422, json={
        "CustomerID": {"value": "NOPE", "error": "'Customer' cannot be found in the system."}}))
    with pytest.raises(Rejected) as caught:
        await erp_for(fake).create_document(invoice_doc())
    assert type(caught.value) is Rejected
    assert "'Customer' cannot be found in the system." in str(caught.value)


async def test_total_disagreement_is_rejected_and_the_draft_removed() -> None:
    fake = FakeAcumatica()
    fake.amount_offset = Decimal("0.01")
    with pytest.raises(Rejected, match=r"76\.81 USD but the store's total is 76\.80"):
        await erp_for(fake).create_document(invoice_doc())
    assert not fake.invoices
    assert not any("ReleaseSalesInvoice" in r.url.path for r in fake.requests)


async def test_find_releases_a_document_an_interrupted_attempt_left_balanced() -> None:
    fake = FakeAcumatica()
    await erp_for(fake, release_documents=False).create_document(invoice_doc())
    assert fake.invoices[("Invoice", "INV000001")]["Status"] == "Balanced"
    ref = await erp_for(fake).find_document("invoice", "WC-1001")
    assert ref is not None and not ref.created
    assert fake.invoices[("Invoice", "INV000001")]["Status"] == "Open"


# --- receipts and the sales-order option -----------------------------------------------------

def receipt_doc(applies_to: ErpDocumentRef, **overrides: Any) -> ReceiptDocument:
    fields: dict[str, Any] = dict(
        external_ref="WC-1001-P1", order_number="1001", store_order_id="1001", payment_id="1",
        currency="USD", date=date(2024, 5, 5), customer_key="C0000000A", amount=Decimal("76.80"),
        payment_method="CARD", reference="ch_3PqXyZ", description="Payment 1 of woocommerce order 1001",
        applies_to=applies_to)
    fields.update(overrides)
    return ReceiptDocument(**fields)


async def test_receipt_is_a_payment_applied_to_its_invoice_then_released() -> None:
    fake = FakeAcumatica()
    erp = erp_for(fake, cash_account="10200", cash_accounts={"EUR": "10250"})
    invoice = await post_document(erp, invoice_doc())
    first = await post_document(erp, receipt_doc(invoice))
    again = await post_document(erp, receipt_doc(invoice))
    assert (first.kind, first.doc_type, first.number, first.total, first.currency, first.created) == (
        "receipt", "Payment", "000001", Decimal("76.80"), "USD", True)
    assert (again.number, again.created) == (first.number, False)
    assert len(fake.payments) == 1 and fake.payments[("Payment", "000001")]["Status"] == "Closed"
    assert v(fake.puts[1]) == {
        "Type": "Payment", "CustomerID": "C0000000A", "PaymentMethod": "CARD",
        "PaymentAmount": Decimal("76.80"), "PaymentRef": "ch_3PqXyZ", "ExternalRef": "WC-1001-P1",
        "Description": "Payment 1 of woocommerce order 1001", "ApplicationDate": "2024-05-05",
        "CurrencyID": "USD", "Hold": False, "CashAccount": "10200",
        "DocumentsToApply": [{"DocType": "Invoice", "ReferenceNbr": "INV000001",
                              "AmountPaid": Decimal("76.80")}]}
    # a fresh invoice is open for its total: no balance read before the application
    assert not [r for r in fake.requests if r.url.path.endswith("/SalesInvoice/Invoice/INV000001")]
    find = [unquote(r.url.query.decode()) for r in fake.requests
            if r.method == "GET" and r.url.path.endswith("/Payment")]
    assert find == ["$filter=ExternalRef eq 'WC-1001-P1' and Type eq 'Payment'"
                    "&$select=Type,ReferenceNbr,PaymentAmount,CurrencyID,Status,ExternalRef&$top=1"] * 2
    assert any(r.url.path.endswith("/Payment/ReleasePayment") for r in fake.requests)
    assert await erp.find_document("receipt", "WC-1001") is None


async def test_receipt_applies_only_what_is_open_on_the_invoice() -> None:
    """Refused on its application row (more than is open, or a paid invoice), the payment reads
    the balance once and goes again with what is open: nothing when the invoice is closed."""
    fake = FakeAcumatica()
    erp = erp_for(fake, cash_accounts={"EUR": "10250"})
    invoice = await erp.create_document(invoice_doc(currency="EUR"))
    fake.invoices[("Invoice", invoice.number)]["Balance"] = Decimal("50.00")
    await erp.create_receipt(receipt_doc(invoice, currency="EUR", reference="x" * 60))
    sent = [v(p) for p in fake.puts[-2:]]
    assert [p["DocumentsToApply"][0]["AmountPaid"] for p in sent] == [Decimal("76.80"), Decimal("50.00")]
    assert (sent[1]["CashAccount"], sent[1]["PaymentRef"]) == ("10250", "x" * 40)
    balance = [r for r in fake.requests if r.url.path.endswith(f"/SalesInvoice/Invoice/{invoice.number}")]
    assert [unquote(r.url.query.decode()) for r in balance] == ["$select=Status,Balance"]
    assert len(fake.payments) == 1
    fake.invoices[("Invoice", invoice.number)]["Status"] = "Closed"
    await erp.create_receipt(receipt_doc(invoice, external_ref="WC-1001-P2"))
    assert "DocumentsToApply" in v(fake.puts[-2])
    assert "DocumentsToApply" not in v(fake.puts[-1]) and "CashAccount" not in v(fake.puts[-1])
    assert len(fake.payments) == 2


async def test_receipt_refused_for_another_reason_is_not_sent_again() -> None:
    fake = FakeAcumatica()
    erp = erp_for(fake)
    invoice = await erp.create_document(invoice_doc())
    fake.fail_next.append(httpx.Response(422, json={
        "CustomerID": {"value": "C0000000A", "error": "'Customer' cannot be found in the system."}}))
    with pytest.raises(Rejected, match="'Customer' cannot be found"):
        await erp.create_receipt(receipt_doc(invoice))
    assert not [r for r in fake.requests if r.url.path.endswith(f"/SalesInvoice/Invoice/{invoice.number}")]


async def test_unknown_payment_method_is_a_mapping_naming_the_method() -> None:
    fake = FakeAcumatica()
    erp = erp_for(fake)
    invoice = await erp.create_document(invoice_doc())
    with pytest.raises(MappingMissing) as caught:
        await erp.create_receipt(receipt_doc(invoice, payment_method="BITCOIN"))
    err = caught.value
    assert "payment method BITCOIN" in err.message
    assert err.field_errors == {"PaymentMethod": "'Payment Method' cannot be found in the system."}
    assert err.resolution.startswith("create the payment method BITCOIN in Acumatica")
    assert "--payment" in err.resolution and not fake.payments


async def test_sales_order_option_posts_orders_and_keeps_memos_on_invoices() -> None:
    fake = FakeAcumatica()
    erp = erp_for(fake, document_type="sales_order")
    order = await post_document(erp, invoice_doc())
    assert (order.kind, order.doc_type, order.number, order.total) == (
        "invoice", "SO", "000001", Decimal("76.80"))
    assert (await post_document(erp, invoice_doc())).created is False
    sent = v(fake.puts[0])
    assert {k: val for k, val in sent.items() if k not in ("Details", "TaxDetails")} == {
        "OrderType": "SO", "CustomerID": "C0000000A", "Date": "2024-05-05",
        "Description": "woocommerce order 1001", "CustomerOrder": "1001", "ExternalRef": "WC-1001",
        "CurrencyID": "USD", "Hold": False, "DisableAutomaticDiscountUpdate": True,
        "DisableAutomaticTaxCalculation": True}
    assert sent["Details"][0] == {"InventoryID": "WIDGET", "OrderQty": 3,
                                  "UnitPrice": Decimal("19.99"), "DiscountAmount": Decimal("5.97"),
                                  "ManualPrice": True, "LineDescription": "Widget",
                                  "ManualDiscount": True}
    assert sent["TaxDetails"] == [{"TaxID": "VAT20", "TaxableAmount": 64, "TaxAmount": Decimal("12.8")}]
    find = next(r for r in fake.requests if r.method == "GET" and r.url.path.endswith("/SalesOrder"))
    assert unquote(find.url.query.decode()) == (
        "$filter=ExternalRef eq 'WC-1001' and OrderType eq 'SO'"
        "&$select=OrderType,OrderNbr,OrderTotal,CurrencyID,Status,ExternalRef&$top=1")
    assert not any("Release" in r.url.path for r in fake.requests)

    await erp.create_receipt(receipt_doc(order))
    assert v(fake.puts[-1])["OrdersToApply"] == [{"OrderType": "SO", "OrderNbr": "000001",
                                                  "AppliedToOrder": Decimal("76.80")}]
    memo = await erp.create_document(invoice_doc(kind="credit_memo", external_ref="WC-1001-R5",
                                                 applies_to=order))
    sent = v(fake.puts[-1])
    assert (memo.doc_type, sent["Type"]) == ("Credit Memo", "Credit Memo")
    assert "ApplicationsCreditMemo" not in sent and "OrigInvNbr" not in sent["Details"][0]
    extra = await erp.create_document(invoice_doc(kind="adjustment_invoice", external_ref="WC-1001-A1"))
    assert extra.doc_type == "Invoice" and v(fake.puts[-1])["Type"] == "Invoice"


# --- errors of the endpoint ------------------------------------------------------------------

async def test_unserved_endpoint_version_is_a_configuration_error() -> None:
    fake = FakeAcumatica(served=("23.200.001", "24.200.001"))
    erp = erp_for(fake, endpoint_version="23.100.001")
    with pytest.raises(ConfigurationError) as caught:
        await erp.find_document("invoice", "WC-1")
    assert caught.value.message == ("Acumatica endpoint Default/23.100.001 is not served by this "
                                    "instance; it serves: Default/23.200.001, Default/24.200.001")
    assert caught.value.resolution == "set the connection's endpoint version to one of those"
    assert not caught.value.retryable


async def test_rate_limit_carries_retry_after() -> None:
    fake = FakeAcumatica()
    fake.fail_next.append(httpx.Response(429, headers={"Retry-After": "7"}, text="Too many"))
    with pytest.raises(RateLimited) as caught:
        await erp_for(fake).find_document("invoice", "WC-1")
    assert caught.value.retry_after == 7
    assert caught.value.retryable


# --- customers -------------------------------------------------------------------------------

def buyer(**overrides: Any) -> Customer:
    fields: dict[str, Any] = dict(
        store_id="42", email="o'brien@example.com", first_name="Pat", last_name="O'Brien",
        phone="555-0100", billing=Address(line1="1 Main St", city="Springfield", state="IL",
                                          postcode="62701", country="US"))
    fields.update(overrides)
    return Customer(**fields)


def test_customer_id_is_deterministic() -> None:
    assert customer_id_for("WC-C42") == customer_id_for("WC-C42")
    assert customer_id_for("WC-C42") != customer_id_for("WC-C43")
    assert re.fullmatch(r"C[0-9A-F]{9}", customer_id_for("WC-C42"))


async def test_new_customer_survives_a_lost_response() -> None:
    fake = FakeAcumatica()
    erp = erp_for(fake, customer_class="WEB")
    fake.lose_next_put = True
    with pytest.raises(Unavailable):
        await erp.upsert_customer(buyer(), "WC-C42")
    ref = await erp.upsert_customer(buyer(), "WC-C42")
    assert len(fake.customers) == 1
    assert (ref.number, ref.created, ref.external_ref) == (customer_id_for("WC-C42"), False,
                                                           "WC-C42")
    created = v(fake.puts[0])
    assert created == {"CustomerID": customer_id_for("WC-C42"), "CustomerName": "Pat O'Brien",
                       "MainContact": {"FirstName": "Pat", "LastName": "O'Brien",
                                       "Phone1": "555-0100", "Email": "o'brien@example.com",
                                       "Address": {"AddressLine1": "1 Main St",
                                                   "City": "Springfield", "State": "IL",
                                                   "PostalCode": "62701", "Country": "US"}},
                       "AccountRef": "WC-C42", "CustomerClass": "WEB"}


async def test_a_customer_the_merchant_made_is_never_written_to() -> None:
    """A customer with the buyer's e-mail is not ours, nor is one whose AccountRef carries our
    external id: "own" creates ours beside them; "email" books to the e-mail's, untouched."""
    fake = FakeAcumatica()
    fake.customers["JOHNGOOD"] = {
        "id": "g-1", "CustomerID": "JOHNGOOD", "CustomerName": "John Good Ltd",
        "MainContact": {"Email": "O'Brien@Example.com", "Phone1": "555-0199"}}
    fake.customers["TAGGED"] = {"id": "g-2", "CustomerID": "TAGGED", "CustomerName": "Tagged",
                                "AccountRef": "WC-C42", "MainContact": {"Email": "t@example.com"}}
    merchants = json.loads(json.dumps(fake.customers))
    linked = await erp_for(fake).upsert_customer(buyer(), "WC-C42", match="email")
    assert (linked.number, linked.id, linked.created) == ("JOHNGOOD", "g-1", False)
    assert fake.puts == []
    lookups = [unquote(r.url.query.decode()) for r in fake.requests
               if r.url.path.endswith("/Customer") and r.method == "GET"]
    assert len(lookups) == 1  # one look-up for both matches
    assert (f"$filter=CustomerID eq '{customer_id_for('WC-C42')}' or MainContact/Email eq "
            "'o''brien@example.com'" in lookups[0])
    own = await erp_for(fake).upsert_customer(buyer(), "WC-C42")
    assert (own.number, own.created) == (customer_id_for("WC-C42"), True)
    assert {k: fake.customers[k] for k in merchants} == merchants


async def test_ours_wins_over_an_email_match_and_takes_only_what_changed() -> None:
    fake = FakeAcumatica()
    first = await erp_for(fake).upsert_customer(buyer(), "WC-GABC")  # a guest checkout
    fake.customers["OTHER"] = {"id": "g-0", "CustomerID": "OTHER", "CustomerName": "Pat O'Brien",
                               "MainContact": {"Email": "o'brien@example.com"}}
    ref = await erp_for(fake).upsert_customer(buyer(phone="555-0111"), "WC-C42",
                                              aliases=["WC-GABC"], match="email")
    assert (ref.number, ref.created) == (first.number, False)
    assert [v(p) for p in fake.puts[1:]] == [{"CustomerID": first.number,
                                              "MainContact": {"Phone1": "555-0111"}}]


# --- catalog and health ----------------------------------------------------------------------

async def test_item_changes_page_until_a_short_page() -> None:
    fake = FakeAcumatica()
    fake.stock = [{"InventoryID": f"SKU{i}", "DefaultPrice": Decimal("9.99"),
                   "LastCost": Decimal("4.1"),
                   "LastModifiedDateTime": "2024-07-15T10:31:28.4023457+03:00",
                   "WarehouseDetails": [{"WarehouseID": "MAIN", "QtyOnHand": Decimal("5")},
                                        {"WarehouseID": "RETAIL", "QtyOnHand": Decimal("2")}]}
                  for i in range(150)]
    since = datetime(2024, 7, 1, tzinfo=timezone.utc)
    changes = [c async for c in erp_for(fake, warehouse_id="MAIN").iter_item_changes(since)]
    assert len(changes) == 150
    assert (changes[0].sku, changes[0].price, changes[0].cost, changes[0].quantity_available) == (
        "SKU0", Decimal("9.99"), Decimal("4.1"), Decimal(5))
    assert changes[0].modified_at.utcoffset().total_seconds() == 3 * 3600
    pages = [r for r in fake.requests if r.url.path.endswith("/StockItem")]
    assert [dict(r.url.params)["$skip"] for r in pages] == ["0", "100"]
    assert "datetimeoffset'2024-07-01T00%3A00%3A00.000%2B00%3A00'" in pages[0].url.query.decode()
    summed = [c async for c in erp_for(fake).iter_item_changes(since)]
    assert summed[0].quantity_available == Decimal(7)


def shipment_row(nbr: str, *orders: str, tracking: tuple[str, ...] = ("1Z1",), **fields: Any) -> dict:
    return {"ShipmentNbr": nbr, "Status": "Confirmed", "Operation": "Issue", "ShipVia": "UPSGROUND",
            "ShipmentDate": "2024-07-15T00:00:00+03:00",
            "LastModifiedDateTime": "2024-07-15T10:31:28.4023457+03:00",
            "Orders": [{"OrderType": "SO", "OrderNbr": o} for o in orders],
            "Packages": [{"TrackingNbr": t} for t in tracking], **fields}


async def test_shipments_page_and_read_each_order_once_for_its_external_ref() -> None:
    fake = FakeAcumatica()
    fake.orders = {("SO", f"{i:06d}"): {"id": str(i), "OrderType": "SO", "OrderNbr": f"{i:06d}",
                                        "ExternalRef": f"WC-{i}"} for i in range(1, 4)}
    fake.shipments = [shipment_row(f"S{i:05d}", "000001") for i in range(100)]  # one order, many boxes
    fake.shipments += [shipment_row("S-TWO", "000002", "000003", tracking=("1Z2", "", "1Z2", "1Z3")),
                       shipment_row("S-RET", "000002", Operation="Receipt"),
                       shipment_row("S-GONE", "424242", ShipVia={}, ShipmentDate={})]
    since = datetime(2024, 7, 1, tzinfo=timezone.utc)
    shipments = [s async for s in erp_for(fake, document_type="sales_order").iter_shipments(since)]

    assert len(shipments) == 103  # 100 + the consolidated one twice + the deleted order's
    first = shipments[0]
    assert (first.shipment_id, first.external_ref, first.tracking_numbers, first.carrier) == (
        "S00000", "WC-1", ["1Z1"], "UPSGROUND")
    assert first.shipped_at == datetime(2024, 7, 14, 21, tzinfo=timezone.utc)
    assert first.modified_at.utcoffset().total_seconds() == 3 * 3600
    two = [(s.shipment_id, s.external_ref, s.tracking_numbers) for s in shipments[100:102]]
    assert two == [("S-TWO/SO/000002", "WC-2", ["1Z2", "1Z3"]), ("S-TWO/SO/000003", "WC-3", ["1Z2", "1Z3"])]
    gone = shipments[102]
    assert (gone.external_ref, gone.carrier, gone.shipped_at) == ("", "", gone.modified_at)

    pages = [r for r in fake.requests if r.url.path.endswith("/Shipment")]
    assert [dict(r.url.params)["$skip"] for r in pages] == ["0", "100"]
    params = dict(pages[0].url.params)
    assert params["$filter"] == ("LastModifiedDateTime gt datetimeoffset'2024-07-01T00:00:00.000+00:00' and "
                                 "(Status eq 'Confirmed' or Status eq 'Completed' or Status eq 'Invoiced' "
                                 "or Status eq 'Partially Invoiced')")
    assert "%2B00%3A00'" in pages[0].url.query.decode()  # the offset's '+' arrives as a plus
    assert (params["$expand"], params["$top"]) == ("Orders,Packages", "100")
    assert set(params["$select"].split(",")) >= {"ShipmentNbr", "Orders/OrderNbr", "Packages/TrackingNbr",
                                                 "ShipVia", "ShipmentDate", "LastModifiedDateTime"}
    lookups = [r.url.path.rsplit("/", 2)[-1] for r in fake.requests if "/SalesOrder/" in r.url.path]
    assert sorted(lookups) == ["000001", "000002", "000003", "424242"]  # once each per run


async def test_an_invoice_connection_has_no_shipments_to_read() -> None:
    fake = FakeAcumatica()
    fake.shipments = [shipment_row("S1", "000001")]
    since = datetime(2024, 7, 1, tzinfo=timezone.utc)
    assert [s async for s in erp_for(fake).iter_shipments(since)] == []
    assert not [r for r in fake.requests if r.url.path.endswith("/Shipment")]


async def test_ping_reports_what_works() -> None:
    report = await erp_for(FakeAcumatica()).ping()
    assert report["ok"] and report["endpoint_served"] and report["entity_access"]
    assert report["served_endpoints"] == ["Default/23.200.001", "Default/24.200.001"]
    wrong = await erp_for(FakeAcumatica(), endpoint_version="22.200.001").ping()
    assert wrong["ok"] is False and wrong["endpoint_served"] is False

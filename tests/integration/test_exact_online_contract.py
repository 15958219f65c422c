"""The Exact Online connector against the Exact sandbox over TLS on a real socket: written
independently, from the same reference, so a shared misunderstanding cannot hide."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import httpx
import pytest

from connectors import exact_online as eo
from connectors.auth import MemoryTokenStore
from connectors.base import post_document
from connectors.documents import (DocumentLine, DocumentTax, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument)
from connectors.errors import MappingMissing
from connectors.model import Address, Customer
from sandbox import exact_online as sandbox
from sandbox.server import LocalCA, serving

CLIENT_ID, SECRET = "9a8b7c6d-0000-4000-8000-000000000001", "sandbox-secret"
REDIRECT = "http://127.0.0.1:8765/callback"
SEED = {
    "divisions": [{"Code": 777001, "Description": "Webshop B.V.", "Current": True}],
    "division": 777001,
    "gl_accounts": [{"Code": "8000", "Description": "Revenue", "Type": 110},
                    {"Code": "8100", "Description": "Shipping revenue", "Type": 110}],
    "cost_centers": [{"Code": "WEB", "Description": "Web shop"}],
    "vat_codes": [{"Code": "2", "Description": "VAT 21%", "Percentage": "0.21"}],
    "journals": [{"Code": "20", "Description": "Payment provider", "Type": 16}],
    "items": [{"Code": "HOODIE-M", "Description": "Hoodie M", "StandardSalesPrice": "39.95",
               "Stock": 5},
              {"Code": "SHIPPING", "Description": "Shipping"},
              {"Code": "ADJUSTMENT", "Description": "Adjustment"}],
}
ANN = Customer(store_id="5", email="ann@example.com", first_name="Ann", last_name="Buyer",
               billing=Address(line1="Damrak 1", city="Amsterdam", postcode="1012 LG", country="NL"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def server(ca):
    app = sandbox.create_app(client_id=CLIENT_ID, client_secret=SECRET, redirect_uris=(REDIRECT,))
    async with serving(app, tls=ca) as served:
        async with httpx.AsyncClient(base_url=served.url, verify=str(ca.ca_file)) as control:
            assert (await control.post("/_sandbox/seed", json=SEED)).status_code == 200
            yield served, control, app.state.exact


async def connector(served, control, ca, changes=None, **settings) -> eo.ExactOnlineErp:
    code = (await control.post("/_sandbox/authorize", json={"redirect_uri": REDIRECT})).json()["code"]
    return eo.open_connector(
        {"base_url": served.url, "ca_bundle": str(ca.ca_file), "redirect_uri": REDIRECT, **settings},
        {"client_id": CLIENT_ID, "client_secret": SECRET, "authorization_code": code},
        tokens=MemoryTokenStore(), on_settings_change=(changes.append if changes is not None else None))


def invoice(customer: str, ref: str = "WC-1001") -> ErpDocument:
    return ErpDocument(
        kind="invoice", external_ref=ref, order_number="1001", store_order_id="1001", currency="EUR",
        date=date(2026, 3, 1), customer_key=customer, description="woocommerce order 1001",
        lines=[DocumentLine(item_id="HOODIE-M", sku="HOODIE-M", quantity=D(3), unit_price=D("33.333333"),
                            discount=D("10.00"), amount=D("90.00"), tax=D("18.90"), tax_code="2",
                            gl_account="8000", cost_center="WEB"),
               DocumentLine(item_id="SHIPPING", kind="shipping", quantity=D(1), unit_price=D("4.99"),
                            amount=D("4.99"), tax=D("1.05"), tax_code="2", gl_account="8100")],
        taxes=[DocumentTax(tax_code="2", taxable_amount=D("94.99"), amount=D("19.95"))])


async def test_account_invoice_credit_note_receipt_to_the_cent(server, ca):
    served, control, state = server
    changes: list = []
    erp = await connector(served, control, ca, changes)
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        moved = ANN.model_copy(update={"billing": ANN.billing.model_copy(update={"line1": "Damrak 2"})})
        again = await erp.upsert_customer(moved, "WC-C5")
        assert (again.number, again.created) == (cust.number, False)
        assert changes == [{"division": 777001}]  # discovered from current/Me, remembered
        [account] = (await control.get("/_sandbox/accounts")).json()
        assert account["AddressLine1"] == "Damrak 2" and account["Status"] == "C"

        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        assert (inv.total, inv.currency, inv.kind) == (D("114.94"), "EUR", "invoice")
        same = await post_document(erp, invoice(cust.number))
        assert (same.number, same.created) == (inv.number, False)  # found by YourRef

        memo = ErpDocument(kind="credit_memo", external_ref="WC-1001-R9", order_number="1001",
                           store_order_id="1001", currency="EUR", date=date(2026, 3, 2),
                           customer_key=cust.number, applies_to=inv,
                           lines=[DocumentLine(item_id="ADJUSTMENT", kind="adjustment", quantity=D(1),
                                               unit_price=D("12.34"), amount=D("12.34"), gl_account="8000")])
        credit = await post_document(erp, memo)
        assert (credit.total, credit.doc_type) == (D("12.34"), "Sales credit note")
        assert await erp.find_document("invoice", "WC-1001-R9") is None  # the type is part of the key

        receipt = ReceiptDocument(external_ref="WC-1001-P1", order_number="1001", store_order_id="1001",
                                  payment_id="1", currency="EUR", date=date(2026, 3, 1),
                                  customer_key=cust.number, amount=D("114.94"), payment_method="20",
                                  reference="pi_123", applies_to=inv)
        paid = await post_document(erp, receipt)
        again_paid = await post_document(erp, receipt)
        assert (paid.total, again_paid.created, again_paid.number) == (D("114.94"), False, paid.number)

        docs = {d["your_ref"]: d for d in (await control.get("/_sandbox/documents")).json()}
        assert set(docs) == {"WC-1001", "WC-1001-R9", "WC-1001-P1"}
        assert D(str(docs["WC-1001"]["amount"])) == D("114.94") and docs["WC-1001"]["type"] == "invoice"
        assert D(str(docs["WC-1001-R9"]["amount"])) == D("-12.34")
        assert docs["WC-1001-P1"]["our_ref"] == int(inv.number) and docs["WC-1001-P1"]["journal"] == "20"
    finally:
        await erp.aclose()


async def test_unknown_vat_code_is_a_mapping_with_exacts_message(server, ca):
    served, control, _ = server
    erp = await connector(served, control, ca, division=777001)
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        doc = invoice(cust.number)
        doc.lines[0].tax_code = doc.taxes[0].tax_code = "99"
        with pytest.raises(MappingMissing) as err:
            await erp.create_document(doc)
        assert "VAT code 99 does not exist" in str(err.value) and "--tax" in str(err.value)
        assert (await control.get("/_sandbox/documents")).json() == []
    finally:
        await erp.aclose()


async def test_paces_under_the_minutely_quota_without_a_429(server, ca):
    served, control, state = server
    await control.post("/_sandbox/settings", json={"minutely_limit": 4, "minute_seconds": 0.5})
    erp = await connector(served, control, ca, division=777001)
    try:
        for i in range(10):
            assert await erp.find_document("invoice", f"WC-{i}") is None
        stats = (await control.get("/_sandbox/stats")).json()
        assert stats["rate_limited"] == 0 and stats["by_status"]["200"] == 10
        assert erp.pacer.waited > 0  # it slowed down before the window ran out
    finally:
        await erp.aclose()


async def test_429_names_the_reset(server, ca):
    served, control, _ = server
    await control.post("/_sandbox/faults", json={"storm_429": 1, "retry_after": 7})
    erp = await connector(served, control, ca, division=777001)
    try:
        with pytest.raises(eo.RateLimited) as err:
            await erp.find_document("invoice", "WC-1")
        assert 5 < err.value.retry_after <= 7
    finally:
        await erp.aclose()


async def test_refund_of_a_paid_invoice_is_paid_out_and_matched_with_the_credit_note(server, ca):
    """Invoice paid, then refunded: the credit note is outstanding (the customer's credit) until
    a bank line paying the money out, matched with it by OurRef, brings the account to zero."""
    served, control, _ = server
    erp = await connector(served, control, ca, division=777001)
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        await post_document(erp, ReceiptDocument(
            external_ref="WC-1001-P1", order_number="1001", store_order_id="1001",
            payment_id="1", currency="EUR", date=date(2026, 3, 1), customer_key=cust.number,
            amount=D("114.94"), payment_method="20", reference="pi_123", applies_to=inv))
        credit = await post_document(erp, ErpDocument(
            kind="credit_memo", external_ref="WC-1001-R9", order_number="1001",
            store_order_id="1001", currency="EUR", date=date(2026, 3, 2),
            customer_key=cust.number, applies_to=inv,
            lines=[DocumentLine(item_id="ADJUSTMENT", kind="adjustment", quantity=D(1),
                                unit_price=D("12.34"), amount=D("12.34"), gl_account="8000")]))
        [account] = (await control.get("/_sandbox/balances")).json()
        assert D(str(account["balance"])) == D("-12.34")
        doc = RefundPaymentDocument(
            external_ref="WC-1001-R9-P", order_number="1001", store_order_id="1001",
            refund_id="9", currency="EUR", date=date(2026, 3, 2), customer_key=cust.number,
            amount=D("12.34"), payment_method="20", reference="pi_123", applies_to=credit)
        paid_back = await post_document(erp, doc)
        assert (paid_back.kind, paid_back.total) == ("refund_payment", D("12.34"))
        docs = {d["your_ref"]: d for d in (await control.get("/_sandbox/documents")).json()}
        out = docs["WC-1001-R9-P"]
        assert (out["type"], D(str(out["amount"])), out["our_ref"]) == (
            "refund", D("-12.34"), int(credit.number))
        assert D(str(docs["WC-1001-R9"]["open"])) == 0 and D(str(docs["WC-1001"]["open"])) == 0
        [account] = (await control.get("/_sandbox/balances")).json()
        assert D(str(account["balance"])) == 0
        again = await post_document(erp, doc)
        assert (again.created, again.number, again.kind) == (False, paid_back.number,
                                                             "refund_payment")
        assert len([d for d in (await control.get("/_sandbox/documents")).json()
                    if d["type"] == "refund"]) == 1
    finally:
        await erp.aclose()


def note(inv, customer: str, refund_id: str, amount: str) -> ErpDocument:
    return ErpDocument(
        kind="credit_memo", external_ref=f"WC-1001-R{refund_id}", order_number="1001",
        store_order_id="1001", currency="EUR", date=date(2026, 3, 2), customer_key=customer,
        applies_to=inv, lines=[DocumentLine(item_id="ADJUSTMENT", kind="adjustment",
                                            quantity=D(1), unit_price=D(amount),
                                            amount=D(amount), gl_account="8000")])


async def test_credit_note_credit_is_what_the_orders_open_invoice_leaves(server, ca):
    """Exact keeps a credit note and its invoice outstanding side by side: the note holds no
    credit while the order's invoice still owes it (a refund before the payment), and only
    the order's net credit once cash paid part of the invoice (read/financial/ReceivablesList)."""
    served, control, _ = server
    erp = await connector(served, control, ca, division=777001)
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)  # 114.94
        first = await post_document(erp, note(inv, cust.number, "8", "10.00"))
        assert await erp.refund_credit(first) == 0  # unpaid: it only lowers what is owed
        await post_document(erp, ReceiptDocument(
            external_ref="WC-1001-P1", order_number="1001", store_order_id="1001",
            payment_id="1", currency="EUR", date=date(2026, 3, 1), customer_key=cust.number,
            amount=D("100.00"), payment_method="20", reference="pi_123", applies_to=inv))
        assert await erp.refund_credit(first) == 0  # 14.94 owed still takes all of it
        second = await post_document(erp, note(inv, cust.number, "9", "12.34"))
        assert await erp.refund_credit(second) == D("7.40")  # 12.34 less the 4.94 still owed
        await post_document(erp, RefundPaymentDocument(
            external_ref="WC-1001-R9-P", order_number="1001", store_order_id="1001",
            refund_id="9", currency="EUR", date=date(2026, 3, 2), customer_key=cust.number,
            amount=D("7.40"), payment_method="20", reference="pi_123", applies_to=second))
        assert await erp.refund_credit(second) == 0
        [account] = (await control.get("/_sandbox/balances")).json()
        assert D(str(account["balance"])) == 0
    finally:
        await erp.aclose()

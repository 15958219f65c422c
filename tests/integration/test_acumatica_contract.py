"""The Acumatica connector against the Acumatica sandbox over TLS: written independently,
from the same reference, so a shared misunderstanding cannot hide."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from connectors.acumatica import AcumaticaCredentials, AcumaticaErp, AcumaticaSettings
from connectors.auth import MemoryTokenStore
from connectors.base import post_document
from connectors.documents import (DocumentLine, DocumentTax, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument)
from connectors.errors import ConfigurationError, MappingMissing, Rejected, Unavailable
from connectors.model import Address, Customer, ErpDocumentRef
from sandbox import acumatica as acumatica_sandbox
from sandbox.server import LocalCA, serving

CLIENT = "11111111-2222-3333-4444-555555555555@Company"


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def erp_server(ca):
    app = acumatica_sandbox.create_app(client_id=CLIENT)
    state = app.state.acumatica
    state.add_stock_item("HOODIE-M", default_price=30, qty_on_hand=5, warehouse_id="MAIN")
    for item in ("SHIPPING", "ADJUSTMENT", "ROUNDING"):
        state.add_non_stock_item(item)
    state.add_tax("CATAX")
    state.add_cash_account("10200", currency="USD")
    state.add_cash_account("10250", currency="EUR")
    state.add_payment_method("CARD", cash_account="10200", cash_accounts=("10250",))
    async with serving(app, tls=ca) as served:
        yield served, app


def connector(url: str, ca: LocalCA, version: str = "24.200.001", store=None,
              **settings) -> AcumaticaErp:
    erp = AcumaticaErp(
        AcumaticaSettings(instance_url=url, endpoint_version=version, ca_bundle=str(ca.ca_file),
                          **settings),
        AcumaticaCredentials(client_id=CLIENT, client_secret="secret", username="admin", password="admin"),
        store or MemoryTokenStore())
    erp.release_first_poll_seconds = erp.release_poll_seconds = 0.01  # done on the second poll
    return erp


def invoice(customer: str, ref: str = "WC-1") -> ErpDocument:
    return ErpDocument(
        kind="invoice", external_ref=ref, order_number="1001", store_order_id="1", currency="EUR",
        date=date(2026, 3, 1), customer_key=customer,
        lines=[DocumentLine(item_id="HOODIE-M", sku="HOODIE-M", quantity=D(3), unit_price=D("33.333333"),
                            discount=D("10.00"), amount=D("90.00")),
               DocumentLine(item_id="SHIPPING", quantity=D(1), unit_price=D("5.00"), amount=D("5.00"))],
        taxes=[DocumentTax(tax_code="CATAX", taxable_amount=D("95.00"), amount=D("7.84"))])


ANN = Customer(store_id="5", email="ann@example.com", first_name="Ann", last_name="Buyer",
               billing=Address(line1="1 Main St", city="Oakland", country="US"))


async def test_customer_invoice_credit_memo_round_trip(erp_server, ca):
    served, app = erp_server
    erp = connector(served.url, ca)
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        again = await erp.upsert_customer(ANN, "WC-C5")
        assert cust.number == again.number and len(app.state.acumatica.customers()) == 1
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        assert inv.total == D("102.84") and inv.currency == "EUR"
        same = await post_document(erp, invoice(cust.number))
        assert (same.number, same.created) == (inv.number, False)
        memo = ErpDocument(kind="credit_memo", external_ref="WC-1-R9", order_number="1001",
                           store_order_id="1", currency="EUR", date=date(2026, 3, 2),
                           customer_key=cust.number, applies_to=inv,
                           lines=[DocumentLine(item_id="ADJUSTMENT", quantity=D(1),
                                               unit_price=D("12.34"), amount=D("12.34"))])
        ref = await post_document(erp, memo)
        assert ref.total == D("12.34")
        [doc] = [d for d in app.state.acumatica.documents() if d["number"] == inv.number]
        assert D(doc["balance"]) == D("90.50") and doc["status"] == "Open"
    finally:
        await erp.aclose()


async def test_unknown_item_is_a_mapping_to_add(erp_server, ca):
    served, app = erp_server
    erp = connector(served.url, ca)
    doc = invoice("C1")
    doc.lines[0].item_id = doc.lines[0].sku = "NOPE-1"
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        doc.customer_key = cust.number
        with pytest.raises(MappingMissing) as err:
            await erp.create_document(doc)
        assert "NOPE-1" in str(err.value) and "Resolution" in str(err.value)
        assert app.state.acumatica.documents() == []
    finally:
        await erp.aclose()


async def test_wrong_endpoint_version_names_tried_and_served(erp_server, ca):
    served, _ = erp_server
    erp = connector(served.url, ca, version="23.100.001")
    try:
        with pytest.raises(ConfigurationError) as err:
            await erp.find_document("invoice", "WC-1")
        assert "23.100.001" in str(err.value) and "24.200.001" in str(err.value)
    finally:
        await erp.aclose()


async def test_item_changes_since(erp_server, ca):
    served, _ = erp_server
    erp = connector(served.url, ca)
    try:
        since = datetime.now(timezone.utc) - timedelta(hours=1)
        changes = [c async for c in erp.iter_item_changes(since)]
        assert [c.sku for c in changes] == ["HOODIE-M"] and changes[0].price == D("30")
    finally:
        await erp.aclose()


def receipt(invoice: ErpDocumentRef, customer: str, **overrides) -> ReceiptDocument:
    fields = dict(external_ref="WC-1-P7", order_number="1001", store_order_id="1", payment_id="7",
                  currency="EUR", date=date(2026, 3, 1), customer_key=customer,
                  amount=D("102.84"), payment_method="CARD", reference="ch_3PqXyZ",
                  description="Payment 7 of order 1001", applies_to=invoice)
    fields.update(overrides)
    return ReceiptDocument(**fields)


def memo(invoice: ErpDocumentRef, customer: str) -> ErpDocument:
    return ErpDocument(kind="credit_memo", external_ref="WC-1-R9", order_number="1001",
                       store_order_id="1", currency="EUR", date=date(2026, 3, 2),
                       customer_key=customer, applies_to=invoice,
                       lines=[DocumentLine(item_id="ADJUSTMENT", quantity=D(1),
                                           unit_price=D("12.34"), amount=D("12.34"))])


def by_type(app, type_: str) -> list[dict]:
    return app.state.acumatica.documents(type_)


async def test_invoice_paid_by_a_receipt_then_refunded(erp_server, ca):
    served, app = erp_server
    erp = connector(served.url, ca, cash_accounts={"EUR": "10250"})
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        pmt = await post_document(erp, receipt(inv, cust.number))
        assert (pmt.kind, pmt.doc_type, pmt.total, pmt.currency) == ("receipt", "Payment",
                                                                      D("102.84"), "EUR")
        [doc] = by_type(app, "Invoice")
        assert (doc["status"], D(doc["balance"])) == ("Closed", 0)
        [paid] = by_type(app, "Payment")
        assert {k: paid[k] for k in ("external_ref", "amount", "currency", "status",
                                     "payment_ref", "cash_account")} == {
            "external_ref": "WC-1-P7", "amount": "102.84", "currency": "EUR", "status": "Closed",
            "payment_ref": "ch_3PqXyZ", "cash_account": "10250"}
        again = await post_document(erp, receipt(inv, cust.number))
        assert (again.number, again.created) == (pmt.number, False)
        assert len(by_type(app, "Payment")) == 1
        refund = await post_document(erp, memo(inv, cust.number))  # a paid invoice takes no memo
        assert refund.total == D("12.34")
        [credit] = by_type(app, "Credit Memo")
        assert (credit["status"], credit["balance"], credit["applications"]) == ("Open", "12.34", [])
    finally:
        await erp.aclose()


async def test_receipt_meeting_a_part_paid_invoice_applies_what_is_open(erp_server, ca):
    """The sandbox refuses an application above the invoice's balance, as Acumatica does (422,
    the error on the row's AmountPaid): the payment is sent again with what is open, and a
    third one, meeting a paid invoice, goes unapplied. The books add up to the cent."""
    served, app = erp_server
    erp = connector(served.url, ca, cash_accounts={"EUR": "10250"})
    log = app.state.acumatica.request_log
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        start = len(log)
        await erp.create_receipt(receipt(inv, cust.number, external_ref="WC-1-P1", amount=D("60.00")))
        assert [(e["method"], e["entity"]) for e in log[start:] if "/status/" not in e["path"]] == [
            ("PUT", "Payment"), ("POST", "Payment")]  # no balance read for a fresh invoice
        start = len(log)
        await erp.create_receipt(receipt(inv, cust.number, external_ref="WC-1-P2"))
        sent = [(e["method"], e["entity"], e["status"]) for e in log[start:] if "/status/" not in e["path"]]
        assert sent == [("PUT", "Payment", 422), ("GET", "SalesInvoice", 200), ("PUT", "Payment", 200),
                        ("POST", "Payment", 202)]
        await erp.create_receipt(receipt(inv, cust.number, external_ref="WC-1-P3", amount=D("5.00")))
        [doc] = by_type(app, "Invoice")
        assert (doc["status"], D(doc["balance"])) == ("Closed", 0)
        payments = {p["external_ref"]: p for p in by_type(app, "Payment")}
        assert {ref: (p["amount"], p["balance"], p["status"]) for ref, p in payments.items()} == {
            "WC-1-P1": ("60.00", "0.00", "Closed"), "WC-1-P2": ("102.84", "60.00", "Open"),
            "WC-1-P3": ("5.00", "5.00", "Open")}
    finally:
        await erp.aclose()


async def test_sales_order_paid_by_a_receipt(erp_server, ca):
    served, app = erp_server
    erp = connector(served.url, ca, document_type="sales_order", cash_accounts={"EUR": "10250"})
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        order = await post_document(erp, invoice(cust.number), look_up_first=False)
        assert (order.kind, order.doc_type, order.total, order.currency) == (
            "invoice", "SO", D("102.84"), "EUR")
        same = await post_document(erp, invoice(cust.number))
        assert (same.number, same.created) == (order.number, False)
        await post_document(erp, receipt(order, cust.number))
        [doc] = by_type(app, "Sales Order")
        assert {k: doc[k] for k in ("external_ref", "customer_order", "amount", "balance",
                                    "status")} == {
            "external_ref": "WC-1", "customer_order": "1001", "amount": "102.84",
            "balance": "0.00", "status": "Open"}
        assert D(doc["tax_total"]) == D("7.84") and by_type(app, "Invoice") == []
        found = await erp.find_document("receipt", "WC-1-P7")
        assert found is not None and found.total == D("102.84")
        await post_document(erp, memo(order, cust.number))
        assert [d["type"] for d in app.state.acumatica.documents()] == [
            "Credit Memo", "Payment", "Sales Order"]
    finally:
        await erp.aclose()


async def test_receipt_mapping_problems_name_the_fix(erp_server, ca):
    served, app = erp_server
    erp = connector(served.url, ca)
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        with pytest.raises(MappingMissing) as unknown:
            await erp.create_receipt(receipt(inv, cust.number, payment_method="BITCOIN"))
        assert "BITCOIN" in str(unknown.value) and "Resolution" in str(unknown.value)
        with pytest.raises(MappingMissing) as currency:  # CARD's default cash account is USD
            await erp.create_receipt(receipt(inv, cust.number))
        assert "EUR" in currency.value.resolution and "cash_accounts" in currency.value.resolution
        assert by_type(app, "Payment") == []
    finally:
        await erp.aclose()


async def test_receipt_whose_response_was_lost_is_found_and_released(erp_server, ca):
    served, app = erp_server
    erp = connector(served.url, ca, cash_accounts={"EUR": "10250"})
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        app.state.faults.configure(lose_next_commits=1)
        with pytest.raises(Unavailable):
            await post_document(erp, receipt(inv, cust.number), look_up_first=False)
        [draft] = by_type(app, "Payment")
        assert draft["status"] == "Balanced"  # saved, never released
        found = await post_document(erp, receipt(inv, cust.number))
        assert (found.number, found.created) == (draft["number"], False)
        assert [d["status"] for d in by_type(app, "Payment")] == ["Closed"]
        assert by_type(app, "Invoice")[0]["status"] == "Closed"
    finally:
        await erp.aclose()


def cash_back(credit: ErpDocumentRef, customer: str, amount: str = "12.34") -> RefundPaymentDocument:
    return RefundPaymentDocument(
        external_ref="WC-1-R9-P", order_number="1001", store_order_id="1", refund_id="9",
        currency="EUR", date=date(2026, 3, 2), customer_key=customer, amount=D(amount),
        payment_method="CARD", reference="ch_3PqXyZ", description="Refund 9 paid back",
        applies_to=credit)


async def test_refund_of_a_paid_invoice_is_paid_back_and_the_credit_closes(erp_server, ca):
    """Invoice paid, then refunded: the credit memo stays open as the customer's credit until
    the Refund applied to it closes it; the customer's balance ends at zero."""
    served, app = erp_server
    erp = connector(served.url, ca, cash_accounts={"EUR": "10250"})
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        await post_document(erp, receipt(inv, cust.number))
        credit = await post_document(erp, memo(inv, cust.number))
        balance = {c["customer_id"]: D(c["balance"]) for c in app.state.acumatica.customers()}
        assert balance[cust.number] == D("-12.34")  # the open memo: a credit on the account
        paid_back = await post_document(erp, cash_back(credit, cust.number))
        assert (paid_back.kind, paid_back.doc_type, paid_back.total) == (
            "refund_payment", "Refund", D("12.34"))
        [refund] = by_type(app, "Refund")
        assert (refund["external_ref"], refund["status"], refund["amount"], refund["balance"]) == (
            "WC-1-R9-P", "Closed", "12.34", "0.00")
        assert credit.number in str(refund["applications"])  # applied to the memo
        [closed] = by_type(app, "Credit Memo")
        assert (closed["status"], D(closed["balance"])) == ("Closed", 0)
        balance = {c["customer_id"]: D(c["balance"]) for c in app.state.acumatica.customers()}
        assert balance[cust.number] == 0
        again = await post_document(erp, cash_back(credit, cust.number))
        assert (again.number, again.created) == (paid_back.number, False)  # found, not re-paid
        assert len(by_type(app, "Refund")) == 1
    finally:
        await erp.aclose()


async def test_refund_above_the_memos_credit_is_refused_naming_the_manual_step(erp_server, ca):
    """A memo applied to an unpaid invoice holds no credit: Acumatica refuses a Refund on it
    and nothing is saved; the error names the manual refund."""
    served, app = erp_server
    erp = connector(served.url, ca, cash_accounts={"EUR": "10250"})
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        credit = await post_document(erp, memo(inv, cust.number))  # applied to the open invoice
        with pytest.raises(Rejected) as err:
            await erp.create_refund_payment(cash_back(credit, cust.number))
        assert "Resolution" in str(err.value) and "WC-1-R9-P" in str(err.value)
        assert by_type(app, "Refund") == []
    finally:
        await erp.aclose()


async def test_memo_credit_is_what_its_open_invoice_did_not_take(erp_server, ca):
    """The credit a memo holds for its cash-back (its Balance): none when it settled an unpaid
    invoice (a refund before the payment), the rest when the invoice owed less than the
    refund; a Refund of that rest closes it and the customer owes nothing."""
    served, app = erp_server
    erp = connector(served.url, ca, cash_accounts={"EUR": "10250"})
    try:
        cust = await erp.upsert_customer(ANN, "WC-C5")
        inv = await post_document(erp, invoice(cust.number), look_up_first=False)
        credit = await post_document(erp, memo(inv, cust.number))  # applied: invoice unpaid
        assert await erp.refund_credit(credit) == 0
        other = await post_document(erp, invoice(cust.number, "WC-2"), look_up_first=False)
        await post_document(erp, receipt(other, cust.number, external_ref="WC-2-P1",
                                         amount=D("95.00")))  # 7.84 left open
        part = await post_document(erp, memo(other, cust.number).model_copy(
            update={"external_ref": "WC-2-R9"}))
        assert await erp.refund_credit(part) == D("4.50")  # 12.34 less the 7.84 it settled
        await post_document(erp, cash_back(part, cust.number, "4.50").model_copy(
            update={"external_ref": "WC-2-R9-P"}))
        assert await erp.refund_credit(part) == 0
        balance = {c["customer_id"]: D(c["balance"]) for c in app.state.acumatica.customers()}
        assert balance[cust.number] == D("102.84") - D("12.34")  # the first invoice's rest
    finally:
        await erp.aclose()


async def test_unreleased_memo_takes_no_refund_and_the_message_says_release_it(erp_server, ca):
    served, app = erp_server
    erp = connector(served.url, ca, cash_accounts={"EUR": "10250"}, release_documents=False)
    try:
        credit = ErpDocumentRef(system="acumatica", kind="credit_memo", doc_type="Credit Memo",
                                number="CRM000001", external_ref="WC-1-R9")
        with pytest.raises(Rejected) as err:
            await erp.create_refund_payment(cash_back(credit, "C000001"))
        assert "release credit memo CRM000001" in str(err.value)
    finally:
        await erp.aclose()

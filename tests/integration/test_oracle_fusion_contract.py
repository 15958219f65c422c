"""The Oracle Fusion connector against the Oracle Fusion sandbox over TLS on a real socket:
written independently, from the same reference, so a shared misunderstanding cannot hide."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import httpx
import pytest

from connectors.auth import MemoryTokenStore
from connectors.base import post_document
from connectors.documents import (DocumentLine, DocumentTax, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument)
from connectors.errors import RateLimited, Rejected
from connectors.model import Address, Customer
from connectors.oracle_fusion import open_connector
from sandbox.server import LocalCA, serving
from starter.sandboxes.oracle_fusion import ADAPTER

ANN = Customer(store_id="5", email="ann@example.com", first_name="Ann", last_name="Buyer",
               billing=Address(line1="1 Main St", city="Oakland", country="US"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def pod(ca):
    async with serving(ADAPTER.create_app(), tls=ca) as served:
        async with httpx.AsyncClient(verify=str(ca.ca_file), base_url=served.url) as control:
            await ADAPTER.seed(control, served.url, ["HOODIE-M"])
            settings, credentials = ADAPTER.connection(served.url, str(ca.ca_file))
            erp = open_connector(settings, credentials, tokens=MemoryTokenStore())
            try:
                yield erp, control
            finally:
                await erp.aclose()


def line(item: str, kind: str, qty: str, unit: str, amount: str, tax: str, account: str,
         discount: str = "0") -> DocumentLine:
    return DocumentLine(item_id=item, sku=item if kind == "product" else None, kind=kind,
                        description=item.title(), quantity=D(qty), unit_price=D(unit),
                        discount=D(discount), amount=D(amount), tax=D(tax),
                        tax_code="CA-STD" if D(tax) else "", gl_account=account, cost_center="100")


def invoice(customer: str) -> ErpDocument:
    return ErpDocument(
        kind="invoice", external_ref="WC-1", order_number="1001", store_order_id="1",
        currency="USD", date=date(2026, 3, 1), customer_key=customer, description="order 1001",
        lines=[line("HOODIE-M", "product", "3", "33.333333", "90.00", "7.42", "4000", "10.00"),
               line("SHIPPING", "shipping", "1", "5.00", "5.00", "0.41", "4100")],
        taxes=[DocumentTax(tax_code="CA-STD", taxable_amount=D("95.00"), amount=D("7.84"))])


def four_off(cust, inv, memo_line: DocumentLine) -> ErpDocument:
    """Refund R1 of order 1001: one 4.00 line credited against its invoice."""
    return ErpDocument(kind="credit_memo", external_ref="WC-1-R1", order_number="1001",
                       store_order_id="1", currency="USD", date=date(2026, 3, 2),
                       customer_key=cust.number, applies_to=inv, lines=[memo_line])


async def books(control: httpx.AsyncClient) -> dict[str, dict]:
    return {d.external_ref: d.raw for d in await ADAPTER.documents(control, str(control.base_url))}


async def test_customer_invoice_credit_memo_receipt_to_the_cent(pod):
    erp, control = pod
    cust = await erp.upsert_customer(ANN, "WC-C5")
    again = await erp.upsert_customer(ANN, "WC-C5")
    assert (again.number, again.created) == (cust.number, False)
    assert len(await ADAPTER.customers(control, str(control.base_url))) == 1

    inv = await post_document(erp, invoice(cust.number), look_up_first=False)
    assert (inv.total, inv.currency) == (D("102.84"), "USD")
    found = await erp.find_document("invoice", "WC-1")
    assert (found.id, found.total, found.created) == (inv.id, D("102.84"), False)

    memo = ErpDocument(kind="credit_memo", external_ref="WC-1-R9", order_number="1001",
                       store_order_id="1", currency="USD", date=date(2026, 3, 2),
                       customer_key=cust.number, applies_to=inv,
                       lines=[line("HOODIE-M", "product", "1", "30.00", "30.00", "2.47", "4000")],
                       taxes=[DocumentTax(tax_code="CA-STD", taxable_amount=D("30"),
                                          amount=D("2.47"))])
    credit = await post_document(erp, memo)
    assert credit.total == D("32.47")
    assert (await books(control))["WC-1"]["balance"] == D("70.37")  # reduced by the memo

    receipt = ReceiptDocument(
        external_ref="WC-1-P1", order_number="1001", store_order_id="1", payment_id="1",
        currency="USD", date=date(2026, 3, 1), customer_key=cust.number, amount=D("70.37"),
        payment_method="Credit Card", reference="ch_123", applies_to=inv)
    paid = await post_document(erp, receipt)
    assert paid.total == D("70.37")
    docs = await books(control)
    assert docs["WC-1"]["balance"] == 0 and docs["WC-1-P1"]["balance"] == 0
    assert docs["WC-1-R9"]["amount"] == D("-32.47") and docs["WC-1-R9"]["balance"] == 0
    assert (await post_document(erp, receipt)).created is False  # found again, not re-posted
    assert len(await books(control)) == 3


async def test_lost_memo_response_is_found_and_applied_on_retry(pod):
    erp, control = pod
    cust = await erp.upsert_customer(ANN, "WC-C5")
    inv = await erp.create_document(invoice(cust.number))
    memo = four_off(cust, inv, line("ADJUSTMENT", "adjustment", "1", "4.00", "4.00", "0", "4300"))
    await control.post("/_sandbox/faults", json={"lose_next_commits": 1})
    with pytest.raises(Exception):
        await erp.create_document(memo)  # the memo committed, its answer was lost
    assert (await books(control))["WC-1"]["balance"] == D("102.84")
    ref = await post_document(erp, memo)  # the retry finds it and finishes the application
    assert ref.created is False and ref.total == D("4.00")
    docs = await books(control)
    assert docs["WC-1"]["balance"] == D("98.84") and len(docs) == 2


async def test_expired_token_is_refreshed_once(pod):
    erp, control = pod
    await erp.find_document("invoice", "WC-404")
    before = (await control.get("/_sandbox/stats")).json()["token_requests"]
    await ADAPTER.expire_tokens(control, str(control.base_url))
    assert await erp.find_document("invoice", "WC-404") is None
    after = (await control.get("/_sandbox/stats")).json()
    assert after["token_requests"] == before + 1 and after["by_status"]["401"] == 1


async def test_429_is_rate_limited_with_the_server_retry_after(pod):
    erp, control = pod
    await control.post("/_sandbox/faults", json={"storm_429": 1, "retry_after": 3})
    with pytest.raises(RateLimited) as caught:
        await erp.find_document("invoice", "WC-1")
    assert caught.value.retry_after == 3
    assert await erp.find_document("invoice", "WC-1") is None  # the storm is over


async def test_a_new_customer_costs_one_look_up_its_party_and_its_account(pod):
    """One ``or`` look-up for the three matches, the party, then the account over SOAP: a party
    just created has no account to read first."""
    erp, control = pod
    before = await ADAPTER.requests_by_route(control, str(control.base_url))
    cust = await erp.upsert_customer(ANN, "WC-C5")
    after = await ADAPTER.requests_by_route(control, str(control.base_url))
    spent = {route: n - before.get(route, 0) for route, n in after.items() if n != before.get(route, 0)}
    assert cust.created and spent == {"GET accounts": 1, "POST accounts": 1,
                                      "POST CustomerAccountService": 1}
    again = await erp.upsert_customer(ANN, "WC-C5")
    assert (again.number, again.created) == (cust.number, False)


async def test_a_memo_or_receipt_costs_one_batch_and_its_application(pod):
    """Creating the document and reading the invoice's open installment (which the application
    needs) go in one batch request; the application follows it."""
    erp, control = pod
    cust = await erp.upsert_customer(ANN, "WC-C5")
    inv = await erp.create_document(invoice(cust.number))
    memo = four_off(cust, inv, line("HOODIE-M", "product", "1", "4.00", "4.00", "0", "4000"))
    receipt = ReceiptDocument(
        external_ref="WC-1-P1", order_number="1001", store_order_id="1", payment_id="1",
        currency="USD", date=date(2026, 3, 1), customer_key=cust.number, amount=D("98.84"),
        payment_method="Credit Card", reference="ch_1", applies_to=inv)
    await erp.validate_receipt_method("Credit Card")  # reference data, read once and cached
    spent = []
    for doc, create in ((memo, erp.create_document), (receipt, erp.create_receipt)):
        before = await ADAPTER.requests_by_route(control, str(control.base_url))
        await create(doc)
        after = await ADAPTER.requests_by_route(control, str(control.base_url))
        spent.append({r: n - before.get(r, 0) for r, n in after.items() if n != before.get(r, 0)})
    assert spent == [{"POST batch": 1, "POST CreditMemoService": 1},
                     {"POST batch": 1, "POST standardReceipts": 1}]  # the latter applyReceipt
    docs = await books(control)
    assert docs["WC-1"]["balance"] == 0 and docs["WC-1-R1"]["balance"] == 0
    assert docs["WC-1-P1"]["balance"] == 0


def cash_back(credit, customer: str, amount: str = "32.47") -> RefundPaymentDocument:
    return RefundPaymentDocument(
        external_ref="WC-1-R9-P", order_number="1001", store_order_id="1", refund_id="9",
        currency="USD", date=date(2026, 3, 2), customer_key=customer, amount=D(amount),
        payment_method="Credit Card", reference="ch_123", applies_to=credit)


async def test_refund_of_a_paid_invoice_refunds_the_on_account_credit(pod):
    """Invoice paid, then refunded: the memo stays on account (nothing open to apply it to)
    until createOnAccountCreditMemoRefund pays it back; the account's balance ends at zero."""
    erp, control = pod
    cust = await erp.upsert_customer(ANN, "WC-C5")
    inv = await post_document(erp, invoice(cust.number), look_up_first=False)
    await post_document(erp, ReceiptDocument(
        external_ref="WC-1-P1", order_number="1001", store_order_id="1", payment_id="1",
        currency="USD", date=date(2026, 3, 1), customer_key=cust.number, amount=D("102.84"),
        payment_method="Credit Card", reference="ch_123", applies_to=inv))
    memo = ErpDocument(kind="credit_memo", external_ref="WC-1-R9", order_number="1001",
                       store_order_id="1", currency="USD", date=date(2026, 3, 2),
                       customer_key=cust.number, applies_to=inv,
                       lines=[line("HOODIE-M", "product", "1", "30.00", "30.00", "2.47", "4000")],
                       taxes=[DocumentTax(tax_code="CA-STD", taxable_amount=D("30"),
                                          amount=D("2.47"))])
    credit = await post_document(erp, memo)
    assert (await books(control))["WC-1-R9"]["balance"] == D("-32.47")  # on account
    [account] = await ADAPTER.customers(control, str(control.base_url))
    assert D(str(account["balance"])) == D("-32.47")
    assert await erp.find_document("refund_payment", "WC-1-R9-P") is None  # not refunded yet

    paid_back = await post_document(erp, cash_back(credit, cust.number))
    assert (paid_back.kind, paid_back.total, paid_back.created) == ("refund_payment", D("32.47"),
                                                                    True)
    docs = await books(control)
    assert docs["WC-1-R9"]["balance"] == 0
    refund = docs["WC-1-R9-P"]
    assert (refund["kind"], refund["amount"], refund["credit_memo"]) == (
        "refund_payment", D("32.47"), "WC-1-R9")
    [account] = await ADAPTER.customers(control, str(control.base_url))
    assert D(str(account["balance"])) == 0
    again = await post_document(erp, cash_back(credit, cust.number))
    assert again.created is False  # found through its memo, not refunded twice
    assert len([d for d in docs.values() if d["kind"] == "refund_payment"]) == 1
    assert len([d for d in (await books(control)).values()
                if d["kind"] == "refund_payment"]) == 1


async def test_refund_above_the_memos_credit_is_refused_naming_the_manual_step(pod):
    erp, control = pod
    cust = await erp.upsert_customer(ANN, "WC-C5")
    inv = await post_document(erp, invoice(cust.number), look_up_first=False)
    credit = await post_document(erp, four_off(cust, inv, line(
        "ADJUSTMENT", "adjustment", "1", "4.00", "4.00", "0", "4300")))  # applied: invoice open
    with pytest.raises(Rejected) as err:
        await erp.create_refund_payment(cash_back(credit, cust.number, "4.00"))
    assert "Resolution" in str(err.value) and "unapplied" in str(err.value)
    assert [d for d in (await books(control)).values() if d["kind"] == "refund_payment"] == []


async def test_a_memo_applied_in_full_to_an_unpaid_invoice_holds_no_credit_and_is_no_refund(pod):
    """A refund before the payment: the memo settles the open invoice, nothing is left on
    account, and its applications tell it apart from a refunded memo (both show nothing
    unapplied)."""
    erp, control = pod
    cust = await erp.upsert_customer(ANN, "WC-C5")
    inv = await post_document(erp, invoice(cust.number), look_up_first=False)
    credit = await post_document(erp, four_off(cust, inv, line(
        "ADJUSTMENT", "adjustment", "1", "4.00", "4.00", "0", "4300")))
    assert (await books(control))["WC-1-R1"]["balance"] == 0
    assert await erp.refund_credit(credit) == 0
    assert await erp.find_document("refund_payment", "WC-1-R1-P") is None


async def test_a_memo_larger_than_the_open_invoice_pays_back_only_its_rest(pod):
    """Invoice 102.84 of which 100.00 paid; a 32.47 refund settles the 2.84 still open and
    holds 29.63 on account: that is what is paid back, and found again as such."""
    erp, control = pod
    cust = await erp.upsert_customer(ANN, "WC-C5")
    inv = await post_document(erp, invoice(cust.number), look_up_first=False)
    await post_document(erp, ReceiptDocument(
        external_ref="WC-1-P1", order_number="1001", store_order_id="1", payment_id="1",
        currency="USD", date=date(2026, 3, 1), customer_key=cust.number, amount=D("100.00"),
        payment_method="Credit Card", reference="ch_123", applies_to=inv))
    memo = ErpDocument(kind="credit_memo", external_ref="WC-1-R9", order_number="1001",
                       store_order_id="1", currency="USD", date=date(2026, 3, 2),
                       customer_key=cust.number, applies_to=inv,
                       lines=[line("HOODIE-M", "product", "1", "30.00", "30.00", "2.47", "4000")],
                       taxes=[DocumentTax(tax_code="CA-STD", taxable_amount=D("30"),
                                          amount=D("2.47"))])
    credit = await post_document(erp, memo)
    assert await erp.refund_credit(credit) == D("29.63")
    assert await erp.find_document("refund_payment", "WC-1-R9-P") is None
    paid_back = await post_document(erp, cash_back(credit, cust.number, "29.63"))
    assert (paid_back.total, paid_back.created) == (D("29.63"), True)
    assert await erp.refund_credit(credit) == 0
    found = await erp.find_document("refund_payment", "WC-1-R9-P")
    assert (found.total, found.created) == (D("29.63"), False)
    [account] = await ADAPTER.customers(control, str(control.base_url))
    assert D(str(account["balance"])) == 0


async def test_without_a_refund_payment_method_the_cash_back_parks_naming_the_manual_step(pod, ca):
    """Oracle refunds a memo only through Payables, which would pay the buyer again: with no
    payment method named for it, nothing is sent and the error names the manual refund."""
    erp, control = pod
    settings, credentials = ADAPTER.connection(str(control.base_url), str(ca.ca_file),
                                               refund_payment_method="")
    bare = open_connector(settings, credentials, tokens=MemoryTokenStore())
    try:
        cust = await bare.upsert_customer(ANN, "WC-C5")
        inv = await post_document(bare, invoice(cust.number), look_up_first=False)
        credit = await post_document(bare, four_off(cust, inv, line(
            "ADJUSTMENT", "adjustment", "1", "4.00", "4.00", "0", "4300")))
        with pytest.raises(Rejected) as err:
            await bare.create_refund_payment(cash_back(credit, cust.number, "4.00"))
        assert "Payables" in str(err.value) and "refund_payment_method" in err.value.resolution
        assert [d for d in (await books(control)).values() if d["kind"] == "refund_payment"] == []
    finally:
        await bare.aclose()

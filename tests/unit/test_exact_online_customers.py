"""Exact Online customers both ways and goods deliveries: the connector against the Exact
simulator through httpx.ASGITransport (both written from the reference, independently)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import httpx
import pytest

from connectors import exact_online as eo
from connectors.auth import MemoryTokenStore
from connectors.model import Address, Customer
from sandbox import exact_online as sandbox

CLIENT = {"client_id": "9a8b7c6d-0000-4000-8000-000000000001", "client_secret": "sandbox-secret"}
REDIRECT = "http://127.0.0.1:8765/callback"
BASE = "https://exact.test"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ANN = Customer(store_id="5", email="ann@example.com", first_name="Ann", last_name="Buyer",
               phone="+31 20 555 0101",
               billing=Address(line1="Damrak 1", city="Amsterdam", postcode="1012 LG",
                               state="NH", country="nl"))
SEED = {"gl_accounts": [{"Code": "8000", "Description": "Revenue", "Type": 110}],
        "vat_codes": [{"Code": "2", "Description": "VAT 21%", "Percentage": "0.21"}],
        "items": [{"Code": "HOODIE-M", "Description": "Hoodie M", "GLRevenueCode": "8000"}]}


@pytest.fixture
def app():
    return sandbox.create_app(redirect_uris=(REDIRECT,), **CLIENT)


@pytest.fixture
async def control(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        assert (await c.post("/_sandbox/seed", json=SEED)).status_code == 200
        yield c


@pytest.fixture
async def erp(app, control):
    code = sandbox.grant_code(app, REDIRECT)
    connector = eo.open_connector(
        {"base_url": BASE, "redirect_uri": REDIRECT},
        {**CLIENT, "authorization_code": code}, tokens=MemoryTokenStore(),
        transport=httpx.ASGITransport(app=app))
    yield connector
    await connector.aclose()


def puts(app) -> int:
    return app.state.exact.stats["by_route"].get("PUT crm/Accounts", 0)


async def accounts(control) -> list[dict]:
    return (await control.get("/_sandbox/accounts")).json()


async def test_created_account_reads_back_as_the_inverse_of_what_was_written(erp, control):
    ref = await erp.upsert_customer(ANN, "WC-C5")
    [account] = await accounts(control)
    assert account["Remarks"] == "[ml-connector WC-C5]" and account["State"] == "NH"
    assert account["Code"].strip() == eo.customer_code_for("WC-C5") and ref.id == account["ID"]
    back = await erp.get_customer("WC-C5")
    assert (back.company, back.email, back.phone) == ("Ann Buyer", "ann@example.com", ANN.phone)
    assert back.billing == Address(line1="Damrak 1", city="Amsterdam", postcode="1012 LG",
                                   state="NH", country="NL", phone=ANN.phone)
    assert await erp.get_customer("WC-C6") is None


async def test_matched_account_gets_name_address_email_and_phone_merged(app, erp, control):
    await erp.upsert_customer(ANN, "WC-C5")
    moved = ANN.model_copy(update={
        "email": "ann.new@example.com", "last_name": "Smith", "phone": "+31 20 555 0202",
        "billing": ANN.billing.model_copy(update={"line1": "Prinsengracht 2", "city": "Haarlem"})})
    again = await erp.upsert_customer(moved, "WC-C5")
    assert not again.created and puts(app) == 1
    [account] = await accounts(control)
    assert (account["Name"], account["Email"], account["AddressLine1"], account["City"],
            account["Phone"]) == ("Ann Smith", "ann.new@example.com", "Prinsengracht 2",
                                  "Haarlem", "+31 20 555 0202")
    assert await erp.upsert_customer(moved, "WC-C5") and puts(app) == 1  # nothing new: no PUT


async def test_an_account_the_merchant_made_is_never_written_to(app, erp, control):
    """Neither a prospect with the buyer's e-mail (any case) nor one carrying our tag in its
    Remarks is ours: each stays as it was, and the buyer gets an account of its own. With the
    "email" policy a customer account with the e-mail is booked to, untouched."""
    await control.post("/_sandbox/seed", json={"accounts": [
        {"Code": "400", "Name": "Ann B.", "Email": "ANN@Example.com", "Status": "P",
         "Remarks": "VIP"},
        {"Code": "401", "Name": "Supplier Ann", "Email": "ann@example.com", "Status": "A",
         "IsSupplier": True},
        {"Code": "402", "Name": "Tagged", "Email": "x@example.com", "Status": "C",
         "Remarks": "[ml-connector WC-C5]"}]})
    before = {a["Code"]: a for a in await accounts(control)}
    other = await erp.upsert_customer(ANN.model_copy(update={"store_id": "6"}), "WC-C6",
                                      match="email")  # a prospect and a supplier: no customers
    own = await erp.upsert_customer(ANN, "WC-C5")  # "own": never another's account
    assert other.created and own.created and other.id != own.id and puts(app) == 0
    await control.post("/_sandbox/seed", json={"accounts": [
        {"Code": "403", "Name": "ACME", "Email": "Pat@ACME.example", "Status": "C",
         "Phone": "+1 555 0100"}]})
    acme = next(a for a in await accounts(control) if a["Code"].strip() == "403")
    pat = ANN.model_copy(update={"store_id": "7", "email": "pat@acme.example"})
    linked = await erp.upsert_customer(pat, "WC-C7", match="email")
    assert (linked.id, linked.created) == (acme["ID"], False) and puts(app) == 0
    after = {a["Code"]: a for a in await accounts(control)}
    assert all(after[code] == account for code, account in before.items())
    assert after[acme["Code"]] == acme


async def test_a_registered_buyer_finds_the_account_its_guest_checkout_made(app, erp, control):
    guest = await erp.upsert_customer(ANN.model_copy(update={"store_id": None}), "WC-GABC")
    registered = await erp.upsert_customer(ANN, "WC-C5", aliases=["WC-GABC"])
    assert registered.id == guest.id and not registered.created
    [account] = await accounts(control)
    assert account["Remarks"] == "[ml-connector WC-GABC]\n[ml-connector WC-C5]"
    assert (await erp.get_customer("WC-C5")).email == "ann@example.com"


async def test_modified_accounts_with_an_external_id_since_a_watermark(app, erp, control):
    ref = await erp.upsert_customer(ANN, "WC-C5")
    await control.post("/_sandbox/seed", json={"accounts": [{"Code": "900", "Name": "ERP only"}]})
    seen = [(ext, c.billing.city) async for ext, c, _ in erp.iter_customers_modified(EPOCH)]
    assert seen == [("WC-C5", "Amsterdam")]
    [(_, _, mark)] = [row async for row in erp.iter_customers_modified(EPOCH)]
    await control.post("/_sandbox/clock", json={"advance": 5})
    assert [row async for row in erp.iter_customers_modified(mark)] == []
    resp = await control.post(f"/_sandbox/accounts/{ref.id}", json={"City": "Utrecht"})
    assert resp.status_code == 200
    [(ext, customer, modified)] = [row async for row in erp.iter_customers_modified(mark)]
    assert (ext, customer.billing.city) == ("WC-C5", "Utrecht") and modified > mark


async def test_paging_of_modified_accounts_follows_next(app, erp, control):
    await control.post("/_sandbox/settings", json={"page_size": 2})
    for n in range(5):
        await erp.upsert_customer(ANN.model_copy(update={"email": f"b{n}@example.com",
                                                         "store_id": str(n)}), f"WC-C{n}")
    ids = [ext async for ext, _, _ in erp.iter_customers_modified(EPOCH)]
    assert ids == [f"WC-C{n}" for n in range(5)]


async def test_goods_delivery_of_the_sales_order_becomes_a_shipment_of_its_your_ref(
        app, erp, control):
    cust = await erp.upsert_customer(ANN, "WC-C5")
    item = (await erp._guids_for("logistics/Items", {"HOODIE-M"}))["HOODIE-M"]
    await erp._post("salesinvoice/SalesInvoices", {
        "OrderedBy": cust.id, "Journal": "70", "YourRef": "WC-1001", "Currency": "EUR",
        "SalesInvoiceLines": [{"Item": item, "Quantity": 2, "NetPrice": D("10.00"),
                               "VATCode": "2"}]})
    assert [s async for s in erp.iter_shipments(EPOCH)] == []
    resp = await control.post("/_sandbox/deliveries", json={
        "your_ref": "WC-1001", "tracking_number": "3SABCD1234567", "shipping_method": "POSTNL"})
    assert resp.status_code == 200
    [shipment] = [s async for s in erp.iter_shipments(EPOCH)]
    assert (shipment.external_ref, shipment.tracking_numbers, shipment.carrier) == (
        "WC-1001", ["3SABCD1234567"], "POSTNL")
    assert shipment.shipment_id == str(resp.json()["DeliveryNumber"])
    assert [s async for s in erp.iter_shipments(shipment.modified_at)] == []
    missing = await control.post("/_sandbox/deliveries", json={"your_ref": "WC-404"})
    assert missing.status_code == 404


def test_sales_orders_and_deliveries_are_read_only_for_the_integration():
    assert sandbox.DELIVERY.methods == frozenset({"GET"}) == sandbox.SALES_ORDER.methods


def test_shipment_of_a_delivery_of_two_orders_is_one_per_order():
    delivery = {"EntryID": "e", "DeliveryNumber": 7, "TrackingNumber": "T1", "Modified": "/Date(1000)/",
                "GoodsDeliveryLines": {"results": [{"SalesOrderNumber": 1, "TrackingNumber": "T2"},
                                                   {"SalesOrderNumber": 2, "TrackingNumber": None}]}}
    assert eo.order_numbers(delivery) == [1, 2]
    first = eo.shipment_from_delivery(delivery, 1, "WC-1", several=True)
    assert (first.shipment_id, first.tracking_numbers) == ("7-1", ["T1", "T2"])
    assert eo.shipment_from_delivery(delivery, 2, "WC-2", several=True).tracking_numbers == ["T1"]


async def test_one_look_up_finds_our_account_before_one_with_the_email(app, erp, control):
    """Our code and the e-mail go in one ``or`` filter; our account wins over an account that
    only shares the e-mail, whatever order Exact returns them in."""
    ours = await erp.upsert_customer(ANN, "WC-C5")
    await control.post("/_sandbox/seed", json={"accounts": [
        {"Code": "400", "Name": "Ann B.", "Email": "ann.new@example.com", "Status": "C"}]})
    reads = app.state.exact.stats["by_route"]
    before = reads.get("GET crm/Accounts", 0)
    ref = await erp.upsert_customer(ANN.model_copy(update={"email": "ann.new@example.com"}),
                                    "WC-C5", match="email")
    assert reads["GET crm/Accounts"] - before == 1
    mine = next(a for a in await accounts(control) if a["ID"] == ours.id)
    assert (ref.id, ref.created) == (ours.id, False) and mine["Email"] == "ann.new@example.com"
    fresh = await erp.upsert_customer(ANN.model_copy(update={"email": "new@example.com",
                                                             "store_id": "6"}), "WC-C6")
    assert fresh.created and reads["GET crm/Accounts"] - before == 2

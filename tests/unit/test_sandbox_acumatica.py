"""The Acumatica simulator behaves as shared/reference/acumatica.md describes."""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import httpx
import pytest

from sandbox.acumatica import create_app, dumps

BASE = "/entity/Default/24.200.001"
CLIENT = {"client_id": "00000000-0000-0000-0000-000000000001@Company", "client_secret": "secret"}


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def w(value):
    return {"value": value}


def amounts(body: dict, *names: str) -> list[Decimal]:
    return [Decimal(str(body[name]["value"])) for name in names]


def make_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://erp.test")


async def password_grant(client: httpx.AsyncClient, **overrides) -> httpx.Response:
    form = {"grant_type": "password", **CLIENT, "username": "admin", "password": "admin",
            "scope": "api offline_access", **overrides}
    return await client.post("/identity/connect/token", data=form)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def app(clock):
    app = create_app()
    state = app.state.acumatica
    state.clock = clock
    state.add_customer("C1", name="Jane Doe", email="jane@example.com")
    state.add_customer("C2", name="Bob", email="bob@example.com", currency="EUR")
    state.add_stock_item("WIDGET", default_price="12.50", last_cost="6", qty_on_hand=40, warehouse_id="MAIN")
    state.add_non_stock_item("SHIPPING", default_price="5")
    state.add_tax("VAT20", rate="20")
    state.add_tax("EXEMPT")
    return app


@pytest.fixture
async def anon(app):
    async with make_client(app) as client:
        yield client


@pytest.fixture
async def api(app):
    async with make_client(app) as client:
        token = (await password_grant(client)).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def invoice_body(**header) -> dict:
    body = {"CustomerID": w("C1"), "ExternalRef": w("shop-1001"), "CustomerOrder": w("#1001"),
            "Details": [{"InventoryID": w("WIDGET"), "Qty": w(3), "UnitPrice": w(Decimal("12.50")),
                         "DiscountAmount": w(Decimal("2.50"))},
                        {"InventoryID": w("SHIPPING"), "Qty": w(1), "UnitPrice": w(Decimal("5.00"))}],
            "TaxDetails": [{"TaxID": w("VAT20"), "TaxableAmount": w(Decimal("40.00")),
                            "TaxAmount": w(Decimal("8.00"))}]}
    body.update(header)
    return body


async def put_invoice(api, body=None, **params) -> httpx.Response:
    return await api.put(f"{BASE}/SalesInvoice", content=dumps(body or invoice_body()),
                         headers={"Content-Type": "application/json"}, params=params)


async def release(api, doc_type: str, number: str) -> None:
    started = await api.post(f"{BASE}/SalesInvoice/ReleaseSalesInvoice",
                             json={"entity": {"Type": w(doc_type), "ReferenceNbr": w(number)}})
    assert started.status_code == 202
    while (poll := await api.get(started.headers["Location"])).status_code == 202:
        pass
    assert poll.status_code == 204


# ---------------------------------------------------------------- authentication

async def test_password_grant_then_refresh_rotates_and_spends_the_old_token(anon):
    first = await password_grant(anon)
    assert first.status_code == 200
    tokens = first.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["scope"] == "api offline_access" and tokens["refresh_token"]

    refreshed = await anon.post("/identity/connect/token", data={
        "grant_type": "refresh_token", **CLIENT, "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    reused = await anon.post("/identity/connect/token", data={
        "grant_type": "refresh_token", **CLIENT, "refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    new_access = refreshed.json()["access_token"]
    ok = await anon.get(f"{BASE}/Customer", headers={"Authorization": f"Bearer {new_access}"})
    assert ok.status_code == 200


async def test_bad_password_and_bad_client_are_oauth_errors(anon):
    wrong = await password_grant(anon, password="nope")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    bad_client = await password_grant(anon, client_secret="nope")
    assert (bad_client.status_code, bad_client.json()["error"]) == (400, "invalid_client")
    no_offline = (await password_grant(anon, scope="api")).json()
    assert "refresh_token" not in no_offline


async def test_entity_routes_need_a_valid_unexpired_token(app, anon, clock):
    missing = await anon.get(f"{BASE}/Customer")
    assert missing.status_code == 401 and "message" in missing.json()
    unknown = await anon.get(f"{BASE}/Customer", headers={"Authorization": "Bearer forged"})
    assert unknown.status_code == 401

    token = (await password_grant(anon)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await anon.get(f"{BASE}/Customer", headers=headers)).status_code == 200
    clock.now += 3601
    assert (await anon.get(f"{BASE}/Customer", headers=headers)).status_code == 401


async def test_expire_tokens_fault_kills_access_tokens_but_not_refresh_tokens(api, anon):
    tokens = (await password_grant(anon)).json()
    await anon.post("/_sandbox/faults", json={"expire_tokens": True})
    assert (await api.get(f"{BASE}/Customer")).status_code == 401
    refreshed = await anon.post("/identity/connect/token", data={
        "grant_type": "refresh_token", **CLIENT, "refresh_token": tokens["refresh_token"]})
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await anon.get(f"{BASE}/Customer", headers=headers)).status_code == 200


async def test_cookie_login_and_logout(anon):
    bad = await anon.post("/entity/auth/login", json={"name": "admin", "password": "x"})
    assert bad.status_code == 500
    login = await anon.post("/entity/auth/login", json={"name": "admin", "password": "admin", "tenant": "Company"})
    assert login.status_code == 204 and ".ASPXAUTH" in login.cookies
    assert (await anon.get(f"{BASE}/StockItem")).status_code == 200
    assert (await anon.post("/entity/auth/logout")).status_code == 204
    assert (await anon.get(f"{BASE}/StockItem")).status_code == 401


# ---------------------------------------------------------------- routing

async def test_unknown_version_is_404_and_discovery_lists_endpoints(api):
    missing = await api.get("/entity/Default/99.200.001/SalesInvoice")
    assert missing.status_code == 404 and "No HTTP resource" in missing.json()["message"]
    assert (await api.get(f"{BASE}/NoSuchEntity")).status_code == 404
    assert (await api.post(f"{BASE}/SalesInvoice/NoSuchAction", json={"entity": {}})).status_code == 404
    listing = (await api.get("/entity")).json()
    assert {"name": "Default", "version": "24.200.001", "href": "/entity/Default/24.200.001/"} in listing["endpoints"]
    assert {e["version"] for e in listing["endpoints"]} == {"23.200.001", "24.200.001"}


async def test_site_path_prefixes_every_route():
    app = create_app(site_path="/AcumaticaDB")
    async with make_client(app) as client:
        token = (await client.post("/AcumaticaDB/identity/connect/token", data={
            "grant_type": "password", **CLIENT, "username": "admin", "password": "admin",
            "scope": "api"})).json()["access_token"]
        listing = await client.get("/AcumaticaDB/entity", headers={"Authorization": f"Bearer {token}"})
        assert listing.json()["endpoints"][0]["href"].startswith("/AcumaticaDB/entity/Default/")
        assert (await client.get(f"{BASE}/Customer")).status_code == 404


async def test_version_23_has_no_external_ref_on_sales_invoice(api):
    response = await api.get("/entity/Default/23.200.001/SalesInvoice", params={"$filter": "ExternalRef eq 'x'"})
    assert response.status_code == 400


# ---------------------------------------------------------------- records

async def test_unwrapped_field_is_rejected_with_400_naming_it(app, api):
    response = await api.put(f"{BASE}/Customer", json={"CustomerID": "X", "CustomerName": w("X")})
    assert response.status_code == 400
    assert "CustomerID" in response.json()["message"]
    assert app.state.acumatica.find("Customer", CustomerID="X") is None


async def test_unknown_inventory_id_is_422_on_the_line_and_nothing_is_saved(app, api):
    body = invoice_body()
    body["Details"].append({"InventoryID": w("NOPE"), "Qty": w(1)})
    response = await put_invoice(api, body)
    assert response.status_code == 422
    line = response.json()["Details"][2]
    assert line["InventoryID"] == {"value": "NOPE", "error": "'Inventory ID' cannot be found in the system."}
    assert "error" in response.json()
    assert app.state.acumatica.documents() == []


async def test_unknown_customer_and_tax_are_422(app, api):
    response = await put_invoice(api, invoice_body(CustomerID=w("GHOST")))
    assert response.json()["CustomerID"]["error"] == "'Customer' cannot be found in the system."
    body = invoice_body()
    body["TaxDetails"][0]["TaxID"] = w("NOTAX")
    response = await put_invoice(api, body)
    assert response.status_code == 422 and "error" in response.json()["TaxDetails"][0]["TaxID"]
    assert app.state.acumatica.documents() == []


async def test_invoice_totals_with_discount_and_tax(api):
    response = await put_invoice(api, **{"$expand": "Details,TaxDetails"})
    assert response.status_code == 200
    body = response.json()
    assert body["Type"]["value"] == "Invoice" and body["ReferenceNbr"]["value"] == "INV000001"
    assert body["Status"]["value"] == "Balanced"
    assert amounts(body, "DetailTotal", "TaxTotal", "Amount", "Balance") == [
        Decimal("40.00"), Decimal("8.00"), Decimal("48.00"), Decimal("48.00")]
    assert [Decimal(str(l["Amount"]["value"])) for l in body["Details"]] == [Decimal("35.00"), Decimal("5.00")]
    assert body["Details"][0]["LineNbr"]["value"] == 1 and body["Details"][0]["ManualPrice"]["value"] is True
    assert body["TaxDetails"][0]["TaxID"]["value"] == "VAT20"
    assert set(body) >= {"id", "rowNumber", "note", "custom", "_links"}


async def test_tax_rate_and_default_price_fill_what_is_not_sent(api):
    body = {"CustomerID": w("C1"), "Details": [{"InventoryID": w("WIDGET"), "Qty": w(2)}],
            "TaxDetails": [{"TaxID": w("VAT20")}]}
    saved = (await put_invoice(api, body, **{"$expand": "Details"})).json()
    assert Decimal(str(saved["Details"][0]["UnitPrice"]["value"])) == Decimal("12.50")
    assert saved["Details"][0]["ManualPrice"]["value"] is False
    assert amounts(saved, "DetailTotal", "TaxTotal", "Amount") == [Decimal("25.00"), Decimal("5.00"), Decimal("30.00")]


async def test_foreign_currency_is_kept_as_sent(app, api):
    saved = (await put_invoice(api, invoice_body(Currency=w("GBP")))).json()
    assert saved["Currency"]["value"] == "GBP"
    euro = (await put_invoice(api, invoice_body(CustomerID=w("C2")))).json()
    assert euro["Currency"]["value"] == "EUR"


async def test_expand_controls_nested_entities_also_on_put(api):
    plain_put = (await put_invoice(api)).json()
    assert "Details" not in plain_put and "TaxDetails" not in plain_put
    number = plain_put["ReferenceNbr"]["value"]
    by_keys = await api.get(f"{BASE}/SalesInvoice/Invoice/{number}")
    assert by_keys.status_code == 200 and "Details" not in by_keys.json()
    expanded = (await api.get(f"{BASE}/SalesInvoice/Invoice/{number}", params={"$expand": "Details"})).json()
    assert len(expanded["Details"]) == 2 and "TaxDetails" not in expanded
    by_id = (await api.get(f"{BASE}/SalesInvoice/{plain_put['id']}")).json()
    assert by_id["ReferenceNbr"]["value"] == number
    assert (await api.get(f"{BASE}/SalesInvoice/Invoice/INV999999")).status_code == 404

    customer = (await api.get(f"{BASE}/Customer/C1", params={"$expand": "MainContact/Address"})).json()
    assert customer["MainContact"]["Email"]["value"] == "jane@example.com"
    assert "Address" in customer["MainContact"]
    selected = (await api.get(f"{BASE}/Customer/C1", params={
        "$expand": "MainContact", "$select": "CustomerID,MainContact/Email"})).json()
    assert set(selected["MainContact"]) >= {"Email"} and "FirstName" not in selected["MainContact"]
    assert "CustomerName" not in selected


async def test_filter_by_external_ref_and_by_main_contact_email(api):
    await put_invoice(api)
    await put_invoice(api, invoice_body(ExternalRef=w("shop-1002")))
    found = (await api.get(f"{BASE}/SalesInvoice", params={"$filter": "ExternalRef eq 'shop-1002'"})).json()
    assert [d["ExternalRef"]["value"] for d in found] == ["shop-1002"]
    both = (await api.get(f"{BASE}/SalesInvoice", params={
        "$filter": "ExternalRef eq 'shop-1001' or ExternalRef eq 'shop-1002'"})).json()
    assert len(both) == 2

    by_email = (await api.get(f"{BASE}/Customer", params={
        "$filter": "MainContact/Email eq 'JANE@example.com'", "$expand": "MainContact"})).json()
    assert [c["CustomerID"]["value"] for c in by_email] == ["C1"]
    detail = await api.get(f"{BASE}/SalesInvoice", params={"$filter": "Details/InventoryID eq 'WIDGET'"})
    assert detail.status_code == 400


async def test_filter_datetimeoffset_and_numbers(api, clock):
    first = (await put_invoice(api)).json()
    stamp = first["LastModifiedDateTime"]["value"]
    clock.now += 60
    await put_invoice(api, invoice_body(ExternalRef=w("later")))
    query = f"$filter=LastModifiedDateTime gt datetimeoffset'{quote(stamp, safe='')}'"
    later = (await api.get(f"{BASE}/SalesInvoice?{query}")).json()
    assert [d["ExternalRef"]["value"] for d in later] == ["later"]
    unencoded = await api.get(f"{BASE}/SalesInvoice?$filter=LastModifiedDateTime gt "
                              f"datetimeoffset'2025-01-01T00:00:00+00:00'")
    assert unencoded.status_code == 400
    big = (await api.get(f"{BASE}/SalesInvoice", params={"$filter": "Amount ge 48 and Status eq 'Balanced'"})).json()
    assert len(big) == 2


async def test_top_and_skip_page_the_list(api):
    for n in range(5):
        await put_invoice(api, invoice_body(ExternalRef=w(f"shop-{n}")))
    pages = []
    for skip in (0, 2, 4):
        page = (await api.get(f"{BASE}/SalesInvoice", params={"$top": 2, "$skip": skip})).json()
        pages.append([d["ExternalRef"]["value"] for d in page])
    assert pages == [["shop-0", "shop-1"], ["shop-2", "shop-3"], ["shop-4"]]
    assert [d["rowNumber"] for d in (await api.get(f"{BASE}/SalesInvoice")).json()] == [1, 2, 3, 4, 5]


async def test_put_upserts_by_keys_and_honours_preconditions(app, api):
    number = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    update = {"Type": w("Invoice"), "ReferenceNbr": w(number), "Description": w("changed")}
    assert (await api.put(f"{BASE}/SalesInvoice", json=update)).status_code == 200
    assert len(app.state.acumatica.documents()) == 1
    assert app.state.acumatica.documents()[0]["description"] == "changed"
    exists = await api.put(f"{BASE}/SalesInvoice", json=update, headers={"If-None-Match": "*"})
    assert exists.status_code == 412
    missing = {"Type": w("Invoice"), "ReferenceNbr": w("INV424242"), "Description": w("x")}
    assert (await api.put(f"{BASE}/SalesInvoice", json=missing, headers={"If-Match": "*"})).status_code == 412
    assert len(app.state.acumatica.documents()) == 1


async def test_put_with_filter_updates_the_matching_customer(app, api):
    response = await api.put(f"{BASE}/Customer", params={"$filter": "MainContact/Email eq 'bob@example.com'"},
                             json={"CustomerName": w("Robert"), "AccountRef": w("shop-cust-7")})
    assert response.status_code == 200 and response.json()["CustomerID"]["value"] == "C2"
    created = await api.put(f"{BASE}/Customer", json={"CustomerName": w("New"), "Email": w("new@example.com")})
    assert created.json()["CustomerID"]["value"] == "C000001"
    customers = {c["customer_id"]: c for c in app.state.acumatica.customers()}
    assert customers["C2"]["account_ref"] == "shop-cust-7"
    assert customers["C000001"]["main_contact"]["Email"] == "new@example.com"


# ---------------------------------------------------------------- actions

async def test_release_is_202_then_204_and_the_invoice_opens(app, api):
    number = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    started = await api.post(f"{BASE}/SalesInvoice/ReleaseSalesInvoice",
                             json={"entity": {"Type": w("Invoice"), "ReferenceNbr": w(number)}})
    assert started.status_code == 202
    location = started.headers["Location"]
    assert location.startswith(f"{BASE}/SalesInvoice/ReleaseSalesInvoice/status/")
    assert (await api.get(location)).status_code == 202
    assert (await api.get(location)).status_code == 204
    status = (await api.get(f"{BASE}/SalesInvoice/Invoice/{number}", params={"$select": "Status"})).json()
    assert status["Status"]["value"] == "Open"
    again = await api.post(f"{BASE}/SalesInvoice/ReleaseSalesInvoice",
                           json={"entity": {"Type": w("Invoice"), "ReferenceNbr": w(number)}})
    assert again.status_code == 422


async def test_credit_memo_application_reduces_invoice_balance_on_release(app, api):
    invoice = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    await release(api, "Invoice", invoice)
    memo = {"Type": w("Credit Memo"), "CustomerID": w("C1"), "ExternalRef": w("refund-1"),
            "Details": [{"OrigInvType": w("Invoice"), "OrigInvNbr": w(invoice), "OrigInvLineNbr": w(1),
                         "Qty": w(1)}],
            "TaxDetails": [{"TaxID": w("VAT20"), "TaxableAmount": w(Decimal("11.67")),
                            "TaxAmount": w(Decimal("2.33"))}],
            "ApplicationsCreditMemo": [{"DocType": w("Invoice"), "ReferenceNbr": w(invoice)}]}
    saved = await put_invoice(api, memo, **{"$expand": "Details,ApplicationsCreditMemo"})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["ReferenceNbr"]["value"] == "CRM000001"
    assert body["Details"][0]["InventoryID"]["value"] == "WIDGET"
    assert amounts(body, "Amount") == [Decimal("14.00")]
    assert Decimal(str(body["ApplicationsCreditMemo"][0]["AmountPaid"]["value"])) == Decimal("14.00")

    state = app.state.acumatica
    assert state.documents("Invoice")[0]["balance"] == "48.00"
    await release(api, "Credit Memo", "CRM000001")
    invoice_doc, memo_doc = state.documents("Invoice")[0], state.documents("Credit Memo")[0]
    assert (invoice_doc["status"], invoice_doc["balance"]) == ("Open", "34.00")
    assert (memo_doc["status"], memo_doc["balance"]) == ("Closed", "0.00")
    assert invoice_doc["applications"] == [{"doc_type": "Credit Memo", "reference_nbr": "CRM000001",
                                            "amount_paid": "14.00"}]


async def test_credit_memo_cannot_apply_to_an_unreleased_invoice(app, api):
    invoice = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    memo = {"Type": w("Credit Memo"), "CustomerID": w("C1"),
            "Details": [{"InventoryID": w("WIDGET"), "Qty": w(1), "UnitPrice": w(1)}],
            "ApplicationsCreditMemo": [{"DocType": w("Invoice"), "ReferenceNbr": w(invoice)}]}
    response = await put_invoice(api, memo)
    assert response.status_code == 422
    assert "error" in response.json()["ApplicationsCreditMemo"][0]["ReferenceNbr"]
    assert app.state.acumatica.documents("Credit Memo") == []


# ---------------------------------------------------------------- quota and faults

async def test_quota_answers_429_with_retry_after_then_resets(app, api, anon, clock):
    await anon.post("/_sandbox/settings", json={"requests_per_minute": 3})
    statuses = [(await api.get(f"{BASE}/StockItem")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = await api.get(f"{BASE}/StockItem")
    assert throttled.headers["content-type"].startswith("text/plain")
    assert throttled.headers["Retry-After"] == "60"
    clock.now += 45
    assert (await api.get(f"{BASE}/StockItem")).headers["Retry-After"] == "15"
    clock.now += 15
    assert (await api.get(f"{BASE}/StockItem")).status_code == 200
    stats = (await anon.get("/_sandbox/stats")).json()
    assert stats["throttled"] == 3 and stats["by_method_entity"]["GET StockItem"] == 7

    await anon.post("/_sandbox/settings", json={"send_retry_after": False})
    for _ in range(3):
        await api.get(f"{BASE}/StockItem")
    quiet = await api.get(f"{BASE}/StockItem")
    assert quiet.status_code == 429 and "Retry-After" not in quiet.headers


async def test_storm_and_failure_faults(api, anon):
    await anon.post("/_sandbox/faults", json={"storm_429": 1, "fail_next": 1, "fail_status": 503})
    assert (await api.get(f"{BASE}/Customer")).status_code == 429
    failed = await api.get(f"{BASE}/Customer")
    assert failed.status_code == 503 and "message" in failed.json()
    assert (await api.get(f"{BASE}/Customer")).status_code == 200


async def test_lost_commit_saves_but_answers_502(app, api, anon):
    await anon.post("/_sandbox/faults", json={"lose_next_commits": 1})
    response = await put_invoice(api)
    assert response.status_code == 502
    docs = app.state.acumatica.documents()
    assert len(docs) == 1 and docs[0]["external_ref"] == "shop-1001"
    found = (await api.get(f"{BASE}/SalesInvoice", params={"$filter": "ExternalRef eq 'shop-1001'"})).json()
    assert len(found) == 1


# ---------------------------------------------------------------- control surface

async def test_sandbox_documents_are_plain_json(api, anon):
    await put_invoice(api)
    docs = (await anon.get("/_sandbox/documents")).json()
    doc = docs[0]
    assert {k: doc[k] for k in ("type", "number", "customer", "external_ref", "customer_order", "currency",
                                "amount", "balance", "status")} == {
        "type": "Invoice", "number": "INV000001", "customer": "C1", "external_ref": "shop-1001",
        "customer_order": "#1001", "currency": "USD", "amount": "48.00", "balance": "48.00", "status": "Balanced"}
    assert doc["lines"][0] == {"line_nbr": 1, "inventory_id": "WIDGET", "description": "WIDGET", "qty": "3",
                               "unit_price": "12.50", "discount_amount": "2.50", "amount": "35.00",
                               "manual_price": True, "orig_inv_type": None, "orig_inv_nbr": None,
                               "orig_inv_line_nbr": None}
    assert doc["taxes"] == [{"tax_id": "VAT20", "taxable_amount": "40.00", "tax_amount": "8.00"}]
    await anon.post("/_sandbox/reset")
    assert (await anon.get("/_sandbox/documents")).json() == []


async def test_seeding_through_control_routes(api, anon):
    await anon.post("/_sandbox/stock-items", json=[{"InventoryID": "GADGET", "DefaultPrice": 9.99, "LastCost": 4,
                                                   "QtyOnHand": 7, "WarehouseID": "WH2"}])
    await anon.post("/_sandbox/non-stock-items", json=[{"InventoryID": "FEE", "DefaultPrice": 1}])
    await anon.post("/_sandbox/taxes", json=["GST"])
    item = (await api.get(f"{BASE}/StockItem/GADGET", params={"$expand": "WarehouseDetails"})).json()
    assert Decimal(str(item["DefaultPrice"]["value"])) == Decimal("9.99")
    assert item["WarehouseDetails"][0]["WarehouseID"]["value"] == "WH2"
    assert Decimal(str(item["WarehouseDetails"][0]["QtyOnHand"]["value"])) == 7
    assert (await api.get(f"{BASE}/NonStockItem/FEE")).status_code == 200


async def test_updates_keep_list_order_and_released_documents_ignore_changes(app, api):
    first = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    await put_invoice(api, invoice_body(ExternalRef=w("second")))
    await api.put(f"{BASE}/SalesInvoice", json={"Type": w("Invoice"), "ReferenceNbr": w(first),
                                                "Description": w("edited")})
    listed = (await api.get(f"{BASE}/SalesInvoice")).json()
    assert [d["ReferenceNbr"]["value"] for d in listed] == [first, "INV000002"]
    await release(api, "Invoice", first)
    unchanged = await api.put(f"{BASE}/SalesInvoice", json={"Type": w("Invoice"), "ReferenceNbr": w(first),
                                                            "Description": w("too late")})
    assert unchanged.status_code == 200 and unchanged.json()["Description"]["value"] == "edited"
    assert (await api.delete(f"{BASE}/SalesInvoice/Invoice/{first}")).status_code == 422
    assert (await api.delete(f"{BASE}/SalesInvoice/Invoice/INV000002")).status_code == 204
    assert [d["number"] for d in app.state.acumatica.documents()] == [first]


# ---------------------------------------------------------------- payments and sales orders

async def seed_payment_methods(anon) -> None:
    await anon.post("/_sandbox/cash-accounts", json=[{"CashAccountCD": "10200", "CurrencyID": "USD"},
                                                     {"CashAccountCD": "10250", "CurrencyID": "EUR"}])
    methods = await anon.post("/_sandbox/payment-methods",
                              json=[{"PaymentMethodID": "CARD", "CashAccount": "10200", "CashAccounts": ["10250"]},
                                    {"PaymentMethodID": "OLD", "CashAccount": "10200", "Active": False}])
    assert [m["PaymentMethodID"] for m in methods.json()] == ["CARD", "OLD"]


def payment_body(**header) -> dict:
    body = {"Type": w("Payment"), "CustomerID": w("C1"), "PaymentMethod": w("CARD"),
            "PaymentAmount": w(Decimal("48.00")), "PaymentRef": w("ch_3Pq"), "ExternalRef": w("shop-1001-P1"),
            "ApplicationDate": w("2026-03-01"), "Description": w("Payment of #1001")}
    body.update(header)
    return body


async def put_payment(api, body: dict, **params) -> httpx.Response:
    return await api.put(f"{BASE}/Payment", content=dumps(body), headers={"Content-Type": "application/json"},
                         params=params)


async def open_invoice(api) -> str:
    number = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    await release(api, "Invoice", number)
    return number


async def test_payment_applied_to_an_invoice_closes_it_on_release(app, api, anon):
    await seed_payment_methods(anon)
    invoice = await open_invoice(api)
    saved = await put_payment(api, payment_body(DocumentsToApply=[
        {"DocType": w("INV"), "ReferenceNbr": w(invoice), "AmountPaid": w(Decimal("48.00"))}]),
        **{"$expand": "DocumentsToApply"})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["Type"]["value"], body["ReferenceNbr"]["value"], body["Status"]["value"]) == (
        "Payment", "000001", "Balanced")
    assert (body["CashAccount"]["value"], body["CurrencyID"]["value"]) == ("10200", "USD")
    assert body["DocumentsToApply"][0]["DocType"]["value"] == "Invoice"
    assert amounts(body, "PaymentAmount", "AppliedToDocuments", "AvailableBalance") == [
        Decimal("48.00"), Decimal("48.00"), Decimal(0)]

    started = await api.post(f"{BASE}/Payment/ReleasePayment",
                             json={"entity": {"Type": w("Payment"), "ReferenceNbr": w("000001")}})
    assert started.status_code == 202
    assert started.headers["Location"].startswith(f"{BASE}/Payment/ReleasePayment/status/")
    while (poll := await api.get(started.headers["Location"])).status_code == 202:
        pass
    assert poll.status_code == 204
    state = app.state.acumatica
    [inv] = state.documents("Invoice")
    assert (inv["status"], inv["balance"]) == ("Closed", "0.00")
    assert inv["applications"] == [{"doc_type": "Payment", "reference_nbr": "000001", "amount_paid": "48.00"}]
    [pmt] = (await anon.get("/_sandbox/documents", params={"type": "Payment"})).json()
    assert {k: pmt[k] for k in ("type", "number", "external_ref", "amount", "currency", "status", "payment_ref")} == {
        "type": "Payment", "number": "000001", "external_ref": "shop-1001-P1", "amount": "48.00",
        "currency": "USD", "status": "Closed", "payment_ref": "ch_3Pq"}

    found = (await api.get(f"{BASE}/Payment", params={
        "$filter": "ExternalRef eq 'shop-1001-P1' and Type eq 'Payment'", "$expand": "ApplicationHistory"})).json()
    assert [p["ReferenceNbr"]["value"] for p in found] == ["000001"]
    assert found[0]["ApplicationHistory"][0]["AdjustedRefNbr"]["value"] == invoice
    assert "DocumentsToApply" not in found[0]
    again = await api.post(f"{BASE}/Payment/ReleasePayment",
                           json={"entity": {"Type": w("Payment"), "ReferenceNbr": w("000001")}})
    assert again.status_code == 422


async def test_payment_applying_more_than_is_open_is_refused_on_that_row(app, api, anon):
    """As Acumatica: 422 with the error on the application row's AmountPaid (a paid invoice is
    no longer one to select: the error is on its ReferenceNbr), and nothing is saved."""
    await seed_payment_methods(anon)
    invoice = await open_invoice(api)  # 48.00 open
    over = await put_payment(api, payment_body(PaymentAmount=w(Decimal("60.00")), DocumentsToApply=[
        {"DocType": w("Invoice"), "ReferenceNbr": w(invoice), "AmountPaid": w(Decimal("60.00"))}]))
    assert over.status_code == 422
    assert "exceed the balance" in over.json()["DocumentsToApply"][0]["AmountPaid"]["error"]
    assert app.state.acumatica.documents("Payment") == []
    paid = await put_payment(api, payment_body(DocumentsToApply=[
        {"DocType": w("Invoice"), "ReferenceNbr": w(invoice), "AmountPaid": w(Decimal("48.00"))}]))
    assert paid.status_code == 200
    started = await api.post(f"{BASE}/Payment/ReleasePayment",
                             json={"entity": {"Type": w("Payment"), "ReferenceNbr": w("000001")}})
    while (await api.get(started.headers["Location"])).status_code == 202:
        pass
    closed = await put_payment(api, payment_body(ExternalRef=w("shop-1001-P2"), DocumentsToApply=[
        {"DocType": w("Invoice"), "ReferenceNbr": w(invoice), "AmountPaid": w(Decimal("1.00"))}]))
    assert closed.status_code == 422
    assert closed.json()["DocumentsToApply"][0]["ReferenceNbr"]["error"] == (
        "'Reference Nbr.' cannot be found in the system.")


async def test_a_release_runs_for_action_ms_whatever_the_polls(app, api, anon, clock):
    await anon.post("/_sandbox/settings", json={"action_polls": 0, "action_ms": 1000})
    number = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    started = await api.post(f"{BASE}/SalesInvoice/ReleaseSalesInvoice",
                             json={"entity": {"Type": w("Invoice"), "ReferenceNbr": w(number)}})
    assert started.status_code == 202
    clock.now += 0.6
    assert (await api.get(started.headers["Location"])).status_code == 202
    clock.now += 0.4
    assert (await api.get(started.headers["Location"])).status_code == 204
    [doc] = app.state.acumatica.documents("Invoice")
    assert doc["status"] == "Open"


async def test_payment_method_and_cash_account_come_from_reference_data(app, api, anon):
    await seed_payment_methods(anon)
    unknown = await put_payment(api, payment_body(PaymentMethod=w("BITCOIN")))
    assert unknown.status_code == 422
    assert unknown.json()["PaymentMethod"]["error"] == "'Payment Method' cannot be found in the system."
    inactive = await put_payment(api, payment_body(PaymentMethod=w("OLD")))
    assert inactive.status_code == 422 and "error" in inactive.json()["PaymentMethod"]
    account = await put_payment(api, payment_body(CashAccount=w("99999")))
    assert account.json()["CashAccount"]["error"] == "'Cash Account' cannot be found in the system."
    currency = await put_payment(api, payment_body(CurrencyID=w("EUR")))
    assert currency.status_code == 422 and "10200" in currency.json()["CurrencyID"]["error"]
    euro = await put_payment(api, payment_body(CustomerID=w("C2"), CurrencyID=w("EUR"), CashAccount=w("10250")))
    assert euro.status_code == 200 and euro.json()["CurrencyID"]["value"] == "EUR"
    unwrapped = await put_payment(api, payment_body(PaymentMethod="CARD"))
    assert unwrapped.status_code == 400 and "PaymentMethod" in unwrapped.json()["message"]
    assert [d["currency"] for d in app.state.acumatica.documents("Payment")] == ["EUR"]


async def test_payment_applications_respect_balances(app, api, anon):
    await seed_payment_methods(anon)
    draft = (await put_invoice(api)).json()["ReferenceNbr"]["value"]
    unreleased = await put_payment(api, payment_body(DocumentsToApply=[
        {"DocType": w("Invoice"), "ReferenceNbr": w(draft), "AmountPaid": w(10)}]))
    assert unreleased.status_code == 422
    await release(api, "Invoice", draft)
    too_much = await put_payment(api, payment_body(PaymentAmount=w(60), DocumentsToApply=[
        {"DocType": w("Invoice"), "ReferenceNbr": w(draft), "AmountPaid": w(60)}]))
    assert too_much.status_code == 422 and "error" in too_much.json()["DocumentsToApply"][0]["AmountPaid"]
    partial = await put_payment(api, payment_body(PaymentAmount=w(30), DocumentsToApply=[
        {"DocType": w("Invoice"), "ReferenceNbr": w(draft)}]), **{"$expand": "DocumentsToApply"})
    assert Decimal(str(partial.json()["DocumentsToApply"][0]["AmountPaid"]["value"])) == 30
    started = await api.post(f"{BASE}/Payment/ReleasePayment", json={"entity": {"id": partial.json()["id"]}})
    while (await api.get(started.headers["Location"])).status_code == 202:
        pass
    [inv] = app.state.acumatica.documents("Invoice")
    assert (inv["status"], inv["balance"]) == ("Open", "18.00")


def order_body(**header) -> dict:
    body = {"OrderType": w("SO"), "CustomerID": w("C1"), "CustomerOrder": w("#1001"),
            "ExternalRef": w("shop-1001"), "Date": w("2026-03-01"), "DisableAutomaticTaxCalculation": w(True),
            "Details": [{"InventoryID": w("WIDGET"), "OrderQty": w(3), "UnitPrice": w(Decimal("12.50")),
                         "DiscountAmount": w(Decimal("2.50")), "ManualPrice": w(True)},
                        {"InventoryID": w("SHIPPING"), "OrderQty": w(1), "UnitPrice": w(Decimal("5.00"))}],
            "TaxDetails": [{"TaxID": w("VAT20"), "TaxableAmount": w(Decimal("40.00")),
                            "TaxAmount": w(Decimal("8.00"))}]}
    body.update(header)
    return body


async def test_sales_order_totals_and_a_payment_applied_to_it(app, api, anon):
    await seed_payment_methods(anon)
    saved = await api.put(f"{BASE}/SalesOrder", content=dumps(order_body()),
                          headers={"Content-Type": "application/json"},
                          params={"$expand": "Details,TaxDetails,Totals"})
    assert saved.status_code == 200, saved.text
    order = saved.json()
    assert (order["OrderNbr"]["value"], order["Status"]["value"], order["CurrencyID"]["value"]) == (
        "000001", "Open", "USD")
    assert amounts(order, "OrderTotal", "TaxTotal", "OrderedQty") == [Decimal("48.00"), Decimal("8.00"), 4]
    assert amounts(order["Details"][0], "Amount", "ExtendedPrice") == [Decimal("35.00"), Decimal("37.50")]
    assert order["Details"][0]["LineDescription"]["value"] == "WIDGET"
    assert amounts(order["Totals"], "LineTotalAmount", "UnpaidBalance") == [Decimal("40.00"), Decimal("48.00")]
    bad = await api.put(f"{BASE}/SalesOrder", content=dumps(order_body(Details=[{"InventoryID": w("NOPE"),
                                                                              "OrderQty": w(1)}])))
    assert bad.status_code == 422 and "error" in bad.json()["Details"][0]["InventoryID"]

    paid = await put_payment(api, payment_body(OrdersToApply=[
        {"OrderType": w("SO"), "OrderNbr": w("000001"), "AppliedToOrder": w(Decimal("48.00"))}]))
    assert paid.status_code == 200, paid.text
    assert amounts(paid.json(), "AppliedToOrders", "AvailableBalance") == [Decimal("48.00"), Decimal(0)]
    started = await api.post(f"{BASE}/Payment/ReleasePayment",
                             json={"entity": {"Type": w("Payment"), "ReferenceNbr": w("000001")}})
    while (await api.get(started.headers["Location"])).status_code == 202:
        pass
    [doc] = (await anon.get("/_sandbox/documents", params={"type": "Sales Order"})).json()
    assert {k: doc[k] for k in ("type", "number", "external_ref", "customer_order", "amount", "balance",
                                "currency")} == {
        "type": "Sales Order", "number": "000001", "external_ref": "shop-1001", "customer_order": "#1001",
        "amount": "48.00", "balance": "0.00", "currency": "USD"}
    assert doc["applications"] == [{"doc_type": "Payment", "reference_nbr": "000001", "amount_paid": "48.00"}]
    found = (await api.get(f"{BASE}/SalesOrder", params={"$filter": "ExternalRef eq 'shop-1001'",
                                                          "$select": "OrderType,OrderNbr,OrderTotal"})).json()
    assert [(o["OrderType"]["value"], o["OrderNbr"]["value"]) for o in found] == [("SO", "000001")]


# ---------------------------------------------------------------- shipments

async def put_order(api, **header) -> dict:
    saved = await api.put(f"{BASE}/SalesOrder", content=dumps(order_body(**header)),
                          headers={"Content-Type": "application/json"})
    assert saved.status_code == 200, saved.text
    return saved.json()


async def test_shipment_of_an_order_then_confirm_completes_the_order(app, api, clock):
    order = await put_order(api)
    nbr = order["OrderNbr"]["value"]
    body = {"CustomerID": w("C1"), "ShipVia": w("UPSGROUND"),
            "Details": [{"OrderType": w("SO"), "OrderNbr": w(nbr)}],  # "Add Order": every line to ship
            "Packages": [{"TrackingNbr": w("1Z999"), "Weight": w(Decimal("1.5"))}, {"TrackingNbr": w("1Z998")}]}
    saved = await api.put(f"{BASE}/Shipment", content=dumps(body), headers={"Content-Type": "application/json"},
                          params={"$expand": "Details,Orders,Packages"})
    assert saved.status_code == 200, saved.text
    shipment = saved.json()
    assert (shipment["ShipmentNbr"]["value"], shipment["Status"]["value"], shipment["Type"]["value"],
            shipment["Operation"]["value"]) == ("000001", "Open", "Shipment", "Issue")
    [line] = shipment["Details"]  # the SHIPPING non-stock line needs no shipment
    assert (line["InventoryID"]["value"], line["OrderLineNbr"]["value"], line["WarehouseID"]["value"]) == (
        "WIDGET", 1, "MAIN")
    assert amounts(line, "ShippedQty", "OpenQty") == [3, 3]
    assert [(o["OrderNbr"]["value"], o["ShipmentNbr"]["value"]) for o in shipment["Orders"]] == [(nbr, "000001")]
    assert [p["TrackingNbr"]["value"] for p in shipment["Packages"]] == ["1Z999", "1Z998"]
    assert shipment["PackageCount"]["value"] == 2 and amounts(shipment, "PackageWeight") == [Decimal("1.5")]
    again = await api.put(f"{BASE}/Shipment", content=dumps(body))  # nothing left to allocate
    assert again.status_code == 422 and "nothing left" in again.json()["Details"][0]["OrderNbr"]["error"]

    clock.now += 60
    started = await api.post(f"{BASE}/Shipment/ConfirmShipment", json={"entity": {"ShipmentNbr": w("000001")}})
    assert started.status_code == 202
    while (poll := await api.get(started.headers["Location"])).status_code == 202:
        pass
    assert poll.status_code == 204
    confirmed = (await api.get(f"{BASE}/Shipment/000001", params={"$expand": "Packages"})).json()
    assert confirmed["Status"]["value"] == "Confirmed"
    assert confirmed["LastModifiedDateTime"]["value"] > shipment["LastModifiedDateTime"]["value"]
    assert all(p["Confirmed"]["value"] is True for p in confirmed["Packages"])
    so = (await api.get(f"{BASE}/SalesOrder/SO/{nbr}", params={"$expand": "Details"})).json()
    assert so["Status"]["value"] == "Completed"
    assert [d["OpenQty"]["value"] for d in so["Details"]] == [0, 1]
    twice = await api.post(f"{BASE}/Shipment/ConfirmShipment", json={"entity": {"ShipmentNbr": w("000001")}})
    assert twice.status_code == 422 and "already been confirmed" in twice.json()["error"]
    unknown = await api.post(f"{BASE}/Shipment/ConfirmShipment", json={"entity": {"ShipmentNbr": w("999")}})
    assert unknown.status_code == 422 and "error" in unknown.json()["ShipmentNbr"]


async def test_shipment_lines_are_checked_against_the_order(app, api):
    nbr = (await put_order(api))["OrderNbr"]["value"]

    async def put(details, customer="C1") -> httpx.Response:
        return await api.put(f"{BASE}/Shipment", content=dumps({"CustomerID": w(customer), "Details": details}))

    too_many = await put([{"OrderType": w("SO"), "OrderNbr": w(nbr), "OrderLineNbr": w(1), "ShippedQty": w(4)}])
    assert too_many.status_code == 422 and "open quantity (3)" in too_many.json()["Details"][0]["ShippedQty"]["error"]
    other = await put([{"OrderType": w("SO"), "OrderNbr": w(nbr)}], customer="C2")
    assert other.status_code == 422 and "another customer" in other.json()["Details"][0]["OrderNbr"]["error"]
    missing = await put([{"OrderType": w("SO"), "OrderNbr": w("424242")}])
    assert missing.status_code == 422 and "cannot be found" in missing.json()["Details"][0]["OrderNbr"]["error"]
    part = await put([{"OrderType": w("SO"), "OrderNbr": w(nbr), "OrderLineNbr": w(1), "ShippedQty": w(2)}])
    assert part.status_code == 200 and amounts(part.json(), "ShippedQty") == [2]
    assert app.state.acumatica.records["Shipment"] and len(app.state.acumatica.records["Shipment"]) == 1


async def test_shipment_list_query_options_and_the_control_surface(app, api, anon, clock):
    first = (await put_order(api))["OrderNbr"]["value"]
    second = (await put_order(api, ExternalRef=w("shop-1002")))["OrderNbr"]["value"]
    made = await anon.post("/_sandbox/shipments", json=[
        {"ExternalRef": "shop-1001", "TrackingNbr": "T-1", "ShipVia": "FEDEX"},
        {"OrderNbr": second, "TrackingNumbers": ["T-2", "T-3"], "Confirm": False}])
    assert made.status_code == 200, made.text
    assert [(s["shipment_nbr"], s["status"], s["orders"][0]["order_nbr"], s["tracking_numbers"])
            for s in made.json()] == [("000001", "Confirmed", first, ["T-1"]), ("000002", "Open", second, ["T-2", "T-3"])]
    cutoff = made.json()[0]["last_modified"]
    clock.now += 5
    edited = await api.put(f"{BASE}/Shipment", content=dumps({"ShipmentNbr": w("000002"), "Description": w("x")}))
    assert edited.json()["LastModifiedDateTime"]["value"] > cutoff  # writes move the timestamp

    rows = (await api.get(f"{BASE}/Shipment?$filter=LastModifiedDateTime gt datetimeoffset'{quote(cutoff, safe='')}'"
                          "&$expand=Orders,Packages&$select=ShipmentNbr,Status,Orders/OrderNbr,Packages/TrackingNbr")
            ).json()
    assert [(r["ShipmentNbr"]["value"], [p["TrackingNbr"]["value"] for p in r["Packages"]]) for r in rows] == [
        ("000002", ["T-2", "T-3"])]
    assert set(rows[0]) - {"id", "rowNumber", "note", "custom", "_links"} == {
        "ShipmentNbr", "Status", "Orders", "Packages"}
    assert set(rows[0]["Orders"][0]) - {"id", "rowNumber", "note", "custom"} == {"OrderNbr"}
    confirmed = (await api.get(f"{BASE}/Shipment", params={"$filter": "Status eq 'Confirmed'"})).json()
    assert [r["ShipmentNbr"]["value"] for r in confirmed] == ["000001"] and "Packages" not in confirmed[0]
    paged = (await api.get(f"{BASE}/Shipment", params={"$top": 1, "$skip": 1, "$select": "ShipmentNbr"})).json()
    assert [r["ShipmentNbr"]["value"] for r in paged] == ["000002"]
    locked = await api.put(f"{BASE}/Shipment", content=dumps({"ShipmentNbr": w("000001"), "ShipVia": w("UPS")}))
    assert locked.json()["ShipVia"]["value"] == "FEDEX"  # confirmed shipments ignore changes
    listed = (await anon.get("/_sandbox/shipments")).json()
    assert [s["shipment_nbr"] for s in listed] == ["000001", "000002"]
    assert (await anon.post("/_sandbox/shipments", json={"ExternalRef": "nope"})).status_code == 404
    done = await anon.post("/_sandbox/shipments", json={"ExternalRef": "shop-1001", "TrackingNbr": "T-9"})
    assert done.status_code == 422 and "Completed" in done.json()["error"]


async def test_version_23_shipment_has_no_unlimited_packages(api):
    old = (await api.get("/entity/Default/23.200.001/Shipment", params={"$top": 1})).json()
    assert old == []
    bad = await api.get("/entity/Default/23.200.001/Shipment", params={"$filter": "UnlimitedPackages eq true"})
    assert bad.status_code == 400


async def test_refund_applies_to_an_open_credit_memo_in_full_and_closes_it(app, api, anon):
    """A Refund takes credit memos only (not invoices, not orders), within the memo's balance,
    and is released only when applied in full; release closes the memo."""
    await seed_payment_methods(anon)
    memo = {"Type": w("Credit Memo"), "CustomerID": w("C1"), "ExternalRef": w("shop-1001-R1"),
            "Details": [{"InventoryID": w("SHIPPING"), "Qty": w(1), "UnitPrice": w(Decimal("14.00"))}]}
    number = (await put_invoice(api, memo)).json()["ReferenceNbr"]["value"]
    await release(api, "Credit Memo", number)  # open: nothing to apply it to
    invoice = await open_invoice(api)

    def refund(amount: str, doc_type: str = "CRM", ref: str = number) -> dict:
        return payment_body(Type=w("Refund"), PaymentAmount=w(Decimal(amount)),
                            ExternalRef=w("shop-1001-R1-P"), DocumentsToApply=[
                                {"DocType": w(doc_type), "ReferenceNbr": w(ref),
                                 "AmountPaid": w(Decimal(amount))}])

    to_invoice = await put_payment(api, refund("14.00", "Invoice", invoice))
    assert to_invoice.status_code == 422 and "Doc. Type" in to_invoice.text
    over = await put_payment(api, refund("15.00"))
    assert over.status_code == 422 and "AmountPaid" in over.text
    part = payment_body(Type=w("Refund"), PaymentAmount=w(Decimal("14.00")), DocumentsToApply=[
        {"DocType": w("Credit Memo"), "ReferenceNbr": w(number), "AmountPaid": w(Decimal("4.00"))}])
    saved = (await put_payment(api, part)).json()
    refused = await api.post(f"{BASE}/Payment/ReleasePayment", json={"entity": {
        "Type": w("Refund"), "ReferenceNbr": saved["ReferenceNbr"]}})
    assert refused.status_code == 422 and "out of balance" in refused.text
    await api.delete(f"{BASE}/Payment/{saved['id']}")

    full = (await put_payment(api, refund("14.00"))).json()
    started = await api.post(f"{BASE}/Payment/ReleasePayment", json={"entity": {
        "Type": w("Refund"), "ReferenceNbr": full["ReferenceNbr"]}})
    while (poll := await api.get(started.headers["Location"])).status_code == 202:
        pass
    assert poll.status_code == 204
    state = app.state.acumatica
    [closed] = state.documents("Credit Memo")
    assert (closed["status"], closed["balance"]) == ("Closed", "0.00")
    [paid_back] = state.documents("Refund")
    assert (paid_back["status"], paid_back["amount"], paid_back["balance"]) == ("Closed", "14.00", "0.00")
    balances = {c["customer_id"]: Decimal(c["balance"]) for c in state.customers()}
    assert balances["C1"] == Decimal("48.00")  # the open invoice alone: the credit is paid out

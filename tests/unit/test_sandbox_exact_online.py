"""The Exact Online simulator behaves as shared/reference/exact-online.md describes."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest

from sandbox.exact_online import DEFAULT_DIVISION, create_app

CLIENT = {"client_id": "9a8b7c6d-0000-4000-8000-000000000001", "client_secret": "sandbox-secret"}
REDIRECT = "http://127.0.0.1:8765/callback"
DIV = f"/api/v1/{DEFAULT_DIVISION}"


@pytest.fixture
def app():
    return create_app(redirect_uris=(REDIRECT,))


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://exact.test") as c:
        yield c


async def tokens(client) -> dict:
    auth = await client.get("/api/oauth2/auth", params={
        "client_id": CLIENT["client_id"], "redirect_uri": REDIRECT, "response_type": "code", "state": "s1"})
    assert auth.status_code == 302 and "state=s1" in auth.headers["location"]
    code = re.search(r"code=([^&]+)", auth.headers["location"]).group(1)
    resp = await client.post("/api/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **CLIENT})
    assert resp.status_code == 200
    return resp.json()


def bearer(t: dict) -> dict:
    return {"Authorization": f"Bearer {t['access_token']}"}


async def refresh(client, token: str) -> httpx.Response:
    return await client.post("/api/oauth2/token", data={"grant_type": "refresh_token",
                                                         "refresh_token": token, **CLIENT})


async def test_tokens_rotate_and_a_used_refresh_token_is_refused(client):
    await client.post("/_sandbox/settings", json={"refresh_grace_seconds": 0})  # strict mode
    t = await tokens(client)
    assert t["expires_in"] == "600" and t["token_type"] == "bearer"
    early = await refresh(client, t["refresh_token"])
    assert early.status_code == 401 and "not expired" in early.json()["error_description"]
    await client.post("/_sandbox/clock", json={"advance": 575})
    new = await refresh(client, t["refresh_token"])
    assert new.status_code == 200 and new.json()["refresh_token"] != t["refresh_token"]
    await client.post("/_sandbox/expire-tokens")
    reused = await refresh(client, t["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    old = await client.get(f"{DIV}/crm/Accounts", params={"$select": "ID"}, headers=bearer(t))
    assert old.status_code == 401  # earlier access tokens of the chain stop working


async def test_a_used_refresh_token_has_a_grace_window_until_its_successor_is_used(client):
    t = await tokens(client)
    await client.post("/_sandbox/clock", json={"advance": 575})
    lost = (await refresh(client, t["refresh_token"])).json()  # answered, then never saved
    again = await refresh(client, t["refresh_token"])  # inside the grace window
    assert again.status_code == 200 and again.json()["refresh_token"] != lost["refresh_token"]
    assert (await refresh(client, lost["refresh_token"])).status_code == 400  # the void set
    ok = await client.get(f"{DIV}/crm/Accounts", params={"$select": "ID"}, headers=bearer(again.json()))
    assert ok.status_code == 200  # the newest set is used: the first token loses its grace
    gone = await refresh(client, t["refresh_token"])
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
    stats = (await client.get("/_sandbox/stats")).json()
    assert (stats["refresh_grace_used"], stats["refresh_reused"]) == (1, 2)


async def test_the_grace_window_ends_after_its_seconds(client):
    t = await tokens(client)
    await client.post("/_sandbox/clock", json={"advance": 575})
    assert (await refresh(client, t["refresh_token"])).status_code == 200
    await client.post("/_sandbox/clock", json={"advance": 601})
    late = await refresh(client, t["refresh_token"])
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


async def test_codes_are_single_use_and_bound_to_the_redirect(client):
    code = (await client.post("/_sandbox/authorize", json={"redirect_uri": REDIRECT})).json()["code"]
    wrong = await client.post("/api/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": "http://evil/", **CLIENT})
    assert wrong.status_code == 400
    again = await client.post("/api/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **CLIENT})
    assert again.status_code == 400  # spent by the first attempt


async def test_me_division_envelope_errors_and_quota_headers(client):
    h = bearer(await tokens(client))
    me = await client.get("/api/v1/current/Me", params={"$select": "CurrentDivision"}, headers=h)
    assert me.json()["d"]["results"][0]["CurrentDivision"] == DEFAULT_DIVISION
    assert set(me.json()["d"]["results"][0]) == {"__metadata", "CurrentDivision"}
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Minutely-Remaining",
                 "X-RateLimit-Minutely-Reset"):
        assert name in me.headers
    assert int(me.headers["X-RateLimit-Minutely-Reset"]) > 1e12  # epoch milliseconds
    wrong = await client.get("/api/v1/999/crm/Accounts", params={"$select": "ID"}, headers=h)
    assert wrong.status_code == 403
    assert wrong.json() == {"error": {"code": "", "message": {"lang": "", "value": "Forbidden - WrongDivision"}}}
    no_select = await client.get(f"{DIV}/crm/Accounts", headers=h)
    assert no_select.status_code == 400 and "$select" in no_select.json()["error"]["message"]["value"]
    skip = await client.get(f"{DIV}/crm/Accounts", params={"$select": "ID", "$skip": "1"}, headers=h)
    assert skip.status_code == 400
    nav = await client.get(f"{DIV}/salesinvoice/SalesInvoices",
                           params={"$select": "InvoiceID", "$filter": "SalesInvoiceLines/AmountFC ge 1"}, headers=h)
    assert nav.status_code == 400


async def test_paging_by_next_with_skiptoken(client):
    h = bearer(await tokens(client))
    await client.post("/_sandbox/settings", json={"page_size": 2})
    await client.post("/_sandbox/seed", json={"items": [{"Code": f"SKU-{i}"} for i in range(5)]})
    url, codes = f"{DIV}/logistics/Items?$select=Code&$filter=startswith(Code,'SKU')", []
    while url:
        body = (await client.get(url, headers=h)).json()["d"]
        codes += [r["Code"] for r in body["results"]]
        url = body.get("__next")
        assert url is None or "$skiptoken=guid'" in url
    assert codes == [f"SKU-{i}" for i in range(5)]


async def test_429_after_the_minutely_limit_with_only_minutely_headers(client):
    h = bearer(await tokens(client))
    await client.post("/_sandbox/settings", json={"minutely_limit": 2})
    for _ in range(2):
        assert (await client.get("/api/v1/current/Me", headers=h)).status_code == 200
    refused = await client.get("/api/v1/current/Me", headers=h)
    assert refused.status_code == 429 and "X-RateLimit-Remaining" not in refused.headers
    assert refused.headers["X-RateLimit-Minutely-Remaining"] == "0"


async def seed_books(client) -> tuple[dict, str]:
    await client.post("/_sandbox/seed", json={
        "gl_accounts": [{"Code": "8000", "Description": "Revenue"}],
        "vat_codes": [{"Code": "2", "Percentage": "0.21"}],
        "journals": [{"Code": "20", "Description": "Bank", "Type": 12}],
        "items": [{"Code": "HOODIE", "GLRevenueCode": "8000"}]})
    h = bearer(await tokens(client))
    account = (await client.post(f"{DIV}/crm/Accounts", json={"Name": "Ann", "Status": "C"}, headers=h)).json()["d"]
    assert account["Code"] == " " * 17 + "1"
    item = (await client.get(f"{DIV}/logistics/Items", params={"$select": "ID"}, headers=h)).json()["d"]["results"][0]
    return h, account["ID"], item["ID"]


async def test_invoice_totals_credit_note_signs_and_your_ref(client):
    h, account, item = await seed_books(client)
    body = {"OrderedBy": account, "Journal": "70", "YourRef": "WC-1", "Currency": "EUR",
            "SalesInvoiceLines": [{"Item": item, "Quantity": 3, "NetPrice": 10, "AmountFC": 29.99,
                                   "VATCode": "2", "VATAmountFC": 6.30}]}
    created = await client.post(f"{DIV}/salesinvoice/SalesInvoices", json=body, headers=h)
    assert created.status_code == 201
    d = json.loads(created.content, parse_float=Decimal)["d"]
    assert (d["AmountFC"], d["VATAmountFC"], d["Status"], d["Type"]) == (Decimal("36.29"), Decimal("6.30"), 20, 8020)
    assert len(d["SalesInvoiceLines"]["results"]) == 1
    found = await client.get(f"{DIV}/salesinvoice/SalesInvoices", headers=h,
                             params={"$select": "InvoiceNumber", "$filter": "YourRef eq 'WC-1' and Type eq 8020"})
    assert found.json()["d"]["results"][0]["InvoiceNumber"] == d["InvoiceNumber"]
    positive = await client.post(f"{DIV}/salesinvoice/SalesInvoices", json={**body, "Type": 8021}, headers=h)
    assert positive.status_code == 400
    too_long = await client.post(f"{DIV}/salesinvoice/SalesInvoices", json={**body, "YourRef": "X" * 31}, headers=h)
    assert too_long.status_code == 400 and "YourRef" in too_long.json()["error"]["message"]["value"]
    receipt = await client.post(f"{DIV}/financialtransaction/BankEntries", headers=h, json={
        "JournalCode": "20", "BankEntryLines": [{"Account": account, "AmountFC": 36.29, "OurRef": d["InvoiceNumber"],
                                                 "Description": "WC-1-P1"}]})
    assert receipt.status_code == 201
    bad_journal = await client.post(f"{DIV}/financialtransaction/BankEntries", headers=h, json={
        "JournalCode": "70", "BankEntryLines": [{"Account": account, "AmountFC": 1}]})
    assert bad_journal.status_code == 400
    docs = {x["your_ref"]: x for x in (await client.get("/_sandbox/documents")).json()}
    assert docs["WC-1-P1"]["type"] == "receipt" and docs["WC-1"]["amount"] == 36.29


async def test_webhook_subscription_validates_and_signs(app, client, monkeypatch):
    h, account, _ = await seed_books(client)
    posted: list[tuple[str, bytes]] = []

    async def fake_post(self, url, body):
        posted.append((url, body))
        return 200

    from sandbox import exact_online

    monkeypatch.setattr(exact_online.Deliverer, "post", fake_post)
    sub = await client.post(f"{DIV}/webhooks/WebhookSubscriptions", headers=h,
                            json={"CallbackURL": "https://hooks.example/exact", "Topic": "Accounts"})
    assert sub.status_code == 201 and posted[0] == ("https://hooks.example/exact", b"")
    plain = await client.post(f"{DIV}/webhooks/WebhookSubscriptions", headers=h,
                              json={"CallbackURL": "http://hooks.example/exact", "Topic": "Accounts"})
    assert plain.status_code == 400
    await client.put(f"{DIV}/crm/Accounts(guid'{account}')", json={"City": "Utrecht"}, headers=h)
    import asyncio

    for _ in range(20):
        if len(posted) > 1:  # the validation call, then the notification
            break
        await asyncio.sleep(0.01)
    body = posted[-1][1].decode()
    content = re.match(r'^\{"Content":(.*),"HashCode":"([0-9A-F]{64})"\}$', body)
    expected = hmac.new(b"sandbox-webhook-secret", content.group(1).encode(), hashlib.sha256).hexdigest().upper()
    assert content.group(2) == expected and json.loads(content.group(1))["Action"] == "Update"


async def test_an_unused_refresh_token_expires_after_30_days(client):
    t = await tokens(client)
    await client.post("/_sandbox/clock", json={"advance": 31 * 86400})
    expired = await refresh(client, t["refresh_token"])
    assert expired.status_code == 400 and "expired" in expired.json()["error_description"]


async def test_account_modified_moves_on_every_write_and_filters_by_modified(client):
    h = bearer(await tokens(client))
    created = await client.post(f"{DIV}/crm/Accounts", headers=h, json={"Name": "Ann", "Code": "5"})
    account = created.json()["d"]
    stamp = lambda a: int(re.match(r"/Date\((\d+)\)/", a["Modified"]).group(1))  # noqa: E731
    created_at = datetime.fromtimestamp(stamp(account) / 1000, timezone.utc).replace(tzinfo=None)
    since = f"datetime'{created_at.isoformat(timespec='milliseconds')}'"
    url = f"{DIV}/crm/Accounts?$select=ID,City,Modified&$filter=Modified gt {since}"
    assert (await client.get(url, headers=h)).json()["d"]["results"] == []
    await client.post("/_sandbox/clock", json={"advance": 2})
    put = await client.put(f"{DIV}/crm/Accounts(guid'{account['ID']}')", headers=h,
                           json={"City": "Haarlem"})
    assert put.status_code == 204
    [row] = (await client.get(url, headers=h)).json()["d"]["results"]
    assert row["City"] == "Haarlem" and stamp(row) > stamp(account)
    await client.post("/_sandbox/clock", json={"advance": 2})
    user = await client.post(f"/_sandbox/accounts/{account['ID']}", json={"City": "Utrecht"})
    assert user.status_code == 200 and user.json()["City"] == "Utrecht"
    [row2] = (await client.get(url, headers=h)).json()["d"]["results"]
    assert stamp(row2) > stamp(row)
    assert (await client.post("/_sandbox/accounts/00000000-0000-4000-8000-000000000000",
                              json={})).status_code == 404
    stats = (await client.get("/_sandbox/stats")).json()["by_route"]
    assert stats["PUT crm/Accounts"] == 1 and stats["GET crm/Accounts"] == 3


async def test_sales_orders_and_deliveries_are_read_only(client):
    h = bearer(await tokens(client))
    refused = await client.post(f"{DIV}/salesorder/GoodsDeliveries", headers=h, json={})
    assert refused.status_code == 405
    listed = await client.get(f"{DIV}/salesorder/GoodsDeliveries?$select=EntryID,TrackingNumber",
                              headers=h)
    assert listed.status_code == 200 and listed.json()["d"]["results"] == []

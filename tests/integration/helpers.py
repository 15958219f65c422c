"""Store-side actions and ERP-side reads for the end-to-end tests (real HTTP only)."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import time
from decimal import Decimal

from starter.stack import Stack
from tests.integration.conftest import eventually

API = "wp-json/wc/v3/"


async def products(stack: Stack) -> list[dict]:
    async with stack.store_client() as shop:
        resp = await shop.get(API + "products", params={"per_page": 100, "orderby": "id", "order": "asc"})
        resp.raise_for_status()
        return [p for p in resp.json() if p.get("sku") and p.get("type") == "simple"]


async def place_order(stack: Stack, *, quantities=(2, 1), paid: bool = True, customer_id: int = 0,
                      email: str = "ann.buyer@example.com", coupon: str | None = None,
                      currency: str | None = None, extra_lines=()) -> dict:
    catalog = await products(stack)
    lines = [{"product_id": catalog[i]["id"], "quantity": q} for i, q in enumerate(quantities)]
    lines += list(extra_lines)
    body = {"set_paid": paid, "customer_id": customer_id, "line_items": lines,
            "billing": {"first_name": "Ann", "last_name": "Buyer", "email": email,
                        "address_1": "1 Main St", "city": "Oakland", "state": "CA",
                        "postcode": "94607", "country": "US"},
            "shipping_lines": [{"method_id": "flat_rate", "method_title": "Flat rate",
                                "total": "5.00"}]}
    if coupon:
        body["coupon_lines"] = [{"code": coupon}]
    if currency:
        body["currency"] = currency
    async with stack.store_client() as shop:
        resp = await shop.post(API + "orders", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()


async def update_order(stack: Stack, order_id: int, body: dict) -> dict:
    async with stack.store_client() as shop:
        resp = await shop.put(f"{API}orders/{order_id}", json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()


async def refund(stack: Stack, order: dict, *, amount: str | None = None, line_qty: int = 0) -> dict:
    body: dict = {"api_refund": False, "reason": "test"}
    if line_qty:
        item = order["line_items"][0]
        unit = Decimal(item["total"]) / item["quantity"]
        unit_tax = Decimal(item["total_tax"]) / item["quantity"]
        body["line_items"] = [{"id": item["id"], "quantity": line_qty,
                               "refund_total": str((unit * line_qty).quantize(Decimal("0.01"))),
                               "refund_tax": [{"id": t["id"], "refund_total": str(
                                   (unit_tax * line_qty).quantize(Decimal("0.01")))}
                                   for t in item["taxes"] if Decimal(str(t["total"]))]}]
    if amount:
        body["amount"] = amount
    async with stack.store_client() as shop:
        resp = await shop.post(f"{API}orders/{order['id']}/refunds", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()


async def get_order(stack: Stack, order_id: int) -> dict:
    async with stack.store_client() as shop:
        resp = await shop.get(f"{API}orders/{order_id}")
        resp.raise_for_status()
        return resp.json()


async def documents(stack: Stack, external_ref: str | None = None) -> list[dict]:
    docs = await stack.control("acumatica", "/_sandbox/documents")
    return [d for d in docs if external_ref is None or d["external_ref"] == external_ref]


async def wait_documents(stack: Stack, external_ref: str, count: int = 1, timeout: float = 60) -> list[dict]:
    async def check():
        docs = await documents(stack, external_ref)
        return docs if len(docs) >= count else None

    return await eventually(check, timeout=timeout)


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def settled(stack: Stack, conn, timeout: float = 90, *, order_ids=()):
    """The books of ``conn`` once they reconcile (the assertion names the rows that don't).
    With ``order_ids``, the ledger (no ERP request) is watched until each of them is posted
    first: a connection with an ERP quota then spends its slots on its orders, not on
    reading the books again and again."""
    from starter.demo import books

    deadline = time.monotonic() + timeout
    for order_id in order_ids:
        with contextlib.suppress(AssertionError):  # the reconciliation below names what is wrong
            await wait_order_state(stack, conn.id, order_id,
                                   timeout=max(deadline - time.monotonic(), 1))
    timeout = max(deadline - time.monotonic(), 10)

    async def check():
        rec = await books(stack, conn)
        return rec if rec.ok else None

    try:
        return await eventually(check, timeout=timeout)
    except AssertionError:
        rec = await books(stack, conn)
        raise AssertionError([d.message for d in rec.differences]) from None


async def wait_order_state(stack: Stack, connection_id: str, order_id, state: str = "posted",
                           timeout: float = 60):
    """The order's ledger row once its workflow recorded ``state`` (after its last post)."""
    async def check():
        row = stack.store.ledger_get(connection_id, "order", str(order_id))
        return row if row and row.state == state else None

    return await eventually(check, timeout=timeout)

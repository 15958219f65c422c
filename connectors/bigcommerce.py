"""BigCommerce store connector: v2 orders in, v3 transactions/refunds, catalog and
inventory out, v3 webhooks (reference: shared/reference/bigcommerce.md, sections §n).

- Auth is the bare access token in ``X-Auth-Token`` (no ``Bearer``) on
  ``{base_url}/stores/{store_hash}/v2|v3/...`` (§1). Tokens do not expire, so a 401 means
  the token was revoked or is wrong: :class:`AuthFailed`, nothing to refresh.
- The per-store quota is shared by every client of the store (§9): each response's
  ``X-Rate-Limit-*`` headers feed a pacer that waits for the window to reset before the
  quota runs out; a 429 becomes :class:`RateLimited` with the reset the server named.
- Webhook deliveries are stubs (§10.3): only ids are read, the record is always re-fetched.
  Store-level hooks carry no HMAC header; the connector registers each hook with its own
  secret custom header (§10.4 "true" 1) and also checks a Standard Webhooks signature when
  the delivery carries one (§10.4 "true" 3-4).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr, field_validator

from connectors.auth import XAuthToken
from connectors.base import CatalogPushResult, Webhook, WebhookEvent
from connectors.bigcommerce_mapping import (DEFAULT_LOCATION_ID, catalog_fields, customer_from_bc,
                                            order_from_bc, order_summary_from_bc, parse_datetime,
                                            stock_quantity)
from connectors.errors import AuthExpired, AuthFailed, ExternalError, NotFound, Rejected
from connectors.http import build_client, send, to_json
from connectors.payloads import chunks, path_id, text
from connectors.model import Customer, ItemChange, Order, Shipment, latest_per_sku
from connectors.pacing import BIGCOMMERCE, Pacer

SYSTEM = "bigcommerce"
DEFAULT_BASE_URL = "https://api.bigcommerce.com"
PAGE_SIZE = 250  # v3 maximum; v2 orders assumed the same (§3.1, unconfirmed)
SKU_LOOKUP_SIZE = 50  # SKUs per `sku:in=` lookup, keeps URLs short
VARIANT_LOOKUP_MAX = 25  # more unresolved SKUs than this: scan /catalog/variants instead
PRODUCT_BATCH = 10  # PUT /v3/catalog/products (§7.1)
VARIANT_BATCH = 50  # PUT /v3/catalog/variants (§7.2)
INVENTORY_BATCH = 2000  # PUT /v3/inventory/adjustments/absolute (§8)
SECRET_HEADER = "X-Ml-Connector-Token"
SIGNATURE_TOLERANCE = 300  # seconds, as the Standard Webhooks reference library
# ``updated`` fires on any change, status changes included (statusUpdated would only
# deliver the same news twice); refunds get their own scope.
ORDER_TOPICS = ("store/order/created", "store/order/updated", "store/order/refund/created")
CUSTOMER_TOPICS = ("store/customer/created", "store/customer/updated")
_STATUS_TO_ACTIVE = {"active": True, "disabled": False, "paused": False, "inactive": False}


class BigCommerceSettings(BaseModel):
    store_hash: str
    base_url: str = DEFAULT_BASE_URL  # the sandbox stands in for api.bigcommerce.com
    ca_bundle: str | None = None
    timeout: float = 30
    rate_limit_reserve: int = 3  # requests kept back for other clients of the store
    allow_insecure_http: bool = False  # plain-HTTP base_url: a local test server only

    @field_validator("store_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9]+", v):
            raise ValueError("store_hash is the alphanumeric id in stores/{hash}")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("base_url must be an http(s) URL")
        return v.rstrip("/")

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/stores/{self.store_hash}/"


class BigCommerceCredentials(BaseModel):
    access_token: SecretStr
    client_id: str = ""
    client_secret: SecretStr | None = None


def rate_pacer(reserve: int = 3, **kw: Any) -> Pacer:
    """Keeps this client inside the store's quota window (§9); the reset is relative, so the
    monotonic clock measures it."""
    return Pacer(BIGCOMMERCE, reserve=reserve, system=SYSTEM, **{"clock": time.monotonic, **kw})


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


# --- errors ----------------------------------------------------------------------------

def _error_title(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return str(entry)
    return str(entry.get("title") or entry.get("message") or entry.get("error") or entry)


def read_error(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    """v2 errors are an array of ``{status, message}``; v3 errors ``{status, title, type,
    errors}``; refunds wrap theirs in ``data: [...]``; variant batches in ``batch_errors``."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        return (resp.text[:300].strip() or resp.reason_phrase), {}
    if isinstance(body, list):
        return "; ".join(_error_title(e) for e in body) or resp.reason_phrase, {}
    if not isinstance(body, dict):
        return str(body)[:300], {}
    for key in ("data", "batch_errors"):
        if isinstance(body.get(key), list) and body[key]:
            return "; ".join(_error_title(e) for e in body[key]), {}
    fields = body.get("errors") if isinstance(body.get("errors"), dict) else {}
    fields = {str(k): str(v) for k, v in fields.items()}
    title = _error_title(body)
    if fields:
        title += " (" + "; ".join(f"{k}: {v}" for k, v in fields.items()) + ")"
    return title, fields


# --- webhooks (used by the receiver; pure) ---------------------------------------------

def secret_header_value(secret: str) -> str:
    """What the hook's custom header carries: a key derived from the connection's secret,
    so the secret itself never appears in the hook's configuration (which the API shows)."""
    digest = hmac.new(secret.encode(), b"ml-connector bigcommerce webhook", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def standard_webhooks_key(secret: str) -> bytes:
    """A ``whsec_``-prefixed secret is base64 (the Standard Webhooks format); any other is
    used as its raw bytes, like BigCommerce's client secret (§10.4 "true" 4)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def _standard_mac(secret: str, webhook_id: str, timestamp: str) -> "hmac.HMAC":
    return hmac.new(standard_webhooks_key(secret), f"{webhook_id}.{timestamp}.".encode(), hashlib.sha256)


def standard_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    mac = _standard_mac(secret, webhook_id, timestamp)
    mac.update(body)
    return base64.b64encode(mac.digest()).decode()


class SignatureCheck:
    """The hook's secret header (constant-time), and a Standard Webhooks signature when the
    delivery carries one: a present but bad signature fails. With ``standard_secret`` (the
    app's client secret, which BigCommerce signs with) the signature is required, so a
    delivery whose signature headers were dropped fails too. The signature's HMAC runs over
    the raw bytes as they arrive (see :class:`connectors.base.SignatureCheck`)."""

    def __init__(self, headers: Mapping[str, str], secret: str, *, standard_secret: str | None = None,
                 now: float | None = None, tolerance: int = SIGNATURE_TOLERANCE) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        token = h.get(SECRET_HEADER.lower())
        self._token_ok = bool(secret) and token is not None and hmac.compare_digest(
            secret_header_value(secret).encode(), token.strip().encode("utf-8", "replace"))
        signing = standard_secret or (
            secret if any(k in h for k in ("webhook-id", "webhook-timestamp", "webhook-signature"))
            else None)
        self._mac, self._signatures, self._standard = None, "", signing is not None
        wid, ts, signatures = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
        if signing is None or not (wid and ts and signatures):
            return
        stamp = _int(ts)
        # compared as integers: a 400-digit timestamp is merely out of tolerance, not an overflow
        if stamp is None or abs(int(time.time() if now is None else now) - stamp) > tolerance:
            return
        self._mac, self._signatures = _standard_mac(signing, wid, ts.strip()), signatures

    def update(self, chunk: bytes) -> None:
        if self._mac is not None:
            self._mac.update(chunk)

    def standard_ok(self) -> bool:
        if self._mac is None:
            return False
        expected = base64.b64encode(self._mac.digest())
        return any(version == "v1" and hmac.compare_digest(expected, value.encode("utf-8", "replace"))
                   for version, _, value in (part.partition(",") for part in self._signatures.split()))

    def verify(self) -> bool:
        return self._token_ok and (not self._standard or self.standard_ok())


def signature_check(headers: Mapping[str, str], secret: str, *, standard_secret: str | None = None,
                    now: float | None = None) -> SignatureCheck:
    return SignatureCheck(headers, secret, standard_secret=standard_secret, now=now)


def verify_standard_webhook(headers: Mapping[str, str], body: bytes, secret: str, *,
                            now: float | None = None, tolerance: int = SIGNATURE_TOLERANCE) -> bool:
    """``webhook-signature: v1,<base64>`` (space-separated list) over ``id.timestamp.body``,
    with the timestamp within ``tolerance`` seconds of now."""
    check = SignatureCheck(headers, "", standard_secret=secret, now=now, tolerance=tolerance)
    check.update(body)
    return check.standard_ok()


def verify_webhook(headers: Mapping[str, str], body: bytes, secret: str, *,
                   standard_secret: str | None = None, now: float | None = None) -> bool:
    """See :class:`SignatureCheck`."""
    check = signature_check(headers, secret, standard_secret=standard_secret, now=now)
    check.update(body)
    return check.verify()


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """BigCommerce documents no creation or validation ping."""
    return False


_EVENTS = {"created": "created", "updated": "updated", "statusUpdated": "status_updated",
           "archived": "archived", "refund/created": "refunded",
           "message/created": "message_created", "transaction/created": "transaction_created",
           "transaction/updated": "transaction_updated", "deleted": "deleted"}


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
    """The event a stub announces: ``scope`` names it, ``data.id`` the record (for
    transaction scopes ``data.order_id``); ``hash`` is the same for every delivery of one
    event, so it serves as the delivery id."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValueError("BigCommerce delivery: body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("scope"), str):
        raise ValueError("not a BigCommerce delivery: no scope")
    scope = payload["scope"]
    data = payload.get("data")
    if not isinstance(data, dict):
        raise ValueError(f"{scope} delivery: no data object")
    parts = scope.split("/")
    if len(parts) < 3 or parts[0] != "store":
        raise ValueError(f"{scope}: not a store/<resource>/<event> scope")
    resource, action = parts[1], "/".join(parts[2:])
    record_id = data.get("id")
    if data.get("type") == "transaction" or resource == "order" and data.get("order_id") is not None:
        record_id = data.get("order_id", record_id)
    if record_id is None:
        raise ValueError(f"{scope} delivery: no record id")
    h = {k.lower(): v for k, v in headers.items()}
    return WebhookEvent(topic=scope, resource=resource, event=_EVENTS.get(action, action),
                        resource_id=str(record_id),
                        delivery_id=str(payload.get("hash") or h.get("webhook-id") or ""))


# --- the connector ---------------------------------------------------------------------

class BigCommerceStore:
    """A BigCommerce store as a :class:`connectors.base.Storefront`."""

    system = SYSTEM

    def __init__(self, settings: BigCommerceSettings, credentials: BigCommerceCredentials, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 pacer: Pacer | None = None) -> None:
        self.settings = settings
        self._token = credentials.access_token.get_secret_value()
        self.pacer = pacer or rate_pacer(settings.rate_limit_reserve)
        self._client = build_client(
            settings.api_url, auth=XAuthToken(self._token), verify=settings.ca_bundle or True,
            timeout=settings.timeout, transport=transport, system=SYSTEM,
            allow_insecure_http=settings.allow_insecure_http,
            headers={"User-Agent": "ml-connector (order-to-cash)"})
        self._client.event_hooks["response"].append(self._observe)

    async def _observe(self, resp: httpx.Response) -> None:
        self.pacer.observe(resp)  # whichever pacer the store has now

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- requests --

    async def _request(self, method: str, path: str, *, body: Any = None,
                       params: Mapping[str, Any] | None = None) -> httpx.Response:
        await self.pacer.before()
        kwargs: dict[str, Any] = {"params": params}
        if body is not None:
            kwargs["content"] = to_json(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            return await send(self._client, method, path, system=SYSTEM, read_error=read_error,
                              **kwargs)
        except AuthExpired as exc:  # tokens do not expire: the token is wrong or revoked
            raise AuthFailed(exc.message, system=SYSTEM, status=exc.status,
                             resolution="create a new API account token for the store and "
                                        "update the connection's credentials") from None

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded body (money exact), None for 204 / an empty body."""
        resp = await self._request(method, path, **kwargs)
        if resp.status_code == 204 or not resp.content.strip():
            return None
        try:
            return json.loads(resp.content, parse_float=Decimal)
        except ValueError:
            raise ValueError(f"{SYSTEM}: {method} {path} answered non-JSON "
                             f"({resp.headers.get('Content-Type', '?')})") from None

    async def _data(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self._json(method, path, **kwargs)
        if not isinstance(body, dict) or "data" not in body:
            raise ValueError(f"{SYSTEM}: {method} {path} did not answer a v3 data envelope")
        return body["data"]

    async def _v2_pages(self, path: str, params: Mapping[str, Any] | None = None) -> AsyncIterator[dict]:
        """A v2 collection: bare arrays, page/limit, 204 when there is nothing (more)."""
        page = 1
        while True:
            items = await self._json("GET", path, params={**(params or {}), "page": page,
                                                          "limit": PAGE_SIZE})
            if items is None:
                return
            if not isinstance(items, list):
                raise ValueError(f"{SYSTEM}: GET {path} did not answer a list")
            for item in items:
                yield item
            if len(items) < PAGE_SIZE:
                return
            page += 1

    async def _v3_pages(self, path: str, params: Mapping[str, Any] | None = None) -> AsyncIterator[dict]:
        """A v3 collection: ``{data, meta.pagination}``; 204 when empty."""
        page = 1
        while True:
            body = await self._json("GET", path, params={**(params or {}), "page": page,
                                                         "limit": PAGE_SIZE})
            if body is None:
                return
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ValueError(f"{SYSTEM}: GET {path} did not answer a v3 collection")
            for item in data:
                yield item
            pagination = (body.get("meta") or {}).get("pagination") or {}
            total_pages = _int(pagination.get("total_pages"))
            if (page >= total_pages) if total_pages is not None else len(data) < PAGE_SIZE:
                return
            page += 1

    async def _all(self, pages: AsyncIterator[dict]) -> list[dict]:
        return [item async for item in pages]

    # -- orders --

    async def get_order(self, order_id: str) -> Order:
        """The order with its products, shipping addresses, coupons, taxes per line and
        rate, transactions and refunds (sub-resources fetched concurrently; coupons and
        taxes only when the order has any)."""
        oid = _id(order_id)
        order = await self._json("GET", f"v2/orders/{oid}")
        if not isinstance(order, dict):
            raise ValueError(f"{SYSTEM}: GET v2/orders/{oid} did not answer an order")
        products, addresses, coupons, taxes, transactions, refunds = await asyncio.gather(
            self._all(self._v2_pages(f"v2/orders/{oid}/products")),
            self._all(self._v2_pages(f"v2/orders/{oid}/shipping_addresses")),
            self._all(self._v2_pages(f"v2/orders/{oid}/coupons"))
            if _nonzero(order.get("coupon_discount")) else _empty(),
            self._all(self._v2_pages(f"v2/orders/{oid}/taxes", {"details": "true"}))
            if _nonzero(order.get("total_tax")) else _empty(),
            self._all(self._v3_pages(f"v3/orders/{oid}/transactions")),
            self._all(self._v3_pages(f"v3/orders/{oid}/payment_actions/refunds")))
        return order_from_bc(order, products=products, shipping_addresses=addresses,
                             coupons=coupons, taxes=taxes, transactions=transactions,
                             refunds=refunds)

    async def newest_order_created_at(self) -> datetime | None:
        """When the store's newest order was created, by the store's clock (None: no
        orders). One request: the order list, newest first, one order."""
        items = await self._json("GET", "v2/orders", params={"sort": "date_created:desc",
                                                             "limit": 1})
        if not items:
            return None
        if not isinstance(items, list) or not isinstance(items[0], dict):
            raise ValueError(f"{SYSTEM}: GET v2/orders did not answer a list")
        return parse_datetime(items[0].get("date_created"), "newest order.date_created")

    async def iter_orders_modified(self, since: datetime,
                                   until: datetime | None = None) -> AsyncIterator[Order]:
        """Orders modified in [since, until), oldest first, each once, from the list alone
        (no lines, refunds or payments: callers use :meth:`get_order` for the record).

        Sorted by ``date_modified``, each page restarts the listing at the newest date seen
        (keyset-style), so an order modified meanwhile, which moves to the end, cannot
        shift an unseen one past a page boundary."""
        cursor = since.astimezone(UTC).replace(microsecond=0)
        seen: set[str] = set()
        page = 1
        while True:
            params: dict[str, Any] = {"min_date_modified": _iso(cursor), "sort": "date_modified:asc",
                                      "page": page, "limit": PAGE_SIZE}
            if until is not None:
                params["max_date_modified"] = _iso(until.astimezone(UTC) + timedelta(seconds=1))
            items = await self._json("GET", "v2/orders", params=params)
            if items is None:
                return
            if not isinstance(items, list):
                raise ValueError(f"{SYSTEM}: GET v2/orders did not answer a list")
            newest = cursor
            for item in items:
                order = order_summary_from_bc(item)
                newest = max(newest, order.modified_at)
                if order.store_id in seen or not _within(order.modified_at, since, until):
                    continue
                seen.add(order.store_id)
                yield order
            if len(items) < PAGE_SIZE:
                return
            cursor, page = (newest, 1) if newest > cursor else (cursor, page + 1)

    # -- customers --

    async def find_customers(self, emails: Iterable[str]) -> list[dict]:
        """Registered customers by e-mail (``email:in``), as the store returns them."""
        wanted = sorted({e.strip().lower() for e in emails if e.strip()})
        found: list[dict] = []
        for chunk in chunks(wanted, SKU_LOOKUP_SIZE):
            found += await self._all(self._v3_pages("v3/customers", {"email:in": ",".join(chunk)}))
        return found

    async def get_customer(self, customer_id: str) -> Customer:
        """A registered customer with its addresses (the first one as billing address)."""
        found = await self._all(self._v3_pages("v3/customers", {"id:in": str(_id(customer_id)),
                                                                "include": "addresses"}))
        if not found:
            raise NotFound(f"customer {customer_id} does not exist", system=SYSTEM, status=404)
        return customer_from_bc(found[0])

    async def iter_customers(self) -> AsyncIterator[Customer]:
        async for raw in self._v3_pages("v3/customers", {"include": "addresses", "sort": "date_created:asc"}):
            yield customer_from_bc(raw)

    async def update_customer(self, customer_id: str, customer: Customer) -> Customer:
        """Name, e-mail, company and phone (``PUT /v3/customers`` cannot change addresses)."""
        body = [{"id": _id(customer_id), "email": customer.email, "first_name": customer.first_name,
                 "last_name": customer.last_name, "company": customer.company,
                 "phone": customer.phone or customer.billing.phone}]
        saved = await self._data("PUT", "v3/customers", body=body)
        return customer_from_bc(saved[0]) if saved else customer

    # -- shipments --

    async def mark_shipped(self, order_id: str, shipment: Shipment) -> None:
        """One v2 shipment per ERP shipment (first tracking number; any others in the
        comments) for every unit not yet shipped, to the order's first shipping address; the
        store moves the order to (Partially) Shipped itself. The ERP shipment id is in ``comments``, so a repeat finds
        its earlier shipment and adds nothing."""
        oid = _id(order_id)
        marker = f"ERP shipment {shipment.shipment_id}"
        existing = await self._all(self._v2_pages(f"v2/orders/{oid}/shipments"))
        if any(marker in text(s.get("comments")) for s in existing):
            return
        products = await self._all(self._v2_pages(f"v2/orders/{oid}/products"))
        addresses = await self._all(self._v2_pages(f"v2/orders/{oid}/shipping_addresses"))
        items = [{"order_product_id": p["id"], "quantity": int(p["quantity"]) - int(p.get("quantity_shipped") or 0)}
                 for p in products if int(p["quantity"]) > int(p.get("quantity_shipped") or 0)]
        if not items or not addresses:
            return  # nothing left to ship (or a digital order)
        first, *more = shipment.tracking_numbers or [""]
        comments = marker + (f"; also tracking {', '.join(more)}" if more else "")
        await self._json("POST", f"v2/orders/{oid}/shipments", body={
            "order_address_id": addresses[0]["id"], "tracking_number": first[:50],
            "tracking_carrier": "", "shipping_method": shipment.carrier, "comments": comments,
            "items": items})

    # -- diagnosis --

    async def ping(self) -> dict[str, Any]:
        """One authenticated read proving the token and the store hash."""
        report: dict[str, Any] = {"store": self.settings.api_url}
        try:
            await self._request("GET", "v2/orders", params={"limit": 1})
            report.update(ok=True, requests_left=self.pacer.left)
        except ExternalError as exc:
            report.update(ok=False, error=str(exc), error_kind=exc.kind, status=exc.status)
        except ValueError as exc:
            report.update(ok=False, error=str(exc), error_kind="NotTheApi")
        return report

    # -- catalog --

    async def push_item_changes(self, changes: list[ItemChange]) -> CatalogPushResult:
        """Absolute price/cost onto products and variants and absolute stock through the
        Inventory API, matched by SKU. Unknown SKUs are reported, never created; a refused
        batch marks its SKUs failed. Other failures raise: every value is absolute, so
        retrying the whole push is safe."""
        latest = latest_per_sku(changes)
        result = CatalogPushResult()
        products = await self._products_by_sku(list(latest))
        variants = await self._variants_by_sku([s for s in latest if s not in products])
        result.unknown = [s for s in latest if s not in products and s not in variants]
        failed: dict[str, str] = {}
        product_updates = [(s, {"id": products[s], **f}) for s in products
                           if (f := catalog_fields(latest[s]))]
        variant_updates = [(s, {"id": variants[s], **f}) for s in variants
                           if (f := catalog_fields(latest[s]))]
        stock = [(s, {"location_id": DEFAULT_LOCATION_ID, "sku": s, "quantity": q})
                 for s in latest if s in products or s in variants
                 if (q := stock_quantity(latest[s])) is not None]
        for batch in chunks(product_updates, PRODUCT_BATCH):
            await self._write(result, failed, batch, "PUT", "v3/catalog/products", [u for _, u in batch])
        for batch in chunks(variant_updates, VARIANT_BATCH):
            await self._write(result, failed, batch, "PUT", "v3/catalog/variants", [u for _, u in batch])
        for batch in chunks(stock, INVENTORY_BATCH):
            await self._write(result, failed, batch, "PUT", "v3/inventory/adjustments/absolute",
                              {"reason": "ml-connector: ERP stock", "items": [u for _, u in batch]})
        written = {s for s, _ in product_updates + variant_updates + stock}
        result.failed = failed
        result.updated = [s for s in latest if s in written and s not in failed]
        return result

    async def _products_by_sku(self, skus: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in chunks(skus, SKU_LOOKUP_SIZE):
            params = {"sku:in": ",".join(chunk), "include_fields": "sku"}
            async for product in self._v3_pages("v3/catalog/products", params):
                if product.get("sku") in chunk:
                    found[product["sku"]] = int(product["id"])
        return found

    async def _variants_by_sku(self, skus: list[str]) -> dict[str, int]:
        """Few SKUs: one exact ``sku=`` lookup each; many: one scan of every variant."""
        if not skus:
            return {}
        wanted, found = set(skus), {}
        if len(skus) <= VARIANT_LOOKUP_MAX:
            for sku in skus:
                async for variant in self._v3_pages("v3/catalog/variants", {"sku": sku}):
                    if variant.get("sku") == sku:
                        found[sku] = int(variant["id"])
            return found
        async for variant in self._v3_pages("v3/catalog/variants",
                                            {"include_fields": "sku,product_id"}):
            if variant.get("sku") in wanted:
                found[variant["sku"]] = int(variant["id"])
        return found

    async def _write(self, result: CatalogPushResult, failed: dict[str, str],
                     batch: list[tuple[str, dict]], method: str, path: str, body: Any) -> None:
        result.write_calls += 1
        try:
            answer = await self._json(method, path, body=body)
        except Rejected as exc:
            for sku, _ in batch:
                failed.setdefault(sku, exc.message)
            return
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:  # 207: some items saved, the ones not echoed in data failed
            saved = {str(i.get("id")) for i in answer.get("data") or [] if isinstance(i, dict)}
            text = "; ".join(_error_title(e) for e in errors) if isinstance(errors, list) else str(errors)
            for sku, update in batch:
                if str(update.get("id")) not in saved:
                    failed.setdefault(sku, text)

    # -- webhooks --

    async def list_webhooks(self) -> list[Webhook]:
        return [_webhook(w) async for w in self._v3_pages("v3/hooks")]

    async def create_webhook(self, topic: str, delivery_url: str, secret: str) -> Webhook:
        """Active from the start (``is_active`` is always sent: its default is unclear,
        §10.1), with the secret header the receiver checks."""
        body = {"scope": topic, "destination": delivery_url, "is_active": True,
                "headers": {SECRET_HEADER: secret_header_value(secret)}}
        return _webhook(await self._data("POST", "v3/hooks", body=body))

    async def update_webhook(self, webhook_id: str, **fields: str) -> Webhook:
        """Canonical field names: ``status`` ("active"/"disabled"), ``delivery_url``,
        ``topic``, ``secret``; BigCommerce's own names pass through."""
        body: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "status":
                if value not in _STATUS_TO_ACTIVE:
                    raise ValueError(f"unknown webhook status {value!r}")
                body["is_active"] = _STATUS_TO_ACTIVE[value]
            elif key == "delivery_url":
                body["destination"] = value
            elif key == "topic":
                body["scope"] = value
            elif key == "secret":
                body["headers"] = {SECRET_HEADER: secret_header_value(value)}
            else:
                body[key] = value
        return _webhook(await self._data("PUT", f"v3/hooks/{_id(webhook_id)}", body=body))

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._request("DELETE", f"v3/hooks/{_id(webhook_id)}")


# --- helpers ---------------------------------------------------------------------------

def _id(value: Any) -> int:
    return path_id(value, "BigCommerce")



async def _empty() -> list:
    return []


def _nonzero(value: Any) -> bool:
    try:
        return Decimal(str(value or 0)) != 0
    except ArithmeticError:
        return True  # unreadable: fetch and let the mapping complain


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("datetimes passed to BigCommerce filters must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _within(moment: datetime, since: datetime, until: datetime | None) -> bool:
    return moment >= since.replace(microsecond=0) and (until is None or moment < until)



def _webhook(raw: Any) -> Webhook:
    if not isinstance(raw, dict) or "id" not in raw:
        raise ValueError(f"{SYSTEM}: webhook response without an id")
    return Webhook(id=str(raw["id"]), topic=str(raw.get("scope", "")),
                   delivery_url=str(raw.get("destination", "")),
                   status="active" if raw.get("is_active") else "disabled")


def open_connector(settings: Mapping[str, Any], credentials: Mapping[str, Any], *, tokens: Any = None,
                   transport: httpx.AsyncBaseTransport | None = None,
                   on_settings_change: Callable[[dict[str, Any]], None] | None = None
                   ) -> BigCommerceStore:
    """The :class:`connectors.base.ConnectorFactory` of BigCommerce (no OAuth 2 tokens: an
    API account's token does not expire)."""
    return BigCommerceStore(BigCommerceSettings.model_validate(settings),
                            BigCommerceCredentials.model_validate(credentials), transport=transport)


__all__ = ["BigCommerceCredentials", "BigCommerceSettings", "BigCommerceStore", "CUSTOMER_TOPICS",
           "ORDER_TOPICS",
           "rate_pacer", "SECRET_HEADER", "SYSTEM", "is_ping", "open_connector", "parse_datetime",
           "parse_webhook", "read_error", "secret_header_value", "standard_signature",
           "verify_standard_webhook", "verify_webhook"]

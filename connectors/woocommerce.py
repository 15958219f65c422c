"""WooCommerce (wc/v3) store connector: orders and refunds in, price/stock out, webhooks.

Auth follows WooCommerce's own rules (reference §2): Basic over HTTPS, the same key pair in
the query string for hosts that strip ``Authorization`` (only when the merchant chose
``query_string``: URLs end up in proxy and server logs), OAuth 1.0a one-legged over plain HTTP
(a local test server only, with ``allow_insecure_http``). ``auto`` picks by scheme and never
moves the secret into the URL: a 401 to Basic says how to choose query-string auth instead.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import httpx
from pydantic import BaseModel, SecretStr, field_validator, model_validator

from connectors.auth import OAuth1Auth, QueryStringAuth
from connectors.base import CatalogPushResult, Webhook, WebhookEvent
from connectors.errors import AuthExpired, ExternalError, NotFound, Unavailable
from connectors.http import build_client, insecure_url_problem, send
from connectors.payloads import chunks, path_id
from connectors.model import Customer, ItemChange, Order, Shipment, latest_per_sku
from connectors.woocommerce_mapping import (customer_from_wc, customer_to_wc, item_change_to_wc,
                                            order_from_wc, store_datetime)

SYSTEM = "woocommerce"
API_PREFIX = "wp-json/wc/v3/"
PAGE_SIZE = 100  # wc/v3 maximum per_page
BATCH_SIZE = 100  # wc/v3 default batch limit (create + update + delete)
ORDER_TOPICS = ("order.created", "order.updated")  # refunds arrive as order.updated
CUSTOMER_TOPICS = ("customer.created", "customer.updated")
TRACKING_META = "_wc_shipment_tracking_items"
SKU_LOOKUP_SIZE = 50  # SKUs per `?sku=a,b,c` lookup, keeps URLs short
MAX_STALLED_RESTARTS = 3  # listing restarts in a row that yield nothing new
BASIC_REFUSED = (
    "check the consumer key and secret (WooCommerce > Settings > Advanced > REST API); if they "
    "are right, the web server strips the Authorization header: let it pass (Apache: "
    "CGIPassAuth On) or set the store setting auth_mode=query_string, which sends the secret "
    "in the URL, where proxy and server logs may keep it")

AuthMode = Literal["auto", "basic", "query_string", "oauth1"]


class WooCommerceSettings(BaseModel):
    base_url: str  # the site's home URL, e.g. https://shop.example/ (may include a subdirectory)
    auth_mode: AuthMode = "auto"
    ca_bundle: str | None = None  # CA file to trust, for stores behind a private CA
    timeout: float = 30
    allow_insecure_http: bool = False  # plain-HTTP base_url (OAuth 1.0a): a local test server only

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("base_url must be the store's http(s) home URL")
        return v.rstrip("/") + "/"

    @model_validator(mode="after")
    def _no_plain_text_secrets(self) -> WooCommerceSettings:
        # WooCommerce ignores Basic and query-string keys over HTTP; sending them would only
        # expose the secret.
        if self.scheme == "http" and self.auth_mode in ("basic", "query_string"):
            raise ValueError(f"auth_mode {self.auth_mode!r} needs an https:// base_url; "
                             "plain-HTTP stores use oauth1")
        if self.scheme == "http" and not self.allow_insecure_http:
            raise ValueError(insecure_url_problem(self.base_url, "base_url"))
        return self

    @property
    def scheme(self) -> str:
        return self.base_url.split(":", 1)[0].lower()

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX


class WooCommerceCredentials(BaseModel):
    consumer_key: SecretStr
    consumer_secret: SecretStr


# --- auth ------------------------------------------------------------------------------

def auth_for(mode: str, credentials: WooCommerceCredentials) -> httpx.Auth:
    key = credentials.consumer_key.get_secret_value()
    secret = credentials.consumer_secret.get_secret_value()
    if mode == "basic":
        return httpx.BasicAuth(key, secret)
    if mode == "query_string":
        return QueryStringAuth(key, secret)
    if mode == "oauth1":
        return OAuth1Auth(key, secret)
    raise ValueError(f"unknown WooCommerce auth mode {mode!r}")


# --- webhooks (used by the receiver; pure) ---------------------------------------------

_WP_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#039;": "'",
                "&#39;": "'", "&#x27;": "'"}
_WP_ENTITY_RE = re.compile("|".join(map(re.escape, _WP_ENTITIES)))


def _signature_mac(secret: str) -> "hmac.HMAC":
    """HMAC-SHA256 keyed with the secret after WordPress's ``wp_specialchars_decode``."""
    key = _WP_ENTITY_RE.sub(lambda m: _WP_ENTITIES[m.group(0)], secret).encode()
    return hmac.new(key, digestmod=hashlib.sha256)


def webhook_signature(body: bytes, secret: str) -> str:
    """What WooCommerce sends in ``X-WC-Webhook-Signature``: base64(HMAC-SHA256(raw body))."""
    mac = _signature_mac(secret)
    mac.update(body)
    return base64.b64encode(mac.digest()).decode()


class SignatureCheck:
    """A delivery's signature computed over the raw bytes as they arrive (see
    :class:`connectors.base.SignatureCheck`), compared in constant time at the end."""

    def __init__(self, secret: str, signature_header: str | None) -> None:
        self._given = (signature_header or "").strip().encode("utf-8", "replace")
        self._mac = _signature_mac(secret) if secret else None

    def update(self, chunk: bytes) -> None:
        if self._mac is not None:
            self._mac.update(chunk)

    def verify(self) -> bool:
        if not self._given or self._mac is None:
            return False
        return hmac.compare_digest(base64.b64encode(self._mac.digest()), self._given)


def signature_check(headers: Mapping[str, str], secret: str) -> SignatureCheck:
    signature = next((v for k, v in headers.items() if k.lower() == "x-wc-webhook-signature"), None)
    return SignatureCheck(secret, signature)


def verify_signature(body: bytes, secret: str, signature_header: str | None) -> bool:
    """Constant-time check of a delivery's signature over the raw bytes as received."""
    check = SignatureCheck(secret, signature_header)
    check.update(body)
    return check.verify()


def verify_webhook(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    check = signature_check(headers, secret)
    check.update(body)
    return check.verify()


_PING_RE = re.compile(rb"^\s*webhook_id=(\d+)\s*$")


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """WooCommerce's creation ping: ``webhook_id=N``, unsigned, no ``X-WC-Webhook-*``
    headers. It must be answered 200 or the hook stays pending."""
    topic = next((v for k, v in headers.items() if k.lower() == "x-wc-webhook-topic"), "")
    return not topic and bool(_PING_RE.match(body))


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
    """The event a delivery announces, or None for the unsigned creation ping
    (body ``webhook_id=N``, no ``X-WC-Webhook-*`` headers). The body is never trusted as
    the record: only the resource id is taken from it."""
    if is_ping(headers, body):
        return None
    h = {k.lower(): v for k, v in headers.items()}
    topic = h.get("x-wc-webhook-topic", "")
    if not topic:
        raise ValueError("not a WooCommerce delivery: no X-WC-Webhook-Topic header")
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValueError(f"{topic} delivery: body is not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{topic} delivery: body is not a JSON object")
    resource, _, event = topic.partition(".")
    _check_agreement(h, topic, resource, event, payload)
    return WebhookEvent(
        topic=topic, resource=resource, event=event,
        resource_id=str(payload.get("id", "")), delivery_id=h.get("x-wc-webhook-delivery-id", ""),
        webhook_id=h.get("x-wc-webhook-id", ""))


# What a delivery body of a resource the receiver acts on always carries (it is exactly what
# GET /{resource}s/{id} returns, §8.3); a ``*.deleted`` delivery carries only ``{"id": N}``.
_BODY_FIELDS = {"order": ("order_key", "line_items"), "customer": ("username", "role")}


def _check_agreement(h: Mapping[str, str], topic: str, resource: str, event: str,
                     payload: dict) -> None:
    """The signature covers the body only, not the topic/resource/event headers: they must
    agree with each other and with the body, or another resource's signed body could be
    replayed under an order topic."""
    for name, wanted in (("resource", resource), ("event", event)):
        given = h.get(f"x-wc-webhook-{name}")
        if given and given != wanted:
            raise ValueError(f"X-WC-Webhook-{name.title()} {given[:40]!r} disagrees with "
                             f"X-WC-Webhook-Topic {topic[:60]!r}")
    fields = _BODY_FIELDS.get(resource)
    if fields is None or (event == "deleted" and payload.keys() <= {"id"}):
        return
    if not all(f in payload for f in fields):
        raise ValueError(f"{topic[:60]} delivery: the body is not a {resource} "
                         f"(it lacks {' and '.join(fields)})")


# --- errors ----------------------------------------------------------------------------

def read_error(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    """WordPress REST errors: ``{code, message, data: {status, params}}``; ``params`` is a
    map of bad parameters (``rest_invalid_param``) or a list of missing ones."""
    try:
        body = resp.json()
    except ValueError:
        return (resp.text[:300].strip() or resp.reason_phrase), {}
    if not isinstance(body, dict):
        return str(body)[:300], {}
    return _error_text(body), _error_fields(body.get("data"))


def _error_text(error: Mapping) -> str:
    message = str(error.get("message") or "error")
    return f"{message} ({error['code']})" if error.get("code") else message


def _error_fields(data: Any) -> dict[str, str]:
    params = data.get("params") if isinstance(data, dict) else None
    if isinstance(params, dict):
        return {str(k): str(v) for k, v in params.items()}
    if isinstance(params, list):
        return {str(k): "missing" for k in params}
    return {}


_CREDENTIAL_PARAM_RE = re.compile(r"((?:consumer_key|consumer_secret|oauth_signature)=)[^&\s'\"]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Credentials reach error text through echoed URLs (query-string auth, OAuth) and
    proxy error pages; messages end up in Temporal histories and logs."""
    text = _CREDENTIAL_PARAM_RE.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- the connector ---------------------------------------------------------------------

class WooCommerceStore:
    """A WooCommerce store as a :class:`connectors.base.Storefront`."""

    system = SYSTEM

    def __init__(self, settings: WooCommerceSettings, credentials: WooCommerceCredentials, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._credentials = credentials
        self._mode = self._initial_mode(settings)
        self._auto_basic = settings.auth_mode == "auto" and self._mode == "basic"
        self._global_variations: bool | None = None  # GET /variations exists (WC 10.3+)
        self.reads = 0  # GET calls made, for the catalog push's report
        self._client = self._build_client(auth_for(self._mode, credentials), transport)

    @staticmethod
    def _initial_mode(settings: WooCommerceSettings) -> str:
        if settings.auth_mode != "auto":
            return settings.auth_mode
        return "oauth1" if settings.scheme == "http" else "basic"

    def _build_client(self, auth: httpx.Auth,
                      transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        s = self.settings
        return build_client(s.api_url, auth=auth, verify=s.ca_bundle or True, timeout=s.timeout,
                            transport=transport, system=SYSTEM,
                            allow_insecure_http=s.allow_insecure_http)

    @property
    def auth_mode(self) -> str:
        """The mode in use: "basic", "query_string" or "oauth1"."""
        return self._mode

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- requests --

    def _secrets(self) -> tuple[str, str]:
        return (self._credentials.consumer_key.get_secret_value(),
                self._credentials.consumer_secret.get_secret_value())

    async def _send(self, method: str, path: str, *, auth: httpx.Auth | None = None,
                    **kwargs: Any) -> httpx.Response:
        if auth is not None:
            kwargs["auth"] = auth
        self.reads += method == "GET"
        try:
            return await send(self._client, method, path, system=SYSTEM,
                              read_error=read_error, **kwargs)
        except ExternalError as exc:
            exc.message = redact(exc.message, self._secrets())
            exc.args = (exc.message,)
            raise

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call. In auto mode a Basic 401 is not retried with the secret in the
        query string (URLs land in proxy and server logs): the error says what to check."""
        try:
            return await self._send(method, path, **kwargs)
        except AuthExpired as exc:
            if self._auto_basic and exc.resolution is None:
                exc.resolution = BASIC_REFUSED
            raise

    async def _object(self, method: str, path: str, **kwargs: Any) -> dict:
        body = _decode(await self._request(method, path, **kwargs))
        if not isinstance(body, dict):
            raise ValueError(f"{SYSTEM}: {method} {path} did not answer a JSON object")
        return body

    async def _pages(self, path: str, params: Mapping[str, Any] | None = None, *,
                     stable: bool = False) -> AsyncIterator[dict]:
        """Every item of a collection. ``Link``/``X-WP-TotalPages`` only tell whether there
        is a next page: their URLs echo query-string keys and OAuth nonces, so the next
        request is built anew with ``page`` + 1. With ``stable``, a change of ``X-WP-Total``
        between pages raises :class:`ListingChanged` (items shifted across pages)."""
        page, first_total = 1, None
        while True:
            resp = await self._request("GET", path,
                                       params={**(params or {}), "per_page": PAGE_SIZE,
                                               "page": page})
            items = _decode(resp)
            if not isinstance(items, list):
                raise ValueError(f"{SYSTEM}: GET {path} did not answer a list")
            total = resp.headers.get("X-WP-Total")
            if stable and page > 1 and total != first_total:
                raise ListingChanged(path)
            first_total = first_total or total
            for item in items:
                yield item
            if not _has_next_page(resp, page, len(items)):
                return
            page += 1

    # -- orders --

    async def get_order(self, order_id: str) -> Order:
        """The order and, when it has any, its full refunds (lines included)."""
        order_json = await self._object("GET", f"orders/{_id(order_id)}")
        refunds = await self.list_refunds(order_id) if order_json.get("refunds") else []
        return order_from_wc(order_json, refunds)

    async def list_refunds(self, order_id: str) -> list[dict]:
        """An order's refund objects as WooCommerce returns them, all pages."""
        return [r async for r in self._pages(f"orders/{_id(order_id)}/refunds")]

    async def newest_order_created_at(self) -> datetime | None:
        """When the store's newest order was created, by the store's clock (None: no
        orders). One request: the newest first, one per page, only its dates."""
        resp = await self._request("GET", "orders", params={
            "orderby": "date", "order": "desc", "per_page": 1,
            "_fields": "id,date_created,date_created_gmt"})
        items = _decode(resp)
        if not isinstance(items, list):
            raise ValueError(f"{SYSTEM}: GET orders did not answer a list")
        return store_datetime(items[0], "date_created", "newest order") if items else None

    async def iter_orders_modified(self, since: datetime,
                                   until: datetime | None = None) -> AsyncIterator[Order]:
        """Orders modified in [since, until), oldest first, each once. Refunds are not
        fetched here (the list has only a summary without dates or lines), so these orders
        carry none: callers needing refunds use :meth:`get_order`.

        An order modified while the listing runs leaves the window and shifts the rest up
        a place, so an unchanged order could slip past a page boundary unseen. With
        ``until`` given that shows as a changed ``X-WP-Total``, and the listing resumes
        from the last order it yielded; pass ``until`` for a complete listing."""
        yielded: set[str] = set()
        cursor, stalls = since, 0
        while True:
            try:
                async for order_json in self._pages("orders", _modified_filter(cursor, until),
                                                    stable=True):
                    order = order_from_wc(order_json, [])
                    if order.store_id in yielded or not _within(order.modified_at, since, until):
                        continue
                    yielded.add(order.store_id)
                    cursor, stalls = max(cursor, order.modified_at), 0
                    yield order
                return
            except ListingChanged:
                stalls += 1
                if stalls > MAX_STALLED_RESTARTS:
                    raise Unavailable("orders kept changing while being listed",
                                      system=SYSTEM) from None

    # -- catalog --

    async def push_item_changes(self, changes: list[ItemChange]) -> CatalogPushResult:
        """Absolute price/stock onto existing products and variations, matched by SKU; only
        what differs from the store is written (a full reconciliation costs reads, not
        writes). Unknown SKUs are reported, never created; batch item errors land in
        ``failed``. A failed call raises: values are absolute, so retrying the push is safe."""
        fields = {sku: f for sku, f in _latest_fields(changes).items() if f}
        result = CatalogPushResult()
        reads_before = self.reads
        found = await self._find_products(list(fields))
        missing = [sku for sku in fields if sku not in found]
        found.update(await self._find_variations(missing))
        result.unknown = [sku for sku in fields if sku not in found]
        groups: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for sku, (endpoint, item_id, current) in found.items():
            if _same_catalog_values(fields[sku], current):
                result.in_sync.append(sku)
            else:
                groups[endpoint].append((sku, {"id": item_id, **fields[sku]}))
        for endpoint, updates in groups.items():
            for start in range(0, len(updates), BATCH_SIZE):
                await self._write_batch(endpoint, updates[start:start + BATCH_SIZE], result)
        result.read_calls = self.reads - reads_before
        return result

    async def _find_products(self, skus: list[str]) -> dict[str, tuple[str, int, dict]]:
        """SKU -> (batch endpoint, id, record) for products (``/products?sku=`` skips
        variations)."""
        found = {}
        for chunk in chunks(skus, SKU_LOOKUP_SIZE):
            async for product in self._pages("products", {"sku": ",".join(chunk)}):
                if product.get("sku") in chunk:
                    found[product["sku"]] = ("products/batch", _id(product.get("id")), product)
        return found

    async def _find_variations(self, skus: list[str]) -> dict[str, tuple[str, int, dict]]:
        if not skus:
            return {}
        if self._global_variations is not False:
            try:
                found = await self._variations_by_sku("variations", skus)
                self._global_variations = True
                return found
            except NotFound:  # no /variations route before WC 10.3
                self._global_variations = False
        return await self._variations_per_parent(skus)

    async def _variations_per_parent(self, skus: list[str]) -> dict[str, tuple[str, int, dict]]:
        found: dict[str, tuple[str, int, dict]] = {}
        async for parent in self._pages("products", {"type": "variable"}):
            remaining = [sku for sku in skus if sku not in found]
            if not remaining:
                break
            parent_id = _id(parent.get("id"))
            found.update(await self._variations_by_sku(f"products/{parent_id}/variations",
                                                       remaining, parent_id))
        return found

    async def _variations_by_sku(self, path: str, skus: list[str], parent_id: Any = None
                                 ) -> dict[str, tuple[str, int, dict]]:
        found = {}
        for chunk in chunks(skus, SKU_LOOKUP_SIZE):
            async for variation in self._pages(path, {"sku": ",".join(chunk)}):
                if variation.get("sku") in chunk:
                    parent = _id(variation.get("parent_id") or parent_id)
                    found[variation["sku"]] = (f"products/{parent}/variations/batch",
                                               _id(variation.get("id")), variation)
        return found

    async def _write_batch(self, endpoint: str, updates: list[tuple[str, dict]],
                           result: CatalogPushResult) -> None:
        body = await self._object("POST", endpoint, json={"update": [u for _, u in updates]})
        result.write_calls += 1
        answers = {}
        for item in body.get("update") or []:
            if isinstance(item, dict) and "id" in item:
                answers[str(item["id"])] = item
        for sku, update in updates:
            answer = answers.get(str(update["id"]))
            if answer is None:
                result.failed[sku] = "no result for this item in the batch response"
            elif isinstance(answer.get("error"), dict):
                result.failed[sku] = _error_text(answer["error"])
            else:
                result.updated.append(sku)

    # -- customers --

    async def get_customer(self, customer_id: str) -> Customer:
        return customer_from_wc(await self._object("GET", f"customers/{_id(customer_id)}"))

    async def iter_customers(self) -> AsyncIterator[Customer]:
        """Every registered customer (the REST API has no modified-since filter for them)."""
        async for raw in self._pages("customers", {"role": "all", "orderby": "id"}):
            yield customer_from_wc(raw)

    async def update_customer(self, customer_id: str, customer: Customer) -> Customer:
        body = await self._object("PUT", f"customers/{_id(customer_id)}",
                                  json=customer_to_wc(customer))
        return customer_from_wc(body)

    # -- shipments --

    async def mark_shipped(self, order_id: str, shipment: Shipment) -> None:
        """Status completed, and the tracking in the meta key the Shipment Tracking extension
        reads (``_wc_shipment_tracking_items``), so the buyer sees it in their account and
        e-mails. Keyed by shipment: a repeat overwrites the same entry."""
        order = await self._object("GET", f"orders/{_id(order_id)}")
        items = next((m.get("value") for m in order.get("meta_data") or []
                      if m.get("key") == TRACKING_META), None)
        items = [i for i in items or [] if isinstance(i, dict)
                 and i.get("tracking_id") != shipment.shipment_id]
        items += [{"tracking_id": shipment.shipment_id, "tracking_provider": shipment.carrier,
                   "tracking_number": number,
                   "date_shipped": str(int(shipment.shipped_at.timestamp()))}
                  for number in shipment.tracking_numbers or [""]]
        body: dict[str, Any] = {"meta_data": [{"key": TRACKING_META, "value": items}]}
        if order.get("status") not in ("completed", "refunded", "cancelled"):
            body["status"] = "completed"
        await self._object("PUT", f"orders/{_id(order_id)}", json=body)

    # -- webhooks --

    async def list_webhooks(self) -> list[Webhook]:
        return [_webhook(w) async for w in self._pages("webhooks", {"status": "all"})]

    async def create_webhook(self, topic: str, delivery_url: str, secret: str) -> Webhook:
        """Created webhooks start active; WooCommerce pings ``delivery_url`` right away."""
        body = {"name": f"ml-connector {topic}", "topic": topic, "delivery_url": delivery_url,
                "secret": secret}
        return _webhook(await self._object("POST", "webhooks", json=body))

    async def update_webhook(self, webhook_id: str, **fields: str) -> Webhook:
        return _webhook(await self._object("PUT", f"webhooks/{_id(webhook_id)}", json=fields))

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._request("DELETE", f"webhooks/{_id(webhook_id)}", params={"force": "true"})

    # -- diagnosis --

    async def ping(self) -> dict[str, Any]:
        """One authenticated read (a single order) proving the key pair and the auth mode.
        On failure the report keeps the store's ``Date`` header, so ``connections test`` can
        tell clock skew (OAuth 1.0a timestamps) from a bad key."""
        report: dict[str, Any] = {"store": self.settings.base_url, "auth_mode": self._mode}
        dates: list[str] = []

        async def keep_date(resp: httpx.Response) -> None:
            if resp.headers.get("Date"):
                dates.append(resp.headers["Date"])

        hooks = self._client.event_hooks["response"]
        hooks.append(keep_date)
        try:
            await self._request("GET", "orders", params={"per_page": 1})
            report.update(ok=True, auth_mode=self._mode)
        except ExternalError as exc:
            report.update(ok=False, error=str(exc), error_kind=exc.kind, status=exc.status)
        except ValueError as exc:  # a 2xx that is not the REST API (a login page, a CDN)
            report.update(ok=False, error=str(exc), error_kind="NotTheApi")
        finally:
            hooks.remove(keep_date)
        if dates:
            report["server_date"] = dates[-1]
        return report


# --- helpers ---------------------------------------------------------------------------

class ListingChanged(Exception):
    """The collection changed between two pages of one listing."""


def _modified_filter(since: datetime, until: datetime | None) -> dict[str, str]:
    """WooCommerce compares these strictly, at whole seconds: widen by a second each way
    and let :func:`_within` apply the exact window."""
    params = {"modified_after": _gmt(_floor_second(since) - timedelta(seconds=1)),
              "dates_are_gmt": "true", "orderby": "modified", "order": "asc"}
    if until is not None:
        params["modified_before"] = _gmt(until + timedelta(seconds=1))
    return params


def _within(moment: datetime, since: datetime, until: datetime | None) -> bool:
    return moment >= since and (until is None or moment < until)


def _id(value: Any) -> int:
    return path_id(value, "WooCommerce")


def _decode(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise ValueError(f"{SYSTEM}: {resp.request.method} {resp.request.url.path} answered "
                         f"non-JSON ({resp.headers.get('Content-Type', '?')})") from None


def _floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _gmt(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("datetimes passed to WooCommerce filters must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _has_next_page(resp: httpx.Response, page: int, count: int) -> bool:
    if "next" in resp.links:
        return True
    total_pages = resp.headers.get("X-WP-TotalPages")
    if total_pages is not None and total_pages.isdigit():
        return page < int(total_pages)
    return count >= PAGE_SIZE


def _latest_fields(changes: list[ItemChange]) -> dict[str, dict]:
    """Update fields per SKU from its most recent change."""
    return {sku: item_change_to_wc(change) for sku, change in latest_per_sku(changes).items()}


def _same_catalog_values(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """The store already shows the wanted price and stock (prices compared as amounts)."""
    for key, value in wanted.items():
        have = current.get(key)
        if key == "regular_price":
            try:
                if Decimal(str(have or "")) != Decimal(str(value)):
                    return False
            except InvalidOperation:
                return False
        elif have != value:
            return False
    return True


def _webhook(raw: Any) -> Webhook:
    if not isinstance(raw, dict) or "id" not in raw:
        raise ValueError(f"{SYSTEM}: webhook response without an id")
    return Webhook(id=str(raw["id"]), topic=str(raw.get("topic", "")),
                   delivery_url=str(raw.get("delivery_url", "")),
                   status=str(raw.get("status", "")))


def open_connector(settings: Mapping[str, Any], credentials: Mapping[str, Any], *, tokens: Any = None,
                   transport: httpx.AsyncBaseTransport | None = None,
                   on_settings_change: Callable[[dict[str, Any]], None] | None = None
                   ) -> WooCommerceStore:
    """The :class:`connectors.base.ConnectorFactory` of WooCommerce (no OAuth 2 tokens; the
    auth mode is the merchant's choice, never changed behind their back)."""
    return WooCommerceStore(WooCommerceSettings.model_validate(settings),
                            WooCommerceCredentials.model_validate(credentials),
                            transport=transport)

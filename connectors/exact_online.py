"""Exact Online as an ERP, over its REST API (OData v2, verbose JSON).

Per-system quirks live here and nowhere else:

* A region-specific host (``REGIONS``) and the division (administration) segment on every
  call: ``{base}/api/v1/{division}/{service}/{Entity}``. A connection without a division takes
  the user's current one from ``current/Me`` and remembers it (``on_settings_change``).
* OAuth 2.0 authorization code with 10-minute access tokens and rotating refresh tokens
  (:class:`ExactAuth`): refreshed when less than ``refresh_margin_seconds`` (≤ 30) remain,
  because Exact refuses a refresh sooner than 570 s after the previous token was issued; every
  new token set is saved (encrypted, by the TokenStore) before it is used; a refused refresh
  token puts the connection in "needs re-consent" and raises :class:`ConsentRequired` (the
  order waits instead of failing).
* The ``{"d": {"results": [...], "__next": ...}}`` envelope, ``guid'…'``/``datetime'…'``
  literals, ``$select`` on every read, paging by ``__next``; errors
  ``{"error": {"message": {"value": ...}}}`` surfaced verbatim.
* Minutely and daily quotas from ``X-RateLimit-*`` headers (:class:`Pacer`): the client slows
  down before the minutely window runs out; a 429 waits for the reset the server named.
* Webhooks: :func:`verify_webhook` (uppercase hex HMAC-SHA256 of the raw ``Content`` object),
  :func:`is_ping` (the empty validation POST), :func:`parse_webhook`. The ERP webhook receiver
  route does not exist yet; these are ready for it.

Documents: invoices and credit notes are ``SalesInvoices`` (Type 8020 / 8021) whose
``YourRef`` is the external reference (the idempotency key of :func:`find_document`); each
line carries the item, the GL account (by code, resolved to its guid) and cost center of its
line rule, the VAT code and the store's VAT amount. Receipts are bank entries
(``financialtransaction/BankEntries``) in the journal the payment method maps to, with one
line for the customer whose ``OurRef`` is the invoice number, so Exact matches the payment to
the invoice; the external reference is the line's ``Description``.

Customers: an account is matched by its code (a digest of the external id), by the external id
kept in its ``Remarks`` as ``[ml-connector WC-C5]`` (the code cannot be inverted, and an account
matched by e-mail keeps its own code), then by e-mail. :meth:`ExactOnlineErp.get_customer` and
:meth:`ExactOnlineErp.iter_customers_modified` (``Modified gt``) read accounts back in canonical
form for two-way alignment. Shipments: goods deliveries name the sales orders they deliver; the
order's ``YourRef`` is the external reference (:meth:`ExactOnlineErp.iter_shipments`).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from connectors.auth import OAuth2Auth, TokenSet, TokenStore, _Refused
from connectors.base import WebhookEvent
from connectors.documents import DocumentLine, ErpDocument, ReceiptDocument, require_rule
from connectors.errors import (AuthExpired, ConsentRequired, ExternalError, MappingMissing,
                               RateLimited, Rejected, Unavailable)
from connectors.http import build_client, send, to_json
from connectors.model import (ZERO, Address, Customer, DocumentKind, ErpDocumentRef, ItemChange,
                              Shipment, quantize, to_decimal)

SYSTEM = "exact_online"
SYSTEM_NAME = "Exact Online"
REGIONS = {
    "NL": "https://start.exactonline.nl",
    "BE": "https://start.exactonline.be",
    "UK": "https://start.exactonline.co.uk",
    "DE": "https://start.exactonline.de",
    "FR": "https://start.exactonline.fr",
    "ES": "https://start.exactonline.es",
    "US": "https://start.exactonline.com",
}
ACCESS_TOKEN_SECONDS = 600
EARLIEST_REFRESH_SECONDS = 570  # Exact refuses a refresh sooner than this after issue
MAX_REFRESH_MARGIN = ACCESS_TOKEN_SECONDS - EARLIEST_REFRESH_SECONDS
YOUR_REF_MAX = 30  # field length not in the reference: the conservative choice (see docstring)
INVOICE, CREDIT_NOTE = 8020, 8021
DOC_TYPES = {"invoice": INVOICE, "adjustment_invoice": INVOICE, "credit_memo": CREDIT_NOTE}
TYPE_NAMES = {INVOICE: "Sales invoice", CREDIT_NOTE: "Sales credit note"}
INVOICE_FIELDS = "InvoiceID,InvoiceNumber,Type,YourRef,Currency,AmountFC,Status"
BANK_LINE_FIELDS = "ID,EntryID,EntryNumber,Description,AmountFC,OurRef,Account,Date"
ITEM_FIELDS = "ID,Code,CostPriceStandard,StandardSalesPrice,Stock,Modified"
ACCOUNT_FIELDS = ("ID,Code,Name,Email,AddressLine1,AddressLine2,City,Postcode,State,Country,"
                  "Phone,Status,Remarks,Modified")
DELIVERY_FIELDS = ("EntryID,DeliveryNumber,DeliveryDate,TrackingNumber,ShippingMethodCode,Modified,"
                   "GoodsDeliveryLines/SalesOrderNumber,GoodsDeliveryLines/TrackingNumber")
SALES_ORDER_FIELDS = "OrderID,OrderNumber,YourRef"
# The external id(s) of an account live in its Remarks as "[ml-connector WC-C5]": the account
# code is a one-way digest of the external id, and an account matched by e-mail keeps its own.
EXTERNAL_ID_TAG = re.compile(r"\[ml-connector ([^\]\s]+)\]")
PAGE_SIZE = 60  # records per page of a CRUD endpoint
FILTER_CHUNK = 20  # codes per "Code eq 'a' or Code eq 'b' ..." look-up (URLs ≤ 6000 chars)


# --- OData v2 ---------------------------------------------------------------------------------

def string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def guid_literal(value: str) -> str:
    return f"guid'{uuid.UUID(str(value))}'"


def datetime_literal(value: datetime) -> str:
    """``datetime'2024-05-01T10:00:00.000'``: OData v2 has no offset, so UTC is written."""
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    plain = aware.astimezone(timezone.utc).replace(tzinfo=None)
    return f"datetime'{plain.isoformat(timespec='milliseconds')}'"


def account_code(code: str | int) -> str:
    """Accounts.Code as stored: 18 characters, right-aligned with leading spaces."""
    return str(code).strip().rjust(18)


def with_query(path: str, params: Mapping[str, Any]) -> str:
    """``$``-options with the values percent-encoded (spaces too), quotes and commas kept."""
    return path + "?" + urlencode(params, quote_via=quote, safe="$',/()")


def results(body: Any) -> list[dict[str, Any]]:
    """The records of a ``d`` envelope: ``d.results`` of a list, or ``d`` itself (one entity)."""
    if not isinstance(body, Mapping) or "d" not in body:
        raise Unavailable("Exact Online answered without the OData 'd' envelope", system=SYSTEM)
    d = body["d"]
    if isinstance(d, Mapping) and isinstance(d.get("results"), list):
        return list(d["results"])
    if isinstance(d, list):
        return d
    return [d] if isinstance(d, Mapping) else []


def next_link(body: Any) -> str | None:
    d = body.get("d") if isinstance(body, Mapping) else None
    return d.get("__next") if isinstance(d, Mapping) else None


def entity(body: Any) -> dict[str, Any]:
    rows = results(body)
    if not rows:
        raise Unavailable("Exact Online answered an empty entity", system=SYSTEM)
    return rows[0]


_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_date(value: Any) -> datetime | None:
    """``/Date(1641034800000)/`` (ms since the epoch, UTC) or an ISO string."""
    if value in (None, ""):
        return None
    m = _DATE.match(str(value))
    if m:
        return datetime.fromtimestamp(int(m.group(1)) / 1000, tz=timezone.utc)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def odata_date(value: date | datetime) -> str:
    """A date as OData v2 JSON writes it."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return f"/Date({int(aware.timestamp() * 1000)})/"


def parse_json(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    if "json" not in resp.headers.get("content-type", "json"):
        # During maintenance Exact answers 200 with an HTML page.
        raise Unavailable(f"Exact Online answered {resp.headers.get('content-type')} instead of "
                          f"JSON (maintenance?)", system=SYSTEM, status=resp.status_code)
    try:
        return json.loads(resp.content, parse_float=Decimal)
    except ValueError:
        raise Unavailable("Exact Online answered malformed JSON", system=SYSTEM,
                          status=resp.status_code) from None


def read_error(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    """Exact's own message, verbatim: ``{"error": {"message": {"value": ...}}}``."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        body = None
    message = ""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        raw = body["error"].get("message")
        message = str(raw.get("value", "")) if isinstance(raw, Mapping) else str(raw or "")
    elif isinstance(body, Mapping) and isinstance(body.get("error"), str):
        message = f"{body['error']}: {body.get('error_description', '')}".rstrip(": ")
    if not message:
        message = resp.headers.get("Reason") or resp.text[:300] or resp.reason_phrase
    return message, {}


# --- webhooks (pure; for the ERP webhook receiver) --------------------------------------------

_WEBHOOK = re.compile(r'^\{"Content":(.*),"HashCode":"([^"]*)"\}$', re.DOTALL)


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """Exact's validation call when a subscription is created: an empty POST, answered 2xx."""
    return not body.strip()


def webhook_hash(content: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest().upper()


def verify_webhook(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """``HashCode`` = uppercase hex HMAC-SHA256 of the ``Content`` object exactly as it appears
    in the raw body (never re-serialized), keyed with the app's webhook secret."""
    m = _WEBHOOK.match(body.decode("utf-8", errors="replace").strip())
    if not m or not secret:
        return False
    expected = webhook_hash(m.group(1).encode("utf-8"), secret)
    return hmac.compare_digest(expected.encode(), m.group(2).encode())


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookEvent | None:
    """The announced change (the record itself is re-fetched); None for the validation ping."""
    if is_ping(headers, body):
        return None
    try:
        content = json.loads(body)["Content"]
        topic, key, action = content["Topic"], content["Key"], content["Action"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("not an Exact Online webhook notification: expected "
                         '{"Content": {"Topic", "Action", "Key", ...}, "HashCode"}') from None
    return WebhookEvent(topic=topic, resource=str(topic).lower(), event=str(action).lower(),
                        resource_id=str(key),
                        delivery_id=f"{topic}:{key}:{content.get('EventCreatedOn', '')}")


# --- quota pacing -----------------------------------------------------------------------------

class Pacer:
    """Rides Exact's minutely and daily quotas from the ``X-RateLimit-*`` headers of every
    response (resets are epoch milliseconds). Below ``slow_below`` calls left in the minute it
    spreads the rest over the window; at ``reserve`` it waits for the reset. An exhausted daily
    quota raises :class:`RateLimited` without calling."""

    def __init__(self, *, reserve: int = 1, slow_below: int = 10,
                 clock: Callable[[], float] = time.time) -> None:
        self.reserve, self.slow_below, self.clock = reserve, slow_below, clock
        self.minutely: tuple[int, float] | None = None  # (remaining, reset epoch s)
        self.daily: tuple[int, float] | None = None
        self.waited = 0.0  # seconds slept, for tests and stats
        self._lock = asyncio.Lock()

    @staticmethod
    def _pair(headers: httpx.Headers, remaining: str, reset: str) -> tuple[int, float] | None:
        try:
            return int(headers[remaining]), int(headers[reset]) / 1000
        except (KeyError, ValueError):
            return None

    async def observe(self, response: httpx.Response) -> None:
        h = response.headers
        self.minutely = self._pair(h, "X-RateLimit-Minutely-Remaining",
                                   "X-RateLimit-Minutely-Reset") or self.minutely
        self.daily = self._pair(h, "X-RateLimit-Remaining", "X-RateLimit-Reset") or self.daily

    def delay(self) -> float:
        """Seconds to wait before the next call (0 when there is room)."""
        now = self.clock()
        if self.daily and self.daily[0] <= 0 and self.daily[1] > now:
            raise RateLimited("Exact Online daily API quota exhausted",
                              retry_after=self.daily[1] - now, system=SYSTEM, status=429)
        if not self.minutely or self.minutely[1] <= now:
            return 0.0
        remaining, reset = self.minutely
        left = min(reset - now, 60.0)
        if remaining <= self.reserve:
            return left
        if remaining < self.slow_below:
            return left / remaining
        return 0.0

    async def wait(self) -> None:
        async with self._lock:
            seconds = self.delay()
            if seconds > 0:
                self.waited += seconds
                await asyncio.sleep(seconds)
                if self.minutely and self.minutely[0] <= self.reserve:
                    self.minutely = None  # a new window: the next answer tells its allowance

    def retry_after(self, default: float) -> float:
        """The reset a 429 named: the daily one when the day is spent, else the minutely one."""
        now = self.clock()
        if self.daily and self.daily[0] <= 0 and self.daily[1] > now:
            return self.daily[1] - now
        if self.minutely and self.minutely[1] > now:
            return self.minutely[1] - now
        return default


# --- OAuth --------------------------------------------------------------------------------------

class ExactAuth(OAuth2Auth):
    """:class:`OAuth2Auth` for Exact's authorization-code apps: there is no grant a machine can
    repeat, so a refused refresh token (a broken chain, or unused for 30 days) means a user
    must consent again. That state is kept in the token store when it can keep it
    (``consent_required``/``require_consent``, the connection store's health), so no worker
    keeps spending refresh attempts on a dead chain; orders wait on :class:`ConsentRequired`.

    The single-flight rule is OAuth2Auth's: under the store's refresh lock the stored token set
    is re-read, and a set another worker just saved is used instead of refreshing again."""

    def __init__(self, token_url: str, client_id: str, client_secret: SecretStr, store: TokenStore,
                 *, initial: TokenSet | None = None, code: SecretStr | None = None,
                 redirect_uri: str = "", margin_seconds: float = 25, **kw: Any) -> None:
        grant = ({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
                 if code is not None else {})
        super().__init__(token_url, client_id, client_secret, store, grant=grant,
                         refresh_margin=timedelta(seconds=margin_seconds), system=SYSTEM, **kw)
        self._initial = initial
        self._consent: str | None = None  # for stores that cannot keep the state

    async def _consent_reason(self) -> str | None:
        check = getattr(self._store, "consent_required", None)
        return (await check()) if check is not None else self._consent

    async def _require_consent(self, reason: str) -> None:
        mark = getattr(self._store, "require_consent", None)
        if mark is not None:
            await mark(reason)
        else:
            self._consent = reason

    def _waiting(self, reason: str) -> ConsentRequired:
        return ConsentRequired(
            f"the Exact Online authorization needs a user's consent again: {reason}",
            system=SYSTEM, resolution="run `ml-connector connections authorize CONNECTION` and "
                                      "sign in to Exact Online; waiting orders then continue")

    async def _obtain(self, stored: TokenSet | None) -> TokenSet:
        reason = await self._consent_reason()
        if reason:
            raise self._waiting(reason)
        if stored is None and self._initial is not None:
            return self._initial  # the first token set of the consent, saved by _renew
        if stored is None and self._grant:
            form, previous = self._grant, None  # a consent's code, exchanged once
        elif stored is None or stored.refresh_token is None:
            raise self._waiting("the connection has no token set yet")
        else:
            form = {"grant_type": "refresh_token",
                    "refresh_token": stored.refresh_token.get_secret_value()}
            previous = stored
        try:
            return await self._request(form, previous)
        except _Refused as exc:
            described = self._redact(f"{exc.error or 'refused'}: {exc.description}".rstrip(": "))
            if exc.error == "invalid_client":
                raise self._failed(str(form["grant_type"]), exc) from None
            if exc.status == 401:  # "Access Token not expired": the stored set is still current
                raise AuthExpired(f"Exact Online refused the refresh for now (HTTP 401: "
                                  f"{described})", system=SYSTEM, status=401) from None
            reason = f"{form['grant_type']} refused with HTTP {exc.status}: {described}"
            await self._require_consent(reason)
            raise self._waiting(reason) from None


# --- settings -----------------------------------------------------------------------------------

class ExactSettings(BaseModel):
    region: str = "NL"
    base_url: str | None = None  # overrides the region's host (a proxy, the sandbox)
    division: int | None = None  # discovered from current/Me when not set
    sales_journal: str = "70"
    ca_bundle: str | None = None
    timeout: float = 30
    refresh_margin_seconds: float = Field(default=25, gt=0, le=MAX_REFRESH_MARGIN)
    untaxed_vat_code: str = ""  # a 0 % VAT code for untaxed lines (else the item's default)
    redirect_uri: str = "http://127.0.0.1:8765/callback"  # registered with the Exact app

    @field_validator("region")
    @classmethod
    def _known_region(cls, v: str) -> str:
        if v.upper() not in REGIONS:
            raise ValueError(f"unknown Exact Online region {v!r}; known: {', '.join(REGIONS)}")
        return v.upper()

    @property
    def host(self) -> str:
        return (self.base_url or REGIONS[self.region]).rstrip("/")

    @property
    def token_url(self) -> str:
        return f"{self.host}/api/oauth2/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.host}/api/oauth2/auth"


class ExactCredentials(BaseModel):
    client_id: SecretStr
    client_secret: SecretStr
    webhook_secret: SecretStr | None = None
    initial_tokens: dict[str, Any] | None = None  # the consent's first token set, seeds the store
    authorization_code: SecretStr | None = None  # or the consent's code, exchanged on first use
    redirect_uri: str | None = None  # the redirect URI that code was issued for

    @model_validator(mode="after")
    def _tokens_readable(self) -> "ExactCredentials":
        if self.initial_tokens is not None:
            TokenSet.model_validate(self.initial_tokens)
        return self


def customer_code_for(external_id: str) -> str:
    """A deterministic numeric account code (Exact codes are numeric), so a retry after a lost
    response finds the account it created."""
    return str(int(hashlib.sha256(external_id.encode()).hexdigest()[:15], 16) % 10**17)


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


class ExactOnlineErp:
    system = SYSTEM

    def __init__(self, settings: ExactSettings, credentials: ExactCredentials, tokens: TokenStore,
                 *, transport: httpx.AsyncBaseTransport | None = None,
                 on_settings_change: Callable[[dict[str, Any]], None] | None = None,
                 pacer: Pacer | None = None) -> None:
        self.settings = settings
        verify: str | bool = settings.ca_bundle or True
        initial = (TokenSet.model_validate(credentials.initial_tokens)
                   if credentials.initial_tokens else None)
        self._auth = ExactAuth(settings.token_url, credentials.client_id.get_secret_value(),
                               credentials.client_secret, tokens, initial=initial,
                               code=credentials.authorization_code,
                               redirect_uri=credentials.redirect_uri or settings.redirect_uri,
                               margin_seconds=settings.refresh_margin_seconds,
                               transport=transport, verify=verify, timeout=settings.timeout)
        self.pacer = pacer or Pacer()
        self._client = build_client(settings.host, auth=self._auth, verify=verify,
                                    timeout=settings.timeout, transport=transport)
        self._client.event_hooks = {"request": [], "response": [self.pacer.observe]}
        self._on_settings_change = on_settings_change
        self._division: int | None = settings.division
        self._guids: dict[tuple[str, str], str] = {}  # (entity, code) -> guid

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._auth.aclose()

    # --- transport -----------------------------------------------------------------------------

    async def _call(self, method: str, url: str, *, body: Any = None) -> Any:
        await self.pacer.wait()
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs = {"content": to_json(body),
                      "headers": {"Content-Type": "application/json",
                                  "Prefer": "return=representation"}}
        try:
            resp = await send(self._client, method, url, system=SYSTEM, read_error=read_error,
                              **kwargs)
        except RateLimited as exc:
            if not isinstance(exc, ConsentRequired):
                exc.retry_after = self.pacer.retry_after(exc.retry_after)
            raise
        return parse_json(resp)

    async def division(self) -> int:
        """The configured division, else the user's current one (remembered)."""
        if self._division is None:
            me = entity(await self._call("GET", with_query("/api/v1/current/Me",
                                                            {"$select": "CurrentDivision"})))
            self._division = int(me["CurrentDivision"])
            if self._on_settings_change is not None:
                self._on_settings_change({"division": self._division})
        return self._division

    async def _path(self, resource: str) -> str:
        return f"/api/v1/{await self.division()}/{resource}"

    async def _list(self, resource: str, params: Mapping[str, Any]) -> AsyncIterator[dict]:
        """Every record, following ``__next`` (sequentially, as Exact requires)."""
        url: str | None = with_query(await self._path(resource), params)
        while url:
            body = await self._call("GET", url)
            for row in results(body):
                yield row
            url = next_link(body)

    async def _first(self, resource: str, params: Mapping[str, Any]) -> dict | None:
        async for row in self._list(resource, {**params, "$top": 1}):
            return row
        return None

    async def _page(self, resource: str, params: Mapping[str, Any]) -> list[dict]:
        """The first page (``PAGE_SIZE`` records) and no more."""
        url = with_query(await self._path(resource), {**params, "$top": PAGE_SIZE})
        return results(await self._call("GET", url))

    async def _post(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return entity(await self._call("POST", await self._path(resource), body=body))

    # --- code -> guid ----------------------------------------------------------------------------

    async def _guids_for(self, resource: str, codes: set[str],
                         stored: Callable[[str], str] = str) -> dict[str, str]:
        """Guids of records by ``Code`` (items, GL accounts, accounts), cached for the
        connector's life; ``stored`` writes a code as Exact keeps it (an account's is padded)."""
        missing = sorted(c for c in codes if (resource, c) not in self._guids and not _is_guid(c))
        for i in range(0, len(missing), FILTER_CHUNK):
            chunk = missing[i:i + FILTER_CHUNK]
            where = " or ".join(f"Code eq {string_literal(stored(c))}" for c in chunk)
            async for row in self._list(resource, {"$filter": where, "$select": "ID,Code"}):
                self._guids[(resource, str(row["Code"]).strip())] = str(row["ID"])
        return {c: c if _is_guid(c) else self._guids[(resource, c)]
                for c in codes if _is_guid(c) or (resource, c) in self._guids}

    async def _account_id(self, key: str) -> str:
        """The guid an account is posted to: a customer upserted before is one already; a
        connection's guest account is named by its code, looked up once."""
        found = await self._guids_for("crm/Accounts", {key}, stored=account_code)
        if key not in found:
            raise MappingMissing(
                f"Exact Online has no account with code {key} (the connection's guest customer)",
                system=SYSTEM, resolution="create that account in Exact Online, or set the guest "
                "customer to an existing account's code (ml-connector connections map CONNECTION "
                "--guest-customer CODE)")
        return found[key]

    # --- customers ---------------------------------------------------------------------------

    async def upsert_customer(self, customer: Customer, external_id: str) -> ErpDocumentRef:
        """Matched by the account code derived from the external id or the external id in its
        Remarks (an account matched before, whose e-mail may have changed since), then by
        e-mail; the store's name, e-mail, address and phone are merged into the match (an empty
        store field never blanks Exact's), or a customer account is created."""
        code = customer_code_for(external_id)
        tag = external_id_tag(external_id)
        found = await self._find_account(code, tag, customer.email)
        wanted = _account_fields(customer)
        if found is None:
            record = {"Code": code, "Status": "C", **wanted, "Remarks": tag}
            saved = await self._post("crm/Accounts", {k: v for k, v in record.items() if v})
            return self._customer_ref(saved, external_id, created=True)
        changes = {k: v for k, v in wanted.items() if v and (found.get(k) or "") != v}
        if found.get("Status") != "C":
            changes["Status"] = "C"
        remarks = found.get("Remarks") or ""
        if tag not in remarks:
            changes["Remarks"] = f"{remarks}\n{tag}".strip()
        if changes:
            await self._call("PUT", f"{await self._path('crm/Accounts')}"
                                    f"({guid_literal(found['ID'])})", body=changes)
        return self._customer_ref(found, external_id, created=False)

    async def _find_account(self, code: str, tag: str, email: str) -> dict | None:
        """One look-up for every match (``or``): an account of ours (by code or by the tag in
        its Remarks) wins over one with the e-mail. Only when a full page of e-mail matches
        hides whether ours exists is it looked up on its own."""
        ours = (f"Code eq {string_literal(account_code(code))} or "
                f"substringof({string_literal(tag)},Remarks)")
        where = f"{ours} or Email eq {string_literal(email)}" if email else ours
        rows = await self._page("crm/Accounts", {"$filter": where, "$select": ACCOUNT_FIELDS})
        mine = [r for r in rows if str(r.get("Code") or "").strip() == code
                or tag in (r.get("Remarks") or "")]
        if not mine and len(rows) == PAGE_SIZE:
            mine = await self._page("crm/Accounts", {"$filter": ours, "$select": ACCOUNT_FIELDS})
        return (mine or rows or [None])[0]

    async def get_customer(self, external_id: str) -> Customer | None:
        """The account ml-connector keeps for ``external_id``, in canonical form."""
        row = await self._first("crm/Accounts", {
            "$filter": f"Code eq {string_literal(account_code(customer_code_for(external_id)))} "
                       f"or substringof({string_literal(external_id_tag(external_id))},Remarks)",
            "$select": ACCOUNT_FIELDS})
        return customer_from_account(row) if row is not None else None

    async def iter_customers_modified(
            self, since: datetime) -> AsyncIterator[tuple[str, Customer, datetime]]:
        """Accounts modified after ``since`` that carry an ml-connector external id, once per
        external id they carry (a guest and a registered customer may share one account)."""
        async for row in self._list("crm/Accounts", {
                "$filter": f"Modified gt {datetime_literal(since)}", "$select": ACCOUNT_FIELDS}):
            ids = external_ids_of(row)
            if not ids:
                continue
            customer = customer_from_account(row)
            modified = parse_date(row.get("Modified")) or since
            for external_id in ids:
                yield external_id, customer, modified

    @staticmethod
    def _customer_ref(record: Mapping[str, Any], external_id: str, *,
                      created: bool) -> ErpDocumentRef:
        return ErpDocumentRef(system=SYSTEM, kind="customer", doc_type="Account",
                              number=str(record["ID"]), id=str(record["ID"]),
                              external_ref=external_id, created=created)

    # --- sales invoices and credit notes ------------------------------------------------------

    async def find_document(self, kind: DocumentKind, external_ref: str) -> ErpDocumentRef | None:
        if kind == "receipt":
            line = await self._first("financialtransaction/BankEntryLines", {
                "$filter": f"Description eq {string_literal(external_ref)}",
                "$select": BANK_LINE_FIELDS})
            return self._receipt_ref(line, external_ref, None, created=False) if line else None
        row = await self._first("salesinvoice/SalesInvoices", {
            "$filter": f"YourRef eq {string_literal(_your_ref(external_ref))} and "
                       f"Type eq {_doc_type(kind)}", "$select": INVOICE_FIELDS})
        return self._document_ref(kind, row, external_ref, created=False) if row else None

    async def create_document(self, doc: ErpDocument) -> ErpDocumentRef:
        record = await self._document_record(doc)
        try:
            saved = await self._post("salesinvoice/SalesInvoices", record)
        except Rejected as exc:
            raise _mapping_error(exc) from exc
        if saved.get("AmountFC") is None:
            saved = await self._first("salesinvoice/SalesInvoices", {
                "$filter": f"InvoiceID eq {guid_literal(saved['InvoiceID'])}",
                "$select": INVOICE_FIELDS}) or saved
        ref = self._document_ref(doc.kind, saved, doc.external_ref, created=True)
        await self._check_total(doc, ref)
        return ref

    async def _document_record(self, doc: ErpDocument) -> dict[str, Any]:
        rules = [require_rule(line, SYSTEM_NAME) for line in doc.lines]
        items = await self._guids_for("logistics/Items", {ln.item_id for ln in doc.lines})
        gl = await self._guids_for("financial/GLAccounts", {r.gl_account for r in rules})
        sign = -1 if _doc_type(doc.kind) == CREDIT_NOTE else 1
        lines = []
        for line, rule, vat in zip(doc.lines, rules, _line_vat(doc)):
            if line.item_id not in items:
                raise _unknown_item(line)
            if rule.gl_account not in gl:
                raise _unknown_gl(line, rule.gl_account)
            lines.append(_line_record(line, items[line.item_id], gl[rule.gl_account],
                                      rule.cost_center, vat, sign,
                                      self.settings.untaxed_vat_code))
        for code, amount in _orphan_vat(doc):
            anchor = lines[-1] if lines else None
            if anchor is None:
                raise Rejected(f"{doc.external_ref}: VAT {code} without a line to carry it",
                               system=SYSTEM)
            lines.append({**anchor, "Quantity": 0, "NetPrice": ZERO, "AmountFC": ZERO,
                          "VATCode": code, "VATAmountFC": sign * amount,
                          "Description": f"VAT {code}"})
        ordered_by = await self._account_id(doc.customer_key)
        return {"Type": _doc_type(doc.kind), "OrderedBy": ordered_by,
                "Journal": self.settings.sales_journal, "YourRef": _your_ref(doc.external_ref),
                "Currency": doc.currency, "OrderDate": odata_date(doc.date),
                "Description": (doc.description or doc.external_ref)[:60],
                "SalesInvoiceLines": lines}

    @staticmethod
    def _document_ref(kind: DocumentKind, record: Mapping[str, Any], external_ref: str, *,
                      created: bool) -> ErpDocumentRef:
        amount = record.get("AmountFC")
        type_ = int(record.get("Type") or DOC_TYPES.get(kind, INVOICE))
        return ErpDocumentRef(system=SYSTEM, kind=kind, doc_type=TYPE_NAMES.get(type_, str(type_)),
                              number=str(record.get("InvoiceNumber") or record["InvoiceID"]),
                              id=str(record["InvoiceID"]), external_ref=external_ref,
                              total=abs(to_decimal(amount)) if amount is not None else None,
                              currency=record.get("Currency"), created=created)

    async def _check_total(self, doc: ErpDocument, ref: ErpDocumentRef) -> None:
        """Store and Exact must agree to the cent; a disagreeing open invoice is removed."""
        erp_total = quantize(ref.total, doc.currency) if ref.total is not None else None
        if erp_total == quantize(doc.total, doc.currency):
            return
        try:
            await self._call("DELETE", f"{await self._path('salesinvoice/SalesInvoices')}"
                                       f"({guid_literal(ref.id)})")
            fate = "the open document was deleted"
        except ExternalError:
            fate = f"delete {ref.label} in Exact Online"
        raise Rejected(
            f"Exact Online totals {ref.label} to {erp_total} {doc.currency} but the store's total "
            f"is {quantize(doc.total, doc.currency)}; {fate}", system=SYSTEM,
            resolution="check the VAT codes mapped for the store's tax rates, then replay the "
                       "order")

    # --- receipts ----------------------------------------------------------------------------

    async def create_receipt(self, receipt: ReceiptDocument) -> ErpDocumentRef:
        """A bank entry in the payment method's journal (a bank or payment-service journal):
        one line for the customer, ``OurRef`` = the invoice number so Exact matches it."""
        account = await self._account_id(receipt.customer_key)
        line: dict[str, Any] = {
            "Account": account, "AmountFC": receipt.amount,
            "Date": odata_date(receipt.date), "Description": _your_ref(receipt.external_ref),
            "Notes": f"{receipt.description} ({receipt.reference})".strip()}
        if receipt.applies_to.number.isdigit():
            line["OurRef"] = int(receipt.applies_to.number)
        try:
            saved = await self._post("financialtransaction/BankEntries", {
                "JournalCode": receipt.payment_method, "Currency": receipt.currency,
                "BankEntryLines": [line]})
        except Rejected as exc:
            if "journal" in exc.message.lower():
                raise MappingMissing(
                    f"Exact Online refused journal {receipt.payment_method} for a receipt: "
                    f"{exc.message}", system=SYSTEM, status=exc.status,
                    resolution="map the store's payment method to the code of an Exact bank or "
                               "payment-service journal (ml-connector connections map CONNECTION "
                               "--payment METHOD=JOURNAL)") from exc
            raise
        lines = saved.get("BankEntryLines")
        first = (results({"d": lines})[0] if isinstance(lines, Mapping) and lines.get("results")
                 else None)
        return self._receipt_ref(first or {"EntryID": saved.get("EntryID"),
                                           "AmountFC": receipt.amount},
                                 receipt.external_ref, saved, created=True)

    @staticmethod
    def _receipt_ref(line: Mapping[str, Any], external_ref: str, entry: Mapping[str, Any] | None,
                     *, created: bool) -> ErpDocumentRef:
        number = (entry or {}).get("EntryNumber") or line.get("EntryNumber") or line.get("EntryID")
        amount = line.get("AmountFC")
        return ErpDocumentRef(system=SYSTEM, kind="receipt", doc_type="Bank entry",
                              number=str(number), id=str(line.get("EntryID") or ""),
                              external_ref=external_ref,
                              total=to_decimal(amount) if amount is not None else None,
                              currency=(entry or {}).get("Currency"), created=created)

    # --- catalog -----------------------------------------------------------------------------

    async def iter_item_changes(self, since: datetime) -> AsyncIterator[ItemChange]:
        """Items modified after ``since`` (the ``Modified`` watermark), with price, standard
        cost and stock."""
        async for row in self._list("logistics/Items", {
                "$filter": f"Modified gt {datetime_literal(since)}", "$select": ITEM_FIELDS}):
            yield ItemChange(
                sku=str(row["Code"]).strip(), price=_amount(row.get("StandardSalesPrice")),
                cost=_amount(row.get("CostPriceStandard")),
                quantity_available=_amount(row.get("Stock")),
                modified_at=parse_date(row.get("Modified")) or datetime.now(timezone.utc))

    # --- shipments ---------------------------------------------------------------------------

    async def iter_shipments(self, since: datetime) -> AsyncIterator[Shipment]:
        """Goods deliveries modified after ``since``, one shipment per sales order delivered.
        A delivery's lines name their sales order by number; the order's ``YourRef`` is the
        external reference (Exact delivers sales orders, not invoices: a delivery of an order
        without our reference is reported by the caller as unknown)."""
        deliveries = [row async for row in self._list("salesorder/GoodsDeliveries", {
            "$filter": f"Modified gt {datetime_literal(since)}", "$select": DELIVERY_FIELDS,
            "$expand": "GoodsDeliveryLines"})]
        refs = await self._sales_order_refs({n for d in deliveries for n in _order_numbers(d)})
        for delivery in deliveries:
            numbers = _order_numbers(delivery)
            for number in numbers:
                yield _shipment(delivery, number, refs.get(number, ""), several=len(numbers) > 1)

    async def _sales_order_refs(self, numbers: set[int]) -> dict[int, str]:
        """``OrderNumber`` -> ``YourRef`` of sales orders, looked up in chunks."""
        out: dict[int, str] = {}
        ordered = sorted(numbers)
        for i in range(0, len(ordered), FILTER_CHUNK):
            where = " or ".join(f"OrderNumber eq {n}" for n in ordered[i:i + FILTER_CHUNK])
            async for row in self._list("salesorder/SalesOrders", {
                    "$filter": where, "$select": SALES_ORDER_FIELDS}):
                out[int(row["OrderNumber"])] = str(row.get("YourRef") or "").strip()
        return out

    # --- health ------------------------------------------------------------------------------

    async def ping(self) -> dict[str, Any]:
        """Sign-in, the division and one read; the quota left."""
        report: dict[str, Any] = {"host": self.settings.host}
        try:
            report["division"] = await self.division()
            await self._first("crm/Accounts", {"$select": "ID"})
            report["ok"] = True
        except ExternalError as exc:
            report.update(ok=False, error=str(exc), error_kind=exc.kind)
        if self.pacer.minutely:
            report["minutely_remaining"] = self.pacer.minutely[0]
        if self.pacer.daily:
            report["daily_remaining"] = self.pacer.daily[0]
        return report


# --- helpers -----------------------------------------------------------------------------------

def _amount(value: Any) -> Decimal | None:
    return to_decimal(value) if value is not None else None


def _doc_type(kind: str) -> int:
    try:
        return DOC_TYPES[kind]
    except KeyError:
        raise Rejected(f"the Exact Online connector does not post {kind} documents",
                       system=SYSTEM) from None


def _your_ref(external_ref: str) -> str:
    """The external reference must fit whole: a cut one would no longer identify the document."""
    if len(external_ref) > YOUR_REF_MAX:
        raise Rejected(f"external reference {external_ref!r} is longer than the {YOUR_REF_MAX} "
                       f"characters Exact Online keeps", system=SYSTEM,
                       resolution="shorten the connection's document prefix, then replay")
    return external_ref


def _account_fields(customer: Customer) -> dict[str, Any]:
    a = customer.billing
    return {"Name": customer.display_name[:100], "Email": customer.email.strip(),
            "AddressLine1": a.line1, "AddressLine2": a.line2, "City": a.city,
            "Postcode": a.postcode, "State": a.state,
            "Country": a.country.upper() if a.country else "",
            "Phone": customer.phone or a.phone}


def external_id_tag(external_id: str) -> str:
    return f"[ml-connector {external_id}]"


def external_ids_of(account: Mapping[str, Any]) -> list[str]:
    return EXTERNAL_ID_TAG.findall(str(account.get("Remarks") or ""))


def customer_from_account(account: Mapping[str, Any]) -> Customer:
    """The inverse of :func:`_account_fields` where the data allows: an account has one
    ``Name`` (the store's company, else the buyer's name), so it comes back as ``company``
    and the person's first and last name stay unknown (empty)."""
    def text(name: str) -> str:
        return str(account.get(name) or "").strip()

    phone = text("Phone")
    return Customer(email=text("Email"), company=text("Name"), phone=phone, billing=Address(
        line1=text("AddressLine1"), line2=text("AddressLine2"), city=text("City"),
        state=text("State"), postcode=text("Postcode"), country=text("Country"), phone=phone))


def _lines_of(record: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    lines = record.get(name)
    if isinstance(lines, Mapping):
        lines = lines.get("results")
    return list(lines) if isinstance(lines, list) else []


def _order_numbers(delivery: Mapping[str, Any]) -> list[int]:
    return sorted({int(ln["SalesOrderNumber"]) for ln in _lines_of(delivery, "GoodsDeliveryLines")
                   if ln.get("SalesOrderNumber") is not None})


def _shipment(delivery: Mapping[str, Any], order_number: int, your_ref: str, *,
              several: bool) -> Shipment:
    """The header's tracking number first, then any other a line of this order carries."""
    tracking = [str(delivery.get("TrackingNumber") or "").strip()]
    tracking += [str(ln.get("TrackingNumber") or "").strip()
                 for ln in _lines_of(delivery, "GoodsDeliveryLines")
                 if ln.get("SalesOrderNumber") is not None
                 and int(ln["SalesOrderNumber"]) == order_number]
    number = str(delivery.get("DeliveryNumber") or delivery["EntryID"])
    modified = parse_date(delivery.get("Modified")) or datetime.now(timezone.utc)
    return Shipment(
        shipment_id=f"{number}-{order_number}" if several else number, external_ref=your_ref,
        tracking_numbers=list(dict.fromkeys(t for t in tracking if t)),
        carrier=str(delivery.get("ShippingMethodCode") or "").strip(),
        shipped_at=parse_date(delivery.get("DeliveryDate")) or modified, modified_at=modified)


def _line_vat(doc: ErpDocument) -> list[Decimal]:
    """Each line's VAT so that, per VAT code, the lines add up to the store's tax for that code
    (the store computes tax per rate; any rounding remainder goes to that code's largest line)."""
    vat = [ln.tax if ln.tax_code else ZERO for ln in doc.lines]
    for tax in doc.taxes:
        idx = [i for i, ln in enumerate(doc.lines) if ln.tax_code == tax.tax_code]
        if not idx:
            continue
        rest = tax.amount - sum((vat[i] for i in idx), ZERO)
        vat[max(idx, key=lambda i: abs(doc.lines[i].amount))] += rest
    return vat


def _orphan_vat(doc: ErpDocument) -> list[tuple[str, Decimal]]:
    """Tax amounts whose code no line carries (edit adjustments book tax without lines)."""
    carried = {ln.tax_code for ln in doc.lines if ln.tax_code}
    return [(t.tax_code, t.amount) for t in doc.taxes if t.tax_code not in carried and t.amount]


def _line_record(line: DocumentLine, item: str, gl_account: str, cost_center: str, vat: Decimal,
                 sign: int, untaxed_code: str = "") -> dict[str, Any]:
    """Quantity and net price as the store sold them, the store's line amount and VAT amount
    posted as they are (a credit note carries negative quantities and amounts)."""
    net_price = (line.amount / line.quantity).quantize(Decimal("0.000001")) if line.quantity \
        else line.amount
    row: dict[str, Any] = {"Item": item, "Quantity": sign * line.quantity, "NetPrice": net_price,
                           "AmountFC": sign * line.amount, "GLAccount": gl_account,
                           "Description": (line.description or line.item_id)[:60]}
    if line.tax_code or untaxed_code:
        row["VATCode"] = line.tax_code or untaxed_code
    row["VATAmountFC"] = sign * vat if line.tax_code else ZERO  # never the item's default VAT
    if cost_center:
        row["CostCenter"] = cost_center
    return row


def _unknown_item(line: DocumentLine) -> MappingMissing:
    if line.sku:
        return MappingMissing(
            f"Exact Online has no item {line.item_id} for store SKU {line.sku}", system=SYSTEM,
            resolution=f"map SKU {line.sku} to an Exact Online item code (ml-connector connections "
                       f"map CONNECTION --sku {line.sku}=ITEMCODE) or create the item in Exact")
    return MappingMissing(
        f"Exact Online has no item {line.item_id} ({line.kind} line '{line.description}')",
        system=SYSTEM, resolution=f"create the item {line.item_id} in Exact Online or point the "
                                  f"connection's mappings at an existing item code")


def _unknown_gl(line: DocumentLine, code: str) -> MappingMissing:
    what = f"SKU {line.sku}" if line.sku else f"{line.kind} line '{line.description}'"
    return MappingMissing(
        f"Exact Online has no G/L account {code} (rule of {what})", system=SYSTEM,
        resolution=f"create G/L account {code} in Exact Online or change the connection's GL rule "
                   f"for {what} (ml-connector connections map CONNECTION --gl-rule ...)")


def _mapping_error(exc: Rejected) -> Rejected:
    """A refused document whose message names a VAT code or cost center: a mapping to fix."""
    for pattern, fix in _MAPPING_FIXES:
        if pattern.search(exc.message):
            return MappingMissing(exc.message, system=SYSTEM, status=exc.status, resolution=fix)
    return exc


_MAPPING_FIXES = (
    (re.compile(r"\bvat ?code\b", re.I),
     "map the store's tax rate to an existing Exact VAT code "
     "(ml-connector connections map CONNECTION --tax RATE=VATCODE)"),
    (re.compile(r"\bcost ?center\b", re.I),
     "create the cost center in Exact Online or change the GL rule's cost_center"),
)


def open_connector(settings: Mapping[str, Any], credentials: Mapping[str, Any], *,
                   tokens: TokenStore, transport: httpx.AsyncBaseTransport | None = None,
                   on_settings_change: Callable[[dict[str, Any]], None] | None = None
                   ) -> ExactOnlineErp:
    """The :class:`connectors.base.ConnectorFactory` of Exact Online."""
    return ExactOnlineErp(ExactSettings.model_validate(settings),
                          ExactCredentials.model_validate(credentials), tokens,
                          transport=transport, on_settings_change=on_settings_change)


async def exchange_code(settings: ExactSettings, credentials: ExactCredentials, code: str,
                        redirect_uri: str, *,
                        transport: httpx.AsyncBaseTransport | None = None) -> TokenSet:
    """A consent's authorization code → the first token set of a new chain (the consent flow
    of ``ml-connector connections authorize``). A refused code raises AuthFailed."""
    from connectors.auth import MemoryTokenStore

    auth = ExactAuth(settings.token_url, credentials.client_id.get_secret_value(),
                     credentials.client_secret, MemoryTokenStore(), transport=transport,
                     verify=settings.ca_bundle or True, timeout=settings.timeout)
    try:
        return await auth._request({"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": redirect_uri}, None)
    except _Refused as exc:
        raise auth._failed("authorization_code", exc) from None
    finally:
        await auth.aclose()


def authorization_url(settings: ExactSettings, client_id: str, redirect_uri: str,
                      state: str) -> str:
    """Where the user signs in and consents (``force_login=0`` keeps an existing session)."""
    return f"{settings.authorize_url}?" + urlencode({
        "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
        "state": state, "force_login": "0"})

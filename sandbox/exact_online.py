"""Exact Online REST API simulator, written from shared/reference/exact-online.md and the
2019 endpoint metadata (shared/specs/exact-online/meta-data.2019-12.json).

What it simulates
-----------------
* One app serves every region: the connection's base URL points at it. Routes
  ``/api/v1/current/Me``, ``/api/v1/{division}/{service}/{Entity}`` and
  ``{Entity}(guid'…')``; an unknown division answers 403 "Forbidden - WrongDivision".
* OAuth 2.0 authorization code: ``GET /api/oauth2/auth`` (auto-consent as the sandbox's one
  user: 302 to ``redirect_uri?code=…&state=…``), ``POST /api/oauth2/token`` with the
  ``authorization_code`` and ``refresh_token`` grants (form-encoded). Access tokens live
  ``token_lifetime`` s (600) and ``expires_in`` is a string. Every refresh rotates the refresh
  token; a refresh sooner than ``refresh_not_before`` s (570) after the chain's last issue is
  refused with 401 "Access Token not expired"; refresh tokens unused for 30 days expire.
* OData v2 verbose JSON: ``{"d": {"results": [...], "__next": url}}`` (a single entity as
  ``{"d": {...}}``), ``__metadata`` on records, ``/Date(ms)/`` dates, ``$select``, ``$filter``
  (``eq ne gt ge lt le and or not``, parentheses, ``trim()``, ``substringof()``,
  ``startswith()``, literals ``'…'``, ``guid'…'``, ``datetime'…'``, numbers, ``true``/``false``/
  ``null``), ``$top``, ``$expand=SalesInvoiceLines|BankEntryLines``, paging by ``__next``
  carrying the original options plus ``$skiptoken=guid'…'`` (``page_size`` 60).
* Errors ``{"error": {"code": "", "message": {"lang": "", "value": "…"}}}``.
* Quotas per app and division: ``X-RateLimit-Limit/-Remaining/-Reset`` (daily) and
  ``X-RateLimit-Minutely-*`` on every API response, resets in epoch ms; 429 beyond either
  (only the minutely headers when the minute is spent).
* Entities: crm/Accounts, logistics/Items, financial/GLAccounts, hrm/Costcenters,
  vat/VATCodes, financial/Journals, salesinvoice/SalesInvoices (+ SalesInvoiceLines; Type
  8020 invoice / 8021 credit note), financialtransaction/BankEntries (+ BankEntryLines),
  salesorder/SalesOrders (+ SalesOrderLines) and salesorder/GoodsDeliveries (+
  GoodsDeliveryLines, each naming its ``SalesOrderNumber``; ``TrackingNumber`` on the header and
  lines), system/Divisions, webhooks/WebhookSubscriptions (empty validation POST to the callback
  on subscribe; notifications for Accounts, Items, SalesInvoices, SalesOrders and
  GoodsDeliveries signed with ``HashCode`` = uppercase hex HMAC-SHA256 of the raw ``Content``
  JSON under the app's webhook secret).
* ``Modified`` moves on every write (API PUT, seed update, a user's edit); ``$filter`` compares
  dates to the millisecond, as they are shown.
* ``sandbox.faults`` on every ``/api/v1`` request (fail_next, storm_429, lose_next_commits on
  POST/PUT/DELETE, slow_ms, expire_tokens).

Control surface (no auth): ``POST /_sandbox/reset``; ``POST /_sandbox/seed`` with any of
``divisions``, ``items``, ``vat_codes``, ``gl_accounts``, ``cost_centers``, ``journals``,
``accounts`` (lists of records in the API's field names, optional ``division``);
``GET /_sandbox/documents`` (invoices, credit notes and receipts: ``your_ref``, ``type``,
``amount``, ``currency``, ...); ``GET /_sandbox/accounts``; ``POST /_sandbox/accounts/{ID}``
(an Exact user edits an account: fields in the API's names, ``Modified`` moves on, the Accounts
webhook fires); ``POST /_sandbox/deliveries`` (``{"your_ref", "tracking_number",
"shipping_method"?}``: a warehouse user ships the order of the sales invoice with that
``YourRef`` — its sales order, made from the invoice's lines with the same ``YourRef`` when there
is none, and a goods delivery of every open quantity); ``GET|POST /_sandbox/settings``;
``GET|POST /_sandbox/faults``; ``POST /_sandbox/expire-tokens``; ``POST /_sandbox/authorize``
(``{"redirect_uri", "state"?}`` → ``{"code", "location"}``, no browser); ``POST
/_sandbox/clock`` (``{"advance": seconds}``); ``GET /_sandbox/stats`` (``by_route`` counts API
calls as ``"METHOD service/Entity"``; the state's ``request_log`` lists every ``/api/v1`` request);
``GET /_sandbox/webhook-deliveries``.

Choices where the reference says "unconfirmed" (or nothing) — the conservative reading
----------------------------------------------------------------------------------------
* A used refresh token is refused at once (no grace window; ``refresh_grace_seconds`` = 0)
  with 400 ``invalid_grant`` "Token is not allowed, because of invalid or empty chainId", and
  every earlier access token of the chain stops working when a new one is issued. A too-early
  refresh (401) does not consume the refresh token.
* ``$select`` is required on collection reads (400 without it); ``$skip`` is refused (400, as
  on endpoints released after March 2017); ``$filter`` on a navigation property (``A/B``) is
  refused (400). Unknown fields in ``$select``/``$filter`` → 400.
* ``YourRef`` longer than ``your_ref_max`` (30) characters → 400 (its length is not in the
  reference; a silent cut would break the look-up by reference, so refusing shows it).
* Sales invoices: ``OrderedBy``, ``Journal`` (a sales journal, type 20) and lines are
  required; ``Type`` 8020/8021 only (8023/8024 need a warehouse → 400). A credit note's lines
  must carry zero or negative quantities and amounts (400 otherwise): the type does not flip
  signs. A line's ``AmountFC`` is kept as sent (else ``Quantity × NetPrice`` rounded), its
  ``VATAmountFC`` as sent (else ``AmountFC × percentage`` rounded); the header totals are the
  sums. Unknown Item/GLAccount/VATCode/CostCenter → 400 naming it. ``GLAccount`` defaults to
  the item's ``GLRevenue`` (400 when neither). ``InvoiceNumber`` is assigned at entry; status
  20 (open). Open invoices may be deleted.
* Receipts are bank entries: ``JournalCode`` must be a bank (12) or payment-service (16)
  journal; each line needs ``Account`` or ``GLAccount`` and ``AmountFC`` (positive = received
  from the customer); an ``OurRef`` must be the number of an invoice of that account. Creation
  answers 201 with the entry and its lines.
* Created entities answer 201 ``{"d": {...}}``; PUT answers 204 without a body; DELETE 204.
* Sales orders and goods deliveries are GET-only here (405 otherwise): the integration only
  reads them; they come from a user's work (the control surface).
* Quotas count every authenticated ``/api/v1`` request, in a fixed window of
  ``minute_seconds`` (60) opened by its first request; the day is a fixed 24-h window.
  Refused (429) requests are not counted. Unauthenticated requests are not metered.
* Webhook callbacks must be https unless ``allow_http_callbacks``; deliveries are not retried.
* ``/_sandbox/reset`` clears data, counters, settings and faults; issued tokens survive.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sandbox import wire
from sandbox.faults import Faults, fault_routes, lost_response

DEFAULT_DIVISION = 123456
CHAIN_DAYS = 30
SAFE = "$',/()"  # kept as they are in a __next link (``$skiptoken=guid'…'``)


# --------------------------------------------------------------------------- wire format

dumps = wire.dumps


class JSON(Response):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def odata_error(status: int, message: str, headers: dict | None = None) -> JSON:
    return JSON({"error": {"code": "", "message": {"lang": "", "value": message}}},
                status_code=status, headers=headers)


def oauth_error(status: int, error: str, description: str = "", headers: dict | None = None) -> JSON:
    body = {"error": error} | ({"error_description": description} if description else {})
    return JSON(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def ms_date(epoch: float) -> str:
    return f"/Date({int(epoch * 1000)})/"


def minor_places(currency: str) -> Decimal:
    return Decimal(1).scaleb(-wire.minor_unit(currency))


def rounded(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_places(currency), rounding=ROUND_HALF_UP)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- schema

G, S, D, I, B, T = "guid", "string", "decimal", "int", "bool", "datetime"


@dataclass(frozen=True)
class EntityDef:
    path: str  # "crm/Accounts"
    type_name: str
    key: str
    fields: dict[str, str]
    writable: frozenset[str]
    lines: str | None = None  # name of the line collection
    line_entity: str | None = None
    methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "DELETE"})


def _f(**kinds: str) -> dict[str, str]:
    return {name: kind for kind, names in kinds.items() for name in names.split()}


ACCOUNT = EntityDef("crm/Accounts", "Exact.Web.Api.Models.Account", "ID", _f(
    guid="ID", string="Code Name Email Status AddressLine1 AddressLine2 City Postcode State Country Phone "
                      "VATNumber SearchCode Remarks", bool="Blocked IsSales", datetime="Created Modified"),
    frozenset("Code Name Email Status AddressLine1 AddressLine2 City Postcode State Country Phone VATNumber "
              "SearchCode Remarks Blocked".split()))
ITEM = EntityDef("logistics/Items", "Exact.Web.Api.Models.Item", "ID", _f(
    guid="ID GLRevenue", string="Code Description SalesVatCode Unit",
    decimal="CostPriceStandard StandardSalesPrice AverageCost Stock", bool="IsSalesItem IsStockItem",
    datetime="Created Modified"),
    frozenset("Code Description SalesVatCode Unit CostPriceStandard StandardSalesPrice IsSalesItem IsStockItem "
              "GLRevenue".split()))
GL_ACCOUNT = EntityDef("financial/GLAccounts", "Exact.Web.Api.Models.GLAccount", "ID", _f(
    guid="ID", string="Code Description BalanceSide BalanceType", int="Type", datetime="Modified"),
    frozenset("Code Description Type BalanceSide BalanceType".split()))
COST_CENTER = EntityDef("hrm/Costcenters", "Exact.Web.Api.Models.Costcenter", "ID", _f(
    guid="ID", string="Code Description", bool="Active", datetime="Modified"),
    frozenset("Code Description Active".split()))
VAT_CODE = EntityDef("vat/VATCodes", "Exact.Web.Api.Models.VATCode", "ID", _f(
    guid="ID", string="Code Description Type", decimal="Percentage", datetime="Modified"),
    frozenset("Code Description Type".split()))
JOURNAL = EntityDef("financial/Journals", "Exact.Web.Api.Models.Journal", "ID", _f(
    guid="ID", string="Code Description Currency", int="Type", datetime="Modified"),
    frozenset("Code Description Type Currency".split()))
INVOICE_LINE = EntityDef("salesinvoice/SalesInvoiceLines", "Exact.Web.Api.Models.SalesInvoiceLine", "ID", _f(
    guid="ID InvoiceID Item GLAccount", string="Description VATCode CostCenter CostUnit UnitCode ItemCode Notes",
    decimal="Quantity NetPrice UnitPrice AmountFC AmountDC VATAmountFC VATPercentage Discount", int="LineNumber",
    datetime="DeliveryDate"),
    frozenset("Item Description VATCode CostCenter CostUnit UnitCode Notes Quantity NetPrice UnitPrice AmountFC "
              "VATAmountFC VATPercentage Discount GLAccount DeliveryDate InvoiceID".split()))
INVOICE = EntityDef("salesinvoice/SalesInvoices", "Exact.Web.Api.Models.SalesInvoice", "InvoiceID", _f(
    guid="InvoiceID OrderedBy InvoiceTo DeliverTo Warehouse", string="Journal YourRef Currency Description Remarks "
    "PaymentCondition PaymentReference OrderedByName TypeDescription StatusDescription",
    int="Type InvoiceNumber Status Division OrderNumber",
    decimal="AmountFC AmountDC AmountFCExclVat VATAmountFC", datetime="OrderDate InvoiceDate DueDate Created Modified"),
    frozenset("OrderedBy InvoiceTo DeliverTo Journal Type YourRef Currency Description Remarks PaymentCondition "
              "PaymentReference OrderDate DueDate OrderNumber SalesInvoiceLines Warehouse".split()),
    lines="SalesInvoiceLines", line_entity="salesinvoice/SalesInvoiceLines")
BANK_LINE = EntityDef("financialtransaction/BankEntryLines", "Exact.Web.Api.Models.BankEntryLine", "ID", _f(
    guid="ID EntryID Account GLAccount", string="Description Notes AccountCode", int="OurRef EntryNumber LineNumber",
    decimal="AmountFC AmountDC", datetime="Date Created Modified"),
    frozenset("Account GLAccount Description Notes OurRef AmountFC Date EntryID".split()),
    methods=frozenset({"GET", "POST"}))
BANK_ENTRY = EntityDef("financialtransaction/BankEntries", "Exact.Web.Api.Models.BankEntry", "EntryID", _f(
    guid="EntryID", string="JournalCode Currency JournalDescription", int="EntryNumber Status",
    decimal="OpeningBalanceFC ClosingBalanceFC", datetime="Created Modified"),
    frozenset("JournalCode Currency OpeningBalanceFC ClosingBalanceFC BankEntryLines".split()),
    lines="BankEntryLines", line_entity="financialtransaction/BankEntryLines", methods=frozenset({"GET", "POST"}))
DIVISION = EntityDef("system/Divisions", "Exact.Web.Api.Models.Division", "Code", _f(
    int="Code", string="Description Currency Country", bool="Current"), frozenset(), methods=frozenset({"GET"}))
WEBHOOK = EntityDef("webhooks/WebhookSubscriptions", "Exact.Web.Api.Models.WebhookSubscription", "ID", _f(
    guid="ID ClientID", string="CallbackURL Topic Description", int="Division", datetime="Created"),
    frozenset("CallbackURL Topic".split()), methods=frozenset({"GET", "POST", "DELETE"}))

# Sales orders and goods deliveries are read-only here: a sales order and its delivery are what an
# Exact user records (``POST /_sandbox/deliveries``), never something the integration posts.
READ = frozenset({"GET"})
ORDER_LINE = EntityDef("salesorder/SalesOrderLines", "Exact.Web.Api.Models.SalesOrderLine", "ID", _f(
    guid="ID OrderID Item", string="Description ItemCode UnitCode", int="LineNumber OrderNumber",
    decimal="Quantity QuantityDelivered NetPrice AmountFC", datetime="DeliveryDate Modified"),
    frozenset(), methods=READ)
SALES_ORDER = EntityDef("salesorder/SalesOrders", "Exact.Web.Api.Models.SalesOrder", "OrderID", _f(
    guid="OrderID OrderedBy InvoiceTo DeliverTo", string="YourRef Description Currency Remarks OrderedByName "
    "StatusDescription DeliveryStatusDescription", int="OrderNumber Status DeliveryStatus",
    decimal="AmountFC", datetime="OrderDate DeliveryDate Created Modified"),
    frozenset(), lines="SalesOrderLines", line_entity="salesorder/SalesOrderLines", methods=READ)
DELIVERY_LINE = EntityDef("salesorder/GoodsDeliveryLines", "Exact.Web.Api.Models.GoodsDeliveryLine", "ID", _f(
    guid="ID EntryID Item SalesOrderLineID", string="Description ItemCode TrackingNumber Notes",
    int="LineNumber SalesOrderLineNumber SalesOrderNumber", decimal="QuantityDelivered QuantityOrdered",
    datetime="DeliveryDate Created Modified"), frozenset(), methods=READ)
DELIVERY = EntityDef("salesorder/GoodsDeliveries", "Exact.Web.Api.Models.GoodsDelivery", "EntryID", _f(
    guid="EntryID DeliveryAccount ShippingMethod", string="DeliveryAccountCode DeliveryAccountName Description "
    "Remarks TrackingNumber ShippingMethodCode ShippingMethodDescription", int="DeliveryNumber EntryNumber Division",
    datetime="DeliveryDate Created Modified"),
    frozenset(), lines="GoodsDeliveryLines", line_entity="salesorder/GoodsDeliveryLines", methods=READ)

ENTITIES = {e.path.lower(): e for e in (ACCOUNT, ITEM, GL_ACCOUNT, COST_CENTER, VAT_CODE, JOURNAL, INVOICE,
                                        INVOICE_LINE, BANK_ENTRY, BANK_LINE, DIVISION, WEBHOOK, SALES_ORDER,
                                        ORDER_LINE, DELIVERY, DELIVERY_LINE)}
WEBHOOK_TOPICS = {"Accounts": ACCOUNT, "Items": ITEM, "SalesInvoices": INVOICE, "SalesOrders": SALES_ORDER,
                  "GoodsDeliveries": DELIVERY}
TOPIC_OF = {e.path: t for t, e in WEBHOOK_TOPICS.items()}


# --------------------------------------------------------------------------- $filter

_TOKEN = re.compile(r"""\s*(?:
    (?P<guid>guid'[^']*')|(?P<dt>datetime'[^']*')|(?P<str>'(?:[^']|'')*')|
    (?P<num>-?\d+(?:\.\d+)?[mMdDlL]?)|(?P<paren>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_/]*))""", re.X)
COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
           "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}


def parse_datetime_text(text: str) -> float:
    value = datetime.fromisoformat(text.strip())
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return aware.timestamp()


class FilterParser:
    """A recursive-descent parser of the $filter subset; yields a predicate on records."""

    def __init__(self, text: str, entity: EntityDef):
        self.entity = entity
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise BadRequest(f"Error in $filter near position {pos}: '{text[pos:pos + 20]}'")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def parse(self) -> Callable[[dict], bool]:
        pred = self._or()
        if self.i != len(self.tokens):
            raise BadRequest(f"Error in $filter: unexpected '{self.tokens[self.i][1]}'")
        return pred

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        tok = self._peek()
        if tok is None or (value is not None and tok[1].lower() != value):
            raise BadRequest(f"Error in $filter: expected '{value or 'a value'}'")
        self.i += 1
        return tok

    def _or(self):
        left = self._and()
        while (tok := self._peek()) and tok[1].lower() == "or":
            self.i += 1
            right = self._and()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def _and(self):
        left = self._unary()
        while (tok := self._peek()) and tok[1].lower() == "and":
            self.i += 1
            right = self._unary()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def _unary(self):
        tok = self._peek()
        if tok and tok[1].lower() == "not":
            self.i += 1
            inner = self._unary()
            return lambda r: not inner(r)
        if tok and tok[1] == "(":
            self.i += 1
            inner = self._or()
            self._take(")")
            return inner
        return self._comparison()

    def _comparison(self):
        left = self._operand()
        tok = self._peek()
        if tok and tok[1].lower() in COMPARE:
            self.i += 1
            op = COMPARE[tok[1].lower()]
            right = self._operand()

            def compare(r: dict) -> bool:
                a, b = left(r), right(r)
                if a is None or b is None:
                    return op(a, b) if tok[1].lower() in ("eq", "ne") else False
                try:
                    return op(_comparable(a), _comparable(b))
                except TypeError:
                    return False
            return compare
        return lambda r: bool(left(r))

    def _operand(self) -> Callable[[dict], Any]:
        kind, value = self._take()
        if kind == "guid":
            try:
                g = str(uuid.UUID(value[5:-1]))
            except ValueError:
                raise BadRequest(f"Error in $filter: invalid guid literal {value}") from None
            return lambda r: g
        if kind == "dt":
            try:
                ts = parse_datetime_text(value[9:-1])
            except ValueError:
                raise BadRequest(f"Error in $filter: invalid datetime literal {value}") from None
            return lambda r: ts
        if kind == "str":
            s = value[1:-1].replace("''", "'")
            return lambda r: s
        if kind == "num":
            n = Decimal(value.rstrip("mMdDlL"))
            return lambda r: n
        if kind == "word":
            low = value.lower()
            if low in ("true", "false"):
                return lambda r: low == "true"
            if low == "null":
                return lambda r: None
            nxt = self._peek()
            if nxt and nxt[1] == "(":
                return self._function(low)
            if "/" in value:
                raise BadRequest(f"Filtering on navigation property '{value}' is not supported.")
            if value not in self.entity.fields:
                raise BadRequest(f"No property '{value}' exists in type '{self.entity.type_name}'.")
            kind_of = self.entity.fields[value]
            return lambda r: _filter_value(r.get(value), kind_of)
        raise BadRequest(f"Error in $filter: unexpected '{value}'")

    def _function(self, name: str) -> Callable[[dict], Any]:
        self._take("(")
        args = [self._operand()]
        while (tok := self._peek()) and tok[1] == ",":
            self.i += 1
            args.append(self._operand())
        self._take(")")
        if name == "trim" and len(args) == 1:
            return lambda r: (args[0](r) or "").strip()
        if name == "substringof" and len(args) == 2:
            return lambda r: str(args[0](r) or "").lower() in str(args[1](r) or "").lower()
        if name == "startswith" and len(args) == 2:
            return lambda r: str(args[0](r) or "").lower().startswith(str(args[1](r) or "").lower())
        raise BadRequest(f"Unknown function '{name}' in $filter")


def _filter_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == D or kind == I:
        return Decimal(str(value))
    if kind == G:
        return str(value).lower()
    if kind == T:
        return int(value * 1000) / 1000  # compared as stored and shown: to the millisecond
    return value


def _comparable(v: Any) -> Any:
    if isinstance(v, str):
        return v.lower()  # SQL Server collation: case-insensitive
    if isinstance(v, bool):
        return int(v)
    return v


# --------------------------------------------------------------------------- state

@dataclass
class Settings:
    minutely_limit: int = 60
    daily_limit: int = 5000
    minute_seconds: float = 60.0
    token_lifetime: int = 600
    refresh_not_before: int = 570
    refresh_grace_seconds: int = 0
    code_lifetime: int = 180
    page_size: int = 60
    your_ref_max: int = 30
    allow_http_callbacks: bool = False

    def configure(self, values: dict) -> None:
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(names))}")
            setattr(self, key, type(getattr(self, key))(value))


@dataclass
class Chain:
    id: str
    last_issued: float
    division: int
    revoked: bool = False


@dataclass
class Division:
    code: int
    description: str
    currency: str = "EUR"
    country: str = "NL"
    records: dict[str, dict[str, dict]] = field(default_factory=lambda: {e: {} for e in ENTITIES})
    next_invoice: int = 26000001
    next_entry: int = 1
    next_account: int = 1
    next_order: int = 1
    next_delivery: int = 1

    def table(self, entity: EntityDef) -> dict[str, dict]:
        return self.records[entity.path.lower()]

    def by_code(self, entity: EntityDef, code: str) -> dict | None:
        return next((r for r in self.table(entity).values()
                     if str(r.get("Code", "")).strip().lower() == str(code).strip().lower()), None)


class ExactState:
    def __init__(self, *, client_id: str, client_secret: str, webhook_secret: str,
                 redirect_uris: tuple[str, ...], settings: Settings) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.webhook_secret, self.redirect_uris = webhook_secret, redirect_uris
        self.settings = settings
        self.base_settings = asdict(settings)
        self.offset = 0.0
        self.user_id = str(uuid.uuid4())
        self.codes: dict[str, dict] = {}
        self.access: dict[str, tuple[str, float]] = {}  # token -> (chain, expires)
        self.refresh: dict[str, dict] = {}  # token -> {chain, used, issued}
        self.chains: dict[str, Chain] = {}
        self.reset()

    def now(self) -> float:
        return time.time() + self.offset

    def reset(self) -> None:
        self.settings.configure(self.base_settings)
        self.divisions: dict[int, Division] = {}
        self.current_division = DEFAULT_DIVISION
        self.add_division(DEFAULT_DIVISION, "Sandbox B.V.")
        self.quota: dict[int, dict[str, float]] = {}
        self.deliveries: list[dict] = []
        self.stats: dict[str, Any] = {"api_requests": 0, "by_status": {}, "token_requests": 0,
                                      "by_grant": {}, "refreshes": 0, "refresh_reused": 0,
                                      "refresh_too_early": 0, "refresh_expired": 0, "rate_limited": 0,
                                      "unauthorized": 0, "authorizations": 0, "by_route": {}}
        self.request_log: list[dict] = []  # every /api/v1 request: method, path, query, status

    def add_division(self, code: int, description: str, currency: str = "EUR", country: str = "NL") -> Division:
        div = self.divisions.get(code) or Division(code, description, currency, country)
        self.divisions[code] = div
        listing = {str(c): {"Code": c, "Description": d.description, "Currency": d.currency,
                            "Country": d.country, "Current": c == self.current_division}
                   for c, d in self.divisions.items()}
        for d in self.divisions.values():  # system/Divisions lists every division the user can access
            d.records[DIVISION.path.lower()] = {k: dict(v) for k, v in listing.items()}
        if not div.by_code(JOURNAL, "70"):  # every administration has a sales journal
            self.add(div, JOURNAL, {"Code": "70", "Description": "Sales journal", "Type": 20})
        return div

    def add(self, div: Division, entity: EntityDef, values: dict) -> dict:
        now = self.now()
        record = {k: v for k, v in values.items() if k in entity.fields or k == entity.lines}
        if entity.key == "ID" or entity.fields.get(entity.key) == G:
            record.setdefault(entity.key, str(uuid.uuid4()))
        if "Created" in entity.fields:
            record.setdefault("Created", now)
        if "Modified" in entity.fields:
            record["Modified"] = now
        div.table(entity)[str(record[entity.key]).lower()] = record
        return record

    # ---- OAuth

    def issue(self, chain: Chain) -> dict:
        """A new access + refresh token of ``chain``; earlier access tokens of it stop working."""
        now = self.now()
        for token, (cid, _) in list(self.access.items()):
            if cid == chain.id:
                del self.access[token]
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.access[access] = (chain.id, now + self.settings.token_lifetime)
        self.refresh[refresh] = {"chain": chain.id, "used": None, "issued": now}
        chain.last_issued = now
        return {"access_token": access, "token_type": "bearer",
                "expires_in": str(self.settings.token_lifetime), "refresh_token": refresh}

    def new_code(self, redirect_uri: str, code: str | None = None) -> str:
        code = code or secrets.token_urlsafe(24)
        self.codes[code] = {"redirect_uri": redirect_uri, "expires": self.now() + self.settings.code_lifetime}
        self.stats["authorizations"] += 1
        return code

    def expire_tokens(self) -> None:
        """Every access token expires now; the chains may refresh at once."""
        now = self.now()
        for token, (cid, _) in list(self.access.items()):
            self.access[token] = (cid, now - 1)
        for chain in self.chains.values():
            chain.last_issued = now - self.settings.token_lifetime

    def authenticated(self, request: Request) -> Chain | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = self.access.get(token) if scheme.lower() == "bearer" else None
        if found is None or found[1] <= self.now():
            return None
        chain = self.chains.get(found[0])
        return chain if chain is not None and not chain.revoked else None

    # ---- quota

    def admit(self, division: int) -> tuple[dict[str, str], bool]:
        """(headers, allowed) for one metered call against the app's quota in ``division``."""
        s, now = self.settings, self.now()
        q = self.quota.setdefault(division, {"day_start": now, "day_count": 0, "min_start": now, "min_count": 0})
        if now >= q["day_start"] + 86400:
            q.update(day_start=now, day_count=0)
        if now >= q["min_start"] + s.minute_seconds:
            q.update(min_start=now, min_count=0)
        minute_reset = str(int((q["min_start"] + s.minute_seconds) * 1000))
        day_reset = str(int((q["day_start"] + 86400) * 1000))
        if q["min_count"] >= s.minutely_limit:
            return ({"X-RateLimit-Minutely-Limit": str(s.minutely_limit), "X-RateLimit-Minutely-Remaining": "0",
                     "X-RateLimit-Minutely-Reset": minute_reset}, False)
        if q["day_count"] >= s.daily_limit:
            return ({"X-RateLimit-Limit": str(s.daily_limit), "X-RateLimit-Remaining": "0",
                     "X-RateLimit-Reset": day_reset}, False)
        q["min_count"] += 1
        q["day_count"] += 1
        return ({"X-RateLimit-Limit": str(s.daily_limit),
                 "X-RateLimit-Remaining": str(int(s.daily_limit - q["day_count"])),
                 "X-RateLimit-Reset": day_reset,
                 "X-RateLimit-Minutely-Limit": str(s.minutely_limit),
                 "X-RateLimit-Minutely-Remaining": str(int(s.minutely_limit - q["min_count"])),
                 "X-RateLimit-Minutely-Reset": minute_reset}, True)

    # ---- what an Exact user does

    def account_by_id(self, account_id: str) -> tuple[Division, dict] | None:
        for div in self.divisions.values():
            record = div.table(ACCOUNT).get(str(account_id).lower())
            if record is not None:
                return div, record
        return None

    def sales_order_for(self, div: Division, invoice: dict) -> dict:
        """The sales order of an invoice's ``YourRef`` (made from its lines when there is none)."""
        ref = invoice.get("YourRef") or ""
        found = next((o for o in div.table(SALES_ORDER).values() if ref and o.get("YourRef") == ref), None)
        if found is not None:
            return found
        order_id, number = str(uuid.uuid4()), div.next_order
        div.next_order += 1
        lines = [{"ID": str(uuid.uuid4()), "OrderID": order_id, "OrderNumber": number, "LineNumber": n,
                  "Item": ln["Item"], "ItemCode": ln.get("ItemCode"), "Description": ln.get("Description"),
                  "Quantity": ln["Quantity"], "QuantityDelivered": Decimal(0), "NetPrice": ln["NetPrice"],
                  "AmountFC": ln["AmountFC"], "Modified": self.now()}
                 for n, ln in enumerate(invoice["SalesInvoiceLines"], 1)]
        for ln in lines:
            div.table(ORDER_LINE)[ln["ID"]] = ln
        customer = div.table(ACCOUNT).get(str(invoice["OrderedBy"]).lower()) or {}
        return self.add(div, SALES_ORDER, {
            "OrderID": order_id, "OrderNumber": number, "YourRef": ref, "OrderedBy": invoice["OrderedBy"],
            "InvoiceTo": invoice["OrderedBy"], "DeliverTo": invoice["OrderedBy"],
            "OrderedByName": customer.get("Name"), "Currency": invoice["Currency"],
            "Description": invoice.get("Description"), "AmountFC": invoice["AmountFC"],
            "OrderDate": invoice.get("OrderDate") or self.now(), "Status": 12, "StatusDescription": "Open",
            "DeliveryStatus": 12, "SalesOrderLines": lines})

    def deliver(self, div: Division, order: dict, tracking_number: str, shipping_method: str = "") -> dict:
        """A goods delivery of every open quantity of ``order`` (the order becomes complete)."""
        entry_id, number, now = str(uuid.uuid4()), div.next_delivery, self.now()
        div.next_delivery += 1
        customer = div.table(ACCOUNT).get(str(order["OrderedBy"]).lower()) or {}
        lines = []
        for n, ol in enumerate(order["SalesOrderLines"], 1):
            open_qty = ol["Quantity"] - ol["QuantityDelivered"]
            ol["QuantityDelivered"] = ol["Quantity"]
            ol["Modified"] = now
            lines.append({"ID": str(uuid.uuid4()), "EntryID": entry_id, "LineNumber": n, "Item": ol["Item"],
                          "ItemCode": ol.get("ItemCode"), "Description": ol.get("Description"),
                          "QuantityOrdered": ol["Quantity"], "QuantityDelivered": open_qty,
                          "SalesOrderLineID": ol["ID"], "SalesOrderLineNumber": ol["LineNumber"],
                          "SalesOrderNumber": order["OrderNumber"], "TrackingNumber": None,
                          "DeliveryDate": now, "Created": now, "Modified": now})
        for ln in lines:
            div.table(DELIVERY_LINE)[ln["ID"]] = ln
        order.update(Status=21, StatusDescription="Complete", DeliveryStatus=21, Modified=now)
        return self.add(div, DELIVERY, {
            "EntryID": entry_id, "DeliveryNumber": number, "EntryNumber": number, "Division": div.code,
            "DeliveryAccount": order["OrderedBy"], "DeliveryAccountCode": customer.get("Code"),
            "DeliveryAccountName": customer.get("Name"), "Description": order.get("Description"),
            "TrackingNumber": tracking_number or None, "ShippingMethodCode": shipping_method or None,
            "DeliveryDate": now, "GoodsDeliveryLines": lines})

    # ---- read-outs

    def documents(self) -> list[dict]:
        out = []
        for div in self.divisions.values():
            for inv in div.table(INVOICE).values():
                out.append({"division": div.code, "type": "credit_note" if inv["Type"] == 8021 else "invoice",
                            "type_code": inv["Type"], "your_ref": inv.get("YourRef") or "",
                            "number": inv["InvoiceNumber"], "id": inv["InvoiceID"], "amount": inv["AmountFC"],
                            "amount_excl_vat": inv["AmountFCExclVat"], "vat": inv["VATAmountFC"],
                            "currency": inv["Currency"], "status": inv["Status"],
                            "ordered_by": inv["OrderedBy"], "lines": len(inv["SalesInvoiceLines"])})
            for entry in div.table(BANK_ENTRY).values():
                for line in entry["BankEntryLines"]:
                    out.append({"division": div.code, "type": "receipt", "your_ref": line.get("Description") or "",
                                "number": entry["EntryNumber"], "id": entry["EntryID"],
                                "amount": line["AmountFC"], "currency": entry["Currency"],
                                "journal": entry["JournalCode"], "our_ref": line.get("OurRef"),
                                "account": line.get("Account")})
        return out


# --------------------------------------------------------------------------- rendering

def render_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == T:
        return ms_date(value)
    return value


def render(entity: EntityDef, record: dict, base: str, select: list[str] | None,
           expand: set[str]) -> dict:
    key = record[entity.key]
    key_text = f"guid'{key}'" if entity.fields.get(entity.key) == G else str(key)
    uri = f"{base}/{entity.path}({key_text})"
    out: dict[str, Any] = {"__metadata": {"uri": uri, "type": entity.type_name}}
    names = select if select is not None else [*entity.fields, *([entity.lines] if entity.lines else [])]
    for name in names:
        if entity.lines and name == entity.lines:
            if name in expand:
                line_def = ENTITIES[entity.line_entity.lower()]
                out[name] = {"results": [render(line_def, ln, base, None, set()) for ln in record[name]]}
            else:
                out[name] = {"__deferred": {"uri": f"{uri}/{name}"}}
        else:
            out[name] = render_value(record.get(name), entity.fields[name])
    return out


def parse_select(text: str | None, entity: EntityDef) -> tuple[list[str] | None, set[str]]:
    """Top-level selected fields, and the line collections named by ``Lines/Field``."""
    if text is None:
        return None, set()
    if text.strip() == "*":
        return None, set()
    names, nested = [], set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        top = part.split("/")[0]
        if top == entity.lines:
            nested.add(top)
        elif top not in entity.fields:
            raise BadRequest(f"No property '{top}' exists in type '{entity.type_name}'.")
        if top not in names:
            names.append(top)
    return names, nested


# --------------------------------------------------------------------------- request bodies

def coerce(kind: str, value: Any, name: str) -> Any:
    if value is None:
        return None
    try:
        if kind == D:
            if isinstance(value, bool):
                raise TypeError
            return Decimal(str(value))
        if kind == I:
            number = Decimal(str(value))
            if number != number.to_integral_value():
                raise ValueError
            return int(number)
        if kind == G:
            return str(uuid.UUID(str(value)))
        if kind == B:
            if isinstance(value, bool):
                return value
            raise TypeError
        if kind == T:
            m = re.match(r"^/Date\((-?\d+)\)/$", str(value))
            return int(m.group(1)) / 1000 if m else parse_datetime_text(str(value))
        if isinstance(value, (dict, list)):
            raise TypeError
        return str(value)
    except (ValueError, TypeError, InvalidOperation):
        raise BadRequest(f"Error converting value {value!r} of '{name}' to {kind}.") from None


def fields_of(entity: EntityDef, body: Any, where: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(f"The body of '{where}' must be a JSON object.")
    out = {}
    for name, value in body.items():
        if name == "__metadata":
            continue
        if name not in entity.fields and name != entity.lines:
            raise BadRequest(f"The property '{name}' does not exist on type '{entity.type_name}'.")
        if name not in entity.writable:
            continue  # read-only properties are ignored
        out[name] = value if name == entity.lines else coerce(entity.fields[name], value, name)
    return out


# --------------------------------------------------------------------------- business rules

class Rules:
    def __init__(self, state: ExactState):
        self.state = state

    def create(self, div: Division, entity: EntityDef, body: dict) -> dict:
        handler = {ACCOUNT.path: self.account, INVOICE.path: self.invoice, BANK_ENTRY.path: self.bank_entry,
                   WEBHOOK.path: self.webhook}.get(entity.path)
        values = fields_of(entity, body, entity.path)
        if handler is not None:
            return handler(div, values)
        if "Code" in entity.fields and values.get("Code") and div.by_code(entity, values["Code"]):
            raise BadRequest(f"Code {values['Code']} already exists.")
        return self.state.add(div, entity, values)

    def account(self, div: Division, values: dict) -> dict:
        if not values.get("Name"):
            raise BadRequest("Name: Mandatory")
        code = str(values.get("Code") or "").strip()
        if code and not code.isdigit():
            raise BadRequest(f"Code: '{code}' is not numeric.")
        if not code:
            while div.by_code(ACCOUNT, str(div.next_account)):
                div.next_account += 1
            code = str(div.next_account)
        if div.by_code(ACCOUNT, code):
            raise BadRequest(f"Code: {code} already exists.")
        values["Code"] = code.rjust(18)
        values.setdefault("IsSales", True)
        return self.state.add(div, ACCOUNT, values)

    def update(self, div: Division, entity: EntityDef, record: dict, body: dict) -> None:
        values = fields_of(entity, body, entity.path)
        values.pop(entity.lines or "", None)
        if entity is ACCOUNT and "Code" in values:
            values["Code"] = str(values["Code"]).strip().rjust(18)
        if entity is INVOICE:
            values.pop("Journal", None)  # settable on POST only
            self._check_your_ref(values.get("YourRef"))
        record.update(values)
        if "Modified" in entity.fields:
            record["Modified"] = self.state.now()

    def _check_your_ref(self, your_ref: str | None) -> None:
        if your_ref and len(your_ref) > self.state.settings.your_ref_max:
            raise BadRequest(f"YourRef: the value is longer than {self.state.settings.your_ref_max} characters.")

    def invoice(self, div: Division, values: dict) -> dict:
        kind = values.get("Type") or 8020
        if kind in (8023, 8024):
            raise BadRequest("Warehouse: Mandatory for direct sales invoices and credit notes.")
        if kind not in (8020, 8021):
            raise BadRequest(f"Type: {kind} is not a valid sales invoice type.")
        customer = div.table(ACCOUNT).get(str(values.get("OrderedBy") or "").lower())
        if customer is None:
            raise BadRequest("OrderedBy: Mandatory" if not values.get("OrderedBy")
                             else f"OrderedBy: account {values['OrderedBy']} does not exist.")
        journal = div.by_code(JOURNAL, values.get("Journal") or "")
        if journal is None or journal.get("Type") != 20:
            raise BadRequest("Journal: Mandatory" if not values.get("Journal")
                             else f"Journal: {values['Journal']} is not a sales journal.")
        self._check_your_ref(values.get("YourRef"))
        raw_lines = values.pop("SalesInvoiceLines", None)
        if isinstance(raw_lines, dict):
            raw_lines = raw_lines.get("results")
        if not isinstance(raw_lines, list) or not raw_lines:
            raise BadRequest("SalesInvoiceLines: Mandatory")
        currency = values.get("Currency") or div.currency
        invoice_id = str(uuid.uuid4())
        lines = [self.invoice_line(div, kind, currency, invoice_id, n, raw) for n, raw in enumerate(raw_lines, 1)]
        excl = sum((ln["AmountFC"] for ln in lines), Decimal(0))
        vat = sum((ln["VATAmountFC"] for ln in lines), Decimal(0))
        now = self.state.now()
        record = {**values, "InvoiceID": invoice_id, "Type": kind, "Currency": currency,
                  "InvoiceTo": values.get("InvoiceTo") or customer["ID"], "OrderedByName": customer["Name"],
                  "InvoiceNumber": div.next_invoice, "Status": 20, "StatusDescription": "Open",
                  "TypeDescription": "Sales credit note" if kind == 8021 else "Sales invoice",
                  "Division": div.code, "InvoiceDate": now, "AmountFCExclVat": excl, "VATAmountFC": vat,
                  "AmountFC": excl + vat, "AmountDC": excl + vat, "SalesInvoiceLines": lines}
        div.next_invoice += 1
        for ln in lines:
            div.table(INVOICE_LINE)[ln["ID"]] = ln
        return self.state.add(div, INVOICE, record)

    def invoice_line(self, div: Division, kind: int, currency: str, invoice_id: str, number: int, raw: Any) -> dict:
        where = f"SalesInvoiceLines[{number - 1}]"
        v = fields_of(INVOICE_LINE, raw, where)
        item = div.table(ITEM).get(str(v.get("Item") or "").lower())
        if item is None:
            raise BadRequest(f"{where}.Item: " + (f"item {v['Item']} does not exist." if v.get("Item")
                                                    else "Mandatory"))
        gl = v.get("GLAccount") or item.get("GLRevenue")
        if not gl:
            raise BadRequest(f"{where}.GLAccount: Mandatory (the item has no revenue account).")
        if str(gl).lower() not in div.table(GL_ACCOUNT):
            raise BadRequest(f"{where}.GLAccount: G/L account {gl} does not exist.")
        vat_code = v.get("VATCode") or item.get("SalesVatCode")
        vat_rec = div.by_code(VAT_CODE, vat_code) if vat_code else None
        if vat_code and vat_rec is None:
            raise BadRequest(f"{where}.VATCode: VAT code {vat_code} does not exist.")
        if v.get("CostCenter") and div.by_code(COST_CENTER, v["CostCenter"]) is None:
            raise BadRequest(f"{where}.CostCenter: cost center {v['CostCenter']} does not exist.")
        qty = v.get("Quantity") if v.get("Quantity") is not None else Decimal(1)
        price = v.get("NetPrice") if v.get("NetPrice") is not None else (
            v.get("UnitPrice") if v.get("UnitPrice") is not None else Decimal(str(item.get("StandardSalesPrice") or 0)))
        amount = v["AmountFC"] if v.get("AmountFC") is not None else rounded(qty * price, currency)
        pct = Decimal(str(vat_rec.get("Percentage") or 0)) if vat_rec else Decimal(0)
        vat = v["VATAmountFC"] if v.get("VATAmountFC") is not None else rounded(amount * pct, currency)
        if kind == 8021 and (qty > 0 or amount > 0 or vat > 0):
            raise BadRequest(f"{where}: a credit note line needs a negative quantity and amount.")
        return {"ID": str(uuid.uuid4()), "InvoiceID": invoice_id, "LineNumber": number, "Item": item["ID"],
                "ItemCode": item["Code"], "Description": v.get("Description") or item.get("Description"),
                "Quantity": qty, "NetPrice": price, "UnitPrice": v.get("UnitPrice") or price, "AmountFC": amount,
                "AmountDC": amount, "VATCode": vat_code, "VATPercentage": pct, "VATAmountFC": vat,
                "GLAccount": str(gl).lower(), "CostCenter": v.get("CostCenter"), "Notes": v.get("Notes")}

    def bank_entry(self, div: Division, values: dict) -> dict:
        journal = div.by_code(JOURNAL, values.get("JournalCode") or "")
        if journal is None or journal.get("Type") not in (12, 16):
            raise BadRequest("JournalCode: Mandatory" if not values.get("JournalCode")
                             else f"JournalCode: journal {values['JournalCode']} is not a bank journal.")
        raw_lines = values.pop("BankEntryLines", None)
        if isinstance(raw_lines, dict):
            raw_lines = raw_lines.get("results")
        if not isinstance(raw_lines, list) or not raw_lines:
            raise BadRequest("BankEntryLines: Mandatory")
        entry_id, number = str(uuid.uuid4()), div.next_entry
        currency = values.get("Currency") or journal.get("Currency") or div.currency
        lines = []
        for n, raw in enumerate(raw_lines, 1):
            where = f"BankEntryLines[{n - 1}]"
            v = fields_of(BANK_LINE, raw, where)
            account = div.table(ACCOUNT).get(str(v.get("Account") or "").lower())
            if v.get("Account") and account is None:
                raise BadRequest(f"{where}.Account: account {v['Account']} does not exist.")
            if account is None and not v.get("GLAccount"):
                raise BadRequest(f"{where}: Account or GLAccount is mandatory.")
            if v.get("AmountFC") is None:
                raise BadRequest(f"{where}.AmountFC: Mandatory")
            if v.get("OurRef") is not None:
                invoice = next((i for i in div.table(INVOICE).values() if i["InvoiceNumber"] == v["OurRef"]), None)
                if invoice is None or (account is not None and invoice["OrderedBy"] != account["ID"]):
                    raise BadRequest(f"{where}.OurRef: invoice {v['OurRef']} of this account does not exist.")
            lines.append({**v, "ID": str(uuid.uuid4()), "EntryID": entry_id, "EntryNumber": number,
                          "LineNumber": n, "AmountDC": v["AmountFC"], "Date": v.get("Date") or self.state.now(),
                          "AccountCode": account["Code"] if account else None})
        div.next_entry += 1
        for ln in lines:
            div.table(BANK_LINE)[ln["ID"]] = ln
        return self.state.add(div, BANK_ENTRY, {**values, "EntryID": entry_id, "EntryNumber": number,
                                                "Currency": currency, "Status": 20,
                                                "JournalDescription": journal.get("Description"),
                                                "BankEntryLines": lines})

    def webhook(self, div: Division, values: dict) -> dict:
        topic, url = values.get("Topic"), values.get("CallbackURL") or ""
        if topic not in WEBHOOK_TOPICS:
            raise BadRequest(f"Topic: '{topic}' is not a valid topic.")
        if not url.startswith("https://") and not (self.state.settings.allow_http_callbacks
                                                   and url.startswith("http://")):
            raise BadRequest("CallbackURL: an https URL is required.")
        return self.state.add(div, WEBHOOK, {**values, "ClientID": self.state.client_id, "Division": div.code,
                                             "Description": "Sandbox app"})


# --------------------------------------------------------------------------- HTTP: API

class Api:
    def __init__(self, state: ExactState, faults: Faults, deliverer: "Deliverer"):
        self.state, self.faults, self.rules, self.deliverer = state, faults, Rules(state), deliverer

    async def _fault(self) -> Response | None:
        await self.faults.delay()
        if self.faults.expire_tokens:
            self.faults.expire_tokens = False
            self.state.expire_tokens()
        retry_after = self.faults.take_429()
        if retry_after is None and self.faults.fail_status == 429 and self.faults.fail_next:
            self.faults.fail_next -= 1
            retry_after = self.faults.retry_after
        if retry_after is not None:
            reset = str(int((self.state.now() + retry_after) * 1000))
            self.state.stats["rate_limited"] += 1
            return odata_error(429, "API rate limit exceeded.", {
                "X-RateLimit-Minutely-Limit": str(self.state.settings.minutely_limit),
                "X-RateLimit-Minutely-Remaining": "0", "X-RateLimit-Minutely-Reset": reset})
        status = self.faults.take_failure()
        if status is not None:
            return odata_error(status, "An error occurred. Simulated failure.")
        return None

    def _count(self, response: Response, request: Request) -> Response:
        self.state.request_log.append({"method": request.method, "path": request.url.path,
                                       "query": request.url.query, "status": response.status_code})
        by = self.state.stats["by_status"]
        by[str(response.status_code)] = by.get(str(response.status_code), 0) + 1
        self.state.stats["api_requests"] += 1
        return response

    async def me(self, request: Request) -> Response:
        async def handler(chain: Chain) -> Response:
            record = {"UserID": self.state.user_id, "CurrentDivision": chain.division, "UserName": "sandbox",
                      "FullName": "Sandbox User", "Email": "sandbox@example.com", "Language": "EN",
                      "LanguageCode": "en-GB", "DivisionCustomer": None}
            me = EntityDef("current/Me", "Exact.Web.Api.System.Me", "UserID", _f(
                guid="UserID DivisionCustomer", int="CurrentDivision",
                string="UserName FullName Email Language LanguageCode"), frozenset(), methods=frozenset({"GET"}))
            select, _ = parse_select(request.query_params.get("$select"), me)
            base = f"{request.url.scheme}://{request.url.netloc}/api/v1"
            return JSON({"d": {"results": [render(me, record, f"{base}/current", select, set())]}})
        return await self.guarded(request, None, handler)

    async def guarded(self, request: Request, division: int | None, handler) -> Response:
        response = await self._fault()
        if response is not None:
            return self._count(response, request)
        chain = self.state.authenticated(request)
        if chain is None:
            self.state.stats["unauthorized"] += 1
            return self._count(odata_error(401, "Unauthorized: the access token is missing, invalid or expired."),
                               request)
        if division is not None and division not in self.state.divisions:
            return self._count(odata_error(403, "Forbidden - WrongDivision"), request)
        headers, allowed = self.state.admit(division if division is not None else chain.division)
        if not allowed:
            self.state.stats["rate_limited"] += 1
            return self._count(odata_error(429, "API rate limit exceeded.", headers), request)
        try:
            response = await handler(chain)
        except BadRequest as exc:
            response = odata_error(exc.status, str(exc))
        response.headers.update(headers)
        if request.method != "GET" and response.status_code < 300 and self.faults.take_lost_commit():
            return self._count(lost_response(), request)
        return self._count(response, request)

    async def resource(self, request: Request) -> Response:
        try:
            division = int(request.path_params["division"])
        except ValueError:
            return self._count(odata_error(404, "Not found"), request)
        rest = request.path_params["rest"]
        m = re.match(r"^(?P<path>[A-Za-z]+/[A-Za-z]+)(?:\((?P<key>[^)]*)\))?$", rest)
        entity = ENTITIES.get(m.group("path").lower()) if m else None

        async def handler(chain: Chain) -> Response:
            if entity is None:
                raise BadRequest(f"Resource not found for the segment '{rest}'.", 404)
            if request.method not in entity.methods:
                raise BadRequest(f"The HTTP method '{request.method}' is not allowed here.", 405)
            div = self.state.divisions[division]
            route = f"{request.method} {entity.path}"
            self.state.stats["by_route"][route] = self.state.stats["by_route"].get(route, 0) + 1
            key = _key(m.group("key"), entity) if m.group("key") is not None else None
            base = f"{request.url.scheme}://{request.url.netloc}/api/v1/{division}"
            if request.method == "GET":
                return self.get(request, div, entity, key, base)
            if request.method == "POST" and key is None:
                body = _body(await request.body())
                record = self.rules.create(div, entity, body)
                self._notify(div, entity, record, "Create")
                return JSON({"d": render(entity, record, base, None, {entity.lines} if entity.lines else set())},
                            status_code=201)
            record = div.table(entity).get(str(key).lower()) if key is not None else None
            if record is None:
                raise BadRequest("The requested record does not exist." if key is not None
                                 else "A key is required.", 404 if key is not None else 400)
            if request.method == "PUT":
                self.rules.update(div, entity, record, _body(await request.body()))
                self._notify(div, entity, record, "Update")
                return Response(status_code=204)
            if request.method == "DELETE":
                if entity is INVOICE and record.get("Status") != 20:
                    raise BadRequest("Only open invoices can be deleted.")
                del div.table(entity)[str(key).lower()]
                for line in record.get(entity.lines or "", []) or []:
                    div.table(ENTITIES[entity.line_entity.lower()]).pop(line["ID"], None)
                self._notify(div, entity, record, "Delete")
                return Response(status_code=204)
            raise BadRequest(f"The HTTP method '{request.method}' is not allowed here.", 405)

        return await self.guarded(request, division, handler)

    def get(self, request: Request, div: Division, entity: EntityDef, key: Any, base: str) -> Response:
        params = request.query_params
        select, nested = parse_select(params.get("$select"), entity)
        expand = {e.strip() for e in (params.get("$expand") or "").split(",") if e.strip()} | nested
        if key is not None:
            record = div.table(entity).get(str(key).lower())
            if record is None:
                raise BadRequest("The requested record does not exist.", 404)
            return JSON({"d": render(entity, record, base, select, expand)})
        if select is None and params.get("$select") is None:
            raise BadRequest("$select is mandatory: name the properties to return.")
        if "$skip" in params:
            raise BadRequest("The query option $skip is not supported on this endpoint; use __next.")
        records = list(div.table(entity).values())
        if params.get("$filter"):
            predicate = FilterParser(params["$filter"], entity).parse()
            records = [r for r in records if predicate(r)]
        token = params.get("$skiptoken")
        if token:
            after = _key(token, entity)
            keys = [str(r[entity.key]).lower() for r in records]
            records = records[keys.index(str(after).lower()) + 1:] if str(after).lower() in keys else []
        top = _count_param(params.get("$top"))
        if top is not None:
            records = records[:top]
        page = records[:self.state.settings.page_size]
        body: dict[str, Any] = {"results": [render(entity, r, base, select, expand) for r in page]}
        if len(records) > len(page):
            last = page[-1][entity.key]
            options = {k: v for k, v in params.items() if k != "$skiptoken"}
            if top is not None:
                options["$top"] = str(top - len(page))
            options["$skiptoken"] = f"guid'{last}'" if entity.fields[entity.key] == G else str(last)
            body["__next"] = f"{base}/{entity.path}?{urlencode(options, quote_via=quote, safe=SAFE)}"
        return JSON({"d": body})

    def _notify(self, div: Division, entity: EntityDef, record: dict, action: str) -> None:
        topic = TOPIC_OF.get(entity.path)
        if topic:
            self.deliverer.notify(div, topic, str(record[entity.key]), action,
                                  f"{self.deliverer.base_url}/api/v1/{div.code}/{entity.path}")


def _key(text: str, entity: EntityDef) -> Any:
    m = re.match(r"^guid'([^']*)'$", text.strip())
    if m:
        try:
            return str(uuid.UUID(m.group(1)))
        except ValueError:
            raise BadRequest(f"Invalid key {text}.") from None
    if entity.fields.get(entity.key) == G:
        raise BadRequest(f"Invalid key {text}: expected guid'...'.")
    return text.strip("'")


def _count_param(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise BadRequest(f"Invalid $top value '{text}'.")
    return int(text)


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null", parse_float=Decimal)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc


# --------------------------------------------------------------------------- webhooks

class Deliverer:
    """Signed notifications to the subscriptions of a topic (fire and forget, not retried)."""

    def __init__(self, state: ExactState, verify: Any = True):
        self.state, self.verify = state, verify
        self.base_url = "https://start.exactonline.nl"
        self.tasks: set[asyncio.Task] = set()

    def notify(self, div: Division, topic: str, key: str, action: str, endpoint: str) -> None:
        subs = [s for s in div.table(WEBHOOK).values() if s["Topic"] == topic]
        if not subs:
            return
        created = datetime.fromtimestamp(self.state.now(), tz=timezone.utc).replace(tzinfo=None)
        content = dumps({"Topic": topic, "ClientId": self.state.client_id, "Division": div.code,
                         "Action": action, "Key": key, "ExactOnlineEndpoint": f"{endpoint}(guid'{key}')",
                         "EventCreatedOn": created.isoformat(timespec="milliseconds")})
        digest = hmac.new(self.state.webhook_secret.encode(), content.encode(), hashlib.sha256).hexdigest().upper()
        body = f'{{"Content":{content},"HashCode":"{digest}"}}'.encode()
        for sub in subs:
            self._spawn(sub["CallbackURL"], body)

    def _spawn(self, url: str, body: bytes) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self.post(url, body))
        except RuntimeError:
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def post(self, url: str, body: bytes) -> int | None:
        try:
            async with httpx.AsyncClient(verify=self.verify, timeout=10) as client:
                resp = await client.post(url, content=body, headers={"Content-Type": "application/json"})
                status = resp.status_code
        except httpx.HTTPError:
            status = None
        self.state.deliveries.append({"url": url, "status": status, "body": body.decode()})
        return status


# --------------------------------------------------------------------------- HTTP: OAuth

class OAuth:
    def __init__(self, state: ExactState):
        self.state = state

    def _redirect_ok(self, uri: str) -> bool:
        return bool(uri) and (not self.state.redirect_uris or uri in self.state.redirect_uris)

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.state.client_id:
            return Response("Unknown client_id.", status_code=400, media_type="text/plain")
        if not self._redirect_ok(q.get("redirect_uri", "")):
            return Response("The redirect_uri is not registered for this app.", status_code=400,
                            media_type="text/plain")
        if q.get("response_type") != "code":
            return Response("response_type must be 'code'.", status_code=400, media_type="text/plain")
        code = self.state.new_code(q["redirect_uri"])
        params = {"code": code} | ({"state": q["state"]} if q.get("state") else {})
        sep = "&" if "?" in q["redirect_uri"] else "?"
        return RedirectResponse(f"{q['redirect_uri']}{sep}{urlencode(params)}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.state.stats["token_requests"] += 1
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return oauth_error(400, "invalid_request", "The token request must be form-encoded.")
        form = dict(parse_qsl((await request.body()).decode()))
        grant = form.get("grant_type", "")
        by = self.state.stats["by_grant"]
        by[grant] = by.get(grant, 0) + 1
        if form.get("client_id") != self.state.client_id or form.get("client_secret") != self.state.client_secret:
            return oauth_error(400, "invalid_client", "The client credentials are invalid.")
        if grant == "authorization_code":
            return self._code(form)
        if grant == "refresh_token":
            return self._refresh(form)
        return oauth_error(400, "unsupported_grant_type")

    def _code(self, form: dict) -> Response:
        entry = self.state.codes.pop(form.get("code", ""), None)
        if entry is None or entry["expires"] < self.state.now():
            return oauth_error(400, "invalid_grant", "The authorization code is invalid or expired.")
        if form.get("redirect_uri") != entry["redirect_uri"]:
            return oauth_error(400, "invalid_grant", "The redirect_uri does not match the authorization request.")
        chain = Chain(uuid.uuid4().hex, 0, self.state.current_division)
        self.state.chains[chain.id] = chain
        return JSON(self.state.issue(chain), headers={"Cache-Control": "no-store"})

    def _refresh(self, form: dict) -> Response:
        s, now = self.state, self.state.now()
        entry = s.refresh.get(form.get("refresh_token", ""))
        chain = s.chains.get(entry["chain"]) if entry else None
        if entry is None or chain is None or chain.revoked:
            return oauth_error(400, "invalid_grant", "Token is not allowed, because of invalid or empty chainId")
        grace = s.settings.refresh_grace_seconds
        if entry["used"] is not None and (grace <= 0 or now - entry["used"] > grace):
            s.stats["refresh_reused"] += 1
            return oauth_error(400, "invalid_grant", "Token is not allowed, because of invalid or empty chainId")
        if now - entry["issued"] > CHAIN_DAYS * 86400:
            s.stats["refresh_expired"] += 1
            expired = datetime.fromtimestamp(entry["issued"] + CHAIN_DAYS * 86400, tz=timezone.utc)
            now_text = datetime.fromtimestamp(now, tz=timezone.utc)
            return oauth_error(400, "invalid_request", f"The refresh token expired at "
                               f"{expired:%m/%d/%Y %I:%M:%S %p} and it is now {now_text:%m/%d/%Y %I:%M:%S %p}")
        if now - chain.last_issued < s.settings.refresh_not_before:
            s.stats["refresh_too_early"] += 1
            return oauth_error(401, "invalid_request", "Access Token not expired",
                               headers={"Reason": "Access Token not expired"})
        entry["used"] = now
        s.stats["refreshes"] += 1
        return JSON(s.issue(chain), headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- control surface

class Control:
    def __init__(self, state: ExactState, faults: Faults, deliverer: Deliverer):
        self.state, self.faults, self.deliverer = state, faults, deliverer

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        self.faults.configure(**asdict(Faults()))
        return JSON({"ok": True})

    async def seed(self, request: Request) -> Response:
        body = _body(await request.body()) or {}
        if not isinstance(body, dict):
            return odata_error(400, "The seed body must be an object.")
        for d in body.get("divisions", []):
            if d.get("Current"):
                self.state.current_division = int(d["Code"])
            self.state.add_division(int(d["Code"]), d.get("Description", f"Division {d['Code']}"),
                                    d.get("Currency", "EUR"), d.get("Country", "NL"))
        div = self.state.divisions.get(int(body.get("division") or self.state.current_division))
        if div is None:
            return odata_error(400, f"Unknown division {body.get('division')}.")
        counts = {}
        for name, entity in (("gl_accounts", GL_ACCOUNT), ("cost_centers", COST_CENTER), ("vat_codes", VAT_CODE),
                             ("journals", JOURNAL), ("items", ITEM), ("accounts", ACCOUNT)):
            for raw in body.get(name, []):
                values = {k: coerce(entity.fields[k], v, k) for k, v in raw.items() if k in entity.fields}
                if entity is ITEM and raw.get("GLRevenueCode"):
                    gl = div.by_code(GL_ACCOUNT, raw["GLRevenueCode"])
                    values["GLRevenue"] = gl["ID"] if gl else None
                if entity is ACCOUNT:
                    values["Code"] = str(values.get("Code") or div.next_account).strip().rjust(18)
                existing = div.by_code(entity, values["Code"]) if "Code" in values else None
                if existing is not None:
                    existing.update(values)
                    existing["Modified"] = self.state.now()
                    self.api_notify(div, entity, existing, "Update")
                else:
                    record = self.state.add(div, entity, values)
                    self.api_notify(div, entity, record, "Create")
            counts[name] = len(div.table(entity))
        return JSON({"division": div.code, "counts": counts})

    def api_notify(self, div: Division, entity: EntityDef, record: dict, action: str) -> None:
        topic = TOPIC_OF.get(entity.path)
        if topic:
            self.deliverer.notify(div, topic, str(record[entity.key]), action,
                                  f"{self.deliverer.base_url}/api/v1/{div.code}/{entity.path}")

    async def documents(self, request: Request) -> Response:
        kind = request.query_params.get("type")
        return JSON([d for d in self.state.documents() if kind is None or d["type"] == kind])

    async def accounts(self, request: Request) -> Response:
        return JSON([{"division": div.code, **{k: v for k, v in a.items() if k not in ("Created", "Modified")}}
                     for div in self.state.divisions.values() for a in div.table(ACCOUNT).values()])

    async def update_account(self, request: Request) -> Response:
        """An Exact user edits an account: fields in the API's names; ``Modified`` moves on."""
        found = self.state.account_by_id(request.path_params["account_id"])
        if found is None:
            return odata_error(404, "The requested record does not exist.")
        div, record = found
        try:
            Rules(self.state).update(div, ACCOUNT, record, _body(await request.body()) or {})
        except BadRequest as exc:
            return odata_error(exc.status, str(exc))
        self.api_notify(div, ACCOUNT, record, "Update")
        return JSON({k: v for k, v in record.items() if k not in ("Created", "Modified")})

    async def record_delivery(self, request: Request) -> Response:
        """A warehouse user ships an order: ``{"your_ref", "tracking_number", "shipping_method"?}``
        → the sales order of the invoice with that ``YourRef`` (made from its lines when there is
        none) and a goods delivery of it carrying the tracking number."""
        body = _body(await request.body()) or {}
        ref = str(body.get("your_ref") or "")
        for div in self.state.divisions.values():
            invoice = next((i for i in div.table(INVOICE).values()
                            if i["Type"] == 8020 and ref and i.get("YourRef") == ref), None)
            if invoice is None:
                continue
            order = self.state.sales_order_for(div, invoice)
            delivery = self.state.deliver(div, order, str(body.get("tracking_number") or ""),
                                          str(body.get("shipping_method") or ""))
            self.api_notify(div, DELIVERY, delivery, "Create")
            return JSON({"EntryID": delivery["EntryID"], "DeliveryNumber": delivery["DeliveryNumber"],
                         "SalesOrderNumber": order["OrderNumber"], "division": div.code})
        return odata_error(404, f"No sales invoice has YourRef {ref!r}.")

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.state.settings.configure(await request.json())
            except (ValueError, TypeError) as exc:
                return JSON({"error": str(exc)}, status_code=400)
        return JSON(asdict(self.state.settings))

    async def expire_tokens(self, request: Request) -> Response:
        self.state.expire_tokens()
        return JSON({"ok": True})

    async def authorize(self, request: Request) -> Response:
        body = _body(await request.body()) or {}
        uri = body.get("redirect_uri") or ""
        if self.state.redirect_uris and uri not in self.state.redirect_uris:
            return JSON({"error": "the redirect_uri is not registered for this app"}, status_code=400)
        code = self.state.new_code(uri)
        params = {"code": code} | ({"state": body["state"]} if body.get("state") else {})
        return JSON({"code": code, "location": f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"})

    async def clock(self, request: Request) -> Response:
        body = _body(await request.body()) or {}
        self.state.offset += float(body.get("advance", 0))
        return JSON({"now": self.state.now(), "offset": self.state.offset})

    async def stats(self, request: Request) -> Response:
        return JSON({**self.state.stats, "quota": self.state.quota})

    async def deliveries(self, request: Request) -> Response:
        if self.deliverer.tasks:
            await asyncio.gather(*list(self.deliverer.tasks), return_exceptions=True)
        return JSON(self.state.deliveries)

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/seed", self.seed, methods=["POST"]),
            Route("/_sandbox/documents", self.documents, methods=["GET"]),
            Route("/_sandbox/accounts", self.accounts, methods=["GET"]),
            Route("/_sandbox/accounts/{account_id}", self.update_account, methods=["POST"]),
            Route("/_sandbox/deliveries", self.record_delivery, methods=["POST"]),
            Route("/_sandbox/settings", self.settings, methods=["GET", "POST"]),
            Route("/_sandbox/expire-tokens", self.expire_tokens, methods=["POST"]),
            Route("/_sandbox/authorize", self.authorize, methods=["POST"]),
            Route("/_sandbox/clock", self.clock, methods=["POST"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/webhook-deliveries", self.deliveries, methods=["GET"]),
            *fault_routes(self.faults),
        ]


# --------------------------------------------------------------------------- webhook subscribe

class WebhookApi(Api):
    """Subscriptions validate their callback before they are saved."""

    async def resource(self, request: Request) -> Response:
        rest = request.path_params.get("rest", "")
        if request.method == "POST" and rest.lower() == "webhooks/webhooksubscriptions":
            raw = await request.body()
            try:
                url = (_body(raw) or {}).get("CallbackURL", "")
            except (BadRequest, AttributeError):
                url = ""
            secure = url.startswith("https://") or (self.state.settings.allow_http_callbacks
                                                     and url.startswith("http://"))
            if url and secure and self.state.authenticated(request) is not None:
                status = await self.deliverer.post(url, b"")
                if status is None or not 200 <= status < 300:
                    return self._count(odata_error(
                        500, f"Error 500: Invalid: Post to callback URL endpoint returns {status or 500} "
                             f"An error occurred while sending the request."), request)
        return await super().resource(request)


# --------------------------------------------------------------------------- the app

def grant_code(app: Starlette, redirect_uri: str, code: str | None = None) -> str:
    """In-process twin of ``POST /_sandbox/authorize`` for callers that cannot make a request
    from inside the event loop serving the app (a consent given without a browser)."""
    return app.state.exact.new_code(redirect_uri, code)


def create_app(*, client_id: str = "9a8b7c6d-0000-4000-8000-000000000001", client_secret: str = "sandbox-secret",
               webhook_secret: str = "sandbox-webhook-secret", redirect_uris: tuple[str, ...] = (),
               callback_verify: Any = True, **settings: Any) -> Starlette:
    """One simulated Exact Online app registration + user; ``settings`` are :class:`Settings`
    fields. State is ``app.state.exact``, faults ``app.state.faults``."""
    config = Settings()
    config.configure(settings)
    state = ExactState(client_id=client_id, client_secret=client_secret, webhook_secret=webhook_secret,
                       redirect_uris=tuple(redirect_uris), settings=config)
    faults = Faults()
    deliverer = Deliverer(state, verify=callback_verify)
    api = WebhookApi(state, faults, deliverer)
    oauth = OAuth(state)

    async def remember_host(request: Request) -> None:
        deliverer.base_url = f"{request.url.scheme}://{request.url.netloc}"

    async def me(request: Request) -> Response:
        await remember_host(request)
        return await api.me(request)

    async def resource(request: Request) -> Response:
        await remember_host(request)
        return await api.resource(request)

    methods = ["GET", "POST", "PUT", "DELETE"]
    app = Starlette(routes=[
        *Control(state, faults, deliverer).routes(),
        Route("/api/oauth2/auth", oauth.authorize, methods=["GET"]),
        Route("/api/oauth2/token", oauth.token, methods=["POST"]),
        Route("/api/v1/current/Me", me, methods=["GET"]),
        Route("/api/v1/{division}/{rest:path}", resource, methods=methods),
    ])
    app.state.exact = state
    app.state.faults = faults
    return app

"""Oracle Fusion Cloud ERP (Receivables) simulator, written from shared/reference/oracle-fusion.md.

What it simulates
-----------------
* REST roots ``/fscmRestApi/resources/{11.13.18.05|latest}/`` and ``/crmRestApi/resources/...``:
  collection ``/{resource}``, item ``/{resource}/{key}``, child collection and item
  ``/{resource}/{key}/child/{child}[/{childKey}]``, action ``POST /{resource}/{key}/action/{name}``;
  ``GET`` on the context root answers the resource catalog with the framework versions.
* Resources: ``receivablesInvoices`` (lines with manual tax lines, distributions, installments;
  GET/POST/DELETE), ``receivablesCreditMemos`` (on-account only; negative amounts; GET/POST),
  ``standardReceipts`` (remittance references, ``applyReceipt`` action; GET/POST),
  ``receivablesCustomerAccountActivities``, ``accountCombinationsLOV``, ``receiptMethods`` and
  CRM ``accounts`` (party + ``PrimaryAddress``).  SOAP ``/crmService/CustomerAccountService``
  (``createCustomerAccount``: account, site, site uses) and ``/fscmService/CreditMemoService``
  (``applyOnAccountCreditMemo``).
* Auth: Basic (integration user) or Bearer tokens from ``POST /oauth2/v1/token``
  (client credentials grant; token lifetime ``token_lifetime`` s, or ``urn:opc:resource:expiry=N``
  in the scope); an expired or unknown token → 401.
* ``REST-Framework-Version`` 1–9 (default 1): v1 query-by-example ``q`` (``;``-joined), v2+
  expression ``q`` (quoted literals, ``= != < > <= >= LIKE IN BETWEEN IS [NOT] NULL``,
  ``and``/``or``/parentheses; a ``;`` is a 400), v3+ expanded children as collection objects, v4+
  JSON error documents (``o:errorDetails``), v9 int64 ids as strings.
* Collections: ``limit`` (default 25, capped at 500), ``offset``, ``count``, ``hasMore``,
  ``totalResults=true``, ``onlyData``, ``fields``, ``expand``, ``orderBy``; no match → 200 with
  ``items: []``; an unknown item → 404.
* Lookups that reject unknown values with 400: business units, transaction sources and types,
  payment terms, credit reasons, customer accounts (+ bill-to site), items
  (``AR_INVALID_INVENTORY_ITEM``, the whole invoice), tax rate codes, account combinations,
  receipt methods and their bank accounts, CRM source systems.  Every request is all-or-nothing.
* A per-minute request quota answering 429 (``Retry-After`` when ``send_retry_after``) and fault
  injection (``sandbox.faults``) on every API request, REST and SOAP.

Control surface (no auth): ``POST /_sandbox/reset``; seeding ``POST /_sandbox/items``
(``ItemNumber`` or strings), ``/_sandbox/accounts`` (natural account segment values),
``/_sandbox/cost-centers`` (cost centre segment values), ``/_sandbox/combinations``
(``{"combination", "enabled"}``), ``/_sandbox/tax-codes`` (``{code, rate?, regime?}``),
``/_sandbox/receipt-methods`` (``{name, bank_account?}``), ``/_sandbox/customers`` (existing
parties with accounts: ``{name, email?, source_reference?}``); ``GET /_sandbox/parties`` (the CRM
parties with their primary addresses); ``GET /_sandbox/documents``;
``POST /_sandbox/automatch`` (the *Apply Receipts Using AutoMatch* process);
``GET|POST /_sandbox/settings``; ``GET|POST /_sandbox/faults``; ``POST /_sandbox/expire-tokens``;
``GET /_sandbox/stats``; ``GET /_sandbox/requests``.

Unconfirmed in the reference → the conservative choice made here
-----------------------------------------------------------------
* Create bodies naming an attribute the resource does not have → 400 (so ``Description`` on a
  credit-memo line, which wants ``LineDescription``, is refused rather than dropped).
* v1 ``q`` values are unquoted; v2+ string literals must be quoted (an unquoted word is a 400,
  numbers may be bare); ``''`` escapes a quote; string equality is case-sensitive; ``LIKE`` uses
  ``%``.  An attribute ``q`` does not know → 400.
* Error texts other than ``AR_INVALID_INVENTORY_ITEM`` are the simulator's own wording; v<4 sends
  them as ``text/plain``, v≥4 as the problem document with ``o:errorPath`` naming the attribute.
  An unsupported ``REST-Framework-Version`` → 400.
* Transaction sources number manually (``TransactionNumber`` required, ≤ 20 chars, unique per
  business unit and class) unless seeded ``automatic``; receipts need ``ReceiptNumber`` (≤ 30,
  unique).  ``LineAmount`` may be sent and must equal ``Quantity × UnitSellingPrice`` rounded
  to the currency; it is derived otherwise.  Manual tax lines are taken as sent; a classification
  code without tax lines computes tax at the seeded rate (0 without one).  A line's Revenue
  distributions must add up to 100 % (or its amount).  ``AllowCompletion: "Y"`` completes the
  invoice (status ``Complete``, one open installment due on the transaction date); otherwise it
  stays ``Incomplete`` and nothing can be applied to it.
* Credit memos: every line amount must be negative.  ``applyOnAccountCreditMemo`` (the operation
  of the ``ApplyOnAccountCreditMemo`` object) needs an open installment of a complete invoice of
  the same customer account and currency and never over-applies (neither the memo's unapplied
  amount nor the installment's balance).  ``applyReceipt`` follows the same rules; it answers
  ``{"result": "SUCCESS"}`` and exists only while ``apply_receipt_action`` is on (404 otherwise).
  AutoMatch applies each remittance reference by transaction number, up to what is open.
* The token endpoint accepts the client's credentials in the Basic header or the form; the grant
  must be ``client_credentials`` with a non-empty ``scope``; tokens are random JWT-shaped strings.
  Basic credentials of the integration user never expire.
* CRM ``accounts``: ``SourceSystem`` and ``SourceSystemReferenceValue`` are top-level, filterable
  attributes (unique together; the source system must be seeded: ``WEBSTORE`` is).
  ``PrimaryAddress`` rows carry ``AddressId`` (the party site id) and ``AddressNumber``.
  ``receivablesCustomerAccountActivities.CustomerId`` is the party id.
* ``createCustomerAccount`` numbers accounts automatically (a sent ``AccountNumber`` is a fault
  while ``automatic_account_numbers`` is on), needs ``CreatedByModule`` ``HZ_WS`` and a party
  site of the same party; a business error is HTTP 500 with a SOAP ``Fault``.
* ``receiptMethods`` items: ``ReceiptMethodId``, ``Name``, ``ReceiptClass``, ``BankAccountNumber``.
* Quota: ``requests_per_minute`` counts authenticated API requests in a fixed 60-s window; the
  429 body is plain text.  The token endpoint has its own ``token_requests_per_minute``.
* ``PATCH`` exists for CRM ``accounts`` items (the party's own attributes, ``SourceSystem``
  reference included, unique as on create) and their ``PrimaryAddress`` child items, and ``POST``
  adds a primary address (``Country`` required); only the attributes sent change, and the
  party's ``LastUpdateDate`` moves on.  The answer is the changed item (200, 201 for a POST).
* Batch (``POST`` on the context root, ``application/vnd.oracle.adf.batch+json``): the parts run
  in order as the requests they stand for, in one transaction. The answer mirrors the parts with
  each one's ``payload`` (200); when a part fails, nothing is kept and the answer holds that part
  alone, its error document as ``payload``, with the part's status as the batch's. A custom
  action in a batch is refused (400, "isn't enabled for batch execution"). The batch is one
  request for the quota, the log and fault injection.
* Not modelled: ``Upsert-Mode``, ``If-Match``/412, PATCH of Receivables resources, ``describe``.
* ``/_sandbox/reset`` clears business data, counters, the quota window, settings and faults;
  lookups are reseeded with the defaults; issued tokens survive.
"""
from __future__ import annotations

import base64
import copy
import itertools
import json
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import parse_qsl
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sandbox import wire
from sandbox.faults import Faults, fault_routes, lost_response

VERSIONS = ("11.13.18.05", "latest")
FRAMEWORK_VERSIONS = tuple(str(v) for v in range(1, 10))
PAGE_DEFAULT, PAGE_MAX = 25, 500
BATCH_MEDIA_TYPE = "application/vnd.oracle.adf.batch+json"
BATCH_OPERATIONS = {"get": "GET", "create": "POST", "update": "PATCH", "replace": "PUT",
                    "delete": "DELETE"}
QUOTA_WINDOW = 60
ZERO = Decimal(0)
MINOR_UNITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3,
               "JOD": 3, "TND": 3}
CHART = ("Company", "CostCenter", "Account", "SubAccount", "Product")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def money(value: Decimal, currency: str) -> Decimal:
    places = MINOR_UNITS.get(currency, 2)
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


dumps = wire.dumps


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


class ApiError(Exception):
    """A refusal; rendered per framework version."""

    def __init__(self, status: int, message: str, *, code: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.path = status, message, code, path


TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 415: "Unsupported Media Type"}


def error_response(exc: ApiError, version: int) -> Response:
    if version < 4:
        text = f"{exc.code}: {exc.message}" if exc.code else exc.message
        return PlainTextResponse(text, status_code=exc.status)
    detail: dict[str, Any] = {"detail": exc.message}
    if exc.code:
        detail["o:errorCode"] = exc.code
    if exc.path:
        detail["o:errorPath"] = exc.path
    return JSON({"type": "http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html",
                 "title": TITLES.get(exc.status, "Error"), "status": str(exc.status),
                 "o:errorDetails": [detail]}, status_code=exc.status,
                media_type="application/vnd.oracle.adf.error+json")


def bad(message: str, path: str = "", code: str = "") -> ApiError:
    return ApiError(400, message, path=path, code=code)


def to_amount(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise bad(f"The value of the attribute {path} isn't a valid number.", path)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise bad(f"The value of the attribute {path} isn't a valid number.", path) from None
    if not amount.is_finite():
        raise bad(f"The value of the attribute {path} isn't a valid number.", path)
    return amount


def to_date(value: Any, path: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise bad(f"The value {value} of the attribute {path} isn't a valid date (YYYY-MM-DD).",
                  path) from None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- the q filter

class QueryError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, f"URL request parameter q is not valid: {message}", path="q")


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>>=|<=|!=|<>|=|<|>|\(|\)|,)"
                    r"|(?P<word>[^\s'=<>!(),]+))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"unexpected text at '{text[pos:pos + 20]}'")
        kind = m.lastgroup or ""
        value = m.group(kind)
        out.append((kind, value[1:-1].replace("''", "'") if kind == "str" else value))
        pos = m.end()
    return out


Predicate = Callable[[dict], bool]


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is None:
        return False
    if isinstance(left, Decimal) or isinstance(left, int) and not isinstance(left, bool):
        try:
            left, right = Decimal(str(left)), Decimal(str(right))
        except InvalidOperation:
            return False
    else:
        left, right = str(left), str(right)
    return {"=": left == right, "!=": left != right, "<>": left != right, "<": left < right,
            ">": left > right, "<=": left <= right, ">=": left >= right}[op]


class _Parser:
    """v2+ expression syntax."""

    def __init__(self, text: str, attributes: set[str]) -> None:
        if ";" in re.sub(r"'(?:[^']|'')*'", "", text):
            raise QueryError("';' is query-by-example syntax (framework version 1)")
        self.toks, self.i, self.attributes = _tokens(text), 0, attributes

    def peek(self, n: int = 0) -> tuple[str, str]:
        return self.toks[self.i + n] if self.i + n < len(self.toks) else ("", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.i != len(self.toks):
            raise QueryError(f"unexpected '{self.peek()[1]}'")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.atom()]
        while self.keyword("and"):
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def value(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value
        if kind == "word":
            try:
                return Decimal(value)
            except InvalidOperation:
                raise QueryError(f"the literal {value} must be quoted") from None
        raise QueryError(f"a value was expected, not '{value}'")

    def atom(self) -> Predicate:
        if self.peek() == ("op", "("):
            self.take()
            inner = self.or_expr()
            if self.take() != ("op", ")"):
                raise QueryError("')' expected")
            return inner
        kind, name = self.take()
        if kind != "word":
            raise QueryError(f"an attribute was expected, not '{name}'")
        if name not in self.attributes:
            raise QueryError(f"the attribute {name} is not valid")
        if self.keyword("is"):
            negate = self.keyword("not")
            if not self.keyword("null"):
                raise QueryError("NULL expected")
            return lambda r: (r.get(name) in (None, "")) != negate
        if self.keyword("like"):
            pattern = re.compile("^" + ".*".join(re.escape(p) for p in str(self.value()).split("%")) + "$")
            return lambda r: r.get(name) is not None and bool(pattern.match(str(r.get(name))))
        if self.keyword("in"):
            if self.take() != ("op", "("):
                raise QueryError("'(' expected after IN")
            values = [self.value()]
            while self.peek() == ("op", ","):
                self.take()
                values.append(self.value())
            if self.take() != ("op", ")"):
                raise QueryError("')' expected")
            return lambda r: any(_compare(r.get(name), "=", v) for v in values)
        if self.keyword("between"):
            low = self.value()
            if not self.keyword("and"):
                raise QueryError("AND expected in BETWEEN")
            high = self.value()
            return lambda r: _compare(r.get(name), ">=", low) and _compare(r.get(name), "<=", high)
        okind, op = self.take()
        if okind != "op" or op in "(),":
            raise QueryError(f"an operator was expected after {name}")
        right = self.value()
        return lambda r: _compare(r.get(name), op, right)


def parse_q(text: str, version: int, attributes: set[str]) -> Predicate:
    if version >= 2:
        return _Parser(text, attributes).parse()
    preds: list[Predicate] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        m = re.match(r"^(\w+)\s*(>=|<=|!=|=|>|<)\s*(.*)$", part)
        if not m or m.group(1) not in attributes:
            raise QueryError(f"'{part}' is not a valid condition")
        name, op, value = m.groups()
        preds.append(lambda r, n=name, o=op, v=value: _compare(r.get(n), o, v))
    return lambda r: all(p(r) for p in preds)


# --------------------------------------------------------------------------- state

@dataclass
class Settings:
    requests_per_minute: int = 0
    send_retry_after: bool = True
    token_lifetime: int = 3600
    token_requests_per_minute: int = 1000
    apply_receipt_action: bool = True
    automatic_account_numbers: bool = True

    def configure(self, values: dict) -> None:
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(names))}")
            setattr(self, key, type(getattr(self, key))(value))


def _defaults() -> dict[str, Any]:
    return {
        "business_units": {"Vision Operations"},
        "sources": {"Manual": "manual", "Manual-NES": "manual", "Imported": "automatic"},
        "types": {"Invoice": "INV", "Credit Memo": "CM"},
        "terms": {"IMMEDIATE", "30 Net"},
        "credit_reasons": {"RETURN", "CANCELLATION", "PRICE"},
        "source_systems": {"WEBSTORE"},
        "items": {},
        "tax_codes": {},
        "receipt_methods": {},
        "values": {"Company": {"01"}, "CostCenter": set(), "Account": set(),
                   "SubAccount": {"000"}, "Product": {"000"}},
        "disabled": set(),
    }


class OracleState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        self.settings.__dict__.update(asdict(Settings()))
        self.lookups = _defaults()
        self.seq = itertools.count(300000001)
        self.parties: dict[str, dict] = {}  # PartyNumber -> party
        self.accounts: dict[int, dict] = {}  # AccountId -> customer account
        self.invoices: dict[int, dict] = {}
        self.memos: dict[int, dict] = {}
        self.receipts: dict[int, dict] = {}
        self.applications: list[dict] = []
        self.combination_ids: dict[str, int] = {}
        self.window: tuple[float, int] | None = None
        self.token_window: tuple[float, int] | None = None
        self.stats: dict[str, Any] = {"total": 0, "by_status": {}, "by_route": {}, "throttled": 0,
                                      "token_requests": 0}
        self.request_log: list[dict] = []

    BUSINESS = ("lookups", "seq", "parties", "accounts", "invoices", "memos", "receipts",
                "applications", "combination_ids")

    def snapshot(self) -> dict[str, Any]:
        """The business data, for a batch to roll back to (counters and the log stay)."""
        return copy.deepcopy({name: getattr(self, name) for name in self.BUSINESS})

    def restore(self, saved: dict[str, Any]) -> None:
        self.__dict__.update(saved)

    def next_id(self) -> int:
        return next(self.seq)

    # ---- quota
    def admit(self, limit: int, token: bool = False) -> float | None:
        if limit <= 0:
            return None
        now = time.monotonic()
        window = self.token_window if token else self.window
        if window is None or now - window[0] >= QUOTA_WINDOW:
            window = (now, 0)
        if window[1] >= limit:
            return window[0] + QUOTA_WINDOW - now
        window = (window[0], window[1] + 1)
        if token:
            self.token_window = window
        else:
            self.window = window
        return None

    def record(self, request: Request, route: str, status: int) -> None:
        self.request_log.append({"method": request.method, "path": request.url.path,
                                 "query": request.url.query, "status": status})
        self.stats["total"] += 1
        for key, bucket in ((str(status), "by_status"), (f"{request.method} {route}", "by_route")):
            self.stats[bucket][key] = self.stats[bucket].get(key, 0) + 1
        if status == 429:
            self.stats["throttled"] += 1

    # ---- chart of accounts
    def combinations(self) -> list[dict]:
        values = self.lookups["values"]
        rows = []
        for combo in itertools.product(*(sorted(values[s]) for s in CHART)):
            text = "-".join(combo)
            cid = self.combination_ids.setdefault(text, 10000 + len(self.combination_ids))
            row = {"_CODE_COMBINATION_ID": cid, "_CHART_OF_ACCOUNTS_ID": 101,
                   "EnabledFlag": "N" if text in self.lookups["disabled"] else "Y",
                   "AccountType": "R", "StartDateActive": None, "EndDateActive": None}
            row.update({f"Segment{i + 1}": v for i, v in enumerate(combo)})
            rows.append(row)
        return rows

    def combination_valid(self, text: str) -> bool:
        parts = str(text).split("-")
        values = self.lookups["values"]
        return (len(parts) == len(CHART) and text not in self.lookups["disabled"]
                and all(p in values[s] for p, s in zip(parts, CHART)))

    # ---- seeding helpers
    def add_customer(self, name: str, email: str = "", source_reference: str = "") -> dict:
        party = self.create_party({"OrganizationName": name, "EmailAddress": email or None,
                                   "SourceSystem": "WEBSTORE" if source_reference else None,
                                   "SourceSystemReferenceValue": source_reference or None,
                                   "PrimaryAddress": [{"Country": "US"}]})
        site = party["PrimaryAddress"][0]["AddressId"]
        return self.create_account(party["PartyId"], name, site)

    def create_party(self, body: dict) -> dict:
        party_id = self.next_id()
        party = {"PartyId": party_id, "PartyNumber": f"CDRM_{party_id}",
                 "OrganizationName": body["OrganizationName"], "Type": "ZCA_CUSTOMER",
                 "EmailAddress": body.get("EmailAddress"), "PhoneNumber": body.get("PhoneNumber"),
                 "SourceSystem": body.get("SourceSystem"),
                 "SourceSystemReferenceValue": body.get("SourceSystemReferenceValue"),
                 "CreationDate": now_iso(), "LastUpdateDate": now_iso(), "PrimaryAddress": []}
        for address in body.get("PrimaryAddress") or []:
            self.add_address(party, address)
        self.parties[party["PartyNumber"]] = party
        return party

    def add_address(self, party: dict, address: dict) -> dict:
        address_id = self.next_id()
        row = {"AddressId": address_id, "AddressNumber": f"CDRM_{address_id}",
               **{k: address.get(k) for k in ("Address1", "Address2", "City", "State",
                                              "PostalCode", "Country")}}
        party["PrimaryAddress"].append(row)
        return row

    def create_account(self, party_id: int, name: str, party_site_id: int) -> dict:
        account_id = self.next_id()
        number = str(10000 + len(self.accounts) + 1)
        site_id, use_id = self.next_id(), self.next_id()
        account = {"AccountId": account_id, "AccountNumber": number, "CustomerId": party_id,
                   "CustomerName": name, "sites": [{
                       "CustomerAccountSiteId": site_id, "PartySiteId": party_site_id,
                       "SiteNumber": str(site_id), "uses": [{"SiteUseId": use_id,
                                                              "SiteUseCode": "BILL_TO",
                                                              "PrimaryFlag": True}]}]}
        self.accounts[account_id] = account
        return account

    def account_by_number(self, number: str) -> dict | None:
        return next((a for a in self.accounts.values() if a["AccountNumber"] == number), None)

    def party_by_id(self, party_id: Any) -> dict | None:
        return next((p for p in self.parties.values() if str(p["PartyId"]) == str(party_id)), None)

    def find_installment(self, installment_id: Any) -> tuple[dict, dict] | None:
        for inv in self.invoices.values():
            for inst in inv["receivablesInvoiceInstallments"]:
                if str(inst["InstallmentId"]) == str(installment_id):
                    return inv, inst
        return None

    def apply(self, invoice: dict, installment: dict, amount: Decimal, kind: str,
              source: dict) -> dict:
        cur = invoice["InvoiceCurrencyCode"]
        installment["InstallmentBalanceDue"] = money(installment["InstallmentBalanceDue"] - amount, cur)
        installment["AmountPaid"] = money(installment["AmountPaid"] + amount, cur)
        installment["InstallmentStatus"] = "Closed" if installment["InstallmentBalanceDue"] == 0 else "Open"
        invoice["InvoiceBalanceAmount"] = money(invoice["InvoiceBalanceAmount"] - amount, cur)
        invoice["LastUpdateDate"] = now_iso()
        app = {"ApplicationId": self.next_id(), "Kind": kind, "ApplicationAmount": amount,
               "ApplicationDate": date.today().isoformat(),
               "ReferenceTransactionId": invoice["CustomerTransactionId"],
               "ReferenceTransactionNumber": invoice["TransactionNumber"],
               "ReferenceInstallmentId": installment["InstallmentId"],
               "SourceId": source.get("CustomerTransactionId") or source.get("StandardReceiptId")}
        self.applications.append(app)
        return app

    def documents(self) -> list[dict]:
        out = []
        for inv in self.invoices.values():
            out.append({"kind": "invoice", "external_ref": inv["TransactionNumber"],
                        "id": inv["CustomerTransactionId"], "type": inv["TransactionType"],
                        "amount": inv["EnteredAmount"], "balance": inv["InvoiceBalanceAmount"],
                        "currency": inv["InvoiceCurrencyCode"], "status": inv["InvoiceStatus"],
                        "customer": inv["BillToCustomerNumber"]})
        for memo in self.memos.values():
            out.append({"kind": "credit_memo", "external_ref": memo["TransactionNumber"],
                        "id": memo["CustomerTransactionId"], "type": memo["TransactionType"],
                        "amount": memo["EnteredAmount"], "balance": memo["TransactionBalanceDue"],
                        "currency": memo["CreditMemoCurrency"], "status": memo["CreditMemoStatus"],
                        "customer": memo["BillToCustomerNumber"]})
        for rec in self.receipts.values():
            out.append({"kind": "receipt", "external_ref": rec["ReceiptNumber"],
                        "id": rec["StandardReceiptId"], "type": "Standard Receipt",
                        "amount": rec["Amount"], "balance": rec["UnappliedAmount"],
                        "currency": rec["Currency"], "status": rec["Status"],
                        "customer": rec.get("CustomerAccountNumber")})
        return out

    def automatch(self) -> int:
        applied = 0
        for rec in self.receipts.values():
            for ref in rec["remittanceReferences"]:
                if rec["UnappliedAmount"] <= 0 or ref.get("ReceiptMatchBy") != "Transaction Number":
                    continue
                inv = next((i for i in self.invoices.values()
                            if i["TransactionNumber"] == ref.get("ReferenceNumber")
                            and i["InvoiceCurrencyCode"] == rec["Currency"]
                            and i["InvoiceStatus"] == "Complete"), None)
                if inv is None:
                    continue
                for inst in inv["receivablesInvoiceInstallments"]:
                    wanted = to_amount(ref.get("ReferenceAmount") or rec["UnappliedAmount"], "")
                    amount = min(wanted, rec["UnappliedAmount"], inst["InstallmentBalanceDue"])
                    if amount > 0:
                        self.apply(inv, inst, amount, "receipt", rec)
                        _receipt_applied(rec, amount)
                        applied += 1
        return applied


def _receipt_applied(rec: dict, amount: Decimal) -> None:
    rec["UnappliedAmount"] = money(rec["UnappliedAmount"] - amount, rec["Currency"])
    rec["Status"] = "Applied" if rec["UnappliedAmount"] == 0 else "Unapplied"
    rec["LastUpdateDate"] = now_iso()


# --------------------------------------------------------------------------- resource shapes

INVOICE_FIELDS = {
    "BusinessUnit", "TransactionSource", "TransactionType", "TransactionNumber", "TransactionDate",
    "AccountingDate", "BillToCustomerNumber", "BillToCustomerName", "BillToSite",
    "ShipToCustomerName", "ShipToCustomerNumber", "ShipToSite", "InvoiceCurrencyCode",
    "PaymentTerms", "DueDate", "BillingDate", "Comments", "InternalNotes", "PurchaseOrder",
    "StructuredPaymentReference", "ConversionRateType", "ConversionRate", "ConversionDate",
    "AllowCompletion", "InvoiceStatus", "receivablesInvoiceLines",
    "receivablesInvoiceDistributions"}
INVOICE_LINE_FIELDS = {
    "LineNumber", "Description", "ItemNumber", "MemoLine", "Quantity", "UnitSellingPrice",
    "LineAmount", "UnitOfMeasure", "TaxClassificationCode", "SalesOrder", "AllocatedFreightAmount",
    "AccountingRule", "AccountingRuleDuration", "RuleStartDate", "RuleEndDate",
    "receivablesInvoiceLineTaxLines"}
TAX_LINE_FIELDS = {"TaxRegimeCode", "TaxRateCode", "TaxAmount", "Tax", "TaxStatusCode",
                   "TaxJurisdictionCode", "TaxRate", "TaxableAmount"}
INVOICE_DIST_FIELDS = {"AccountClass", "AccountCombination", "Amount", "Percent", "AccountedAmount",
                       "InvoiceLineNumber", "DetailedTaxLineNumber", "Comments"}
MEMO_FIELDS = {
    "BusinessUnit", "TransactionSource", "TransactionType", "TransactionNumber", "TransactionDate",
    "AccountingDate", "BillToCustomerNumber", "BillToCustomerName", "BillToSite",
    "ShipToCustomerName", "ShipToCustomerNumber", "ShipToCustomerSite", "ShipToSite",
    "CreditMemoCurrency", "CreditReason", "CreditMemoComments", "FreightCreditAmount",
    "GenerateBill", "ConversionRateType", "ConversionRate", "ConversionDate",
    "receivablesCreditMemoLines", "receivablesCreditMemoDistributions"}
MEMO_LINE_FIELDS = {
    "LineNumber", "LineDescription", "ItemNumber", "MemoLine", "LineQuantityCredit",
    "UnitSellingPrice", "LineAmountCredit", "UnitOfMeasure", "LineCreditReason",
    "LineFreightCreditAmount", "TaxClassificationCode", "receivablesCreditMemoLineTaxLines"}
MEMO_DIST_FIELDS = {"CreditMemoLineNumber", "AccountClass", "AccountCombination", "Amount",
                    "Percent", "AccountedAmount", "DetailedTaxLineNumber", "Comments"}
RECEIPT_FIELDS = {
    "ReceiptNumber", "ReceiptMethod", "ReceiptDate", "AccountingDate", "BusinessUnit", "Amount",
    "Currency", "RemittanceBankAccountNumber", "CustomerAccountNumber", "CustomerName",
    "CustomerSite", "Comments", "ConversionRateType", "ConversionRate", "ConversionDate",
    "MaturityDate", "StructuredPaymentReference", "CreditCardTokenNumber", "remittanceReferences"}
REMITTANCE_FIELDS = {"ReceiptMatchBy", "ReferenceNumber", "ReferenceAmount"}
PARTY_FIELDS = {"OrganizationName", "Type", "EmailAddress", "PhoneNumber", "SourceSystem",
                "SourceSystemReferenceValue", "PrimaryAddress", "PartyNumber"}
ADDRESS_FIELDS = {"Address1", "Address2", "Address3", "City", "State", "PostalCode", "Country",
                  "County", "Province"}
ACCOUNT_CLASSES = {"Revenue", "Receivable", "Tax", "Freight", "UnearnedRevenue",
                   "UnbilledReceivable"}


def _check_fields(body: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(body, dict):
        raise bad(f"The payload of {where} must be a JSON object.", where)
    for key in body:
        if key not in allowed:
            raise bad(f"The attribute {key} isn't valid for the resource {where}.", f"{where}/{key}")
    return body


def _text(body: dict, name: str, where: str, *, required: bool = False, max_len: int = 0) -> str | None:
    value = body.get(name)
    if value in (None, ""):
        if required:
            raise bad(f"The attribute {name} is required.", f"{where}/{name}")
        return None
    value = str(value)
    if max_len and len(value) > max_len:
        raise bad(f"The value of the attribute {name} exceeds the maximum length of {max_len}.",
                  f"{where}/{name}")
    return value


# --------------------------------------------------------------------------- business logic

class Receivables:
    def __init__(self, state: OracleState) -> None:
        self.state = state

    def _bill_to(self, body: dict, where: str) -> dict:
        number, name = body.get("BillToCustomerNumber"), body.get("BillToCustomerName")
        account = None
        if number:
            account = self.state.account_by_number(str(number))
        elif name:
            account = next((a for a in self.state.accounts.values() if a["CustomerName"] == name), None)
        else:
            raise bad("Either BillToCustomerNumber or BillToCustomerName is required.",
                      f"{where}/BillToCustomerNumber")
        if account is None:
            raise bad(f"The bill-to customer {number or name} doesn't exist.",
                      f"{where}/BillToCustomerNumber")
        sites = [s for s in account["sites"] if any(u["SiteUseCode"] == "BILL_TO" for u in s["uses"])]
        site = body.get("BillToSite")
        if site and not any(s["SiteNumber"] == str(site) for s in sites):
            raise bad(f"The bill-to site {site} doesn't belong to customer {account['AccountNumber']}.",
                      f"{where}/BillToSite")
        if not site and not any(u.get("PrimaryFlag") for s in sites for u in s["uses"]):
            raise bad(f"Customer {account['AccountNumber']} has no primary bill-to site; "
                      f"send BillToSite.", f"{where}/BillToSite")
        return account

    def _header(self, body: dict, where: str, doc_class: str, docs: dict[int, dict]) -> dict:
        lk = self.state.lookups
        bu = _text(body, "BusinessUnit", where, required=True, max_len=240)
        if bu not in lk["business_units"]:
            raise bad(f"The business unit {bu} doesn't exist.", f"{where}/BusinessUnit")
        source = _text(body, "TransactionSource", where, required=True, max_len=50)
        if source not in lk["sources"]:
            raise bad(f"The transaction source {source} doesn't exist for business unit {bu}.",
                      f"{where}/TransactionSource")
        ttype = _text(body, "TransactionType", where, required=True, max_len=20)
        if lk["types"].get(ttype) != doc_class:
            raise bad(f"The transaction type {ttype} isn't valid for this transaction.",
                      f"{where}/TransactionType")
        number = _text(body, "TransactionNumber", where, max_len=20)
        if lk["sources"][source] == "automatic":
            number = str(self.state.next_id())
        elif number is None:
            raise bad(f"The transaction source {source} uses manual numbering: "
                      f"TransactionNumber is required.", f"{where}/TransactionNumber")
        if any(d["TransactionNumber"] == number and d["BusinessUnit"] == bu for d in docs.values()):
            raise bad(f"The transaction number {number} already exists for transaction source "
                      f"{source}.", f"{where}/TransactionNumber")
        trx_date = to_date(_text(body, "TransactionDate", where, required=True), f"{where}/TransactionDate")
        account = self._bill_to(body, where)
        return {"BusinessUnit": bu, "TransactionSource": source, "TransactionType": ttype,
                "TransactionNumber": number, "TransactionDate": trx_date,
                "AccountingDate": to_date(body.get("AccountingDate") or trx_date, f"{where}/AccountingDate"),
                "BillToCustomerNumber": account["AccountNumber"],
                "BillToCustomerName": account["CustomerName"],
                "BillToSite": body.get("BillToSite") or account["sites"][0]["SiteNumber"],
                "CustomerTransactionId": self.state.next_id(), "CreationDate": now_iso(),
                "LastUpdateDate": now_iso()}

    def _lines(self, rows: Any, where: str, currency: str, sign: int, names: dict[str, str]
               ) -> list[dict]:
        if not isinstance(rows, list) or not rows:
            raise bad("At least one transaction line is required.", where)
        lk = self.state.lookups
        out, seen = [], set()
        allowed = INVOICE_LINE_FIELDS if sign > 0 else MEMO_LINE_FIELDS
        for i, row in enumerate(rows):
            path = f"{where}/{i}"
            row = _check_fields(row, allowed, path)
            n = row.get("LineNumber", i + 1)
            if not isinstance(n, int) or n in seen:
                raise bad(f"The line number {n} isn't valid or is used twice.", f"{path}/LineNumber")
            seen.add(n)
            item = _text(row, "ItemNumber", path, max_len=300)
            if item is not None and item not in lk["items"]:
                raise bad(f"The item {item} isn't valid.", f"{path}/ItemNumber",
                          code="AR_INVALID_INVENTORY_ITEM")
            text = _text(row, names["text"], path, max_len=240)
            if item is None and text is None and row.get("MemoLine") is None:
                raise bad(f"The line {n} needs an item, a memo line or a {names['text']}.", path)
            qty = to_amount(row.get(names["qty"], 1), f"{path}/{names['qty']}")
            unit = to_amount(row.get("UnitSellingPrice", 0), f"{path}/UnitSellingPrice")
            derived = money(qty * unit, currency)
            if row.get(names["amount"]) is not None:
                amount = to_amount(row[names["amount"]], f"{path}/{names['amount']}")
                if money(amount, currency) != amount or amount != derived:
                    raise bad(f"The line amount {amount} of line {n} doesn't equal the quantity "
                              f"times the unit selling price ({derived}).", f"{path}/{names['amount']}")
            else:
                amount = derived
            if sign < 0 and amount >= 0:
                raise bad(f"The amount of credit memo line {n} must be negative.",
                          f"{path}/{names['amount']}")
            if sign > 0 and amount < 0:
                raise bad(f"The amount of invoice line {n} can't be negative.",
                          f"{path}/{names['amount']}")
            code = _text(row, "TaxClassificationCode", path, max_len=30)
            if code is not None and code not in lk["tax_codes"]:
                raise bad(f"The tax classification code {code} isn't valid.",
                          f"{path}/TaxClassificationCode")
            taxes = self._tax_lines(row.get(names["taxes"]), f"{path}/{names['taxes']}", currency, sign)
            if not taxes and code is not None and lk["tax_codes"][code]["rate"]:
                taxes = [{"TaxRateCode": code, "TaxRegimeCode": lk["tax_codes"][code]["regime"],
                          "TaxAmount": money(amount * lk["tax_codes"][code]["rate"] / 100, currency)}]
            line = {"CustomerTransactionLineId": self.state.next_id(), "LineNumber": n,
                    names["text"]: text, "ItemNumber": item, "MemoLine": row.get("MemoLine"),
                    names["qty"]: qty, "UnitSellingPrice": unit, names["amount"]: amount,
                    "TaxClassificationCode": code, names["taxes"]: taxes}
            out.append(line)
        return out

    def _tax_lines(self, rows: Any, where: str, currency: str, sign: int) -> list[dict]:
        if rows is None:
            return []
        if not isinstance(rows, list):
            raise bad("Tax lines must be a list.", where)
        out = []
        for i, row in enumerate(rows):
            path = f"{where}/{i}"
            row = _check_fields(row, TAX_LINE_FIELDS, path)
            code = _text(row, "TaxRateCode", path, required=True, max_len=30)
            known = self.state.lookups["tax_codes"].get(code)
            if known is None:
                raise bad(f"The tax rate code {code} isn't valid.", f"{path}/TaxRateCode")
            regime = row.get("TaxRegimeCode")
            if regime is not None and regime != known["regime"]:
                raise bad(f"The tax regime {regime} isn't valid for tax rate code {code}.",
                          f"{path}/TaxRegimeCode")
            amount = to_amount(row.get("TaxAmount"), f"{path}/TaxAmount")
            if money(amount, currency) != amount or (amount * sign) < 0:
                raise bad(f"The tax amount {amount} isn't valid for this transaction.",
                          f"{path}/TaxAmount")
            out.append({"TaxLineId": self.state.next_id(), "TaxRegimeCode": known["regime"],
                        "TaxRateCode": code, "TaxAmount": amount})
        return out

    def _distributions(self, rows: Any, lines: list[dict], where: str, line_field: str,
                       amount_field: str, allowed: set[str], currency: str) -> list[dict]:
        if rows is None:
            return []
        if not isinstance(rows, list):
            raise bad("Distributions must be a list.", where)
        by_number = {ln["LineNumber"]: ln for ln in lines}
        out, revenue = [], {}
        for i, row in enumerate(rows):
            path = f"{where}/{i}"
            row = _check_fields(row, allowed, path)
            klass = row.get("AccountClass")
            if klass not in ACCOUNT_CLASSES:
                raise bad(f"The account class {klass} isn't valid.", f"{path}/AccountClass")
            combo = _text(row, "AccountCombination", path, required=True)
            if not self.state.combination_valid(combo):
                raise bad(f"The account combination {combo} isn't valid or is disabled.",
                          f"{path}/AccountCombination")
            n = row.get(line_field)
            if klass != "Receivable" and n not in by_number:
                raise bad(f"The distribution refers to line {n}, which doesn't exist.",
                          f"{path}/{line_field}")
            line_amount = by_number[n][amount_field] if n in by_number else ZERO
            if row.get("Amount") is not None:
                amount = to_amount(row["Amount"], f"{path}/Amount")
                percent = (amount / line_amount * 100) if line_amount else Decimal(100)
            elif row.get("Percent") is not None:
                percent = to_amount(row["Percent"], f"{path}/Percent")
                amount = money(line_amount * percent / 100, currency)
            else:
                raise bad("A distribution needs an Amount or a Percent.", path)
            if klass == "Revenue":
                revenue[n] = revenue.get(n, ZERO) + percent
            out.append({"DistributionId": self.state.next_id(), line_field: n,
                        "AccountClass": klass, "AccountCombination": combo, "Amount": amount,
                        "Percent": percent})
        for n, total in revenue.items():
            if total.quantize(Decimal("0.01")) != 100:
                raise bad(f"The revenue distributions of line {n} add up to {total} percent, "
                          f"not 100.", where)
        return out

    def create_invoice(self, body: Any) -> dict:
        where = "receivablesInvoices"
        body = _check_fields(body, INVOICE_FIELDS, where)
        inv = self._header(body, where, "INV", self.state.invoices)
        currency = _text(body, "InvoiceCurrencyCode", where, required=True, max_len=15)
        if not re.fullmatch(r"[A-Z]{3}", currency or ""):
            raise bad(f"The currency {currency} isn't valid.", f"{where}/InvoiceCurrencyCode")
        terms = _text(body, "PaymentTerms", where, max_len=15)
        if terms is not None and terms not in self.state.lookups["terms"]:
            raise bad(f"The payment terms {terms} don't exist.", f"{where}/PaymentTerms")
        lines = self._lines(body.get("receivablesInvoiceLines"), f"{where}/receivablesInvoiceLines",
                            currency, 1, {"text": "Description", "qty": "Quantity",
                                          "amount": "LineAmount",
                                          "taxes": "receivablesInvoiceLineTaxLines"})
        dists = self._distributions(body.get("receivablesInvoiceDistributions"), lines,
                                    f"{where}/receivablesInvoiceDistributions", "InvoiceLineNumber",
                                    "LineAmount", INVOICE_DIST_FIELDS, currency)
        total = money(sum((ln["LineAmount"] + sum((t["TaxAmount"] for t in ln["receivablesInvoiceLineTaxLines"]), ZERO)
                           for ln in lines), ZERO), currency)
        complete = body.get("AllowCompletion") == "Y" or body.get("InvoiceStatus") == "Complete"
        inv.update({
            "InvoiceCurrencyCode": currency, "PaymentTerms": terms,
            "DueDate": body.get("DueDate") or inv["TransactionDate"],
            "PurchaseOrder": _text(body, "PurchaseOrder", where, max_len=50),
            "Comments": _text(body, "Comments", where, max_len=1760),
            "InvoiceStatus": "Complete" if complete else "Incomplete",
            "EnteredAmount": total, "InvoiceBalanceAmount": total,
            "receivablesInvoiceLines": lines, "receivablesInvoiceDistributions": dists,
            "receivablesInvoiceInstallments": [{
                "InstallmentId": self.state.next_id(), "InstallmentSequenceNumber": 1,
                "InstallmentDueDate": body.get("DueDate") or inv["TransactionDate"],
                "OriginalAmount": total, "InstallmentBalanceDue": total, "AmountPaid": ZERO,
                "InstallmentStatus": "Open"}] if complete else []})
        self.state.invoices[inv["CustomerTransactionId"]] = inv
        return inv

    def create_memo(self, body: Any) -> dict:
        where = "receivablesCreditMemos"
        body = _check_fields(body, MEMO_FIELDS, where)
        memo = self._header(body, where, "CM", self.state.memos)
        currency = _text(body, "CreditMemoCurrency", where, required=True, max_len=15)
        if not re.fullmatch(r"[A-Z]{3}", currency or ""):
            raise bad(f"The currency {currency} isn't valid.", f"{where}/CreditMemoCurrency")
        reason = _text(body, "CreditReason", where)
        if reason is not None and reason not in self.state.lookups["credit_reasons"]:
            raise bad(f"The credit memo reason {reason} isn't a valid value.", f"{where}/CreditReason")
        lines = self._lines(body.get("receivablesCreditMemoLines"),
                            f"{where}/receivablesCreditMemoLines", currency, -1,
                            {"text": "LineDescription", "qty": "LineQuantityCredit",
                             "amount": "LineAmountCredit",
                             "taxes": "receivablesCreditMemoLineTaxLines"})
        dists = self._distributions(body.get("receivablesCreditMemoDistributions"), lines,
                                    f"{where}/receivablesCreditMemoDistributions",
                                    "CreditMemoLineNumber", "LineAmountCredit", MEMO_DIST_FIELDS,
                                    currency)
        total = money(sum((ln["LineAmountCredit"] + sum((t["TaxAmount"] for t in ln["receivablesCreditMemoLineTaxLines"]), ZERO)
                           for ln in lines), ZERO), currency)
        memo.update({"CreditMemoCurrency": currency, "CreditReason": reason,
                     "CreditMemoComments": _text(body, "CreditMemoComments", where, max_len=1760),
                     "CreditMemoStatus": "Complete", "EnteredAmount": total,
                     "TransactionBalanceDue": total, "receivablesCreditMemoLines": lines,
                     "receivablesCreditMemoDistributions": dists})
        self.state.memos[memo["CustomerTransactionId"]] = memo
        return memo

    def create_receipt(self, body: Any) -> dict:
        where = "standardReceipts"
        body = _check_fields(body, RECEIPT_FIELDS, where)
        lk = self.state.lookups
        number = _text(body, "ReceiptNumber", where, required=True, max_len=30)
        method_name = _text(body, "ReceiptMethod", where, required=True, max_len=30)
        method = lk["receipt_methods"].get(method_name)
        if method is None:
            raise bad(f"The receipt method {method_name} doesn't exist.", f"{where}/ReceiptMethod")
        bu = _text(body, "BusinessUnit", where, required=True)
        if bu not in lk["business_units"]:
            raise bad(f"The business unit {bu} doesn't exist.", f"{where}/BusinessUnit")
        if any(r["ReceiptNumber"] == number and r["ReceiptMethod"] == method_name
               for r in self.state.receipts.values()):
            raise bad(f"The receipt number {number} already exists for receipt method "
                      f"{method_name}.", f"{where}/ReceiptNumber")
        currency = _text(body, "Currency", where, required=True)
        amount = to_amount(body.get("Amount"), f"{where}/Amount")
        if amount <= 0 or money(amount, currency) != amount:
            raise bad(f"The receipt amount {amount} isn't valid.", f"{where}/Amount")
        bank = body.get("RemittanceBankAccountNumber") or method["bank_account"]
        if bank != method["bank_account"]:
            raise bad(f"The remittance bank account {bank} isn't assigned to receipt method "
                      f"{method_name}.", f"{where}/RemittanceBankAccountNumber")
        customer = body.get("CustomerAccountNumber")
        if customer is not None and self.state.account_by_number(str(customer)) is None:
            raise bad(f"The customer account {customer} doesn't exist.",
                      f"{where}/CustomerAccountNumber")
        refs = []
        for i, ref in enumerate(body.get("remittanceReferences") or []):
            ref = _check_fields(ref, REMITTANCE_FIELDS, f"{where}/remittanceReferences/{i}")
            refs.append({"RemittanceReferenceId": self.state.next_id(), **ref})
        day = to_date(_text(body, "ReceiptDate", where, required=True), f"{where}/ReceiptDate")
        rec = {"StandardReceiptId": self.state.next_id(), "ReceiptNumber": number,
               "ReceiptMethod": method_name, "ReceiptDate": day,
               "AccountingDate": to_date(body.get("AccountingDate") or day, f"{where}/AccountingDate"),
               "BusinessUnit": bu, "Amount": amount, "Currency": currency,
               "RemittanceBankAccountNumber": bank, "CustomerAccountNumber": customer,
               "Comments": body.get("Comments"), "State": "Confirmed", "Status": "Unapplied",
               "UnappliedAmount": amount, "AccountedAmount": amount, "CreationDate": now_iso(),
               "LastUpdateDate": now_iso(), "remittanceReferences": refs}
        self.state.receipts[rec["StandardReceiptId"]] = rec
        return rec

    def open_installment(self, installment_id: Any, currency: str, customer: str | None,
                         where: str) -> tuple[dict, dict]:
        found = self.state.find_installment(installment_id)
        if found is None:
            raise bad(f"The payment schedule {installment_id} doesn't exist.", where)
        inv, inst = found
        if inv["InvoiceStatus"] != "Complete" or inst["InstallmentBalanceDue"] <= 0:
            raise bad(f"The payment schedule {installment_id} of transaction "
                      f"{inv['TransactionNumber']} isn't open.", where)
        if inv["InvoiceCurrencyCode"] != currency:
            raise bad(f"The transaction {inv['TransactionNumber']} is in "
                      f"{inv['InvoiceCurrencyCode']}, not {currency}.", where)
        if customer is not None and inv["BillToCustomerNumber"] != customer:
            raise bad(f"The transaction {inv['TransactionNumber']} belongs to another customer.",
                      where)
        return inv, inst

    def apply_receipt(self, rec: dict, body: Any) -> dict:
        where = "applyReceipt"
        if not isinstance(body, dict) or "appliedPaymentScheduleId" not in body:
            raise bad("The action parameter appliedPaymentScheduleId is required.", where)
        inv, inst = self.open_installment(body["appliedPaymentScheduleId"], rec["Currency"],
                                          rec.get("CustomerAccountNumber"), where)
        amount = (to_amount(body["amountApplied"], f"{where}/amountApplied")
                  if body.get("amountApplied") is not None
                  else min(rec["UnappliedAmount"], inst["InstallmentBalanceDue"]))
        if amount <= 0 or amount > rec["UnappliedAmount"]:
            raise bad(f"The amount applied {amount} exceeds the receipt's unapplied amount "
                      f"{rec['UnappliedAmount']}.", f"{where}/amountApplied")
        if amount > inst["InstallmentBalanceDue"]:
            raise bad(f"The amount applied {amount} exceeds the balance "
                      f"{inst['InstallmentBalanceDue']} of transaction {inv['TransactionNumber']}.",
                      f"{where}/amountApplied")
        self.state.apply(inv, inst, amount, "receipt", rec)
        _receipt_applied(rec, amount)
        return {"result": "SUCCESS"}


# --------------------------------------------------------------------------- rendering

CHILDREN = {
    "receivablesInvoices": ("CustomerTransactionId", ("receivablesInvoiceLines",
                            "receivablesInvoiceDistributions", "receivablesInvoiceInstallments")),
    "receivablesCreditMemos": ("CustomerTransactionId", ("receivablesCreditMemoLines",
                               "receivablesCreditMemoDistributions")),
    "standardReceipts": ("StandardReceiptId", ("remittanceReferences",)),
    "accounts": ("PartyNumber", ("PrimaryAddress",)),
    "receivablesCustomerAccountActivities": ("AccountId", ()),
    "accountCombinationsLOV": ("_CODE_COMBINATION_ID", ()),
    "receiptMethods": ("ReceiptMethodId", ()),
}
FAMILIES = {"fscmRestApi": {"receivablesInvoices", "receivablesCreditMemos", "standardReceipts",
                            "receivablesCustomerAccountActivities", "accountCombinationsLOV",
                            "receiptMethods"},
            "crmRestApi": {"accounts"}}
CHILD_KEYS = {"receivablesInvoiceLines": "CustomerTransactionLineId",
              "receivablesInvoiceDistributions": "DistributionId",
              "receivablesInvoiceInstallments": "InstallmentId",
              "receivablesCreditMemoLines": "CustomerTransactionLineId",
              "receivablesCreditMemoDistributions": "DistributionId",
              "remittanceReferences": "RemittanceReferenceId", "PrimaryAddress": "AddressNumber",
              "receivablesInvoiceLineTaxLines": "TaxLineId",
              "receivablesCreditMemoLineTaxLines": "TaxLineId"}
_LISTS = {"receivablesInvoiceLines", "receivablesInvoiceDistributions", "receivablesCreditMemoLines",
          "receivablesCreditMemoDistributions", "remittanceReferences", "PrimaryAddress"}
QUERYABLE = {
    "receivablesInvoices": (INVOICE_FIELDS - _LISTS) | {
        "CustomerTransactionId", "EnteredAmount", "InvoiceBalanceAmount", "CreationDate",
        "LastUpdateDate"},
    "receivablesCreditMemos": (MEMO_FIELDS - _LISTS) | {
        "CustomerTransactionId", "EnteredAmount", "TransactionBalanceDue", "CreditMemoStatus",
        "CreationDate", "LastUpdateDate"},
    "standardReceipts": (RECEIPT_FIELDS - _LISTS) | {
        "StandardReceiptId", "State", "Status", "UnappliedAmount", "AccountedAmount",
        "CreationDate", "LastUpdateDate"},
    "accounts": (PARTY_FIELDS - _LISTS) | {"PartyId", "CreationDate", "LastUpdateDate"},
    "receivablesCustomerAccountActivities": {"AccountId", "AccountNumber", "CustomerId",
                                             "CustomerName", "TotalOpenReceivablesForAccount"},
    "accountCombinationsLOV": {"_CODE_COMBINATION_ID", "_CHART_OF_ACCOUNTS_ID", "EnabledFlag",
                               "AccountType", "StartDateActive", "EndDateActive",
                               *(f"Segment{i}" for i in range(1, 31))},
    "receiptMethods": {"ReceiptMethodId", "Name", "ReceiptClass", "BankAccountNumber",
                       "StartDate", "EndDate"},
}
ID_FIELDS = {"CustomerTransactionId", "StandardReceiptId", "PartyId", "AccountId", "CustomerId",
             "InstallmentId", "CustomerTransactionLineId", "DistributionId", "AddressId",
             "RemittanceReferenceId", "TaxLineId", "ReceiptMethodId", "_CODE_COMBINATION_ID"}


@dataclass
class View:
    version: int
    base: str  # e.g. https://host/fscmRestApi/resources/11.13.18.05
    only_data: bool = False
    fields: list[str] | None = None
    expand: set[str] = field(default_factory=set)


def scalars(record: dict) -> dict:
    return {k: v for k, v in record.items() if not isinstance(v, list) and k not in ("sites",)}


def render(record: dict, href: str, view: View, children: tuple[str, ...] = ()) -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, list) or key == "sites":
            continue
        if view.fields is not None and key not in view.fields:
            continue
        out[key] = str(value) if view.version >= 9 and key in ID_FIELDS and value is not None else value
    for child in children:
        if child in view.expand or "all" in view.expand:
            rows = [render(r, f"{href}/child/{child}/{r.get(CHILD_KEYS.get(child, ''), '')}",
                           View(view.version, view.base, view.only_data),
                           tuple(k for k, v in r.items() if isinstance(v, list)))
                    for r in record.get(child, [])]
            out[child] = ({"items": rows, "count": len(rows), "hasMore": False, "limit": len(rows),
                           "offset": 0} if view.version >= 3 else rows)
    if not view.only_data:
        links = [{"rel": "self", "href": href, "name": href.rsplit("/", 2)[-2], "kind": "item"},
                 {"rel": "canonical", "href": href, "kind": "item"}]
        links += [{"rel": "child", "href": f"{href}/child/{c}", "name": c, "kind": "collection"}
                  for c in children]
        out["links"] = links
    return out


# --------------------------------------------------------------------------- HTTP: the API

class Api:
    def __init__(self, state: OracleState, faults: Faults, credentials: dict[str, str]) -> None:
        self.state, self.faults, self.credentials = state, faults, credentials
        self.ar = Receivables(state)
        self._batching = False

    # ---- guard
    def _version(self, request: Request) -> int:
        raw = request.headers.get("REST-Framework-Version", "1").strip()
        if raw not in FRAMEWORK_VERSIONS:
            raise ApiError(400, f"The REST-Framework-Version {raw} isn't supported; allowed: "
                                f"{', '.join(FRAMEWORK_VERSIONS)}.")
        return int(raw)

    def _authenticated(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (self.credentials["username"], self.credentials["password"])
        if scheme.lower() == "bearer":
            expires = self.state.tokens.get(value.strip())
            return expires is not None and expires > time.time()
        return False

    async def guarded(self, request: Request, route: str, handler: Callable, *, soap: bool = False
                      ) -> Response:
        version = 1
        try:
            response = await self._fault()
            if response is None and not self._authenticated(request):
                response = PlainTextResponse("Unauthorized", status_code=401,
                                             headers={"WWW-Authenticate": 'Basic realm="Oracle"'})
            if response is None:
                wait = self.state.admit(self.state.settings.requests_per_minute)
                if wait is not None:
                    response = too_many(wait if self.state.settings.send_retry_after else None)
            if response is None:
                if not soap:
                    version = self._version(request)
                response = await handler(version)
        except ApiError as exc:
            response = error_response(exc, version)
        except SoapFault as exc:
            response = exc.response()
        self.state.record(request, route, response.status_code)
        return response

    async def _fault(self) -> Response | None:
        await self.faults.delay()
        if self.faults.expire_tokens:
            self.faults.expire_tokens = False
            self.state.tokens.clear()
        wait = self.faults.take_429()
        if wait is not None:
            return too_many(wait if self.state.settings.send_retry_after else None)
        status = self.faults.take_failure()
        if status is None:
            return None
        if status == 429:
            return too_many(self.faults.retry_after)
        return PlainTextResponse("Simulated failure.", status_code=status)

    def _committed(self, response: Response) -> Response:
        """A write that committed: its answer may be lost on the way back (a batch's as one)."""
        if self._batching:
            return response
        return lost_response() if self.faults.take_lost_commit() else response

    # ---- REST
    async def catalog(self, request: Request) -> Response:
        family, version = request.path_params["family"], request.path_params["version"]

        async def handler(v: int) -> Response:
            if version not in VERSIONS or family not in FAMILIES:
                raise ApiError(404, "The requested resource doesn't exist.")
            base = str(request.url).split("?")[0].rstrip("/")
            return JSON({"items": [{"name": r, "kind": "collection", "href": f"{base}/{r}"}
                                   for r in sorted(FAMILIES[family])],
                         "Resource-Versions": list(VERSIONS),
                         "REST-Framework-Versions": list(FRAMEWORK_VERSIONS),
                         "Default-REST-Framework-Version": "1"})
        return await self.guarded(request, f"{family}/", handler)

    async def resource(self, request: Request) -> Response:
        family, version = request.path_params["family"], request.path_params["version"]
        parts = [p for p in request.path_params["rest"].split("/") if p]
        route = parts[0] if parts else "-"

        async def handler(v: int) -> Response:
            return await self._serve(request, family, version, parts, v)
        return await self.guarded(request, route, handler)

    async def _serve(self, request: Request, family: str, version: str, parts: list[str],
                     v: int) -> Response:
        route = parts[0] if parts else "-"
        if version not in VERSIONS or family not in FAMILIES or route not in FAMILIES[family]:
            raise ApiError(404, f"The resource {route} doesn't exist.")
        base = f"{request.url.scheme}://{request.url.netloc}/{family}/resources/{version}"
        params = request.query_params
        view = View(v, base, params.get("onlyData") == "true",
                    params["fields"].split(",") if params.get("fields") else None,
                    set(filter(None, params.get("expand", "").split(","))))
        return await self.dispatch(request, route, parts[1:], view)

    async def batch(self, request: Request) -> Response:
        """``POST`` on the context root: the parts in order, in one transaction. A failing part
        undoes the others and is the only one in the answer, with its own status."""
        family, version = request.path_params["family"], request.path_params["version"]

        async def handler(v: int) -> Response:
            if version not in VERSIONS or family not in FAMILIES:
                raise ApiError(404, "The requested resource doesn't exist.")
            if not request.headers.get("content-type", "").startswith(BATCH_MEDIA_TYPE):
                raise ApiError(415, f"A batch needs Content-Type {BATCH_MEDIA_TYPE}.")
            body = await _json(request)
            parts = body.get("parts") if isinstance(body, dict) else None
            if not isinstance(parts, list) or not parts:
                raise bad("A batch request needs a non-empty array parts.", "parts")
            saved = self.state.snapshot()
            answered, wrote = [], False
            for part in parts:
                answer, status = await self._part(request, family, version, part, v)
                if status >= 400:
                    self.state.restore(saved)
                    return JSON({"parts": [answer]}, status_code=status)
                answered.append(answer)
                wrote |= part.get("operation") != "get"
            response = JSON({"parts": answered})
            return self._committed(response) if wrote else response
        return await self.guarded(request, "batch", handler)

    async def _part(self, request: Request, family: str, version: str, part: Any,
                    v: int) -> tuple[dict, int]:
        """One part served as the request it stands for, without faults or quota of its own."""
        if not isinstance(part, dict) or not all(isinstance(part.get(k), str)
                                                 for k in ("id", "path", "operation")):
            raise bad("Every part needs the strings id, path and operation.", "parts")
        method = BATCH_OPERATIONS.get(part["operation"])
        if method is None:
            raise bad(f"The operation {part['operation']} isn't valid in a batch.", "operation")
        path, _, query = part["path"].partition("?")
        if "/action/" in path:
            raise bad(f"The action {path.rsplit('/', 1)[-1]} isn't enabled for batch execution.")
        payload = dumps(part["payload"]).encode() if "payload" in part else b""
        prefix = f"/{family}/resources/{version}"
        headers = [(name, value) for name, value in request.scope["headers"]
                   if name not in (b"content-type", b"content-length")]
        scope = {**{key: value for key, value in request.scope.items() if key != "raw_path"},
                 "method": method, "path": prefix + path, "query_string": query.encode(),
                 "headers": headers + [(b"content-type", b"application/json")]}

        async def receive() -> dict:
            return {"type": "http.request", "body": payload, "more_body": False}

        try:
            self._batching = True
            response = await self._serve(Request(scope, receive), family, version,
                                         [p for p in path.split("/") if p], v)
        except ApiError as exc:
            response = error_response(exc, v)
        finally:
            self._batching = False
        content = response.body.decode() if response.body else ""
        try:
            answer_payload = json.loads(content, parse_float=Decimal) if content else None
        except ValueError:
            answer_payload = content
        return ({"id": part["id"], "path": part["path"], "operation": part["operation"],
                 "payload": answer_payload}, response.status_code)

    def records(self, resource: str) -> list[dict]:
        s = self.state
        if resource == "receivablesInvoices":
            return list(s.invoices.values())
        if resource == "receivablesCreditMemos":
            return list(s.memos.values())
        if resource == "standardReceipts":
            return list(s.receipts.values())
        if resource == "accounts":
            return list(s.parties.values())
        if resource == "accountCombinationsLOV":
            return s.combinations()
        if resource == "receiptMethods":
            return [{"ReceiptMethodId": m["id"], "Name": name, "ReceiptClass": "Manual",
                     "BankAccountNumber": m["bank_account"], "StartDate": "2000-01-01",
                     "EndDate": None} for name, m in s.lookups["receipt_methods"].items()]
        if resource == "receivablesCustomerAccountActivities":
            return [{"AccountId": a["AccountId"], "AccountNumber": a["AccountNumber"],
                     "CustomerId": a["CustomerId"], "CustomerName": a["CustomerName"],
                     "TotalOpenReceivablesForAccount": sum(
                         (i["InvoiceBalanceAmount"] for i in s.invoices.values()
                          if i["BillToCustomerNumber"] == a["AccountNumber"]), ZERO)}
                    for a in s.accounts.values()]
        return []

    async def dispatch(self, request: Request, resource: str, rest: list[str], view: View) -> Response:
        key_field, children = CHILDREN[resource]
        method = request.method
        href = f"{view.base}/{resource}"
        if not rest:
            if method == "GET":
                return self.collection(request, self.records(resource), view, href, key_field,
                                       children, QUERYABLE[resource])
            if method == "POST":
                return self._committed(await self.create(request, resource, view))
            raise ApiError(405, f"The method {method} isn't allowed on {resource}.")
        record = next((r for r in self.records(resource) if str(r.get(key_field)) == rest[0]), None)
        if record is None:
            raise ApiError(404, f"The {resource} item {rest[0]} doesn't exist.")
        href = f"{href}/{rest[0]}"
        if resource == "accounts" and method in ("PATCH", "POST"):
            return self._committed(await self.change_party(request, record, rest, view, href))
        if len(rest) == 1:
            if method == "GET":
                return JSON(render(record, href, view, children))
            if method == "DELETE" and resource == "receivablesInvoices":
                if record["InvoiceBalanceAmount"] != record["EnteredAmount"]:
                    raise bad(f"The transaction {record['TransactionNumber']} has applications "
                              f"and can't be deleted.")
                del self.state.invoices[record["CustomerTransactionId"]]
                return self._committed(Response(status_code=204))
            raise ApiError(405, f"The method {method} isn't allowed on a {resource} item.")
        if len(rest) >= 3 and rest[1] == "child" and rest[2] in children and method == "GET":
            rows = record.get(rest[2], [])
            ckey = CHILD_KEYS.get(rest[2], "")
            sub = tuple(k for r in rows[:1] for k, v in r.items() if isinstance(v, list))
            if len(rest) == 3:
                return self.collection(request, rows, view, f"{href}/child/{rest[2]}", ckey, sub)
            row = next((r for r in rows if str(r.get(ckey)) == rest[3]), None)
            if row is None:
                raise ApiError(404, f"The child item {rest[3]} doesn't exist.")
            return JSON(render(row, f"{href}/child/{rest[2]}/{rest[3]}", view, sub))
        if (len(rest) == 3 and rest[1] == "action" and method == "POST"
                and resource == "standardReceipts" and rest[2] == "applyReceipt"
                and self.state.settings.apply_receipt_action):
            if not request.headers.get("content-type", "").startswith("application/vnd.oracle.adf.action+json"):
                raise ApiError(415, "Actions need Content-Type application/vnd.oracle.adf.action+json.")
            return self._committed(JSON(self.ar.apply_receipt(record, await _json(request))))
        raise ApiError(404, f"The path {'/'.join(rest)} of {resource} doesn't exist.")

    def collection(self, request: Request, rows: list[dict], view: View, href: str, key_field: str,
                   children: tuple[str, ...], attributes: set[str] | None = None) -> Response:
        params = request.query_params
        attributes = (attributes or set()) | {k for r in rows for k in scalars(r)} | {key_field}
        if params.get("q"):
            pred = parse_q(params["q"], view.version, attributes | {key_field})
            rows = [r for r in rows if pred(r)]
        for spec in reversed([s for s in params.get("orderBy", "").split(",") if s]):
            name, _, direction = spec.partition(":")
            if name not in attributes:
                raise bad(f"The attribute {name} in orderBy isn't valid.", "orderBy")
            rows = sorted(rows, key=lambda r: (r.get(name) is None, str(r.get(name) or "")),
                          reverse=direction == "desc")
        try:
            limit = min(int(params.get("limit", PAGE_DEFAULT)), PAGE_MAX)
            offset = int(params.get("offset", 0))
        except ValueError:
            raise bad("limit and offset must be whole numbers.", "limit") from None
        if limit < 0 or offset < 0:
            raise bad("limit and offset can't be negative.", "limit")
        page = rows[offset:offset + limit]
        body: dict[str, Any] = {
            "items": [render(r, f"{href}/{r.get(key_field)}", view, children) for r in page],
            "count": len(page), "hasMore": offset + len(page) < len(rows), "limit": limit,
            "offset": offset}
        if params.get("totalResults") == "true":
            body["totalResults"] = len(rows)
        if not view.only_data:
            body["links"] = [{"rel": "self", "href": href, "name": href.rsplit("/", 1)[-1],
                              "kind": "collection"}]
        return JSON(body)

    async def create(self, request: Request, resource: str, view: View) -> Response:
        ctype = request.headers.get("content-type", "")
        if not (ctype.startswith("application/json") or ctype.startswith("application/vnd.oracle.adf.resourceitem+json")):
            raise ApiError(415, f"The media type {ctype or '(none)'} isn't supported.")
        body = await _json(request)
        if resource == "receivablesInvoices":
            record = self.ar.create_invoice(body)
            key = record["CustomerTransactionId"]
        elif resource == "receivablesCreditMemos":
            record = self.ar.create_memo(body)
            key = record["CustomerTransactionId"]
        elif resource == "standardReceipts":
            record = self.ar.create_receipt(body)
            key = record["StandardReceiptId"]
        elif resource == "accounts":
            record = self.create_party(body)
            key = record["PartyNumber"]
        else:
            raise ApiError(405, f"{resource} is read-only.")
        href = f"{view.base}/{resource}/{key}"
        children = CHILDREN[resource][1]
        full = View(view.version, view.base, False, None, set(children))
        return JSON(render(record, href, full, children), status_code=201,
                    headers={"Location": href})

    async def change_party(self, request: Request, party: dict, rest: list[str], view: View,
                           href: str) -> Response:
        """``PATCH accounts/{PartyNumber}``, ``POST …/child/PrimaryAddress`` and ``PATCH
        …/child/PrimaryAddress/{AddressNumber}``: only the attributes sent change."""
        ctype = request.headers.get("content-type", "")
        if not (ctype.startswith("application/json")
                or ctype.startswith("application/vnd.oracle.adf.resourceitem+json")):
            raise ApiError(415, f"The media type {ctype or '(none)'} isn't supported.")
        body = await _json(request)
        method = request.method
        if len(rest) == 1 and method == "PATCH":
            where = f"accounts/{rest[0]}"
            body = _check_fields(body, PARTY_FIELDS - {"PrimaryAddress", "PartyNumber"}, where)
            if "OrganizationName" in body:
                _text(body, "OrganizationName", where, required=True, max_len=360)
            source = body.get("SourceSystem", party.get("SourceSystem"))
            ref = body.get("SourceSystemReferenceValue", party.get("SourceSystemReferenceValue"))
            if ref is not None and ("SourceSystem" in body or "SourceSystemReferenceValue" in body):
                if source not in self.state.lookups["source_systems"]:
                    raise bad(f"The source system {source} isn't defined.", f"{where}/SourceSystem")
                if any(p is not party and p["SourceSystem"] == source
                       and p["SourceSystemReferenceValue"] == ref for p in self.state.parties.values()):
                    raise bad(f"The source system reference {source} {ref} already exists.",
                              f"{where}/SourceSystemReferenceValue")
            party.update(body)
            party["LastUpdateDate"] = now_iso()
            return JSON(render(party, href, view, ("PrimaryAddress",)))
        if len(rest) in (3, 4) and rest[1] == "child" and rest[2] == "PrimaryAddress":
            where = f"accounts/{rest[0]}/child/PrimaryAddress"
            body = _check_fields(body, ADDRESS_FIELDS, where)
            if len(rest) == 3 and method == "POST":
                _text(body, "Country", where, required=True)
                address = self.state.add_address(party, body)
                status = 201
            elif len(rest) == 4 and method == "PATCH":
                address = next((a for a in party["PrimaryAddress"] if a["AddressNumber"] == rest[3]), None)
                if address is None:
                    raise ApiError(404, f"The child item {rest[3]} doesn't exist.")
                if "Country" in body:
                    _text(body, "Country", where, required=True)
                address.update(body)
                status = 200
            else:
                raise ApiError(405, f"The method {method} isn't allowed on {where}.")
            party["LastUpdateDate"] = now_iso()
            return JSON(render(address, f"{href}/child/PrimaryAddress/{address['AddressNumber']}", view),
                        status_code=status)
        raise ApiError(405, f"The method {method} isn't allowed on {'/'.join(['accounts', *rest])}.")

    def create_party(self, body: Any) -> dict:
        where = "accounts"
        body = _check_fields(body, PARTY_FIELDS, where)
        _text(body, "OrganizationName", where, required=True, max_len=360)
        source, ref = body.get("SourceSystem"), body.get("SourceSystemReferenceValue")
        if ref is not None:
            if source not in self.state.lookups["source_systems"]:
                raise bad(f"The source system {source} isn't defined.", f"{where}/SourceSystem")
            if any(p["SourceSystem"] == source and p["SourceSystemReferenceValue"] == ref
                   for p in self.state.parties.values()):
                raise bad(f"The source system reference {source} {ref} already exists.",
                          f"{where}/SourceSystemReferenceValue")
        addresses = body.get("PrimaryAddress") or []
        if not isinstance(addresses, list):
            raise bad("PrimaryAddress must be a list.", f"{where}/PrimaryAddress")
        for i, address in enumerate(addresses):
            _check_fields(address, ADDRESS_FIELDS, f"{where}/PrimaryAddress/{i}")
            _text(address, "Country", f"{where}/PrimaryAddress/{i}", required=True)
        return self.state.create_party(body)

    # ---- SOAP
    async def soap(self, request: Request) -> Response:
        service = request.url.path.rsplit("/", 1)[-1]

        async def handler(_: int) -> Response:
            try:
                root = ElementTree.fromstring(await request.body())
            except ElementTree.ParseError:
                raise SoapFault("env:Client", "The request isn't a SOAP envelope.") from None
            body = _child(root, "Body")
            op = next(iter(body), None) if body is not None else None
            if op is None:
                raise SoapFault("env:Client", "The SOAP body is empty.")
            name = op.tag.rpartition("}")[2]
            if service == "CustomerAccountService" and name == "createCustomerAccount":
                return self._committed(self.create_customer_account(op))
            if service == "CreditMemoService" and name == "applyOnAccountCreditMemo":
                return self._committed(self.apply_memo(op))
            raise SoapFault("env:Client", f"The operation {name} isn't supported by {service}.")
        return await self.guarded(request, service, handler, soap=True)

    def create_customer_account(self, op: ElementTree.Element) -> Response:
        acct = _child(op, "customerAccount")
        if acct is None:
            raise SoapFault("env:Client", "customerAccount is required.")
        if _value(acct, "CreatedByModule") != "HZ_WS":
            raise SoapFault("env:Server", "JBO-HZ: CreatedByModule must be HZ_WS.")
        if _value(acct, "AccountNumber") and self.state.settings.automatic_account_numbers:
            raise SoapFault("env:Server", "HZ_ACCOUNT_NUMBER_AUTO_ON: account numbers are "
                                          "generated automatically; don't send AccountNumber.")
        party = self.state.party_by_id(_value(acct, "PartyId"))
        if party is None:
            raise SoapFault("env:Server", f"The party {_value(acct, 'PartyId')} doesn't exist.")
        site = _child(acct, "CustomerAccountSite")
        site_id = _value(site, "PartySiteId") if site is not None else ""
        if not any(str(a["AddressId"]) == site_id for a in party["PrimaryAddress"]):
            raise SoapFault("env:Server", f"The party site {site_id} doesn't belong to party "
                                          f"{party['PartyId']}.")
        uses = [u for u in site if u.tag.rpartition("}")[2] == "CustomerAccountSiteUse"]
        if not any(_value(u, "SiteUseCode") == "BILL_TO" for u in uses):
            raise SoapFault("env:Server", "A BILL_TO site use is required to bill the account.")
        name = _value(acct, "AccountName") or party["OrganizationName"]
        account = self.state.create_account(party["PartyId"], name, int(site_id))
        site_row = account["sites"][0]
        ns = "http://xmlns.oracle.com/apps/cdm/foundation/parties/customerAccountService/"
        value = (f"<ns1:CustomerAccountId>{account['AccountId']}</ns1:CustomerAccountId>"
                 f"<ns1:PartyId>{party['PartyId']}</ns1:PartyId>"
                 f"<ns1:AccountNumber>{account['AccountNumber']}</ns1:AccountNumber>"
                 f"<ns1:AccountName>{escape(name)}</ns1:AccountName>"
                 f"<ns1:CustomerAccountSite><ns1:CustomerAccountSiteId>{site_row['CustomerAccountSiteId']}"
                 f"</ns1:CustomerAccountSiteId><ns1:PartySiteId>{site_id}</ns1:PartySiteId>"
                 f"<ns1:CustomerAccountSiteUse><ns1:SiteUseId>{site_row['uses'][0]['SiteUseId']}"
                 f"</ns1:SiteUseId><ns1:SiteUseCode>BILL_TO</ns1:SiteUseCode>"
                 f"</ns1:CustomerAccountSiteUse></ns1:CustomerAccountSite>")
        return soap_response(f'<ns0:createCustomerAccountResponse xmlns:ns0="{ns}types/" '
                             f'xmlns:ns1="{ns}"><ns2:result xmlns:ns2="{ns}types/">'
                             f'<ns1:Value>{value}</ns1:Value></ns2:result>'
                             f'</ns0:createCustomerAccountResponse>')

    def apply_memo(self, op: ElementTree.Element) -> Response:
        memo_id, memo_number = _value(op, "CreditMemoTrxId"), _value(op, "CreditMemoTrxNumber")
        memo = next((m for m in self.state.memos.values()
                     if (memo_id and str(m["CustomerTransactionId"]) == memo_id)
                     or (not memo_id and m["TransactionNumber"] == memo_number)), None)
        if memo is None:
            raise SoapFault("env:Server", f"The credit memo {memo_id or memo_number} doesn't exist.")
        try:
            amount = Decimal(_value(op, "AmountApplied"))
        except InvalidOperation:
            raise SoapFault("env:Server", "AmountApplied isn't a valid amount.") from None
        try:
            inv, inst = self.ar.open_installment(_value(op, "AppliedPaymentScheduleId"),
                                                 memo["CreditMemoCurrency"],
                                                 memo["BillToCustomerNumber"], "AppliedPaymentScheduleId")
        except ApiError as exc:
            raise SoapFault("env:Server", exc.message) from None
        if amount <= 0 or amount > -memo["TransactionBalanceDue"]:
            raise SoapFault("env:Server", f"The amount applied {amount} exceeds the credit memo's "
                                          f"unapplied amount {-memo['TransactionBalanceDue']}.")
        if amount > inst["InstallmentBalanceDue"]:
            raise SoapFault("env:Server", f"The amount applied {amount} exceeds the balance "
                                          f"{inst['InstallmentBalanceDue']} of transaction "
                                          f"{inv['TransactionNumber']}.")
        app = self.state.apply(inv, inst, amount, "credit_memo", memo)
        memo["TransactionBalanceDue"] = money(memo["TransactionBalanceDue"] + amount,
                                              memo["CreditMemoCurrency"])
        memo["LastUpdateDate"] = now_iso()
        ns = CREDIT_MEMO_NS
        return soap_response(f'<ns0:applyOnAccountCreditMemoResponse xmlns:ns0="{ns}types/">'
                             f'<ns0:result><ns1:ReceivableApplicationId xmlns:ns1="{ns}">'
                             f'{app["ApplicationId"]}</ns1:ReceivableApplicationId></ns0:result>'
                             f'</ns0:applyOnAccountCreditMemoResponse>')

    # ---- OAuth (the identity domain)
    async def token(self, request: Request) -> Response:
        self.state.stats["token_requests"] += 1
        wait = self.state.admit(self.state.settings.token_requests_per_minute, token=True)
        if wait is not None:
            return too_many(wait)
        form = dict(parse_qsl((await request.body()).decode()))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = base64.b64decode(value).decode().partition(":")
            except ValueError:
                client_id = secret = None
        if (client_id, secret) != (self.credentials["client_id"], self.credentials["client_secret"]):
            return oauth_error("invalid_client", "Client authentication failed.", 401)
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", "The grant type isn't supported.")
        scope = form.get("scope", "").strip()
        if not scope:
            return oauth_error("invalid_scope", "A scope is required.")
        lifetime = self.state.settings.token_lifetime
        m = re.search(r"urn:opc:resource:expiry=(\d+)", scope)
        if m:
            lifetime = max(60, int(m.group(1)))
        token = ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (
            b'{"alg":"RS256","typ":"JWT"}', json.dumps({"sub": client_id, "scope": scope}).encode(),
            secrets.token_bytes(32)))
        self.state.tokens[token] = time.time() + lifetime
        return JSON({"access_token": token, "token_type": "Bearer", "expires_in": lifetime},
                    headers={"Cache-Control": "no-store"})


CREDIT_MEMO_NS = ("http://xmlns.oracle.com/apps/financials/receivables/transactions/creditMemos/"
                  "creditMemoService/")


class SoapFault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def response(self) -> Response:
        body = (f'<env:Envelope xmlns:env="{SOAP_ENV}"><env:Body><env:Fault>'
                f'<faultcode>{self.code}</faultcode><faultstring>{escape(self.message)}'
                f'</faultstring></env:Fault></env:Body></env:Envelope>')
        return Response(body, status_code=500, media_type="text/xml; charset=utf-8")


def soap_response(inner: str) -> Response:
    return Response(f'<env:Envelope xmlns:env="{SOAP_ENV}"><env:Header/><env:Body>{inner}'
                    f'</env:Body></env:Envelope>', media_type="text/xml; charset=utf-8")


def _child(el: ElementTree.Element | None, name: str) -> ElementTree.Element | None:
    if el is None:
        return None
    return next((c for c in el if c.tag.rpartition("}")[2] == name), None)


def _value(el: ElementTree.Element | None, name: str) -> str:
    """A field of the operation, directly under it or inside its parameter element."""
    c = _child(el, name)
    if c is None and el is not None:
        c = next((d for d in el.iter() if d.tag.rpartition("}")[2] == name), None)
    return (c.text or "").strip() if c is not None else ""


def too_many(retry_after: float | None) -> Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else {}
    return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return JSON({"error": error, "error_description": description}, status_code=status)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body(), parse_float=Decimal)
    except ValueError:
        raise bad("The request payload isn't valid JSON.") from None


# --------------------------------------------------------------------------- control surface

class Control:
    def __init__(self, state: OracleState, faults: Faults) -> None:
        self.state, self.faults = state, faults

    async def _list(self, request: Request) -> list:
        body = json.loads(await request.body() or b"[]", parse_float=Decimal)
        return body if isinstance(body, list) else [body]

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        self.faults.configure(**asdict(Faults()))
        return JSON({"ok": True})

    async def items(self, request: Request) -> Response:
        for item in await self._list(request):
            number = item["ItemNumber"] if isinstance(item, dict) else str(item)
            self.state.lookups["items"][number] = {"ItemNumber": number,
                                                   "Description": (item.get("Description")
                                                                   if isinstance(item, dict) else None)}
        return JSON(sorted(self.state.lookups["items"]))

    def _values(self, segment: str):
        async def endpoint(request: Request) -> Response:
            for value in await self._list(request):
                self.state.lookups["values"][segment].add(str(value))
            return JSON(sorted(self.state.lookups["values"][segment]))
        return endpoint

    async def combinations(self, request: Request) -> Response:
        for row in await self._list(request):
            combo = row["combination"] if isinstance(row, dict) else str(row)
            parts = combo.split("-")
            if len(parts) != len(CHART):
                return JSON({"error": f"{combo}: {len(CHART)} segments expected"}, status_code=400)
            for part, segment in zip(parts, CHART):
                self.state.lookups["values"][segment].add(part)
            if isinstance(row, dict) and row.get("enabled") is False:
                self.state.lookups["disabled"].add(combo)
            else:
                self.state.lookups["disabled"].discard(combo)
        return JSON({"ok": True})

    async def tax_codes(self, request: Request) -> Response:
        for row in await self._list(request):
            row = row if isinstance(row, dict) else {"code": str(row)}
            rate = row.get("rate")
            self.state.lookups["tax_codes"][row["code"]] = {
                "regime": row.get("regime", "US SALES TAX"),
                "rate": Decimal(str(rate)) if rate is not None else None}
        return JSON({k: {"regime": v["regime"], "rate": v["rate"]}
                     for k, v in self.state.lookups["tax_codes"].items()})

    async def receipt_methods(self, request: Request) -> Response:
        for row in await self._list(request):
            row = row if isinstance(row, dict) else {"name": str(row)}
            self.state.lookups["receipt_methods"][row["name"]] = {
                "id": self.state.next_id(), "bank_account": row.get("bank_account", "10271-17621-619")}
        return JSON(sorted(self.state.lookups["receipt_methods"]))

    async def customers(self, request: Request) -> Response:
        if request.method == "POST":
            for row in await self._list(request):
                self.state.add_customer(row["name"], row.get("email", ""), row.get("source_reference", ""))
        return JSON([{k: v for k, v in a.items() if k != "sites"} for a in self.state.accounts.values()])

    async def parties(self, request: Request) -> Response:
        return JSON(list(self.state.parties.values()))

    async def documents(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        return JSON([d for d in self.state.documents() if kind is None or d["kind"] == kind])

    async def automatch(self, request: Request) -> Response:
        return JSON({"applied": self.state.automatch()})

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.state.settings.configure(await request.json())
            except (ValueError, TypeError) as exc:
                return JSON({"error": str(exc)}, status_code=400)
        return JSON(asdict(self.state.settings))

    async def expire_tokens(self, request: Request) -> Response:
        self.state.tokens.clear()
        return JSON({"ok": True})

    async def stats(self, request: Request) -> Response:
        return JSON(self.state.stats)

    async def requests(self, request: Request) -> Response:
        return JSON(self.state.request_log)

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/items", self.items, methods=["POST"]),
            Route("/_sandbox/accounts", self._values("Account"), methods=["POST"]),
            Route("/_sandbox/cost-centers", self._values("CostCenter"), methods=["POST"]),
            Route("/_sandbox/combinations", self.combinations, methods=["POST"]),
            Route("/_sandbox/tax-codes", self.tax_codes, methods=["POST"]),
            Route("/_sandbox/receipt-methods", self.receipt_methods, methods=["POST"]),
            Route("/_sandbox/customers", self.customers, methods=["GET", "POST"]),
            Route("/_sandbox/parties", self.parties, methods=["GET"]),
            Route("/_sandbox/documents", self.documents, methods=["GET"]),
            Route("/_sandbox/automatch", self.automatch, methods=["POST"]),
            Route("/_sandbox/settings", self.settings, methods=["GET", "POST"]),
            Route("/_sandbox/expire-tokens", self.expire_tokens, methods=["POST"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/requests", self.requests, methods=["GET"]),
            *fault_routes(self.faults),
        ]


def create_app(*, username: str = "integration.user", password: str = "Welcome1",
               client_id: str = "ml-connector-client", client_secret: str = "client-secret",
               requests_per_minute: int = 0, token_lifetime: int = 3600) -> Starlette:
    """One simulated Fusion pod and its identity domain; state ``app.state.oracle``, faults
    ``app.state.faults``."""
    settings = Settings()
    state = OracleState(settings)
    settings.requests_per_minute, settings.token_lifetime = requests_per_minute, token_lifetime
    faults = Faults()
    api = Api(state, faults, {"username": username, "password": password,
                              "client_id": client_id, "client_secret": client_secret})
    rest = "/{family}/resources/{version}"
    app = Starlette(routes=[
        *Control(state, faults).routes(),
        Route("/oauth2/v1/token", api.token, methods=["POST"]),
        Route("/crmService/CustomerAccountService", api.soap, methods=["POST"]),
        Route("/fscmService/CreditMemoService", api.soap, methods=["POST"]),
        Route(rest, api.catalog, methods=["GET"]),
        Route(rest + "/", api.catalog, methods=["GET"]),
        Route(rest, api.batch, methods=["POST"]),
        Route(rest + "/", api.batch, methods=["POST"]),
        Route(rest + "/{rest:path}", api.resource, methods=["GET", "POST", "PATCH", "DELETE"]),
    ])
    app.state.oracle = state
    app.state.faults = faults
    return app

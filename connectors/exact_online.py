"""Exact Online as an ERP, over its REST API (OData v2, verbose JSON).

Per-system quirks live here (the client) and in :mod:`connectors.exact_online_mapping` (the
wire format and record builders), nowhere else:

* A region-specific host (``REGIONS``) and the division (administration) segment on every
  call: ``{base}/api/v1/{division}/{service}/{Entity}``. A connection without a division takes
  the user's current one from ``current/Me`` and remembers it (``on_settings_change``).
* OAuth 2.0 authorization code with 10-minute access tokens and rotating refresh tokens
  (:class:`connectors.auth.ExactAuth`): refreshed when less than ``refresh_margin_seconds``
  (≤ 30) remain, because Exact refuses a refresh sooner than 570 s after the previous token was
  issued; every new token set is saved (encrypted, by the TokenStore) before it is used; a
  refused refresh token puts the connection in "needs re-consent" and raises
  :class:`ConsentRequired` (the order waits instead of failing).
* The ``{"d": {"results": [...], "__next": ...}}`` envelope, ``guid'…'``/``datetime'…'``
  literals, ``$select`` on every read, paging by ``__next``; errors
  ``{"error": {"message": {"value": ...}}}`` surfaced verbatim.
* Minutely and daily quotas from ``X-RateLimit-*`` headers (:func:`rate_pacer`): the client slows
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
the invoice; the external reference is the line's ``Description``. A refund's cash-back is a
negative line of the same kind (money paid out to the customer) whose ``OurRef`` is the credit
note's number, so the credit note is matched and nothing stays outstanding.

Customers: an account ml-connector created has a code derived from the buyer's external id
(a digest), and that alone proves it is ours: only ours are ever written to. The external ids
it serves are kept in its ``Remarks`` as ``[ml-connector WC-C5]`` (the code cannot be
inverted). Where the connection's policy allows, a buyer is booked to an existing customer
account with its e-mail, never changed. :meth:`ExactOnlineErp.get_customer` and
:meth:`ExactOnlineErp.iter_customers_modified` (``Modified gt``) read accounts back in canonical
form for two-way alignment. Shipments: goods deliveries name the sales orders they deliver; the
order's ``YourRef`` is the external reference (:meth:`ExactOnlineErp.iter_shipments`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from connectors.auth import ExactAuth, MemoryTokenStore, TokenSet, TokenStore
from connectors.base import WebhookEvent
from connectors.documents import (CustomerMatch, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument, require_rule)
from connectors.errors import ExternalError, MappingMissing, RateLimited, Rejected
from connectors.exact_online_mapping import (CREDIT_NOTE, SYSTEM, account_code, account_fields,
                                             customer_account_by_email, customer_code_for,
                                             customer_from_account, customer_ref,
                                             datetime_literal, doc_type_of, document_ref, entity,
                                             external_id_tag, external_ids_of, guid_literal,
                                             is_guid, line_record, line_vat, mapping_error,
                                             next_link, odata_date, optional_amount, order_numbers,
                                             orphan_vat, owned_account, parse_date, parse_json,
                                             read_error,
                                             receipt_ref, results, shipment_from_delivery,
                                             string_literal, unknown_gl, unknown_item, with_query,
                                             your_ref_for)
from connectors.http import build_client, returned_url, send, to_json
from connectors.model import (ZERO, Customer, DocumentKind, ErpDocumentRef, ItemChange, Shipment,
                              quantize, to_decimal)
from connectors.pacing import EXACT_DAILY, EXACT_MINUTELY, Pacer

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

INVOICE_FIELDS = "InvoiceID,InvoiceNumber,Type,YourRef,Currency,AmountFC,Status"
BANK_LINE_FIELDS = "ID,EntryID,EntryNumber,Description,AmountFC,OurRef,Account,Date"
ITEM_FIELDS = "ID,Code,CostPriceStandard,StandardSalesPrice,Stock,Modified"
ACCOUNT_FIELDS = ("ID,Code,Name,Email,AddressLine1,AddressLine2,City,Postcode,State,Country,"
                  "Phone,Status,Remarks,Modified")
DELIVERY_FIELDS = ("EntryID,DeliveryNumber,DeliveryDate,TrackingNumber,ShippingMethodCode,Modified,"
                   "GoodsDeliveryLines/SalesOrderNumber,GoodsDeliveryLines/TrackingNumber")
SALES_ORDER_FIELDS = "OrderID,OrderNumber,YourRef"

PAGE_SIZE = 60  # records per page of a CRUD endpoint
FILTER_CHUNK = 20  # codes per "Code eq 'a' or Code eq 'b' ..." look-up (URLs ≤ 6000 chars)

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


def rate_pacer(**kw: Any) -> Pacer:
    """Rides Exact's minutely and daily quotas (resets are epoch milliseconds): below 10 calls
    left in the minute it spreads the rest over the window; at one it waits for the reset."""
    return Pacer(EXACT_MINUTELY, **{"daily": EXACT_DAILY, "reserve": 1, "slow_below": 10,
                                    "max_wait": 60.0, "system": SYSTEM, "label": SYSTEM_NAME,
                                    **kw})


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
    allow_insecure_http: bool = False  # plain-HTTP base_url: a local test server only

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
                               transport=transport, verify=verify, timeout=settings.timeout,
                               allow_insecure_http=settings.allow_insecure_http)
        self.pacer = pacer or rate_pacer()
        self._client = build_client(settings.host, auth=self._auth, verify=verify,
                                    timeout=settings.timeout, transport=transport, system=SYSTEM,
                                    allow_insecure_http=settings.allow_insecure_http)
        self._client.event_hooks = {"request": [], "response": [self.pacer.on_response]}
        self._on_settings_change = on_settings_change
        self._division: int | None = settings.division
        self._guids: dict[tuple[str, str], str] = {}  # (entity, code) -> guid

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._auth.aclose()

    # --- transport -----------------------------------------------------------------------------

    async def _call(self, method: str, url: str, *, body: Any = None) -> Any:
        await self.pacer.before()
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs = {"content": to_json(body),
                      "headers": {"Content-Type": "application/json",
                                  "Prefer": "return=representation"}}
        try:
            resp = await send(self._client, method, url, system=SYSTEM, read_error=read_error,
                              **kwargs)
        except RateLimited as exc:
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
        """Every record, following ``__next`` (sequentially, as Exact requires) on the
        configured host only: the link is the answer's, the bearer token is ours."""
        url: str | None = with_query(await self._path(resource), params)
        while url:
            body = await self._call("GET", url)
            for row in results(body):
                yield row
            link = next_link(body)
            url = returned_url(self._client.base_url, link, system=SYSTEM) if link else None

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
        missing = sorted(c for c in codes if (resource, c) not in self._guids and not is_guid(c))
        for i in range(0, len(missing), FILTER_CHUNK):
            chunk = missing[i:i + FILTER_CHUNK]
            where = " or ".join(f"Code eq {string_literal(stored(c))}" for c in chunk)
            async for row in self._list(resource, {"$filter": where, "$select": "ID,Code"}):
                self._guids[(resource, str(row["Code"]).strip())] = str(row["ID"])
        return {c: c if is_guid(c) else self._guids[(resource, c)]
                for c in codes if is_guid(c) or (resource, c) in self._guids}

    async def missing_items(self, item_ids: set[str]) -> set[str]:
        """Item codes Exact Online does not have. Read only: ``connections check``."""
        return set(item_ids) - set(await self._guids_for("logistics/Items", set(item_ids)))

    async def missing_gl_accounts(self, codes: set[str]) -> set[str]:
        """GL account codes Exact Online does not have. Read only: ``connections check``."""
        return set(codes) - set(await self._guids_for("financial/GLAccounts", set(codes)))

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

    async def upsert_customer(self, customer: Customer, external_id: str, *,
                              aliases: Sequence[str] = (),
                              match: CustomerMatch = "own") -> ErpDocumentRef:
        """Ours (:func:`owned_account`) takes the store's name, e-mail, address and phone (an
        empty store field never blanks Exact's) and the buyer's tag in its Remarks; with
        ``match`` "email" an existing customer account with the e-mail
        (:func:`customer_account_by_email`) is booked to as it is; else ours is created, a
        customer account whose code is derived from ``external_id``."""
        ids = [external_id, *aliases]
        email = customer.email.strip()
        rows = await self._candidate_accounts(ids, email if match == "email" else "")
        ours = owned_account(rows, ids)
        if ours is not None:
            changes = {k: v for k, v in account_fields(customer).items()
                       if v and (ours.get(k) or "") != v}
            remarks, tag = ours.get("Remarks") or "", external_id_tag(external_id)
            if tag not in remarks:
                changes["Remarks"] = f"{remarks}\n{tag}".strip()
            if changes:
                await self._call("PUT", f"{await self._path('crm/Accounts')}"
                                        f"({guid_literal(ours['ID'])})", body=changes)
            return customer_ref(ours, external_id, created=False)
        if match == "email" and (theirs := customer_account_by_email(rows, email)) is not None:
            return customer_ref(theirs, external_id, created=False)
        record = {"Code": customer_code_for(external_id), "Status": "C",
                  **account_fields(customer), "Remarks": external_id_tag(external_id)}
        saved = await self._post("crm/Accounts", {k: v for k, v in record.items() if v})
        return customer_ref(saved, external_id, created=True)

    async def _candidate_accounts(self, ids: list[str], email: str) -> list[dict]:
        """One look-up for both kinds of match (``or``): ours by code and, when ``email`` is
        given, accounts with the e-mail (Exact compares text case-insensitively). Only when a
        full page of e-mail matches hides whether ours exists is it looked up on its own."""
        ours = " or ".join(f"Code eq {string_literal(account_code(customer_code_for(i)))}"
                           for i in ids)
        if not email:
            return await self._page("crm/Accounts", {"$filter": ours, "$select": ACCOUNT_FIELDS})
        rows = await self._page("crm/Accounts", {
            "$filter": f"{ours} or Email eq {string_literal(email)}", "$select": ACCOUNT_FIELDS})
        if owned_account(rows, ids) is None and len(rows) == PAGE_SIZE:
            rows = await self._page("crm/Accounts",
                                    {"$filter": ours, "$select": ACCOUNT_FIELDS}) + rows
        return rows

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

    # --- sales invoices and credit notes ------------------------------------------------------

    async def find_document(self, kind: DocumentKind, external_ref: str) -> ErpDocumentRef | None:
        if kind in ("receipt", "refund_payment"):
            line = await self._first("financialtransaction/BankEntryLines", {
                "$filter": f"Description eq {string_literal(external_ref)}",
                "$select": BANK_LINE_FIELDS})
            return receipt_ref(line, external_ref, None, created=False, kind=kind) if line else None
        row = await self._first("salesinvoice/SalesInvoices", {
            "$filter": f"YourRef eq {string_literal(your_ref_for(external_ref))} and "
                       f"Type eq {doc_type_of(kind)}", "$select": INVOICE_FIELDS})
        return document_ref(kind, row, external_ref, created=False) if row else None

    async def create_document(self, doc: ErpDocument) -> ErpDocumentRef:
        record = await self._document_record(doc)
        try:
            saved = await self._post("salesinvoice/SalesInvoices", record)
        except Rejected as exc:
            raise mapping_error(exc) from exc
        if saved.get("AmountFC") is None:
            saved = await self._first("salesinvoice/SalesInvoices", {
                "$filter": f"InvoiceID eq {guid_literal(saved['InvoiceID'])}",
                "$select": INVOICE_FIELDS}) or saved
        ref = document_ref(doc.kind, saved, doc.external_ref, created=True)
        await self._check_total(doc, ref)
        return ref

    async def _document_record(self, doc: ErpDocument) -> dict[str, Any]:
        rules = [require_rule(line, SYSTEM_NAME) for line in doc.lines]
        items = await self._guids_for("logistics/Items", {ln.item_id for ln in doc.lines})
        gl = await self._guids_for("financial/GLAccounts", {r.gl_account for r in rules})
        sign = -1 if doc_type_of(doc.kind) == CREDIT_NOTE else 1
        lines = []
        for line, rule, vat in zip(doc.lines, rules, line_vat(doc)):
            if line.item_id not in items:
                raise unknown_item(line)
            if rule.gl_account not in gl:
                raise unknown_gl(line, rule.gl_account)
            lines.append(line_record(line, items[line.item_id], gl[rule.gl_account],
                                     rule.cost_center, vat, sign,
                                     self.settings.untaxed_vat_code))
        for code, amount in orphan_vat(doc):
            anchor = lines[-1] if lines else None
            if anchor is None:
                raise Rejected(f"{doc.external_ref}: VAT {code} without a line to carry it",
                               system=SYSTEM)
            lines.append({**anchor, "Quantity": 0, "NetPrice": ZERO, "AmountFC": ZERO,
                          "VATCode": code, "VATAmountFC": sign * amount,
                          "Description": f"VAT {code}"})
        ordered_by = await self._account_id(doc.customer_key)
        return {"Type": doc_type_of(doc.kind), "OrderedBy": ordered_by,
                "Journal": self.settings.sales_journal, "YourRef": your_ref_for(doc.external_ref),
                "Currency": doc.currency, "OrderDate": odata_date(doc.date),
                "Description": (doc.description or doc.external_ref)[:60],
                "SalesInvoiceLines": lines}

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

    # --- reconciliation ----------------------------------------------------------------------

    async def iter_documents(self, prefix: str, since: date) -> AsyncIterator[ErpDocumentRef]:
        """Every sales invoice and credit note whose ``YourRef`` starts with ``prefix``, and
        every bank entry line (a receipt) whose ``Description`` does, dated ``since`` or
        later, all pages. A line carries no currency: its entry's is read, 20 entries a call."""
        after = datetime_literal(datetime(since.year, since.month, since.day, tzinfo=timezone.utc))
        mine = string_literal(prefix)
        async for row in self._list("salesinvoice/SalesInvoices", {
                "$filter": f"substringof({mine},YourRef) eq true and InvoiceDate ge {after}",
                "$select": INVOICE_FIELDS}):
            ref = str(row.get("YourRef") or "")
            if ref.startswith(prefix):
                kind = "credit_memo" if int(row.get("Type") or 0) == CREDIT_NOTE else "invoice"
                yield document_ref(kind, row, ref, created=False)
        lines = [line async for line in self._list("financialtransaction/BankEntryLines", {
                     "$filter": f"substringof({mine},Description) eq true and Date ge {after}",
                     "$select": BANK_LINE_FIELDS})
                 if str(line.get("Description") or "").startswith(prefix)]
        entries = sorted({str(line["EntryID"]) for line in lines if line.get("EntryID")})
        currency: dict[str, str] = {}
        for i in range(0, len(entries), FILTER_CHUNK):
            where = " or ".join(f"EntryID eq {guid_literal(e)}" for e in entries[i:i + FILTER_CHUNK])
            async for entry in self._list("financialtransaction/BankEntries",
                                          {"$filter": where, "$select": "EntryID,Currency"}):
                currency[str(entry["EntryID"]).lower()] = str(entry.get("Currency") or "")
        for line in lines:
            ref = receipt_ref(line, str(line["Description"]), {
                "EntryNumber": line.get("EntryNumber"),
                "Currency": currency.get(str(line.get("EntryID") or "").lower()) or None},
                created=False)
            yield ref.model_copy(update={"total": abs(ref.total) if ref.total is not None else None})

    # --- receipts ----------------------------------------------------------------------------

    async def create_receipt(self, receipt: ReceiptDocument) -> ErpDocumentRef:
        """A bank entry in the payment method's journal (a bank or payment-service journal):
        one line for the customer, ``OurRef`` = the invoice number so Exact matches it."""
        return await self._bank_entry(receipt, receipt.amount, "receipt")

    async def create_refund_payment(self, doc: RefundPaymentDocument) -> ErpDocumentRef:
        """The money paid back: a bank entry line for the customer of minus the amount (paid
        out) in the payment method's journal, ``OurRef`` = the credit note's number, so Exact
        matches it with the credit note and the customer's outstanding items end at zero."""
        return await self._bank_entry(doc, -doc.amount, "refund_payment")

    async def refund_credit(self, memo: ErpDocumentRef) -> Decimal:
        """The credit a refund's credit note holds for its cash-back. Exact matches nothing by
        itself: a credit note and its order's invoice stay outstanding side by side
        (read/financial/ReceivablesList) until cash is matched with them. So the note holds
        what the order's outstanding items leave as the customer's credit, up to its own
        outstanding amount: none while the order's invoices still owe at least its credit
        notes (a refund before the payment)."""
        order_ref, _, refund_id = memo.external_ref.rpartition("-R")
        if not order_ref or not refund_id:
            order_ref = memo.external_ref
        where = (f"YourRef eq {string_literal(order_ref)} or "
                 f"startswith(YourRef,{string_literal(order_ref + '-')}) eq true")
        rows = [row async for row in self._list("read/financial/ReceivablesList", {
            "$filter": where, "$select": "HID,YourRef,Amount"})
            if str(row.get("YourRef") or "") == order_ref
            or str(row.get("YourRef") or "").startswith(order_ref + "-")]
        note = -sum((to_decimal(r.get("Amount") or 0) for r in rows
                     if str(r.get("YourRef") or "") == memo.external_ref), ZERO)
        credit = -sum((to_decimal(r.get("Amount") or 0) for r in rows), ZERO)
        return max(ZERO, min(note, credit))

    async def _bank_entry(self, doc: ReceiptDocument | RefundPaymentDocument, amount: Decimal,
                          kind: DocumentKind) -> ErpDocumentRef:
        what = "a receipt" if kind == "receipt" else "a refund's cash-back"
        account = await self._account_id(doc.customer_key)
        line: dict[str, Any] = {
            "Account": account, "AmountFC": amount,
            "Date": odata_date(doc.date), "Description": your_ref_for(doc.external_ref),
            "Notes": f"{doc.description} ({doc.reference})".strip()}
        if doc.applies_to.number.isdigit():
            line["OurRef"] = int(doc.applies_to.number)
        try:
            saved = await self._post("financialtransaction/BankEntries", {
                "JournalCode": doc.payment_method, "Currency": doc.currency,
                "BankEntryLines": [line]})
        except Rejected as exc:
            if "journal" in exc.message.lower():
                raise MappingMissing(
                    f"Exact Online refused journal {doc.payment_method} for {what}: "
                    f"{exc.message}", system=SYSTEM, status=exc.status,
                    resolution="map the store's payment method to the code of an Exact bank or "
                               "payment-service journal (ml-connector connections map CONNECTION "
                               "--payment METHOD=JOURNAL)") from exc
            raise
        lines = saved.get("BankEntryLines")
        first = (results({"d": lines})[0] if isinstance(lines, Mapping) and lines.get("results")
                 else None)
        return receipt_ref(first or {"EntryID": saved.get("EntryID"), "AmountFC": amount},
                           doc.external_ref, saved, created=True, kind=kind)

    # --- catalog -----------------------------------------------------------------------------

    async def iter_item_changes(self, since: datetime) -> AsyncIterator[ItemChange]:
        """Items modified after ``since`` (the ``Modified`` watermark), with price, standard
        cost and stock."""
        async for row in self._list("logistics/Items", {
                "$filter": f"Modified gt {datetime_literal(since)}", "$select": ITEM_FIELDS}):
            yield ItemChange(
                sku=str(row["Code"]).strip(), price=optional_amount(row.get("StandardSalesPrice")),
                cost=optional_amount(row.get("CostPriceStandard")),
                quantity_available=optional_amount(row.get("Stock")),
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
        refs = await self._sales_order_refs({n for d in deliveries for n in order_numbers(d)})
        for delivery in deliveries:
            numbers = order_numbers(delivery)
            for number in numbers:
                yield shipment_from_delivery(delivery, number, refs.get(number, ""),
                                             several=len(numbers) > 1)

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
        if self.pacer.window:
            report["minutely_remaining"] = self.pacer.window.remaining
        if self.pacer.daily:
            report["daily_remaining"] = self.pacer.daily.remaining
        return report


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
    auth = ExactAuth(settings.token_url, credentials.client_id.get_secret_value(),
                     credentials.client_secret, MemoryTokenStore(), transport=transport,
                     verify=settings.ca_bundle or True, timeout=settings.timeout,
                     allow_insecure_http=settings.allow_insecure_http)
    try:
        return await auth.exchange_code(code, redirect_uri)
    finally:
        await auth.aclose()


def authorization_url(settings: ExactSettings, client_id: str, redirect_uri: str,
                      state: str) -> str:
    """Where the user signs in and consents (``force_login=0`` keeps an existing session)."""
    return f"{settings.authorize_url}?" + urlencode({
        "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
        "state": state, "force_login": "0"})

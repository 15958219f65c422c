"""Acumatica ERP over the contract-based REST API (system endpoint, version-locked URL).

Every general field travels wrapped as ``{"value": ...}``; :func:`wrap` and :func:`unwrap` are
the only places that know it. Money is read with ``parse_float=Decimal`` and written as exact
JSON numbers. Invoices and credit memos are ``SalesInvoice`` records carrying the store's
prices, discounts and tax as computed; with ``document_type="sales_order"`` an order's invoice
is a ``SalesOrder`` instead (refunds and adjustments stay ``SalesInvoice`` documents). Receipts
are ``Payment`` records applied to the invoice (``DocumentsToApply``) or to the sales order
(``OrdersToApply``). Every document is found again by its ``ExternalRef`` (on SalesInvoice and
Payment the document's own External Reference, on SalesOrder the order's ``CustomerRefNbr``);
a payment's ``PaymentRef`` carries the processor's transaction id for bank matching.
Confirmed ``Shipment`` records of those sales orders go back to the store
(:meth:`AcumaticaErp.iter_shipments`).
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, SecretStr, field_validator

from connectors.auth import OAuth2Auth, TokenStore
from connectors.documents import DocumentLine, ErpDocument, ReceiptDocument
from connectors.errors import (ConfigurationError, ExternalError, MappingMissing, NotFound,
                               Rejected, Unavailable)
from connectors.http import build_client, parse_json, send, to_json
from connectors.model import (ZERO, Customer, DocumentKind, ErpDocumentRef, ItemChange,
                              Shipment, quantize, to_decimal)

SYSTEM = "acumatica"
# Entity members sent and returned as they are (reference §3); every other field is wrapped.
PLAIN_FIELDS = frozenset({"id", "rowNumber", "delete", "custom", "error", "files", "_links"})
DOC_TYPES: dict[str, str] = {"invoice": "Invoice", "adjustment_invoice": "Invoice",
                             "credit_memo": "Credit Memo"}
# AR document types; any other applies_to.doc_type is a sales order type (an invoice posted
# as a SalesOrder carries its OrderType, e.g. "SO", as its doc_type).
INVOICE_TYPES = frozenset({"Invoice", "Debit Memo", "Credit Memo"})
ORDER_TYPE = "SO"
PAYMENT_TYPE = "Payment"
PAYMENT_REF_LENGTH = 40  # ARPayment.ExtRefNbr
PAGE_SIZE = 100
APPLICATION_ROWS = ("DocumentsToApply[", "OrdersToApply[")  # a Payment's application rows
RELEASE_TIMEOUT = 120.0  # seconds a release may run before the attempt is retried
ITEM_FIELDS = ("InventoryID,DefaultPrice,LastCost,LastModifiedDateTime,"
               "WarehouseDetails/WarehouseID,WarehouseDetails/QtyOnHand")
# A shipment has left the warehouse once confirmed; invoicing it moves it on to the later
# statuses (their API strings are not in the reference: the SO302000 status list).
SHIPPED_STATUSES = ("Confirmed", "Completed", "Invoiced", "Partially Invoiced")
SHIPMENT_FIELDS = ("ShipmentNbr,Status,Operation,ShipVia,ShipmentDate,LastModifiedDateTime,"
                   "Orders/OrderType,Orders/OrderNbr,Packages/TrackingNbr")


# --- the {"value": ...} representation ------------------------------------------------------

def _scalar(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return to_decimal(value)
    return value


def wrap(record: Mapping[str, Any]) -> dict[str, Any]:
    """Plain record → Acumatica JSON: nested dicts are linked entities, lists detail entities."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in PLAIN_FIELDS:
            out[key] = value
        elif isinstance(value, Mapping):
            out[key] = wrap(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [wrap(row) for row in value]
        else:
            out[key] = {"value": _scalar(value)}
    return out


def _is_wrapper(value: Any) -> bool:
    return isinstance(value, Mapping) and "value" in value and set(value) <= {"value", "error"}


def unwrap(record: Mapping[str, Any]) -> dict[str, Any]:
    """Acumatica JSON → plain record (field errors are read by :func:`read_error`)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in PLAIN_FIELDS:
            out[key] = value
        elif _is_wrapper(value):
            out[key] = value["value"]
        elif isinstance(value, Mapping):
            out[key] = unwrap(value)
        elif isinstance(value, list):
            out[key] = [unwrap(row) if isinstance(row, Mapping) else row for row in value]
        else:
            out[key] = value
    return out


def parse_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# --- errors ----------------------------------------------------------------------------------

def entity_errors(record: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every ``error`` inside a returned record, keyed like ``Details[0].InventoryID``."""
    out: dict[str, str] = {}
    for key, value in record.items():
        path = f"{prefix}{key}"
        if key == "error" and prefix and isinstance(value, str) and value:
            out[prefix.rstrip(".")] = value
        elif _is_wrapper(value):
            if value.get("error"):
                out[path] = str(value["error"])
        elif isinstance(value, Mapping) and key not in PLAIN_FIELDS:
            out.update(entity_errors(value, f"{path}."))
        elif isinstance(value, list) and key not in PLAIN_FIELDS:
            for i, row in enumerate(value):
                if isinstance(row, Mapping):
                    out.update(entity_errors(row, f"{path}[{i}]."))
    return out


def read_error(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    """Acumatica's own message: an ``HttpError`` body, or the 422 entity with field errors."""
    try:
        body = parse_json(resp)
    except ValueError:
        return (resp.text[:300] or resp.reason_phrase), {}
    if not isinstance(body, dict):
        return str(body)[:300], {}
    if isinstance(body.get("message"), str) or isinstance(body.get("exceptionMessage"), str):
        fields = {k: "; ".join(map(str, v)) if isinstance(v, list) else str(v)
                  for k, v in (body.get("modelState") or {}).items()}
        return str(body.get("exceptionMessage") or body.get("message")), fields
    fields = entity_errors(body)
    parts = [body["error"]] if isinstance(body.get("error"), str) and body["error"] else []
    parts += [f"{k}: {v}" for k, v in fields.items()]
    return "; ".join(parts) or resp.reason_phrase, fields


def _row_index(path: str) -> int | None:
    """``Details[3]`` → 3."""
    try:
        return int(path[path.index("[") + 1:path.index("]")])
    except ValueError:
        return None


def _mapping_error(exc: Rejected, doc: ErpDocument) -> Rejected:
    """A refused document whose cause is an unknown item or tax id becomes MappingMissing."""
    for key, message in exc.field_errors.items():
        where, _, field = key.rpartition(".")
        i = _row_index(where)
        if field == "InventoryID" and where.startswith("Details[") and i is not None:
            line = doc.lines[i] if i < len(doc.lines) else None
            return _unknown_item(line, message, exc)
        if field == "TaxID" and where.startswith("TaxDetails[") and i is not None:
            tax_id = doc.taxes[i].tax_code if i < len(doc.taxes) else "?"
            return MappingMissing(
                f"Acumatica refused tax ID {tax_id}: {message}", system=SYSTEM, status=exc.status,
                field_errors=exc.field_errors,
                resolution=f"create the tax {tax_id} in Acumatica or map the store's tax rate "
                           f"to an existing tax ID (ml-connector connections map CONNECTION --tax "
                           f"RATE=TAXID)")
    return exc


def _receipt_mapping_error(exc: Rejected, receipt: ReceiptDocument,
                           cash_account: str | None) -> Rejected:
    """A refused payment whose cause is its payment method, cash account or the cash account's
    currency becomes MappingMissing naming what to map."""
    fields = exc.field_errors
    where = {"system": SYSTEM, "status": exc.status, "field_errors": fields}
    method = receipt.payment_method
    if "PaymentMethod" in fields:
        return MappingMissing(
            f"Acumatica refused payment method {method}: {fields['PaymentMethod']}", **where,
            resolution=f"create the payment method {method} in Acumatica (Payment Methods, "
                       f"CA204000, usable in AR) or map the store's payment method to an "
                       f"existing one (ml-connector connections map CONNECTION --payment "
                       f"STORE_METHOD=METHOD)")
    account = cash_account or f"(the default of payment method {method})"
    if "CashAccount" in fields:
        return MappingMissing(
            f"Acumatica refused cash account {account}: {fields['CashAccount']}", **where,
            resolution=f"set the connection's Acumatica cash_account (or cash_accounts for "
                       f"{receipt.currency}) to a cash account allowed for payment method "
                       f"{method}, or give the payment method a default cash account")
    if "CurrencyID" in fields:
        return MappingMissing(
            f"Acumatica refused a {receipt.currency} payment on cash account {account}: "
            f"{fields['CurrencyID']}", **where,
            resolution=f"add a {receipt.currency} cash account to the connection's Acumatica "
                       f"cash_accounts ({{\"{receipt.currency}\": \"CASHACCOUNT\"}}), allowed for "
                       f"payment method {method}")
    return exc


def _unknown_item(line: DocumentLine | None, message: str, exc: Rejected) -> MappingMissing:
    item = line.item_id if line else "?"
    if line is not None and line.sku:
        sku = line.sku
        return MappingMissing(
            f"Acumatica refused item {item} of store SKU {sku}: {message}", system=SYSTEM,
            status=exc.status, field_errors=exc.field_errors,
            resolution=f"map SKU {sku} to an Acumatica InventoryID (ml-connector connections map "
                       f"CONNECTION --sku {sku}=INVENTORYID) or create the item in Acumatica")
    what = f" ('{line.description}')" if line is not None and line.description else ""
    return MappingMissing(
        f"Acumatica refused item {item}{what}: {message}", system=SYSTEM, status=exc.status,
        field_errors=exc.field_errors,
        resolution=f"create the item {item} in Acumatica or point the connection's mappings "
                   f"at an existing InventoryID")


# --- OData query -----------------------------------------------------------------------------

def odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def odata_datetime(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return f"datetimeoffset'{aware.isoformat(timespec='milliseconds')}'"


def with_query(path: str, params: Mapping[str, Any]) -> str:
    """``$``-parameters as the guide writes them: ``$filter=A%20eq%20'x'``, values encoded."""
    return path + "?" + urlencode(params, quote_via=quote, safe="$',/")


# --- settings --------------------------------------------------------------------------------

class AcumaticaSettings(BaseModel):
    instance_url: str
    endpoint_name: str = "Default"
    endpoint_version: str = "24.200.001"
    ca_bundle: str | None = None
    customer_class: str | None = None
    release_documents: bool = True
    warehouse_id: str | None = None
    timeout: float = 30
    # An order's invoice as an AR document (SalesInvoice) or as a SalesOrder (SO301000).
    document_type: Literal["invoice", "sales_order"] = "invoice"
    # Receipts: the cash account of a payment; per currency where the orders are in several
    # (a cash account has one currency). Unset: Acumatica defaults it from the payment method.
    cash_account: str | None = None
    cash_accounts: dict[str, str] = {}

    def cash_account_for(self, currency: str) -> str | None:
        return self.cash_accounts.get(currency) or self.cash_account

    @field_validator("instance_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @property
    def endpoint(self) -> str:
        return f"{self.endpoint_name}/{self.endpoint_version}"

    @property
    def base_url(self) -> str:
        return f"{self.instance_url}/entity/{self.endpoint}/"


class AcumaticaCredentials(BaseModel):
    client_id: SecretStr  # "<GUID>@<Tenant>" from Connected Applications (SM303010)
    client_secret: SecretStr
    username: SecretStr
    password: SecretStr


def customer_id_for(external_id: str) -> str:
    """Deterministic CustomerID: a retry after a lost response upserts the same record."""
    return "C" + hashlib.sha256(external_id.encode()).hexdigest()[:9].upper()


def _customer_fields(customer: Customer, *, with_email: bool) -> dict[str, Any]:
    """What the store knows of a buyer, as Acumatica fields. The e-mail identifies a match,
    so an update leaves it alone."""
    a = customer.billing
    address = {"AddressLine1": a.line1, "AddressLine2": a.line2, "City": a.city,
               "State": a.state, "PostalCode": a.postcode, "Country": a.country}
    contact: dict[str, Any] = {"FirstName": customer.first_name or a.first_name,
               "LastName": customer.last_name or a.last_name,
               "Phone1": customer.phone or a.phone, "Address": address}
    fields: dict[str, Any] = {"CustomerName": customer.display_name, "MainContact": contact}
    if with_email:
        contact["Email"] = customer.email
    return fields


def _without_empty(record: Mapping[str, Any]) -> dict[str, Any]:
    """A new record names only what the store knows; Acumatica fills in the class defaults."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            value = _without_empty(value)
        if value not in ("", None, {}):
            out[key] = value
    return out


def _changes(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The wanted fields that differ; empty store values never clear what the ERP has."""
    out: dict[str, Any] = {}
    for key, value in wanted.items():
        if isinstance(value, Mapping):
            sub = _changes(current.get(key) or {}, value)
            if sub:
                out[key] = sub
        elif value and (current.get(key) or "") != value:
            out[key] = value
    return out


@dataclass(frozen=True)
class _Entity:
    """Where a kind of document lives and what its key, total and currency fields are called."""

    name: str
    type_field: str
    number_field: str
    total_field: str
    currency_field: str
    release: str | None = None  # the action that releases a saved document

    @property
    def select(self) -> str:
        return ",".join((self.type_field, self.number_field, self.total_field,
                         self.currency_field, "Status", "ExternalRef"))

    def keys(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {self.type_field: record[self.type_field],
                self.number_field: record[self.number_field]}

    def ref(self, kind: DocumentKind, record: Mapping[str, Any], external_ref: str, *,
            created: bool) -> ErpDocumentRef:
        total = record.get(self.total_field)
        return ErpDocumentRef(system=SYSTEM, kind=kind, doc_type=record.get(self.type_field) or "",
                              number=record[self.number_field], id=record.get("id") or "",
                              external_ref=external_ref,
                              total=to_decimal(total) if total is not None else None,
                              currency=record.get(self.currency_field), created=created)


SALES_INVOICE = _Entity("SalesInvoice", "Type", "ReferenceNbr", "Amount", "Currency",
                        "ReleaseSalesInvoice")
SALES_ORDER = _Entity("SalesOrder", "OrderType", "OrderNbr", "OrderTotal", "CurrencyID")
PAYMENT = _Entity("Payment", "Type", "ReferenceNbr", "PaymentAmount", "CurrencyID",
                  "ReleasePayment")
CLOSED_ORDER = frozenset({"Completed", "Cancelled"})


class AcumaticaErp:
    system = SYSTEM
    # A release runs about a second: the first status poll waits that long, so it usually
    # finds the release done; later polls come every half second.
    release_first_poll_seconds = 1.0
    release_poll_seconds = 0.5

    def __init__(self, settings: AcumaticaSettings, credentials: AcumaticaCredentials,
                 token_store: TokenStore, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        verify: str | bool = settings.ca_bundle or True
        self._auth = OAuth2Auth(
            f"{settings.instance_url}/identity/connect/token",
            credentials.client_id.get_secret_value(), credentials.client_secret, token_store,
            grant={"grant_type": "password", "username": credentials.username,
                   "password": credentials.password, "scope": "api offline_access"},
            transport=transport, verify=verify, system=SYSTEM, timeout=settings.timeout)
        self._client = build_client(settings.base_url, auth=self._auth, verify=verify,
                                    timeout=settings.timeout, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._auth.aclose()

    # --- transport ---------------------------------------------------------------------------

    async def _call(self, method: str, url: str, *, body: Any = None) -> httpx.Response:
        """One request; a 404 is checked against the endpoints the instance serves."""
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs = {"content": to_json(body), "headers": {"Content-Type": "application/json"}}
        try:
            return await send(self._client, method, url, system=SYSTEM, read_error=read_error,
                              **kwargs)
        except NotFound:
            await self._check_endpoint()
            raise

    async def _list(self, entity: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = parse_json(await self._call("GET", with_query(entity, params)))
        return [unwrap(row) for row in rows]

    async def _pages(self, entity: str,
                     params: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Every row the query selects, PAGE_SIZE at a time ($top/$skip)."""
        skip = 0
        while True:
            rows = await self._list(entity, {**params, "$top": PAGE_SIZE, "$skip": skip})
            for row in rows:
                yield row
            if len(rows) < PAGE_SIZE:
                return
            skip += PAGE_SIZE

    async def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return unwrap(parse_json(await self._call("GET", with_query(path, params))))

    async def _put(self, entity: str, record: Mapping[str, Any],
                   params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        url = with_query(entity, params) if params else entity
        return unwrap(parse_json(await self._call("PUT", url, body=wrap(record))))

    async def _discover(self) -> dict[str, Any]:
        return parse_json(await send(self._client, "GET", f"{self.settings.instance_url}/entity",
                                     system=SYSTEM, read_error=read_error))

    @staticmethod
    def _served(discovery: Mapping[str, Any]) -> list[str]:
        return [f"{e.get('name')}/{e.get('version')}" for e in discovery.get("endpoints") or []]

    async def _check_endpoint(self) -> None:
        """A wrong endpoint version answers 404 on every route: say so, and what would work."""
        try:
            served = self._served(await self._discover())
        except (ExternalError, ValueError):
            return
        wanted = self.settings.endpoint
        if wanted in served:
            return
        same_name = [e for e in served if e.startswith(f"{self.settings.endpoint_name}/")]
        raise ConfigurationError(
            f"Acumatica endpoint {wanted} is not served by this instance; it serves: "
            f"{', '.join(same_name or served) or 'no endpoints'}",
            system=SYSTEM, status=404,
            resolution="set the connection's endpoint version to one of those")

    # --- customers ---------------------------------------------------------------------------

    async def _find_customer(self, external_id: str, email: str) -> dict[str, Any] | None:
        """One look-up for both matches (``or``); the AccountRef match wins over an e-mail
        match. Only when a full page of e-mail matches hides whether the AccountRef one exists
        is it looked up on its own."""
        by_ref = f"AccountRef eq {odata_literal(external_id)}"
        where = f"{by_ref} or MainContact/Email eq {odata_literal(email)}" if email else by_ref
        rows = await self._customers(where)
        ours = [r for r in rows if _text(r.get("AccountRef")).casefold() == external_id.casefold()]
        if not ours and len(rows) == PAGE_SIZE:
            ours = await self._customers(by_ref)
        return (ours or rows or [None])[0]

    async def _customers(self, where: str) -> list[dict[str, Any]]:
        return await self._list("Customer", {"$filter": where, "$top": PAGE_SIZE,
                                             "$expand": "MainContact,MainContact/Address"})

    async def upsert_customer(self, customer: Customer, external_id: str) -> ErpDocumentRef:
        found = await self._find_customer(external_id, customer.email)
        if found is None:
            record = _without_empty({"CustomerID": customer_id_for(external_id),
                                     **_customer_fields(customer, with_email=True),
                                     "AccountRef": external_id})
            if self.settings.customer_class:
                record["CustomerClass"] = self.settings.customer_class
            saved = await self._put("Customer", record)
            return self._customer_ref(saved, external_id, created=True)
        changes = _changes(found, _customer_fields(customer, with_email=False))
        if not found.get("AccountRef"):
            changes["AccountRef"] = external_id
        if changes:
            await self._put("Customer", {"CustomerID": found["CustomerID"], **changes})
        return self._customer_ref(found, external_id, created=False)

    @staticmethod
    def _customer_ref(record: Mapping[str, Any], external_id: str, *,
                      created: bool) -> ErpDocumentRef:
        return ErpDocumentRef(system=SYSTEM, kind="customer", number=record["CustomerID"],
                              id=record.get("id") or "", external_ref=external_id, created=created)

    # --- documents: invoices, credit memos, sales orders, payments ----------------------------

    def _where(self, kind: DocumentKind) -> tuple[_Entity, str]:
        """The entity and type a document of ``kind`` is posted as on this connection."""
        if kind == "receipt":
            return PAYMENT, PAYMENT_TYPE
        if kind == "invoice" and self.settings.document_type == "sales_order":
            return SALES_ORDER, ORDER_TYPE
        return SALES_INVOICE, _doc_type(kind)

    async def find_document(self, kind: DocumentKind, external_ref: str) -> ErpDocumentRef | None:
        """Also finishes the release of a document an interrupted attempt left unreleased."""
        entity, doc_type = self._where(kind)
        rows = await self._list(entity.name, {
            "$filter": f"ExternalRef eq {odata_literal(external_ref)} and "
                       f"{entity.type_field} eq {odata_literal(doc_type)}",
            "$select": entity.select, "$top": 1})
        if not rows:
            return None
        row = rows[0]
        if self.settings.release_documents and entity.release and row.get("Status") == "Balanced":
            await self._release(entity, row)
        return entity.ref(kind, row, external_ref, created=False)

    async def create_document(self, doc: ErpDocument) -> ErpDocumentRef:
        if doc.kind == "invoice" and self.settings.document_type == "sales_order":
            return await self._create(SALES_ORDER, doc, _order_record(doc), "Details,TaxDetails")
        memo_of = doc.applies_to if doc.kind == "credit_memo" else None
        application = await self._memo_application(memo_of, doc.total) if memo_of else None
        expand = "Details,TaxDetails" + (",ApplicationsCreditMemo" if application else "")
        return await self._create(SALES_INVOICE, doc, _invoice_record(doc, application), expand)

    async def _create(self, entity: _Entity, doc: ErpDocument, record: dict[str, Any],
                      expand: str) -> ErpDocumentRef:
        try:
            saved = await self._put(entity.name, record, {"$expand": expand})
        except Rejected as exc:
            mapped = _mapping_error(exc, doc)
            if mapped is exc:
                raise
            raise mapped from exc
        ref = entity.ref(doc.kind, saved, doc.external_ref, created=True)
        await self._check_total(entity, doc.total, doc.currency, ref, saved)
        if self.settings.release_documents and entity.release:
            await self._release(entity, saved)
        return ref

    async def create_receipt(self, receipt: ReceiptDocument) -> ErpDocumentRef:
        """A Payment applied to the invoice (or sales order) up to what is still open on it; the
        rest stays on the payment as its available balance. A receipt follows its invoice, so
        the invoice is taken to be open for its whole total; only when Acumatica refuses that
        application (more than is open, or nothing open: paid, closed) is the balance read and
        the payment sent again with what is open."""
        cash_account = self.settings.cash_account_for(receipt.currency)
        target = receipt.applies_to

        def record(applied: Decimal) -> dict[str, Any]:
            return _payment_record(receipt, cash_account, applied)

        try:
            saved = await self._put_applied("Payment", record, receipt.amount, target)
        except Rejected as exc:
            mapped = _receipt_mapping_error(exc, receipt, cash_account)
            if mapped is exc:
                raise
            raise mapped from exc
        ref = PAYMENT.ref("receipt", saved, receipt.external_ref, created=True)
        await self._check_total(PAYMENT, receipt.amount, receipt.currency, ref, saved)
        if self.settings.release_documents:
            await self._release(PAYMENT, saved)
        return ref

    async def _put_applied(self, entity: str, record: Callable[[Decimal], dict[str, Any]],
                           amount: Decimal, target: ErpDocumentRef) -> dict[str, Any]:
        """PUT ``record(applied)`` applying ``amount`` up to the target's total (what a fresh
        invoice or order has open); refused on its application row, again with what is open."""
        if target.total is not None:
            try:
                return await self._put(entity, record(min(amount, target.total)))
            except Rejected as exc:
                if not _application_refused(exc):
                    raise
        return await self._put(entity, record(await self._applicable(amount, target)))

    async def _applicable(self, amount: Decimal, target: ErpDocumentRef) -> Decimal:
        return min(amount, await self._open_balance(target))

    async def _open_balance(self, ref: ErpDocumentRef) -> Decimal:
        """What is still open on the invoice or order a credit memo or payment applies to:
        a paid invoice (closed) or an unreleased one takes no application."""
        if _is_invoice(ref):
            row = await self._get(f"SalesInvoice/{quote(ref.doc_type or 'Invoice')}/"
                                  f"{quote(ref.number)}", {"$select": "Status,Balance"})
            return to_decimal(row.get("Balance") or 0) if row.get("Status") == "Open" else ZERO
        row = await self._get(f"SalesOrder/{quote(ref.doc_type)}/{quote(ref.number)}",
                              {"$expand": "Totals", "$select": "Status,Totals/UnpaidBalance"})
        if row.get("Status") in CLOSED_ORDER:
            return ZERO
        return to_decimal((row.get("Totals") or {}).get("UnpaidBalance") or 0)

    async def _memo_application(self, memo_of: ErpDocumentRef,
                                total: Decimal) -> dict[str, Any] | None:
        """A credit memo reduces what is still open on its invoice. One for a paid invoice, or
        for an order posted as a sales order, stays open as the customer's credit."""
        if not _is_invoice(memo_of):
            return None
        # Read first: a refund usually meets an invoice its receipt has paid already (closed),
        # where an optimistic application would be refused and cost a second PUT.
        amount = await self._applicable(total, memo_of)
        if amount <= 0:
            return None
        return {"DocType": memo_of.doc_type or "Invoice", "ReferenceNbr": memo_of.number,
                "AmountPaid": amount}

    async def _check_total(self, entity: _Entity, expected: Decimal, currency: str,
                           ref: ErpDocumentRef, saved: Mapping[str, Any]) -> None:
        """Store and ERP must agree to the cent; a disagreeing draft is removed, not released."""
        erp_total = quantize(ref.total, currency) if ref.total is not None else None
        if erp_total == quantize(expected, currency):
            return
        try:
            await self._call("DELETE", f"{entity.name}/{saved['id']}")
            fate = "the unreleased document was deleted"
        except (ExternalError, KeyError):
            fate = f"delete the unreleased {ref.label} in Acumatica"
        raise Rejected(
            f"Acumatica totals {ref.label} to {erp_total} {currency} but the store's total "
            f"is {quantize(expected, currency)}; {fate}", system=SYSTEM,
            resolution="make Acumatica keep the store's prices, discounts and tax (customer tax "
                       "zone, tax calculation settings), then replay the order")

    async def _release(self, entity: _Entity, record: Mapping[str, Any]) -> None:
        """Run the entity's release action and wait for the long-running operation to finish."""
        keys = entity.keys(record)
        resp = await self._call("POST", f"{entity.name}/{entity.release}",
                                body={"entity": wrap(keys)})
        location = resp.headers.get("Location")
        if resp.status_code != 202 or not location:
            return
        status_url = str(resp.request.url.join(location))  # polls answer 202 without a Location
        deadline = asyncio.get_running_loop().time() + RELEASE_TIMEOUT
        wait = self.release_first_poll_seconds
        while resp.status_code == 202:
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"release of {' '.join(map(str, keys.values()))} still "
                                  f"running after {RELEASE_TIMEOUT:.0f} s", system=SYSTEM)
            await asyncio.sleep(wait)
            wait = self.release_poll_seconds
            resp = await self._call("GET", status_url)

    # --- catalog -----------------------------------------------------------------------------

    async def iter_item_changes(self, since: datetime) -> AsyncIterator[ItemChange]:
        async for row in self._pages("StockItem", {
                "$filter": f"LastModifiedDateTime gt {odata_datetime(since)}",
                "$expand": "WarehouseDetails", "$select": ITEM_FIELDS}):
            yield self._item_change(row)

    def _item_change(self, row: Mapping[str, Any]) -> ItemChange:
        def amount(name: str) -> Decimal | None:
            return to_decimal(row[name]) if row.get(name) is not None else None

        return ItemChange(sku=row["InventoryID"], price=amount("DefaultPrice"),
                          cost=amount("LastCost"),
                          quantity_available=self._on_hand(row.get("WarehouseDetails")),
                          modified_at=parse_datetime(row["LastModifiedDateTime"]))

    def _on_hand(self, details: list[Mapping[str, Any]] | None) -> Decimal | None:
        """On hand in the configured warehouse, or in all of them; None when not read."""
        if details is None:
            return None
        wanted = self.settings.warehouse_id
        rows = [d for d in details if wanted is None or d.get("WarehouseID") == wanted]
        return sum((to_decimal(d.get("QtyOnHand")) for d in rows), Decimal(0))

    # --- shipments ---------------------------------------------------------------------------

    async def iter_shipments(self, since: datetime) -> AsyncIterator[Shipment]:
        """Shipments confirmed (or further) and modified after ``since``, one canonical
        Shipment per sales order on each (a consolidated shipment names several), whose
        ``external_ref`` is that order's ExternalRef. Shipments come from sales orders, so an
        invoice-only connection (``document_type="invoice"``) yields nothing: its orders were
        posted as AR invoices, which are never shipped. The Orders tab names only
        OrderType/OrderNbr, so each order is read once per run for its ExternalRef."""
        if self.settings.document_type != "sales_order":
            return
        statuses = " or ".join(f"Status eq {odata_literal(s)}" for s in SHIPPED_STATUSES)
        refs: dict[tuple[str, str], str] = {}
        async for row in self._pages("Shipment", {
                "$filter": f"LastModifiedDateTime gt {odata_datetime(since)} and ({statuses})",
                "$expand": "Orders,Packages", "$select": SHIPMENT_FIELDS}):
            if row.get("Operation") == "Receipt":
                continue  # goods coming back (a return), not a shipment to the buyer
            for order_type, order_nbr, shipment_id in _shipment_orders(row):
                key = (order_type, order_nbr)
                if key not in refs:
                    refs[key] = await self._order_ref(order_type, order_nbr)
                yield _shipment(row, shipment_id, refs[key])

    async def _order_ref(self, order_type: str, order_nbr: str) -> str:
        """The sales order's ExternalRef ("" for an order deleted since, or not ours)."""
        try:
            row = await self._get(f"SalesOrder/{quote(order_type)}/{quote(order_nbr)}",
                                  {"$select": "OrderType,OrderNbr,ExternalRef"})
        except NotFound:
            return ""
        return _text(row.get("ExternalRef"))

    # --- health ------------------------------------------------------------------------------

    async def ping(self) -> dict[str, Any]:
        """What works: discovery, the configured endpoint, sign-in and one entity read."""
        report: dict[str, Any] = {"instance": self.settings.instance_url,
                                  "endpoint": self.settings.endpoint}
        try:
            discovery = await self._discover()
            report["served_endpoints"] = self._served(discovery)
            report["endpoint_served"] = self.settings.endpoint in report["served_endpoints"]
            report["build"] = (discovery.get("version") or {}).get("acumaticaBuildVersion")
        except (ExternalError, ValueError) as exc:
            report["endpoint_served"] = None
            report["discovery_error"] = str(exc)
        try:
            await self._list("Customer", {"$select": "CustomerID", "$top": 1})
            report["entity_access"] = True
        except ExternalError as exc:
            report["entity_access"] = False
            report["entity_error"] = str(exc)
        report["ok"] = bool(report["entity_access"] and report["endpoint_served"] is not False)
        return report


def _text(value: Any) -> str:
    """A string field as read (an empty field renders as ``{}``)."""
    return value.strip() if isinstance(value, str) else ""


def _shipment_orders(row: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(OrderType, OrderNbr, shipment id) of each order on a shipment: the id is the
    ShipmentNbr, qualified by the order when one shipment carries several."""
    number = _text(row.get("ShipmentNbr"))
    orders = [(_text(o.get("OrderType")), _text(o.get("OrderNbr"))) for o in row.get("Orders") or []]
    orders = list(dict.fromkeys(o for o in orders if o[1]))
    if len(orders) == 1:
        return [(*orders[0], number)]
    return [(t, n, f"{number}/{t}/{n}") for t, n in orders]


def _shipment(row: Mapping[str, Any], shipment_id: str, external_ref: str) -> Shipment:
    """Every package's tracking number (packages are not split by order)."""
    tracking = [_text(p.get("TrackingNbr")) for p in row.get("Packages") or []]
    modified = parse_datetime(row["LastModifiedDateTime"])
    shipped = _text(row.get("ShipmentDate"))
    return Shipment(shipment_id=shipment_id, external_ref=external_ref,
                    tracking_numbers=list(dict.fromkeys(t for t in tracking if t)),
                    carrier=_text(row.get("ShipVia")),
                    shipped_at=parse_datetime(shipped) if shipped else modified,
                    modified_at=modified)


def _doc_type(kind: str) -> str:
    try:
        return DOC_TYPES[kind]
    except KeyError:
        raise Rejected(f"the Acumatica connector does not post {kind} documents",
                       system=SYSTEM) from None


def _application_refused(exc: Rejected) -> bool:
    """Acumatica refused a payment's application row: more than the document has open, or a
    document that takes none (paid, closed, not released)."""
    return any(key.startswith(APPLICATION_ROWS) for key in exc.field_errors)


def _is_invoice(ref: ErpDocumentRef) -> bool:
    return not ref.doc_type or ref.doc_type in INVOICE_TYPES


def _tax_details(doc: ErpDocument) -> list[dict[str, Any]]:
    return [{"TaxID": t.tax_code, "TaxableAmount": t.taxable_amount, "TaxAmount": t.amount}
            for t in doc.taxes]


def _invoice_record(doc: ErpDocument, application: dict[str, Any] | None) -> dict[str, Any]:
    """A SalesInvoice (Invoice or Credit Memo); a memo's lines point at the invoice's lines."""
    memo_of = doc.applies_to if doc.kind == "credit_memo" else None
    if memo_of is not None and not _is_invoice(memo_of):
        memo_of = None  # a sales order has no invoice lines to point at
    record: dict[str, Any] = {
        "Type": _doc_type(doc.kind), "CustomerID": doc.customer_key, "Date": doc.date,
        "Description": doc.description, "CustomerOrder": doc.order_number,
        "ExternalRef": doc.external_ref, "Currency": doc.currency, "Hold": False,
        "Details": [_detail(line, memo_of) for line in doc.lines]}
    if doc.taxes:
        record["TaxDetails"] = _tax_details(doc)
    if application is not None:
        record["ApplicationsCreditMemo"] = [application]
    return record


def _detail(line: DocumentLine, memo_of: ErpDocumentRef | None) -> dict[str, Any]:
    row: dict[str, Any] = {"InventoryID": line.item_id, "Qty": line.quantity,
                           "UnitPrice": line.unit_price, "DiscountAmount": line.discount,
                           "ManualPrice": True, "TransactionDescr": line.description}
    if line.discount:
        row["ManualDiscount"] = True  # keep the store's discount; no discount engine rerun
    if memo_of is not None and line.source_line_id:
        row["OrigInvType"] = memo_of.doc_type or "Invoice"
        row["OrigInvNbr"] = memo_of.number
    return row


def _order_record(doc: ErpDocument) -> dict[str, Any]:
    """A SalesOrder carrying the store's prices, discounts and tax (no recalculation)."""
    record: dict[str, Any] = {
        "OrderType": ORDER_TYPE, "CustomerID": doc.customer_key, "Date": doc.date,
        "Description": doc.description, "CustomerOrder": doc.order_number,
        "ExternalRef": doc.external_ref, "CurrencyID": doc.currency, "Hold": False,
        "DisableAutomaticDiscountUpdate": True, "DisableAutomaticTaxCalculation": True,
        "Details": [_order_detail(line) for line in doc.lines]}
    if doc.taxes:
        record["TaxDetails"] = _tax_details(doc)
    return record


def _order_detail(line: DocumentLine) -> dict[str, Any]:
    row: dict[str, Any] = {"InventoryID": line.item_id, "OrderQty": line.quantity,
                           "UnitPrice": line.unit_price, "DiscountAmount": line.discount,
                           "ManualPrice": True, "LineDescription": line.description}
    if line.discount:
        row["ManualDiscount"] = True
    return row


def _payment_record(receipt: ReceiptDocument, cash_account: str | None,
                    applied: Decimal) -> dict[str, Any]:
    """A Payment of the receipt's amount, ``applied`` of it to the invoice or sales order."""
    target = receipt.applies_to
    record: dict[str, Any] = {
        "Type": PAYMENT_TYPE, "CustomerID": receipt.customer_key,
        "PaymentMethod": receipt.payment_method, "PaymentAmount": receipt.amount,
        "PaymentRef": receipt.reference[:PAYMENT_REF_LENGTH], "ExternalRef": receipt.external_ref,
        "Description": receipt.description, "ApplicationDate": receipt.date,
        "CurrencyID": receipt.currency, "Hold": False}
    if cash_account:
        record["CashAccount"] = cash_account
    if applied > 0 and _is_invoice(target):
        record["DocumentsToApply"] = [{"DocType": target.doc_type or "Invoice",
                                       "ReferenceNbr": target.number, "AmountPaid": applied}]
    elif applied > 0:
        record["OrdersToApply"] = [{"OrderType": target.doc_type, "OrderNbr": target.number,
                                    "AppliedToOrder": applied}]
    return record


def open_connector(settings: Mapping[str, Any], credentials: Mapping[str, Any], *,
                   tokens: TokenStore, transport: httpx.AsyncBaseTransport | None = None,
                   on_settings_change: Any = None) -> AcumaticaErp:
    """The :class:`connectors.base.ConnectorFactory` of Acumatica."""
    return AcumaticaErp(AcumaticaSettings.model_validate(settings),
                        AcumaticaCredentials.model_validate(credentials), tokens,
                        transport=transport)

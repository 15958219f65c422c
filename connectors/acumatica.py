"""Acumatica ERP over the contract-based REST API (system endpoint, version-locked URL).

This module is the client; the wire format and record builders are
:mod:`connectors.acumatica_mapping`. Every general field travels wrapped as ``{"value": ...}``;
its :func:`wrap` and :func:`unwrap` are the only places that know it. Money is read with
``parse_float=Decimal`` and written as exact JSON numbers. Invoices and credit memos are
``SalesInvoice`` records carrying the store's prices, discounts and tax as computed; with
``document_type="sales_order"`` an order's invoice is a ``SalesOrder`` instead (refunds and
adjustments stay ``SalesInvoice`` documents). Receipts are ``Payment`` records applied to the
invoice (``DocumentsToApply``) or to the sales order (``OrdersToApply``); a refund's cash-back is
a ``Payment`` of type ``Refund`` applied to the refund's credit memo. Every document is
found again by its ``ExternalRef`` (on SalesInvoice and Payment the document's own External
Reference, on SalesOrder the order's ``CustomerRefNbr``); a payment's ``PaymentRef`` carries the
processor's transaction id for bank matching. Confirmed ``Shipment`` records of those sales
orders go back to the store (:meth:`AcumaticaErp.iter_shipments`).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, field_validator

from connectors.acumatica_mapping import (CREDIT_MEMO_TYPE, ORDER_TYPE, PAYMENT, PAYMENT_TYPE,
                                          REFUND_TYPE,
                                          SALES_INVOICE, SALES_ORDER, SYSTEM, DocumentEntity,
                                          application_refused, refund_record, refund_refused,
                                          changes_to, customer_fields, customer_id_for,
                                          email_match, owned_customer,
                                          customer_ref, doc_type_of, invoice_record, is_invoice,
                                          listed_kind,
                                          mapping_error, odata_datetime, odata_literal,
                                          order_record, parse_datetime, payment_record, read_error,
                                          receipt_mapping_error, shipment_from_row, shipment_orders,
                                          text_of, unwrap, with_query, without_empty, wrap)
from connectors.auth import OAuth2Auth, TokenStore
from connectors.documents import (CustomerMatch, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument)
from connectors.errors import ConfigurationError, ExternalError, NotFound, Rejected, Unavailable
from connectors.http import build_client, parse_json, returned_url, send, to_json
from connectors.model import (ZERO, Customer, DocumentKind, ErpDocumentRef, ItemChange, Shipment,
                              quantize, to_decimal)

PAGE_SIZE = 100

RELEASE_TIMEOUT = 120.0  # seconds a release may run before the attempt is retried
ITEM_FIELDS = ("InventoryID,DefaultPrice,LastCost,LastModifiedDateTime,"
               "WarehouseDetails/WarehouseID,WarehouseDetails/QtyOnHand")
# A shipment has left the warehouse once confirmed; invoicing it moves it on to the later
# statuses (their API strings are not in the reference: the SO302000 status list).
SHIPPED_STATUSES = ("Confirmed", "Completed", "Invoiced", "Partially Invoiced")
SHIPMENT_FIELDS = ("ShipmentNbr,Status,Operation,ShipVia,ShipmentDate,LastModifiedDateTime,"
                   "Orders/OrderType,Orders/OrderNbr,Packages/TrackingNbr")


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
    allow_insecure_http: bool = False  # plain-HTTP instance_url: a local test server only

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
            transport=transport, verify=verify, system=SYSTEM, timeout=settings.timeout,
            allow_insecure_http=settings.allow_insecure_http)
        self._client = build_client(settings.base_url, auth=self._auth, verify=verify,
                                    timeout=settings.timeout, transport=transport, system=SYSTEM,
                                    allow_insecure_http=settings.allow_insecure_http)

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

    async def _candidates(self, ids: list[str], email: str) -> list[dict[str, Any]]:
        """One look-up for both kinds of match (``or``): ours by derived CustomerID and, when
        ``email`` is given, the merchant's by e-mail (Acumatica compares text
        case-insensitively). Only when a full page of e-mail matches hides whether ours exists
        is it looked up on its own."""
        ours = " or ".join(f"CustomerID eq {odata_literal(customer_id_for(i))}" for i in ids)
        if not email:
            return await self._customers(ours)
        rows = await self._customers(f"{ours} or MainContact/Email eq {odata_literal(email)}")
        if owned_customer(rows, ids) is None and len(rows) == PAGE_SIZE:
            rows = await self._customers(ours) + rows
        return rows

    async def _customers(self, where: str) -> list[dict[str, Any]]:
        return await self._list("Customer", {"$filter": where, "$top": PAGE_SIZE,
                                             "$expand": "MainContact,MainContact/Address"})

    async def upsert_customer(self, customer: Customer, external_id: str, *,
                              aliases: Sequence[str] = (),
                              match: CustomerMatch = "own") -> ErpDocumentRef:
        """Ours (:func:`owned_customer`) takes the store's changes (an empty store field never
        blanks Acumatica's); with ``match`` "email" the merchant's customer with the e-mail is
        booked to as it is; else ours is created under ``external_id``."""
        ids = [external_id, *aliases]
        email = customer.email.strip()
        rows = await self._candidates(ids, email if match == "email" else "")
        ours = owned_customer(rows, ids)
        if ours is not None:
            changes = changes_to(ours, customer_fields(customer, with_email=False))
            if not text_of(ours.get("AccountRef")):
                changes["AccountRef"] = external_id
            if changes:
                await self._put("Customer", {"CustomerID": ours["CustomerID"], **changes})
            return customer_ref(ours, external_id, created=False)
        if match == "email" and (theirs := email_match(rows, email)) is not None:
            return customer_ref(theirs, external_id, created=False)
        record = without_empty({"CustomerID": customer_id_for(external_id),
                                **customer_fields(customer, with_email=True),
                                "AccountRef": external_id})
        if self.settings.customer_class:
            record["CustomerClass"] = self.settings.customer_class
        saved = await self._put("Customer", record)
        return customer_ref(saved, external_id, created=True)

    # --- documents: invoices, credit memos, sales orders, payments ----------------------------

    def _where(self, kind: DocumentKind) -> tuple[DocumentEntity, str]:
        """The entity and type a document of ``kind`` is posted as on this connection."""
        if kind == "receipt":
            return PAYMENT, PAYMENT_TYPE
        if kind == "refund_payment":
            return PAYMENT, REFUND_TYPE
        if kind == "invoice" and self.settings.document_type == "sales_order":
            return SALES_ORDER, ORDER_TYPE
        return SALES_INVOICE, doc_type_of(kind)

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
            return await self._create(SALES_ORDER, doc, order_record(doc), "Details,TaxDetails")
        memo_of = doc.applies_to if doc.kind == "credit_memo" else None
        application = await self._memo_application(memo_of, doc.total) if memo_of else None
        expand = "Details,TaxDetails" + (",ApplicationsCreditMemo" if application else "")
        return await self._create(SALES_INVOICE, doc, invoice_record(doc, application), expand)

    async def _create(self, entity: DocumentEntity, doc: ErpDocument, record: dict[str, Any],
                      expand: str) -> ErpDocumentRef:
        try:
            saved = await self._put(entity.name, record, {"$expand": expand})
        except Rejected as exc:
            mapped = mapping_error(exc, doc)
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
            return payment_record(receipt, cash_account, applied)

        try:
            saved = await self._put_applied("Payment", record, receipt.amount, target)
        except Rejected as exc:
            mapped = receipt_mapping_error(exc, receipt, cash_account)
            if mapped is exc:
                raise
            raise mapped from exc
        ref = PAYMENT.ref("receipt", saved, receipt.external_ref, created=True)
        await self._check_total(PAYMENT, receipt.amount, receipt.currency, ref, saved)
        if self.settings.release_documents:
            await self._release(PAYMENT, saved)
        return ref

    async def create_refund_payment(self, doc: RefundPaymentDocument) -> ErpDocumentRef:
        """A Refund (AR302000) of what the store paid back, applied to the refund's credit
        memo (or to the receipt whose unapplied balance a refund before the payment left) and
        released: the memo or payment closes and the customer's balance is back at zero. A
        document with less open than the refund parks naming the manual refund (the amount is
        what :meth:`refund_credit` or :meth:`receipt_credit` read, so only a change in between
        refuses it)."""
        what = "payment" if doc.applies_to.kind == "receipt" else "credit memo"
        if not self.settings.release_documents:  # a refund applies to released documents only
            raise Rejected(
                f"{what} {doc.applies_to.number} was left unreleased (release_documents="
                f"false) and Acumatica applies a refund only to a released {what}",
                system=SYSTEM,
                resolution=f"release {what} {doc.applies_to.number} in Acumatica, then "
                           f"replay the order to book the refund of {doc.amount} {doc.currency}")
        cash_account = self.settings.cash_account_for(doc.currency)
        try:
            saved = await self._put("Payment", refund_record(doc, cash_account))
        except Rejected as exc:
            mapped = receipt_mapping_error(exc, doc, cash_account)  # type: ignore[arg-type]
            mapped = refund_refused(exc, doc) if mapped is exc else mapped
            if mapped is exc:
                raise
            raise mapped from exc
        ref = PAYMENT.ref("refund_payment", saved, doc.external_ref, created=True)
        await self._check_total(PAYMENT, doc.amount, doc.currency, ref, saved)
        await self._release(PAYMENT, saved)
        return ref

    async def refund_credit(self, memo: ErpDocumentRef) -> Decimal:
        """The credit a refund's credit memo still holds (its Balance): what its application
        to a still-open invoice at creation left over, i.e. the money paid back. A closed memo
        holds none."""
        row = await self._get(f"SalesInvoice/{quote(memo.doc_type or CREDIT_MEMO_TYPE)}/"
                              f"{quote(memo.number)}", {"$select": "Status,Balance"})
        return ZERO if row.get("Status") == "Closed" else to_decimal(row.get("Balance") or 0)

    async def receipt_credit(self, receipt: ErpDocumentRef) -> Decimal:
        """What a receipt (Payment) holds unapplied: its AvailableBalance once released (Open),
        the customer's credit a refund booked before the payment left on it."""
        row = await self._get(f"Payment/{quote(receipt.doc_type or PAYMENT_TYPE)}/"
                              f"{quote(receipt.number)}", {"$select": "Status,AvailableBalance"})
        if row.get("Status") != "Open":
            return ZERO
        return max(ZERO, to_decimal(row.get("AvailableBalance") or 0))

    async def _put_applied(self, entity: str, record: Callable[[Decimal], dict[str, Any]],
                           amount: Decimal, target: ErpDocumentRef) -> dict[str, Any]:
        """PUT ``record(applied)`` applying ``amount`` up to the target's total (what a fresh
        invoice or order has open); refused on its application row, again with what is open."""
        if target.total is not None:
            try:
                return await self._put(entity, record(min(amount, target.total)))
            except Rejected as exc:
                if not application_refused(exc):
                    raise
        return await self._put(entity, record(await self._applicable(amount, target)))

    async def _applicable(self, amount: Decimal, target: ErpDocumentRef) -> Decimal:
        return min(amount, await self._open_balance(target))

    async def _open_balance(self, ref: ErpDocumentRef) -> Decimal:
        """What is still open on the invoice or order a credit memo or payment applies to:
        a paid invoice (closed) or an unreleased one takes no application."""
        if is_invoice(ref):
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
        if not is_invoice(memo_of):
            return None
        # Read first: a refund usually meets an invoice its receipt has paid already (closed),
        # where an optimistic application would be refused and cost a second PUT.
        amount = await self._applicable(total, memo_of)
        if amount <= 0:
            return None
        return {"DocType": memo_of.doc_type or "Invoice", "ReferenceNbr": memo_of.number,
                "AmountPaid": amount}

    async def _check_total(self, entity: DocumentEntity, expected: Decimal, currency: str,
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

    async def _release(self, entity: DocumentEntity, record: Mapping[str, Any]) -> None:
        """Run the entity's release action and wait for the long-running operation to finish."""
        keys = entity.keys(record)
        resp = await self._call("POST", f"{entity.name}/{entity.release}",
                                body={"entity": wrap(keys)})
        location = resp.headers.get("Location")
        if resp.status_code != 202 or not location:
            return
        # Polls answer 202 without a Location; the bearer token goes to the configured host only.
        status_url = returned_url(self._client.base_url, location, system=SYSTEM)
        deadline = asyncio.get_running_loop().time() + RELEASE_TIMEOUT
        wait = self.release_first_poll_seconds
        while resp.status_code == 202:
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"release of {' '.join(map(str, keys.values()))} still "
                                  f"running after {RELEASE_TIMEOUT:.0f} s", system=SYSTEM)
            await asyncio.sleep(wait)
            wait = self.release_poll_seconds
            resp = await self._call("GET", status_url)

    # --- reconciliation ----------------------------------------------------------------------

    async def iter_documents(self, prefix: str, since: date) -> AsyncIterator[ErpDocumentRef]:
        """Every invoice (or sales order), credit memo and payment whose ExternalRef starts
        with ``prefix`` and whose date is ``since`` or later, all pages. Refunds paid back
        (Payment type "Refund") are not receipts and are left out."""
        after = odata_datetime(datetime(since.year, since.month, since.day, tzinfo=timezone.utc))
        mine = f"startswith(ExternalRef,{odata_literal(prefix)}) eq true"
        sources = [(SALES_INVOICE, f"{mine} and Date ge {after}"),
                   (PAYMENT, f"{mine} and ApplicationDate ge {after} and "
                             f"Type eq {odata_literal(PAYMENT_TYPE)}")]
        if self.settings.document_type == "sales_order":
            sources.append((SALES_ORDER, f"{mine} and Date ge {after}"))
        for entity, where in sources:
            async for row in self._pages(entity.name, {"$filter": where,
                                                       "$select": entity.select}):
                kind = listed_kind(entity, row)
                if kind is not None:
                    yield entity.ref(kind, row, text_of(row.get("ExternalRef")), created=False)

    # --- catalog -----------------------------------------------------------------------------

    async def iter_item_changes(self, since: datetime) -> AsyncIterator[ItemChange]:
        async for row in self._pages("StockItem", {
                "$filter": f"LastModifiedDateTime gt {odata_datetime(since)}",
                "$expand": "WarehouseDetails", "$select": ITEM_FIELDS}):
            yield self._item_change(row)

    async def missing_items(self, item_ids: set[str]) -> set[str]:
        """The item ids the instance has neither as a stock nor as a non-stock item. Read only:
        ``connections check`` reports them before an order parks on them."""
        missing = set(item_ids)
        for entity in ("StockItem", "NonStockItem"):
            ids = sorted(missing)
            for i in range(0, len(ids), 20):
                where = " or ".join(f"InventoryID eq {odata_literal(x)}" for x in ids[i:i + 20])
                for row in await self._list(entity, {"$filter": where, "$select": "InventoryID"}):
                    found = text_of(row.get("InventoryID")).casefold()
                    missing = {x for x in missing if x.casefold() != found}
        return missing

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
            for order_type, order_nbr, shipment_id in shipment_orders(row):
                key = (order_type, order_nbr)
                if key not in refs:
                    refs[key] = await self._order_ref(order_type, order_nbr)
                yield shipment_from_row(row, shipment_id, refs[key])

    async def _order_ref(self, order_type: str, order_nbr: str) -> str:
        """The sales order's ExternalRef ("" for an order deleted since, or not ours)."""
        try:
            row = await self._get(f"SalesOrder/{quote(order_type)}/{quote(order_nbr)}",
                                  {"$select": "OrderType,OrderNbr,ExternalRef"})
        except NotFound:
            return ""
        return text_of(row.get("ExternalRef"))

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


def open_connector(settings: Mapping[str, Any], credentials: Mapping[str, Any], *,
                   tokens: TokenStore, transport: httpx.AsyncBaseTransport | None = None,
                   on_settings_change: Any = None) -> AcumaticaErp:
    """The :class:`connectors.base.ConnectorFactory` of Acumatica."""
    return AcumaticaErp(AcumaticaSettings.model_validate(settings),
                        AcumaticaCredentials.model_validate(credentials), tokens,
                        transport=transport)

"""Acumatica's wire format and record builders (the mapper): the ``{"value": ...}``
wrapping, error bodies and the mapping errors they mean, OData query literals, and the
SalesInvoice, SalesOrder, Payment and Customer records built from canonical documents.
Pure functions, no I/O; the client is :mod:`connectors.acumatica`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from connectors.documents import (DocumentLine, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument, erp_type_of)
from connectors.errors import MappingMissing, Rejected
from connectors.http import parse_json
from connectors.model import Customer, DocumentKind, ErpDocumentRef, Shipment, to_decimal

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

APPLICATION_ROWS = ("DocumentsToApply[", "OrdersToApply[")  # a Payment's application rows


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


def mapping_error(exc: Rejected, doc: ErpDocument) -> Rejected:
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


def receipt_mapping_error(exc: Rejected, receipt: ReceiptDocument,
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


def odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def odata_datetime(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return f"datetimeoffset'{aware.isoformat(timespec='milliseconds')}'"


def with_query(path: str, params: Mapping[str, Any]) -> str:
    """``$``-parameters as the guide writes them: ``$filter=A%20eq%20'x'``, values encoded."""
    return path + "?" + urlencode(params, quote_via=quote, safe="$',/")


def customer_id_for(external_id: str) -> str:
    """Deterministic CustomerID: a retry after a lost response upserts the same record."""
    return "C" + hashlib.sha256(external_id.encode()).hexdigest()[:9].upper()


def owned_customer(rows: list[dict[str, Any]], ids: list[str]) -> dict[str, Any] | None:
    """The customer ml-connector created for one of the buyer's ``ids`` (the first id first):
    its CustomerID is derived from that id, which no merchant-made customer has. An
    ``AccountRef`` proves nothing: a merchant may type anything there."""
    by_id = {text_of(r.get("CustomerID")).casefold(): r for r in rows}
    return next((by_id[c] for i in ids if (c := customer_id_for(i).casefold()) in by_id), None)


def email_match(rows: list[dict[str, Any]], email: str) -> dict[str, Any] | None:
    """A customer whose main contact has ``email``, compared case-insensitively."""
    wanted = email.strip().casefold()
    return next((r for r in rows if wanted and text_of(
        (r.get("MainContact") or {}).get("Email")).casefold() == wanted), None)


def customer_fields(customer: Customer, *, with_email: bool) -> dict[str, Any]:
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


def without_empty(record: Mapping[str, Any]) -> dict[str, Any]:
    """A new record names only what the store knows; Acumatica fills in the class defaults."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            value = without_empty(value)
        if value not in ("", None, {}):
            out[key] = value
    return out


def changes_to(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The wanted fields that differ; empty store values never clear what the ERP has."""
    out: dict[str, Any] = {}
    for key, value in wanted.items():
        if isinstance(value, Mapping):
            sub = changes_to(current.get(key) or {}, value)
            if sub:
                out[key] = sub
        elif value and (current.get(key) or "") != value:
            out[key] = value
    return out


@dataclass(frozen=True)
class DocumentEntity:
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


SALES_INVOICE = DocumentEntity("SalesInvoice", "Type", "ReferenceNbr", "Amount", "Currency",
                               "ReleaseSalesInvoice")
SALES_ORDER = DocumentEntity("SalesOrder", "OrderType", "OrderNbr", "OrderTotal", "CurrencyID")
PAYMENT = DocumentEntity("Payment", "Type", "ReferenceNbr", "PaymentAmount", "CurrencyID",
                         "ReleasePayment")


def listed_kind(entity: DocumentEntity, row: Mapping[str, Any]) -> DocumentKind | None:
    """The canonical kind of a listed document: a sales order is an order's invoice; an AR
    Credit Memo a credit memo; a Payment a receipt; anything else (a Debit Memo, a
    refund) is not one of ml-connector's documents."""
    doc_type = row.get(entity.type_field)
    if entity is SALES_ORDER:
        return "invoice"
    if entity is PAYMENT:
        return "receipt" if doc_type == PAYMENT_TYPE else None
    return {"Invoice": "invoice", "Credit Memo": "credit_memo"}.get(doc_type or "")


def text_of(value: Any) -> str:
    """A string field as read (an empty field renders as ``{}``)."""
    return value.strip() if isinstance(value, str) else ""


def shipment_orders(row: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(OrderType, OrderNbr, shipment id) of each order on a shipment: the id is the
    ShipmentNbr, qualified by the order when one shipment carries several."""
    number = text_of(row.get("ShipmentNbr"))
    orders = [(text_of(o.get("OrderType")), text_of(o.get("OrderNbr")))
              for o in row.get("Orders") or []]
    orders = list(dict.fromkeys(o for o in orders if o[1]))
    if len(orders) == 1:
        return [(*orders[0], number)]
    return [(t, n, f"{number}/{t}/{n}") for t, n in orders]


def shipment_from_row(row: Mapping[str, Any], shipment_id: str, external_ref: str) -> Shipment:
    """Every package's tracking number (packages are not split by order)."""
    tracking = [text_of(p.get("TrackingNbr")) for p in row.get("Packages") or []]
    modified = parse_datetime(row["LastModifiedDateTime"])
    shipped = text_of(row.get("ShipmentDate"))
    return Shipment(shipment_id=shipment_id, external_ref=external_ref,
                    tracking_numbers=list(dict.fromkeys(t for t in tracking if t)),
                    carrier=text_of(row.get("ShipVia")),
                    shipped_at=parse_datetime(shipped) if shipped else modified,
                    modified_at=modified)


def doc_type_of(kind: str) -> str:
    return erp_type_of(kind, DOC_TYPES, "Acumatica", SYSTEM)


def application_refused(exc: Rejected) -> bool:
    """Acumatica refused a payment's application row: more than the document has open, or a
    document that takes none (paid, closed, not released)."""
    return any(key.startswith(APPLICATION_ROWS) for key in exc.field_errors)


def is_invoice(ref: ErpDocumentRef) -> bool:
    return not ref.doc_type or ref.doc_type in INVOICE_TYPES


def _tax_details(doc: ErpDocument) -> list[dict[str, Any]]:
    return [{"TaxID": t.tax_code, "TaxableAmount": t.taxable_amount, "TaxAmount": t.amount}
            for t in doc.taxes]


def invoice_record(doc: ErpDocument, application: dict[str, Any] | None) -> dict[str, Any]:
    """A SalesInvoice (Invoice or Credit Memo); a memo's lines point at the invoice's lines."""
    memo_of = doc.applies_to if doc.kind == "credit_memo" else None
    if memo_of is not None and not is_invoice(memo_of):
        memo_of = None  # a sales order has no invoice lines to point at
    record: dict[str, Any] = {
        "Type": doc_type_of(doc.kind), "CustomerID": doc.customer_key, "Date": doc.date,
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


def order_record(doc: ErpDocument) -> dict[str, Any]:
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


def payment_record(receipt: ReceiptDocument, cash_account: str | None,
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
    if applied > 0 and is_invoice(target):
        record["DocumentsToApply"] = [{"DocType": target.doc_type or "Invoice",
                                       "ReferenceNbr": target.number, "AmountPaid": applied}]
    elif applied > 0:
        record["OrdersToApply"] = [{"OrderType": target.doc_type, "OrderNbr": target.number,
                                    "AppliedToOrder": applied}]
    return record


def customer_ref(record: Mapping[str, Any], external_id: str, *,
                 created: bool) -> ErpDocumentRef:
    return ErpDocumentRef(system=SYSTEM, kind="customer", number=record["CustomerID"],
                          id=record.get("id") or "", external_ref=external_id, created=created)


# A refund's cash-back is a Payment of type Refund applied to the credit memo (reference §5:
# "A Refund is Type = "Refund" with DocumentsToApply pointing at the credit memo"). The
# application's DocType is sent as the display value, as for invoices ("Invoice"): the
# internal code ("CRM") is unconfirmed.
REFUND_TYPE = "Refund"
CREDIT_MEMO_TYPE = "Credit Memo"


def refund_record(doc: RefundPaymentDocument, cash_account: str | None) -> dict[str, Any]:
    """A Refund paying ``doc.amount`` back, all of it applied to the refund's credit memo, or
    to the receipt (a Payment) whose unapplied balance a refund before the payment left."""
    memo = doc.applies_to
    default_type = PAYMENT_TYPE if memo.kind == "receipt" else CREDIT_MEMO_TYPE
    record: dict[str, Any] = {
        "Type": REFUND_TYPE, "CustomerID": doc.customer_key, "PaymentMethod": doc.payment_method,
        "PaymentAmount": doc.amount, "PaymentRef": doc.reference[:PAYMENT_REF_LENGTH],
        "ExternalRef": doc.external_ref, "Description": doc.description,
        "ApplicationDate": doc.date, "CurrencyID": doc.currency, "Hold": False,
        "DocumentsToApply": [{"DocType": memo.doc_type or default_type,
                              "ReferenceNbr": memo.number, "AmountPaid": doc.amount}]}
    if cash_account:
        record["CashAccount"] = cash_account
    return record


def refund_refused(exc: Rejected, doc: RefundPaymentDocument) -> Rejected:
    """A credit memo that cannot take the whole refund (it was applied to its invoice, which
    then owed less than the refund: its payment was not booked before it) parks naming the
    manual step; other refusals are left as they are."""
    if not application_refused(exc):
        return exc
    memo = doc.applies_to
    what = "payment" if memo.kind == "receipt" else "credit memo"
    return Rejected(
        f"Acumatica refused the refund of {doc.amount} {doc.currency} on {what} "
        f"{memo.number}: {'; '.join(exc.field_errors.values())}", system=SYSTEM,
        status=exc.status, field_errors=exc.field_errors,
        resolution=f"{what} {memo.number} has less open than the {doc.amount} paid back; "
                   f"in Acumatica (Payments and Applications, AR302000) enter a Refund of "
                   f"{doc.amount} {doc.currency} for customer {doc.customer_key}, External Ref "
                   f"{doc.external_ref}, applied to what holds the customer's credit (the credit "
                   f"memo's rest and the payment's unapplied balance), then replay the order")

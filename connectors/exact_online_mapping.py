"""Exact Online's wire format and record builders (the mapper): OData v2 literals and the
``d`` envelope, its error bodies, accounts <-> canonical customers, sales invoice lines with the
store's VAT, goods deliveries -> shipments. Pure functions, no I/O; the client is
:mod:`connectors.exact_online`.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from connectors.documents import DocumentLine, ErpDocument, erp_type_of
from connectors.errors import MappingMissing, Rejected, Unavailable
from connectors.model import (ZERO, Address, Customer, DocumentKind, ErpDocumentRef, Shipment,
                              to_decimal)

SYSTEM = "exact_online"

YOUR_REF_MAX = 30  # field length not in the reference: the conservative choice (see docstring)
INVOICE, CREDIT_NOTE = 8020, 8021
DOC_TYPES = {"invoice": INVOICE, "adjustment_invoice": INVOICE, "credit_memo": CREDIT_NOTE}
TYPE_NAMES = {INVOICE: "Sales invoice", CREDIT_NOTE: "Sales credit note"}

# The external id(s) of an account live in its Remarks as "[ml-connector WC-C5]": the account
# code is a one-way digest of the external id, and an account matched by e-mail keeps its own.
EXTERNAL_ID_TAG = re.compile(r"\[ml-connector ([^\]\s]+)\]")


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


def customer_code_for(external_id: str) -> str:
    """A deterministic numeric account code (Exact codes are numeric), so a retry after a lost
    response finds the account it created."""
    return str(int(hashlib.sha256(external_id.encode()).hexdigest()[:15], 16) % 10**17)


def is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def optional_amount(value: Any) -> Decimal | None:
    return to_decimal(value) if value is not None else None


def doc_type_of(kind: str) -> int:
    return erp_type_of(kind, DOC_TYPES, "Exact Online", SYSTEM)


def your_ref_for(external_ref: str) -> str:
    """The external reference must fit whole: a cut one would no longer identify the document."""
    if len(external_ref) > YOUR_REF_MAX:
        raise Rejected(f"external reference {external_ref!r} is longer than the {YOUR_REF_MAX} "
                       f"characters Exact Online keeps", system=SYSTEM,
                       resolution="shorten the connection's document prefix, then replay")
    return external_ref


def account_fields(customer: Customer) -> dict[str, Any]:
    a = customer.billing
    return {"Name": customer.display_name[:100], "Email": customer.email.strip(),
            "AddressLine1": a.line1, "AddressLine2": a.line2, "City": a.city,
            "Postcode": a.postcode, "State": a.state,
            "Country": a.country.upper() if a.country else "",
            "Phone": customer.phone or a.phone}


def owned_account(rows: list[dict[str, Any]], ids: list[str]) -> dict[str, Any] | None:
    """The account ml-connector created for one of the buyer's ``ids`` (the first id first):
    its code is derived from that id. A tag in an account's Remarks proves nothing (an earlier
    version tagged accounts it matched by e-mail, and a user may type anything there)."""
    by_code = {str(r.get("Code") or "").strip(): r for r in rows}
    return next((by_code[c] for i in ids if (c := customer_code_for(i)) in by_code), None)


def customer_account_by_email(rows: list[dict[str, Any]], email: str) -> dict[str, Any] | None:
    """An account that already is a customer (status C) with ``email``, compared
    case-insensitively. A suspect, prospect or supplier-only account is no customer: booking
    an invoice to it would make it one."""
    wanted = email.strip().casefold()
    return next((r for r in rows if wanted and r.get("Status") == "C"
                 and str(r.get("Email") or "").strip().casefold() == wanted), None)


def external_id_tag(external_id: str) -> str:
    return f"[ml-connector {external_id}]"


def external_ids_of(account: Mapping[str, Any]) -> list[str]:
    return EXTERNAL_ID_TAG.findall(str(account.get("Remarks") or ""))


def customer_from_account(account: Mapping[str, Any]) -> Customer:
    """The inverse of :func:`account_fields` where the data allows: an account has one
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


def order_numbers(delivery: Mapping[str, Any]) -> list[int]:
    return sorted({int(ln["SalesOrderNumber"]) for ln in _lines_of(delivery, "GoodsDeliveryLines")
                   if ln.get("SalesOrderNumber") is not None})


def shipment_from_delivery(delivery: Mapping[str, Any], order_number: int, your_ref: str, *,
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


def line_vat(doc: ErpDocument) -> list[Decimal]:
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


def orphan_vat(doc: ErpDocument) -> list[tuple[str, Decimal]]:
    """Tax amounts whose code no line carries (edit adjustments book tax without lines)."""
    carried = {ln.tax_code for ln in doc.lines if ln.tax_code}
    return [(t.tax_code, t.amount) for t in doc.taxes if t.tax_code not in carried and t.amount]


def line_record(line: DocumentLine, item: str, gl_account: str, cost_center: str, vat: Decimal,
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


def unknown_item(line: DocumentLine) -> MappingMissing:
    if line.sku:
        return MappingMissing(
            f"Exact Online has no item {line.item_id} for store SKU {line.sku}", system=SYSTEM,
            resolution=f"map SKU {line.sku} to an Exact Online item code (ml-connector connections "
                       f"map CONNECTION --sku {line.sku}=ITEMCODE) or create the item in Exact")
    return MappingMissing(
        f"Exact Online has no item {line.item_id} ({line.kind} line '{line.description}')",
        system=SYSTEM, resolution=f"create the item {line.item_id} in Exact Online or point the "
                                  f"connection's mappings at an existing item code")


def unknown_gl(line: DocumentLine, code: str) -> MappingMissing:
    what = f"SKU {line.sku}" if line.sku else f"{line.kind} line '{line.description}'"
    return MappingMissing(
        f"Exact Online has no G/L account {code} (rule of {what})", system=SYSTEM,
        resolution=f"create G/L account {code} in Exact Online or change the connection's GL rule "
                   f"for {what} (ml-connector connections map CONNECTION --gl-rule ...)")


def mapping_error(exc: Rejected) -> Rejected:
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


def customer_ref(record: Mapping[str, Any], external_id: str, *,
                 created: bool) -> ErpDocumentRef:
    return ErpDocumentRef(system=SYSTEM, kind="customer", doc_type="Account",
                          number=str(record["ID"]), id=str(record["ID"]),
                          external_ref=external_id, created=created)


def document_ref(kind: DocumentKind, record: Mapping[str, Any], external_ref: str, *,
                 created: bool) -> ErpDocumentRef:
    amount = record.get("AmountFC")
    type_ = int(record.get("Type") or DOC_TYPES.get(kind, INVOICE))
    return ErpDocumentRef(system=SYSTEM, kind=kind, doc_type=TYPE_NAMES.get(type_, str(type_)),
                          number=str(record.get("InvoiceNumber") or record["InvoiceID"]),
                          id=str(record["InvoiceID"]), external_ref=external_ref,
                          total=abs(to_decimal(amount)) if amount is not None else None,
                          currency=record.get("Currency"), created=created)


def receipt_ref(line: Mapping[str, Any], external_ref: str, entry: Mapping[str, Any] | None,
                *, created: bool, kind: DocumentKind = "receipt") -> ErpDocumentRef:
    """A bank entry line: a receipt (money in) or a refund's cash-back (money out, a negative
    line); ``total`` is the amount moved, positive either way."""
    number = (entry or {}).get("EntryNumber") or line.get("EntryNumber") or line.get("EntryID")
    amount = line.get("AmountFC")
    return ErpDocumentRef(system=SYSTEM, kind=kind, doc_type="Bank entry",
                          number=str(number), id=str(line.get("EntryID") or ""),
                          external_ref=external_ref,
                          total=abs(to_decimal(amount)) if amount is not None else None,
                          currency=(entry or {}).get("Currency"), created=created)

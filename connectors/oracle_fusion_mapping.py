"""Oracle Fusion's wire format and record builders (the mapper): ``q`` filter literals, the
REST error document and SOAP faults, the mapping errors they mean, parties and addresses,
invoice and credit-memo lines with the store's tax spread over them, and document references
read back. Pure functions, no I/O; the client is :mod:`connectors.oracle_fusion`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import httpx

from connectors.documents import DocumentLine, ErpDocument
from connectors.errors import ExternalError, MappingMissing, Rejected
from connectors.http import parse_json
from connectors.model import (ZERO, Address, Customer, DocumentKind, ErpDocumentRef, quantize,
                              to_decimal)

SYSTEM = "oracle_fusion"
UNIT_PLACES = Decimal("0.000001")


def q_literal(value: str) -> str:
    """A quoted literal of the v2+ ``q`` expression syntax."""
    return "'" + value.replace("'", "''") + "'"


def q_equals(**fields: str) -> str:
    return " and ".join(f"{name}={q_literal(str(value))}" for name, value in fields.items())


def q_prefix_since(field: str, prefix: str, date_field: str, since: date) -> str:
    """``field`` starting with ``prefix`` (``LIKE`` with ``%``) and dated ``since`` or later."""
    like = prefix.replace("'", "''") + "%"
    return f"{field} LIKE '{like}' and {date_field} >= {q_literal(since.isoformat())}"


def id_text(value: Any) -> str:
    """Ids are int64 numbers, or strings from framework v9 on: keep them as text."""
    return "" if value is None else str(value)


def read_error(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    """Oracle's own message: the v4+ ``o:errorDetails`` problem document, or (v1–v3) the
    plain text body."""
    try:
        body = parse_json(resp)
    except ValueError:
        return (resp.text.strip()[:500] or resp.reason_phrase), {}
    if isinstance(body, dict) and isinstance(body.get("parts"), list) and body["parts"]:
        body = body["parts"][0].get("payload")  # a refused batch answers its failing part
    if not isinstance(body, dict):
        return str(body)[:500], {}
    details = [d for d in body.get("o:errorDetails") or [] if isinstance(d, dict)]
    if details:
        fields: dict[str, str] = {}
        parts = []
        for d in details:
            text = str(d.get("detail") or "")
            code = str(d.get("o:errorCode") or "")
            parts.append(f"{code}: {text}" if code and code not in text else text)
            if d.get("o:errorPath"):
                fields[str(d["o:errorPath"])] = text
        return "; ".join(p for p in parts if p), fields
    for key in ("detail", "title", "message"):
        if isinstance(body.get(key), str):
            return body[key], {}
    return str(body)[:500], {}


def open_installment_of(rows: list[dict[str, Any]]) -> tuple[str, Decimal] | None:
    """The first installment with a balance due: its id and what it still owes."""
    for row in rows:
        balance = to_decimal(row.get("InstallmentBalanceDue"))
        if balance > 0:
            return id_text(row.get("InstallmentId")), balance
    return None


def fault_string(text: str) -> str | None:
    """The ``faultstring`` of a SOAP fault, None when the body is not one."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    fault = _find(root, "Fault")
    if fault is None:
        return None
    return (xml_text(fault, "faultstring") or xml_text(fault, "Text") or "SOAP fault").strip()


def sdo_xml(fields: Mapping[str, Any]) -> str:
    """Service data object fields as ``ns:`` elements (nested objects nest), text escaped."""
    return "".join(f"<ns:{k}>{sdo_xml(v) if isinstance(v, Mapping) else escape(str(v))}</ns:{k}>"
                   for k, v in fields.items())


def _find(root: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((el for el in root.iter() if el.tag.rpartition("}")[2] == name), None)


def xml_text(root: ElementTree.Element, name: str) -> str:
    el = _find(root, name)
    return (el.text or "").strip() if el is not None else ""


def mapping_error(exc: Rejected, doc: ErpDocument) -> ExternalError:
    """A refused document whose cause is an unknown item or tax code becomes MappingMissing."""
    text = f"{exc.message} {' '.join(exc.field_errors)}"
    if "ItemNumber" in text or "INVENTORY_ITEM" in text:
        for line in doc.lines:
            if line.item_id and _names(exc.message, line.item_id):
                return _unknown_item(line, exc)
    if "Tax" in text:
        codes = {ln.tax_code for ln in doc.lines if ln.tax_code} | {t.tax_code for t in doc.taxes}
        for code in sorted(codes):
            if _names(exc.message, code):
                return MappingMissing(
                    f"Oracle Fusion refused tax code {code}: {exc.message}", system=SYSTEM,
                    status=exc.status, field_errors=exc.field_errors,
                    resolution=f"create the tax rate / classification {code} in Oracle Fusion or "
                               f"map the store's tax rate to an existing one (ml-connector "
                               f"connections map CONNECTION --tax RATE=CODE)")
    return exc


def _names(message: str, word: str) -> bool:
    """``word`` appears in ``message`` as a whole code (not inside a longer one)."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", message) is not None


def _unknown_item(line: DocumentLine, exc: Rejected) -> MappingMissing:
    if line.sku:
        return MappingMissing(
            f"Oracle Fusion refused item {line.item_id} of store SKU {line.sku}: {exc.message}",
            system=SYSTEM, status=exc.status, field_errors=exc.field_errors,
            resolution=f"map SKU {line.sku} to an Oracle Fusion item number (ml-connector "
                       f"connections map CONNECTION --sku {line.sku}=ITEM) or create the item")
    return MappingMissing(
        f"Oracle Fusion refused item {line.item_id} ('{line.description}'): {exc.message}",
        system=SYSTEM, status=exc.status, field_errors=exc.field_errors,
        resolution=f"create the item {line.item_id} in Oracle Fusion or point the connection's "
                   f"mappings at an existing item")


def primary_address(party: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first ``PrimaryAddress`` row of a party read with ``expand`` (a plain list, or a
    collection object from framework v3 on); None when it has none or it was not expanded."""
    addresses = party.get("PrimaryAddress")
    if isinstance(addresses, Mapping):
        addresses = addresses.get("items")
    return dict(addresses[0]) if isinstance(addresses, list) and addresses else None


def party_fields(customer: Customer) -> dict[str, str]:
    return {"OrganizationName": customer.display_name[:360], "EmailAddress": customer.email.strip(),
            "PhoneNumber": customer.phone or customer.billing.phone}


def address_fields(a: Address, default_country: str) -> dict[str, str]:
    return {k: v for k, v in {
        "Address1": a.line1, "Address2": a.line2, "City": a.city, "State": a.state,
        "PostalCode": a.postcode, "Country": a.country.upper() or default_country}.items() if v}


def differences(current: Mapping[str, Any], wanted: Mapping[str, str]) -> dict[str, str]:
    """Wanted values Oracle does not hold yet; an empty wanted value never blanks one."""
    return {k: v for k, v in wanted.items() if v and str(current.get(k) or "") != v}


def owned_party(rows: list[dict[str, Any]], source_system: str,
                ids: list[str]) -> dict[str, Any] | None:
    """The party ml-connector created for one of the buyer's ``ids`` (the first id first): it
    carries the connection's source system with that id as its reference (Oracle keeps one
    party per source reference). A party with the same e-mail or name is not ours."""
    refs = {str(r.get("SourceSystemReferenceValue") or ""): r for r in rows
            if r.get("SourceSystem") == source_system}
    return next((refs[i] for i in ids if i in refs), None)


def parties_by_email(rows: list[dict[str, Any]], email: str) -> list[dict[str, Any]]:
    """The parties whose e-mail is ``email``, compared case-insensitively."""
    wanted = email.strip().casefold()
    return [r for r in rows
            if wanted and str(r.get("EmailAddress") or "").strip().casefold() == wanted]


def q_ours_or_email(source_system: str, ids: list[str], email: str) -> str:
    """The ``q`` filter of a customer look-up: the parties of the buyer's ids and, when
    ``email`` is given, those with the e-mail in any case (``UPPER``: Oracle compares text
    as stored)."""
    refs = " or ".join(q_equals(SourceSystemReferenceValue=i) for i in ids)
    where = f"{q_equals(SourceSystem=source_system)} and ({refs})"
    return f"({where}) or UPPER(EmailAddress)={q_literal(email.upper())}" if email else where


def line_kind_word(line: DocumentLine) -> str:
    return f"SKU {line.sku}" if line.sku else f"{line.kind} line '{line.description}'"


def allocate_taxes(doc: ErpDocument) -> dict[int, dict[str, Decimal]]:
    """The document's tax per code (the store's figures) spread over its lines (1-based):
    each line keeps the store's own tax, the rounding remainder of a code goes to its
    largest line, and a code no line carries (an adjustment) sits on the first line — so
    Oracle's line taxes add up to the store's tax to the cent."""
    out: dict[int, dict[str, Decimal]] = {}
    for tax in doc.taxes:
        numbered = [(n, ln) for n, ln in enumerate(doc.lines, start=1)
                    if ln.tax_code == tax.tax_code]
        if not numbered:
            if doc.lines and tax.amount:
                out.setdefault(1, {})[tax.tax_code] = tax.amount
            continue
        for n, ln in numbered:
            if ln.tax:
                out.setdefault(n, {})[tax.tax_code] = ln.tax
        rest = tax.amount - sum((ln.tax for _, ln in numbered), ZERO)
        if rest:
            n = max(numbered, key=lambda item: abs(item[1].amount))[0]
            line_taxes = out.setdefault(n, {})
            line_taxes[tax.tax_code] = line_taxes.get(tax.tax_code, ZERO) + rest
    return {n: {c: a for c, a in taxes.items() if a} for n, taxes in out.items()}


def document_line(n: int, line: DocumentLine, taxes: Mapping[str, Decimal], qty_field: str,
                  text_field: str, amount_field: str, sign: int, currency: str,
                  tax_regime_code: str = "") -> dict[str, Any]:
    """Oracle lines carry no discount: the store's net amount is the line amount, with a
    unit price that multiplies back to it (or one unit of it when none does)."""
    qty, unit = line.quantity, line.unit_price
    if line.discount or quantize(qty * unit, currency) != line.amount:
        unit = (line.amount / qty).quantize(UNIT_PLACES)
        if quantize(qty * unit, currency) != line.amount:
            qty, unit = Decimal(1), line.amount
    text = line.description or line.item_id
    if line.discount:
        text = f"{text} (discount {line.discount})"
    row: dict[str, Any] = {"LineNumber": n, text_field: text[:240], "ItemNumber": line.item_id,
                           qty_field: qty, "UnitSellingPrice": sign * unit,
                           amount_field: sign * line.amount}
    code = line.tax_code or next(iter(taxes), "")
    if code:
        row["TaxClassificationCode"] = code
    if taxes:
        child = ("receivablesInvoiceLineTaxLines" if sign > 0
                 else "receivablesCreditMemoLineTaxLines")
        row[child] = [tax_line(c, sign * amount, tax_regime_code)
                      for c, amount in taxes.items()]
    return row


def tax_line(code: str, amount: Decimal, tax_regime_code: str = "") -> dict[str, Any]:
    tax: dict[str, Any] = {"TaxRateCode": code, "TaxAmount": amount}
    if tax_regime_code:
        tax["TaxRegimeCode"] = tax_regime_code
    return tax


def invoice_ref(kind: DocumentKind, row: Mapping[str, Any], *, created: bool) -> ErpDocumentRef:
    amount = row.get("EnteredAmount")
    return ErpDocumentRef(system=SYSTEM, kind=kind, doc_type=row.get("TransactionType") or "",
                          number=str(row["TransactionNumber"]),
                          id=id_text(row.get("CustomerTransactionId")),
                          external_ref=str(row["TransactionNumber"]),
                          total=to_decimal(amount) if amount is not None else None,
                          currency=row.get("InvoiceCurrencyCode"), created=created)


def memo_ref(row: Mapping[str, Any], *, created: bool) -> ErpDocumentRef:
    """Oracle's memo amounts are negative; the reference carries the size of the credit."""
    amount = row.get("EnteredAmount")
    return ErpDocumentRef(system=SYSTEM, kind="credit_memo",
                          doc_type=row.get("TransactionType") or "",
                          number=str(row["TransactionNumber"]),
                          id=id_text(row.get("CustomerTransactionId")),
                          external_ref=str(row["TransactionNumber"]),
                          total=abs(to_decimal(amount)) if amount is not None else None,
                          currency=row.get("CreditMemoCurrency"), created=created)


def receipt_ref(row: Mapping[str, Any], *, created: bool) -> ErpDocumentRef:
    amount = row.get("Amount")
    return ErpDocumentRef(system=SYSTEM, kind="receipt", doc_type="Standard Receipt",
                          number=str(row["ReceiptNumber"]),
                          id=id_text(row.get("StandardReceiptId")),
                          external_ref=str(row["ReceiptNumber"]),
                          total=to_decimal(amount) if amount is not None else None,
                          currency=row.get("Currency"), created=created)

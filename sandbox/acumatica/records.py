"""Plain copies of records for the control surface, and merging of PUT bodies into records."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.acumatica.model import _same_key, new_id
from sandbox.acumatica.views import plain

if TYPE_CHECKING:
    from sandbox.acumatica.contract import Shape


def _plain_header(record: dict, kind: str | None, number: str, date: str, currency: str,
                  customer_order: str | None) -> dict:
    """The read-out fields every document kind has, from the fields it names them by."""
    return {
        "id": record["id"], "type": kind, "number": record.get(number), "customer": record.get("CustomerID"),
        "date": record[date].date().isoformat() if record.get(date) else None,
        "description": record.get("Description"), "external_ref": record.get("ExternalRef"),
        "customer_order": customer_order, "currency": record.get(currency), "hold": record.get("Hold"),
        "status": record.get("Status")}


def plain_document(doc: dict) -> dict:
    applications = doc.get("ApplicationsCreditMemo") or []
    applied_here = doc.get("ApplicationsInvoice") or []
    return {
        **_plain_header(doc, doc.get("Type"), "ReferenceNbr", "Date", "Currency", doc.get("CustomerOrder")),
        "detail_total": plain(doc.get("DetailTotal")),
        "tax_total": plain(doc.get("TaxTotal")), "amount": plain(doc.get("Amount")),
        "balance": plain(doc.get("Balance")),
        "lines": [_plain_line(line, "Qty", "TransactionDescr") for line in doc.get("Details") or []],
        "taxes": _plain_taxes(doc),
        "applications": [_plain_application(a.get("DocType"), a.get("ReferenceNbr"), a.get("AmountPaid"))
                         for a in applications]
                        + [_plain_application(a.get("DocType"), a.get("AdjustingDocReferenceNbr"), a.get("AmountPaid"))
                           for a in applied_here],
    }


def plain_payment(payment: dict) -> dict:
    """A payment in the read-out's shape: ``amount`` is PaymentAmount, ``balance`` the unapplied rest."""
    return {
        **_plain_header(payment, payment.get("Type"), "ReferenceNbr", "ApplicationDate", "CurrencyID", None),
        "detail_total": None, "tax_total": None,
        "amount": plain(payment.get("PaymentAmount")), "balance": plain(payment.get("AvailableBalance")),
        "payment_method": payment.get("PaymentMethod"), "cash_account": payment.get("CashAccount"),
        "payment_ref": payment.get("PaymentRef"), "lines": [], "taxes": [],
        "applications": [_plain_application(a.get("DocType"), a.get("ReferenceNbr"), a.get("AmountPaid"))
                         for a in payment.get("DocumentsToApply") or []]
                        + [_plain_application(a.get("OrderType"), a.get("OrderNbr"), a.get("AppliedToOrder"))
                           for a in payment.get("OrdersToApply") or []],
    }


def plain_order(order: dict) -> dict:
    """A sales order in the read-out's shape (type "Sales Order"; ``balance`` is the unpaid balance)."""
    totals = order.get("Totals") or {}
    return {
        **_plain_header(order, "Sales Order", "OrderNbr", "Date", "CurrencyID", order.get("CustomerOrder")),
        "order_type": order.get("OrderType"), "detail_total": plain(totals.get("LineTotalAmount")),
        "tax_total": plain(order.get("TaxTotal")), "amount": plain(order.get("OrderTotal")),
        "balance": plain(totals.get("UnpaidBalance")),
        "lines": [_plain_line(line, "OrderQty", "LineDescription") for line in order.get("Details") or []],
        "taxes": _plain_taxes(order),
        "applications": [_plain_application(p.get("DocType"), p.get("ReferenceNbr"), p.get("AppliedToOrder"))
                         for p in order.get("Payments") or []],
    }


def _plain_line(line: dict, qty_field: str, description_field: str) -> dict:
    return {"line_nbr": line.get("LineNbr"), "inventory_id": line.get("InventoryID"),
            "description": line.get(description_field), "qty": plain(line.get(qty_field)),
            "unit_price": plain(line.get("UnitPrice")), "discount_amount": plain(line.get("DiscountAmount")),
            "amount": plain(line.get("Amount")), "manual_price": line.get("ManualPrice"),
            "orig_inv_type": line.get("OrigInvType"), "orig_inv_nbr": line.get("OrigInvNbr"),
            "orig_inv_line_nbr": line.get("OrigInvLineNbr")}


def _plain_taxes(doc: dict) -> list[dict]:
    return [{"tax_id": t.get("TaxID"), "taxable_amount": plain(t.get("TaxableAmount")),
             "tax_amount": plain(t.get("TaxAmount"))} for t in doc.get("TaxDetails") or []]


def _plain_application(doc_type: Any, number: Any, amount: Any) -> dict:
    return {"doc_type": doc_type, "reference_nbr": number, "amount_paid": plain(amount)}


def plain_customer(customer: dict) -> dict:
    return {"id": customer["id"], "customer_id": customer.get("CustomerID"),
            "customer_name": customer.get("CustomerName"), "customer_class": customer.get("CustomerClass"),
            "status": customer.get("Status"), "currency": customer.get("CurrencyID"),
            "account_ref": customer.get("AccountRef"), "email": customer.get("Email"),
            "main_contact": plain(customer.get("MainContact") or {})}


# --------------------------------------------------------------------------- merging requests into records

def merge(contract: dict[str, Shape], shape: Shape, target: dict, changes: dict) -> None:
    """Apply sent values to a record; read-only fields keep what the business logic decided."""
    for key, value in changes.items():
        if key in shape.readonly or key in ("id", "delete"):
            continue
        if key in shape.linked:
            merge(contract, contract[shape.linked[key]], target.setdefault(key, {"id": new_id()}), value)
        elif key in shape.details:
            merge_lines(contract, contract[shape.details[key]], target.setdefault(key, []), value)
        else:
            target[key] = value


def merge_lines(contract: dict[str, Shape], shape: Shape, lines: list[dict], changes: list[dict]) -> None:
    for change in changes:
        line = _match_line(shape, lines, change)
        if change.get("delete"):
            if line is not None:
                lines.remove(line)
            continue
        if line is None:
            line = {"id": new_id()}
            lines.append(line)
        merge(contract, shape, line, change)


def _match_line(shape: Shape, lines: list[dict], change: dict) -> dict | None:
    if "id" in change:
        return next((line for line in lines if line["id"] == change["id"]), None)
    if shape.line_keys and all(change.get(k) is not None for k in shape.line_keys):
        return next((line for line in lines
                     if all(_same_key(line.get(k), change[k]) for k in shape.line_keys)), None)
    return None

"""Sales invoices and credit memos: line pricing, tax settlement, release and applications."""
from __future__ import annotations

from datetime import datetime, time as dtime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from sandbox.acumatica.model import Errors, _same_key, new_id
from sandbox.acumatica.rules import DocumentRules
from sandbox.acumatica.values import money
from sandbox.acumatica.wire import INACTIVE_ITEM, RELEASED

if TYPE_CHECKING:
    from sandbox.acumatica.state import AcumaticaState


class SalesInvoiceRules(DocumentRules):
    entity = "SalesInvoice"
    prefixes = {"Invoice": "INV", "Credit Memo": "CRM"}
    types, locked = tuple(prefixes), frozenset(RELEASED)

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None:
        return release_problem(state, doc)

    def release(self, state: AcumaticaState, doc: dict) -> None:
        release(state, doc)

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("ReferenceNbr") in (None, "<NEW>"):
            record["ReferenceNbr"] = state.next_number(self.prefixes[record["Type"]])

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        if not self.open_draft(draft, is_new, errors):
            return
        customer = customer_of(state, draft, errors)
        if not draft.get("Currency"):
            draft["Currency"] = (customer or {}).get("CurrencyID") or state.base_currency
        for index, line in enumerate(draft.setdefault("Details", [])):
            price_line(state, draft, line, index, errors, currency=draft["Currency"])
        number_lines(draft["Details"])
        detail_total = sum((line.get("Amount") or Decimal(0) for line in draft["Details"]), Decimal(0))
        draft["DetailTotal"] = money(detail_total, draft["Currency"])
        for index, tax in enumerate(draft.setdefault("TaxDetails", [])):
            settle_tax(state, draft["Currency"], draft["DetailTotal"], tax, index, errors)
        self._totals(draft)
        draft.setdefault("ApplicationsInvoice", [])
        if draft["Type"] == "Credit Memo":
            validate_applications(state, draft, errors)
        else:
            draft["ApplicationsCreditMemo"] = []

    def _totals(self, draft: dict) -> None:
        currency = draft["Currency"]
        tax_total = sum((t.get("TaxAmount") or Decimal(0) for t in draft["TaxDetails"]), Decimal(0))
        draft["TaxTotal"] = money(tax_total, currency)
        draft["Amount"] = draft["DetailTotal"] + draft["TaxTotal"]
        draft["Balance"] = draft["Amount"]
        zero = money(Decimal(0), currency)
        for name in ("DiscountTotal", "PaymentTotal", "FreightPrice", "CashDiscount"):
            draft[name] = zero

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("Hold", False)
        record["Status"] = "On Hold" if record["Hold"] else "Balanced"
        record["Date"] = _midnight(record.get("Date") or state.today())
        if record.get("DueDate"):
            record["DueDate"] = _midnight(record["DueDate"])
        record.setdefault("CreatedDate", state.now())
        record.setdefault("CreditHold", False)
        record.setdefault("IsTaxValid", True)
        record["LastModifiedDate"] = state.now()
        super().complete(state, record)


def customer_of(state: AcumaticaState, draft: dict, errors: Errors) -> dict | None:
    customer_id = draft.get("CustomerID")
    if not customer_id:
        errors.add(("CustomerID",), "'Customer' cannot be empty.")
        return None
    customer = state.find("Customer", CustomerID=customer_id)
    if customer is None:
        errors.add(("CustomerID",), "'Customer' cannot be found in the system.")
    return customer


def _midnight(value: datetime) -> datetime:
    return datetime.combine(value.date(), dtime(), value.tzinfo or timezone.utc)


def number_lines(lines: list[dict]) -> None:
    highest = max((line.get("LineNbr") or 0 for line in lines), default=0)
    for line in lines:
        if not line.get("LineNbr"):
            highest += 1
            line["LineNbr"] = highest


def price_line(state: AcumaticaState, doc: dict, line: dict, index: int, errors: Errors, *, currency: str | None,
               qty_field: str = "Qty", description_field: str = "TransactionDescr") -> None:
    """Validate a document line's item and quantity and compute its amount (invoice and order lines
    differ only in the names of the quantity and description fields)."""
    path = ("Details", index)
    copy_original_line(state, doc, line, path, errors)
    inventory_id = line.get("InventoryID")
    found = state.item(inventory_id) if inventory_id else None
    if not inventory_id:
        errors.add(path + ("InventoryID",), "'Inventory ID' cannot be empty.")
    elif found is None:
        errors.add(path + ("InventoryID",), "'Inventory ID' cannot be found in the system.")
    elif found[1].get("ItemStatus") in INACTIVE_ITEM:
        errors.add(path + ("InventoryID",), f"The status of the '{inventory_id}' item is "
                                            f"{found[1]['ItemStatus']}; it cannot be sold.")
    line[qty_field] = qty = line.get(qty_field) or Decimal(0)
    if qty < 0:
        errors.add(path + (qty_field,), "'Quantity' must be greater than or equal to 0.")
    if found is not None:
        _line_defaults(line, *found, description_field)
    line.setdefault("ManualPrice", line.get("UnitPrice") is not None)
    if line.get("UnitPrice") is None:
        line["UnitPrice"] = found[1].get("DefaultPrice") if found else Decimal(0)
    _line_amount(line, currency, qty)


def _line_defaults(line: dict, entity: str, item: dict, description_field: str) -> None:
    line.setdefault(description_field, item.get("Description"))
    line.setdefault("UOM", item.get("SalesUOM") or item.get("SalesUnit") or "EA")
    if entity == "StockItem":
        line.setdefault("WarehouseID", item.get("DefaultWarehouseID"))


def _line_amount(line: dict, currency: str | None, qty: Decimal) -> None:
    extended = money(qty * (line.get("UnitPrice") or Decimal(0)), currency)
    line["ExtendedPrice"] = extended
    if line.get("DiscountAmount") is None:
        percent = line.get("DiscountPercent") or Decimal(0)
        line["DiscountAmount"] = money(extended * percent / 100, currency)
    line["DiscountAmount"] = money(line["DiscountAmount"], currency)
    line["DiscountPercent"] = (line["DiscountAmount"] * 100 / extended).quantize(Decimal("0.000001")) \
        if extended else Decimal(0)
    line["Amount"] = extended - line["DiscountAmount"]


def copy_original_line(state: AcumaticaState, doc: dict, line: dict, path: tuple, errors: Errors) -> None:
    """Credit memo lines may copy a line of the original invoice (OrigInvType/OrigInvNbr/OrigInvLineNbr)."""
    if not line.get("OrigInvNbr"):
        return
    line.setdefault("OrigInvType", "Invoice")
    original = state.find("SalesInvoice", Type=line["OrigInvType"], ReferenceNbr=line["OrigInvNbr"])
    if original is None or not _same_key(original.get("CustomerID"), doc.get("CustomerID")):
        errors.add(path + ("OrigInvNbr",), "'Orig. Inv. Nbr.' cannot be found in the system.")
        return
    if line.get("OrigInvLineNbr") is None:
        return
    source = next((l for l in original.get("Details") or [] if l.get("LineNbr") == line["OrigInvLineNbr"]), None)
    if source is None:
        errors.add(path + ("OrigInvLineNbr",), "'Orig. Inv. Line Nbr.' cannot be found in the system.")
        return
    for name in ("InventoryID", "UnitPrice", "TransactionDescr", "UOM", "WarehouseID"):
        line.setdefault(name, source.get(name))
    line.setdefault("ManualPrice", True)
    if line.get("Qty") is None:
        line["Qty"] = source.get("Qty")
    if line.get("DiscountAmount") is None and source.get("Qty"):
        line["DiscountAmount"] = (source.get("DiscountAmount") or Decimal(0)) * line["Qty"] / source["Qty"]


def settle_tax(state: AcumaticaState, currency: str, detail_total: Decimal, tax: dict, index: int,
               errors: Errors) -> None:
    tax_id = tax.get("TaxID")
    if not tax_id:
        errors.add(("TaxDetails", index, "TaxID"), "'Tax ID' cannot be empty.")
    elif not any(_same_key(known, tax_id) for known in state.taxes):
        errors.add(("TaxDetails", index, "TaxID"), "'Tax ID' cannot be found in the system.")
    if tax.get("TaxableAmount") is None:
        tax["TaxableAmount"] = detail_total
    tax["TaxableAmount"] = money(tax["TaxableAmount"], currency)
    if tax.get("TaxAmount") is None:
        rate = next((r for known, r in state.taxes.items() if _same_key(known, tax_id)), None)
        tax["TaxAmount"] = tax["TaxableAmount"] * rate / 100 if rate is not None else Decimal(0)
    tax["TaxAmount"] = money(tax["TaxAmount"], currency)


def validate_applications(state: AcumaticaState, memo: dict, errors: Errors) -> None:
    """A credit memo may only be applied to open (released) invoices of its customer, within balances."""
    remaining = memo["Amount"]
    for index, application in enumerate(memo.setdefault("ApplicationsCreditMemo", [])):
        path = ("ApplicationsCreditMemo", index)
        if application.get("DocType") in (None, "INV"):
            application["DocType"] = "Invoice"
        if application["DocType"] != "Invoice":
            errors.add(path + ("DocType",), f"'{application['DocType']}' is not a valid value for 'Doc. Type'.")
            continue
        invoice = state.find("SalesInvoice", Type="Invoice", ReferenceNbr=application.get("ReferenceNbr") or "")
        if (invoice is None or invoice.get("Status") != "Open"
                or not _same_key(invoice.get("CustomerID"), memo.get("CustomerID"))):
            errors.add(path + ("ReferenceNbr",), "'Reference Nbr.' cannot be found in the system.")
            continue
        _fill_application(application, invoice)
        if application.get("AmountPaid") is None:
            application["AmountPaid"] = max(Decimal(0), min(invoice["Balance"], remaining))
        amount = money(application["AmountPaid"], memo["Currency"])
        application["AmountPaid"] = amount
        if amount <= 0 or amount > invoice["Balance"]:
            errors.add(path + ("AmountPaid",), "The amount paid cannot be zero, negative or exceed the "
                                               "balance of the document.")
        remaining -= amount
    if remaining < 0:
        errors.add(("",), "The total amount applied exceeds the amount of the credit memo.")


def _fill_application(application: dict, invoice: dict) -> None:
    application.update(Balance=invoice.get("Balance"), Currency=invoice.get("Currency"),
                       Customer=invoice.get("CustomerID"), CustomerOrder=invoice.get("CustomerOrder"),
                       Date=invoice.get("Date"), Description=invoice.get("Description"),
                       Status=invoice.get("Status"),
                       PostPeriod=invoice["Date"].strftime("%m%Y") if invoice.get("Date") else None)


def release_problem(state: AcumaticaState, doc: dict) -> str | None:
    if doc.get("Status") in RELEASED:
        return "The document has already been released."
    if doc.get("Status") != "Balanced":
        return "The document is on hold and cannot be released."
    errors = Errors()
    if doc.get("Type") == "Credit Memo":
        validate_applications(state, doc, errors)
    return "; ".join(errors.values()) or None


def release(state: AcumaticaState, doc: dict) -> None:
    """Release: the document opens and its credit memo applications reduce both balances."""
    doc["Balance"] = doc["Amount"]
    for application in doc.get("ApplicationsCreditMemo") or []:
        invoice = state.find("SalesInvoice", Type="Invoice", ReferenceNbr=application["ReferenceNbr"])
        doc["Balance"] -= application["AmountPaid"]
        apply_to_invoice(state, invoice, application["AmountPaid"], doc_type="Credit Memo",
                         number=doc["ReferenceNbr"], currency=doc.get("Currency"), customer=doc.get("CustomerID"),
                         description=doc.get("Description"), date=doc.get("Date"))
        application.update(Balance=invoice["Balance"], Status=invoice["Status"])
    doc["Status"] = "Closed" if doc["Balance"] <= 0 else "Open"
    doc["LastModifiedDateTime"] = state.now()


def apply_to_invoice(state: AcumaticaState, invoice: dict, amount: Decimal, *, doc_type: str, number: str,
                     currency: str | None, customer: str | None, description: str | None, date: datetime | None,
                     payment_ref: str | None = None) -> None:
    """A released credit memo or payment reduces an open invoice's balance (Closed at zero) and shows
    on the invoice's ApplicationsInvoice."""
    invoice["Balance"] -= amount
    if doc_type != "Credit Memo":
        invoice["PaymentTotal"] = (invoice.get("PaymentTotal") or Decimal(0)) + amount
    invoice.setdefault("ApplicationsInvoice", []).append({
        "id": new_id(), "DocType": doc_type, "AdjustingDocReferenceNbr": number,
        "AdjustedDocReferenceNbr": invoice["ReferenceNbr"], "AmountPaid": amount, "Balance": invoice["Balance"],
        "Currency": currency, "Customer": customer, "Description": description, "PaymentDate": date,
        "PaymentRef": payment_ref, "Status": "Closed", "AdjustmentNbr": len(invoice["ApplicationsInvoice"]) + 1,
        "CashDiscountTaken": Decimal(0)})
    invoice["Status"] = "Closed" if invoice["Balance"] <= 0 else "Open"
    invoice["LastModifiedDateTime"] = state.now()

"""Payments and refunds: cash accounts, applications to documents, release."""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from sandbox.acumatica.invoices import _midnight, apply_to_invoice, customer_of
from sandbox.acumatica.model import Errors, _same_key, new_id
from sandbox.acumatica.orders import CLOSED_ORDER, ORDER_TYPES
from sandbox.acumatica.rules import DocumentRules
from sandbox.acumatica.values import money
from sandbox.acumatica.wire import RELEASED

if TYPE_CHECKING:
    from sandbox.acumatica.state import AcumaticaState


# ---- payments

PAYMENT_TYPES = ("Payment", "Prepayment", "Refund")
# Adjusted-document types: the internal codes of the guide's example and the display values.
ADJUSTED_DOC_TYPES = {"INV": "Invoice", "DRM": "Debit Memo", "Invoice": "Invoice", "Debit Memo": "Debit Memo"}
# A Refund pays money back against the customer's credit: a credit memo's open balance or a
# payment's unapplied balance (refunding a prepayment is not simulated).
REFUNDED_DOC_TYPES = {"CRM": "Credit Memo", "Credit Memo": "Credit Memo", "PMT": "Payment",
                      "Payment": "Payment"}


class PaymentRules(DocumentRules):
    """AR302000: payment method and cash account from seeded reference data (the cash account defaults
    from the method and fixes the currency), applications to open invoices and to sales orders."""
    entity = "Payment"
    types, locked = PAYMENT_TYPES, frozenset(RELEASED)

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("ReferenceNbr") in (None, "<NEW>"):
            record["ReferenceNbr"] = state.next_number("", "ARPAYMENT")

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        if not self.open_draft(draft, is_new, errors):
            return
        customer = customer_of(state, draft, errors)
        account = cash_account_of(state, draft, errors)
        if not draft.get("CurrencyID"):
            draft["CurrencyID"] = (account or customer or {}).get("CurrencyID") or state.base_currency
        elif account is not None and not _same_key(account["CurrencyID"], draft["CurrencyID"]):
            errors.add(("CurrencyID",), f"The currency {draft['CurrencyID']} differs from the currency "
                                        f"{account['CurrencyID']} of the cash account '{account['CashAccountCD']}'.")
        draft["PaymentAmount"] = money(draft.get("PaymentAmount") or Decimal(0), draft["CurrencyID"])
        if draft["PaymentAmount"] < 0:
            errors.add(("PaymentAmount",), "'Payment Amount' must be greater than or equal to 0.")
        validate_payment_applications(state, draft, errors)

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("Hold", False)
        record["Status"] = "On Hold" if record["Hold"] else "Balanced"
        record["ApplicationDate"] = _midnight(record.get("ApplicationDate") or state.today())
        record.setdefault("ApplicationHistory", [])
        record.setdefault("IsCCPayment", False)
        record["NoteID"] = record["id"]
        super().complete(state, record)

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None:
        if doc.get("Status") in RELEASED:
            return "The document has already been released."
        if doc.get("Status") != "Balanced":
            return "The document is on hold and cannot be released."
        if not doc.get("PaymentAmount"):
            return "The document amount must be greater than zero."
        errors = Errors()
        validate_payment_applications(state, doc, errors)
        if not errors and doc.get("Type") == "Refund" and doc["AvailableBalance"] != 0:
            return "The document is out of balance: a refund must be applied in full."
        return "; ".join(errors.values()) or None

    def release(self, state: AcumaticaState, doc: dict) -> None:
        doc["Status"] = "Closed" if doc["AvailableBalance"] <= 0 and not doc.get("OrdersToApply") else "Open"
        for application in doc.get("DocumentsToApply") or []:
            if application["DocType"] == "Payment":
                refund_payment(state, doc, application)
                continue
            invoice = state.find("SalesInvoice", Type=application["DocType"], ReferenceNbr=application["ReferenceNbr"])
            apply_to_invoice(state, invoice, application["AmountPaid"], doc_type=doc["Type"],
                             number=doc["ReferenceNbr"], currency=doc.get("CurrencyID"),
                             customer=doc.get("CustomerID"), description=doc.get("Description"),
                             date=doc.get("ApplicationDate"), payment_ref=doc.get("PaymentRef"))
            doc["ApplicationHistory"].append({
                "id": new_id(), "AdjustedDocType": invoice["Type"], "AdjustedRefNbr": invoice["ReferenceNbr"],
                "DisplayDocType": invoice["Type"], "DisplayRefNbr": invoice["ReferenceNbr"],
                "AdjustingDocType": doc["Type"], "AdjustingRefNbr": doc["ReferenceNbr"],
                "AmountPaid": application["AmountPaid"], "Balance": invoice["Balance"],
                "CurrencyID": doc.get("CurrencyID"), "Customer": doc.get("CustomerID"),
                "CustomerOrder": invoice.get("CustomerOrder"), "Description": invoice.get("Description"),
                "Date": doc.get("ApplicationDate"), "AdjustmentNbr": len(doc["ApplicationHistory"]) + 1,
                "PostPeriod": doc["ApplicationDate"].strftime("%m%Y")})
        for application in doc.get("OrdersToApply") or []:
            order = state.find("SalesOrder", OrderType=application["OrderType"], OrderNbr=application["OrderNbr"])
            order["Totals"]["UnpaidBalance"] -= application["AppliedToOrder"]
            order.setdefault("Payments", []).append({
                "id": new_id(), "DocType": doc["Type"], "ReferenceNbr": doc["ReferenceNbr"],
                "AppliedToOrder": application["AppliedToOrder"], "PaymentAmount": doc["PaymentAmount"],
                "Balance": doc["AvailableBalance"], "Status": doc["Status"], "PaymentMethod": doc.get("PaymentMethod"),
                "PaymentRef": doc.get("PaymentRef"), "CashAccount": doc.get("CashAccount"),
                "Currency": doc.get("CurrencyID"), "Description": doc.get("Description"),
                "ApplicationDate": doc.get("ApplicationDate"), "Hold": False, "ExternalRef": doc.get("ExternalRef")})
            order["LastModified"] = state.now()
        doc["LastModifiedDateTime"] = state.now()


def refund_payment(state: AcumaticaState, refund: dict, application: dict) -> None:
    """A released refund of a payment's unapplied balance: the payment's available balance falls
    (Closed at zero, as a payment applied in full) and both show the application."""
    payment = state.find("Payment", Type="Payment", ReferenceNbr=application["ReferenceNbr"])
    amount = application["AmountPaid"]
    payment["AvailableBalance"] -= amount
    payment["Status"] = "Closed" if payment["AvailableBalance"] <= 0 and not payment.get("OrdersToApply") else "Open"
    payment["LastModifiedDateTime"] = state.now()
    for doc, other in ((refund, payment), (payment, refund)):
        doc["ApplicationHistory"].append({
            "id": new_id(), "AdjustedDocType": payment["Type"], "AdjustedRefNbr": payment["ReferenceNbr"],
            "DisplayDocType": other["Type"], "DisplayRefNbr": other["ReferenceNbr"],
            "AdjustingDocType": refund["Type"], "AdjustingRefNbr": refund["ReferenceNbr"],
            "AmountPaid": amount, "Balance": payment["AvailableBalance"], "CurrencyID": refund.get("CurrencyID"),
            "Customer": refund.get("CustomerID"), "Description": other.get("Description"),
            "Date": refund.get("ApplicationDate"), "AdjustmentNbr": len(doc["ApplicationHistory"]) + 1,
            "PostPeriod": refund["ApplicationDate"].strftime("%m%Y")})


def cash_account_of(state: AcumaticaState, payment: dict, errors: Errors) -> dict | None:
    """The payment method must be seeded and active; the cash account defaults to the method's and
    must be one of the accounts the method allows."""
    method_id = payment.get("PaymentMethod")
    method = state.payment_methods.get(method_id.casefold()) if method_id else None
    if not method_id:
        errors.add(("PaymentMethod",), "'Payment Method' cannot be empty.")
    elif method is None or not method["Active"]:
        errors.add(("PaymentMethod",), "'Payment Method' cannot be found in the system.")
    if method is None or not method["Active"]:
        return None
    payment["PaymentMethod"] = method["PaymentMethodID"]
    if not payment.get("CashAccount"):
        if not method["DefaultCashAccount"]:
            errors.add(("CashAccount",), "'Cash Account' cannot be empty.")
            return None
        payment["CashAccount"] = method["DefaultCashAccount"]
    account = state.cash_accounts.get(payment["CashAccount"].casefold())
    if account is None or not any(_same_key(a, payment["CashAccount"]) for a in method["CashAccounts"]):
        errors.add(("CashAccount",), "'Cash Account' cannot be found in the system.")
        return None
    payment["CashAccount"] = account["CashAccountCD"]
    return account


def validate_payment_applications(state: AcumaticaState, payment: dict, errors: Errors) -> None:
    """Applications go to open invoices / open orders of the payment's customer and currency, each
    within the document's balance, together within the payment amount."""
    remaining = payment["PaymentAmount"]
    currency = payment.get("CurrencyID")
    refund = payment.get("Type") == "Refund"
    doc_types = REFUNDED_DOC_TYPES if refund else ADJUSTED_DOC_TYPES
    for index, application in enumerate(payment.setdefault("DocumentsToApply", [])):
        path = ("DocumentsToApply", index)
        doc_type = doc_types.get(application.get("DocType") or ("Credit Memo" if refund else "Invoice"))
        if doc_type is None:
            errors.add(path + ("DocType",), f"'{application['DocType']}' is not a valid value for 'Doc. Type'.")
            continue
        application["DocType"] = doc_type
        if doc_type == "Payment":  # a refund of a payment's unapplied balance
            refunded = state.find("Payment", Type=doc_type, ReferenceNbr=application.get("ReferenceNbr") or "")
            problem = _application_problem(refunded, lambda d: d.get("Status") == "Open", payment, "CurrencyID",
                                           "'Reference Nbr.'", "document")
            if problem:
                errors.add(path + ("ReferenceNbr",), problem)
                continue
            application.update(Description=refunded.get("Description"), CustomerOrder=None)
            remaining -= _applied(application, "AmountPaid", refunded["AvailableBalance"], remaining, currency,
                                  path, errors)
            continue
        invoice = state.find("SalesInvoice", Type=doc_type, ReferenceNbr=application.get("ReferenceNbr") or "")
        problem = _application_problem(invoice, lambda d: d.get("Status") == "Open", payment, "Currency",
                                       "'Reference Nbr.'", "document")
        if problem:
            errors.add(path + ("ReferenceNbr",), problem)
            continue
        application.update(Description=invoice.get("Description"), CustomerOrder=invoice.get("CustomerOrder"))
        remaining -= _applied(application, "AmountPaid", invoice["Balance"], remaining, currency, path, errors)
    for index, application in enumerate(payment.setdefault("OrdersToApply", [])):
        path = ("OrdersToApply", index)
        if refund:
            errors.add(path + ("OrderNbr",), "A refund cannot be applied to a sales order.")
            continue
        application.setdefault("OrderType", ORDER_TYPES[0])
        order = state.find("SalesOrder", OrderType=application["OrderType"], OrderNbr=application.get("OrderNbr") or "")
        problem = _application_problem(order, lambda o: o.get("Status") not in CLOSED_ORDER, payment, "CurrencyID",
                                       "'Order Nbr.'", "order")
        if problem:
            errors.add(path + ("OrderNbr",), problem)
            continue
        unpaid = order["Totals"]["UnpaidBalance"]
        remaining -= _applied(application, "AppliedToOrder", unpaid, remaining, currency, path, errors)
    applied = sum((a.get("AmountPaid") or Decimal(0) for a in payment["DocumentsToApply"]), Decimal(0))
    to_orders = sum((a.get("AppliedToOrder") or Decimal(0) for a in payment["OrdersToApply"]), Decimal(0))
    payment.update(AppliedToDocuments=applied, AppliedToOrders=to_orders,
                   AvailableBalance=payment["PaymentAmount"] - applied - to_orders)
    if remaining < 0:
        errors.add(("",), "The total amount applied exceeds the payment amount.")


def _application_problem(target: dict | None, is_open: Callable[[dict], bool], payment: dict,
                         currency_field: str, label: str, what: str) -> str | None:
    """Why the payment cannot apply to ``target`` (None: it can): it must be open, of the
    payment's customer and in the payment's currency."""
    if target is None or not is_open(target) or not _same_key(target.get("CustomerID"), payment.get("CustomerID")):
        return f"{label} cannot be found in the system."
    currency = payment.get("CurrencyID")
    if not _same_key(target.get(currency_field), currency):
        return (f"The currency {target.get(currency_field)} of the {what} differs from the currency "
                f"{currency} of the payment.")
    return None


def _applied(application: dict, name: str, balance: Decimal, remaining: Decimal, currency: str | None,
             path: tuple, errors: Errors) -> Decimal:
    """The amount of one application (defaulting to what both sides have left), checked against the
    document's balance."""
    if application.get(name) is None:
        application[name] = max(Decimal(0), min(balance, remaining))
    amount = application[name] = money(application[name], currency)
    if amount <= 0 or amount > balance:
        errors.add(path + (name,), "The amount paid cannot be zero, negative or exceed the balance of the document.")
    return amount

"""Receivables rules: invoices, credit memos and receipts with their lines, taxes and distributions."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.oracle_fusion.state import _receipt_applied
from sandbox.oracle_fusion.wire import ZERO, bad, money, now_iso, to_amount, to_date

if TYPE_CHECKING:
    from sandbox.oracle_fusion.state import OracleState


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


def _currency(body: dict, name: str, where: str) -> str:
    """The document's currency: required, an ISO 4217 code."""
    currency = _text(body, name, where, required=True, max_len=15)
    if not re.fullmatch(r"[A-Z]{3}", currency or ""):
        raise bad(f"The currency {currency} isn't valid.", f"{where}/{name}")
    return currency


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

    def _open(self, body: Any, where: str, allowed: set[str], doc_class: str, docs: dict[int, dict],
              currency_field: str) -> tuple[dict, dict, str]:
        """A new transaction's checked body, header and currency."""
        body = _check_fields(body, allowed, where)
        return body, self._header(body, where, doc_class, docs), _currency(body, currency_field, where)

    def _looked_up(self, body: dict, name: str, where: str, table: str, message: str,
                   **limits: Any) -> str | None:
        """An optional code that must exist in the lookup ``table``; ``message`` names it."""
        value = _text(body, name, where, **limits)
        if value is not None and value not in self.state.lookups[table]:
            raise bad(message.format(value), f"{where}/{name}")
        return value

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
        body, inv, currency = self._open(body, where, INVOICE_FIELDS, "INV", self.state.invoices, "InvoiceCurrencyCode")
        terms = self._looked_up(body, "PaymentTerms", where, "terms", "The payment terms {} don't exist.", max_len=15)
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
        body, memo, currency = self._open(body, where, MEMO_FIELDS, "CM", self.state.memos, "CreditMemoCurrency")
        reason = self._looked_up(body, "CreditReason", where, "credit_reasons",
                                 "The credit memo reason {} isn't a valid value.")
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

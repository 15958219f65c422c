"""Business rules: accounts, sales invoices and their lines, bank entries, webhooks."""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.exact_online.entities import (ACCOUNT, BANK_ENTRY, BANK_LINE, COST_CENTER, GL_ACCOUNT, INVOICE,
                                           INVOICE_LINE, ITEM, JOURNAL, VAT_CODE, WEBHOOK, WEBHOOK_TOPICS)
from sandbox.exact_online.views import fields_of
from sandbox.exact_online.wire import BadRequest, rounded

if TYPE_CHECKING:
    from sandbox.exact_online.entities import EntityDef
    from sandbox.exact_online.state import Division, ExactState


# --------------------------------------------------------------------------- business rules

class Rules:
    def __init__(self, state: ExactState):
        self.state = state

    def create(self, div: Division, entity: EntityDef, body: dict) -> dict:
        handler = {ACCOUNT.path: self.account, INVOICE.path: self.invoice, BANK_ENTRY.path: self.bank_entry,
                   WEBHOOK.path: self.webhook}.get(entity.path)
        values = fields_of(entity, body, entity.path)
        if handler is not None:
            return handler(div, values)
        if "Code" in entity.fields and values.get("Code") and div.by_code(entity, values["Code"]):
            raise BadRequest(f"Code {values['Code']} already exists.")
        return self.state.add(div, entity, values)

    def account(self, div: Division, values: dict) -> dict:
        if not values.get("Name"):
            raise BadRequest("Name: Mandatory")
        code = str(values.get("Code") or "").strip()
        if code and not code.isdigit():
            raise BadRequest(f"Code: '{code}' is not numeric.")
        if not code:
            while div.by_code(ACCOUNT, str(div.next_account)):
                div.next_account += 1
            code = str(div.next_account)
        if div.by_code(ACCOUNT, code):
            raise BadRequest(f"Code: {code} already exists.")
        values["Code"] = code.rjust(18)
        values.setdefault("IsSales", True)
        return self.state.add(div, ACCOUNT, values)

    def update(self, div: Division, entity: EntityDef, record: dict, body: dict) -> None:
        values = fields_of(entity, body, entity.path)
        values.pop(entity.lines or "", None)
        if entity is ACCOUNT and "Code" in values:
            values["Code"] = str(values["Code"]).strip().rjust(18)
        if entity is INVOICE:
            values.pop("Journal", None)  # settable on POST only
            self._check_your_ref(values.get("YourRef"))
        record.update(values)
        if "Modified" in entity.fields:
            record["Modified"] = self.state.now()

    def _check_your_ref(self, your_ref: str | None) -> None:
        if your_ref and len(your_ref) > self.state.settings.your_ref_max:
            raise BadRequest(f"YourRef: the value is longer than {self.state.settings.your_ref_max} characters.")

    def invoice(self, div: Division, values: dict) -> dict:
        kind = values.get("Type") or 8020
        if kind in (8023, 8024):
            raise BadRequest("Warehouse: Mandatory for direct sales invoices and credit notes.")
        if kind not in (8020, 8021):
            raise BadRequest(f"Type: {kind} is not a valid sales invoice type.")
        customer = div.table(ACCOUNT).get(str(values.get("OrderedBy") or "").lower())
        if customer is None:
            raise BadRequest("OrderedBy: Mandatory" if not values.get("OrderedBy")
                             else f"OrderedBy: account {values['OrderedBy']} does not exist.")
        journal = div.by_code(JOURNAL, values.get("Journal") or "")
        if journal is None or journal.get("Type") != 20:
            raise BadRequest("Journal: Mandatory" if not values.get("Journal")
                             else f"Journal: {values['Journal']} is not a sales journal.")
        self._check_your_ref(values.get("YourRef"))
        raw_lines = values.pop("SalesInvoiceLines", None)
        if isinstance(raw_lines, dict):
            raw_lines = raw_lines.get("results")
        if not isinstance(raw_lines, list) or not raw_lines:
            raise BadRequest("SalesInvoiceLines: Mandatory")
        currency = values.get("Currency") or div.currency
        invoice_id = str(uuid.uuid4())
        lines = [self.invoice_line(div, kind, currency, invoice_id, n, raw) for n, raw in enumerate(raw_lines, 1)]
        excl = sum((ln["AmountFC"] for ln in lines), Decimal(0))
        vat = sum((ln["VATAmountFC"] for ln in lines), Decimal(0))
        now = self.state.now()
        record = {**values, "InvoiceID": invoice_id, "Type": kind, "Currency": currency,
                  "InvoiceTo": values.get("InvoiceTo") or customer["ID"], "OrderedByName": customer["Name"],
                  "InvoiceNumber": div.next_invoice, "Status": 20, "StatusDescription": "Open",
                  "TypeDescription": "Sales credit note" if kind == 8021 else "Sales invoice",
                  "Division": div.code, "InvoiceDate": now, "AmountFCExclVat": excl, "VATAmountFC": vat,
                  "AmountFC": excl + vat, "AmountDC": excl + vat, "SalesInvoiceLines": lines}
        div.next_invoice += 1
        for ln in lines:
            div.table(INVOICE_LINE)[ln["ID"]] = ln
        return self.state.add(div, INVOICE, record)

    def invoice_line(self, div: Division, kind: int, currency: str, invoice_id: str, number: int, raw: Any) -> dict:
        where = f"SalesInvoiceLines[{number - 1}]"
        v = fields_of(INVOICE_LINE, raw, where)
        item = div.table(ITEM).get(str(v.get("Item") or "").lower())
        if item is None:
            raise BadRequest(f"{where}.Item: " + (f"item {v['Item']} does not exist." if v.get("Item")
                                                    else "Mandatory"))
        gl = v.get("GLAccount") or item.get("GLRevenue")
        if not gl:
            raise BadRequest(f"{where}.GLAccount: Mandatory (the item has no revenue account).")
        if str(gl).lower() not in div.table(GL_ACCOUNT):
            raise BadRequest(f"{where}.GLAccount: G/L account {gl} does not exist.")
        vat_code = v.get("VATCode") or item.get("SalesVatCode")
        vat_rec = div.by_code(VAT_CODE, vat_code) if vat_code else None
        if vat_code and vat_rec is None:
            raise BadRequest(f"{where}.VATCode: VAT code {vat_code} does not exist.")
        if v.get("CostCenter") and div.by_code(COST_CENTER, v["CostCenter"]) is None:
            raise BadRequest(f"{where}.CostCenter: cost center {v['CostCenter']} does not exist.")
        qty = v.get("Quantity") if v.get("Quantity") is not None else Decimal(1)
        price = v.get("NetPrice") if v.get("NetPrice") is not None else (
            v.get("UnitPrice") if v.get("UnitPrice") is not None else Decimal(str(item.get("StandardSalesPrice") or 0)))
        amount = v["AmountFC"] if v.get("AmountFC") is not None else rounded(qty * price, currency)
        pct = Decimal(str(vat_rec.get("Percentage") or 0)) if vat_rec else Decimal(0)
        vat = v["VATAmountFC"] if v.get("VATAmountFC") is not None else rounded(amount * pct, currency)
        if kind == 8021 and (qty > 0 or amount > 0 or vat > 0):
            raise BadRequest(f"{where}: a credit note line needs a negative quantity and amount.")
        return {"ID": str(uuid.uuid4()), "InvoiceID": invoice_id, "LineNumber": number, "Item": item["ID"],
                "ItemCode": item["Code"], "Description": v.get("Description") or item.get("Description"),
                "Quantity": qty, "NetPrice": price, "UnitPrice": v.get("UnitPrice") or price, "AmountFC": amount,
                "AmountDC": amount, "VATCode": vat_code, "VATPercentage": pct, "VATAmountFC": vat,
                "GLAccount": str(gl).lower(), "CostCenter": v.get("CostCenter"), "Notes": v.get("Notes")}

    def bank_entry(self, div: Division, values: dict) -> dict:
        journal = div.by_code(JOURNAL, values.get("JournalCode") or "")
        if journal is None or journal.get("Type") not in (12, 16):
            raise BadRequest("JournalCode: Mandatory" if not values.get("JournalCode")
                             else f"JournalCode: journal {values['JournalCode']} is not a bank journal.")
        raw_lines = values.pop("BankEntryLines", None)
        if isinstance(raw_lines, dict):
            raw_lines = raw_lines.get("results")
        if not isinstance(raw_lines, list) or not raw_lines:
            raise BadRequest("BankEntryLines: Mandatory")
        entry_id, number = str(uuid.uuid4()), div.next_entry
        currency = values.get("Currency") or journal.get("Currency") or div.currency
        lines = []
        for n, raw in enumerate(raw_lines, 1):
            where = f"BankEntryLines[{n - 1}]"
            v = fields_of(BANK_LINE, raw, where)
            account = div.table(ACCOUNT).get(str(v.get("Account") or "").lower())
            if v.get("Account") and account is None:
                raise BadRequest(f"{where}.Account: account {v['Account']} does not exist.")
            if account is None and not v.get("GLAccount"):
                raise BadRequest(f"{where}: Account or GLAccount is mandatory.")
            if v.get("AmountFC") is None:
                raise BadRequest(f"{where}.AmountFC: Mandatory")
            if v.get("OurRef") is not None:
                invoice = next((i for i in div.table(INVOICE).values() if i["InvoiceNumber"] == v["OurRef"]), None)
                if invoice is None or (account is not None and invoice["OrderedBy"] != account["ID"]):
                    raise BadRequest(f"{where}.OurRef: invoice {v['OurRef']} of this account does not exist.")
            lines.append({**v, "ID": str(uuid.uuid4()), "EntryID": entry_id, "EntryNumber": number,
                          "LineNumber": n, "AmountDC": v["AmountFC"], "Date": v.get("Date") or self.state.now(),
                          "AccountCode": account["Code"] if account else None})
        div.next_entry += 1
        for ln in lines:
            div.table(BANK_LINE)[ln["ID"]] = ln
        return self.state.add(div, BANK_ENTRY, {**values, "EntryID": entry_id, "EntryNumber": number,
                                                "Currency": currency, "Status": 20,
                                                "JournalDescription": journal.get("Description"),
                                                "BankEntryLines": lines})

    def webhook(self, div: Division, values: dict) -> dict:
        topic, url = values.get("Topic"), values.get("CallbackURL") or ""
        if topic not in WEBHOOK_TOPICS:
            raise BadRequest(f"Topic: '{topic}' is not a valid topic.")
        if not url.startswith("https://") and not (self.state.settings.allow_http_callbacks
                                                   and url.startswith("http://")):
            raise BadRequest("CallbackURL: an https URL is required.")
        return self.state.add(div, WEBHOOK, {**values, "ClientID": self.state.client_id, "Division": div.code,
                                             "Description": "Sandbox app"})

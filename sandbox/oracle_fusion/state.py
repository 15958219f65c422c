"""The Receivables tenant in memory: parties, accounts, chart of accounts, documents, the quota and
request log."""
from __future__ import annotations

import copy
import itertools
import time
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from sandbox.configure import set_fields

from sandbox.oracle_fusion.wire import CHART, QUOTA_WINDOW, money, now_iso, to_amount


# --------------------------------------------------------------------------- state

@dataclass
class Settings:
    requests_per_minute: int = 0
    send_retry_after: bool = True
    token_lifetime: int = 3600
    token_requests_per_minute: int = 1000
    apply_receipt_action: bool = True
    automatic_account_numbers: bool = True

    def configure(self, values: dict) -> None:
        set_fields(self, values)


def _defaults() -> dict[str, Any]:
    return {
        "business_units": {"Vision Operations"},
        "sources": {"Manual": "manual", "Manual-NES": "manual", "Imported": "automatic"},
        "types": {"Invoice": "INV", "Credit Memo": "CM"},
        "terms": {"IMMEDIATE", "30 Net"},
        "credit_reasons": {"RETURN", "CANCELLATION", "PRICE"},
        "source_systems": {"WEBSTORE"},
        "items": {},
        "tax_codes": {},
        "receipt_methods": {},
        "refund_payment_methods": {"CHECK", "EFT", "CLEARING"},  # Payables methods of a refund
        "values": {"Company": {"01"}, "CostCenter": set(), "Account": set(),
                   "SubAccount": {"000"}, "Product": {"000"}},
        "disabled": set(),
    }


_INVOICE_READ_OUT = {
    "external_ref": "TransactionNumber", "id": "CustomerTransactionId", "type": "TransactionType",
    "amount": "EnteredAmount", "balance": "InvoiceBalanceAmount", "currency": "InvoiceCurrencyCode",
    "status": "InvoiceStatus", "customer": "BillToCustomerNumber"}
_MEMO_READ_OUT = {**_INVOICE_READ_OUT, "balance": "TransactionBalanceDue", "currency": "CreditMemoCurrency",
                  "status": "CreditMemoStatus"}
_RECEIPT_READ_OUT = {
    "external_ref": "ReceiptNumber", "id": "StandardReceiptId",
    "amount": "Amount", "balance": "UnappliedAmount", "currency": "Currency", "status": "Status",
    "customer": "CustomerAccountNumber"}


class OracleState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        self.settings.__dict__.update(asdict(Settings()))
        self.lookups = _defaults()
        self.seq = itertools.count(300000001)
        self.parties: dict[str, dict] = {}  # PartyNumber -> party
        self.accounts: dict[int, dict] = {}  # AccountId -> customer account
        self.invoices: dict[int, dict] = {}
        self.memos: dict[int, dict] = {}
        self.receipts: dict[int, dict] = {}
        self.applications: list[dict] = []
        self.combination_ids: dict[str, int] = {}
        self.window: tuple[float, int] | None = None
        self.token_window: tuple[float, int] | None = None
        self.stats: dict[str, Any] = {"total": 0, "by_status": {}, "by_route": {}, "throttled": 0,
                                      "token_requests": 0}
        self.request_log: list[dict] = []

    BUSINESS = ("lookups", "seq", "parties", "accounts", "invoices", "memos", "receipts",
                "applications", "combination_ids")

    def snapshot(self) -> dict[str, Any]:
        """The business data, for a batch to roll back to (counters and the log stay)."""
        return copy.deepcopy({name: getattr(self, name) for name in self.BUSINESS})

    def restore(self, saved: dict[str, Any]) -> None:
        self.__dict__.update(saved)

    def next_id(self) -> int:
        return next(self.seq)

    # ---- quota
    def admit(self, limit: int, token: bool = False) -> float | None:
        if limit <= 0:
            return None
        now = time.monotonic()
        window = self.token_window if token else self.window
        if window is None or now - window[0] >= QUOTA_WINDOW:
            window = (now, 0)
        if window[1] >= limit:
            return window[0] + QUOTA_WINDOW - now
        window = (window[0], window[1] + 1)
        if token:
            self.token_window = window
        else:
            self.window = window
        return None

    def record(self, request: Request, route: str, status: int) -> None:
        self.request_log.append({"method": request.method, "path": request.url.path,
                                 "query": request.url.query, "status": status})
        self.stats["total"] += 1
        for key, bucket in ((str(status), "by_status"), (f"{request.method} {route}", "by_route")):
            self.stats[bucket][key] = self.stats[bucket].get(key, 0) + 1
        if status == 429:
            self.stats["throttled"] += 1

    # ---- chart of accounts
    def combinations(self) -> list[dict]:
        values = self.lookups["values"]
        rows = []
        for combo in itertools.product(*(sorted(values[s]) for s in CHART)):
            text = "-".join(combo)
            cid = self.combination_ids.setdefault(text, 10000 + len(self.combination_ids))
            row = {"_CODE_COMBINATION_ID": cid, "_CHART_OF_ACCOUNTS_ID": 101,
                   "EnabledFlag": "N" if text in self.lookups["disabled"] else "Y",
                   "AccountType": "R", "StartDateActive": None, "EndDateActive": None}
            row.update({f"Segment{i + 1}": v for i, v in enumerate(combo)})
            rows.append(row)
        return rows

    def combination_valid(self, text: str) -> bool:
        parts = str(text).split("-")
        values = self.lookups["values"]
        return (len(parts) == len(CHART) and text not in self.lookups["disabled"]
                and all(p in values[s] for p, s in zip(parts, CHART)))

    # ---- seeding helpers
    def add_customer(self, name: str, email: str = "", source_reference: str = "", *,
                     phone: str = "", address: dict | None = None, account: bool = True) -> dict:
        """A party as a user makes it; with ``account`` also its customer account (without, a
        party that is no customer yet: a prospect)."""
        party = self.create_party({"OrganizationName": name, "EmailAddress": email or None,
                                   "PhoneNumber": phone or None,
                                   "SourceSystem": "WEBSTORE" if source_reference else None,
                                   "SourceSystemReferenceValue": source_reference or None,
                                   "PrimaryAddress": [address or {"Country": "US"}]})
        if not account:
            return party
        site = party["PrimaryAddress"][0]["AddressId"]
        return self.create_account(party["PartyId"], name, site)

    def create_party(self, body: dict) -> dict:
        party_id = self.next_id()
        party = {"PartyId": party_id, "PartyNumber": f"CDRM_{party_id}",
                 "OrganizationName": body["OrganizationName"], "Type": "ZCA_CUSTOMER",
                 "EmailAddress": body.get("EmailAddress"), "PhoneNumber": body.get("PhoneNumber"),
                 "SourceSystem": body.get("SourceSystem"),
                 "SourceSystemReferenceValue": body.get("SourceSystemReferenceValue"),
                 "CreationDate": now_iso(), "LastUpdateDate": now_iso(), "PrimaryAddress": []}
        for address in body.get("PrimaryAddress") or []:
            self.add_address(party, address)
        self.parties[party["PartyNumber"]] = party
        return party

    def add_address(self, party: dict, address: dict) -> dict:
        address_id = self.next_id()
        row = {"AddressId": address_id, "AddressNumber": f"CDRM_{address_id}",
               **{k: address.get(k) for k in ("Address1", "Address2", "City", "State",
                                              "PostalCode", "Country")}}
        party["PrimaryAddress"].append(row)
        return row

    def create_account(self, party_id: int, name: str, party_site_id: int) -> dict:
        account_id = self.next_id()
        number = str(10000 + len(self.accounts) + 1)
        site_id, use_id = self.next_id(), self.next_id()
        account = {"AccountId": account_id, "AccountNumber": number, "CustomerId": party_id,
                   "CustomerName": name, "sites": [{
                       "CustomerAccountSiteId": site_id, "PartySiteId": party_site_id,
                       "SiteNumber": str(site_id), "uses": [{"SiteUseId": use_id,
                                                              "SiteUseCode": "BILL_TO",
                                                              "PrimaryFlag": True}]}]}
        self.accounts[account_id] = account
        return account

    def account_by_number(self, number: str) -> dict | None:
        return next((a for a in self.accounts.values() if a["AccountNumber"] == number), None)

    def party_by_id(self, party_id: Any) -> dict | None:
        return next((p for p in self.parties.values() if str(p["PartyId"]) == str(party_id)), None)

    def find_installment(self, installment_id: Any) -> tuple[dict, dict] | None:
        for inv in self.invoices.values():
            for inst in inv["receivablesInvoiceInstallments"]:
                if str(inst["InstallmentId"]) == str(installment_id):
                    return inv, inst
        return None

    def apply(self, invoice: dict, installment: dict, amount: Decimal, kind: str,
              source: dict) -> dict:
        cur = invoice["InvoiceCurrencyCode"]
        installment["InstallmentBalanceDue"] = money(installment["InstallmentBalanceDue"] - amount, cur)
        installment["AmountPaid"] = money(installment["AmountPaid"] + amount, cur)
        installment["InstallmentStatus"] = "Closed" if installment["InstallmentBalanceDue"] == 0 else "Open"
        invoice["InvoiceBalanceAmount"] = money(invoice["InvoiceBalanceAmount"] - amount, cur)
        invoice["LastUpdateDate"] = now_iso()
        app = {"ApplicationId": self.next_id(), "Kind": kind, "ApplicationAmount": amount,
               "ApplicationDate": date.today().isoformat(),
               "ReferenceTransactionId": invoice["CustomerTransactionId"],
               "ReferenceTransactionNumber": invoice["TransactionNumber"],
               "ReferenceInstallmentId": installment["InstallmentId"],
               "SourceId": source.get("CustomerTransactionId") or source.get("StandardReceiptId")}
        self.applications.append(app)
        return app

    def credit_memo_applications(self, account_number: str) -> list[dict]:
        """The account's ``creditMemoApplications``: each application of one of its credit memos
        to a transaction's installment (reference 2.2; a memo's refund is not one of them)."""
        memos = {str(m["CustomerTransactionId"]): m for m in self.memos.values()
                 if str(m["BillToCustomerNumber"]) == str(account_number)}
        return [{"ApplicationId": app["ApplicationId"], "CreditMemoId": app["SourceId"],
                 "CreditMemoNumber": memos[str(app["SourceId"])]["TransactionNumber"],
                 "ApplicationAmount": app["ApplicationAmount"],
                 "ApplicationDate": app["ApplicationDate"],
                 "ReferenceTransactionId": app["ReferenceTransactionId"],
                 "ReferenceTransactionNumber": app["ReferenceTransactionNumber"],
                 "ReferenceInstallmentId": app["ReferenceInstallmentId"]}
                for app in self.applications
                if app["Kind"] == "credit_memo" and str(app.get("SourceId")) in memos]

    def account_balance(self, account_number: str) -> Decimal:
        """What the account owes: open invoice balances less on-account credit (memos'
        unapplied balances, negative) less receipts' unapplied amounts."""
        owed = sum((i["InvoiceBalanceAmount"] for i in self.invoices.values()
                    if str(i["BillToCustomerNumber"]) == str(account_number)), Decimal(0))
        credit = sum((m["TransactionBalanceDue"] for m in self.memos.values()
                      if str(m["BillToCustomerNumber"]) == str(account_number)), Decimal(0))
        unapplied = sum((r["UnappliedAmount"] for r in self.receipts.values()
                         if str(r.get("CustomerAccountNumber")) == str(account_number)), Decimal(0))
        return owed + credit - unapplied

    def documents(self) -> list[dict]:
        """Every booked document in one read-out shape (the fields each kind names differently)."""
        out = []
        for kind, records, names, fixed in (("invoice", self.invoices, _INVOICE_READ_OUT, {}),
                                            ("credit_memo", self.memos, _MEMO_READ_OUT, {}),
                                            ("receipt", self.receipts, _RECEIPT_READ_OUT,
                                             {"type": "Standard Receipt"})):
            for record in records.values():
                out.append({"kind": kind, **{key: record.get(name) for key, name in names.items()}, **fixed})
        for app in self.applications:
            if app["Kind"] == "refund":  # the refund of an on-account credit memo
                out.append({"kind": "refund_payment", "external_ref": app["Comments"],
                            "id": app["ApplicationId"], "type": "On-Account Credit Memo Refund",
                            "amount": app["ApplicationAmount"], "balance": 0, "currency": app["Currency"],
                            "status": "Applied", "customer": app["BillToCustomerNumber"],
                            "credit_memo": app["CreditMemoNumber"],
                            "payment_request": app["ApplicationReferenceNumber"]})
        return out

    def automatch(self) -> int:
        applied = 0
        for rec in self.receipts.values():
            for ref in rec["remittanceReferences"]:
                if rec["UnappliedAmount"] <= 0 or ref.get("ReceiptMatchBy") != "Transaction Number":
                    continue
                inv = next((i for i in self.invoices.values()
                            if i["TransactionNumber"] == ref.get("ReferenceNumber")
                            and i["InvoiceCurrencyCode"] == rec["Currency"]
                            and i["InvoiceStatus"] == "Complete"), None)
                if inv is None:
                    continue
                for inst in inv["receivablesInvoiceInstallments"]:
                    wanted = to_amount(ref.get("ReferenceAmount") or rec["UnappliedAmount"], "")
                    amount = min(wanted, rec["UnappliedAmount"], inst["InstallmentBalanceDue"])
                    if amount > 0:
                        self.apply(inv, inst, amount, "receipt", rec)
                        _receipt_applied(rec, amount)
                        applied += 1
        return applied


def _receipt_applied(rec: dict, amount: Decimal) -> None:
    rec["UnappliedAmount"] = money(rec["UnappliedAmount"] - amount, rec["Currency"])
    rec["Status"] = "Applied" if rec["UnappliedAmount"] == 0 else "Unapplied"
    rec["LastUpdateDate"] = now_iso()

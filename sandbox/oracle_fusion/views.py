"""Resources as REST returns them: child collections, ``fields``/``onlyData``/``expand``, queryable
attributes."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from sandbox.oracle_fusion.receivables import INVOICE_FIELDS, MEMO_FIELDS, PARTY_FIELDS, RECEIPT_FIELDS


# --------------------------------------------------------------------------- rendering

CHILDREN = {
    "receivablesInvoices": ("CustomerTransactionId", ("receivablesInvoiceLines",
                            "receivablesInvoiceDistributions", "receivablesInvoiceInstallments")),
    "receivablesCreditMemos": ("CustomerTransactionId", ("receivablesCreditMemoLines",
                               "receivablesCreditMemoDistributions")),
    "standardReceipts": ("StandardReceiptId", ("remittanceReferences",)),
    "accounts": ("PartyNumber", ("PrimaryAddress",)),
    "receivablesCustomerAccountActivities": ("AccountId", ("creditMemoApplications",)),
    "accountCombinationsLOV": ("_CODE_COMBINATION_ID", ()),
    "receiptMethods": ("ReceiptMethodId", ()),
}
FAMILIES = {"fscmRestApi": {"receivablesInvoices", "receivablesCreditMemos", "standardReceipts",
                            "receivablesCustomerAccountActivities", "accountCombinationsLOV",
                            "receiptMethods"},
            "crmRestApi": {"accounts"}}
CHILD_KEYS = {"receivablesInvoiceLines": "CustomerTransactionLineId",
              "receivablesInvoiceDistributions": "DistributionId",
              "receivablesInvoiceInstallments": "InstallmentId",
              "receivablesCreditMemoLines": "CustomerTransactionLineId",
              "receivablesCreditMemoDistributions": "DistributionId",
              "remittanceReferences": "RemittanceReferenceId", "PrimaryAddress": "AddressNumber",
              "creditMemoApplications": "ApplicationId",
              "receivablesInvoiceLineTaxLines": "TaxLineId",
              "receivablesCreditMemoLineTaxLines": "TaxLineId"}
_LISTS = {"receivablesInvoiceLines", "receivablesInvoiceDistributions", "receivablesCreditMemoLines",
          "receivablesCreditMemoDistributions", "remittanceReferences", "PrimaryAddress"}
QUERYABLE = {
    "receivablesInvoices": (INVOICE_FIELDS - _LISTS) | {
        "CustomerTransactionId", "EnteredAmount", "InvoiceBalanceAmount", "CreationDate",
        "LastUpdateDate"},
    "receivablesCreditMemos": (MEMO_FIELDS - _LISTS) | {
        "CustomerTransactionId", "EnteredAmount", "TransactionBalanceDue", "CreditMemoStatus",
        "CreationDate", "LastUpdateDate"},
    "standardReceipts": (RECEIPT_FIELDS - _LISTS) | {
        "StandardReceiptId", "State", "Status", "UnappliedAmount", "AccountedAmount",
        "CreationDate", "LastUpdateDate"},
    "accounts": (PARTY_FIELDS - _LISTS) | {"PartyId", "CreationDate", "LastUpdateDate"},
    "receivablesCustomerAccountActivities": {"AccountId", "AccountNumber", "CustomerId",
                                             "CustomerName", "TotalOpenReceivablesForAccount"},
    "accountCombinationsLOV": {"_CODE_COMBINATION_ID", "_CHART_OF_ACCOUNTS_ID", "EnabledFlag",
                               "AccountType", "StartDateActive", "EndDateActive",
                               *(f"Segment{i}" for i in range(1, 31))},
    "receiptMethods": {"ReceiptMethodId", "Name", "ReceiptClass", "BankAccountNumber",
                       "StartDate", "EndDate"},
}
ID_FIELDS = {"CustomerTransactionId", "StandardReceiptId", "PartyId", "AccountId", "CustomerId",
             "InstallmentId", "CustomerTransactionLineId", "DistributionId", "AddressId",
             "RemittanceReferenceId", "TaxLineId", "ReceiptMethodId", "_CODE_COMBINATION_ID"}


@dataclass
class View:
    version: int
    base: str  # e.g. https://host/fscmRestApi/resources/11.13.18.05
    only_data: bool = False
    fields: list[str] | None = None
    expand: set[str] = field(default_factory=set)


def scalars(record: dict) -> dict:
    return {k: v for k, v in record.items() if not isinstance(v, list) and k not in ("sites",)}


def render(record: dict, href: str, view: View, children: tuple[str, ...] = ()) -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, list) or key == "sites":
            continue
        if view.fields is not None and key not in view.fields:
            continue
        out[key] = str(value) if view.version >= 9 and key in ID_FIELDS and value is not None else value
    for child in children:
        if child in view.expand or "all" in view.expand:
            rows = [render(r, f"{href}/child/{child}/{r.get(CHILD_KEYS.get(child, ''), '')}",
                           View(view.version, view.base, view.only_data),
                           tuple(k for k, v in r.items() if isinstance(v, list)))
                    for r in record.get(child, [])]
            out[child] = ({"items": rows, "count": len(rows), "hasMore": False, "limit": len(rows),
                           "offset": 0} if view.version >= 3 else rows)
    if not view.only_data:
        links = [{"rel": "self", "href": href, "name": href.rsplit("/", 2)[-2], "kind": "item"},
                 {"rel": "canonical", "href": href, "kind": "item"}]
        links += [{"rel": "child", "href": f"{href}/child/{c}", "name": c, "kind": "collection"}
                  for c in children]
        out["links"] = links
    return out

"""The entities of the simulated services, their field types and the webhook topics."""
from __future__ import annotations

from dataclasses import dataclass, fields


# --------------------------------------------------------------------------- schema

G, S, D, I, B, T = "guid", "string", "decimal", "int", "bool", "datetime"


@dataclass(frozen=True)
class EntityDef:
    path: str  # "crm/Accounts"
    type_name: str
    key: str
    fields: dict[str, str]
    writable: frozenset[str]
    lines: str | None = None  # name of the line collection
    line_entity: str | None = None
    methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "DELETE"})


def _f(**kinds: str) -> dict[str, str]:
    return {name: kind for kind, names in kinds.items() for name in names.split()}


ACCOUNT = EntityDef("crm/Accounts", "Exact.Web.Api.Models.Account", "ID", _f(
    guid="ID", string="Code Name Email Status AddressLine1 AddressLine2 City Postcode State Country Phone "
                      "VATNumber SearchCode Remarks", bool="Blocked IsSales IsSupplier", datetime="Created Modified"),
    frozenset("Code Name Email Status AddressLine1 AddressLine2 City Postcode State Country Phone VATNumber "
              "SearchCode Remarks Blocked IsSupplier".split()))
ITEM = EntityDef("logistics/Items", "Exact.Web.Api.Models.Item", "ID", _f(
    guid="ID GLRevenue", string="Code Description SalesVatCode Unit",
    decimal="CostPriceStandard StandardSalesPrice AverageCost Stock", bool="IsSalesItem IsStockItem",
    datetime="Created Modified"),
    frozenset("Code Description SalesVatCode Unit CostPriceStandard StandardSalesPrice IsSalesItem IsStockItem "
              "GLRevenue".split()))
GL_ACCOUNT = EntityDef("financial/GLAccounts", "Exact.Web.Api.Models.GLAccount", "ID", _f(
    guid="ID", string="Code Description BalanceSide BalanceType", int="Type", datetime="Modified"),
    frozenset("Code Description Type BalanceSide BalanceType".split()))
COST_CENTER = EntityDef("hrm/Costcenters", "Exact.Web.Api.Models.Costcenter", "ID", _f(
    guid="ID", string="Code Description", bool="Active", datetime="Modified"),
    frozenset("Code Description Active".split()))
VAT_CODE = EntityDef("vat/VATCodes", "Exact.Web.Api.Models.VATCode", "ID", _f(
    guid="ID", string="Code Description Type", decimal="Percentage", datetime="Modified"),
    frozenset("Code Description Type".split()))
JOURNAL = EntityDef("financial/Journals", "Exact.Web.Api.Models.Journal", "ID", _f(
    guid="ID", string="Code Description Currency", int="Type", datetime="Modified"),
    frozenset("Code Description Type Currency".split()))
INVOICE_LINE = EntityDef("salesinvoice/SalesInvoiceLines", "Exact.Web.Api.Models.SalesInvoiceLine", "ID", _f(
    guid="ID InvoiceID Item GLAccount", string="Description VATCode CostCenter CostUnit UnitCode ItemCode Notes",
    decimal="Quantity NetPrice UnitPrice AmountFC AmountDC VATAmountFC VATPercentage Discount", int="LineNumber",
    datetime="DeliveryDate"),
    frozenset("Item Description VATCode CostCenter CostUnit UnitCode Notes Quantity NetPrice UnitPrice AmountFC "
              "VATAmountFC VATPercentage Discount GLAccount DeliveryDate InvoiceID".split()))
INVOICE = EntityDef("salesinvoice/SalesInvoices", "Exact.Web.Api.Models.SalesInvoice", "InvoiceID", _f(
    guid="InvoiceID OrderedBy InvoiceTo DeliverTo Warehouse", string="Journal YourRef Currency Description Remarks "
    "PaymentCondition PaymentReference OrderedByName TypeDescription StatusDescription",
    int="Type InvoiceNumber Status Division OrderNumber",
    decimal="AmountFC AmountDC AmountFCExclVat VATAmountFC", datetime="OrderDate InvoiceDate DueDate Created Modified"),
    frozenset("OrderedBy InvoiceTo DeliverTo Journal Type YourRef Currency Description Remarks PaymentCondition "
              "PaymentReference OrderDate DueDate OrderNumber SalesInvoiceLines Warehouse".split()),
    lines="SalesInvoiceLines", line_entity="salesinvoice/SalesInvoiceLines")
BANK_LINE = EntityDef("financialtransaction/BankEntryLines", "Exact.Web.Api.Models.BankEntryLine", "ID", _f(
    guid="ID EntryID Account GLAccount", string="Description Notes AccountCode", int="OurRef EntryNumber LineNumber",
    decimal="AmountFC AmountDC", datetime="Date Created Modified"),
    frozenset("Account GLAccount Description Notes OurRef AmountFC Date EntryID".split()),
    methods=frozenset({"GET", "POST"}))
BANK_ENTRY = EntityDef("financialtransaction/BankEntries", "Exact.Web.Api.Models.BankEntry", "EntryID", _f(
    guid="EntryID", string="JournalCode Currency JournalDescription", int="EntryNumber Status",
    decimal="OpeningBalanceFC ClosingBalanceFC", datetime="Created Modified"),
    frozenset("JournalCode Currency OpeningBalanceFC ClosingBalanceFC BankEntryLines".split()),
    lines="BankEntryLines", line_entity="financialtransaction/BankEntryLines", methods=frozenset({"GET", "POST"}))
DIVISION = EntityDef("system/Divisions", "Exact.Web.Api.Models.Division", "Code", _f(
    int="Code", string="Description Currency Country", bool="Current"), frozenset(), methods=frozenset({"GET"}))
WEBHOOK = EntityDef("webhooks/WebhookSubscriptions", "Exact.Web.Api.Models.WebhookSubscription", "ID", _f(
    guid="ID ClientID", string="CallbackURL Topic Description", int="Division", datetime="Created"),
    frozenset("CallbackURL Topic".split()), methods=frozenset({"GET", "POST", "DELETE"}))

# Sales orders and goods deliveries are read-only here: a sales order and its delivery are what an
# Exact user records (``POST /_sandbox/deliveries``), never something the integration posts.
READ = frozenset({"GET"})
ORDER_LINE = EntityDef("salesorder/SalesOrderLines", "Exact.Web.Api.Models.SalesOrderLine", "ID", _f(
    guid="ID OrderID Item", string="Description ItemCode UnitCode", int="LineNumber OrderNumber",
    decimal="Quantity QuantityDelivered NetPrice AmountFC", datetime="DeliveryDate Modified"),
    frozenset(), methods=READ)
SALES_ORDER = EntityDef("salesorder/SalesOrders", "Exact.Web.Api.Models.SalesOrder", "OrderID", _f(
    guid="OrderID OrderedBy InvoiceTo DeliverTo", string="YourRef Description Currency Remarks OrderedByName "
    "StatusDescription DeliveryStatusDescription", int="OrderNumber Status DeliveryStatus",
    decimal="AmountFC", datetime="OrderDate DeliveryDate Created Modified"),
    frozenset(), lines="SalesOrderLines", line_entity="salesorder/SalesOrderLines", methods=READ)
DELIVERY_LINE = EntityDef("salesorder/GoodsDeliveryLines", "Exact.Web.Api.Models.GoodsDeliveryLine", "ID", _f(
    guid="ID EntryID Item SalesOrderLineID", string="Description ItemCode TrackingNumber Notes",
    int="LineNumber SalesOrderLineNumber SalesOrderNumber", decimal="QuantityDelivered QuantityOrdered",
    datetime="DeliveryDate Created Modified"), frozenset(), methods=READ)
DELIVERY = EntityDef("salesorder/GoodsDeliveries", "Exact.Web.Api.Models.GoodsDelivery", "EntryID", _f(
    guid="EntryID DeliveryAccount ShippingMethod", string="DeliveryAccountCode DeliveryAccountName Description "
    "Remarks TrackingNumber ShippingMethodCode ShippingMethodDescription", int="DeliveryNumber EntryNumber Division",
    datetime="DeliveryDate Created Modified"),
    frozenset(), lines="GoodsDeliveryLines", line_entity="salesorder/GoodsDeliveryLines", methods=READ)

# The outstanding items (read/financial/ReceivablesList): one row per sales invoice or credit note
# that is not fully matched, ``Amount`` what is still outstanding (a credit note's negative).
# Computed from the documents and the bank entry lines matched with them (State.receivables).
RECEIVABLES = EntityDef("read/financial/ReceivablesList", "Exact.Web.Api.Models.Financial.ReceivablesList",
                        "HID", _f(int="HID EntryNumber InvoiceNumber", guid="AccountId",
                                  string="AccountCode AccountName CurrencyCode Description JournalCode YourRef",
                                  decimal="Amount AmountInTransit", datetime="DueDate InvoiceDate"),
                        frozenset(), methods=READ)

ENTITIES = {e.path.lower(): e for e in (ACCOUNT, ITEM, GL_ACCOUNT, COST_CENTER, VAT_CODE, JOURNAL, INVOICE,
                                        INVOICE_LINE, BANK_ENTRY, BANK_LINE, DIVISION, WEBHOOK, SALES_ORDER,
                                        ORDER_LINE, DELIVERY, DELIVERY_LINE, RECEIVABLES)}
WEBHOOK_TOPICS = {"Accounts": ACCOUNT, "Items": ITEM, "SalesInvoices": INVOICE, "SalesOrders": SALES_ORDER,
                  "GoodsDeliveries": DELIVERY}
TOPIC_OF = {e.path: t for t, e in WEBHOOK_TOPICS.items()}

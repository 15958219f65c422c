"""The contract (system endpoint Default, versions 23.200.001 and 24.200.001): entities and their field
types."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace


# --------------------------------------------------------------------------- the contract

STRING, DECIMAL, BOOLEAN, INT, DATETIME, GUID = "string", "decimal", "boolean", "int", "datetime", "guid"


@dataclass(frozen=True)
class Shape:
    """One contract entity: its wrapped fields, linked entities and detail collections."""
    name: str
    fields: dict[str, str]
    linked: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    readonly: frozenset[str] = frozenset()
    line_keys: tuple[str, ...] = ()


def _fields(**by_kind: str) -> dict[str, str]:
    kinds = {"s": STRING, "d": DECIMAL, "b": BOOLEAN, "i": INT, "t": DATETIME, "g": GUID}
    return dict(sorted((name, kinds[kind]) for kind, names in by_kind.items() for name in names.split()))


_SHAPES_24 = [
    Shape("Address", _fields(s="AddressLine1 AddressLine2 City Country PostalCode State", b="Validated")),
    Shape("Contact", _fields(
        s="Attention CompanyName DisplayName Email ExtRefNbr Fax FirstName FullName JobTitle LastName "
          "MiddleName Phone1 Phone1Type Phone2 Phone2Type Title WebSite",
        i="ContactID", b="Active DoNotEmail"), linked={"Address": "Address"}, readonly=frozenset({"ContactID"})),
    Shape("Customer", _fields(
        s="AccountRef CurrencyID CustomerClass CustomerID CustomerName Email LocationName ParentRecord "
          "PriceClassID ShipVia ShippingTerms Status TaxRegistrationID TaxZone Terms WarehouseID",
        b="BillingAddressOverride BillingContactOverride EnableCurrencyOverride IsGuestCustomer "
          "ShippingAddressOverride ShippingContactOverride",
        d="CreditLimit", i="BAccountID", t="CreatedDateTime LastModifiedDateTime", g="NoteID"),
        linked={n: "Contact" for n in ("BillingContact", "MainContact", "PrimaryContact", "ShippingContact")},
        readonly=frozenset({"BAccountID", "CreatedDateTime", "LastModifiedDateTime", "NoteID"})),
    Shape("SalesInvoiceAddress", _fields(s="AddressLine1 AddressLine2 City Country PostalCode State")),
    Shape("SalesInvoiceDocContact", _fields(s="Attention BusinessName Email Phone1")),
    Shape("SalesInvoiceDetail", _fields(
        s="Account BranchID Description ExternalRef InventoryID Location LotSerialNbr OrderNbr OrderType "
          "OrigInvNbr OrigInvType ShipmentNbr SubAccount TaxCategory TransactionDescr UOM WarehouseID",
        d="Amount DiscountAmount DiscountPercent Qty UnitPrice", i="LineNbr OrderLineNbr OrigInvLineNbr",
        b="ManualDiscount ManualPrice", g="NoteID"),
        readonly=frozenset({"Amount", "LineNbr", "NoteID"}), line_keys=("LineNbr",)),
    Shape("SalesInvoiceTaxDetail", _fields(s="TaxID", d="TaxableAmount TaxAmount"), line_keys=("TaxID",)),
    Shape("SalesInvoiceApplicationCreditMemo", _fields(
        s="Currency Customer CustomerOrder Description DocType PostPeriod ReferenceNbr Status",
        d="AmountPaid Balance", t="Date"),
        readonly=frozenset({"Balance", "Currency", "Customer", "CustomerOrder", "Date", "Description",
                            "PostPeriod", "Status"}), line_keys=("DocType", "ReferenceNbr")),
    Shape("SalesInvoiceApplicationInvoice", _fields(
        s="AdjustedDocReferenceNbr AdjustingDocReferenceNbr Currency Customer Description DocType "
          "DocumentType PaymentPeriod PaymentRef Status",
        i="AdjustmentNbr", d="AmountPaid Balance CashDiscountTaken", t="PaymentDate")),
    Shape("SalesInvoice", _fields(
        s="Currency CustomerID CustomerOrder Description ExternalRef Project ReferenceNbr Status TaxCalcMode Type",
        d="Amount Balance CashDiscount DetailTotal DiscountTotal FreightPrice PaymentTotal TaxTotal "
          "VATExemptTotal VATTaxableTotal",
        b="BillToAddressOverride BillToContactOverride CreditHold Hold IsTaxValid ShipToAddressOverride "
          "ShipToContactOverride",
        t="CreatedDate Date DueDate LastModifiedDate LastModifiedDateTime"),
        linked={"BillToAddress": "SalesInvoiceAddress", "BillToContact": "SalesInvoiceDocContact",
                "ShipToAddress": "SalesInvoiceAddress", "ShipToContact": "SalesInvoiceDocContact"},
        details={"ApplicationsCreditMemo": "SalesInvoiceApplicationCreditMemo",
                 "ApplicationsInvoice": "SalesInvoiceApplicationInvoice",
                 "Details": "SalesInvoiceDetail", "TaxDetails": "SalesInvoiceTaxDetail"},
        readonly=frozenset({"Amount", "ApplicationsInvoice", "Balance", "CashDiscount", "CreatedDate",
                            "CreditHold", "DetailTotal", "DiscountTotal", "IsTaxValid", "LastModifiedDate",
                            "LastModifiedDateTime", "PaymentTotal", "Status", "TaxTotal", "VATExemptTotal",
                            "VATTaxableTotal"})),
    Shape("PaymentDetail", _fields(
        s="CustomerOrder Description DocType ReferenceNbr WriteOffReasonCode",
        d="AmountPaid BalanceWriteOff CashDiscountTaken", i="DocLineNbr"),
        readonly=frozenset({"CustomerOrder", "Description"}), line_keys=("DocType", "ReferenceNbr")),
    Shape("PaymentOrderDetail", _fields(s="OrderNbr OrderType", d="AppliedToOrder"),
          line_keys=("OrderType", "OrderNbr")),
    Shape("PaymentApplicationHistoryDetail", _fields(
        s="AdjustedDocType AdjustedRefNbr AdjustingDocType AdjustingRefNbr ApplicationPeriod BatchNbr CurrencyID "
          "Customer CustomerOrder Description DisplayDocType DisplayRefNbr PostPeriod VATCreditMemo",
        i="AdjustmentNbr", b="AdjustsVAT",
        d="AmountPaid Balance BalanceWriteOff CashDiscountBalance CashDiscountTaken",
        t="CashDiscountDate Date DueDate")),
    Shape("Payment", _fields(
        s="Branch BranchID CashAccount CurrencyID CustomerID CustomerLocationID Description ExternalRef "
          "OrigTransaction PaymentMethod PaymentRef ProcessingCenterID ReferenceNbr Status Type",
        d="AppliedToDocuments AppliedToOrders AvailableBalance PaymentAmount", i="CardAccountNbr",
        b="Hold IsCCPayment IsNewCard SaveCard", t="ApplicationDate LastModifiedDateTime", g="NoteID"),
        details={"ApplicationHistory": "PaymentApplicationHistoryDetail", "DocumentsToApply": "PaymentDetail",
                 "OrdersToApply": "PaymentOrderDetail"},
        readonly=frozenset({"ApplicationHistory", "AppliedToDocuments", "AppliedToOrders", "AvailableBalance",
                            "LastModifiedDateTime", "NoteID", "Status"})),
    Shape("SalesOrderDetail", _fields(
        s="Account AlternateID Branch CustomerOrderNbr DiscountCode ExternalRef InventoryID LineDescription "
          "LineType Location LotSerialNbr Operation ReasonCode SalespersonID Subitem TaxCategory TaxZone UOM "
          "WarehouseID",
        d="Amount DiscountAmount DiscountPercent DiscountedUnitPrice ExtendedPrice OpenQty OrderQty "
          "UnbilledAmount UnitCost UnitPrice",
        i="LineNbr", b="Commissionable Completed FreeItem ManualDiscount ManualPrice", t="RequestedOn ShipOn",
        g="NoteID"),
        readonly=frozenset({"Amount", "DiscountedUnitPrice", "ExtendedPrice", "LineNbr", "NoteID", "OpenQty",
                            "UnbilledAmount"}), line_keys=("LineNbr",)),
    Shape("TaxDetail", _fields(
        s="CustomerTaxZone OrderNbr OrderType TaxID TaxType", i="LineNbr RecordID",
        b="IncludeInVATExemptTotal PendingVAT ReverseVAT StatisticalVAT", d="TaxableAmount TaxAmount TaxRate"),
        readonly=frozenset({"OrderNbr", "OrderType", "RecordID", "TaxRate"}), line_keys=("TaxID",)),
    Shape("Totals", _fields(
        s="FreightTaxCategory", b="FreightCostIsuptodate OverrideFreightAmount",
        d="DiscountTotal Freight FreightCost LineTotalAmount MiscTotalAmount OrderVolume OrderWeight "
          "PackageWeight PremiumFreight TaxTotal UnbilledAmount UnbilledQty UnpaidBalance"),
        readonly=frozenset({"DiscountTotal", "LineTotalAmount", "MiscTotalAmount", "TaxTotal", "UnbilledAmount",
                            "UnbilledQty", "UnpaidBalance"})),
    Shape("SalesOrderPayment", _fields(
        s="CardAccountNbr CashAccount Currency Description DocType ExternalRef OrigTransactionNbr PaymentMethod "
          "PaymentRef ProcessingCenterID ReferenceNbr Status",
        d="AppliedToOrder Balance PaymentAmount TransferredtoInvoice",
        b="Authorize Capture Hold Refund SaveCard ValidateCCRefundOrigTransaction",
        t="ApplicationDate LastModifiedDateTime", g="NoteID")),
    Shape("SalesOrder", _fields(
        s="BaseCurrencyID Branch CashAccount ContactID CurrencyID CurrencyRateTypeID CustomerID CustomerOrder "
          "Description DestinationWarehouseID ExternalOrderOrigin ExternalOrderSource ExternalRef "
          "ExternalRefundRef LocationID OrderNbr OrderType PaymentMethod PaymentRef PreferredWarehouseID "
          "Project ShipVia Status TaxCalcMode",
        d="ControlTotal CurrencyRate OrderedQty OrderTotal ReciprocalRate TaxTotal VATExemptTotal "
          "VATTaxableTotal",
        b="Approved CreditHold DisableAutomaticDiscountUpdate DisableAutomaticTaxCalculation "
          "ExternalOrderOriginal Hold IsTaxValid WillCall",
        t="CreatedDate Date EffectiveDate LastModified RequestedOn", g="NoteID"),
        linked={"Totals": "Totals"},
        details={"Details": "SalesOrderDetail", "Payments": "SalesOrderPayment", "TaxDetails": "TaxDetail"},
        readonly=frozenset({"Approved", "BaseCurrencyID", "CreatedDate", "CreditHold", "LastModified", "NoteID",
                            "OrderedQty", "OrderTotal", "Payments", "Status", "TaxTotal", "VATExemptTotal",
                            "VATTaxableTotal"})),
    Shape("ShipmentDetail", _fields(
        s="Description InventoryID LocationID LotSerialNbr OrderNbr OrderType ReasonCode Subitem UOM WarehouseID",
        d="OpenQty OrderedQty OriginalQty ShippedQty", i="LineNbr OrderLineNbr", b="FreeItem",
        t="ExpirationDate"),
        readonly=frozenset({"Description", "InventoryID", "LineNbr", "OpenQty", "OrderedQty", "OriginalQty", "UOM"}),
        line_keys=("LineNbr",)),
    Shape("ShipmentOrderDetail", _fields(
        s="InventoryDocType InventoryRefNbr InvoiceNbr InvoiceType OrderNbr OrderType ShipmentNbr ShipmentType",
        d="ShippedQty ShippedVolume ShippedWeight", g="OrderNoteID")),
    Shape("ShipmentPackage", _fields(
        s="BoxID CustomRefNbr1 CustomRefNbr2 Description TrackingNbr Type UOM",
        d="CODAmount DeclaredValue Height Length Weight Width", b="Confirmed", i="LineNbr", g="NoteID"),
        readonly=frozenset({"LineNbr", "NoteID"}), line_keys=("LineNbr",)),
    Shape("Shipment", _fields(
        s="BaseCurrencyID CurrencyRateTypeID CustomerID Description FOBPoint FreightCurrencyID LocationID "
          "Operation Owner ShipmentNbr ShippingTerms ShippingZoneID ShipVia Status ToWarehouseID Type "
          "WarehouseID WorkgroupID",
        d="ControlQty CurrencyRate FreightCost FreightPrice PackageWeight ReciprocalRate ShippedQty ShippedVolume "
          "ShippedWeight",
        b="CreateNewShipmentForEveryOrder CurrencyViewState GroundCollect Hold Insurance OverrideFreightPrice "
          "Picked ResidentialDelivery SaturdayDelivery UnlimitedPackages UseCustomersAccount",
        i="PackageCount", t="CreatedDateTime EffectiveDate LastModifiedDateTime ShipmentDate", g="NoteID"),
        details={"Details": "ShipmentDetail", "Orders": "ShipmentOrderDetail", "Packages": "ShipmentPackage"},
        readonly=frozenset({"BaseCurrencyID", "CreatedDateTime", "LastModifiedDateTime", "NoteID", "Orders",
                            "PackageCount", "PackageWeight", "ShippedQty", "ShippedVolume", "ShippedWeight",
                            "Status"})),
    Shape("StockItemWarehouseDetail", _fields(
        s="DefaultIssueLocationID DefaultReceiptLocationID Status WarehouseID", d="QtyOnHand", b="IsDefault"),
        readonly=frozenset({"QtyOnHand"}), line_keys=("WarehouseID",)),
    Shape("StockItem", _fields(
        s="BaseUOM DefaultWarehouseID Description InventoryID ItemClass ItemStatus ItemType PostingClass "
          "PriceClass SalesUOM TaxCategory ValuationMethod",
        d="AverageCost CurrentStdCost DefaultPrice LastCost MSRP", t="LastModified LastModifiedDateTime",
        g="NoteID"), details={"WarehouseDetails": "StockItemWarehouseDetail"},
        readonly=frozenset({"AverageCost", "LastModified", "LastModifiedDateTime", "NoteID"})),
    Shape("NonStockItem", _fields(
        s="BaseUnit Description InventoryID ItemClass ItemStatus ItemType PostingClass PriceClass SalesUnit "
          "TaxCategory",
        d="CurrentCost DefaultPrice LastCost MSRP PendingCost", b="IsAKit RequireShipment",
        t="LastModifiedDateTime", g="NoteID"),
        readonly=frozenset({"LastModifiedDateTime", "NoteID"})),
]

ADDED_IN_24 = {
    "Contact": {"ExtRefNbr"},
    "SalesInvoice": {"BillToAddress", "BillToAddressOverride", "BillToContact", "BillToContactOverride",
                     "CreatedDate", "ExternalRef", "LastModifiedDate", "ShipToAddress", "ShipToAddressOverride",
                     "ShipToContact", "ShipToContactOverride", "TaxCalcMode"},
    "SalesInvoiceDetail": {"Account", "ExternalRef", "ManualPrice", "NoteID", "SubAccount"},
    "StockItem": {"LastModifiedDateTime"},
    "NonStockItem": {"IsAKit"},
    "Shipment": {"UnlimitedPackages"},
}


def _without(shape: Shape, names: set[str]) -> Shape:
    return replace(shape, fields={k: v for k, v in shape.fields.items() if k not in names},
                   linked={k: v for k, v in shape.linked.items() if k not in names},
                   details={k: v for k, v in shape.details.items() if k not in names})


CONTRACT_24 = {s.name: s for s in _SHAPES_24}
CONTRACT_23 = {s.name: _without(s, ADDED_IN_24.get(s.name, set())) for s in _SHAPES_24}


def contract_for(version: str) -> dict[str, Shape]:
    return CONTRACT_24 if version >= "24.200.001" else CONTRACT_23


@dataclass(frozen=True)
class EntityDef:
    name: str
    keys: tuple[str, ...]
    display: str
    graph: str
    actions: tuple[str, ...] = ()


ENTITIES = {e.name: e for e in [
    EntityDef("Customer", ("CustomerID",), "Customer", "PX.Objects.AR.CustomerMaint/BAccount"),
    EntityDef("SalesInvoice", ("Type", "ReferenceNbr"), "SO Invoice", "PX.Objects.SO.SOInvoiceEntry/Document",
              ("ReleaseSalesInvoice",)),
    EntityDef("Payment", ("Type", "ReferenceNbr"), "Payment", "PX.Objects.AR.ARPaymentEntry/Document",
              ("ReleasePayment",)),
    EntityDef("SalesOrder", ("OrderType", "OrderNbr"), "Sales Order", "PX.Objects.SO.SOOrderEntry/Document"),
    EntityDef("Shipment", ("ShipmentNbr",), "Shipment", "PX.Objects.SO.SOShipmentEntry/Document",
              ("ConfirmShipment",)),
    EntityDef("StockItem", ("InventoryID",), "Stock Item", "PX.Objects.IN.InventoryItemMaint/Item"),
    EntityDef("NonStockItem", ("InventoryID",), "Non-Stock Item", "PX.Objects.IN.NonStockItemMaint/Item"),
]}

LABELS = {"CustomerID": "Customer", "InventoryID": "Inventory ID", "TaxID": "Tax ID", "Qty": "Quantity",
          "ReferenceNbr": "Reference Nbr.", "OrigInvNbr": "Orig. Inv. Nbr.", "OrigInvLineNbr": "Orig. Inv. Line Nbr.",
          "CustomerName": "Customer Name", "AmountPaid": "Amount Paid", "DocType": "Doc. Type", "Type": "Type",
          "OrderQty": "Quantity", "OrderNbr": "Order Nbr.", "OrderType": "Order Type", "CurrencyID": "Currency",
          "AppliedToOrder": "Applied to Order", "PaymentAmount": "Payment Amount"}


def label(name: str) -> str:
    return LABELS.get(name) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)

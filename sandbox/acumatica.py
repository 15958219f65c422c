"""Acumatica contract-based REST API simulator (system endpoint ``Default``), written from
shared/reference/acumatica.md and the ``Default/24.200.001`` OpenAPI contract.

What it simulates
-----------------
* URLs ``{site}/entity/Default/{version}/{Entity}`` with ``/{keys...}``, ``/{guid}``,
  ``POST /{Action}`` and ``GET /{Action}/status/{guid}``; ``GET {site}/entity`` lists the
  endpoints.  Versions ``23.200.001`` and ``24.200.001`` carry their own field lists (e.g.
  ``SalesInvoice.ExternalRef`` and ``SalesInvoiceDetail.ManualPrice`` exist only from 24.200.001).
* OAuth 2.0 ROPC + refresh grants at ``{site}/identity/connect/token`` and the legacy cookie
  session (``/entity/auth/login`` -> 204 + ``.ASPXAUTH``, ``/entity/auth/logout`` -> 204,
  10-minute idle timeout).
* Records: wrapped ``{"value": ...}`` fields, ``id``/``rowNumber``/``note``/``custom``/``_links``,
  linked and detail entities only when named in ``$expand`` (PUT responses too); ``$filter``
  (eq ne gt ge lt le and or not, substringof/startswith/endswith, string, number, ``true``/
  ``false``/``null``, ``datetimeoffset'..'``/``datetime'..'``/``date'..'`` literals, linked
  paths such as ``MainContact/Email``), ``$select``, ``$expand``, ``$top``, ``$skip``.
* Entities ``Customer``, ``SalesInvoice`` (Invoice / Credit Memo with Details, TaxDetails,
  ApplicationsCreditMemo, read-only ApplicationsInvoice), ``SalesOrder`` (type SO with Details,
  TaxDetails, linked Totals, read-only Payments), ``Payment`` (Payment / Prepayment with
  DocumentsToApply, OrdersToApply, read-only ApplicationHistory), ``Shipment`` (key ``ShipmentNbr``;
  Details, read-only Orders, Packages with ``TrackingNbr``), ``StockItem`` (WarehouseDetails) and
  ``NonStockItem``.  PUT upserts by keys, ``id`` or ``$filter``;
  ``If-Match: *`` / ``If-None-Match: *`` give 412; PATCH updates an existing record only; DELETE
  answers 204.
* ``ReleaseSalesInvoice`` and ``ReleasePayment``: 202 + server-relative ``Location``; the status
  URL answers 202 ``action_polls`` times (default 1), and until ``action_ms`` (default 0) have
  passed since the action was asked for, then 204, at which point the document
  is released (Balanced -> Open, or Closed at zero balance): credit memo and payment
  applications reduce the invoices' balances (an invoice paid in full is Closed), payment
  applications to sales orders reduce the orders' ``Totals.UnpaidBalance``.  ``ConfirmShipment`` works
  the same way (Open -> Confirmed).
* A per-minute request quota answering 429 and fault injection (``sandbox.faults``) on every
  ``/entity`` request.

Control surface (no auth): ``POST /_sandbox/reset``; ``POST /_sandbox/stock-items`` (list of
``{InventoryID, DefaultPrice, LastCost, QtyOnHand, WarehouseID, Description?, ItemStatus?}``);
``POST /_sandbox/non-stock-items`` (``{InventoryID, DefaultPrice, LastCost, Description?,
ItemType?}``); ``POST /_sandbox/taxes`` (tax ids, or ``{TaxID, Rate}``); ``GET|POST
/_sandbox/customers`` (``{CustomerID, CustomerName?, Email?, CurrencyID?, CustomerClass?}``);
``GET|POST /_sandbox/cash-accounts`` (ids, or ``{CashAccountCD, CurrencyID?, Description?}``;
the currency defaults to the tenant's base currency); ``GET|POST /_sandbox/payment-methods``
(ids, or ``{PaymentMethodID, CashAccount?, CashAccounts?, Active?}``: ``CashAccount`` is the
method's default cash account, ``CashAccounts`` further accounts it allows; accounts not seeded
yet are added in the base currency; a method without accounts takes no payments);
``GET|POST /_sandbox/settings`` (``requests_per_minute``, ``send_retry_after``,
``token_lifetime``, ``action_polls``, ``action_ms``: with both 0 an action answers 204 at once);
``GET /_sandbox/documents[?type=]`` (invoices and credit
memos, then payments -- ``type`` "Payment", ``amount`` = PaymentAmount, ``balance`` = the
unapplied balance -- then sales orders -- ``type`` "Sales Order", ``amount`` = OrderTotal,
``balance`` = the unpaid balance --, each with ``external_ref`` = its ExternalRef);
``GET|POST /_sandbox/shipments`` (POST a list of ``{ExternalRef}`` or ``{OrderNbr, OrderType?}`` of a
posted sales order, with ``TrackingNbr`` or ``TrackingNumbers``, ``ShipVia?``, ``ShipmentDate?``,
``Confirm?`` (default true): a shipment of every line still to ship, one package per tracking number,
confirmed as ``ConfirmShipment`` would; 404 for an unknown order, 422 with Acumatica's message when the
order cannot be shipped; GET lists them as plain JSON);
``GET /_sandbox/stats``; ``GET /_sandbox/requests``; ``POST /_sandbox/expire-tokens``;
``GET|POST /_sandbox/faults``.

Choices where the reference says "unconfirmed" (or says nothing)
----------------------------------------------------------------
* Unknown endpoint, version, entity, action or route: 404 with the ASP.NET Web API "no
  resource" body ``{"message": "No HTTP resource was found that matches the request URI
  '<url>'."}``.  A record not found by keys/id: 404 HttpError "No entity satisfies the
  condition."  ``GET /entity`` needs authentication like every other ``/entity`` route.
* A general field sent unwrapped (``"CustomerID": "X"``, also ``note``) is rejected with 400
  HttpError whose ``message`` names the field and whose ``modelState`` has
  ``entity.<path>``.  Fields not in the contract of the requested version are ignored (not
  saved, not echoed); so are read-only fields (totals, Status, LineNbr, QtyOnHand, ...): the
  business logic wins and 200 does not prove a value was saved.
* Null fields render as ``{}``.  Key lookups and string comparisons in ``$filter`` are
  case-insensitive (SQL Server collation).  Lists come back in insertion order.
* ``$filter`` on a detail entity, on an unknown field, or with a malformed literal (an
  un-encoded ``+`` in a datetimeoffset arrives as a space) -> 400.  A PUT ``$filter`` matching
  several records -> 400; matching none -> insert.  A PUT ``id`` that matches nothing -> 400.
* Keys absent on insert: SalesInvoice numbers ``INV000001`` / ``CRM000001`` per type,
  Customer ``C000001`` (a tenant whose customer key is auto-numbered); StockItem and
  NonStockItem need ``InventoryID`` (422 otherwise).  A ReferenceNbr that matches nothing
  inserts a new document under the next number (the sequence is automatic).
* Detail lines sent without ``id`` or their key (Details ``LineNbr``, TaxDetails ``TaxID``,
  ApplicationsCreditMemo ``DocType``+``ReferenceNbr``, WarehouseDetails ``WarehouseID``) are
  appended, as in Acumatica; ``"delete": true`` removes a matched line.
* SalesInvoice: ``Hold`` defaults to false (status "Balanced"; "On Hold" when true).  Line
  ``Qty`` defaults to 0; ``UnitPrice`` defaults to the item's DefaultPrice (no currency
  conversion); a sent UnitPrice is kept and marks ``ManualPrice`` true unless ManualPrice is
  sent.  ``Amount = round(Qty*UnitPrice) - DiscountAmount`` (DiscountPercent used when no
  DiscountAmount), rounded half away from zero to the currency's minor unit (0 for JPY/KRW/...,
  3 for BHD/KWD/..., else 2).  Taxes are taken as sent; TaxableAmount defaults to DetailTotal
  and TaxAmount to the seeded rate (or 0).  ``Amount = DetailTotal + TaxTotal``.  An unknown
  CustomerID/InventoryID/TaxID, an inactive item, a negative Qty, an unknown original invoice,
  or an application to a document that is not an open invoice of the same customer -> 422,
  nothing saved.  ``Currency`` is kept as sent (defaults to the customer's CurrencyID).
  Released documents ignore PUT changes (200, unchanged) and cannot be deleted (422).
* Release of a missing, held or already released document -> 422 with the entity and an
  ``error``; a release that fails when it completes answers 500 on the status URL.
* Numbering: Payment ``ReferenceNbr`` ``000001`` (one sequence for payments and prepayments) and
  SalesOrder ``OrderNbr`` ``000001`` (per order type), as in the reference's key examples
  (``Payment/Payment/000001``, ``SalesOrder/SO/000001``).
* SalesOrder: only order type ``SO``; ``Hold`` defaults to false (status "Open"; "On Hold" when
  true); lines are priced like invoice lines (``OrderQty``, ``LineDescription``,
  ``ExtendedPrice = round(OrderQty*UnitPrice)``, ``Amount = ExtendedPrice - DiscountAmount``);
  taxes are taken as sent (``DisableAutomaticTaxCalculation`` / ``DisableAutomaticDiscountUpdate``
  are stored; nothing is recalculated); ``OrderTotal = line total + TaxTotal``; ``CurrencyID``
  defaults to the customer's.  No order actions are simulated (404).
* Shipment: only type ``Shipment`` (Operation ``Issue``), numbered ``000001``.  Lines name a sales order
  (``OrderType``/``OrderNbr``) of the shipment's customer with status Open; a line without
  ``OrderLineNbr`` adds every line still to ship (stock items, and non-stock items with
  ``RequireShipment``), ``ShippedQty`` defaults to the open quantity and may not exceed what other
  shipments leave.  The Orders tab is derived from the lines.  ``Hold`` defaults to false (status
  "Open"; "On Hold" when true).  ``ConfirmShipment`` moves Open -> "Confirmed" (packages
  ``Confirmed``); the orders' line ``OpenQty`` fall and an order with nothing left to ship becomes
  "Completed".  Confirmed shipments ignore PUT changes.  The statuses after invoicing ("Completed",
  "Invoiced", "Partially Invoiced") are **unconfirmed** and not reached: invoicing a shipment is not
  simulated.  ``ShipVia`` is stored as sent (carriers are not seeded).
* Payment: ``PaymentMethod`` must be a seeded, active method (422 "'Payment Method' cannot be
  found in the system." otherwise); ``CashAccount`` defaults to the method's default and must be
  one the method allows (422 on ``CashAccount``); ``CurrencyID`` defaults to the cash account's
  currency, and a different one is refused with 422 on ``CurrencyID`` (a cash account has one
  currency; **unconfirmed** whether Acumatica refuses or silently keeps the account's).
  ``DocumentsToApply.DocType`` accepts "Invoice"/"Debit Memo" and the codes "INV"/"DRM" (stored as
  the display value); the document must be an open (released) invoice of the same customer and
  currency, ``AmountPaid`` (default: what both sides have left) within its balance; orders in
  ``OrdersToApply`` must be open, of the same customer and currency, ``AppliedToOrder`` within the
  unpaid balance; all applications together within ``PaymentAmount`` (entity error otherwise).
  An application above what is open answers 422 with the error on that row's ``AmountPaid``
  (``AppliedToOrder``), one to a document no longer open (paid, not released) on its
  ``ReferenceNbr`` (``OrderNbr``), and nothing is saved: the reference gives the shape (422, the
  error on the failing field); the message text is the simulator's own.
  ``AppliedToDocuments`` / ``AppliedToOrders`` / ``AvailableBalance`` are computed.  ``Hold``
  defaults to false (status "Balanced"); once released "Closed" when nothing is left unapplied
  and nothing went to orders, else "Open".  Released payments ignore PUT changes.
* OAuth: ``invalid_client`` / ``invalid_grant`` / ``unsupported_grant_type`` /
  ``invalid_scope`` / ``invalid_request`` with 400.  Without ``scope`` only ``api`` is granted
  (no refresh token).  Refresh-token rotation: every refresh returns a new refresh token and the
  used one stops working at once (the conservative reading); the chain lasts 30 days from the
  first sign-in.  Earlier access tokens stay valid until they expire.
* Cookie sign-in with bad credentials -> 500 HttpError "Invalid credentials. Please try again."
* Quota: ``requests_per_minute`` counts authenticated ``/entity`` requests (sign-in included,
  sign-out excluded) in a fixed 60-s window opened by its first request; beyond it -> 429 with a
  plain-text body and ``Retry-After`` (whole seconds to the window's end) when
  ``send_retry_after``, else no header.  The documented "delay first" phase is not modelled, so
  a client must pace itself.  Declined requests do not consume the quota.
* ``/_sandbox/reset`` clears business data, operations, counters, stats, the quota window,
  settings and faults; issued tokens and sessions survive.
"""
from __future__ import annotations

import copy
import json
import math
import operator
import re
import secrets
import time
import uuid
from base64 import b64decode
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, time as dtime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sandbox import wire
from sandbox.faults import Faults, fault_routes, lost_response

ENDPOINT = "Default"
BUILD_VERSION = "24.200.0001"
SESSION_IDLE_SECONDS = 600
REFRESH_CHAIN_SECONDS = 30 * 24 * 3600
QUOTA_WINDOW_SECONDS = 60
KNOWN_SCOPES = {"api", "offline_access", "api:concurrent_access", "openid", "email", "profile", "phone"}
RELEASED = {"Open", "Closed"}
INACTIVE_ITEM = {"Inactive", "Marked for Deletion", "No Sales"}


# --------------------------------------------------------------------------- JSON on the wire

def dumps(obj: Any) -> str:
    return wire.dumps(obj, iso)


class JSON(Response):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def http_error(status: int, message: str, exception: str | None = None,
               exception_type: str = "PX.Api.ContractBased.Exception", **extra: Any) -> JSON:
    body: dict[str, Any] = {"message": message}
    if exception:
        body.update(exceptionMessage=exception, exceptionType=exception_type, stackTrace="")
    body.update(extra)
    return JSON(body, status_code=status)


def no_resource(request: Request) -> JSON:
    return JSON({"message": f"No HTTP resource was found that matches the request URI '{request.url}'."},
                status_code=404)


def not_found() -> JSON:
    return http_error(404, "No entity satisfies the condition.")


def unauthorized() -> JSON:
    return http_error(401, "You are not logged in.", "You are not logged in.",
                      "PX.Data.PXNotLoggedInException")


def too_many_requests(retry_after: float | None) -> Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else {}
    return PlainTextResponse("API request limit per minute exceeded. Try again later.",
                             status_code=429, headers=headers)


def oauth_error(error: str, description: str | None = None) -> JSON:
    body = {"error": error} | ({"error_description": description} if description else {})
    return JSON(body, status_code=400, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")


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


# --------------------------------------------------------------------------- request bodies

class BadRequest(Exception):
    """A request the API rejects with 400 before any business logic runs."""

    def __init__(self, message: str, field_path: str | None = None):
        super().__init__(message)
        self.field_path = field_path

    def response(self) -> JSON:
        extra = {"modelState": {self.field_path: [str(self)]}} if self.field_path else {}
        return http_error(400, str(self), **extra)


SYSTEM_KEYS = {"id", "rowNumber", "custom", "_links", "files", "error", "delete"}


def parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null", parse_float=Decimal)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc


def coerce(kind: str, value: Any, where: str) -> Any:
    """Convert a wrapped value the way the API's deserializer would, or reject it with 400."""
    if value is None:
        return None
    try:
        return _COERCE[kind](value)
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise BadRequest(f"Error converting value {value!r} of '{where}' to {kind}.", where) from exc


def _to_string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise TypeError(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise TypeError(value)
    return Decimal(str(value).strip())


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TypeError(value)


def _to_int(value: Any) -> int:
    number = _to_decimal(value)
    if number != number.to_integral_value():
        raise ValueError(value)
    return int(number)


def parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str) or " " in value.strip():
        raise ValueError(value)
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _to_guid(value: Any) -> str:
    return str(uuid.UUID(str(value)))


_COERCE: dict[str, Callable[[Any], Any]] = {STRING: _to_string, DECIMAL: _to_decimal, BOOLEAN: _to_bool,
                                            INT: _to_int, DATETIME: parse_datetime, GUID: _to_guid}


def unwrap(contract: dict[str, Shape], shape: Shape, body: Any, where: str = "entity") -> dict:
    """Turn a wrapped request entity into plain values, enforcing the ``{"value": ...}`` form."""
    if not isinstance(body, dict):
        raise BadRequest(f"'{where}' must be a JSON object.", where)
    out: dict[str, Any] = {}
    for key, raw in body.items():
        path = f"{where}.{key}"
        if key in SYSTEM_KEYS:
            _system_value(out, key, raw, path)
        elif key in shape.linked:
            out[key] = unwrap(contract, contract[shape.linked[key]], raw, path)
        elif key in shape.details:
            if not isinstance(raw, list):
                raise BadRequest(f"'{key}' is a detail collection and must be a JSON array.", path)
            out[key] = [unwrap(contract, contract[shape.details[key]], line, f"{path}[{i}]")
                        for i, line in enumerate(raw)]
        elif key == "note" or key in shape.fields:
            _check_wrapped(key, raw, path)
            if "value" in raw:
                out[key] = coerce(shape.fields.get(key, STRING), raw["value"], path)
        elif not isinstance(raw, (dict, list)):
            _check_wrapped(key, raw, path)
    return out


def _check_wrapped(key: str, raw: Any, path: str) -> None:
    if not isinstance(raw, dict):
        raise BadRequest(f"The request is invalid: field '{key}' must be sent wrapped, "
                         f"as {{\"value\": ...}}, not as a bare value.", path)


def _system_value(out: dict, key: str, raw: Any, path: str) -> None:
    if key == "id" and raw is not None:
        out["id"] = coerce(GUID, raw, path)
    elif key == "delete":
        out["delete"] = coerce(BOOLEAN, raw, path)


# --------------------------------------------------------------------------- money

def minor_units(currency: str | None) -> int:
    return wire.minor_unit(currency or "")


def money(amount: Decimal, currency: str | None) -> Decimal:
    rounded = Decimal(amount).quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)
    return abs(rounded) if rounded.is_zero() else rounded


# --------------------------------------------------------------------------- query options

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<typed>(?:datetimeoffset|datetime|date|guid)'[^']*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?[mMdDfFlL]?(?![\w.]))
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)
""", re.X)
_COMPARE = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
            "lt": operator.lt, "le": operator.le}
_FUNCTIONS = {"substringof", "startswith", "endswith"}
Predicate = Callable[[dict], bool]


@dataclass
class Operand:
    kind: str  # a field type, or "literal-<type>" for literals
    get: Callable[[dict], Any]
    literal: Any = None

    @property
    def is_literal(self) -> bool:
        return self.kind.startswith("literal")


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise BadRequest(f"Invalid $filter near '{text[pos:pos + 20]}'.", "$filter")
        if match.lastgroup != "ws":
            tokens.append((match.lastgroup, match.group()))
        pos = match.end()
    return tokens


class FilterParser:
    """OData-3 ``$filter`` subset of Contract Version 4, compiled to a record predicate."""

    def __init__(self, text: str, contract: dict[str, Shape], shape: Shape):
        self.tokens, self.pos = tokenize(text), 0
        self.contract, self.shape = contract, shape

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise BadRequest(f"Unexpected '{self.tokens[self.pos][1]}' in $filter.", "$filter")
        return predicate

    def _peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise BadRequest("Unexpected end of $filter.", "$filter")
        self.pos += 1
        return token

    def _accept(self, word: str) -> bool:
        token = self._peek()
        if token and token[1] == word:
            self.pos += 1
            return True
        return False

    def _expect(self, word: str) -> None:
        if not self._accept(word):
            raise BadRequest(f"Expected '{word}' in $filter.", "$filter")

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._accept("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda r: any(p(r) for p in parts))

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._accept("and"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else (lambda r: all(p(r) for p in parts))

    def _not(self) -> Predicate:
        if self._accept("not"):
            inner = self._not()
            return lambda r: not inner(r)
        return self._primary()

    def _primary(self) -> Predicate:
        if self._accept("("):
            inner = self._or()
            self._expect(")")
            return inner
        token, following = self._peek(), self._peek(1)
        if token and token[1] in _FUNCTIONS and following and following[1] == "(":
            return self._with_bool_comparison(self._function())
        left = self._operand()
        op = self._take()[1]
        if op not in _COMPARE:
            raise BadRequest(f"Unknown operator '{op}' in $filter.", "$filter")
        return compare(left, op, self._operand())

    def _with_bool_comparison(self, predicate: Predicate) -> Predicate:
        token = self._peek()
        if token and token[1] in ("eq", "ne"):
            op = self._take()[1]
            wanted = self._take()[1] == "true"
            return lambda r: (predicate(r) == wanted) == (op == "eq")
        return predicate

    def _function(self) -> Predicate:
        name = self._take()[1]
        self._expect("(")
        first = self._operand()
        self._expect(",")
        second = self._operand()
        self._expect(")")
        haystack, needle = (second, first) if name == "substringof" else (first, second)
        test = {"substringof": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}[name]

        def predicate(record: dict) -> bool:
            value, part = haystack.get(record), needle.get(record)
            return value is not None and part is not None and test(str(value).casefold(), str(part).casefold())
        return predicate

    def _operand(self) -> Operand:
        kind, text = self._take()
        if kind == "string":
            return literal("literal-string", text[1:-1].replace("''", "'"))
        if kind == "number":
            return literal("literal-number", Decimal(text.rstrip("mMdDfFlL")))
        if kind == "typed":
            return typed_literal(text)
        if kind == "name" and text in ("true", "false", "null"):
            return literal("literal-" + ("null" if text == "null" else "boolean"),
                           None if text == "null" else text == "true")
        if kind == "name":
            return self._field(text)
        raise BadRequest(f"Unexpected '{text}' in $filter.", "$filter")

    def _field(self, path: str) -> Operand:
        shape, steps = self.shape, path.split("/")
        for step in steps[:-1]:
            if step in shape.details:
                raise BadRequest(f"Filtering by fields of the detail entity '{step}' is not supported.", "$filter")
            if step not in shape.linked:
                raise BadRequest(f"Unknown entity '{step}' in $filter path '{path}'.", "$filter")
            shape = self.contract[shape.linked[step]]
        if steps[-1] not in shape.fields:
            raise BadRequest(f"Unknown field '{path}' in $filter.", "$filter")
        return Operand(shape.fields[steps[-1]], lambda record: read_path(record, steps))


def literal(kind: str, value: Any) -> Operand:
    return Operand(kind, lambda record: value, value)


def typed_literal(text: str) -> Operand:
    prefix, _, rest = text.partition("'")
    raw = rest[:-1]
    try:
        if prefix == "guid":
            return literal("literal-string", str(uuid.UUID(raw)))
        if prefix == "date":
            day = datetime.strptime(raw, "%Y-%m-%d")
            return literal("literal-datetime", day.replace(tzinfo=timezone.utc))
        return literal("literal-datetime", parse_datetime(raw))
    except ValueError as exc:
        raise BadRequest(f"Invalid {prefix} literal '{raw}' in $filter (URL-encode '+' as %2B).",
                         "$filter") from exc


def read_path(record: dict, steps: list[str]) -> Any:
    value: Any = record
    for step in steps:
        value = value.get(step) if isinstance(value, dict) else None
    return value


def compare(left: Operand, op: str, right: Operand) -> Predicate:
    field_kind = left.kind if not left.is_literal else right.kind
    left_get, right_get = _comparable(left, field_kind), _comparable(right, field_kind)
    test = _COMPARE[op]

    def predicate(record: dict) -> bool:
        a, b = left_get(record), right_get(record)
        if a is None or b is None:
            return (a is None and b is None) == (op == "eq") if op in ("eq", "ne") else False
        try:
            return test(a, b)
        except TypeError:
            return False
    return predicate


def _comparable(operand: Operand, field_kind: str) -> Callable[[dict], Any]:
    """Values normalised for comparison: strings case-insensitive, literals cast to the field type."""
    if not operand.is_literal:
        return lambda r: _normalise(operand.get(r))
    value = operand.literal
    if value is not None and field_kind in (DECIMAL, INT):
        value = coerce(DECIMAL, value, "$filter")
    elif value is not None and field_kind == DATETIME and not isinstance(value, datetime):
        value = coerce(DATETIME, value, "$filter")
    elif value is not None and field_kind in (STRING, GUID) and not isinstance(value, str):
        value = format(value, "f") if isinstance(value, Decimal) else str(value)
    normalised = _normalise(value)
    return lambda r: normalised


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def parse_paths(text: str | None) -> set[tuple[str, ...]] | None:
    if text is None:
        return None
    return {tuple(p.strip() for p in part.strip().split("/")) for part in text.split(",") if part.strip()}


def expand_paths(text: str | None) -> set[tuple[str, ...]]:
    """Expanded entity paths, including every prefix (``MainContact/Address`` expands ``MainContact``)."""
    paths = parse_paths(text) or set()
    return {path[:i] for path in paths for i in range(1, len(path) + 1)}


def parse_count(params: dict, name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"The value of {name} must be a non-negative integer.", name)
    return int(raw)


# --------------------------------------------------------------------------- rendering

@dataclass
class View:
    """What a response should show: expanded paths, selected paths, and 422 errors by path."""
    expand: set[tuple[str, ...]] = field(default_factory=set)
    select: set[tuple[str, ...]] | None = None
    errors: dict[tuple, str] = field(default_factory=dict)

    def shows(self, path: tuple[str, ...], container: bool = False) -> bool:
        if self.select is None:
            return True
        for chosen in self.select:
            if path[:len(chosen)] == chosen or (container and chosen[:len(path)] == path):
                return True
        return False


def render(contract: dict[str, Shape], shape: Shape, record: dict, view: View,
           path: tuple = (), row: int = 1) -> dict:
    names = tuple(p for p in path if isinstance(p, str))
    out: dict[str, Any] = {"id": record.get("id"), "rowNumber": row, "note": {"value": record.get("note") or ""}}
    for name, kind in shape.fields.items():
        if view.shows(names + (name,)):
            out[name] = wrap_value(record.get(name), view.errors.get(path + (name,)))
    for name, sub in shape.linked.items():
        if names + (name,) in view.expand and view.shows(names + (name,), container=True):
            out[name] = render(contract, contract[sub], record.get(name) or {}, view, path + (name,))
    for name, sub in shape.details.items():
        if names + (name,) in view.expand and view.shows(names + (name,), container=True):
            out[name] = [render(contract, contract[sub], line, view, path + (name, i), i + 1)
                         for i, line in enumerate(record.get(name) or [])]
    out["custom"] = {}
    if path + ("",) in view.errors:
        out["error"] = view.errors[path + ("",)]
    return out


def wrap_value(value: Any, error: str | None = None) -> dict:
    wrapped: dict[str, Any] = {} if value is None else {"value": iso(value) if isinstance(value, datetime) else value}
    if error:
        wrapped["error"] = error
    return wrapped


def sent_paths(body: Any, prefix: tuple = ()) -> set[tuple[str, ...]]:
    """Linked/detail paths present in a request body: a 422 echoes what was sent."""
    found: set[tuple[str, ...]] = set()
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, (dict, list)) and key not in SYSTEM_KEYS and not (
                    isinstance(value, dict) and ("value" in value or not value)):
                found.add(prefix + (key,))
                for item in value if isinstance(value, list) else [value]:
                    found |= sent_paths(item, prefix + (key,))
    return found


def plain(value: Any) -> Any:
    """Control-surface form: Decimals as strings, datetimes as ISO strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- state

@dataclass
class Settings:
    requests_per_minute: int = 0
    send_retry_after: bool = True
    token_lifetime: int = 3600
    action_polls: int = 1
    action_ms: int = 0

    def configure(self, values: dict) -> None:
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
            setattr(self, key, _to_bool(value) if isinstance(getattr(self, key), bool) else int(value))


@dataclass
class Grant:
    client_id: str
    username: str
    scopes: tuple[str, ...]
    chain_expires: float


@dataclass
class Operation:
    id: str
    doc_id: str
    polls_left: int
    entity: str = "SalesInvoice"
    asked_at: float = 0.0  # the state's clock when the action was asked for
    ready_at: float = 0.0  # ... and when the operation has run its course
    done: bool = False
    error: str | None = None


class Errors(dict):
    """Validation errors keyed by record path; ``path + ("",)`` is an entity-level error."""

    def add(self, path: tuple, message: str) -> None:
        self.setdefault(path, message)


class AcumaticaState:
    """In-memory tenant: records, numbering, tokens, sessions, quota and request statistics."""

    def __init__(self, *, tenant: str, base_currency: str, settings: Settings,
                 clock: Callable[[], float] = time.time):
        self.tenant, self.base_currency, self.clock = tenant, base_currency, clock
        self.initial_settings = replace(settings)
        self.settings = settings
        self.access_tokens: dict[str, tuple[float, Grant]] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.sessions: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        self.records: dict[str, dict[str, dict]] = {name: {} for name in ENTITIES}
        self.key_index: dict[str, dict[tuple, str]] = {name: {} for name in ENTITIES}
        self.taxes: dict[str, Decimal | None] = {}
        self.cash_accounts: dict[str, dict] = {}
        self.payment_methods: dict[str, dict] = {}
        self.counters: dict[str, int] = {}
        self.operations: dict[str, Operation] = {}
        self.request_log: list[dict] = []
        self.stats = {"total": 0, "throttled": 0, "token_requests": 0, "by_grant": {}, "by_method": {}, "by_entity": {}, "by_method_entity": {},
                      "by_status": {}}
        self.window_start: float | None = None
        self.window_count = 0
        self.settings.configure(asdict(self.initial_settings))

    def now(self) -> datetime:
        """Millisecond precision, so a timestamp read back and sent in a $filter compares equal."""
        moment = datetime.fromtimestamp(self.clock(), timezone.utc)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def today(self) -> datetime:
        return datetime.combine(self.now().date(), dtime(), timezone.utc)

    def next_number(self, prefix: str, sequence: str | None = None) -> str:
        """The next number of a numbering sequence (named after its prefix unless given)."""
        key = sequence or prefix
        self.counters[key] = self.counters.get(key, 0) + 1
        return f"{prefix}{self.counters[key]:06d}"

    # ---- records

    def find(self, entity: str, **keys: Any) -> dict | None:
        if tuple(keys) == ENTITIES[entity].keys:
            record_id = self.key_index[entity].get(_key_tuple(keys.values()))
            return self.records[entity].get(record_id) if record_id else None
        for record in self.records[entity].values():
            if all(_same_key(record.get(k), v) for k, v in keys.items()):
                return record
        return None

    def item(self, inventory_id: str) -> tuple[str, dict] | None:
        for entity in ("StockItem", "NonStockItem"):
            record = self.find(entity, InventoryID=inventory_id)
            if record:
                return entity, record
        return None

    def save(self, entity: str, record: dict) -> None:
        """Store a record in place (lists keep insertion order) and re-index its keys."""
        self._unindex(entity, self.records[entity].get(record["id"]))
        self.records[entity][record["id"]] = record
        self.key_index[entity][self._keys_of(entity, record)] = record["id"]

    def forget(self, entity: str, record_id: str) -> None:
        self._unindex(entity, self.records[entity].pop(record_id, None))

    def _unindex(self, entity: str, record: dict | None) -> None:
        if record is not None:
            self.key_index[entity].pop(self._keys_of(entity, record), None)

    @staticmethod
    def _keys_of(entity: str, record: dict) -> tuple:
        return _key_tuple(record.get(k) for k in ENTITIES[entity].keys)

    def add_stock_item(self, inventory_id: str, *, default_price: Any = 0, last_cost: Any = 0,
                       qty_on_hand: Any = 0, warehouse_id: str = "WHOLESALE", description: str | None = None,
                       item_status: str = "Active") -> dict:
        record = self.find("StockItem", InventoryID=inventory_id) or new_record()
        record.update(InventoryID=inventory_id, Description=description or inventory_id,
                      DefaultPrice=Decimal(str(default_price)), LastCost=Decimal(str(last_cost)),
                      ItemStatus=item_status, DefaultWarehouseID=warehouse_id)
        record["WarehouseDetails"] = [{"id": new_id(), "WarehouseID": warehouse_id, "IsDefault": True,
                                       "QtyOnHand": Decimal(str(qty_on_hand)), "Status": "Active"}]
        STOCK_ITEM.complete(self, record)
        self.save("StockItem", record)
        return record

    def add_non_stock_item(self, inventory_id: str, *, default_price: Any = 0, last_cost: Any = 0,
                           description: str | None = None, item_type: str = "Non-Stock Item",
                           item_status: str = "Active") -> dict:
        record = self.find("NonStockItem", InventoryID=inventory_id) or new_record()
        record.update(InventoryID=inventory_id, Description=description or inventory_id, ItemType=item_type,
                      DefaultPrice=Decimal(str(default_price)), LastCost=Decimal(str(last_cost)),
                      CurrentCost=Decimal(str(last_cost)), ItemStatus=item_status)
        NON_STOCK_ITEM.complete(self, record)
        self.save("NonStockItem", record)
        return record

    def add_customer(self, customer_id: str, *, name: str | None = None, email: str | None = None,
                     currency: str | None = None, customer_class: str = "DEFAULT") -> dict:
        record = self.find("Customer", CustomerID=customer_id) or new_record()
        record.update(CustomerID=customer_id, CustomerName=name or customer_id, Email=email,
                      CurrencyID=currency or self.base_currency, CustomerClass=customer_class)
        record.setdefault("MainContact", {"id": new_id()})["Email"] = email
        CUSTOMER.complete(self, record)
        self.save("Customer", record)
        return record

    def add_tax(self, tax_id: str, rate: Any = None) -> None:
        self.taxes[tax_id] = None if rate is None else Decimal(str(rate))

    def add_cash_account(self, cash_account: str, *, currency: str | None = None,
                         description: str | None = None) -> dict:
        account = {"CashAccountCD": cash_account, "CurrencyID": currency or self.base_currency,
                   "Description": description or cash_account}
        self.cash_accounts[cash_account.casefold()] = account
        return account

    def add_payment_method(self, method: str, *, cash_account: str | None = None,
                           cash_accounts: tuple[str, ...] = (), active: bool = True) -> dict:
        """A payment method usable in AR; ``cash_account`` is its default, ``cash_accounts`` the
        others allowed. Accounts not seeded yet are added in the base currency."""
        allowed = [a for a in (cash_account, *cash_accounts) if a]
        for account in allowed:
            if account.casefold() not in self.cash_accounts:
                self.add_cash_account(account)
        record = {"PaymentMethodID": method, "Active": active, "UseInAR": True,
                  "DefaultCashAccount": cash_account, "CashAccounts": allowed}
        self.payment_methods[method.casefold()] = record
        return record

    def order_by_ref(self, external_ref: str) -> dict | None:
        return next((o for o in self.records["SalesOrder"].values()
                     if _same_key(o.get("ExternalRef"), external_ref)), None)

    def add_shipment(self, order: dict, *, tracking_numbers: tuple[str, ...] = (), ship_via: str | None = None,
                     shipment_date: datetime | None = None, confirm: bool = True) -> dict:
        """What a warehouse clerk does on SO302000: a shipment of everything still to ship on ``order``,
        one package per tracking number, then Confirm Shipment. ValueError with Acumatica's message."""
        draft = new_record()
        draft.update(CustomerID=order.get("CustomerID"), ShipVia=ship_via, ShipmentDate=shipment_date,
                     Details=[{"id": new_id(), "OrderType": order["OrderType"], "OrderNbr": order["OrderNbr"]}],
                     Packages=[{"id": new_id(), "TrackingNbr": t} for t in tracking_numbers])
        errors = SHIPMENT.apply(self, draft, {}, True)
        if errors:
            raise ValueError("; ".join(errors.values()))
        SHIPMENT.assign_number(self, draft)
        self.save("Shipment", draft)
        if confirm:
            problem = SHIPMENT.release_problem(self, draft)
            if problem:
                raise ValueError(problem)
            SHIPMENT.release(self, draft)
        return draft

    def documents(self, type: str | None = None) -> list[dict]:
        """Invoices and credit memos, then payments, then sales orders, as plain JSON."""
        docs = [plain_document(d) for d in self.records["SalesInvoice"].values()]
        docs += [plain_payment(p) for p in self.records["Payment"].values()]
        docs += [plain_order(o) for o in self.records["SalesOrder"].values()]
        return [d for d in docs if type is None or d["type"] == type]

    def customers(self) -> list[dict]:
        return [plain_customer(c) for c in self.records["Customer"].values()]

    # ---- authentication

    def issue_tokens(self, grant: Grant) -> dict:
        access = secrets.token_urlsafe(32)
        self.access_tokens[access] = (self.clock() + self.settings.token_lifetime, grant)
        body = {"access_token": access, "expires_in": self.settings.token_lifetime,
                "token_type": "Bearer", "scope": " ".join(grant.scopes)}
        if "offline_access" in grant.scopes:
            refresh = secrets.token_urlsafe(32)
            self.refresh_tokens[refresh] = grant
            body["refresh_token"] = refresh
        return body

    def redeem_refresh_token(self, token: str, client_id: str) -> Grant | None:
        """Single use: the presented refresh token is spent whether or not it is still good."""
        grant = self.refresh_tokens.pop(token, None)
        if grant is None or grant.client_id != client_id or grant.chain_expires <= self.clock():
            return None
        return grant

    def open_session(self) -> str:
        session = secrets.token_hex(32)
        self.sessions[session] = self.clock()
        return session

    def is_authenticated(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            entry = self.access_tokens.get(token.strip())
            return bool(entry) and entry[0] > self.clock() and "api" in entry[1].scopes
        session = request.cookies.get(".ASPXAUTH")
        last_seen = self.sessions.get(session or "")
        if last_seen is None or self.clock() - last_seen > SESSION_IDLE_SECONDS:
            return False
        self.sessions[session] = self.clock()
        return True

    def expire_tokens(self) -> None:
        self.access_tokens.clear()
        self.sessions.clear()

    # ---- quota and statistics

    def admit(self) -> float | None:
        """None when the request fits the per-minute quota, else seconds until the window resets."""
        limit, now = self.settings.requests_per_minute, self.clock()
        if limit <= 0:
            return None
        if self.window_start is None or now - self.window_start >= QUOTA_WINDOW_SECONDS:
            self.window_start, self.window_count = now, 0
        if self.window_count >= limit:
            return self.window_start + QUOTA_WINDOW_SECONDS - now
        self.window_count += 1
        return None

    def record_request(self, method: str, path: str, query: str, entity: str | None, status: int) -> None:
        self.request_log.append({"method": method, "path": path, "query": query, "entity": entity,
                                 "status": status, "at": self.clock()})
        self.stats["total"] += 1
        _bump(self.stats["by_method"], method)
        _bump(self.stats["by_entity"], entity or "-")
        _bump(self.stats["by_method_entity"], f"{method} {entity or '-'}")
        _bump(self.stats["by_status"], str(status))
        if status == 429:
            self.stats["throttled"] += 1


def _bump(counter: dict, key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _key_tuple(values: Any) -> tuple:
    return tuple(v.casefold() if isinstance(v, str) else v for v in values)


def _same_key(stored: Any, wanted: Any) -> bool:
    if isinstance(stored, str) and isinstance(wanted, str):
        return stored.casefold() == wanted.casefold()
    return stored == wanted


def new_id() -> str:
    return str(uuid.uuid4())


def new_record() -> dict:
    return {"id": new_id(), "note": ""}


def plain_document(doc: dict) -> dict:
    applications = doc.get("ApplicationsCreditMemo") or []
    applied_here = doc.get("ApplicationsInvoice") or []
    return {
        "id": doc["id"], "type": doc.get("Type"), "number": doc.get("ReferenceNbr"),
        "customer": doc.get("CustomerID"), "date": doc["Date"].date().isoformat() if doc.get("Date") else None,
        "description": doc.get("Description"), "external_ref": doc.get("ExternalRef"),
        "customer_order": doc.get("CustomerOrder"), "currency": doc.get("Currency"), "hold": doc.get("Hold"),
        "status": doc.get("Status"), "detail_total": plain(doc.get("DetailTotal")),
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
        "id": payment["id"], "type": payment.get("Type"), "number": payment.get("ReferenceNbr"),
        "customer": payment.get("CustomerID"),
        "date": payment["ApplicationDate"].date().isoformat() if payment.get("ApplicationDate") else None,
        "description": payment.get("Description"), "external_ref": payment.get("ExternalRef"),
        "customer_order": None, "currency": payment.get("CurrencyID"), "hold": payment.get("Hold"),
        "status": payment.get("Status"), "detail_total": None, "tax_total": None,
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
        "id": order["id"], "type": "Sales Order", "order_type": order.get("OrderType"),
        "number": order.get("OrderNbr"), "customer": order.get("CustomerID"),
        "date": order["Date"].date().isoformat() if order.get("Date") else None,
        "description": order.get("Description"), "external_ref": order.get("ExternalRef"),
        "customer_order": order.get("CustomerOrder"), "currency": order.get("CurrencyID"), "hold": order.get("Hold"),
        "status": order.get("Status"), "detail_total": plain(totals.get("LineTotalAmount")),
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


# --------------------------------------------------------------------------- business rules

class Rules:
    """Per-entity defaults, validation and derived values, applied to a draft before it is saved."""
    entity = ""
    prefix = ""

    def key_values(self, data: dict) -> dict | None:
        keys = ENTITIES[self.entity].keys
        values = {k: data.get(k) for k in keys}
        return values if all(v is not None for v in values.values()) else None

    def is_locked(self, record: dict) -> bool:
        return False

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None:
        """Why the entity's release action cannot run on ``doc`` (None: it can)."""
        return "The action cannot be performed on this record."

    def release(self, state: AcumaticaState, doc: dict) -> None:
        """What the release action does once the long-running operation completes."""

    def apply(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool) -> Errors:
        errors = Errors()
        self.validate(state, draft, changes, is_new, errors)
        self.complete(state, draft)
        return errors

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        if is_new and self.prefix and not draft.get(ENTITIES[self.entity].keys[0]):
            draft[ENTITIES[self.entity].keys[0]] = "<NEW>"
        for key in ENTITIES[self.entity].keys:
            if not draft.get(key):
                errors.add((key,), f"'{label(key)}' cannot be empty.")

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record["LastModifiedDateTime"] = state.now()

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        key = ENTITIES[self.entity].keys[-1]
        if self.prefix and record.get(key) in (None, "<NEW>"):
            record[key] = state.next_number(self.prefix)


class CustomerRules(Rules):
    entity, prefix = "Customer", "C"

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        super().validate(state, draft, changes, is_new, errors)
        sync_email(draft, changes)
        if not draft.get("CustomerName"):
            errors.add(("CustomerName",), "'Customer Name' cannot be empty.")

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("MainContact", {"id": new_id()}).setdefault("Address", {"id": new_id()})
        record.setdefault("Status", "Active")
        record.setdefault("CustomerClass", "DEFAULT")
        record.setdefault("CurrencyID", state.base_currency)
        record.setdefault("CreatedDateTime", state.now())
        record["NoteID"] = record["id"]
        super().complete(state, record)


def sync_email(customer: dict, changes: dict) -> None:
    """Customer.Email and MainContact/Email are one field (DefContact.EMail) under two names."""
    contact = customer.setdefault("MainContact", {"id": new_id()})
    if "Email" in changes:
        contact["Email"] = changes["Email"]
    elif "Email" in (changes.get("MainContact") or {}):
        customer["Email"] = contact.get("Email")


class StockItemRules(Rules):
    entity = "StockItem"

    def complete(self, state: AcumaticaState, record: dict) -> None:
        for name, value in (("ItemStatus", "Active"), ("ItemType", "Finished Good"), ("BaseUOM", "EA"),
                            ("SalesUOM", "EA"), ("ValuationMethod", "Average"), ("ItemClass", "STOCKITEM")):
            record.setdefault(name, value)
        warehouses = record.setdefault("WarehouseDetails", [])
        for detail in warehouses:
            detail.setdefault("QtyOnHand", Decimal(0))
            detail.setdefault("Status", "Active")
        if not record.get("DefaultWarehouseID") and warehouses:
            record["DefaultWarehouseID"] = warehouses[0].get("WarehouseID")
        record["NoteID"] = record["id"]
        record["LastModified"] = state.now()
        super().complete(state, record)


class NonStockItemRules(Rules):
    entity = "NonStockItem"

    def complete(self, state: AcumaticaState, record: dict) -> None:
        for name, value in (("ItemStatus", "Active"), ("ItemType", "Non-Stock Item"), ("BaseUnit", "EA"),
                            ("SalesUnit", "EA"), ("ItemClass", "NONSTOCK")):
            record.setdefault(name, value)
        record["NoteID"] = record["id"]
        super().complete(state, record)


class SalesInvoiceRules(Rules):
    entity = "SalesInvoice"
    prefixes = {"Invoice": "INV", "Credit Memo": "CRM"}

    def key_values(self, data: dict) -> dict | None:
        if data.get("ReferenceNbr") is None:
            return None
        return {"Type": data.get("Type") or "Invoice", "ReferenceNbr": data["ReferenceNbr"]}

    def is_locked(self, record: dict) -> bool:
        return record.get("Status") in RELEASED

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None:
        return release_problem(state, doc)

    def release(self, state: AcumaticaState, doc: dict) -> None:
        release(state, doc)

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("ReferenceNbr") in (None, "<NEW>"):
            record["ReferenceNbr"] = state.next_number(self.prefixes[record["Type"]])

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        draft.setdefault("Type", "Invoice")
        if draft["Type"] not in self.prefixes:
            errors.add(("Type",), f"'{draft['Type']}' is not a valid value for 'Type'. "
                                  f"Allowed: {', '.join(self.prefixes)}.")
            return
        if is_new:
            draft["ReferenceNbr"] = "<NEW>"
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


# ---- sales orders

ORDER_TYPES = ("SO",)
CLOSED_ORDER = {"Completed", "Cancelled"}


class SalesOrderRules(Rules):
    """SO301000: lines priced like invoice lines (``OrderQty``, ``LineDescription``), taxes taken as
    sent, ``OrderTotal = lines + tax``; ``Totals.UnpaidBalance`` falls as applied payments are released."""
    entity = "SalesOrder"

    def key_values(self, data: dict) -> dict | None:
        if data.get("OrderNbr") is None:
            return None
        return {"OrderType": data.get("OrderType") or ORDER_TYPES[0], "OrderNbr": data["OrderNbr"]}

    def is_locked(self, record: dict) -> bool:
        return record.get("Status") in CLOSED_ORDER

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("OrderNbr") in (None, "<NEW>"):
            record["OrderNbr"] = state.next_number("", f"SOORDER-{record['OrderType']}")
        for tax in record.get("TaxDetails") or []:
            tax["OrderNbr"] = record["OrderNbr"]

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        draft.setdefault("OrderType", ORDER_TYPES[0])
        if draft["OrderType"] not in ORDER_TYPES:
            errors.add(("OrderType",), f"'{draft['OrderType']}' cannot be found in the system.")
            return
        if is_new:
            draft["OrderNbr"] = "<NEW>"
        customer = customer_of(state, draft, errors)
        if not draft.get("CurrencyID"):
            draft["CurrencyID"] = (customer or {}).get("CurrencyID") or state.base_currency
        currency = draft["CurrencyID"]
        lines = draft.setdefault("Details", [])
        for index, line in enumerate(lines):
            price_line(state, draft, line, index, errors, currency=currency, qty_field="OrderQty",
                       description_field="LineDescription")
        number_lines(lines)
        set_open_quantities(state, draft)
        line_total = money(sum((line.get("Amount") or Decimal(0) for line in lines), Decimal(0)), currency)
        for index, tax in enumerate(draft.setdefault("TaxDetails", [])):
            settle_tax(state, currency, line_total, tax, index, errors)
            tax.update(OrderType=draft["OrderType"], OrderNbr=draft["OrderNbr"])
        tax_total = money(sum((t.get("TaxAmount") or Decimal(0) for t in draft["TaxDetails"]), Decimal(0)), currency)
        draft["TaxTotal"] = tax_total
        draft["OrderTotal"] = line_total + tax_total
        draft["OrderedQty"] = sum((line.get("OrderQty") or Decimal(0) for line in lines), Decimal(0))
        paid = sum((p.get("AppliedToOrder") or Decimal(0) for p in draft.setdefault("Payments", [])), Decimal(0))
        zero = money(Decimal(0), currency)
        draft.setdefault("Totals", {"id": new_id()}).update(
            LineTotalAmount=line_total, TaxTotal=tax_total, DiscountTotal=zero, MiscTotalAmount=zero,
            UnbilledAmount=draft["OrderTotal"], UnbilledQty=draft["OrderedQty"],
            UnpaidBalance=draft["OrderTotal"] - paid)

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("Hold", False)
        if record.get("Status") not in CLOSED_ORDER:
            record["Status"] = "On Hold" if record["Hold"] else "Open"
        record["Date"] = _midnight(record.get("Date") or state.today())
        record.setdefault("CreatedDate", state.now())
        record.setdefault("Approved", True)
        record.setdefault("CreditHold", False)
        record["BaseCurrencyID"] = state.base_currency
        record["LastModified"] = state.now()
        record["NoteID"] = record["id"]
        super().complete(state, record)


# ---- shipments

SHIPMENT_TYPES = ("Shipment",)
CONFIRMED_SHIPMENT = {"Confirmed", "Completed", "Invoiced", "Partially Invoiced"}


def needs_shipment(state: AcumaticaState, inventory_id: Any) -> bool:
    """Stock items ship; non-stock items (shipping, fees) only when they require a shipment."""
    found = state.item(inventory_id) if inventory_id else None
    return found is not None and (found[0] == "StockItem" or bool(found[1].get("RequireShipment")))


def shipped_quantities(state: AcumaticaState, order: dict, *, confirmed_only: bool,
                       except_shipment: str | None = None) -> dict[Any, Decimal]:
    """Quantity of each order line on shipments (confirmed ones, or every one but ``except_shipment``:
    an open shipment already allocates what it ships)."""
    out: dict[Any, Decimal] = {}
    for shipment in state.records["Shipment"].values():
        if shipment["id"] == except_shipment or (confirmed_only and shipment.get("Status") not in CONFIRMED_SHIPMENT):
            continue
        for line in shipment.get("Details") or []:
            if (_same_key(line.get("OrderType"), order.get("OrderType"))
                    and _same_key(line.get("OrderNbr"), order.get("OrderNbr"))):
                key = line.get("OrderLineNbr")
                out[key] = out.get(key, Decimal(0)) + (line.get("ShippedQty") or Decimal(0))
    return out


def set_open_quantities(state: AcumaticaState, order: dict) -> None:
    """``OpenQty`` of each sales order line: ordered less what confirmed shipments shipped."""
    shipped = shipped_quantities(state, order, confirmed_only=True)
    for line in order.get("Details") or []:
        line["OpenQty"] = (line.get("OrderQty") or Decimal(0)) - shipped.get(line.get("LineNbr"), Decimal(0))


class ShipmentRules(Rules):
    """SO302000: lines come from open sales orders of the shipment's customer (a line naming only
    the order adds every line still to ship, like "Add Order"), packages carry the tracking numbers,
    ``ConfirmShipment`` confirms it; an order shipped in full becomes Completed."""
    entity = "Shipment"

    def is_locked(self, record: dict) -> bool:
        return record.get("Status") in CONFIRMED_SHIPMENT | {"Cancelled"}

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("ShipmentNbr") in (None, "<NEW>"):
            record["ShipmentNbr"] = state.next_number("", "SOSHIPMENT")
        for row in record.get("Orders") or []:
            row["ShipmentNbr"] = record["ShipmentNbr"]

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        draft.setdefault("Type", SHIPMENT_TYPES[0])
        draft.setdefault("Operation", "Issue")
        if draft["Type"] not in SHIPMENT_TYPES:
            errors.add(("Type",), f"'{draft['Type']}' is not a valid value for 'Type'. "
                                  f"Allowed: {', '.join(SHIPMENT_TYPES)}.")
            return
        if is_new:
            draft["ShipmentNbr"] = "<NEW>"
        customer_of(state, draft, errors)
        lines: list[dict] = []
        for index, line in enumerate(draft.setdefault("Details", [])):
            lines += self._lines(state, draft, line, index, errors)
        draft["Details"] = lines
        number_lines(lines)
        draft["Orders"] = self._orders(state, draft)
        packages = draft.setdefault("Packages", [])
        number_lines(packages)
        for package in packages:
            package.setdefault("Confirmed", False)
            package.setdefault("Weight", Decimal(0))
            package["NoteID"] = package["id"]
        draft["PackageCount"] = len(packages)
        draft["PackageWeight"] = sum((p["Weight"] for p in packages), Decimal(0))
        draft["ShippedQty"] = sum((line.get("ShippedQty") or Decimal(0) for line in lines), Decimal(0))
        if not draft.get("WarehouseID") and lines:
            draft["WarehouseID"] = lines[0].get("WarehouseID")

    def _lines(self, state: AcumaticaState, draft: dict, line: dict, index: int, errors: Errors) -> list[dict]:
        """The shipment lines one sent line stands for (every open line of its order when it names
        only the order)."""
        path = ("Details", index)
        order = state.find("SalesOrder", OrderType=line.get("OrderType") or ORDER_TYPES[0],
                           OrderNbr=line.get("OrderNbr")) if line.get("OrderNbr") else None
        if order is None:
            errors.add(path + ("OrderNbr",), "'Order Nbr.' cannot be found in the system.")
            return [line]
        if order.get("Status") != "Open":
            errors.add(path + ("OrderNbr",), f"The sales order {order['OrderNbr']} has the {order.get('Status')} "
                                             f"status; only open orders can be shipped.")
            return [line]
        if not _same_key(order.get("CustomerID"), draft.get("CustomerID")):
            errors.add(path + ("OrderNbr",), "The sales order belongs to another customer.")
            return [line]
        allocated = shipped_quantities(state, order, confirmed_only=False, except_shipment=draft["id"])
        order_lines = {ln.get("LineNbr"): ln for ln in order.get("Details") or []}
        if line.get("OrderLineNbr") is None:
            wanted = [{**line, "id": new_id(), "OrderLineNbr": nbr} for nbr, ln in order_lines.items()
                      if needs_shipment(state, ln.get("InventoryID"))
                      and (ln.get("OrderQty") or 0) > allocated.get(nbr, 0)]
            if not wanted:
                errors.add(path + ("OrderNbr",), f"The sales order {order['OrderNbr']} has nothing left to ship.")
                return [line]
        else:
            wanted = [line]
        for row in wanted:
            source = order_lines.get(row["OrderLineNbr"])
            if source is None or not needs_shipment(state, source.get("InventoryID")):
                errors.add(path + ("OrderLineNbr",), "The order line cannot be found or needs no shipment.")
                continue
            left = (source.get("OrderQty") or Decimal(0)) - allocated.get(row["OrderLineNbr"], Decimal(0))
            row.update(OrderType=order["OrderType"], OrderNbr=order["OrderNbr"], InventoryID=source.get("InventoryID"),
                       UOM=source.get("UOM"), Description=source.get("LineDescription"),
                       OrderedQty=source.get("OrderQty"), OpenQty=left, OriginalQty=left)
            row.setdefault("WarehouseID", source.get("WarehouseID"))
            if row.get("ShippedQty") is None:
                row["ShippedQty"] = left
            if not 0 < row["ShippedQty"] <= left:
                errors.add(path + ("ShippedQty",), f"The shipped quantity must be greater than 0 and not exceed "
                                                   f"the open quantity ({left}).")
        return wanted

    @staticmethod
    def _orders(state: AcumaticaState, draft: dict) -> list[dict]:
        """The Orders tab: one row per sales order on the shipment."""
        rows: dict[tuple, dict] = {}
        for line in draft["Details"]:
            key = (line.get("OrderType"), line.get("OrderNbr"))
            order = state.find("SalesOrder", OrderType=key[0], OrderNbr=key[1]) if key[1] else None
            if order is None:
                continue
            row = rows.setdefault(key, {"id": new_id(), "OrderType": order["OrderType"], "OrderNbr": order["OrderNbr"],
                                        "ShipmentNbr": draft.get("ShipmentNbr"), "ShipmentType": draft["Type"],
                                        "ShippedQty": Decimal(0), "OrderNoteID": order["id"]})
            row["ShippedQty"] += line.get("ShippedQty") or Decimal(0)
        return list(rows.values())

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("Hold", False)
        if record.get("Status") not in CONFIRMED_SHIPMENT | {"Cancelled"}:
            record["Status"] = "On Hold" if record["Hold"] else "Open"
        record["ShipmentDate"] = _midnight(record.get("ShipmentDate") or state.today())
        record.setdefault("CreatedDateTime", state.now())
        record["BaseCurrencyID"] = state.base_currency
        record["NoteID"] = record["id"]
        super().complete(state, record)

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None:
        if doc.get("Status") in CONFIRMED_SHIPMENT:
            return "The shipment has already been confirmed."
        if doc.get("Status") != "Open":
            return "The shipment is on hold and cannot be confirmed."
        if not doc.get("ShippedQty"):
            return "The shipment cannot be confirmed because it has no shipped quantity."
        return None

    def release(self, state: AcumaticaState, doc: dict) -> None:
        """ConfirmShipment: the shipment and its packages are confirmed, its orders' open quantities
        fall, and an order with nothing left to ship is Completed."""
        doc["Status"] = "Confirmed"
        for package in doc.get("Packages") or []:
            package["Confirmed"] = True
        doc["LastModifiedDateTime"] = state.now()
        for row in doc.get("Orders") or []:
            order = state.find("SalesOrder", OrderType=row["OrderType"], OrderNbr=row["OrderNbr"])
            if order is None:
                continue
            set_open_quantities(state, order)
            if all(line["OpenQty"] <= 0 for line in order.get("Details") or []
                   if needs_shipment(state, line.get("InventoryID"))):
                order["Status"] = "Completed"
            order["LastModified"] = order["LastModifiedDateTime"] = state.now()


def plain_shipment(shipment: dict) -> dict:
    return {"id": shipment["id"], "shipment_nbr": shipment.get("ShipmentNbr"), "type": shipment.get("Type"),
            "status": shipment.get("Status"), "customer": shipment.get("CustomerID"),
            "ship_via": shipment.get("ShipVia"), "shipment_date": plain(shipment.get("ShipmentDate")),
            "shipped_qty": plain(shipment.get("ShippedQty")),
            "last_modified": plain(shipment.get("LastModifiedDateTime")),
            "orders": [{"order_type": o.get("OrderType"), "order_nbr": o.get("OrderNbr"),
                        "shipped_qty": plain(o.get("ShippedQty"))} for o in shipment.get("Orders") or []],
            "tracking_numbers": [p.get("TrackingNbr") for p in shipment.get("Packages") or [] if p.get("TrackingNbr")]}


# ---- payments

PAYMENT_TYPES = ("Payment", "Prepayment")
# Adjusted-document types: the internal codes of the guide's example and the display values.
ADJUSTED_DOC_TYPES = {"INV": "Invoice", "DRM": "Debit Memo", "Invoice": "Invoice", "Debit Memo": "Debit Memo"}


class PaymentRules(Rules):
    """AR302000: payment method and cash account from seeded reference data (the cash account defaults
    from the method and fixes the currency), applications to open invoices and to sales orders."""
    entity = "Payment"

    def key_values(self, data: dict) -> dict | None:
        if data.get("ReferenceNbr") is None:
            return None
        return {"Type": data.get("Type") or PAYMENT_TYPES[0], "ReferenceNbr": data["ReferenceNbr"]}

    def is_locked(self, record: dict) -> bool:
        return record.get("Status") in RELEASED

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("ReferenceNbr") in (None, "<NEW>"):
            record["ReferenceNbr"] = state.next_number("", "ARPAYMENT")

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        draft.setdefault("Type", PAYMENT_TYPES[0])
        if draft["Type"] not in PAYMENT_TYPES:
            errors.add(("Type",), f"'{draft['Type']}' is not a valid value for 'Type'. "
                                  f"Allowed: {', '.join(PAYMENT_TYPES)}.")
            return
        if is_new:
            draft["ReferenceNbr"] = "<NEW>"
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
        return "; ".join(errors.values()) or None

    def release(self, state: AcumaticaState, doc: dict) -> None:
        doc["Status"] = "Closed" if doc["AvailableBalance"] <= 0 and not doc.get("OrdersToApply") else "Open"
        for application in doc.get("DocumentsToApply") or []:
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
    for index, application in enumerate(payment.setdefault("DocumentsToApply", [])):
        path = ("DocumentsToApply", index)
        doc_type = ADJUSTED_DOC_TYPES.get(application.get("DocType") or "Invoice")
        if doc_type is None:
            errors.add(path + ("DocType",), f"'{application['DocType']}' is not a valid value for 'Doc. Type'.")
            continue
        application["DocType"] = doc_type
        invoice = state.find("SalesInvoice", Type=doc_type, ReferenceNbr=application.get("ReferenceNbr") or "")
        if (invoice is None or invoice.get("Status") != "Open"
                or not _same_key(invoice.get("CustomerID"), payment.get("CustomerID"))):
            errors.add(path + ("ReferenceNbr",), "'Reference Nbr.' cannot be found in the system.")
            continue
        if not _same_key(invoice.get("Currency"), currency):
            errors.add(path + ("ReferenceNbr",), f"The currency {invoice.get('Currency')} of the document differs "
                                                 f"from the currency {currency} of the payment.")
            continue
        application.update(Description=invoice.get("Description"), CustomerOrder=invoice.get("CustomerOrder"))
        remaining -= _applied(application, "AmountPaid", invoice["Balance"], remaining, currency, path, errors)
    for index, application in enumerate(payment.setdefault("OrdersToApply", [])):
        path = ("OrdersToApply", index)
        application.setdefault("OrderType", ORDER_TYPES[0])
        order = state.find("SalesOrder", OrderType=application["OrderType"], OrderNbr=application.get("OrderNbr") or "")
        if (order is None or order.get("Status") in CLOSED_ORDER
                or not _same_key(order.get("CustomerID"), payment.get("CustomerID"))):
            errors.add(path + ("OrderNbr",), "'Order Nbr.' cannot be found in the system.")
            continue
        if not _same_key(order.get("CurrencyID"), currency):
            errors.add(path + ("OrderNbr",), f"The currency {order.get('CurrencyID')} of the order differs from "
                                             f"the currency {currency} of the payment.")
            continue
        unpaid = order["Totals"]["UnpaidBalance"]
        remaining -= _applied(application, "AppliedToOrder", unpaid, remaining, currency, path, errors)
    applied = sum((a.get("AmountPaid") or Decimal(0) for a in payment["DocumentsToApply"]), Decimal(0))
    to_orders = sum((a.get("AppliedToOrder") or Decimal(0) for a in payment["OrdersToApply"]), Decimal(0))
    payment.update(AppliedToDocuments=applied, AppliedToOrders=to_orders,
                   AvailableBalance=payment["PaymentAmount"] - applied - to_orders)
    if remaining < 0:
        errors.add(("",), "The total amount applied exceeds the payment amount.")


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


CUSTOMER, SALES_INVOICE = CustomerRules(), SalesInvoiceRules()
STOCK_ITEM, NON_STOCK_ITEM = StockItemRules(), NonStockItemRules()
SALES_ORDER, PAYMENT, SHIPMENT = SalesOrderRules(), PaymentRules(), ShipmentRules()
RULES: dict[str, Rules] = {r.entity: r for r in (CUSTOMER, SALES_INVOICE, STOCK_ITEM, NON_STOCK_ITEM, SALES_ORDER,
                                                 PAYMENT, SHIPMENT)}


# --------------------------------------------------------------------------- HTTP: entity API

@dataclass
class Call:
    """A resolved ``/entity/{endpoint}/{version}/...`` request."""
    request: Request
    version: str
    entity: EntityDef
    segments: list[str]

    @property
    def contract(self) -> dict[str, Shape]:
        return contract_for(self.version)

    @property
    def shape(self) -> Shape:
        return self.contract[self.entity.name]

    @property
    def rules(self) -> Rules:
        return RULES[self.entity.name]

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.query_params)


class EntityApi:
    """The contract-based endpoint: routing, auth/quota/fault guard, CRUD and actions."""

    def __init__(self, state: AcumaticaState, faults: Faults, *, site_path: str, versions: tuple[str, ...],
                 credentials: dict[str, str]):
        self.state, self.faults = state, faults
        self.site_path, self.versions, self.credentials = site_path, versions, credentials

    # ---- guard

    async def guarded(self, request: Request, entity: str | None, handler: Callable, *,
                      authenticate: bool = True, metered: bool = True) -> Response:
        """Faults first (they model the network and the proxy), then auth, then the licence quota."""
        response = await self._fault(request)
        if response is None and authenticate and not self.state.is_authenticated(request):
            response = unauthorized()
        if response is None and metered:
            wait = self.state.admit()
            if wait is not None:
                response = too_many_requests(wait if self.state.settings.send_retry_after else None)
        if response is None:
            try:
                response = await handler()
            except BadRequest as exc:
                response = exc.response()
        self.state.record_request(request.method, request.url.path, request.url.query, entity,
                                  response.status_code)
        return response

    async def _fault(self, request: Request) -> Response | None:
        await self.faults.delay()
        if self.faults.expire_tokens:
            self.faults.expire_tokens = False
            self.state.expire_tokens()
        retry_after = self.faults.take_429()
        if retry_after is not None:
            return too_many_requests(retry_after if self.state.settings.send_retry_after else None)
        status = self.faults.take_failure()
        if status is None:
            return None
        if status == 429:
            return too_many_requests(self.faults.retry_after if self.state.settings.send_retry_after else None)
        return http_error(status, "An error has occurred.", "Simulated failure.", "System.Exception")

    # ---- routes

    async def discovery(self, request: Request) -> Response:
        async def handler() -> Response:
            return JSON({"version": {"acumaticaBuildVersion": BUILD_VERSION, "databaseVersion": BUILD_VERSION},
                         "endpoints": [{"name": ENDPOINT, "version": v,
                                        "href": f"{self.site_path}/entity/{ENDPOINT}/{v}/"} for v in self.versions]})
        return await self.guarded(request, None, handler)

    async def login(self, request: Request) -> Response:
        async def handler() -> Response:
            body = await _json_or_form(request)
            tenant = body.get("tenant")
            if (body.get("name") != self.credentials["username"] or body.get("password") != self.credentials["password"]
                    or (tenant and tenant != self.state.tenant)):
                return http_error(500, "An error has occurred.", "Invalid credentials. Please try again.",
                                  "PX.Data.PXException")
            session = self.state.open_session()
            response = Response(status_code=204)
            secure = request.url.scheme == "https"
            response.set_cookie(".ASPXAUTH", session, httponly=True, secure=secure, path="/")
            response.set_cookie("ASP.NET_SessionId", secrets.token_hex(12), httponly=True, secure=secure, path="/")
            response.set_cookie("CompanyID", self.state.tenant, secure=secure, path="/")
            return response
        return await self.guarded(request, "auth/login", handler, authenticate=False)

    async def logout(self, request: Request) -> Response:
        async def handler() -> Response:
            self.state.sessions.pop(request.cookies.get(".ASPXAUTH", ""), None)
            response = Response(status_code=204)
            response.delete_cookie(".ASPXAUTH", path="/")
            return response
        return await self.guarded(request, "auth/logout", handler, authenticate=False, metered=False)

    async def entity(self, request: Request) -> Response:
        call = self._resolve(request)
        if call is None:
            async def missing() -> Response:
                return no_resource(request)
            return await self.guarded(request, None, missing, authenticate=False, metered=False)
        return await self.guarded(request, call.entity.name, lambda: self._dispatch(call))

    def _resolve(self, request: Request) -> Call | None:
        endpoint, version = request.path_params["endpoint"], request.path_params["version"]
        segments = [s for s in request.path_params.get("rest", "").split("/") if s]
        if endpoint != ENDPOINT or version not in self.versions or not segments:
            return None
        definition = ENTITIES.get(segments[0])
        return Call(request, version, definition, segments[1:]) if definition else None

    async def _dispatch(self, call: Call) -> Response:
        method, segments = call.request.method, call.segments
        if segments and segments[0] in call.entity.actions:
            if method == "POST" and len(segments) == 1:
                return await self.invoke_action(call, segments[0])
            if method == "GET" and len(segments) == 3 and segments[1] == "status":
                return self.poll_action(segments[2])
        if method == "POST" and len(segments) == 1:
            return no_resource(call.request)
        handlers = {("GET", False): self.get_list, ("GET", True): self.get_one, ("PUT", False): self.put,
                    ("PATCH", False): self.patch, ("DELETE", True): self.delete}
        handler = handlers.get((method, bool(segments)))
        if handler is None:
            return http_error(405, f"The requested resource does not support http method '{method}'.")
        return await handler(call)

    # ---- reads

    async def get_list(self, call: Call) -> Response:
        params = call.params
        records = list(self.state.records[call.entity.name].values())
        if params.get("$filter"):
            predicate = FilterParser(params["$filter"], call.contract, call.shape).parse()
            records = [r for r in records if predicate(r)]
        skip, top = parse_count(params, "$skip") or 0, parse_count(params, "$top")
        records = records[skip:] if top is None else records[skip:skip + top]
        view = View(expand_paths(params.get("$expand")), parse_paths(params.get("$select")))
        return JSON([self._render(call, r, view, row) for row, r in enumerate(records, start=1)])

    async def get_one(self, call: Call) -> Response:
        record = self._by_url(call)
        if record is None:
            return not_found()
        params = call.params
        return JSON(self._render(call, record, View(expand_paths(params.get("$expand")),
                                                    parse_paths(params.get("$select")))))

    def _by_url(self, call: Call) -> dict | None:
        records = self.state.records[call.entity.name]
        segments = call.segments
        if len(segments) == 1 and _is_guid(segments[0]) and segments[0].lower() in records:
            return records[segments[0].lower()]
        if len(segments) != len(call.entity.keys):
            return None
        return self.state.find(call.entity.name, **dict(zip(call.entity.keys, segments)))

    def _render(self, call: Call, record: dict, view: View, row: int = 1) -> dict:
        body = render(call.contract, call.shape, record, view, row=row)
        base = f"{self.site_path}/entity/{ENDPOINT}/{call.version}"
        body["_links"] = {"self": f"{base}/{call.entity.name}/{record['id']}",
                          "files:put": f"{base}/files/{call.entity.graph}/{record['id']}/{{filename}}"}
        return body

    # ---- writes

    async def put(self, call: Call, *, update_only: bool = False) -> Response:
        body = parse_body(await call.request.body())
        changes = unwrap(call.contract, call.shape, body)
        existing = self._target(call, changes)
        headers = call.request.headers
        if existing is not None and headers.get("if-none-match", "").strip() == "*":
            return http_error(412, "The record already exists.")
        if existing is None and (update_only or headers.get("if-match", "").strip() == "*"):
            return not_found() if update_only else http_error(412, "The record does not exist.")
        view = View(expand_paths(call.params.get("$expand")), parse_paths(call.params.get("$select")))
        if existing is not None and call.rules.is_locked(existing):
            return JSON(self._render(call, existing, view))
        draft = copy.deepcopy(existing) if existing is not None else new_record()
        merge(call.contract, call.shape, draft, changes)
        errors = call.rules.apply(self.state, draft, changes, existing is None)
        if errors:
            return self._unprocessable(call, draft, errors, body, existing is None)
        call.rules.assign_number(self.state, draft)
        self.state.save(call.entity.name, draft)
        if self.faults.take_lost_commit():
            return lost_response()
        return JSON(self._render(call, draft, view))

    async def patch(self, call: Call) -> Response:
        return await self.put(call, update_only=True)

    def _target(self, call: Call, changes: dict) -> dict | None:
        """PUT decides insert vs update from ``$filter``, then ``id``, then the key fields."""
        if call.params.get("$filter"):
            predicate = FilterParser(call.params["$filter"], call.contract, call.shape).parse()
            matches = [r for r in self.state.records[call.entity.name].values() if predicate(r)]
            if len(matches) > 1:
                raise BadRequest(f"The $filter matches {len(matches)} records; a PUT needs exactly one.", "$filter")
            return matches[0] if matches else None
        if "id" in changes:
            record = self.state.records[call.entity.name].get(changes["id"])
            if record is None:
                raise BadRequest(f"No {call.entity.name} record has id '{changes['id']}'.", "entity.id")
            return record
        keys = call.rules.key_values(changes)
        return self.state.find(call.entity.name, **keys) if keys else None

    def _unprocessable(self, call: Call, draft: dict, errors: Errors, body: Any, is_new: bool) -> Response:
        summary = "\r\n".join(f"{label(str(path[-1]))}: {msg}" for path, msg in errors.items() if path[-1])
        entity_error = errors.get(("",))
        errors[("",)] = (f"{'Inserting' if is_new else 'Updating'}  '{call.entity.display}' record raised at least "
                         f"one error. Please review the errors.") + (f"\r\n{entity_error}" if entity_error else "") \
            + (f"\r\n{summary}" if summary else "")
        view = View(expand=sent_paths(body), errors=dict(errors))
        return JSON(self._render(call, draft, view), status_code=422)

    async def delete(self, call: Call) -> Response:
        record = self._by_url(call)
        if record is None:
            return not_found()
        if call.rules.is_locked(record):
            errors = Errors({("",): "A released document cannot be deleted."})
            return JSON(self._render(call, record, View(errors=errors)), status_code=422)
        self.state.forget(call.entity.name, record["id"])
        if self.faults.take_lost_commit():
            return lost_response()
        return Response(status_code=204)

    # ---- actions

    async def invoke_action(self, call: Call, action: str) -> Response:
        body = parse_body(await call.request.body())
        if not isinstance(body, dict):
            raise BadRequest("The action body must be a JSON object with 'entity'.", "invocation")
        changes = unwrap(call.contract, call.shape, body.get("entity") or {}, "invocation.entity")
        doc = self._action_target(call, changes)
        key = call.entity.keys[-1]
        problem = (f"'{label(key)}' cannot be found in the system." if doc is None
                   else call.rules.release_problem(self.state, doc))
        if problem:
            record = doc or {"id": None, **changes}
            path = (key,) if doc is None else ("",)
            return JSON(self._render(call, record, View(errors={path: problem})), status_code=422)
        settings = self.state.settings
        now = self.state.clock()
        operation = Operation(new_id(), doc["id"], settings.action_polls, call.entity.name,
                              asked_at=now, ready_at=now + settings.action_ms / 1000)
        self.state.operations[operation.id] = operation
        if self.faults.take_lost_commit():
            self._finish(operation)
            return lost_response()
        if operation.polls_left <= 0 and settings.action_ms <= 0:
            self._finish(operation)
            return Response(status_code=204)
        location = (f"{self.site_path}/entity/{ENDPOINT}/{call.version}/{call.entity.name}/{action}"
                    f"/status/{operation.id}")
        return Response(status_code=202, headers={"Location": location})

    def _action_target(self, call: Call, changes: dict) -> dict | None:
        if changes.get("id"):
            return self.state.records[call.entity.name].get(changes["id"])
        keys = call.rules.key_values(changes)
        return self.state.find(call.entity.name, **keys) if keys else None

    def poll_action(self, operation_id: str) -> Response:
        operation = self.state.operations.get(operation_id.lower())
        if operation is None:
            return not_found()
        if not operation.done and (operation.polls_left > 0 or self.state.clock() < operation.ready_at):
            operation.polls_left -= 1
            return Response(status_code=202)
        self._finish(operation)
        if operation.error:
            return http_error(500, "An error has occurred.", operation.error, "PX.Data.PXException")
        return Response(status_code=204)

    def _finish(self, operation: Operation) -> None:
        if operation.done:
            return
        operation.done = True
        rules = RULES[operation.entity]
        doc = self.state.records[operation.entity].get(operation.doc_id)
        operation.error = "The document no longer exists." if doc is None else rules.release_problem(self.state, doc)
        if operation.error is None:
            rules.release(self.state, doc)


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


async def _json_or_form(request: Request) -> dict:
    raw = await request.body()
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return dict(parse_qsl(raw.decode()))
    body = parse_body(raw)
    return body if isinstance(body, dict) else {}


# --------------------------------------------------------------------------- HTTP: identity server

class IdentityServer:
    """``/identity/connect/token``: ROPC and refresh grants for one registered client and user."""

    def __init__(self, state: AcumaticaState, credentials: dict[str, str], site_path: str):
        self.state, self.credentials, self.site_path = state, credentials, site_path

    async def token(self, request: Request) -> Response:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return oauth_error("invalid_request", "The token request must be form-encoded.")
        form = dict(parse_qsl((await request.body()).decode()))
        client_id, client_secret = self._client(request, form)
        if client_id != self.credentials["client_id"] or client_secret != self.credentials["client_secret"]:
            return oauth_error("invalid_client")
        grant_type = form.get("grant_type")
        self.state.stats["token_requests"] += 1
        _bump(self.state.stats["by_grant"], str(grant_type))
        if grant_type == "password":
            return self._password(form, client_id)
        if grant_type == "refresh_token":
            return self._refresh(form, client_id)
        return oauth_error("unsupported_grant_type")

    @staticmethod
    def _client(request: Request, form: dict) -> tuple[str | None, str | None]:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, secret = b64decode(value).decode().partition(":")
            except ValueError:
                return None, None
            return user, secret
        return form.get("client_id"), form.get("client_secret")

    def _password(self, form: dict, client_id: str) -> Response:
        scopes = tuple((form.get("scope") or "api").split())
        if set(scopes) - KNOWN_SCOPES:
            return oauth_error("invalid_scope")
        if form.get("username") != self.credentials["username"] or form.get("password") != self.credentials["password"]:
            return oauth_error("invalid_grant", "invalid_username_or_password")
        grant = Grant(client_id, form["username"], scopes, self.state.clock() + REFRESH_CHAIN_SECONDS)
        return self._tokens(grant)

    def _refresh(self, form: dict, client_id: str) -> Response:
        if not form.get("refresh_token"):
            return oauth_error("invalid_request", "refresh_token is missing.")
        grant = self.state.redeem_refresh_token(form["refresh_token"], client_id)
        if grant is None:
            return oauth_error("invalid_grant")
        return self._tokens(grant)

    def _tokens(self, grant: Grant) -> Response:
        return JSON(self.state.issue_tokens(grant), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def configuration(self, request: Request) -> Response:
        issuer = f"{request.url.scheme}://{request.url.netloc}{self.site_path}/identity"
        return JSON({"issuer": issuer, "token_endpoint": f"{issuer}/connect/token",
                     "authorization_endpoint": f"{issuer}/connect/authorize",
                     "userinfo_endpoint": f"{issuer}/connect/userinfo",
                     "grant_types_supported": ["authorization_code", "implicit", "password", "refresh_token",
                                               "hybrid"],
                     "scopes_supported": sorted(KNOWN_SCOPES), "code_challenge_methods_supported": ["S256"]})


# --------------------------------------------------------------------------- HTTP: control surface

class Control:
    """``/_sandbox/*``: seeding, settings and read-outs for tests, the demo and benchmarks."""

    def __init__(self, state: AcumaticaState, faults: Faults):
        self.state, self.faults = state, faults

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        self.faults.configure(**asdict(Faults()))
        return JSON({"ok": True})

    async def stock_items(self, request: Request) -> Response:
        items = [self.state.add_stock_item(
            i["InventoryID"], default_price=i.get("DefaultPrice", 0), last_cost=i.get("LastCost", 0),
            qty_on_hand=i.get("QtyOnHand", 0), warehouse_id=i.get("WarehouseID", "WHOLESALE"),
            description=i.get("Description"), item_status=i.get("ItemStatus", "Active"))
            for i in await _list_body(request)]
        return JSON([plain(i) for i in items])

    async def non_stock_items(self, request: Request) -> Response:
        items = [self.state.add_non_stock_item(
            i["InventoryID"], default_price=i.get("DefaultPrice", 0), last_cost=i.get("LastCost", 0),
            description=i.get("Description"), item_type=i.get("ItemType", "Non-Stock Item"),
            item_status=i.get("ItemStatus", "Active")) for i in await _list_body(request)]
        return JSON([plain(i) for i in items])

    async def taxes(self, request: Request) -> Response:
        for tax in await _list_body(request):
            if isinstance(tax, dict):
                self.state.add_tax(tax["TaxID"], tax.get("Rate"))
            else:
                self.state.add_tax(str(tax))
        return JSON({k: plain(v) for k, v in self.state.taxes.items()})

    async def cash_accounts(self, request: Request) -> Response:
        if request.method == "POST":
            for account in await _list_body(request):
                if isinstance(account, dict):
                    self.state.add_cash_account(account["CashAccountCD"], currency=account.get("CurrencyID"),
                                                description=account.get("Description"))
                else:
                    self.state.add_cash_account(str(account))
        return JSON(list(self.state.cash_accounts.values()))

    async def payment_methods(self, request: Request) -> Response:
        if request.method == "POST":
            for method in await _list_body(request):
                if not isinstance(method, dict):
                    method = {"PaymentMethodID": str(method)}
                self.state.add_payment_method(
                    method["PaymentMethodID"], cash_account=method.get("CashAccount"),
                    cash_accounts=tuple(method.get("CashAccounts") or ()), active=method.get("Active", True))
        return JSON(list(self.state.payment_methods.values()))

    async def customers(self, request: Request) -> Response:
        if request.method == "POST":
            for c in await _list_body(request):
                self.state.add_customer(c["CustomerID"], name=c.get("CustomerName"), email=c.get("Email"),
                                        currency=c.get("CurrencyID"), customer_class=c.get("CustomerClass", "DEFAULT"))
        return JSON(self.state.customers())

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.state.settings.configure(await request.json())
            except (ValueError, TypeError) as exc:
                return JSON({"error": str(exc)}, status_code=400)
        return JSON(asdict(self.state.settings))

    async def documents(self, request: Request) -> Response:
        return JSON(self.state.documents(request.query_params.get("type")))

    async def shipments(self, request: Request) -> Response:
        """POST: confirmed shipments of posted sales orders (``{OrderNbr, OrderType?} | {ExternalRef}``,
        ``TrackingNbr`` or ``TrackingNumbers``, ``ShipVia?``, ``ShipmentDate?``, ``Confirm?``); GET: all."""
        if request.method == "GET":
            return JSON([plain_shipment(s) for s in self.state.records["Shipment"].values()])
        made = []
        for spec in await _list_body(request):
            order = (self.state.order_by_ref(spec["ExternalRef"]) if spec.get("ExternalRef") else
                     self.state.find("SalesOrder", OrderType=spec.get("OrderType") or ORDER_TYPES[0],
                                     OrderNbr=spec.get("OrderNbr")))
            if order is None:
                return JSON({"error": "no such sales order"}, status_code=404)
            numbers = spec.get("TrackingNumbers") or ([spec["TrackingNbr"]] if spec.get("TrackingNbr") else [])
            try:
                made.append(self.state.add_shipment(
                    order, tracking_numbers=tuple(numbers), ship_via=spec.get("ShipVia"),
                    shipment_date=parse_datetime(spec["ShipmentDate"]) if spec.get("ShipmentDate") else None,
                    confirm=spec.get("Confirm", True)))
            except ValueError as exc:
                return JSON({"error": str(exc)}, status_code=422)
        return JSON([plain_shipment(s) for s in made])

    async def stats(self, request: Request) -> Response:
        return JSON(self.state.stats)

    async def requests(self, request: Request) -> Response:
        return JSON(self.state.request_log)

    async def expire_tokens(self, request: Request) -> Response:
        self.state.expire_tokens()
        return JSON({"ok": True})

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/stock-items", self.stock_items, methods=["POST"]),
            Route("/_sandbox/non-stock-items", self.non_stock_items, methods=["POST"]),
            Route("/_sandbox/taxes", self.taxes, methods=["POST"]),
            Route("/_sandbox/customers", self.customers, methods=["GET", "POST"]),
            Route("/_sandbox/cash-accounts", self.cash_accounts, methods=["GET", "POST"]),
            Route("/_sandbox/payment-methods", self.payment_methods, methods=["GET", "POST"]),
            Route("/_sandbox/settings", self.settings, methods=["GET", "POST"]),
            Route("/_sandbox/documents", self.documents, methods=["GET"]),
            Route("/_sandbox/shipments", self.shipments, methods=["GET", "POST"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/requests", self.requests, methods=["GET"]),
            Route("/_sandbox/expire-tokens", self.expire_tokens, methods=["POST"]),
            *fault_routes(self.faults),
        ]


async def _list_body(request: Request) -> list:
    body = parse_body(await request.body())
    return body if isinstance(body, list) else [body]


# --------------------------------------------------------------------------- the app

def create_app(*, tenant: str = "Company", client_id: str = "00000000-0000-0000-0000-000000000001@Company",
               client_secret: str = "secret", username: str = "admin", password: str = "admin",
               versions: tuple[str, ...] = ("23.200.001", "24.200.001"), requests_per_minute: int = 0,
               token_lifetime: int = 3600, send_retry_after: bool = True, base_currency: str = "USD",
               site_path: str = "") -> Starlette:
    """One simulated Acumatica tenant; its state is ``app.state.acumatica``, faults ``app.state.faults``."""
    site = "/" + site_path.strip("/") if site_path.strip("/") else ""
    settings = Settings(requests_per_minute=requests_per_minute, send_retry_after=send_retry_after,
                        token_lifetime=token_lifetime)
    state = AcumaticaState(tenant=tenant, base_currency=base_currency, settings=settings)
    faults = Faults()
    credentials = {"client_id": client_id, "client_secret": client_secret, "username": username,
                   "password": password}
    api = EntityApi(state, faults, site_path=site, versions=tuple(versions), credentials=credentials)
    identity = IdentityServer(state, credentials, site)
    methods = ["GET", "PUT", "POST", "PATCH", "DELETE"]
    routes = [
        *Control(state, faults).routes(),
        Route(f"{site}/identity/connect/token", identity.token, methods=["POST"]),
        Route(f"{site}/identity/.well-known/openid-configuration", identity.configuration, methods=["GET"]),
        Route(f"{site}/entity", api.discovery, methods=["GET"]),
        Route(f"{site}/entity/", api.discovery, methods=["GET"]),
        Route(f"{site}/entity/auth/login", api.login, methods=["POST"]),
        Route(f"{site}/entity/auth/logout", api.logout, methods=["POST"]),
        Route(f"{site}/entity/{{endpoint}}/{{version}}/{{rest:path}}", api.entity, methods=methods),
        Route(f"{site}/entity/{{endpoint}}/{{version}}", api.entity, methods=methods),
    ]
    app = Starlette(routes=routes)
    app.state.acumatica = state
    app.state.faults = faults
    return app

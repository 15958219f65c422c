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
* Refund (``Payment`` of ``Type`` "Refund", numbered with payments): ``DocumentsToApply`` rows
  name released, open credit memos (``DocType`` "Credit Memo" or the code "CRM") or released,
  open payments (``DocType`` "Payment" or "PMT": their unapplied balance) of the same customer
  and currency (any other type, and any ``OrdersToApply`` row, is refused), each within the
  memo's balance or the payment's ``AvailableBalance``; release is refused unless the refund is
  applied in full ("out of balance"), then reduces each memo's balance or payment's available
  balance (Closed at zero).  Refunding a prepayment is not simulated.
  ``GET /_sandbox/customers`` carries each customer's
  ``balance``: released invoices' balances less released credit memos' balances and payments'
  unapplied balances.
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

Package layout
--------------
* ``app``: The control surface (``/_sandbox/``) and the app factory.
* ``contract``: The contract (system endpoint Default, versions 23.200.001 and 24.200.001):
  entities and their field types.
* ``endpoint``: The contract-based endpoint: routing, auth/quota/fault guard,
  list/get/put/delete, actions.
* ``entities``: The rules of every entity, by name.
* ``identity``: The identity server: OAuth 2.0 tokens (password and refresh grants) and cookie
  sessions.
* ``invoices``: Sales invoices and credit memos: line pricing, tax settlement, release and
  applications.
* ``model``: Settings, grants, long-running operations and the small record helpers every rule
  uses.
* ``orders``: Sales orders and shipments: order types, shipping, confirmation and the invoice
  they prepare.
* ``payments``: Payments and refunds: cash accounts, applications to documents, release.
* ``query``: Query options: ``$filter`` (compiled from the shared OData parser),
  ``$select``/``$expand`` paths, ``$top``/``$skip``.
* ``records``: Plain copies of records for the control surface, and merging of PUT bodies into
  records.
* ``rules``: Business rules of the simple entities: customers, stock and non-stock items.
* ``state``: The tenant in memory: records, numbering, tokens, sessions and the request quota.
* ``values``: Request bodies: the ``{"value": ...}`` wrapping, coercion to the contract's field
  types, money by currency.
* ``views``: Records as the endpoint returns them: wrapped values, selected and expanded paths.
* ``wire``: Acumatica on the wire: the endpoint's constants, JSON with exact decimals, and its
  error bodies.

Shared with the other simulators: ``sandbox.control`` (the ``/_sandbox/`` control surface),
``sandbox.faults`` (fault injection), ``sandbox.odata`` (the ``$filter`` parser).
"""
from __future__ import annotations

from sandbox.acumatica.app import Control, create_app
from sandbox.acumatica.endpoint import EntityApi
from sandbox.acumatica.model import Settings
from sandbox.acumatica.state import AcumaticaState
from sandbox.acumatica.wire import dumps

__all__ = ['AcumaticaState', 'Control', 'EntityApi', 'Settings', 'create_app', 'dumps']

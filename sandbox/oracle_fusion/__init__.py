"""Oracle Fusion Cloud ERP (Receivables) simulator, written from shared/reference/oracle-fusion.md.

What it simulates
-----------------
* REST roots ``/fscmRestApi/resources/{11.13.18.05|latest}/`` and ``/crmRestApi/resources/...``:
  collection ``/{resource}``, item ``/{resource}/{key}``, child collection and item
  ``/{resource}/{key}/child/{child}[/{childKey}]``, action ``POST /{resource}/{key}/action/{name}``;
  ``GET`` on the context root answers the resource catalog with the framework versions.
* Resources: ``receivablesInvoices`` (lines with manual tax lines, distributions, installments;
  GET/POST/DELETE), ``receivablesCreditMemos`` (on-account only; negative amounts; GET/POST),
  ``standardReceipts`` (remittance references, ``applyReceipt`` action; GET/POST),
  ``receivablesCustomerAccountActivities`` (child ``creditMemoApplications``: each application
  of the account's memos to an invoice installment; a memo's refund is not listed),
  ``accountCombinationsLOV``, ``receiptMethods`` and
  CRM ``accounts`` (party + ``PrimaryAddress``).  SOAP ``/crmService/CustomerAccountService``
  (``createCustomerAccount``: account, site, site uses) and ``/fscmService/CreditMemoService``
  (``applyOnAccountCreditMemo``, ``createOnAccountCreditMemoRefund``).
* Auth: Basic (integration user) or Bearer tokens from ``POST /oauth2/v1/token``
  (client credentials grant; token lifetime ``token_lifetime`` s, or ``urn:opc:resource:expiry=N``
  in the scope); an expired or unknown token → 401.
* ``REST-Framework-Version`` 1–9 (default 1): v1 query-by-example ``q`` (``;``-joined), v2+
  expression ``q`` (quoted literals, ``= != < > <= >= LIKE IN BETWEEN IS [NOT] NULL``,
  ``and``/``or``/parentheses; a ``;`` is a 400), v3+ expanded children as collection objects, v4+
  JSON error documents (``o:errorDetails``), v9 int64 ids as strings.
* Collections: ``limit`` (default 25, capped at 500), ``offset``, ``count``, ``hasMore``,
  ``totalResults=true``, ``onlyData``, ``fields``, ``expand``, ``orderBy``; no match → 200 with
  ``items: []``; an unknown item → 404.
* Lookups that reject unknown values with 400: business units, transaction sources and types,
  payment terms, credit reasons, customer accounts (+ bill-to site), items
  (``AR_INVALID_INVENTORY_ITEM``, the whole invoice), tax rate codes, account combinations,
  receipt methods and their bank accounts, CRM source systems.  Every request is all-or-nothing.
* A per-minute request quota answering 429 (``Retry-After`` when ``send_retry_after``) and fault
  injection (``sandbox.faults``) on every API request, REST and SOAP.

Control surface (no auth): ``POST /_sandbox/reset``; seeding ``POST /_sandbox/items``
(``ItemNumber`` or strings), ``/_sandbox/accounts`` (natural account segment values),
``/_sandbox/cost-centers`` (cost centre segment values), ``/_sandbox/combinations``
(``{"combination", "enabled"}``), ``/_sandbox/tax-codes`` (``{code, rate?, regime?}``),
``/_sandbox/receipt-methods`` (``{name, bank_account?}``), ``/_sandbox/customers`` (existing
parties with accounts: ``{name, email?, source_reference?}``); ``GET /_sandbox/parties`` (the CRM
parties with their primary addresses); ``GET /_sandbox/documents``;
``POST /_sandbox/automatch`` (the *Apply Receipts Using AutoMatch* process);
``GET|POST /_sandbox/settings``; ``GET|POST /_sandbox/faults``; ``POST /_sandbox/expire-tokens``;
``GET /_sandbox/stats``; ``GET /_sandbox/requests``.

Unconfirmed in the reference → the conservative choice made here
-----------------------------------------------------------------
* Create bodies naming an attribute the resource does not have → 400 (so ``Description`` on a
  credit-memo line, which wants ``LineDescription``, is refused rather than dropped).
* v1 ``q`` values are unquoted; v2+ string literals must be quoted (an unquoted word is a 400,
  numbers may be bare); ``''`` escapes a quote; string equality is case-sensitive; ``LIKE`` uses
  ``%``.  An attribute ``q`` does not know → 400.
* Error texts other than ``AR_INVALID_INVENTORY_ITEM`` are the simulator's own wording; v<4 sends
  them as ``text/plain``, v≥4 as the problem document with ``o:errorPath`` naming the attribute.
  An unsupported ``REST-Framework-Version`` → 400.
* Transaction sources number manually (``TransactionNumber`` required, ≤ 20 chars, unique per
  business unit and class) unless seeded ``automatic``; receipts need ``ReceiptNumber`` (≤ 30,
  unique).  ``LineAmount`` may be sent and must equal ``Quantity × UnitSellingPrice`` rounded
  to the currency; it is derived otherwise.  Manual tax lines are taken as sent; a classification
  code without tax lines computes tax at the seeded rate (0 without one).  A line's Revenue
  distributions must add up to 100 % (or its amount).  ``AllowCompletion: "Y"`` completes the
  invoice (status ``Complete``, one open installment due on the transaction date); otherwise it
  stays ``Incomplete`` and nothing can be applied to it.
* Credit memos: every line amount must be negative.  ``applyOnAccountCreditMemo`` (the operation
  of the ``ApplyOnAccountCreditMemo`` object) needs an open installment of a complete invoice of
  the same customer account and currency and never over-applies (neither the memo's unapplied
  amount nor the installment's balance).  ``applyReceipt`` follows the same rules; it answers
  ``{"result": "SUCCESS"}`` and exists only while ``apply_receipt_action`` is on (404 otherwise).
  AutoMatch applies each remittance reference by transaction number, up to what is open.
* ``createOnAccountCreditMemoRefund`` (the ``OnAccountCreditMemoRefund`` object of Oracle's
  SOAP reference, not in shared/reference): the memo by ``CreditMemoCustomerTrxId`` or
  ``CreditMemoTrxNumber``; ``AmountApplied`` positive and within the memo's unapplied amount;
  ``RefundPaymentMethodCode``, when sent, one of the seeded Payables methods (``CHECK``,
  ``EFT``, ``CLEARING``); ``CreditMemoBusinessUnit``, when sent, a known business unit. The memo's balance
  falls by the amount; the answer carries ``ReceivableApplicationId`` and
  ``ApplicationReferenceNumber`` (the refund's Payables payment request, not simulated
  further). ``/_sandbox/documents`` lists each refund as kind ``refund_payment`` with its
  ``Comments`` as ``external_ref``; ``/_sandbox/customers`` gives each account's ``balance``
  (open invoices less on-account credit less unapplied receipts).
* The token endpoint accepts the client's credentials in the Basic header or the form; the grant
  must be ``client_credentials`` with a non-empty ``scope``; tokens are random JWT-shaped strings.
  Basic credentials of the integration user never expire.
* CRM ``accounts``: ``SourceSystem`` and ``SourceSystemReferenceValue`` are top-level, filterable
  attributes (unique together; the source system must be seeded: ``WEBSTORE`` is).
  ``PrimaryAddress`` rows carry ``AddressId`` (the party site id) and ``AddressNumber``.
  ``receivablesCustomerAccountActivities.CustomerId`` is the party id.
* ``createCustomerAccount`` numbers accounts automatically (a sent ``AccountNumber`` is a fault
  while ``automatic_account_numbers`` is on), needs ``CreatedByModule`` ``HZ_WS`` and a party
  site of the same party; a business error is HTTP 500 with a SOAP ``Fault``.
* ``receiptMethods`` items: ``ReceiptMethodId``, ``Name``, ``ReceiptClass``, ``BankAccountNumber``.
* Quota: ``requests_per_minute`` counts authenticated API requests in a fixed 60-s window; the
  429 body is plain text.  The token endpoint has its own ``token_requests_per_minute``.
* ``PATCH`` exists for CRM ``accounts`` items (the party's own attributes, ``SourceSystem``
  reference included, unique as on create) and their ``PrimaryAddress`` child items, and ``POST``
  adds a primary address (``Country`` required); only the attributes sent change, and the
  party's ``LastUpdateDate`` moves on.  The answer is the changed item (200, 201 for a POST).
* Batch (``POST`` on the context root, ``application/vnd.oracle.adf.batch+json``): the parts run
  in order as the requests they stand for, in one transaction. The answer mirrors the parts with
  each one's ``payload`` (200); when a part fails, nothing is kept and the answer holds that part
  alone, its error document as ``payload``, with the part's status as the batch's. A custom
  action in a batch is refused (400, "isn't enabled for batch execution"). The batch is one
  request for the quota, the log and fault injection.
* Not modelled: ``Upsert-Mode``, ``If-Match``/412, PATCH of Receivables resources, ``describe``.
* ``/_sandbox/reset`` clears business data, counters, the quota window, settings and faults;
  lookups are reseeded with the defaults; issued tokens survive.

Package layout
--------------
* ``api``: The REST endpoint: versions, auth, quota and fault guard, describe, collections and
  items, tokens.
* ``app``: The control surface (``/_sandbox/``) and the app factory.
* ``batch``: The batch endpoint: parts run in order, each with its own status.
* ``finder``: The ``q=`` query language of Oracle's REST resources, compiled to a record
  predicate.
* ``parties``: Trading Community parties: creation and changes of organizations, sites and
  contacts.
* ``receivables``: Receivables rules: invoices, credit memos and receipts with their lines,
  taxes and distributions.
* ``soap``: The SOAP services the REST API lacks: customer accounts and applying a credit memo.
* ``state``: The Receivables tenant in memory: parties, accounts, chart of accounts, documents,
  the quota and request log.
* ``views``: Resources as REST returns them: child collections,
  ``fields``/``onlyData``/``expand``, queryable attributes.
* ``wire``: Oracle REST on the wire: versions, media types, JSON with exact decimals, the error
  bodies and value coercion.

Shared with the other simulators: ``sandbox.control`` (the ``/_sandbox/`` control surface),
``sandbox.faults`` (fault injection).
"""
from __future__ import annotations

from sandbox.oracle_fusion.api import Api
from sandbox.oracle_fusion.app import Control, create_app
from sandbox.oracle_fusion.state import OracleState, Settings
from sandbox.oracle_fusion.wire import BATCH_MEDIA_TYPE, SOAP_ENV, dumps

__all__ = ['Api', 'BATCH_MEDIA_TYPE', 'Control', 'OracleState', 'SOAP_ENV', 'Settings', 'create_app', 'dumps']

"""Exact Online REST API simulator, written from shared/reference/exact-online.md and the
2019 endpoint metadata (shared/specs/exact-online/meta-data.2019-12.json).

What it simulates
-----------------
* One app serves every region: the connection's base URL points at it. Routes
  ``/api/v1/current/Me``, ``/api/v1/{division}/{service}/{Entity}`` and
  ``{Entity}(guid'…')``; an unknown division answers 403 "Forbidden - WrongDivision".
* OAuth 2.0 authorization code: ``GET /api/oauth2/auth`` (auto-consent as the sandbox's one
  user: 302 to ``redirect_uri?code=…&state=…``), ``POST /api/oauth2/token`` with the
  ``authorization_code`` and ``refresh_token`` grants (form-encoded). Access tokens live
  ``token_lifetime`` s (600) and ``expires_in`` is a string. Every refresh rotates the refresh
  token; a refresh sooner than ``refresh_not_before`` s (570) after the chain's last issue is
  refused with 401 "Access Token not expired"; refresh tokens unused for 30 days expire.
* OData v2 verbose JSON: ``{"d": {"results": [...], "__next": url}}`` (a single entity as
  ``{"d": {...}}``), ``__metadata`` on records, ``/Date(ms)/`` dates, ``$select``, ``$filter``
  (``eq ne gt ge lt le and or not``, parentheses, ``trim()``, ``substringof()``,
  ``startswith()``, literals ``'…'``, ``guid'…'``, ``datetime'…'``, numbers, ``true``/``false``/
  ``null``), ``$top``, ``$expand=SalesInvoiceLines|BankEntryLines``, paging by ``__next``
  carrying the original options plus ``$skiptoken=guid'…'`` (``page_size`` 60).
* Errors ``{"error": {"code": "", "message": {"lang": "", "value": "…"}}}``.
* Quotas per app and division: ``X-RateLimit-Limit/-Remaining/-Reset`` (daily) and
  ``X-RateLimit-Minutely-*`` on every API response, resets in epoch ms; 429 beyond either
  (only the minutely headers when the minute is spent).
* Entities: crm/Accounts, logistics/Items, financial/GLAccounts, hrm/Costcenters,
  vat/VATCodes, financial/Journals, salesinvoice/SalesInvoices (+ SalesInvoiceLines; Type
  8020 invoice / 8021 credit note), financialtransaction/BankEntries (+ BankEntryLines),
  salesorder/SalesOrders (+ SalesOrderLines) and salesorder/GoodsDeliveries (+
  GoodsDeliveryLines, each naming its ``SalesOrderNumber``; ``TrackingNumber`` on the header and
  lines), system/Divisions, webhooks/WebhookSubscriptions (empty validation POST to the callback
  on subscribe; notifications for Accounts, Items, SalesInvoices, SalesOrders and
  GoodsDeliveries signed with ``HashCode`` = uppercase hex HMAC-SHA256 of the raw ``Content``
  JSON under the app's webhook secret).
* ``Modified`` moves on every write (API PUT, seed update, a user's edit); ``$filter`` compares
  dates to the millisecond, as they are shown.
* ``sandbox.faults`` on every ``/api/v1`` request (fail_next, storm_429, lose_next_commits on
  POST/PUT/DELETE, slow_ms, expire_tokens).

Control surface (no auth): ``POST /_sandbox/reset``; ``POST /_sandbox/seed`` with any of
``divisions``, ``items``, ``vat_codes``, ``gl_accounts``, ``cost_centers``, ``journals``,
``accounts`` (lists of records in the API's field names, optional ``division``);
``GET /_sandbox/documents`` (invoices, credit notes and receipts: ``your_ref``, ``type``,
``amount``, ``currency``, ...); ``GET /_sandbox/accounts``; ``POST /_sandbox/accounts/{ID}``
(an Exact user edits an account: fields in the API's names, ``Modified`` moves on, the Accounts
webhook fires); ``POST /_sandbox/deliveries`` (``{"your_ref", "tracking_number",
"shipping_method"?}``: a warehouse user ships the order of the sales invoice with that
``YourRef`` — its sales order, made from the invoice's lines with the same ``YourRef`` when there
is none, and a goods delivery of every open quantity); ``GET|POST /_sandbox/settings``;
``GET|POST /_sandbox/faults``; ``POST /_sandbox/expire-tokens``; ``POST /_sandbox/authorize``
(``{"redirect_uri", "state"?}`` → ``{"code", "location"}``, no browser); ``POST
/_sandbox/clock`` (``{"advance": seconds}``); ``GET /_sandbox/stats`` (``by_route`` counts API
calls as ``"METHOD service/Entity"``); ``GET /_sandbox/requests`` (the state's ``request_log``:
every ``/api/v1`` request); ``GET /_sandbox/webhook-deliveries``.

Choices where the reference says "unconfirmed" (or nothing) — the conservative reading
----------------------------------------------------------------------------------------
* A used refresh token stays usable for a grace window (``refresh_grace_seconds``, 600: the
  "valid for ten minutes when used" that Invantive reports) until a newer token of its chain
  is used (a refresh with it, or an API call with its access token); presenting it again
  then issues a new set and voids the set it was first answered with. Whether the 570-s
  "Access Token not expired" rule applies to such a retry is not documented: here it does not
  (the retry is answered). Outside the window, or at once with ``refresh_grace_seconds`` = 0
  (the strict mode tests use), it is refused with 400 ``invalid_grant`` "Token is not allowed,
  because of invalid or empty chainId". Every earlier access token of the chain stops working
  when a new one is issued. A too-early refresh (401) does not consume the refresh token.
* ``$select`` is required on collection reads (400 without it); ``$skip`` is refused (400, as
  on endpoints released after March 2017); ``$filter`` on a navigation property (``A/B``) is
  refused (400). Unknown fields in ``$select``/``$filter`` → 400.
* ``YourRef`` longer than ``your_ref_max`` (30) characters → 400 (its length is not in the
  reference; a silent cut would break the look-up by reference, so refusing shows it).
* Sales invoices: ``OrderedBy``, ``Journal`` (a sales journal, type 20) and lines are
  required; ``Type`` 8020/8021 only (8023/8024 need a warehouse → 400). A credit note's lines
  must carry zero or negative quantities and amounts (400 otherwise): the type does not flip
  signs. A line's ``AmountFC`` is kept as sent (else ``Quantity × NetPrice`` rounded), its
  ``VATAmountFC`` as sent (else ``AmountFC × percentage`` rounded); the header totals are the
  sums. Unknown Item/GLAccount/VATCode/CostCenter → 400 naming it. ``GLAccount`` defaults to
  the item's ``GLRevenue`` (400 when neither). ``InvoiceNumber`` is assigned at entry; status
  20 (open). Open invoices may be deleted.
* Receipts are bank entries: ``JournalCode`` must be a bank (12) or payment-service (16)
  journal; each line needs ``Account`` or ``GLAccount`` and ``AmountFC`` (positive = received
  from the customer, negative = paid out to it, e.g. a refund); an ``OurRef`` must be the number
  of an invoice or credit note of that account, and matches the line with it. Creation answers
  201 with the entry and its lines.  ``GET /_sandbox/balances``: each account's outstanding
  balance (invoices less credit notes less bank lines); ``/_sandbox/documents`` gives each
  invoice and credit note its ``open`` amount (less the bank lines matched with it) and calls a
  negative customer line a ``refund``.  ``read/financial/ReceivablesList`` (GET-only) lists
  the outstanding items: each invoice or credit note not fully matched, ``Amount`` what is left
  (a credit note's negative), with its ``YourRef``, ``InvoiceNumber`` and ``AccountId``; Exact
  matches no credit note with an invoice by itself.
* Created entities answer 201 ``{"d": {...}}``; PUT answers 204 without a body; DELETE 204.
* Sales orders and goods deliveries are GET-only here (405 otherwise): the integration only
  reads them; they come from a user's work (the control surface).
* Quotas count every authenticated ``/api/v1`` request, in a fixed window of
  ``minute_seconds`` (60) opened by its first request; the day is a fixed 24-h window.
  Refused (429) requests are not counted. Unauthenticated requests are not metered.
* Webhook callbacks must be https unless ``allow_http_callbacks``; deliveries are not retried.
* ``/_sandbox/reset`` clears data, counters, settings and faults; issued tokens survive.

Package layout
--------------
* ``api``: The REST endpoint: division routing, auth, quotas and faults,
  list/get/create/update/delete.
* ``app``: The control surface (``/_sandbox/``) and the app factory.
* ``delivery``: Webhook deliveries, signed with the app's secret.
* ``entities``: The entities of the simulated services, their field types and the webhook
  topics.
* ``oauth``: OAuth 2.0 authorization code flow: authorize, token, refresh chains.
* ``query``: ``$filter`` (compiled from the shared OData parser) and the values it compares.
* ``rules``: Business rules: accounts, sales invoices and their lines, bank entries, webhooks.
* ``state``: The divisions in memory: records, tokens and refresh chains, the minute and day
  quotas.
* ``views``: Records as the API returns them (``$select``), and request bodies coerced to the
  entity's types.
* ``webhooks``: The webhook subscription endpoint (its callback is checked before saving).
* ``wire``: Exact Online on the wire: the OData envelope, JSON with exact decimals,
  ``/Date(ms)/`` and the error bodies.

Shared with the other simulators: ``sandbox.control`` (the ``/_sandbox/`` control surface),
``sandbox.faults`` (fault injection), ``sandbox.odata`` (the ``$filter`` parser).
"""
from __future__ import annotations

from sandbox.exact_online.api import Api
from sandbox.exact_online.app import Control, create_app
from sandbox.exact_online.delivery import Deliverer
from sandbox.exact_online.entities import DELIVERY, SALES_ORDER
from sandbox.exact_online.oauth import grant_code
from sandbox.exact_online.state import ExactState, Settings
from sandbox.exact_online.wire import DEFAULT_DIVISION, dumps

__all__ = ['Api', 'Control', 'DEFAULT_DIVISION', 'DELIVERY', 'Deliverer', 'ExactState', 'SALES_ORDER',
           'Settings', 'create_app', 'dumps', 'grant_code']

"""BigCommerce REST Management API (v2 + v3) simulator: an in-memory store.

Written from shared/reference/bigcommerce.md and the OpenAPI files in
shared/specs/bigcommerce/ (section numbers below are the reference's), never from client code.

Simulated
---------
* ``/stores/{store_hash}/v2/...`` and ``/v3/...`` (§1) with ``X-Auth-Token`` (no Bearer; an
  ``Authorization`` header is ignored); 401 without a known token, 415 for a body that is not
  JSON, 404 for unknown routes and stores.
* v2 (§2, §3): bare arrays, ``page``/``limit`` (max 250, 413 above), **204 with no body for
  an empty list**, RFC-2822 dates, money as 4-decimal strings, errors as
  ``[{"status", "message"}]``. Orders: create (computing per-line tax from the product's tax
  class and the shipping address — billing when there is none —, shipping/handling/wrapping
  tax, coupons and manual discounts, the transactional currency), get, list with the
  documented filters and ``sort``, count, update (status, notes), archive; sub-resources
  ``products``, ``shipping_addresses``, ``coupons``, ``taxes`` (``details=true`` gives one
  row per line and rate with ``order_product_id`` and ``line_item_type``), ``shipments``
  (POST ships units; the order becomes Shipped / Partially Shipped).
* v3 (§2, §4-§8, §10): ``{data, meta}`` envelopes with ``meta.pagination``, v3 error
  objects. Transactions (204 when none), capture (async: ``capture pending`` first; partial
  captures through the control surface), refund quotes and refunds (422 when the payments
  differ from what the quote offered; refunds on one order strictly one at a time), refund
  listings; customers (``email:in``, batch create of at most 10); catalog products and
  variants (``sku``, ``sku:in``, batch updates of at most 10 products / 50 variants, 413
  above, 207 / ``batch_errors`` for bad items);
  absolute inventory adjustments (at most 2000 items, applied asynchronously); hooks.
* Rate limits (§9): a fixed window per store shared by every client, the four
  ``X-Rate-Limit-*`` headers on every API response, 429 (plus ``X-Retry-After``) past the
  quota.
* Webhooks (§10): stub payloads (``scope``, ``store_id`` string, ``data``, SHA-1 ``hash``,
  ``created_at``, ``producer``) POSTed to each active hook's destination with the hook's
  custom headers, optionally Standard-Webhooks signed with the client secret; 2xx is
  success; failures retried on the documented schedule (scaled by ``retry_time_scale``),
  the hook deactivated (``is_active: false``) after the last retry fails (events still
  queued for it are then dropped, logged as ``kind: "dropped"``); the per-domain blocklist
  (2-minute window, >= 100 requests, < 90 % success, 3 minutes).
* Control: ``POST /_sandbox/webhooks/wait-idle`` (``{"timeout"?, "retries"?}``) waits until no
  delivery is queued or in flight, and with ``retries: true`` until no failed one waits for
  its next attempt either (``/_sandbox/state`` shows ``queued`` and ``retrying``).
* Faults: ``sandbox.faults`` on every API request; ``/_sandbox/`` control routes (no auth).

Unconfirmed -> conservative choices
-----------------------------------
* A concurrent refund on an order whose refund is still being processed is answered
  **409** with a v3 error body (the real error is undocumented, §5.2). Processing takes
  ``refund_processing_ms`` so overlaps are observable.
* Amount-bound refund items (SHIPPING, HANDLING) are in the store's price basis (excl. tax
  for tax-exclusive stores, tax added in proportion to the line's tax); ``total_refund_amount``
  and a refund's ``total_amount`` always include tax (``tax_inclusive: true``). A PRODUCT
  item refunds its share of the discounted line and of its tax, each rounded to cents.
  Refunds never change the order's totals; ``refunded_amount`` stays ``0`` as the spec says.
* v2 order create has no coupon field (coupons are applied at checkout): the sandbox accepts
  an extra ``coupon_code`` standing in for a checkout. Payments are not taken by v2 create
  either: ``POST /_sandbox/orders/{id}/payments`` records what a checkout's gateway would
  (a ``purchase``, an ``authorization``, or for offline methods a ``settled`` transaction);
  a list of tenders with ``amount`` each (the last may omit it: the rest) is a split tender,
  e.g. a gift certificate (``giftcertificate``, a ``purchase`` — the event is not
  documented — with the spec's
  ``gift_certificate`` object, counted in ``gift_certificate_amount``; ``total_inc_tax`` stays
  the whole order) and a card; until the tenders cover the total the order keeps its status
  (``payment_status`` ``pending``). ``POST /_sandbox/orders/{id}/capture`` (``{"amount"?}``)
  captures part of the authorization as the control panel does for gateways that allow it
  (the v3 capture takes no amount: it captures all the rest); each capture is its own
  ``capture`` transaction referencing the authorization. After a partial capture
  ``payment_status`` is ``authorized`` again (the enum has no "partially captured") and the
  order Awaiting Fulfillment.
* A refund quote of a split-tender order offers first the split back to the tenders, each at
  most what it still holds, gateways before gift certificates and store credit (the spec's
  store credit + bank deposit example; the order of the split for a partial refund is not
  documented).
* v2 ``limit`` max 250 (413 above); Incomplete (status 0) and archived orders are left out
  of lists unless asked for (``status_id=0``); ``min_/max_date_*`` are inclusive.
* The order's shipping, handling and wrapping go to its first shipping address; shipping
  and handling are taxed with ``shipping_tax_class_id``, wrapping with the default class.
  Tax-inclusive stores (``prices_include_tax``) derive net amounts per line.
  ``sales_tax_id`` of a manual tax rate is the rate's configured code.
* The webhook ``hash`` is SHA-1 of the compact JSON of ``data``; ``created_at`` is the event
  time; a new hook fires at once (not after "up to a minute"); the 443/HTTPS destination
  rule is only enforced with ``enforce_destination_rules`` (the test receiver listens on a
  loopback port); ``store/hook/deliveryException`` and the 90-day inactivity rule are not
  simulated; a blocked or failed delivery is one attempt of the schedule.
* The 401 body is the v3 error object on v3 routes and the v2 array on v2 routes, with the
  v3 spec's title. ``expire_tokens`` has no effect (API account tokens do not expire).
* Default quota: 5000 requests per 30 s window (sandbox stores are "by plan", §9), so demos
  do not crawl; tests set their own.

Package layout
--------------
* ``api``: Routing, auth (X-Auth-Token and scopes), the quota headers and the fault guard.
* ``app``: The control surface (``/_sandbox/``) and the app factory.
* ``dates``: Dates as BigCommerce writes and reads them (shared/reference/bigcommerce.md).
* ``listing``: Request handling shared by the routes: paging (v2 page/limit, v3
  meta.pagination), field selection, order filters.
* ``model``: The store's catalog records, webhooks (hooks) and settings.
* ``orders``: Orders: lines, discounts, addresses, totals and status.
* ``refunds``: Transactions, capture, refund quotes and refunds (one at a time per order).
* ``state``: The store in memory: ids, the request quota, catalog look-ups; orders, refunds,
  hooks and views are mixed in.
* ``taxes``: Tax rates by address and class, and the split of amounts into tax and net.
* ``v2``: The v2 routes: orders, their products, addresses, coupons, taxes, shipments, and order
  statuses.
* ``v3_catalog``: The v3 catalog routes: customers, products, variants and inventory
  adjustments.
* ``v3_hooks``: The v3 webhook routes, with their destination and header checks.
* ``v3_orders``: The v3 order routes: transactions, capture, refund quotes and refunds.
* ``views``: Records as the v2 and v3 APIs show them.
* ``webhooks``: Webhook delivery: scope matching, the queue, retries on the documented schedule,
  deactivation.
* ``wire``: BigCommerce on the wire: constants, the error bodies of v2 and v3, money rounding
  and JSON with exact decimals.

Shared with the other simulators: ``sandbox.control`` (the ``/_sandbox/`` control surface),
``sandbox.faults`` (fault injection).
"""
from __future__ import annotations

from sandbox.bigcommerce.app import create_app
from sandbox.bigcommerce.model import Settings
from sandbox.bigcommerce.state import Store
from sandbox.bigcommerce.wire import UNAUTHORIZED

__all__ = ['Settings', 'Store', 'UNAUTHORIZED', 'create_app']

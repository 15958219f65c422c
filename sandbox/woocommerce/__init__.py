"""WooCommerce REST API (wc/v3) simulator: an in-memory store that behaves like the real API.

Written from shared/reference/woocommerce.md (section numbers below are that document's), never
from client code, so the connector is tested against the documented behaviour and not against
its own assumptions.

Simulated
---------
* Routes under ``/wp-json/wc/v3/``: orders (+batch), ``orders/{id}/refunds``, ``refunds``
  (WC 9.0+), customers (+batch), products (+batch), ``products/{id}/variations`` (+batch),
  webhooks (+batch). Editable routes take POST, PUT and PATCH like WordPress; an unknown route
  or method answers 404 ``rest_no_route``.
* Auth (§2): over HTTPS the query-string pair (checked first) then Basic; OAuth 1.0a
  (HMAC-SHA1/-SHA256, ±15 min, one use per nonce, parameters from the query string, form
  body or ``Authorization: OAuth``) whenever those did not authenticate; key read/write
  permissions; the errors of §2.4 including ``WWW-Authenticate``. A host that strips the
  Authorization header is a setting.
* Lists (§3.1): page/per_page/offset validation, ``X-WP-Total(Pages)``, ``Link`` prev/next,
  after/before/modified_after/modified_before honouring ``dates_are_gmt`` (exclusive bounds,
  like WordPress date queries), orderby/order, status/sku/email filters, ``_fields``.
* Orders (§4): totals computed like WooCommerce core: per-line tax rounding (rounding at
  subtotal off), percent/fixed_cart/fixed_product coupons split in cents with the core
  remainder rule, shipping and fee taxes, ``tax_lines``, ``prices_include_tax`` (catalog
  prices include tax, line amounts are derived excluding tax and rounded per line),
  ``set_paid`` (payment complete), status side effects (date_paid, date_completed, stock,
  paying customer), quantity-0 line removal, and a status set to ``refunded`` creating the
  automatic refund of the remainder (core ``wc_order_fully_refunded``).
* Refunds (§5): amount computed from lines when omitted, negative refund lines, gateway
  refund (``api_refund``) by payment method, 500 on over-refund or gateway failure, a full
  refund moves the order to ``refunded``, restock, ``order.updated``.
* Webhooks (§8): 201 + Location, random 50-character secret, ping (unsigned ``webhook_id=N``,
  exactly 200), signed compact PHP-style JSON deliveries with the §8.3 headers from one
  Action-Scheduler-like queue with coalescing and send-time payloads, no retries, 200-302
  success, auto-disable per §8.6 (threshold configurable).
* Faults: ``sandbox.faults`` on every ``/wp-json/`` request; ``/_sandbox/`` control routes
  (see :func:`control_routes`).

Choices where the reference is unconfirmed or silent
----------------------------------------------------
* Creating an order fires ``order.created`` and ``order.updated`` (the REST create saves the
  order again after computing totals); an order in ``checkout-draft`` fires nothing.
* ``set_paid`` moves a pending/on-hold/failed/cancelled order to ``processing`` and sets
  ``date_paid``; reaching ``processing``/``completed`` sets ``date_paid`` when unset and
  ``completed`` sets ``date_completed``. Stock is reduced once on processing/completed/on-hold
  and restored on cancelled/pending. Quantity edits reprice from the current catalog price.
* A refund covering the remaining total moves the order to ``refunded``. Refund items copy the
  order item with negative quantity, totals and taxes (``price`` = total / |quantity|, so
  negative) and carry ``_refunded_item_id`` in ``meta_data``. A zero amount is accepted; a
  refund asking the gateway (``api_refund``, default true) needs a payment method that
  supports refunds (stripe, ppcp-gateway, woocommerce_payments, paypal); bacs/cheque/cod do
  not, anything else "does not exist". Concurrent refunds are only bounded by the remainder.
* Orders, refunds, products and variations share one id sequence (WordPress posts), order
  items another, customers (users) and webhooks their own.
* The OAuth base URL is the request's scheme and Host header plus the path (the site's home
  URL as the client reached it). ``_links`` and ``Link`` use the request's scheme and host;
  webhook payloads use ``home_url``. Date filter values carrying an offset are converted to
  the compared column's zone.
* Duplicate customer email -> 400 ``registration-error-email-exists``. ``/products?sku=``
  does not match variation SKUs. ``order.deleted`` also fires on a forced delete.
  ``action.*`` topics are accepted and never delivered. Queued deliveries still go out after a
  webhook is paused or disabled (core does not re-check). The ping is sent form-encoded over
  HTTP/1.1; loopback and private receivers are allowed.
* Tax rates match on optional ``country`` (code or list) and ``state``; one rate per priority
  (the rate code's numeric suffix); shipping is taxed with the standard class when any item
  uses it, else the first item's class. Coupon restrictions (expiry, minimums, usage limits,
  product lists), ``dp``, ``?rest_route=``, OPTIONS schemas and ``context=edit`` (other than
  the webhook secret) are not simulated. ``Retry-After`` during a 429 storm carries the fault's
  seconds, possibly fractional; ``fail_next`` answers 500 with WordPress's critical-error body
  and other statuses with a plain proxy page; ``lose_next_commits`` applies to writes that
  succeeded.
* The default tax rates are those of :data:`DEFAULT_TAX_RATES` (California standard and
  reduced, EU VAT); the site timezone is UTC+2 (``gmt_offset``) so local and GMT dates differ.

Package layout
--------------
* ``api``: Routing of ``/wp-json/wc/v3/``: endpoints, permissions, body reading and the
  fault-guarded dispatcher.
* ``app``: The control surface (``/_sandbox/``) and the app factory.
* ``auth``: Authentication as §2 describes it: query-string and Basic over HTTPS, OAuth 1.0a
  over HTTP.
* ``catalog``: Products, variations, coupons, stock and customers.
* ``constants``: The WooCommerce constants the store obeys: versions, statuses, gateways,
  webhook topics, default taxes.
* ``listing``: List requests (§3.1): parameters, paging, date bounds, ordering, ``_fields`` and
  the generic resource.
* ``model``: The store's records (keys, products, coupons, customers, orders and their lines,
  refunds, webhooks) and settings.
* ``orders``: Orders: creation and edits priced like core, status side effects, stock moves.
* ``pricing``: Totals as WooCommerce core computes them: tax rates by location, per-line
  rounding, coupon split in cents.
* ``products``: Product attributes and variation names as core derives them.
* ``refunds``: Refund rules: amounts from lines, gateway refunds, restock, and the refund
  failures core raises.
* ``resources``: The resources of wc/v3: orders, refunds, customers, products, variations,
  webhooks.
* ``state``: The store's in-memory state: clock, numbering, tax settings, and the event scope
  that batches webhooks.
* ``taxes``: Tax rates (§4) and how core applies them: matching by location and class, inclusive
  and exclusive tax.
* ``views``: The REST representations of records (orders, refunds, customers, products,
  webhooks).
* ``webhooks``: Webhooks: topics, delivery URLs, signatures, and the delivery queue (retries,
  disabling after failures, outages).
* ``wire``: WordPress on the wire: error bodies, PHP-style JSON, parameter coercion, dates, and
  small text helpers.

Shared with the other simulators: ``sandbox.control`` (the ``/_sandbox/`` control surface),
``sandbox.faults`` (fault injection).
"""
from __future__ import annotations

from sandbox.woocommerce.api import Api
from sandbox.woocommerce.app import control_routes, create_app
from sandbox.woocommerce.model import Settings
from sandbox.woocommerce.state import WooState
from sandbox.woocommerce.webhooks import sign_payload

__all__ = ['Api', 'Settings', 'WooState', 'control_routes', 'create_app', 'sign_payload']

"""The store's in-memory state: clock, numbering, tax settings, and the event scope that batches webhooks."""
from __future__ import annotations

import asyncio
import contextvars
import copy
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import httpx

from sandbox.woocommerce.catalog import CatalogBook
from sandbox.woocommerce.constants import SILENT_ORDER_STATUSES
from sandbox.woocommerce.model import ApiKey, Coupon, Customer, Order, Product, Refund, Webhook
from sandbox.woocommerce.orders import OrderBook
from sandbox.woocommerce.pricing import price_order
from sandbox.woocommerce.refunds import RefundBook
from sandbox.woocommerce.taxes import parse_tax_rates
from sandbox.woocommerce.views import Views
from sandbox.woocommerce.webhooks import WebhookBook
from sandbox.woocommerce.wire import fmt_date

if TYPE_CHECKING:
    from sandbox.woocommerce.model import Settings
    from sandbox.woocommerce.taxes import TaxRate


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

class WooState(CatalogBook, OrderBook, RefundBook, WebhookBook, Views):
    """All store data plus the webhook delivery queue. Public methods take and return the same
    JSON the REST API does, so tests can drive the store directly."""

    def __init__(self, settings: Settings, keys: list[ApiKey]) -> None:
        self._initial = (copy.deepcopy(settings), copy.deepcopy(keys))
        self.delivery_transport: httpx.AsyncBaseTransport | None = None
        self._scope_var: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
            f"woo-events-{id(self)}", default=None)
        self._worker: asyncio.Task | None = None
        self._http: httpx.AsyncClient | None = None
        self._http_key: tuple | None = None
        self.reset()

    # ---- lifecycle, clock, ids ---------------------------------------------------------------
    def reset(self) -> None:
        """A fresh store with the configuration it was created with."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self.settings, keys = copy.deepcopy(self._initial[0]), copy.deepcopy(self._initial[1])
        self.keys = {k.consumer_key: k for k in keys}
        self.products: dict[int, Product] = {}
        self.coupons: dict[str, Coupon] = {}
        self.customers: dict[int, Customer] = {}
        self.orders: dict[int, Order] = {}
        self.refunds: dict[int, Refund] = {}
        self.webhooks: dict[int, Webhook] = {}
        self.clock_offset = 0.0
        self._seq = {"post": 100, "item": 1, "user": 1, "webhook": 0, "coupon": 0}
        self._queue: list[tuple[int, int]] = []
        self._pending: set[tuple[int, int]] = set()
        self._inflight = 0
        self.deliveries: list[dict] = []
        self.outage_next = 0
        self.duplicate_next = 0

    def now(self) -> datetime:
        """UTC, whole seconds (WordPress stores dates to the second), naive like the DB columns."""
        return datetime.fromtimestamp(int(time.time() + self.clock_offset), timezone.utc).replace(tzinfo=None)

    def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds

    @property
    def utc_offset(self) -> timedelta:
        return timedelta(hours=float(self.settings.gmt_offset))

    def local(self, value: datetime | None) -> datetime | None:
        return value + self.utc_offset if value else None

    def dates(self, name: str, value: datetime | None) -> dict:
        return {name: fmt_date(self.local(value)), f"{name}_gmt": fmt_date(value)}

    def _next(self, kind: str) -> int:
        self._seq[kind] += 1
        return self._seq[kind]

    def next_post_id(self) -> int:
        return self._next("post")

    def next_item_id(self) -> int:
        return self._next("item")

    @property
    def home(self) -> str:
        return self.settings.home_url.rstrip("/")

    def add_key(self, consumer_key: str, consumer_secret: str, permissions: str = "read_write") -> None:
        self.keys[consumer_key] = ApiKey(consumer_key, consumer_secret, permissions)

    def counts(self) -> dict:
        return {"orders": len(self.orders), "refunds": len(self.refunds),
                "customers": len(self.customers),
                "products": sum(1 for p in self.products.values() if p.type != "variation"),
                "variations": sum(1 for p in self.products.values() if p.type == "variation"),
                "coupons": len(self.coupons), "webhooks": len(self.webhooks),
                "deliveries": len(self.deliveries), "pending_deliveries": len(self._queue)}

    # ---- taxes -----------------------------------------------------------------------------
    def tax_rates(self) -> list[TaxRate]:
        return parse_tax_rates(self.settings.tax_rates)

    def tax_location(self, order: Order | None) -> tuple[str, str]:
        """Tax based on the shipping address, else billing, else the shop base."""
        for address in ((order.shipping, order.billing) if order else ()):
            if address.get("country"):
                return address["country"], address.get("state", "")
        return self.settings.base_country, self.settings.base_state

    def price(self, order: Order) -> None:
        price_order(order, self.tax_rates(), self.tax_location(order), self.next_item_id)

    # ---- events ----------------------------------------------------------------------------
    def emit(self, resource: str, event: str, resource_id: int) -> None:
        """A core action fired: queue each active webhook on the topic once per request."""
        if resource == "order":
            order = self.orders.get(resource_id)
            if order is not None and order.status in SILENT_ORDER_STATUSES:
                return
        topic = f"{resource}.{event}"
        scope = self._scope_var.get()
        for hook in self.webhooks.values():
            if hook.status == "active" and hook.topic == topic:
                if scope is None:
                    self._enqueue((hook.id, resource_id))
                else:
                    scope.setdefault((hook.id, resource_id), None)

    def open_scope(self) -> contextvars.Token:
        return self._scope_var.set({})

    async def close_scope(self, token: contextvars.Token) -> None:
        keys = list(self._scope_var.get() or ())
        self._scope_var.reset(token)
        if self.settings.deliver_async:
            for key in keys:
                self._enqueue(key)
        else:
            for key in keys:
                await self._deliver(key)

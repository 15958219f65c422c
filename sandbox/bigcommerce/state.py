"""The store in memory: ids, the request quota, catalog look-ups; orders, refunds, hooks and views are
mixed in."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx

from sandbox.bigcommerce.model import Product, Variant
from sandbox.bigcommerce.orders import OrderBook
from sandbox.bigcommerce.refunds import RefundBook
from sandbox.bigcommerce.views import Views
from sandbox.bigcommerce.webhooks import HookQueue
from sandbox.bigcommerce.wire import ApiError, dec

if TYPE_CHECKING:
    from sandbox.bigcommerce.model import Hook, Settings


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

class Store(OrderBook, RefundBook, HookQueue, Views):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.delivery_transport: httpx.AsyncBaseTransport | None = None
        self._http: httpx.AsyncClient | None = None
        self._worker: asyncio.Task | None = None
        self.reset()

    def reset(self) -> None:
        self.products: dict[int, Product] = {}
        self.variants: dict[int, Variant] = {}
        self.customers: dict[int, dict] = {}
        self.coupons: dict[str, dict] = {}
        self.orders: dict[int, dict] = {}
        self.refunds: dict[int, dict] = {}
        self.hooks: dict[int, Hook] = {}
        self.deliveries: list[dict] = []
        self.seq: dict[str, int] = {}
        self.window_start = time.monotonic()
        self.window_count = 0
        self.refund_locks: dict[int, asyncio.Lock] = {}
        self.queue: deque = deque()
        self.inflight = 0
        self.retrying = 0  # failed deliveries waiting for their next attempt
        self.outage_next = 0
        self.duplicate_next = 0
        self.domain_log: dict[str, deque] = {}
        self.blocked_until: dict[str, float] = {}
        self.timers: list[asyncio.TimerHandle] = []

    def next_id(self, kind: str, start: int = 1) -> int:
        self.seq[kind] = self.seq.get(kind, start - 1) + 1
        return self.seq[kind]

    # ---- rate limit (§9) ----------------------------------------------------------------
    def spend(self) -> tuple[bool, dict[str, str]]:
        s = self.settings
        now = time.monotonic()
        if (now - self.window_start) * 1000 >= s.rate_limit_window_ms:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        reset_ms = max(0, int(s.rate_limit_window_ms - (now - self.window_start) * 1000))
        left = max(0, s.rate_limit_quota - self.window_count)
        headers = {"X-Rate-Limit-Time-Window-Ms": str(s.rate_limit_window_ms),
                   "X-Rate-Limit-Time-Reset-Ms": str(reset_ms),
                   "X-Rate-Limit-Requests-Quota": str(s.rate_limit_quota),
                   "X-Rate-Limit-Requests-Left": str(left)}
        return self.window_count <= s.rate_limit_quota, headers

    # ---- catalog ------------------------------------------------------------------------
    def product_by_sku(self, sku: str) -> Product | None:
        return next((p for p in self.products.values() if p.sku == sku), None)

    def variant_by_sku(self, sku: str) -> Variant | None:
        return next((v for v in self.variants.values() if v.sku == sku), None)

    def sku_taken(self, sku: str) -> bool:
        return bool(sku) and any(v.sku == sku for v in self.variants.values())

    def add_product(self, spec: dict) -> Product:
        sku = str(spec.get("sku") or "")
        if self.sku_taken(sku):
            raise ApiError(409, f"The product SKU '{sku}' is already in use.")
        product = Product(id=self.next_id("product", 100), name=str(spec.get("name") or sku),
                          sku=sku, price=dec(spec.get("price", "0"), "price"),
                          tax_class_id=int(spec.get("tax_class_id", 0)),
                          cost_price=dec(spec.get("cost_price", "0"), "cost_price"),
                          inventory_level=int(spec.get("inventory_level", 0)))
        self.products[product.id] = product
        specs = spec.get("variants") or []
        product.inventory_tracking = "variant" if specs else "product"
        base = Variant(self.next_id("variant", 500), product.id, sku, None,
                       inventory_level=product.inventory_level, is_base=True)
        if not specs:
            self.variants[base.id] = base
            product.variant_ids.append(base.id)
            product.base_variant_id = base.id
        for v in specs:
            v_sku = str(v.get("sku") or "")
            if self.sku_taken(v_sku) or v_sku == sku:
                raise ApiError(409, f"The variant SKU '{v_sku}' is already in use.")
            variant = Variant(self.next_id("variant", 500), product.id, v_sku,
                              dec(v["price"], "price") if v.get("price") not in (None, "") else None,
                              inventory_level=int(v.get("inventory_level", 0)),
                              option_values=list(v.get("option_values") or []))
            self.variants[variant.id] = variant
            product.variant_ids.append(variant.id)
        return product

    def variant_price(self, variant: Variant) -> Decimal:
        return variant.price if variant.price is not None else self.products[variant.product_id].price

"""The store's catalog records, webhooks (hooks) and settings."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sandbox.configure import set_fields

from sandbox.bigcommerce.wire import DEFAULT_TAX_RATES, RETRY_SCHEDULE, ZERO, now_utc


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

@dataclass
class Variant:
    id: int
    product_id: int
    sku: str
    price: Decimal | None = None  # None: inherit the product's
    cost_price: Decimal | None = None
    inventory_level: int = 0
    option_values: list = field(default_factory=list)
    is_base: bool = False


@dataclass
class Product:
    id: int
    name: str
    sku: str
    price: Decimal
    tax_class_id: int = 0
    cost_price: Decimal = ZERO
    inventory_level: int = 0
    inventory_tracking: str = "product"
    date_modified: datetime = field(default_factory=now_utc)
    variant_ids: list[int] = field(default_factory=list)
    base_variant_id: int = 0


@dataclass
class Hook:
    id: int
    client_id: str
    scope: str
    destination: str
    headers: dict | None
    is_active: bool
    created_at: int
    updated_at: int


@dataclass
class Settings:
    """Every field can be changed at run time through ``/_sandbox/settings``."""

    store_hash: str = "abc123"
    store_id: str = "1001234"
    access_token: str = "bc-sandbox-token"
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    sign_deliveries: bool = False  # Standard Webhooks headers, keyed by client_secret
    currency: str = "USD"
    currencies: list = field(default_factory=lambda: ["USD", "EUR", "GBP", "CAD"])
    prices_include_tax: bool = False
    shipping_tax_class_id: int = 0
    tax_rates: list = field(default_factory=lambda: copy.deepcopy(DEFAULT_TAX_RATES))
    rate_limit_quota: int = 5000
    rate_limit_window_ms: int = 30000
    delivery_timeout: float = 10.0
    retry_schedule: list = field(default_factory=lambda: list(RETRY_SCHEDULE))
    retry_time_scale: float = 1.0  # 0.001 turns the 48 h schedule into ~3 minutes
    blocklist_window_s: float = 120.0
    blocklist_min_requests: int = 100
    blocklist_success_ratio: float = 0.9
    blocklist_seconds: float = 180.0
    refund_processing_ms: int = 50
    async_delay_ms: int = 20  # captures and inventory adjustments land after this
    enforce_destination_rules: bool = False
    delivery_verify: Any = True  # CA file for HTTPS receivers
    deliver_async: bool = True

    def update(self, values: dict) -> None:
        set_fields(self, values, convert=lambda current, value: value)

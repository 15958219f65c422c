"""How the embedded stack drives each simulator: one adapter per system, so the stack, the
end-to-end contract suite and the demo run every store × ERP pair through one code path.

An adapter knows its sandbox's control surface and how a merchant would configure a
connection to it; it never reaches into connector code (the sandbox is tested through it).
Tax rates meet in the middle: a store adapter names its rate codes by a neutral rate name
(``"CA"``, ``"CA-REDUCED"``, ``"VAT"``) and an ERP adapter gives its tax id for each name.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import httpx

# The service items every ERP sandbox is seeded with (shipping, fees, adjustments, rounding).
SERVICE_ITEMS = ("SHIPPING", "FEE", "ADJUSTMENT", "ROUNDING")
NEUTRAL_RATES = ("CA", "CA-REDUCED", "VAT")


@dataclass
class ErpDoc:
    """An ERP sales document as reconciliation needs it."""

    external_ref: str
    kind: str  # "invoice", "credit_memo", "receipt"
    amount: Decimal  # positive
    currency: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Placed:
    """An order placed through the store's API, with the store's own numbers."""

    id: str
    total: Decimal
    currency: str
    raw: dict[str, Any] = field(default_factory=dict)


class StoreSandbox(Protocol):
    system: str
    prefix: str  # the connection's document prefix ("WC-", "BC-")
    tls: bool  # serve over TLS (the local test CA)
    tax_rates: dict[str, str]  # the store's tax rate code -> neutral rate name
    payment_methods: tuple[str, ...]  # payment methods its orders carry

    def create_app(self, **options: Any) -> Any: ...

    def admin_client(self, url: str, ca_file: str) -> httpx.AsyncClient:
        """A client of the store's API as a merchant's admin uses it (tests, traffic)."""

    def connection(self, url: str, ca_file: str, **options: Any) -> tuple[dict, dict]:
        """(store settings, store credentials) of a connection to this sandbox."""

    async def seed(self, admin: httpx.AsyncClient) -> list[str]:
        """A catalog in the store; returns every sellable SKU."""

    async def place_order(self, admin: httpx.AsyncClient, *, quantities: tuple[int, ...] = (2, 1),
                          paid: bool = True, email: str = "ann.buyer@example.com",
                          registered: bool = False, currency: str | None = None,
                          skus: tuple[str, ...] | None = None) -> Placed: ...

    async def pay(self, admin: httpx.AsyncClient, order_id: str) -> None:
        """Mark an unpaid order paid (captures its payment)."""

    async def refund(self, admin: httpx.AsyncClient, order_id: str, *, amount: Decimal | None = None,
                     line_qty: int = 0) -> str:
        """A refund: of ``line_qty`` units of the first line, of an amount only, or in full
        when neither is given. Returns the refund id."""

    async def generate_day(self, admin: httpx.AsyncClient, *, orders: int, refund_ratio: float,
                           seed: int, on_progress: Any = None) -> None:
        """Realistic traffic (see sandbox/traffic.py)."""

    async def duplicate_next(self, control: httpx.AsyncClient, url: str, count: int) -> None:
        """Deliver the next ``count`` webhooks twice."""

    async def outage(self, control: httpx.AsyncClient, url: str, deliveries: int) -> None:
        """Fail the next ``deliveries`` webhook deliveries (dropped for good)."""

    async def wait_deliveries(self, control: httpx.AsyncClient, url: str) -> None:
        """Until every queued webhook delivery was attempted."""


class ErpSandbox(Protocol):
    system: str
    tls: bool
    tax_ids: dict[str, str]  # neutral rate name -> the ERP's tax id

    def create_app(self, **options: Any) -> Any: ...

    def connection(self, url: str, ca_file: str, **options: Any) -> tuple[dict, dict]:
        """(ERP settings, ERP credentials) of a connection to this sandbox."""

    def mappings(self) -> dict[str, Any]:
        """Extra :class:`connectors.documents.Mappings` fields this ERP needs (GL rules,
        payment methods) for the seeded catalog."""

    async def seed(self, control: httpx.AsyncClient, url: str, skus: list[str]) -> None:
        """Items for ``skus`` and SERVICE_ITEMS, tax ids, GL accounts/cost centers, ..."""

    async def documents(self, control: httpx.AsyncClient, url: str) -> list[ErpDoc]: ...

    async def customers(self, control: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
        """Every customer/account record the ERP holds (tests count them)."""

    async def expire_tokens(self, control: httpx.AsyncClient, url: str) -> None: ...


def ok(resp: httpx.Response) -> Any:
    """A control or admin answer (numbers as Decimal), or a RuntimeError naming the call."""
    if resp.status_code >= 400:
        raise RuntimeError(f"{resp.request.method} {resp.request.url.path} -> "
                           f"{resp.status_code}: {resp.text[:300]}")
    return json.loads(resp.content, parse_float=Decimal) if resp.content else None


STORES = ("woocommerce", "bigcommerce")
ERPS = ("acumatica", "oracle_fusion", "exact_online")


def sandbox(system: str) -> Any:
    """The adapter of ``system`` (module ``starter/sandboxes/<system>.py``, object ``ADAPTER``)."""
    if system not in STORES + ERPS:
        raise ValueError(f"unknown system {system!r}")
    return importlib.import_module(f"starter.sandboxes.{system}").ADAPTER

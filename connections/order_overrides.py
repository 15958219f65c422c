"""One-order mapping overrides: a SKU, tax rate or payment method mapped for one order only
("map this order's SKU once"), kept in the connection store and applied to every document
built for that order, so its invoice, credit memos and receipts name the same ERP codes.

Only codes can be overridden, never an amount: an override changes which ERP item, tax id or
payment method a line or payment names, while every amount still comes from the store's
order. It is offered only where it is safe: for an order that is parked or failed, and for
a SKU or tax rate only while the order's invoice is not booked (a later credit memo must
name the items its invoice named)."""
from __future__ import annotations

from datetime import datetime, timezone

from connections.config import Connection
from connections.ledger import LedgerKind, LedgerRow, OrderState, booked_ref
from connections.store import ConnectionStore
from connectors.documents import Mappings

KINDS = ("sku", "tax", "payment")
LABELS = {"sku": "SKU", "tax": "tax rate", "payment": "payment method"}
OPEN_STATES = (OrderState.PARKED, OrderState.FAILED)
LIMIT = 200  # characters of a store or ERP value


class OverrideRefused(ValueError):
    """Why this override is not allowed (one line for the operator); nothing is saved."""


def find_order(store: ConnectionStore, connection_id: str, order: str) -> LedgerRow:
    """The order's ledger row, by the store's order id or by its order number."""
    order = order.strip()
    row = store.ledger_get(connection_id, LedgerKind.ORDER, order)
    if row is None:
        rows = store.ledger_rows(connection_id, kind=LedgerKind.ORDER, order_number=order)
        row = rows[-1] if rows else None
    if row is None:
        raise OverrideRefused(f"connection {connection_id} has no order {order!r} in its ledger")
    return row


def add_override(store: ConnectionStore, connection_id: str, order: str, kind: str, key: str,
                 value: str, *, actor: str = "") -> LedgerRow:
    """Map ``key`` to ``value`` for this order only; returns the order's ledger row. Refused
    (``OverrideRefused``) where it would not be safe."""
    key, value = key.strip(), value.strip()
    if kind not in KINDS:
        raise OverrideRefused("a one-order override maps a SKU, a tax rate or a payment method; "
                              "a GL rule applies to the whole connection")
    if not key or not value or len(key) > LIMIT or len(value) > LIMIT:
        raise OverrideRefused("both the store's value and the ERP's value are needed "
                              f"(at most {LIMIT} characters each)")
    store.get_connection(connection_id)
    row = find_order(store, connection_id, order)
    if row.state not in OPEN_STATES:
        raise OverrideRefused(f"order {row.order_number or row.store_id} is {row.state}: a "
                              "one-order override is only for a parked or failed order")
    if kind != "payment" and booked_ref(
            store.ledger_get(connection_id, LedgerKind.INVOICE, row.store_id)) is not None:
        raise OverrideRefused(
            f"order {row.order_number or row.store_id} already has its invoice: its "
            f"{LABELS[kind]}s stay as invoiced; map {LABELS[kind]} {key} for the connection")
    store.db.execute(
        "INSERT INTO order_overrides (connection_id, order_id, kind, store_value, erp_value, "
        "actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection_id, order_id, "
        "kind, store_value) DO UPDATE SET erp_value = excluded.erp_value, "
        "actor = excluded.actor, created_at = excluded.created_at",
        (connection_id, row.store_id, kind, key, value, actor,
         datetime.now(timezone.utc).isoformat()))
    return row


def overrides(store: ConnectionStore, connection_id: str,
              order_id: str) -> dict[str, dict[str, str]]:
    """``{kind: {store value: ERP value}}`` for one order (store order id)."""
    found: dict[str, dict[str, str]] = {k: {} for k in KINDS}
    for kind, key, value in store.db.query(
            "SELECT kind, store_value, erp_value FROM order_overrides "
            "WHERE connection_id = ? AND order_id = ? ORDER BY created_at",
            (connection_id, str(order_id))):
        if kind in found:
            found[kind][key] = value
    return found


def mappings_for(store: ConnectionStore, conn: Connection, order_id: str) -> Mappings:
    """The connection's mappings with this order's overrides on top (the connection's own
    when the order has none)."""
    extra = overrides(store, conn.id, order_id)
    if not any(extra.values()):
        return conn.mappings
    return conn.mappings.model_copy(update={
        "sku_to_item": {**conn.mappings.sku_to_item, **extra["sku"]},
        "tax_codes": {**conn.mappings.tax_codes, **extra["tax"]},
        "payment_methods": {**conn.mappings.payment_methods, **extra["payment"]}})


def describe(kind: str, key: str, value: str, order_number: str) -> str:
    """How the action reads in the error history: codes and the order number only."""
    return f"mapped {LABELS.get(kind, kind)} {key} → {value} for order {order_number} only"

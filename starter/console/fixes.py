"""Fixes: a mapping saved from the console, and the replay of what it unblocks — the same
change `ml-connector connections map` makes (its parsing of a GL rule is reused), then the
connection's parked orders signalled again; or a one-order override, then that order alone.
Amounts are never edited here: an order whose totals do not add up is corrected in the store,
and its replay books what the store says."""
from __future__ import annotations

from connections.config import Connection
from connections.ledger import LedgerKind, OrderState
from connections.store import ConnectionStore

KINDS = {"sku": "store SKU → ERP item", "tax": "store tax rate → ERP tax id",
         "payment": "store payment method → ERP payment method",
         "gl": "GL rule (sku=GLOB,category=,kind=product|shipping|fee,account=GL,cost_center=)"}


class FixError(ValueError):
    """Input the operator can correct: shown on the page, nothing saved."""


def apply_mapping(store: ConnectionStore, connection_id: str, kind: str, key: str,
                  value: str) -> Connection:
    from starter.cli import UsageError, gl_rule

    conn = store.get_connection(connection_id)
    key, value = key.strip(), value.strip()
    if kind == "gl":
        try:
            rule = gl_rule(value or key)
        except UsageError as exc:
            raise FixError(str(exc)) from None
        conn.mappings.line_rules[:0] = [rule]  # first: the more specific rule just thought of
    elif kind in ("sku", "tax", "payment"):
        if not key or not value or len(key) > 200 or len(value) > 200:
            raise FixError("both the store's value and the ERP's value are needed")
        target = {"sku": conn.mappings.sku_to_item, "tax": conn.mappings.tax_codes,
                  "payment": conn.mappings.payment_methods}[kind]
        target[key] = value
    else:
        raise FixError(f"unknown kind of mapping {kind!r}")
    store.save_connection(conn)
    return conn


def map_for_order(store: ConnectionStore, connection_id: str, order_id: str, kind: str,
                  key: str, value: str, *, actor: str) -> tuple[str, str]:
    """A one-order override (connections/order_overrides.py), saved only where it is safe:
    (the store's order id, the action's description for the error history)."""
    from connections import order_overrides

    try:
        row = order_overrides.add_override(store, connection_id, order_id, kind, key, value,
                                           actor=actor)
    except order_overrides.OverrideRefused as exc:
        raise FixError(str(exc)) from None
    return row.store_id, order_overrides.describe(kind, key.strip(), value.strip(),
                                                  row.order_number or row.store_id)


def parked_orders(store: ConnectionStore, connection_id: str) -> list[str]:
    return [r.store_id for r in store.ledger_rows(connection_id, kind=LedgerKind.ORDER,
                                                   state=OrderState.PARKED)]


async def replay(client, store: ConnectionStore, connection_id: str, order_ids: list[str], *,
                 task_queue: str, why: str = "replay") -> int:
    """Signal each order's workflow to look again (signal-with-start: a closed one restarts
    and finds what is booked in the ledger)."""
    from activities.messages import OrderEvent
    from starter.dispatch import signal_order

    conn = store.get_connection(connection_id)
    for order_id in order_ids:
        await signal_order(client, connection_id, order_id,
                           OrderEvent(kind=why, source="console"), task_queue=task_queue,
                           erp_requests_per_minute=conn.erp_requests_per_minute)
    return len(order_ids)

"""``ml-connector status``: what an operator checks first, from the connection store alone
(it answers while Temporal or the systems are down)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from activities.poll import WATERMARK
from activities.webhooks import webhook_state
from connections.ledger import LedgerKind, OrderState
from connections.store import ConnectionStore

ORDER_STATES = tuple(OrderState)  # in the order an operator reads them
ATTENTION = (OrderState.PARKED, OrderState.FAILED)  # listed order by order


def connection_status(store: ConnectionStore, connection_id: str) -> dict:
    conn = store.get_connection(connection_id)
    orders = store.ledger_rows(conn.id, kind=LedgerKind.ORDER)
    today = datetime.now(timezone.utc).date().isoformat()
    return {
        "connection": conn.id,
        "pair": f"{conn.store_system} -> {conn.erp_system}",
        "health": store.connection_health(conn.id),
        "webhooks": webhook_state(store, conn.id),
        "last_poll_watermark": store.get_watermark(conn.id, WATERMARK),
        "orders": dict(Counter(r.state for r in orders)),
        "orders_today": dict(Counter(r.state for r in orders if r.updated_at.startswith(today))),
        **{state.value: [{"order": r.order_number or r.store_id, "since": r.updated_at,
                          "message": r.last_error or ""} for r in orders if r.state == state]
           for state in ATTENTION},
    }


def render(status: dict) -> str:
    health = status["health"]
    lines = [f"{status['connection']}  ({status['pair']})",
             f"  health: {health['state']}" + (f" — {health['message']}" if health.get("message") else ""),
             "  webhooks: " + (f"DOWN — polling mode since {status['webhooks'].get('since')} "
                               f"({status['webhooks'].get('reason')})"
                               if status["webhooks"].get("polling_mode") else "healthy"),
             f"  last poll watermark: {status['last_poll_watermark'] or 'never polled'}",
             "  orders: " + (", ".join(f"{status['orders'].get(s, 0)} {s}" for s in ORDER_STATES
                                       if status["orders"].get(s)) or "none yet"),
             "  today: " + (", ".join(f"{n} {s}" for s, n in sorted(status["orders_today"].items()))
                            or "none")]
    for title in ATTENTION:
        for row in status[title]:
            lines.append(f"  {title} order {row['order']} since {row['since']}: {row['message']}")
    return "\n".join(lines)

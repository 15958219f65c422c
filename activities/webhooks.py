"""Webhook health: the store's hooks exist, point at the receiver and are active; while one
was down the connection polls at its tighter cadence (polling mode) until the hooks prove
healthy at the next check."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from temporalio import activity

from activities.errors import classified
from activities.messages import CadenceInput, ConnectionInput, WebhookReport
from activities.runtime import Runtime, connector_module
from connections.config import WEBHOOK_SECRET
from connectors.base import ensure_webhooks

STATE = "webhooks"  # the connection's hook state, kept with its watermarks


def webhook_topics(conn) -> tuple[str, ...]:
    """The hooks a connection needs: its orders, and its customers where it aligns them."""
    module = connector_module(conn.store_system)
    return module.ORDER_TOPICS + (module.CUSTOMER_TOPICS if conn.customer_sync else ())


def webhook_state(store, connection_id: str) -> dict:
    raw = store.get_watermark(connection_id, STATE)
    return json.loads(raw) if raw else {"polling_mode": False}


class WebhookActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @activity.defn(name="check_webhooks")
    async def check_webhooks(self, inp: ConnectionInput) -> WebhookReport:
        conn = self.rt.connection(inp.connection_id)
        if not conn.delivery_url:
            return WebhookReport(message="no receiver_url: the connection runs on polls alone")
        secret = self.rt.store.get_secret(conn.id, WEBHOOK_SECRET) or ""
        async with classified():
            repairs = await ensure_webhooks(self.rt.storefront(conn), webhook_topics(conn),
                                            conn.delivery_url, secret)
        return WebhookReport(checked=True, repairs=repairs)

    @activity.defn(name="set_poll_cadence")
    async def set_poll_cadence(self, inp: CadenceInput) -> bool:
        """Record polling mode and move the poll schedule to the matching interval.
        Returns whether the interval changed."""
        conn = self.rt.connection(inp.connection_id)
        previous = webhook_state(self.rt.store, conn.id)
        if previous.get("polling_mode") != inp.polling_mode:
            self.rt.store.set_watermark(conn.id, STATE, json.dumps({
                "polling_mode": inp.polling_mode, "reason": inp.reason,
                "since": datetime.now(timezone.utc).isoformat()}))
        minutes = conn.polling_mode_minutes if inp.polling_mode else conn.poll_minutes
        return await self.rt.set_poll_interval(self.rt.client, conn.id, minutes)

    def all(self) -> list:
        return [self.check_webhooks, self.set_poll_cadence]

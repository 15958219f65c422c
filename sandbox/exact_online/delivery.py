"""Webhook deliveries, signed with the app's secret (fire and forget, not retried)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.exact_online.entities import WEBHOOK
from sandbox.exact_online.wire import dumps

if TYPE_CHECKING:
    from sandbox.exact_online.state import Division, ExactState


class Deliverer:
    """Signed notifications to the subscriptions of a topic (fire and forget, not retried)."""

    def __init__(self, state: ExactState, verify: Any = True):
        self.state, self.verify = state, verify
        self.base_url = "https://start.exactonline.nl"
        self.tasks: set[asyncio.Task] = set()

    def notify(self, div: Division, topic: str, key: str, action: str, endpoint: str) -> None:
        subs = [s for s in div.table(WEBHOOK).values() if s["Topic"] == topic]
        if not subs:
            return
        created = datetime.fromtimestamp(self.state.now(), tz=timezone.utc).replace(tzinfo=None)
        content = dumps({"Topic": topic, "ClientId": self.state.client_id, "Division": div.code,
                         "Action": action, "Key": key, "ExactOnlineEndpoint": f"{endpoint}(guid'{key}')",
                         "EventCreatedOn": created.isoformat(timespec="milliseconds")})
        digest = hmac.new(self.state.webhook_secret.encode(), content.encode(), hashlib.sha256).hexdigest().upper()
        body = f'{{"Content":{content},"HashCode":"{digest}"}}'.encode()
        for sub in subs:
            self._spawn(sub["CallbackURL"], body)

    def _spawn(self, url: str, body: bytes) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self.post(url, body))
        except RuntimeError:
            return
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def post(self, url: str, body: bytes) -> int | None:
        try:
            async with httpx.AsyncClient(verify=self.verify, timeout=10) as client:
                resp = await client.post(url, content=body, headers={"Content-Type": "application/json"})
                status = resp.status_code
        except httpx.HTTPError:
            status = None
        self.state.deliveries.append({"url": url, "status": status, "body": body.decode()})
        return status

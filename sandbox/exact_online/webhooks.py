"""Webhook deliveries (signed with the app's secret) and the subscription endpoint."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from sandbox.exact_online.api import Api, _body
from sandbox.exact_online.entities import WEBHOOK
from sandbox.exact_online.wire import BadRequest, dumps, odata_error

if TYPE_CHECKING:
    from sandbox.exact_online.state import Division, ExactState


# --------------------------------------------------------------------------- webhooks

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


# --------------------------------------------------------------------------- webhook subscribe

class WebhookApi(Api):
    """Subscriptions validate their callback before they are saved."""

    async def resource(self, request: Request) -> Response:
        rest = request.path_params.get("rest", "")
        if request.method == "POST" and rest.lower() == "webhooks/webhooksubscriptions":
            raw = await request.body()
            try:
                url = (_body(raw) or {}).get("CallbackURL", "")
            except (BadRequest, AttributeError):
                url = ""
            secure = url.startswith("https://") or (self.state.settings.allow_http_callbacks
                                                     and url.startswith("http://"))
            if url and secure and self.state.authenticated(request) is not None:
                status = await self.deliverer.post(url, b"")
                if status is None or not 200 <= status < 300:
                    return self._count(odata_error(
                        500, f"Error 500: Invalid: Post to callback URL endpoint returns {status or 500} "
                             f"An error occurred while sending the request."), request)
        return await super().resource(request)

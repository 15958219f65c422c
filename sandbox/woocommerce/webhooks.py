"""Webhooks: topics, delivery URLs, signatures, and the delivery queue (retries, disabling after
failures, outages)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import ssl
import time
from datetime import datetime, timezone
from typing import Any

import httpx

from sandbox.background import ensure_worker

from sandbox.woocommerce.constants import (PING_TIMEOUT, SECRET_ALPHABET, USER_AGENT, WEBHOOK_EVENTS,
                                           WEBHOOK_RESOURCES, WEBHOOK_STATUSES)
from sandbox.woocommerce.model import Webhook
from sandbox.woocommerce.wire import ApiError, php_json, wp_specialchars_decode


class WebhookBook:
    """Webhooks and their delivery queue (retries, disabling after failures, outages)."""

    # ---- webhooks --------------------------------------------------------------------------
    async def create_webhook(self, body: dict) -> Webhook:
        missing = [k for k in ("topic", "delivery_url") if not body.get(k)]
        if missing:
            raise ApiError(400, "rest_missing_callback_param",
                           f"Missing parameter(s): {', '.join(missing)}", params=missing)
        if body.get("id"):
            raise ApiError(400, "woocommerce_rest_shop_webhook_exists", "Cannot create existing shop_webhook.")
        topic = valid_topic(body["topic"])
        url = valid_delivery_url(body["delivery_url"])
        now = self.now()
        secret = str(body.get("secret") or "") or "".join(secrets.choice(SECRET_ALPHABET) for _ in range(50))
        name = str(body.get("name") or "") or f"Webhook created on {self.local(now):%b %d, %Y @ %I:%M %p}"
        hook = Webhook(self._next("webhook"), name, topic, url, secret, now, now)
        self.webhooks[hook.id] = hook
        await self.ping(hook)
        return hook

    async def update_webhook(self, hook: Webhook, body: dict) -> Webhook:
        if body.get("status") is not None and body["status"] not in WEBHOOK_STATUSES:
            raise ApiError(400, "woocommerce_rest_shop_webhook_invalid_status", "Webhook status must be valid.")
        topic = valid_topic(body["topic"]) if body.get("topic") else hook.topic
        url = valid_delivery_url(body["delivery_url"]) if body.get("delivery_url") else hook.delivery_url
        if url != hook.delivery_url:
            hook.pending_delivery = True
        hook.topic, hook.delivery_url = topic, url
        if body.get("name"):
            hook.name = str(body["name"])
        if body.get("secret"):
            hook.secret = str(body["secret"])
        if body.get("status"):
            hook.status = body["status"]
        hook.modified = self.now()
        if hook.status == "active" and hook.pending_delivery:
            await self.ping(hook)
        return hook

    def delete_webhook(self, hook: Webhook) -> None:
        self.webhooks.pop(hook.id, None)

    def webhook_deliveries(self) -> list[dict]:
        return [dict(entry) for entry in self.deliveries]

    def _client(self) -> httpx.AsyncClient:
        key = (id(self.delivery_transport), str(self.settings.delivery_verify))
        if self._http is None or self._http.is_closed or self._http_key != key:
            verify = self.settings.delivery_verify
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            self._http = httpx.AsyncClient(transport=self.delivery_transport, verify=verify,
                                           follow_redirects=False)
            self._http_key = key
        return self._http

    async def _post(self, url: str, content: bytes, headers: dict, timeout: float) -> tuple[int | None, str | None]:
        try:
            resp = await self._client().post(url, content=content, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return None, f"cURL error 28: Operation timed out after {int(timeout * 1000)} milliseconds"
        except httpx.HTTPError as exc:
            return None, f"cURL error 7: {exc or type(exc).__name__}"
        return resp.status_code, None

    async def ping(self, hook: Webhook) -> None:
        """§8.5: unsigned form body, success only on exactly 200."""
        status, error = await self._post(
            hook.delivery_url, f"webhook_id={hook.id}".encode(),
            {"User-Agent": USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}, PING_TIMEOUT)
        if status == 200:
            hook.pending_delivery = False
        self._log("ping", hook, hook.id, None, status, error)

    def _enqueue(self, key: tuple[int, int]) -> None:
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.append(key)
        self._kick()

    def _kick(self) -> None:
        self._worker = ensure_worker(self._worker, self._run_queue, "woocommerce-webhooks")

    async def _run_queue(self) -> None:
        while self._queue:
            key = self._queue.pop(0)
            self._pending.discard(key)
            self._inflight += 1
            try:
                await self._deliver(key)
            finally:
                self._inflight -= 1

    async def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the delivery queue is empty and nothing is in flight."""
        deadline = time.monotonic() + timeout
        self._kick()
        while self._queue or self._inflight:
            if time.monotonic() > deadline:
                return False
            self._kick()
            await asyncio.sleep(0.005)
        return True

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        if self._http is not None:
            await self._http.aclose()

    def payload(self, hook: Webhook, resource_id: int) -> dict:
        """Built at send time: exactly what GET of the resource returns."""
        if hook.event == "deleted":
            return {"id": resource_id}
        if hook.resource == "order" and resource_id in self.orders:
            return self.order_json(self.orders[resource_id], self.home)
        if hook.resource == "product" and resource_id in self.products:
            return self.product_json(self.products[resource_id], self.home)
        if hook.resource == "customer" and resource_id in self.customers:
            return self.customer_json(self.customers[resource_id], self.home)
        return {"id": resource_id}

    async def _deliver(self, key: tuple[int, int]) -> None:
        hook = self.webhooks.get(key[0])
        if hook is None:
            return
        body = php_json(self.payload(hook, key[1]))
        delivery_id = hashlib.md5(f"{hook.id}{time.time()}{secrets.token_hex(4)}".encode()).hexdigest()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-WC-Webhook-Source": self.settings.home_url, "X-WC-Webhook-Topic": hook.topic,
                   "X-WC-Webhook-Resource": hook.resource, "X-WC-Webhook-Event": hook.event,
                   "X-WC-Webhook-Signature": sign_payload(body, hook.secret),
                   "X-WC-Webhook-ID": str(hook.id), "X-WC-Webhook-Delivery-ID": delivery_id}
        status, error = await self._send_delivery(hook, body, headers)
        self._log("delivery", hook, key[1], delivery_id, status, error)
        if self.duplicate_next > 0:
            self.duplicate_next -= 1
            again = await self._post(hook.delivery_url, body, headers, float(self.settings.delivery_timeout))
            self._log("delivery", hook, key[1], delivery_id, *again, duplicate=True)
        self._count_outcome(hook, status is not None and 200 <= status <= 302)

    async def _send_delivery(self, hook: Webhook, body: bytes, headers: dict) -> tuple[int | None, str | None]:
        if self.outage_next > 0:
            self.outage_next -= 1
            return None, "cURL error 7: Failed to connect: Connection refused"
        return await self._post(hook.delivery_url, body, headers, float(self.settings.delivery_timeout))

    def _count_outcome(self, hook: Webhook, ok: bool) -> None:
        """§8.6: success resets; a failure past the threshold disables, else counts."""
        if ok:
            hook.failure_count = 0
        elif hook.failure_count > int(self.settings.max_webhook_failures):
            hook.status = "disabled"
            hook.modified = self.now()
        else:
            hook.failure_count += 1

    def _log(self, kind: str, hook: Webhook, resource_id: int, delivery_id: str | None,
             status: int | None, error: str | None, *, duplicate: bool = False) -> None:
        self.deliveries.append({
            "kind": kind, "webhook_id": hook.id, "topic": hook.topic if kind == "delivery" else "ping",
            "resource_id": resource_id, "delivery_id": delivery_id, "status": status, "error": error,
            "duplicate": duplicate, "url": hook.delivery_url,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")})


def valid_topic(topic: Any) -> str:
    topic = str(topic)
    resource, _, event = topic.partition(".")
    if resource == "action" and event:
        return topic
    if resource in WEBHOOK_RESOURCES and event in WEBHOOK_EVENTS:
        return topic
    raise ApiError(400, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic is required and must be valid.")


def valid_delivery_url(url: Any) -> str:
    url = str(url).strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise ApiError(400, "woocommerce_rest_shop_webhook_invalid_delivery_url",
                       "Webhook delivery URL must be a valid URL starting with http:// or https://.")
    return url


def sign_payload(body: bytes, secret: str) -> str:
    """§8.4: base64 of the raw HMAC-SHA256 of the body, the secret HTML-entity-decoded first."""
    key = wp_specialchars_decode(secret).encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()

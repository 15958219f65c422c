"""The console inside ``ml-connector dev``: served in the dev process on a fixed port, with a
dev operator whose password is new at each start (printed once, in the banner, never logged)."""
from __future__ import annotations

import secrets

from temporalio.client import Client

from connections.config import Environment
from connections.store import ConnectionStore
from sandbox.server import Served, start
from starter.console.accounts import Accounts
from starter.console.app import Settings, create_console
from starter.console.commands import DEFAULT_PORT

DEV_OPERATOR = "dev"


async def start_dev_console(store: ConnectionStore, client: Client, env: Environment, *,
                            ui_port: int, port: int = DEFAULT_PORT) -> tuple[Served, str]:
    """The served console and its banner text (where to open it, how to sign in)."""
    password = secrets.token_urlsafe(12)
    Accounts(store.db).add_operator(DEV_OPERATOR, password, replace=True)

    async def temporal() -> Client:
        return client

    app = create_console(store, temporal, Settings(
        task_queue=env.task_queue, namespace=env.namespace,
        temporal_ui=f"http://127.0.0.1:{ui_port}"))
    served = await start(app, port=port, name="console")
    return served, f"open {served.url} — sign in as {DEV_OPERATOR} / {password}"

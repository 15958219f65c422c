"""``ml-connector dev``: the embedded stack on fixed ports, staying up for exploration."""
from __future__ import annotations

import asyncio

from connections.config import Environment, open_store
from connections.store import ConnectionNotFound
from starter.stack import Stack, start_temporal_server
from starter.temporal import connect

PORTS = {"woocommerce": 8441, "woocommerce_http": 8081, "acumatica": 8442, "receiver": 8000}


async def run_dev(env: Environment, *, temporal_port: int = 7233, ui_port: int = 8233) -> int:
    home = env.home / "dev"
    server = await start_temporal_server(home, port=temporal_port, ui_port=ui_port)
    try:
        env = Environment(home=home, temporal_address=f"127.0.0.1:{temporal_port}")
        store = open_store(env)
        client = await connect(env, store.vault.keyring)
        async with Stack(client, store, home, env.task_queue, ports=PORTS) as stack:
            await stack.seed()
            try:
                conn = store.get_connection("demo")
            except ConnectionNotFound:
                await stack.add_connection("demo")
            else:
                await stack.register_webhooks(conn)
            print(f"Temporal UI  http://127.0.0.1:{ui_port}\nstore        {stack.shop.url}\n"
                  f"ERP          {stack.erp_server.url}\nreceiver     {stack.receiver.url}\n"
                  f"CA           {stack.ca.ca_file}\nCtrl-C stops.")
            await asyncio.Event().wait()
    finally:
        server.terminate()
        server.wait(10)
    return 0

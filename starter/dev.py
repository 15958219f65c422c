"""``ml-connector dev``: the embedded stack on fixed ports, staying up for exploration."""
from __future__ import annotations

import asyncio

from connections.config import Environment
from connections.store import ConnectionNotFound, open_store
from sandbox.server import start
from starter.codec_server import codec_endpoint_url, create_codec_server, new_token
from starter.stack import Stack, start_temporal_server
from starter.temporal import connect

PORTS = {"woocommerce": 8441, "woocommerce_http": 8081, "acumatica": 8442, "receiver": 8000,
         "codec": 8001}


def ui_origins(ui_port: int) -> list[str]:
    """Where an operator may open the dev UI. To a browser 127.0.0.1 and localhost are two
    origins, and the codec answers only the origins it is given: both, so either decodes."""
    return [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]


def banner(ui_port: int, services: dict[str, str]) -> str:
    """The start-up text: where to open the UI first, then each service's address."""
    first, *others = ui_origins(ui_port)
    lines = [f"Temporal UI  open {first} (or {', '.join(others)}): payloads show decoded"]
    lines += [f"{name:<12} {where}" for name, where in services.items()]
    return "\n".join([*lines, "Ctrl-C stops."])


async def run_dev(env: Environment, *, temporal_port: int = 7233, ui_port: int = 8233) -> int:
    """The UI decodes the encrypted payloads it shows through the codec endpoint, which
    answers only the UI's origins (ui_origins) and only with the token this run made."""
    home = env.home / "dev"
    token = new_token()
    server = await start_temporal_server(
        home, port=temporal_port, ui_port=ui_port,
        codec_endpoint=codec_endpoint_url("127.0.0.1", PORTS["codec"], token))
    codec = None
    try:
        env = Environment(home=home, temporal_address=f"127.0.0.1:{temporal_port}")
        store = open_store(env)
        codec = await start(create_codec_server(store.vault.keyring, token=token,
                                                ui_origin=ui_origins(ui_port)),
                            port=PORTS["codec"], name="codec")
        client = await connect(env, store.vault.keyring)
        async with Stack(client, store, home, env.task_queue, ports=PORTS) as stack:
            await stack.seed()
            try:
                conn = store.get_connection("demo")
            except ConnectionNotFound:
                await stack.add_connection("demo")
            else:
                await stack.register_webhooks(conn)
            print(banner(ui_port, {
                "store": stack.shop.url, "ERP": stack.erp_server.url,
                "receiver": stack.receiver.url,
                "codec": f"http://127.0.0.1:{PORTS['codec']} (the UI decodes through it)",
                "CA": str(stack.ca.ca_file)}), flush=True)
            await asyncio.Event().wait()
    finally:
        if codec is not None:
            await codec.stop()
        server.terminate()
        server.wait(10)
    return 0

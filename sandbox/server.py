"""Serving ASGI apps on real sockets, over plain HTTP or TLS signed by a local test CA.

Used by the test suite, ``make demo`` and the benchmarks: everything talks over loopback
like it would over the network. The CA certificate is written to a file so clients trust
it the way a merchant's install trusts a private CA (a CA bundle path).
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import contextlib
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator

import trustme
import uvicorn


@dataclass
class LocalCA:
    ca: trustme.CA
    ca_file: Path
    server_context: ssl.SSLContext

    @classmethod
    def create(cls, directory: Path) -> "LocalCA":
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca_file = directory / "sandbox-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return cls(ca, ca_file, ctx)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the host process owns signals
        pass

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the same, since uvicorn 0.29
        yield


@dataclass
class Served:
    url: str  # e.g. "https://127.0.0.1:4431"
    server: uvicorn.Server
    task: asyncio.Task

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except asyncio.TimeoutError:
            self.task.cancel()


async def start(app, *, port: int = 0, tls: LocalCA | None = None, host: str = "127.0.0.1",
                name: str = "app") -> Served:
    """Serve ``app`` in this event loop; returns once it accepts connections."""
    port = port or free_port()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=2)
    server = _Server(config)
    if tls is not None:  # uvicorn builds its context from files; give it ours after loading
        config.load()
        config.ssl = tls.server_context
    task = asyncio.create_task(server.serve(), name=f"serve-{name}")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"{name} did not start on port {port}")
        await asyncio.sleep(0.01)
    scheme = "https" if tls else "http"
    return Served(f"{scheme}://{host}:{port}", server, task)


@asynccontextmanager
async def serving(app, **kwargs) -> AsyncIterator[Served]:
    served = await start(app, **kwargs)
    try:
        yield served
    finally:
        await served.stop()

"""The console in a real browser: Playwright (PyPI) driving Debian's chromium, against the
console as its own process (`ml-connector console`) on the stack of tests/integration (real
Temporal, sandboxes over HTTP/TLS, the worker). Chromium is installed from Debian when it is
missing; these tests never skip."""
from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandbox.server import free_port
from tests.conftest import HISTORY_KEYS
from tests.integration.conftest import eventually, stack, stack_factory  # noqa: F401
from tests.plaintext import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CLI = Path(sys.executable).parent / "ml-connector"
OPERATOR, PASSWORD = "alice", "browser-test-password-7f3a"
REGISTRY.add_secret(PASSWORD, "the console operator's password")


def chromium_binary() -> str:
    """Debian's chromium, installed with apt-get when it is missing (CI runs as root). The
    test workers (pytest-xdist) install it one at a time: a file lock serialises them, and
    apt-get waits for dpkg's own lock rather than failing on it."""
    if found := shutil.which("chromium"):
        return found
    with open(Path(tempfile.gettempdir()) / "ml-connector-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wait = ["-o", "DPkg::Lock::Timeout=600"]
        for args in (["apt-get", *wait, "install", "-y", "chromium"], ["apt-get", "update"],
                     ["apt-get", *wait, "install", "-y", "chromium"]):
            if found := shutil.which("chromium"):
                return found
            subprocess.run(args, check=False, stdin=subprocess.DEVNULL,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if found := shutil.which("chromium"):
            return found
    pytest.fail("Debian's chromium is missing and `apt-get install -y chromium` did not install "
                "it: the browser tests need it", pytrace=False)


@pytest.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    executable = chromium_binary()
    async with async_playwright() as pw:
        # --no-sandbox: chromium refuses its sandbox as root (CI); the pages are our own.
        chromium = await pw.chromium.launch(executable_path=executable,
                                            args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        await chromium.close()


@dataclass
class Console:
    url: str
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS / f"{name}.png"


def cli_env(stack, temporal, home: Path) -> dict[str, str]:
    env = {**os.environ, "ML_CONNECTOR_HOME": str(home),
           "ML_CONNECTOR_DB": stack.store.db.url, "ML_CONNECTOR_KEY_FILE": str(HISTORY_KEYS),
           "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
           "TEMPORAL_NAMESPACE": temporal.client.namespace,
           "ML_CONNECTOR_TASK_QUEUE": stack.task_queue}
    env.pop("ML_CONNECTOR_MASTER_KEYS", None)  # the key file above is the stack's keyring
    env.pop("ML_CONSOLE_PASSWORD", None)
    return env


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(CLI), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def console(stack, temporal, tmp_path):  # noqa: F811
    """`ml-connector console` as its own process on the stack's store, keys and Temporal,
    with one operator added through `ml-connector console users add`."""
    env = cli_env(stack, temporal, tmp_path / "console-home")
    code, out, err = await run_cli({**env, "ML_CONSOLE_PASSWORD": PASSWORD},
                                   "console", "users", "add", OPERATOR)
    assert code == 0, err
    port = free_port()
    log = tmp_path / "console.log"
    with open(log, "wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            str(CLI), "console", "--port", str(port), "--temporal-ui", "http://127.0.0.1:8233",
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"

    async def up():
        if proc.returncode is not None:
            raise AssertionError(f"the console exited: {log.read_text()}")
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(url + "/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(up, timeout=60, interval=0.2)
    REGISTRY.log_files.append(log)  # the suite's plain-text scan reads the console's output
    try:
        yield Console(url, env, log, proc)
    finally:
        proc.terminate()
        await proc.wait()

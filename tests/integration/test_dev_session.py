"""A newcomer's ``ml-connector dev`` session, run as a user runs it: the installed command in
a subprocess (on free ports, ``--port-base``), the banner's lines pasted into other shells
as printed, Ctrl-C, and a second start. Nothing here calls dev's functions."""
from __future__ import annotations

import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault
from starter.dev import DEFAULT_PORTS
from starter.logs import LOG_FILE_ENV
from starter.sandboxes.woocommerce import KEY, SECRET
from tests.plaintext import REGISTRY

CLI = Path(sys.executable).parent / "ml-connector"
WAIT = 90  # generous: a slow shared machine only makes the test slower, never failing


def free_port_base() -> int:
    """N such that N … N+6 are free, below the ephemeral range the Temporal server's own
    random ports come from."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - len(DEFAULT_PORTS))
        if all(_free(port) for port in range(base, base + len(DEFAULT_PORTS))):
            return base
    pytest.fail("no run of free ports found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (its own sessions included: the Temporal server)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, frontier = set(), [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def eventually(check, what: str, timeout: float = WAIT):
    """Poll ``check`` until it returns something truthy; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(0.5)


class Dev:
    """``ml-connector dev`` in its own process group, as a terminal runs it; its output is read
    line by line as it comes."""

    def __init__(self, env: dict[str, str], base: int, cwd: Path, log: Path) -> None:
        self.stderr = log
        self.proc = subprocess.Popen(
            [str(CLI), "dev", "--port-base", str(base)], env=env, cwd=cwd, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log.open("w"),
            start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def banner(self) -> dict[str, str]:
        """The lines a user copies: export, the ``ml-connector`` command, the order command."""
        def printed():
            assert self.proc.poll() is None, f"dev exited:\n{self.stderr.read_text()[-3000:]}"
            return "Ctrl-C stops." in self.lines

        eventually(printed, "dev's banner")
        lines = [line.strip() for line in self.lines]
        export = next(i for i, line in enumerate(lines)
                      if line.startswith("export ML_CONNECTOR_HOME="))
        orders = lines.index("Place orders (they post within seconds):") + 1
        services = dict(line.split(None, 1) for line in lines if line.startswith(("store ", "CA ")))
        return {"export": lines[export], "cli": shlex.split(lines[export + 1])[0],
                "status": lines[export + 1], "orders": lines[orders], **services}

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the terminal's foreground group, i.e. dev's."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(WAIT)


@pytest.fixture
def session(tmp_path):
    """A clean environment (no operator settings of the machine), a state folder of its own,
    and a working folder elsewhere; each dev started is stopped afterwards whatever happens."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ML_CONNECTOR_", "TEMPORAL_")) or k == LOG_FILE_ENV}
    env["ML_CONNECTOR_HOME"] = str(tmp_path / "state")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    started: list[Dev] = []
    base = free_port_base()

    def start() -> Dev:
        dev = Dev(env, base, cwd, tmp_path / f"dev-{len(started)}.stderr")
        started.append(dev)
        return dev

    def shell(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=WAIT, stdin=subprocess.DEVNULL)

    yield start, shell, base
    for dev in started:
        if dev.proc.poll() is None:
            for pid in descendants(dev.proc.pid):
                os.kill(pid, signal.SIGKILL)
            dev.proc.kill()
            dev.proc.wait(30)
    keys = tmp_path / "state" / "dev" / "keys.json"
    if keys.exists():  # dev's own secrets join the plain-text scan of the session
        store = ConnectionStore(Database(f"sqlite:///{keys.parent / 'connector.db'}"),
                                Vault(Keyring.load(keys)))
        REGISTRY.harvest(store)
        store.db.close()


def store_orders(banner: dict[str, str]) -> list[int]:
    """The order numbers the store shows its merchant (its REST API, dev's keys)."""
    resp = httpx.get(f"{banner['store']}/wp-json/wc/v3/orders", auth=(KEY, SECRET),
                     verify=banner["CA"], timeout=30)
    resp.raise_for_status()
    return sorted(int(order["number"]) for order in resp.json())


def operator(shell, banner, args: str) -> subprocess.CompletedProcess:
    """A second shell: the printed export line, then ``ml-connector`` by its printed path."""
    return shell(f"{banner['export']}\n{shlex.quote(banner['cli'])} {args}")


def status(shell, banner) -> dict:
    done = operator(shell, banner, "status --json")  # its exit code says healthy or not
    assert "Traceback" not in done.stderr, done.stderr
    (demo,) = json.loads(done.stdout)["connections"]
    assert demo["connection"] == "demo"
    return demo


def posted_once(shell, banner, number: int) -> bool:
    """``audit`` shows the order's ledger row posted, and nothing parked."""
    done = operator(shell, banner, f"audit --json {number}")
    if done.returncode != 0:
        assert "Traceback" not in done.stderr, done.stderr
        return False
    steps = json.loads(done.stdout)
    assert not [s for s in steps if "parked" in (s["detail"] or "")], steps
    return any(s["what"] == "ledger" and s["detail"].startswith(f"order {number}: posted")
               for s in steps)


def place_orders(shell, banner) -> list[int]:
    """The printed order command, pasted as printed after the printed export line."""
    done = shell(f"{banner['export']}\n{banner['orders']}")
    assert done.returncode == 0, done.stdout + done.stderr
    return eventually(lambda: store_orders(banner), "orders in the store")


def test_a_dev_session_as_a_newcomer_runs_it(session):
    start, shell, base = session
    dev = start()
    banner = dev.banner()
    assert f"TEMPORAL_ADDRESS=127.0.0.1:{base}" in banner["export"]
    assert banner["store"] == f"https://127.0.0.1:{base + list(DEFAULT_PORTS).index('woocommerce')}"
    assert Path(banner["cli"]) == CLI

    first = place_orders(shell, banner)
    eventually(lambda: posted_once(shell, banner, first[0]), f"order {first[0]} posted")
    demo = eventually(lambda: (d := status(shell, banner))["orders"].get("posted") and d,
                      "status counting the posted order")
    assert demo["parked"] == [] and demo["failed"] == []
    done = operator(shell, banner, f"audit {first[0]}")
    assert done.returncode == 0 and f"order {first[0]}: posted" in done.stdout, done.stderr

    # Ctrl-C stops every process dev started and frees every port
    children = descendants(dev.proc.pid)
    assert children, "dev runs the Temporal server as its child"
    assert dev.interrupt() == 130
    assert "Traceback" not in dev.stderr.read_text()
    eventually(lambda: not any(alive(pid) for pid in children), "every child process gone")
    assert not [port for port in range(base, base + len(DEFAULT_PORTS)) if listening(port)]

    # a second start begins empty, the sandboxes and the ledger and history alike ("begins
    # empty", as the banner says): the store numbers orders from the start again, and the
    # same numbers post as new orders instead of meeting old ledger rows and parking
    dev = start()
    banner = dev.banner()
    assert "begins empty" in "\n".join(dev.lines)
    assert store_orders(banner) == []
    demo = status(shell, banner)
    assert not any(demo["orders"].values()) and demo["parked"] == [] and demo["failed"] == []
    gone = operator(shell, banner, f"audit {first[0]}")
    assert gone.returncode == 2 and "no order numbered" in gone.stderr, gone.stdout + gone.stderr

    again = place_orders(shell, banner)
    assert again[0] == first[0]  # the reused number that old ledger rows would have parked
    eventually(lambda: posted_once(shell, banner, again[0]), f"order {again[0]} posted anew")
    assert status(shell, banner)["parked"] == []
    assert dev.interrupt() == 130


def test_the_default_ports_stay_and_a_port_base_moves_them_all():
    from starter.dev import dev_ports

    assert dev_ports() == {"temporal": 7233, "ui": 8233, "woocommerce": 8441,
                           "woocommerce_http": 8081, "acumatica": 8442, "receiver": 8000,
                           "console": 8100}
    assert sorted(dev_ports(20000).values()) == list(range(20000, 20000 + len(DEFAULT_PORTS)))


@pytest.mark.parametrize("base", ["80", "65530", "x"])
def test_a_bad_port_base_gets_one_clear_line(base):
    done = subprocess.run([str(CLI), "dev", "--port-base", base], capture_output=True, text=True,
                          timeout=WAIT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "--port-base" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr and done.stdout == ""

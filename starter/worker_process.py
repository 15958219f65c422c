"""``python -m worker`` as a child process over a given connection store and Temporal: what
the chaos run SIGKILLs and restarts, and what the several-workers tests run twice.

The child dies with its parent (like the stack's Temporal server), logs to a file, and
reads only the documented environment (README "Configuration")."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from connections.config import Environment
from starter.stack import _die_with_parent

ROOT = Path(__file__).resolve().parent.parent


def worker_environment(env: Environment, key_file: Path | None = None) -> dict[str, str]:
    """The process environment of a worker that shares ``env``'s store, keys and Temporal
    (``key_file``: the master key file, when it is not ``env``'s)."""
    out = dict(os.environ)  # the log file, the master keys and the rest pass through
    out.update({"ML_CONNECTOR_HOME": str(env.home), "ML_CONNECTOR_DB": env.db_url,
                "ML_CONNECTOR_KEY_FILE": str(key_file or env.key_file),
                "TEMPORAL_ADDRESS": env.temporal_address, "TEMPORAL_NAMESPACE": env.namespace,
                "ML_CONNECTOR_TASK_QUEUE": env.task_queue, "PYTHONUNBUFFERED": "1"})
    return out


@dataclass
class WorkerProcess:
    """One ``python -m worker``; ``start`` again after ``kill`` is a restart (a new process)."""

    env: Environment
    log_dir: Path
    name: str = "worker"
    key_file: Path | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0
    kills: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "ab")
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT,
                                         env=worker_environment(self.env, self.key_file), stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        finally:
            log.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the server (a crash, an OOM kill, a lost host)."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        await self._reap()

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM (graceful), then SIGKILL if it lingers."""
        if self.alive:
            self.proc.terminate()
            for _ in range(int(timeout * 10)):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.proc.kill()
        await self._reap()

    async def _reap(self) -> None:
        if self.proc is not None:
            while self.proc.poll() is None:
                await asyncio.sleep(0.05)
            self.exits.append(self.proc.returncode)
            self.proc = None

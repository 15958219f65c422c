"""Background work of a simulator (webhook delivery queues) on the running event loop."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def ensure_worker(worker: asyncio.Task | None, run: Callable[[], Coroutine[Any, Any, None]],
                  name: str) -> asyncio.Task | None:
    """The worker still running, else a new one on the running loop. Outside a loop nothing
    starts: the queue waits for the next call made inside one."""
    if worker is not None and not worker.done():
        return worker
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return worker
    return loop.create_task(run(), name=name)

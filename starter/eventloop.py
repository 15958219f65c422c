"""The event loop of the long-running processes: uvloop where it is installed (Linux and
macOS; a dependency there), else asyncio's own. A worker spends much of its time in the
loop's socket and callback plumbing (Temporal's bridge, HTTPS to the APIs), which uvloop does
in C."""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # Windows
        return asyncio.run(main)
    return uvloop.run(main)

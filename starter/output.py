"""What every CLI command prints goes through here or plain ``print``: either way a reader
that stops early (``ml-connector status | head -1``) ends the command quietly with exit code
141 (128 + SIGPIPE), as ``cat`` or ``grep`` would, so ``set -o pipefail`` scripts see the same
thing from it as from any other tool — never a ``BrokenPipeError`` traceback. ``main`` in
starter/cli.py turns the error into :func:`closed_pipe`; commands use :func:`emit`."""
from __future__ import annotations

import json
import os
import sys
from typing import Any

EXIT_CLOSED_PIPE = 141


def emit(text: str) -> None:
    """One block of output, flushed, so a closed pipe is met here and not at exit."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def emit_json(value: Any) -> None:
    emit(json.dumps(value, indent=2, default=str))


def closed_pipe() -> int:
    """The reader of stdout went away: point stdout at /dev/null so no later flush raises
    again, and return the exit code to end with (the recipe of Python's signal docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_CLOSED_PIPE

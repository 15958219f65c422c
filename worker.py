"""The worker entry point (``python -m worker``, ``python worker.py``, the container's
command): runs every workflow and activity of ml-connector on its task queue, and the ERP
quota workers (starter/workers.py). Nothing imports this module."""
from __future__ import annotations

import os

if __name__ == "__main__":
    import logging

    from starter import eventloop
    from starter.logs import configure
    from starter.workers import run

    configure(logging.INFO)  # as ``ml-connector worker`` logs: redacted, no debug lines
    try:
        eventloop.run(run())
    except KeyboardInterrupt:
        pass
    os._exit(0)

"""``python -m bench [--full] [--only NAME ...]``: run the benchmarks, one table row each.

The default sizes fit in about ten minutes on a 2-core machine; ``--full`` (``make bench
BENCH_FULL=1``) runs the sizes of issue 6. Rows are printed as they finish and, with
``--out``, written as JSON (machine, date, rows) for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import importlib

from bench.common import TABLE_HEADER, Bench, Row, machine
from starter.logs import configure as configure_logs

BENCHMARKS = {"throughput": "bench.throughput", "quota": "bench.quota", "calls": "bench.calls",
              "receiver": "bench.receiver_latency", "catalog": "bench.catalog",
              "backfill": "bench.backfill"}


SIZES = {"tiny": "TINY", "reduced": "REDUCED", "full": "FULL"}


async def run_all(names: list[str], size: str, home: Path) -> list[Row]:
    rows: list[Row] = []
    print(TABLE_HEADER, flush=True)
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        started = time.monotonic()
        try:
            async with Bench(home / name) as bench:  # a fresh server per benchmark: no interference
                row = await module.run(bench, getattr(module, SIZES[size]))
        except Exception as exc:  # noqa: BLE001 - one failing benchmark still reports the others
            traceback.print_exc()
            row = Row(name, "-", {"error": f"{type(exc).__name__}: {exc}"[:300]}, verdict="error")
        row.detail["seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        print(row.line(), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", default=os.environ.get("BENCH_FULL") == "1",
                   help="the full sizes of issue 6 (default: reduced, ~10 minutes)")
    p.add_argument("--size", choices=sorted(SIZES), help="tiny (the smoke test's), reduced, full")
    p.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    p.add_argument("--home", type=Path, help="state folder (default: a temporary one, removed)")
    args = p.parse_args(argv)
    import logging

    configure_logs(logging.ERROR)
    home = args.home or Path(tempfile.mkdtemp(prefix="ml-bench-"))
    names = args.only or list(BENCHMARKS)
    size = args.size or ("full" if args.full else "reduced")
    started = datetime.now(timezone.utc)
    try:
        rows = asyncio.run(run_all(names, size, home))
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    report = {"machine": machine(), "date": started.isoformat(timespec="seconds"),
              "size": size,
              "rows": [{"bench": r.bench, "size": r.size, "figures": r.figures, "target": r.target,
                        "verdict": r.verdict, "detail": r.detail} for r in rows]}
    print(f"\n{report['machine']}\n{report['date']} ({report['size']} size)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(r.verdict != "error" for r in rows) else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # sdk-python issue 300: a process that ran a worker may abort at exit

"""Benchmark 4: receiver acknowledgement latency at a fixed arrival rate.

Signed WooCommerce ``order.created`` deliveries (a real order's JSON, a distinct order id
each) POSTed at 200 requests/s by :mod:`bench.loadgen` in its own process, to
``starter.receiver.create_receiver`` backed by the Temporal dev server (each answer waits for
the signal-with-start of the order's workflow; no worker runs, so the server does only what
acknowledging costs) and, alternating in the same run, to a bare ASGI endpoint that reads the
body and answers 200. Both are served the same way (uvicorn via sandbox/server.py).
"""
from __future__ import annotations

import asyncio
import base64
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import Bench, Row, Shop, add_connection, delivery, median, percentile
from sandbox.server import start



@dataclass(frozen=True)
class Size:
    rate: float
    seconds: float
    rounds: int
    lower_rate: float = 0  # also measured, to show the latency below the server's capacity
    settle: float = 3.0


TINY, REDUCED, FULL = Size(50, 0.6, 1, settle=0), Size(200, 5, 2, 100), Size(200, 15, 3, 100)


async def bare_endpoint(scope, receive, send) -> None:
    """The least an ASGI acknowledgement can do: read the body, answer a small JSON 200."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":200,"message":"accepted"}'})


async def _load(url: str, requests: list[tuple[bytes, dict]], rate: float, seconds: float) -> dict:
    spec = {"url": url, "rate": rate, "max_seconds": seconds, "warmup": max(1, int(rate * 0.25)),
            "requests": [{"body_b64": base64.b64encode(b).decode(), "headers": h} for b, h in requests]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", fh.name, stdout=asyncio.subprocess.PIPE,
            cwd=str(Path(__file__).resolve().parent.parent))
        out, _ = await proc.communicate()
    finally:
        Path(fh.name).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator exited {proc.returncode}")
    return json.loads(out)


async def run(bench: Bench, size: Size = REDUCED) -> Row:
    stack = await bench.stack(run_worker=False)
    conn = await add_connection(stack, "recv")
    template = (await Shop.open(stack, seed=41)).place()
    bare = await start(bare_endpoint, name="bare-asgi")
    results: dict[tuple[str, float], list[dict]] = {}
    next_id = 10_000_000
    try:
        for rate in [r for r in (size.rate, size.lower_rate) if r]:
            count = int(rate * size.seconds) + 1
            for _ in range(size.rounds):
                for name in ("bare", "receiver"):
                    requests = []
                    for _ in range(count):
                        next_id += 1
                        url, body, headers = delivery(stack, conn, dict(template, id=next_id))
                        requests.append((body, headers))
                    target = url if name == "receiver" else bare.url + "/webhooks/x/woocommerce"
                    results.setdefault((name, rate), []).append(
                        await _load(target, requests, rate, size.seconds))
                    await asyncio.sleep(size.settle)  # the server's backlog must not load the next run
    finally:
        await bare.stop()
        await bench.close(stack)

    def figures(name: str, rate: float) -> tuple[float, float, dict]:
        runs = results[(name, rate)]
        p50 = median([percentile(r["latencies_ms"], 50) for r in runs])
        p99 = median([percentile(r["latencies_ms"], 99) for r in runs])
        statuses: dict[str, int] = {}
        for r in runs:
            for k, v in r["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        return p50, p99, statuses

    shown, ok = {}, True
    for rate in [r for r in (size.rate, size.lower_rate) if r]:
        r50, r99, r_status = figures("receiver", rate)
        b50, b99, b_status = figures("bare", rate)
        ok &= set(r_status) == {"200"} and set(b_status) == {"200"}
        shown[f"@{rate:.0f}/s receiver p50/p99"] = f"{r50:.1f}/{r99:.1f} ms"
        shown[f"@{rate:.0f}/s bare ASGI p50/p99"] = f"{b50:.1f}/{b99:.1f} ms"
        shown[f"@{rate:.0f}/s ratio p50/p99"] = f"{r50 / b50:.1f}x/{r99 / b99:.1f}x"
        shown[f"@{rate:.0f}/s statuses"] = f"receiver {r_status}, bare {b_status}"
    return Row(
        "4 receiver ack latency", f"{size.rate:.0f} req/s x {size.seconds:g} s x {size.rounds} rounds"
        + (f" (and {size.lower_rate:.0f} req/s)" if size.lower_rate else ""),
        shown, target="report the ratio (all 200)", verdict="met" if ok else "missed",
        detail={f"{name}@{rate:.0f}": [{k: v for k, v in r.items() if k != "latencies_ms"} for r in runs]
                for (name, rate), runs in results.items()})

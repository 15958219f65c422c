"""An open-loop HTTP load generator: requests leave at a fixed arrival rate whatever the
answers do, and each latency is measured from the moment its request was due (so a stalled
server shows up as latency instead of silently lowering the rate). Bounded in count and in
time; loopback only. Runs in its own process so it does not share an event loop (or a CPU
slice) with the server it measures.

    python -m bench.loadgen SPEC.json   # prints {"latencies_ms": [...], "statuses": {...}}

SPEC: ``{"url", "rate", "max_seconds", "warmup", "requests": [{"body_b64", "headers"}]}``.
"""
from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx


async def _one(client: httpx.AsyncClient, url: str, body: bytes, headers: dict, due: float
               ) -> tuple[float, int]:
    try:
        resp = await client.post(url, content=body, headers=headers)
        status = resp.status_code
    except httpx.HTTPError:
        status = 0
    return (time.perf_counter() - due) * 1000, status


async def run(spec: dict) -> dict:
    url = spec["url"]
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load generator only targets loopback")
    requests = [(base64.b64decode(r["body_b64"]), r["headers"]) for r in spec["requests"]]
    interval, deadline = 1.0 / float(spec["rate"]), float(spec["max_seconds"])
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter() + 0.1
        tasks = []
        for i, (body, headers) in enumerate(requests):
            due = start + i * interval
            if due - start > deadline:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, url, body, headers, due)))
        results = await asyncio.gather(*tasks)
    warmup = int(spec.get("warmup", 0))
    measured = results[warmup:]
    return {"latencies_ms": [lat for lat, _ in measured],
            "statuses": dict(Counter(str(status) for _, status in measured)),
            "sent": len(results), "seconds": len(results) * interval}


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(json.dumps(asyncio.run(run(json.load(fh)))))

"""Prometheus metrics: the Temporal SDK's own (workers, polls, activity latencies) and the
business counters an operator watches, all through one Temporal runtime meter on one port.

``ML_CONNECTOR_METRICS_ADDRESS=127.0.0.1:9464`` turns the endpoint on (``/metrics``). The
client a worker connects with must carry :func:`metrics_runtime`'s runtime: the SDK emits
its metrics through the runtime of the client, and the activity interceptor
(activities/interceptors.py) records the business figures through ``activity.metric_meter()``,
which derives from that same runtime.
"""
from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities.interceptors import (POSTING_LATENCY, REQUESTS_PER_ACTIVITY, BusinessMetrics)

ADDRESS_ENV = "ML_CONNECTOR_METRICS_ADDRESS"
FRESHNESS_SECONDS = 15.0  # how often the freshness gauge is refreshed from the store
# Store-to-ledger latency is minutes, not milliseconds: buckets from a second to a day.
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
REQUEST_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50)
# 1 while a connection's webhooks are down and it polls at its tighter cadence (from the
# store, like freshness: the state outlives the worker that noticed it).
POLLING_MODE = "ml_polling_mode"

_runtimes: dict[str, Runtime] = {}


def metrics_address(environ: Mapping[str, str] = os.environ) -> str | None:
    """``host:port`` of the metrics endpoint, or None when metrics are off."""
    value = (environ.get(ADDRESS_ENV) or "").strip()
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{ADDRESS_ENV} must look like 127.0.0.1:9464, got {value!r}")
    return value


def metrics_runtime(address: str | None = None) -> Runtime | None:
    """The Temporal runtime serving Prometheus on ``address`` (default: the environment),
    one per address and process (a second bind of the port would fail). None when off."""
    address = address or metrics_address()
    if address is None:
        return None
    if address not in _runtimes:
        _runtimes[address] = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
            bind_address=address, counters_total_suffix=True, durations_as_seconds=True,
            histogram_bucket_overrides={POSTING_LATENCY: LATENCY_BUCKETS,
                                        REQUESTS_PER_ACTIVITY: REQUEST_BUCKETS})))
    return _runtimes[address]


def freshness_seconds(store, connection_id: str, now: datetime | None = None) -> float | None:
    """Age of the connection's poll watermark, None if it was never polled."""
    from activities.poll import WATERMARK

    mark = store.get_watermark(connection_id, WATERMARK)
    if mark is None:
        return None
    return ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(mark)).total_seconds()


def record_freshness(meter: MetricMeter, store) -> None:
    """The store-kept gauges of every connection: sync freshness and polling mode."""
    from activities.webhooks import webhook_state

    polling = meter.create_gauge(POLLING_MODE, "1 while the connection's webhooks are down "
                                               "and it polls at its tighter cadence")
    for conn in store.list_connections():
        age = freshness_seconds(store, conn.id)
        if age is not None:
            BusinessMetrics(meter, conn.id).freshness(age)
        polling.set(int(bool(webhook_state(store, conn.id).get("polling_mode"))),
                    {"connection": conn.id})


async def freshness_loop(meter: MetricMeter, store, interval: float = FRESHNESS_SECONDS) -> None:
    """Keep the freshness gauges current while the worker runs (a gauge set only when a
    poll succeeds would never show a poll that stopped)."""
    while True:
        try:
            await asyncio.to_thread(record_freshness, meter, store)
        except Exception:  # a store hiccup must not stop the worker's metrics
            pass
        await asyncio.sleep(interval)


# --- reading the endpoint (tests, an operator's quick look) ----------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_exposition(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments skipped)."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out.append(Sample(m.group(1), dict(_LABEL.findall(m.group(2) or "")),
                              float(m.group(3))))
    return out


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))

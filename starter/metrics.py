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
# Differences the connection's last store-versus-ERP reconciliation found (from the store).
RECONCILE_DIFFERENCES = "ml_reconcile_differences"
# The error history (from the store, like freshness).
ERROR_EPISODES_OPEN = "ml_error_episodes_open"
ERROR_EPISODE_OLDEST = "ml_error_episode_oldest_open_seconds"
ERROR_EPISODES_RESOLVED = "ml_error_episodes_resolved"
PARKED_ORDERS = "ml_parked_orders"
# 1 while the connection's ERP authorization needs a user's consent again (a refused refresh
# token: the connection health StoreTokenStore keeps), from the store like freshness.
NEEDS_CONSENT = "ml_connection_needs_consent"
FAILED_ORDERS = "ml_failed_orders"

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
    """Seconds since the connection's last scheduled poll completed, None if it never polled."""
    from activities.poll import POLLED

    mark = store.get_watermark(connection_id, POLLED)
    if mark is None:
        return None
    return ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(mark)).total_seconds()


def record_freshness(meter: MetricMeter, store) -> None:
    """The store-kept gauges of every connection: sync freshness, polling mode and whether
    its ERP authorization needs a new consent."""
    from activities.runtime import StoreTokenStore
    from activities.webhooks import webhook_state

    polling = meter.create_gauge(POLLING_MODE, "1 while the connection's webhooks are down "
                                               "and it polls at its tighter cadence")
    consent = meter.create_gauge(NEEDS_CONSENT, "1 while the connection's ERP authorization "
                                                "needs a user's consent again")
    for conn in store.list_connections():
        age = freshness_seconds(store, conn.id)
        if age is not None:
            BusinessMetrics(meter, conn.id).freshness(age)
        polling.set(int(bool(webhook_state(store, conn.id).get("polling_mode"))),
                    {"connection": conn.id})
        consent.set(int(store.connection_health(conn.id)["state"]
                        == StoreTokenStore.NEEDS_CONSENT), {"connection": conn.id})


def record_error_history(meter: MetricMeter, store, now: datetime | None = None) -> None:
    """The error history's gauges (connections/error_history.py), per connection: open
    episodes by kind and the age of the oldest, resolved episodes by kind and resolution, and
    the orders parked or failed now. Kept in the store, so every worker exports the same
    values: rules take ``max`` over workers, never ``sum``."""
    from connections import error_history
    from connections.ledger import LedgerKind, OrderState

    now = now or datetime.now(timezone.utc)
    open_count = meter.create_gauge(ERROR_EPISODES_OPEN, "error episodes open now (parked, "
                                                         "failed, retrying)")
    oldest = meter.create_gauge_float(ERROR_EPISODE_OLDEST, "age of the oldest open error "
                                                            "episode (0: none open)", "s")
    resolved = meter.create_gauge(ERROR_EPISODES_RESOLVED, "error episodes resolved since the "
                                                           "store began, by how")
    waiting = {OrderState.PARKED: meter.create_gauge(PARKED_ORDERS, "orders parked now"),
               OrderState.FAILED: meter.create_gauge(FAILED_ORDERS, "orders failed now")}
    summary = error_history.open_summary(store)
    for conn in store.list_connections():
        for kind in error_history.EpisodeKind:
            labels = {"connection": conn.id, "kind": str(kind)}
            found = summary.get((conn.id, str(kind)))
            open_count.set(found.count if found else 0, labels)
            age = (now - datetime.fromisoformat(found.oldest_opened_at)).total_seconds() \
                if found else 0.0
            oldest.set(max(0.0, age), labels)
        for state, gauge in waiting.items():
            gauge.set(len(store.ledger_rows(conn.id, kind=LedgerKind.ORDER, state=state)),
                      {"connection": conn.id})
    for (cid, kind, how), count in error_history.resolved_counts(store).items():
        resolved.set(count, {"connection": cid, "kind": kind, "resolution": how})


def record_reconciliation(meter: MetricMeter, store) -> None:
    """Per connection, the differences of its last reconciliation (connections/reconciliations.py);
    a connection never reconciled has no sample rather than a reassuring 0."""
    from connections.reconciliations import last_reconciliation

    gauge = meter.create_gauge(RECONCILE_DIFFERENCES, "differences the connection's last "
                                                      "store-versus-ERP reconciliation found")
    for conn in store.list_connections():
        run = last_reconciliation(store, conn.id)
        if run is not None:
            gauge.set(len(run["differences"]), {"connection": conn.id})


async def freshness_loop(meter: MetricMeter, store, interval: float = FRESHNESS_SECONDS) -> None:
    """Keep the store-kept gauges current while the worker runs (a gauge set only when a
    poll succeeds would never show a poll that stopped)."""
    while True:
        for record in (record_freshness, record_error_history, record_reconciliation):
            try:
                await asyncio.to_thread(record, meter, store)
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

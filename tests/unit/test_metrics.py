"""The activity interceptor: business metrics from what activities get and return, and the
workflow id on every log line an activity writes (redaction still applied)."""
from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import structlog
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ExecuteActivityInput

from activities.interceptors import ObservabilityInterceptor
from connectors.errors import RateLimited
from starter.logs import configure
from starter.metrics import freshness_seconds, metrics_address, parse_exposition, total

NOW = datetime.now(timezone.utc)


class _Next:
    """The rest of the chain: runs the activity function like the SDK's last interceptor."""

    async def execute_activity(self, input: ExecuteActivityInput):
        return await input.fn(*input.args)

    def init(self, outbound) -> None:
        pass


@pytest.fixture(scope="module")
def buffered() -> tuple[MetricBuffer, Runtime]:
    buf = MetricBuffer(10000)
    return buf, Runtime(telemetry=TelemetryConfig(metrics=buf))


@pytest.fixture
def buffer(buffered) -> MetricBuffer:
    buffered[0].retrieve_updates()  # what earlier tests recorded
    return buffered[0]


@pytest.fixture
def meter(buffer, buffered):
    return buffered[1].metric_meter


async def run(meter, activity_type: str, arg, fn, attempt: int = 1):
    env = ActivityEnvironment()
    env.metric_meter = meter
    env.info = dataclasses.replace(env.info, activity_type=activity_type, attempt=attempt,
                                   workflow_id="order/demo/1001", workflow_run_id="run-1")
    observer = ObservabilityInterceptor().intercept_activity(_Next())

    async def through_interceptor():
        return await observer.execute_activity(
            ExecuteActivityInput(fn=fn, args=[arg], executor=None, headers={}))

    return await env.run(through_interceptor)


def updates(buffer) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for u in buffer.retrieve_updates():
        labels = tuple(sorted((k, str(v)) for k, v in u.attributes.items()
                              if k in ("connection", "kind", "outcome", "system")))
        key = (u.metric.name, labels)
        out[key] = out.get(key, 0) + u.value
    return out


def returning(value):
    async def fn(_):
        return value
    return fn


def raising(exc):
    async def fn(_):
        raise exc
    return fn


def invoice_input(paid_minutes_ago: float = 3):
    return SimpleNamespace(connection_id="demo", snapshot=SimpleNamespace(
        # stamped now, not at import: the suite may run for minutes before this test
        paid_at=datetime.now(timezone.utc) - timedelta(minutes=paid_minutes_ago),
        created_at=datetime.now(timezone.utc) - timedelta(hours=1)))


async def test_a_new_invoice_counts_an_order_posted_and_its_latency(buffer, meter):
    result = SimpleNamespace(ref=SimpleNamespace(created=True))
    assert await run(meter, "post_invoice", invoice_input(), returning(result)) is result
    got = updates(buffer)
    conn = ("connection", "demo")
    assert got[("ml_orders_posted", (conn,))] == 1
    assert got[("ml_documents_posted", (conn, ("kind", "invoice")))] == 1
    assert got[("ml_erp_activity_attempts", (conn, ("outcome", "completed")))] == 1
    assert 180 <= got[("ml_posting_latency_seconds", (conn,))] < 240  # from paid_at
    assert not any(name == "ml_duplicates_avoided" for name, _ in got)


async def test_found_on_a_first_attempt_is_a_duplicate_avoided_only(buffer, meter):
    result = SimpleNamespace(ref=SimpleNamespace(created=False))
    await run(meter, "post_credit_memo", invoice_input(), returning(result))
    got = updates(buffer)
    assert got[("ml_duplicates_avoided", (("connection", "demo"), ("kind", "credit_memo")))] == 1
    assert not any(name in ("ml_documents_posted", "ml_orders_posted") for name, _ in got)


async def test_found_on_a_retry_is_our_own_lost_answer_posted_and_avoided(buffer, meter):
    result = SimpleNamespace(ref=SimpleNamespace(created=False))
    await run(meter, "post_invoice", invoice_input(), returning(result), attempt=2)
    got = updates(buffer)
    assert got[("ml_orders_posted", (("connection", "demo"),))] == 1
    assert got[("ml_duplicates_avoided", (("connection", "demo"), ("kind", "invoice")))] == 1


async def test_parked_and_failed_states_are_counted(buffer, meter):
    for state in ("parked", "parked", "failed", "posted"):
        await run(meter, "record_order_state",
                  SimpleNamespace(connection_id="demo", state=state), returning(None))
    got = updates(buffer)
    assert got[("ml_orders_parked", (("connection", "demo"),))] == 2
    assert got[("ml_orders_failed", (("connection", "demo"),))] == 1


async def test_a_429_is_counted_by_system_and_the_error_still_raised(buffer, meter):
    cause = RateLimited("HTTP 429", retry_after=3, system="acumatica", status=429)
    error = ApplicationError("RateLimited: HTTP 429", type="RateLimited")
    error.__cause__ = cause
    with pytest.raises(ApplicationError):
        await run(meter, "post_invoice", invoice_input(), raising(error))
    got = updates(buffer)
    assert got[("ml_rate_limited", (("connection", "demo"), ("system", "acumatica")))] == 1
    assert got[("ml_erp_activity_attempts", (("connection", "demo"), ("outcome", "failed")))] == 1


async def test_requests_are_counted_when_the_http_hook_exists(buffer, meter, monkeypatch):
    from contextvars import ContextVar

    from connectors import http

    hook = ContextVar("observer", default=None)
    monkeypatch.setattr(http, "REQUEST_OBSERVER", hook, raising=False)

    async def three_calls(_):
        for system in ("acumatica", "acumatica", "woocommerce"):
            hook.get()(system)
        return None

    await run(meter, "post_receipt", invoice_input(), three_calls)
    got = updates(buffer)
    assert got[("ml_external_requests", (("connection", "demo"), ("system", "acumatica")))] == 2
    assert got[("ml_external_requests", (("connection", "demo"), ("system", "woocommerce")))] == 1
    assert hook.get() is None  # reset after the attempt


async def test_every_activity_log_line_carries_the_workflow_id_redacted(meter, tmp_path):
    path = tmp_path / "activity.log"

    async def logs(_):
        structlog.get_logger("t").info("customer.lookup", email="ann@example.com",
                                       detail="matched ann@example.com")
        raise ApplicationError("refused for bob@example.com", type="Rejected")

    configure(logging.DEBUG, log_file=path)
    try:
        with pytest.raises(ApplicationError):
            await run(meter, "upsert_customer", SimpleNamespace(connection_id="demo"), logs,
                      attempt=3)
    finally:
        configure(logging.INFO)
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["event"] for line in lines] == ["customer.lookup", "activity attempt failed"]
    for line in lines:
        assert line["workflow_id"] == "order/demo/1001" and line["run_id"] == "run-1"
        assert line["activity_type"] == "upsert_customer" and line["attempt"] == 3
        assert line["connection"] == "demo"
    assert lines[1]["error_type"] == "Rejected"
    assert "ann@example.com" not in text and "bob@example.com" not in text
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks to the next activity


def test_metrics_address_from_the_environment():
    assert metrics_address({}) is None
    assert metrics_address({"ML_CONNECTOR_METRICS_ADDRESS": "127.0.0.1:9464"}) == "127.0.0.1:9464"
    with pytest.raises(ValueError, match="127.0.0.1:9464"):
        metrics_address({"ML_CONNECTOR_METRICS_ADDRESS": "9464"})


def test_freshness_is_the_age_of_the_poll_watermark():
    marks = {("demo", "orders_polled"): (NOW - timedelta(minutes=4)).isoformat()}
    store = SimpleNamespace(get_watermark=lambda cid, name: marks.get((cid, name)))
    assert 239 <= freshness_seconds(store, "demo", now=NOW) <= 241
    assert freshness_seconds(store, "never-polled") is None


def test_exposition_is_parsed_with_labels():
    text = ('# HELP ml_orders_posted_total orders\n# TYPE ml_orders_posted_total counter\n'
            'ml_orders_posted_total{connection="a",service_name="x"} 3\n'
            'ml_orders_posted_total{connection="b"} 2\n'
            'temporal_request_total 7\n')
    samples = parse_exposition(text)
    assert total(samples, "ml_orders_posted_total") == 5
    assert total(samples, "ml_orders_posted_total", connection="a") == 3
    assert total(samples, "temporal_request_total") == 7


async def test_a_cancelled_attempt_is_counted_as_cancelled_not_failed(buffer, meter):
    import asyncio

    with pytest.raises(asyncio.CancelledError):
        await run(meter, "post_invoice", invoice_input(), raising(asyncio.CancelledError()))
    got = updates(buffer)
    assert got[("ml_erp_activity_attempts", (("connection", "demo"), ("outcome", "cancelled")))] == 1
    assert not any(labels == (("connection", "demo"), ("outcome", "failed")) for _, labels in got)

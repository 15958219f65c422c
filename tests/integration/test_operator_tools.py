"""The operator's tools over real sockets: `connections test` against the sandboxes, `audit`
of an order through a real Temporal history and the ledger, and the metrics endpoint of a
worker running one order."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from temporalio.client import Client

from activities.messages import OrderEvent
from activities.poll import POLLED
from connections.store import ConnectionStore, Database
from connections.vault import Vault
from connectors import http as http_plumbing
from sandbox.server import free_port
from starter import audit, diagnose
from starter.diagnose import passed, render
from starter.metrics import metrics_runtime, parse_exposition, record_freshness, total
from starter.stack import Stack
from starter.temporal import data_converter
from tests.integration.conftest import eventually
from tests.integration.helpers import get_order, place_order, refund, wait_documents
from starter.dispatch import signal_order


def unique_id() -> str:
    return f"ops-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def quiet_stack(stack_factory):
    """The sandboxes only: connection tests need no worker."""
    return await stack_factory(run_worker=False, seed=False)


async def posted(stack, connection_id: str, kind: str, store_id) -> object:
    async def check():
        row = stack.store.ledger_get(connection_id, kind, str(store_id))
        return row if row and row.state == "posted" else None

    return await eventually(check)


def failures(findings, side: str):
    return [f for f in findings if f.side == side and not f.ok]


async def test_good_connection_passes(quiet_stack):
    conn = await quiet_stack.add_connection(unique_id(), register_webhooks=False)
    findings = await diagnose.test_connection(quiet_stack.store, conn)
    assert passed(findings), render(conn, findings)
    assert {f.side for f in findings} == {"store", "erp"}


async def test_wrong_consumer_secret_names_the_secret(quiet_stack):
    conn = await quiet_stack.add_connection(unique_id(), register_webhooks=False)
    quiet_stack.store.put_secret(conn.id, "store_credentials",
                                 {"consumer_key": "ck_sandbox", "consumer_secret": "cs_wrong_value"})
    findings = await diagnose.test_connection(quiet_stack.store, conn)
    [bad] = failures(findings, "store")
    assert bad.check == "credentials"
    assert "consumer secret" in bad.fix and "Consumer secret is invalid" in bad.message
    assert "cs_wrong_value" not in render(conn, findings)
    assert not failures(findings, "erp")


async def test_wrong_acumatica_version_names_tried_and_served(quiet_stack):
    conn = await quiet_stack.add_connection(unique_id(), register_webhooks=False,
                                            erp={"endpoint_version": "23.100.001"})
    findings = await diagnose.test_connection(quiet_stack.store, conn)
    [bad] = failures(findings, "erp")
    assert bad.check == "endpoint"
    assert "23.100.001" in bad.message and "24.200.001" in bad.message
    assert "--erp-version" in bad.fix


async def test_untrusted_certificate_says_set_ca_bundle(quiet_stack):
    conn = await quiet_stack.add_connection(unique_id(), register_webhooks=False)
    conn.store.pop("ca_bundle")
    quiet_stack.store.save_connection(conn)
    findings = await diagnose.test_connection(quiet_stack.store, conn)
    [bad] = failures(findings, "store")
    assert bad.check == "tls"
    assert "the store's certificate is not trusted: set ca_bundle" in bad.message


async def test_refused_port_says_nothing_listens(quiet_stack):
    conn = await quiet_stack.add_connection(unique_id(), register_webhooks=False)
    conn.erp["instance_url"] = f"https://127.0.0.1:{free_port()}"
    quiet_stack.store.save_connection(conn)
    findings = await diagnose.test_connection(quiet_stack.store, conn)
    [bad] = failures(findings, "erp")
    assert bad.check == "network" and "connection refused" in bad.message
    assert not failures(findings, "store")


async def test_oauth1_clock_skew_is_named(quiet_stack):
    conn = await quiet_stack.add_connection(unique_id(), register_webhooks=False,
                                            store={"auth_mode": "oauth1"})
    await quiet_stack.control("woocommerce", "/_sandbox/clock", {"advance": 3600})
    findings = await diagnose.test_connection(quiet_stack.store, conn)
    [bad] = failures(findings, "store")
    assert bad.check == "clock" and "timestamp" in bad.message


# --- audit -----------------------------------------------------------------------------------

async def test_audit_shows_every_step_of_every_run_without_personal_data(stack):
    mappings = stack.default_mappings().model_copy(update={"post_receipts": False})
    conn = await stack.add_connection(unique_id(), register_webhooks=False, mappings=mappings)
    order = await place_order(stack, quantities=(3,), email="audit.buyer@example.com")
    r = await refund(stack, await get_order(stack, order["id"]), line_qty=1)
    await stack.control("acumatica", "/_sandbox/faults", {"lose_next_commits": 1})
    order_id = str(order["id"])
    for kind, delivery in (("created", "delivery-1"), ("replay", "")):
        wf_id = await signal_order(stack.client, conn.id, order_id,
                                   OrderEvent(kind=kind, source="webhook" if delivery else "cli",
                                              delivery_id=delivery),
                                   task_queue=stack.task_queue, idle_timeout_seconds=1)
        await stack.client.get_workflow_handle(wf_id).result()  # idle: the run closes

    timeline = await audit.audit(stack.client, stack.store, conn.id, order["number"])
    text = audit.render(order["number"], timeline)
    by_what = {}
    for entry in timeline:
        by_what.setdefault(entry.what, []).append(entry)
    assert len({e.run_id for e in timeline if e.source == "history"}) == 2, text
    assert [e.extra["kind"] for e in by_what["received"]] == ["created", "replay"]
    assert "delivery-1" in by_what["received"][0].detail
    assert len(by_what["fetched"]) == 2
    [invoice] = await wait_documents(stack, f"WC-{order_id}")
    # The second run starts from the order's ledger rows: nothing booked is posted again.
    [first] = by_what["posted"]
    assert invoice["number"] in first.detail and "already in the ERP" not in first.detail
    # The lost commit: the customer's first try (a local activity) failed, an activity took over.
    [first_try] = [e for e in by_what["retrying"] if e.extra["activity"] == "upsert_customer"]
    assert "first try failed" in first_try.detail and "handed to an activity" in first_try.detail
    assert by_what["customer"][0].at >= first_try.at and len(by_what["customer"]) == 1
    assert any(r["id"] and str(r["id"]) in e.detail for e in by_what["credit_memo"])
    ledger_kinds = {e.extra["kind"] for e in by_what["ledger"]}
    assert {"order", "customer", "invoice", "credit_memo"} <= ledger_kinds
    assert "audit.buyer@example.com" not in text and "Buyer" not in text
    assert timeline == sorted(timeline, key=lambda e: (e.at, e.source != "history"))


# --- metrics ---------------------------------------------------------------------------------

@pytest.fixture
async def metrics_stack(temporal, keyring, tmp_path):
    """A stack whose worker's client carries a Prometheus runtime on a free port."""
    address = f"127.0.0.1:{free_port()}"
    client = await Client.connect(temporal.client.service_client.config.target_host,
                                  namespace=temporal.client.namespace,
                                  data_converter=data_converter(keyring),
                                  runtime=metrics_runtime(address))
    store = ConnectionStore(Database(f"sqlite:///{tmp_path / 'metrics.db'}"), Vault(keyring))
    stack = Stack(client, store, tmp_path / "stack", f"tq-{uuid.uuid4().hex[:10]}")
    await stack.__aenter__()
    await stack.seed()
    try:
        yield stack, f"http://{address}/metrics"
    finally:
        await stack.__aexit__(None, None, None)
        store.db.close()


async def test_metrics_endpoint_has_sdk_and_business_metrics(metrics_stack):
    stack, url = metrics_stack
    mappings = stack.default_mappings().model_copy(update={"post_receipts": False})
    conn = await stack.add_connection(unique_id(), mappings=mappings)
    first = await place_order(stack)
    await posted(stack, conn.id, "invoice", first["id"])
    await stack.control("acumatica", "/_sandbox/faults", {"lose_next_commits": 1})
    second = await place_order(stack)  # its invoice commits, the answer is lost: found on retry
    await posted(stack, conn.id, "invoice", second["id"])
    await stack.control("acumatica", "/_sandbox/faults", {"storm_429": 1, "retry_after": 1})
    third = await place_order(stack)
    await posted(stack, conn.id, "invoice", third["id"])
    stamp = (datetime.now(timezone.utc) - timedelta(seconds=90)).isoformat()
    stack.store.set_watermark(conn.id, POLLED, stamp)
    record_freshness(stack.client.service_client.config.runtime.metric_meter, stack.store)

    async def scrape():
        async with httpx.AsyncClient() as http:
            samples = parse_exposition((await http.get(url)).text)
        return samples if total(samples, "ml_orders_posted_total", connection=conn.id) >= 3 \
            else None

    samples = await eventually(scrape, timeout=20)
    mine = {"connection": conn.id}
    assert total(samples, "temporal_activity_execution_latency_count") > 0  # the SDK's own
    assert total(samples, "temporal_workflow_completed_total") + total(
        samples, "temporal_workflow_task_execution_latency_count") > 0
    assert total(samples, "ml_orders_posted_total", **mine) == 3
    assert total(samples, "ml_documents_posted_total", kind="invoice", **mine) == 3
    assert total(samples, "ml_duplicates_avoided_total", kind="invoice", **mine) == 1
    assert total(samples, "ml_customers_total", outcome="created", **mine) == 1
    assert total(samples, "ml_customers_total", outcome="matched", **mine) == 2  # ledger hits
    assert total(samples, "ml_rate_limited_total", system="acumatica", **mine) >= 1
    assert total(samples, "ml_erp_activity_attempts_total", outcome="completed", **mine) >= 6
    assert total(samples, "ml_erp_activity_attempts_total", outcome="failed", **mine) >= 2
    assert total(samples, "ml_posting_latency_seconds_count", **mine) == 3
    assert 0 < total(samples, "ml_posting_latency_seconds_sum", **mine) < 3 * 120
    [freshness] = [s for s in samples if s.name == "ml_sync_freshness_seconds"
                   and s.labels.get("connection") == conn.id]
    assert 90 <= freshness.value < 600
    if getattr(http_plumbing, "REQUEST_OBSERVER", None) is not None:
        assert total(samples, "ml_external_requests_total", system="acumatica", **mine) >= 3


async def test_audit_of_an_unknown_order_says_so(quiet_stack):
    conn = await quiet_stack.add_connection(unique_id(), register_webhooks=False)
    with pytest.raises(audit.OrderNotFound, match="no order numbered '999999'"):
        await audit.audit(quiet_stack.client, quiet_stack.store, conn.id, "999999")

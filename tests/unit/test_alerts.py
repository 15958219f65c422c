"""The alert rules and the Grafana dashboard shipped in deploy/: they parse, every rule says
how bad it is and what happened, and every metric (and grouping label) they name exists on a
real worker /metrics endpoint — scraped over HTTP from the Prometheus runtime the worker uses
(starter/metrics.py), fed by the business figures' own code and by a worker running on a dev
server. A renamed metric fails here, not silently on the merchant's dashboard."""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from ruamel.yaml import YAML
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.interceptors import BusinessMetrics
from activities.poll import POLLED
from activities.webhooks import STATE as WEBHOOK_STATE
from sandbox.server import free_port
from connections import error_history
from connections.config import Connection
from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault, new_key
from connections.reconciliations import save_reconciliation
from starter.metrics import (metrics_runtime, parse_exposition, record_error_history,
                             record_freshness, record_reconciliation)
from starter.stack import temporal_binary

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ml-connector.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
COMPOSE = ROOT / "docker-compose.yml"

SEVERITIES = {"critical", "warning"}
# Series Prometheus makes itself for each scrape target: never on an endpoint.
SYNTHETIC_METRICS = {"up"}
SYNTHETIC_LABELS = {"le", "instance", "job"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)")


def load_yaml(path: Path):
    return YAML(typ="safe").load(path.read_text())


def promql_names(expr: str) -> set[str]:
    """The metric names an expression reads (functions, keywords, labels, ranges and
    Grafana variables left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = GROUPING.sub("", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", expr):
        if not m.group(2) and m.group(1).lower() not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def promql_labels(expr: str) -> set[str]:
    """Labels an expression groups, joins or matches on."""
    labels = {label.strip() for _, group in GROUPING.findall(expr)
              for label in group.split(",") if label.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def rules() -> list[dict]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets(dash: dict) -> list[dict]:
    return [t for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def used_names_and_labels() -> tuple[dict[str, set[str]], set[str]]:
    """Each metric name with where it is used; every label used."""
    where: dict[str, set[str]] = {}
    labels: set[str] = set()
    exprs = [(f"rule {r['alert']}", r["expr"]) for r in rules()]
    dash = dashboard()
    exprs += [(f"panel target {t['refId']} {t['expr'][:40]}", t["expr"])
              for t in dashboard_targets(dash)]
    for origin, expr in exprs:
        for name in promql_names(expr):
            where.setdefault(name, set()).add(origin)
        labels |= promql_labels(expr)
    for var in dash["templating"]["list"]:
        for name, label in LABEL_VALUES.findall(var["query"]["query"]):
            where.setdefault(name, set()).add(f"variable {var['name']}")
            labels.add(label)
    return where, labels


# --- the files themselves ----------------------------------------------------------------------

def test_every_rule_is_complete():
    seen = set()
    for rule in rules():
        name = rule.get("alert")
        assert name and name not in seen, f"alert names must be unique: {name!r}"
        seen.add(name)
        assert rule.get("expr", "").strip(), name
        assert re.fullmatch(r"\d+[smhdwy]", str(rule.get("for", ""))), f"{name}: for"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        assert rule.get("annotations", {}).get("summary", "").strip(), f"{name}: summary"
        expr = rule["expr"]
        for opening, closing in ("()", "[]", "{}"):
            assert expr.count(opening) == expr.count(closing), f"{name}: unbalanced {opening}"
    # The operator's worries, each with a rule.
    watched = {name for r in rules() for name in promql_names(r["expr"])}
    assert {"ml_orders_parked_total", "ml_orders_failed_total", "ml_erp_activity_attempts_total",
            "ml_sync_freshness_seconds", "ml_polling_mode"} <= watched


def test_prometheus_scrapes_the_compose_workers_and_loads_the_rules():
    config = load_yaml(PROMETHEUS)
    assert [Path(f).name for f in config["rule_files"]] == [ALERTS.name]
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "ml-connector-worker"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    services = load_yaml(COMPOSE)["services"]
    workers = {name for name, s in services.items() if s.get("command") == ["worker"]}
    assert {t.partition(":")[0] for t in targets} == workers
    # the `up` series the worker-down rule reads carries this job name
    assert any('job="ml-connector-worker"' in r["expr"] for r in rules())


def test_dashboard_parses_and_every_panel_queries_the_provisioned_datasource():
    dash = dashboard()
    [source] = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    [provider] = load_yaml(PROVISIONING / "dashboards" / "ml-connector.yml")["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    assert dash["uid"] and dash["title"]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == source["uid"]
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == source["uid"]


def test_names_are_read_from_expressions_not_from_functions_or_labels():
    expr = ('histogram_quantile(0.95, sum by (le, connection) (rate(ml_x_bucket{connection=~"$c"}'
            '[$__rate_interval]))) > 4 * 3600 and on (connection) max(up{job="w"}) unless ml_y')
    assert promql_names(expr) == {"ml_x_bucket", "up", "ml_y"}
    assert promql_labels(expr) == {"le", "connection", "job"}


# --- against a real /metrics endpoint -----------------------------------------------------------

@activity.defn(name="alerts_flaky")
async def flaky(value: str) -> str:
    if activity.info().attempt == 1:
        raise RuntimeError("the first attempt fails, as an ERP outage would")
    return value


@workflow.defn(name="AlertsOneActivity")
class OneActivity:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            flaky, "ok", start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))


@workflow.defn(name="AlertsBrokenTask")
class BrokenTask:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a workflow task that fails, as non-determinism would")


def store_with(connection_id: str) -> SimpleNamespace:
    """What the store-kept gauges read: the poll watermark, the hook state, the health."""
    marks = {POLLED: (datetime.now(timezone.utc) - timedelta(minutes=3)).isoformat(),
             WEBHOOK_STATE: json.dumps({"polling_mode": True, "reason": "hook disabled"})}
    return SimpleNamespace(list_connections=lambda: [SimpleNamespace(id=connection_id)],
                           get_watermark=lambda cid, name: marks.get(name),
                           connection_health=lambda cid: {"state": "needs_consent"})


def store_with_history(connection_id: str) -> ConnectionStore:
    """A real store (in memory) with an order parked, one retrying and one failed episode
    resolved by a replay: what the error history's gauges read."""
    store = ConnectionStore(Database(":memory:"), Vault(Keyring([new_key("alerts")])))
    store.save_connection(Connection(id=connection_id, store_system="woocommerce",
                                     store={"base_url": "https://s/"}, erp_system="acumatica",
                                     erp={"instance_url": "https://e"}))
    store.ledger_mark(connection_id, "order", "1", "parked", error="unknown SKU")
    error_history.order_state_changed(store, connection_id, "1", "parked", message="unknown SKU")
    error_history.step_failed(store, connection_id, "2", step="post_invoice", message="503")
    error_history.order_state_changed(store, connection_id, "3", "failed", message="422")
    error_history.record_action(store, connection_id, "replay", order_ids=["3"], actor="ops")
    error_history.order_state_changed(store, connection_id, "3", "posted")
    save_reconciliation(store, connection_id, {"ok": False},
                        [{"kind": "missing", "reference": "WC-4", "amount": "10.00"}])
    return store


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(url, timeout=10)).text


@pytest.fixture(scope="module")
async def endpoint_samples():
    """Every sample of a worker runtime's /metrics once each kind of figure was recorded."""
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    url = f"http://{address}/metrics"
    # The business figures, through the class the activity interceptor records them with.
    figures = BusinessMetrics(runtime.metric_meter, "alerts")
    figures.document_posted("invoice", created=True)
    figures.document_posted("invoice", created=False)
    figures.customer(created=True)
    figures.order_state("parked")
    figures.order_state("failed")
    figures.rate_limited("acumatica")
    figures.erp_attempt("completed")
    figures.erp_attempt("failed")
    figures.external_requests({"acumatica": 2, "woocommerce": 1})
    figures.posting_latency(42.0)
    record_freshness(runtime.metric_meter, store_with("alerts"))  # freshness, polling mode
    history = store_with_history("alerts")
    record_error_history(runtime.metric_meter, history)  # the error history
    record_reconciliation(runtime.metric_meter, history)  # the last reconciliation's drift
    # The SDK's own, from a worker whose client carries the runtime (as worker.py's does).
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), ui=False, runtime=runtime,
        dev_server_log_level="error")
    async with env:
        queue = f"alerts-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=queue, workflows=[OneActivity, BrokenTask],
                          activities=[flaky], workflow_runner=UnsandboxedWorkflowRunner()):
            assert await env.client.execute_workflow(
                OneActivity.run, id=f"{queue}-ok", task_queue=queue) == "ok"
            broken = await env.client.start_workflow(BrokenTask.run, id=f"{queue}-broken",
                                                     task_queue=queue)
            for _ in range(100):
                if "temporal_workflow_task_execution_failed_total" in await scrape(url):
                    break
                await asyncio.sleep(0.1)
            await broken.terminate("seen")
        yield parse_exposition(await scrape(url))


def test_every_metric_in_the_rules_and_the_dashboard_is_exported(endpoint_samples):
    exported = {s.name for s in endpoint_samples}
    where, _ = used_names_and_labels()
    missing = {name: sorted(origins) for name, origins in where.items()
               if name not in exported | SYNTHETIC_METRICS}
    assert not missing, f"not on /metrics: {missing}\nexported: {sorted(exported)}"
    # the endpoint really carried what the rules watch (not an empty scrape)
    assert {"ml_orders_parked_total", "ml_polling_mode",
            "temporal_workflow_task_execution_failed_total"} <= exported


def test_every_label_grouped_or_matched_on_is_exported(endpoint_samples):
    exported = {label for s in endpoint_samples for label in s.labels}
    _, labels = used_names_and_labels()
    assert labels - exported - SYNTHETIC_LABELS == set(), sorted(exported)


def test_the_store_kept_gauges_carry_the_connection(endpoint_samples):
    [polling] = [s for s in endpoint_samples if s.name == "ml_polling_mode"
                 and s.labels.get("connection") == "alerts"]
    assert polling.value == 1
    [consent] = [s for s in endpoint_samples if s.name == "ml_connection_needs_consent"
                 and s.labels.get("connection") == "alerts"]
    assert consent.value == 1
    [fresh] = [s for s in endpoint_samples if s.name == "ml_sync_freshness_seconds"
               and s.labels.get("connection") == "alerts"]
    assert 170 <= fresh.value < 600


def test_the_error_history_gauges_carry_connection_kind_and_resolution(endpoint_samples):
    def value(name: str, **labels: str) -> float:
        [sample] = [s for s in endpoint_samples if s.name == name
                    and all(s.labels.get(k) == v for k, v in labels.items())]
        return sample.value

    assert value("ml_error_episodes_open", connection="alerts", kind="parked") == 1
    assert value("ml_error_episodes_open", connection="alerts", kind="retrying") == 1
    assert value("ml_error_episodes_open", connection="alerts", kind="failed") == 0
    assert value("ml_error_episode_oldest_open_seconds", connection="alerts", kind="failed") == 0
    assert value("ml_error_episodes_resolved", connection="alerts", kind="failed",
                 resolution="replay") == 1
    assert value("ml_parked_orders", connection="alerts") == 1
    assert value("ml_failed_orders", connection="alerts") == 0

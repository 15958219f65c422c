"""The last reconciliation of a connection: kept in the store (one row, replaced by the next
run), exported as ``ml_reconcile_differences``, scheduled nightly, served by the worker."""
from datetime import datetime, timezone
from decimal import Decimal as D

import httpx

from activities.reconcile import ReconcileActivities, differences_as_rows, nightly_window
from connections.config import Connection
from connections.reconciliations import last_reconciliation, save_reconciliation
from connections.store import ConnectionStore, Database
from connections.vault import Keyring, Vault, new_key
from connectors.reconciliation import Difference, ReconciliationReport
from sandbox.server import free_port
from starter.metrics import metrics_runtime, parse_exposition, record_reconciliation, total
from starter.schedules import definitions
from starter.workers import ACTIVITY_GROUPS, WORKFLOWS
from workflows.reconcile import Reconcile

SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc)


def store_with(*ids: str) -> ConnectionStore:
    store = ConnectionStore(Database(":memory:"), Vault(Keyring([new_key("rec")])))
    for cid in ids:
        store.save_connection(Connection(id=cid, store_system="woocommerce",
                                         store={"base_url": "https://s/"}, erp_system="acumatica",
                                         erp={"instance_url": "https://e"}))
    return store


def report(*diffs: Difference) -> ReconciliationReport:
    return ReconciliationReport(since=SINCE, until=UNTIL, prefix="WC-", paid_orders=3,
                                differences=list(diffs))


MISSING = Difference(order="7", external_ref="WC-7", kind="missing", document="invoice",
                     currency="USD", store_amount=D("12.5000"))


def test_the_last_run_is_kept_and_replaced():
    store = store_with("shop")
    assert last_reconciliation(store, "shop") is None
    bad = report(MISSING)
    save_reconciliation(store, "shop", bad.summary(), differences_as_rows(bad))
    run = last_reconciliation(store, "shop")
    assert run["ok"] is False and run["summary"]["missing"] == 1
    [row] = run["differences"]
    assert (row["external_ref"], row["issue"], row["store_amount"], row["difference"]) == (
        "WC-7", "missing", "12.50", "-12.50")
    save_reconciliation(store, "shop", report().summary(), [])
    assert last_reconciliation(store, "shop")["ok"] is True


async def test_the_gauge_shows_each_connection_s_last_differences():
    store = store_with("shop", "never")
    bad = report(MISSING, MISSING.model_copy(update={"external_ref": "WC-7-P7", "document": "receipt"}))
    save_reconciliation(store, "shop", bad.summary(), differences_as_rows(bad))
    address = f"127.0.0.1:{free_port()}"
    runtime = metrics_runtime(address)
    record_reconciliation(runtime.metric_meter, store)
    async with httpx.AsyncClient() as http:
        samples = parse_exposition((await http.get(f"http://{address}/metrics", timeout=10)).text)
    assert total(samples, "ml_reconcile_differences", connection="shop") == 2
    assert not [s for s in samples if s.name == "ml_reconcile_differences"
                and s.labels.get("connection") == "never"]  # never run: no reassuring 0


def test_nightly_schedule_and_worker_registration():
    conn = store_with("shop").get_connection("shop")
    schedule = definitions(conn, "tq")["reconcile/shop"]
    assert schedule.action.workflow == "Reconcile" and schedule.spec.cron_expressions
    assert Reconcile in WORKFLOWS
    assert ReconcileActivities in ACTIVITY_GROUPS
    since, until = nightly_window(datetime(2026, 11, 5, 3, 41, tzinfo=timezone.utc))
    assert (since, until.day) == (datetime(2026, 11, 2, tzinfo=timezone.utc), 5)

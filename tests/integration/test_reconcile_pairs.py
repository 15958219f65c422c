"""``ml-connector reconcile`` on every store × ERP pair, as a merchant runs it: a subprocess
against the connection store, reading both systems through the connectors over real sockets.
The ERP is seeded with a duplicate (a payment booked twice under one external reference, by
the ERP's own API) and a missing order (never handed over), and a refund is made after the
books were written; every one must be reported, in the CSV too, with exit code 1."""
from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import sys
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from activities.messages import OrderEvent
from connections.ledger import LedgerKind
from connections.reconciliations import last_reconciliation
from connectors.documents import build_receipt
from starter.dispatch import signal_order
from starter.sandboxes import ERPS, STORES
from tests.conftest import HISTORY_KEYS
from tests.integration.conftest import eventually

PAIRS = [(s, e) for s in STORES for e in ERPS]
IDS = [f"{s}-{e}" for s, e in PAIRS]
CLI = Path(sys.executable).parent / "ml-connector"


async def run_cli(stack, temporal, home: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "ML_CONNECTOR_HOME": str(home), "ML_CONNECTOR_DB": stack.store.db.url,
           "ML_CONNECTOR_KEY_FILE": str(HISTORY_KEYS),
           "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host}
    env.pop("ML_CONNECTOR_MASTER_KEYS", None)  # the key file above is the stack's keyring
    command = [str(CLI)] if CLI.exists() else [shutil.which("ml-connector") or "ml-connector"]
    proc = await asyncio.create_subprocess_exec(
        *command, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode, out.decode(), err.decode()


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"))


async def erp_refs(stack) -> list[str]:
    return [d.external_ref for d in await stack.erp_documents()]


async def handed_over(stack, conn, order_id: str, *refs: str) -> None:
    """Hand an order to its workflow and wait until ``refs`` are all in the ERP."""
    await signal_order(stack.client, conn.id, order_id, OrderEvent(kind="updated"),
                       task_queue=stack.task_queue)

    async def booked():
        have = await erp_refs(stack)
        return all(r in have for r in refs) or None

    await eventually(booked, timeout=90)


async def book_payment_again(stack, conn, order_id: str) -> None:
    """A second receipt for an order's payment under the same external reference, posted by
    the ERP's API as a second integration (or a hand entry) would. Oracle numbers receipts
    uniquely per receipt method, so its second one is under the other method; Acumatica's is
    left balanced (there is nothing open on the invoice for it to be released against)."""
    prefix = conn.mappings.document_prefix
    order = await stack.runtime.storefront(conn).get_order(order_id)
    second = conn.model_copy(deep=True)
    if conn.erp_system == "acumatica":
        second.erp["release_documents"] = False
    erp = stack.runtime.erp(second)
    invoice = await erp.find_document("invoice", f"{prefix}{order_id}")
    [customer] = [r for r in stack.store.ledger_rows(conn.id, kind=LedgerKind.CUSTOMER)]
    receipt = build_receipt(order, order.payments[0], customer.erp_ref["number"], invoice,
                            conn.mappings)
    if conn.erp_system == "oracle_fusion":
        receipt = receipt.model_copy(update={"payment_method": "Bank Transfer"})
    await erp.create_receipt(receipt)


@pytest.mark.parametrize("store_system,erp_system", PAIRS, ids=IDS)
async def test_reconcile_cli_finds_duplicate_missing_and_unbooked_refund(
        store_system, erp_system, stack_factory, temporal, tmp_path):
    stack = await stack_factory(store_system=store_system, erp_system=erp_system)
    conn = await stack.add_connection(f"r-{uuid.uuid4().hex[:8]}", register_webhooks=False)
    sb, prefix = stack.shop_sandbox, conn.mappings.document_prefix
    async with stack.store_client() as admin:
        good = await sb.place_order(admin, quantities=(2, 1))
        refunded_id = await sb.refund(admin, good.id, amount=cents(good.total / 4))
        doubled = await sb.place_order(admin, quantities=(1, 1))
        lost = await sb.place_order(admin, quantities=(3,))  # never handed over: missing

    store = stack.runtime.storefront(conn)
    good_order, doubled_order, lost_order = [await store.get_order(str(o.id))
                                             for o in (good, doubled, lost)]
    pay = {o.store_id: o.payments[0].store_id for o in (good_order, doubled_order, lost_order)}
    await handed_over(stack, conn, str(good.id), f"{prefix}{good.id}",
                      f"{prefix}{good.id}-R{refunded_id}", f"{prefix}{good.id}-P{pay[str(good.id)]}")
    receipt_ref = f"{prefix}{doubled.id}-P{pay[str(doubled.id)]}"
    await handed_over(stack, conn, str(doubled.id), f"{prefix}{doubled.id}", receipt_ref)
    await book_payment_again(stack, conn, str(doubled.id))
    assert (await erp_refs(stack)).count(receipt_ref) == 2
    async with stack.store_client() as admin:  # after the books were written, not handed over
        late_amount = cents(doubled.total / 2)
        late_refund = await sb.refund(admin, doubled.id, amount=late_amount)

    since = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    report_csv = tmp_path / "differences.csv"
    code, out, err = await run_cli(stack, temporal, tmp_path / "home", "reconcile", conn.id,
                                   "--since", since, "--csv", str(report_csv), "--json")
    assert code == 1, (out, err)
    assert "Traceback" not in err, err
    body = json.loads(out)
    found = {(d["issue"], d["external_ref"]) for d in body["differences"]}
    assert found == {
        ("missing", f"{prefix}{lost.id}"),
        ("missing", f"{prefix}{lost.id}-P{pay[str(lost.id)]}"),
        ("duplicate", receipt_ref),
        ("refund_without_credit_memo", f"{prefix}{doubled.id}-R{late_refund}"),
    }, body["differences"]
    assert body["paid_orders"] == 3 and body["ok"] is False
    cur = good_order.currency
    store_total = good_order.total + doubled_order.total + lost_order.total
    assert {c: Decimal(v) for c, v in body["totals"]["store_orders"].items()} == {cur: store_total}
    assert {c: Decimal(v) for c, v in body["totals"]["erp_invoices"].items()} == {
        cur: good_order.total + doubled_order.total}

    with report_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_ref = {(r["issue"], r["external_ref"]): r for r in rows}
    assert set(by_ref) == found
    missing = by_ref[("missing", f"{prefix}{lost.id}")]
    assert (missing["order_number"], missing["kind"], Decimal(missing["store_amount"]),
            missing["erp_amount"]) == (str(lost.id), "invoice", lost_order.total, "")
    dup = by_ref[("duplicate", receipt_ref)]
    assert dup["kind"] == "receipt" and len(dup["erp_number"].split()) == 2
    assert Decimal(dup["erp_amount"]) == 2 * doubled_order.payments[0].amount
    late = by_ref[("refund_without_credit_memo", f"{prefix}{doubled.id}-R{late_refund}")]
    assert late["kind"] == "credit_memo" and Decimal(late["store_amount"]) == late_amount

    kept = last_reconciliation(stack.store, conn.id)
    assert kept is not None and kept["ok"] is False and len(kept["differences"]) == 4
    _, shown, err = await run_cli(stack, temporal, tmp_path / "home", "status", conn.id)
    assert "4 difference(s)" in shown and f"{receipt_ref} booked 2 times" in shown, (shown, err)

    # The same books, once the lost order is handed over and the refund booked: only the
    # duplicate remains, in the text output as well.
    await handed_over(stack, conn, str(lost.id), f"{prefix}{lost.id}")
    await handed_over(stack, conn, str(doubled.id), f"{prefix}{doubled.id}-R{late_refund}")
    code, out, err = await run_cli(stack, temporal, tmp_path / "home", "reconcile", conn.id,
                                   "--since", since)
    assert code == 1 and f"{receipt_ref} booked 2 times" in out, (out, err)
    assert "1 difference(s)" in out and "NOT reconciled" in out


async def test_nightly_schedule_runs_the_reconcile_workflow_and_keeps_the_run(stack):
    """The ``reconcile/{id}`` schedule starts Reconcile on the worker; its run lands in the
    connection store, where status, metrics and the console read it."""
    from starter.schedules import apply_schedules, schedule_id
    from tests.integration.helpers import settled

    conn = await stack.add_connection(f"n-{uuid.uuid4().hex[:8]}")
    async with stack.store_client() as admin:
        await stack.shop_sandbox.place_order(admin)
    await settled(stack, conn)
    assert last_reconciliation(stack.store, conn.id) is None
    await apply_schedules(stack.client, conn, stack.task_queue)
    try:
        await stack.client.get_schedule_handle(schedule_id("reconcile", conn.id)).trigger()

        async def kept():
            return last_reconciliation(stack.store, conn.id)

        run = await eventually(kept, timeout=60)
        assert run["ok"] is True and run["differences"] == [], run
        assert run["summary"]["paid_orders"] == 1
    finally:
        async for entry in await stack.client.list_schedules():
            if entry.id.endswith(f"/{conn.id}"):
                await stack.client.get_schedule_handle(entry.id).delete()


async def test_bad_input_is_one_line_and_exit_2(stack, temporal, tmp_path):
    conn = await stack.add_connection(f"b-{uuid.uuid4().hex[:8]}", register_webhooks=False)
    home = tmp_path / "home"
    for args, says in [((conn.id, "--since", "yesterday"), "--since must be a date"),
                       ((conn.id, "--since", "2026-11-02", "--until", "2026-11-01"),
                        "must be after --since"),
                       (("nope", "--since", "2026-11-01"), "no connection named 'nope'"),
                       ((conn.id, "--since", "2026-11-01", "--csv", str(tmp_path / "no" / "x.csv")),
                        "cannot write")]:
        code, out, err = await run_cli(stack, temporal, home, "reconcile", *args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (args, out, err)
        assert "Traceback" not in err


async def test_an_unreachable_erp_is_one_line_and_exit_2(stack, temporal, tmp_path):
    conn = await stack.add_connection(f"u-{uuid.uuid4().hex[:8]}", register_webhooks=False)
    conn.erp["instance_url"] = "https://127.0.0.1:9"  # nothing listens there
    stack.store.save_connection(conn)
    code, out, err = await run_cli(stack, temporal, tmp_path / "home", "reconcile", conn.id,
                                   "--since", "2026-11-01")
    assert code == 2 and f"cannot reconcile {conn.id}" in err, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert last_reconciliation(stack.store, conn.id) is None  # nothing half-read is kept


async def test_acumatica_sales_orders_are_the_orders_invoices(stack, temporal, tmp_path):
    """With ``document_type: sales_order`` an order's invoice is a SalesOrder (refunds stay
    AR credit memos): read through the same ``ExternalRef``, the books agree (exit 0)."""
    from tests.integration.helpers import settled

    conn = await stack.add_connection(f"so-{uuid.uuid4().hex[:8]}",
                                      erp={"document_type": "sales_order"})
    async with stack.store_client() as admin:
        placed = await stack.shop_sandbox.place_order(admin)
        await stack.shop_sandbox.refund(admin, placed.id, amount=Decimal("1.00"))
    await settled(stack, conn)
    since = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    code, out, err = await run_cli(stack, temporal, tmp_path / "home", "reconcile", conn.id,
                                   "--since", since, "--json")
    assert code == 0, (out, err)
    body = json.loads(out)
    assert (body["paid_orders"], body["counts"]["invoices"], body["counts"]["credit_memos"]) == (1, 1, 1)

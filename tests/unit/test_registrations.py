"""The workers register what the workflows call: every step OrderSync can send to a
connection's ERP quota queue is registered on that queue's worker, every activity a workflow
names is registered on the main queue, and the type names on the wire stay the ones recorded
histories carry."""
from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from temporalio import workflow

from activities.orders import ERP_STEP_NAMES, ERP_STEPS, OrderActivities, activity_name
from activities.runtime import Runtime
from starter.dispatch import ORDER_EVENT_SIGNAL, workflow_type
from starter.workers import ACTIVITY_GROUPS, WORKFLOWS, erp_activities, worker_activities
from workflows.order import OrderSync

WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"
ACTIVITY_CALLS = ("execute_activity_method", "execute_local_activity_method")
GROUPS = {group.__name__: group for group in ACTIVITY_GROUPS}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == name]


def _method(ref: ast.expr):
    """``Group.method`` in a workflow's source, as the function it names."""
    assert isinstance(ref, ast.Attribute) and isinstance(ref.value, ast.Name), ast.unparse(ref)
    return getattr(GROUPS[ref.value.id], ref.attr)


def _names(fns) -> set[str]:
    return {activity_name(fn) for fn in fns}


def _parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), str(path))


def test_every_erp_step_of_order_sync_is_registered_on_the_quota_queue():
    tree = _parsed(WORKFLOWS_DIR / "order.py")
    targets = [_method(call.args[0]) for call in _calls(tree, "_erp_step")]
    assert targets, "OrderSync sends no step through _erp_step?"
    assert all(fn in ERP_STEPS for fn in targets)
    assert _names(targets) <= _names(erp_activities(Runtime(None))) == ERP_STEP_NAMES


def test_only_erp_steps_may_go_to_another_task_queue():
    """A step sent to a quota queue must be registered there: _erp_step is the one call
    with a task_queue, and it refuses anything but ERP_STEPS."""
    for path in sorted(WORKFLOWS_DIR.glob("*.py")):
        tree = _parsed(path)
        for name in ACTIVITY_CALLS + ("execute_activity", "start_activity_method"):
            for call in _calls(tree, name):
                queued = any(k.arg == "task_queue" for k in call.keywords)
                assert not queued or (path.name, ast.unparse(call.args[0])) == ("order.py", "step")
    with pytest.raises(TypeError, match="ERP_STEPS"):
        asyncio.run(OrderSync()._erp_step(OrderActivities.fetch_order, None))


def test_every_activity_a_workflow_names_is_registered_on_the_main_queue():
    registered = _names(worker_activities(Runtime(None)))
    for path in sorted(WORKFLOWS_DIR.glob("*.py")):
        tree = _parsed(path)
        for call in (c for name in ACTIVITY_CALLS for c in _calls(tree, name)):
            if ast.unparse(call.args[0]) == "step":  # _erp_step's argument: ERP_STEPS, above
                continue
            assert activity_name(_method(call.args[0])) in registered, (path.name, ast.unparse(call))
        assert not _calls(tree, "execute_activity") and not _calls(tree, "execute_local_activity"), \
            f"{path.name} names an activity by a string"
    assert ERP_STEP_NAMES <= registered


def test_the_names_on_the_wire_are_the_recorded_ones():
    """Recorded histories and running workflows know these names: renaming a method must
    not rename what the server sees."""
    assert {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS} == {
        "OrderSync", "OrderPoll", "Backfill", "CatalogPush", "WebhookHealth", "ShipmentSync",
        "CustomerSync", "StoreCustomerChanged", "Reconcile"}
    assert workflow_type(OrderSync.run) == "OrderSync" and ORDER_EVENT_SIGNAL == "event"
    assert _names(worker_activities(Runtime(None))) == {
        "fetch_order", "load_order_state", "upsert_customer", "post_invoice", "post_credit_memo", "post_receipt",
        "post_refund_payment", "post_adjustment", "record_order_state", "poll_orders", "push_catalog", "check_webhooks",
        "set_poll_cadence", "sync_shipments", "sync_store_customer", "sync_customers",
        "reconcile_connection"}
    assert ERP_STEP_NAMES == {"upsert_customer", "post_invoice", "post_credit_memo",
                              "post_receipt", "post_refund_payment", "post_adjustment"}

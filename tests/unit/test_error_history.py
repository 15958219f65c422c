"""The error history on SQLite and PostgreSQL: episodes open and close with an order's state
changes and its steps' attempts, and each resolution names how (an operator's action after
the episode opened, else what the system did)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connections import error_history as eh
from connections.store import ConnectionStore


def test_a_parked_order_fixed_by_a_mapping_is_one_resolved_episode(store: ConnectionStore):
    eh.order_state_changed(store, "shop", "101", "parked", order_number="1001",
                           message="Resolution: map SKU X to an Acumatica InventoryID")
    eh.order_state_changed(store, "shop", "101", "parked", order_number="1001",
                           message="Resolution: map SKU X to an Acumatica InventoryID")
    [episode] = eh.episodes(store, "shop", open=True)
    assert (episode.kind, episode.order_number, episode.is_open) == ("parked", "1001", True)
    assert "SKU X" in episode.message

    eh.record_action(store, "shop", eh.Resolution.MAPPING, actor="ops@example",
                     detail="--sku X=ITEM-9")
    eh.order_state_changed(store, "shop", "101", "posted", message="INV-1")
    assert eh.episodes(store, "shop", open=True) == []
    [done] = eh.episodes(store, "shop", open=False)
    assert (done.resolution, done.resolved_by, done.resolution_detail, done.outcome) == (
        "mapping", "ops@example", "--sku X=ITEM-9", "posted")
    assert done.resolved_at >= done.opened_at and done.duration_seconds() >= 0


def test_an_action_before_the_episode_opened_does_not_resolve_it(store: ConnectionStore):
    eh.record_action(store, "shop", "replay", order_ids=["7"], actor="ann")
    eh.order_state_changed(store, "shop", "7", "failed", message="ERP said no")
    eh.order_state_changed(store, "shop", "7", "posted")
    [done] = eh.episodes(store, "shop")
    assert (done.kind, done.resolution, done.resolved_by) == ("failed", "automatic retry", None)


def test_the_newest_action_on_the_order_or_its_connection_wins(store: ConnectionStore):
    eh.order_state_changed(store, "shop", "8", "failed", message="boom")
    eh.record_action(store, "other", "mapping", actor="x")  # another connection: not it
    eh.record_action(store, "shop", "mapping", actor="bob")  # the whole connection
    eh.record_action(store, "shop", "replay", order_ids=["8", "9"], actor="carol")
    eh.record_action(store, "shop", "replay", order_ids=["9"], actor="dave")  # another order
    eh.order_state_changed(store, "shop", "8", "posted")
    [done] = eh.episodes(store, "shop", order_id="8")
    assert (done.resolution, done.resolved_by) == ("replay", "carol")
    assert [a.actor for a in eh.actions(store, "shop")] == ["bob", "carol", "carol", "dave"]
    assert eh.actions(store, "shop")[1].order_id == "8"


def test_retrying_opens_on_a_failed_attempt_and_closes_on_success(store: ConnectionStore):
    assert not eh.has_open_retry(store, "shop", "5")
    eh.step_failed(store, "shop", "5", step="post_invoice", message="503 Service Unavailable",
                   order_number="1005")
    eh.step_failed(store, "shop", "5", step="post_invoice", message="timed out")
    assert eh.has_open_retry(store, "shop", "5")
    [episode] = eh.episodes(store, open=True, kind="retrying")
    assert (episode.attempts, episode.message, episode.order_number, episode.step) == (
        2, "timed out", "1005", "post_invoice")
    eh.step_succeeded(store, "shop", "5")
    [done] = eh.episodes(store, "shop")
    assert (done.resolution, done.outcome) == ("automatic retry", "completed")
    assert not eh.has_open_retry(store, "shop", "5")
    eh.step_succeeded(store, "shop", "5")  # nothing open: nothing changes
    assert len(eh.episodes(store)) == 1


def test_a_retry_that_ends_parked_is_escalated_and_a_new_problem_is_a_new_episode(
        store: ConnectionStore):
    eh.step_failed(store, "shop", "6", step="post_invoice", message="502")
    eh.order_state_changed(store, "shop", "6", "parked", message="unknown SKU A")
    retry, parked = eh.episodes(store, "shop")
    assert (retry.kind, retry.resolution, retry.outcome) == ("retrying", "escalated", "parked")
    assert parked.is_open
    eh.record_action(store, "shop", "mapping", actor="eve", detail="--sku A=1")
    eh.order_state_changed(store, "shop", "6", "parked", message="unknown tax rate B")
    first, second = eh.episodes(store, "shop", kind="parked")
    assert (first.resolution, first.resolved_by, first.outcome) == ("mapping", "eve", "parked")
    assert second.is_open and second.message == "unknown tax rate B"
    eh.order_state_changed(store, "shop", "6", "not_billable", message="store status cancelled")
    assert eh.episodes(store, "shop", kind="parked")[-1].resolution == "store"


def test_manual_resolution_and_filters(store: ConnectionStore):
    eh.order_state_changed(store, "a", "1", "failed", message="x")
    eh.order_state_changed(store, "b", "2", "parked", message="y")
    [failed] = eh.episodes(store, "a", open=True)
    closed = eh.resolve_manually(store, failed.id, actor="frank", detail="booked by hand")
    assert (closed.resolution, closed.resolved_by, closed.outcome) == (
        "manual", "frank", "resolved manually")
    assert [e.connection_id for e in eh.episodes(store, open=True)] == ["b"]
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert [e.id for e in eh.episodes(store, open=False, since=past)] == [failed.id]
    assert eh.episodes(store, open=False, since=future) == []
    assert len(eh.episodes(store, since=past.date().isoformat())) == 2
    summary = eh.open_summary(store)
    assert summary[("b", "parked")].count == 1 and ("a", "failed") not in summary
    assert eh.resolved_counts(store) == {("a", "failed", "manual"): 1}
    with pytest.raises(ValueError):
        eh.record_action(store, "a", " ")


def test_other_states_leave_the_history_alone(store: ConnectionStore):
    eh.order_state_changed(store, "shop", "3", "received")
    eh.order_state_changed(store, "shop", "3", "posted")
    assert eh.episodes(store) == []


def test_the_interceptor_finds_the_order_in_every_order_step_input():
    """Retrying episodes are keyed by the order each step's input names (the interceptor
    reads it): a renamed field would silently stop the history."""
    from activities.interceptors import EPISODE_STEPS, _order_of
    from activities.messages import CustomerInput, OrderRef, OrderSnapshot, PostInvoiceInput
    from connectors.model import Customer

    snapshot = OrderSnapshot(order_id="41", number="1041", digest="d")
    assert _order_of(PostInvoiceInput(connection_id="c", snapshot=snapshot,
                                      customer_key="K")) == ("41", "1041")
    assert _order_of(CustomerInput(connection_id="c", order_id="42", order_number="1042",
                                   customer=Customer(email="x@example.com"))) == ("42", "1042")
    assert _order_of(OrderRef(connection_id="c", order_id="43")) == ("43", "")
    assert {"fetch_order", "upsert_customer", "post_invoice", "post_receipt"} <= EPISODE_STEPS

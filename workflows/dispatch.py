"""Handing an order to its OrderSync workflow: signal-with-start, the one way the receiver,
the poll and the CLI all do it. Duplicate deliveries land in the same workflow."""
from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from activities.messages import OrderEvent, OrderSyncInput
from workflows.order import order_workflow_id
from workflows.search_attributes import SA_CONNECTION


async def signal_order(client: Client, connection_id: str, order_id: str, event: OrderEvent, *,
                       task_queue: str, idle_timeout_seconds: float | None = None) -> str:
    inp = OrderSyncInput(connection_id=connection_id, order_id=order_id)
    if idle_timeout_seconds is not None:
        inp.idle_timeout_seconds = idle_timeout_seconds
    wf_id = order_workflow_id(connection_id, order_id)
    await client.start_workflow(
        "OrderSync", inp, id=wf_id, task_queue=task_queue, start_signal="event",
        start_signal_args=[event], id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CONNECTION, connection_id)]))
    return wf_id

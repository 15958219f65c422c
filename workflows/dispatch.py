"""Handing work to its workflow: an order to its OrderSync (signal-with-start, the one way the
receiver, the poll and the CLI all do it; duplicate deliveries land in the same workflow), a
store customer change to StoreCustomerChanged, an ERP change notification to its sync."""
from __future__ import annotations

from temporalio.client import Client
from temporalio.common import (SearchAttributePair, TypedSearchAttributes,
                               WorkflowIDConflictPolicy, WorkflowIDReusePolicy)

from activities.messages import (CatalogInput, ConnectionInput, CustomerSyncInput, OrderEvent,
                                 OrderSyncInput)
from workflows.order import order_workflow_id
from workflows.search_attributes import SA_CONNECTION


def erp_queue(task_queue: str, connection_id: str, requests_per_minute: int | None) -> str | None:
    """The task queue of a connection's ERP calls when its ERP quota is set: the server rate
    limits it for every worker on every host at once. None: the main queue."""
    return f"{task_queue}/erp/{connection_id}" if requests_per_minute else None


async def signal_order(client: Client, connection_id: str, order_id: str, event: OrderEvent, *,
                       task_queue: str, idle_timeout_seconds: float | None = None,
                       erp_requests_per_minute: int | None = None) -> str:
    """``erp_requests_per_minute``: the connection's ERP quota (Connection.erp_requests_per_minute)."""
    event = event.model_copy(update={"erp_task_queue": erp_queue(
        task_queue, connection_id, erp_requests_per_minute)})
    inp = OrderSyncInput(connection_id=connection_id, order_id=order_id)
    if idle_timeout_seconds is not None:
        inp.idle_timeout_seconds = idle_timeout_seconds
    wf_id = order_workflow_id(connection_id, order_id)
    await client.start_workflow(
        "OrderSync", inp, id=wf_id, task_queue=task_queue, start_signal="event",
        start_signal_args=[event], id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CONNECTION, connection_id)]))
    return wf_id


async def customer_changed(client: Client, connection_id: str, customer_id: str, *,
                           task_queue: str) -> str:
    """A store customer changed: sync it to the ERP. A change arriving while a sync of the
    same customer runs joins it (that run re-reads the record); the scheduled pass catches
    anything in between."""
    wf_id = f"customer/{connection_id}/{customer_id}"
    await client.start_workflow(
        "StoreCustomerChanged", CustomerSyncInput(connection_id=connection_id, customer_id=customer_id),
        id=wf_id, task_queue=task_queue, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CONNECTION, connection_id)]))
    return wf_id


# ERPs that push change notifications, and what each topic sets going.
ERP_WEBHOOK_SYSTEMS = ("exact_online",)
ERP_TOPICS = {"accounts": "CustomerSync", "items": "CatalogPush", "stockpositions": "CatalogPush"}


def erp_sync_for(conn, resource: str) -> str | None:
    """The workflow an ERP change notification of ``resource`` runs for ``conn``, if any."""
    workflow = ERP_TOPICS.get(resource.lower())
    if workflow == "CustomerSync" and not conn.customer_sync:
        return None
    return workflow


async def erp_changed(client: Client, conn, resource: str, *, task_queue: str) -> str:
    """An ERP record changed: run the connection's sync for that kind now instead of at its
    next schedule. Notifications arriving while one runs join it (it reads since its
    watermark, so it sees them)."""
    workflow = erp_sync_for(conn, resource)
    arg = (ConnectionInput(connection_id=conn.id) if workflow == "CustomerSync"
           else CatalogInput(connection_id=conn.id))
    wf_id = f"{workflow.lower()}-now/{conn.id}"
    await client.start_workflow(
        workflow, arg, id=wf_id, task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CONNECTION, conn.id)]))
    return wf_id

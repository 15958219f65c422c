"""Handing work to its workflow: an order to its OrderSync (signal-with-start, the one way the
receiver, the poll and the CLI all do it; duplicate deliveries land in the same workflow), a
store customer change to StoreCustomerChanged, an ERP change notification to its sync.

Workflows are named by typed references; the type and signal names on the wire come from
their definitions, never from a second literal."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import (SearchAttributePair, TypedSearchAttributes,
                               WorkflowIDConflictPolicy, WorkflowIDReusePolicy)

from activities.messages import (CatalogInput, ConnectionInput, CustomerSyncInput, OrderEvent,
                                 OrderSyncInput)
from workflows.catalog import CatalogPush
from workflows.customers import CustomerSync, StoreCustomerChanged
from workflows.order import OrderSync, order_workflow_id
from workflows.search_attributes import SA_CONNECTION


def workflow_type(run: Callable[..., Awaitable[Any]]) -> str:
    """The workflow type a ``@workflow.run`` method starts (as histories record it)."""
    return workflow._Definition.must_from_run_fn(run).name


def signal_name(handler: Callable[..., Any]) -> str:
    """The signal name a ``@workflow.signal`` handler receives (as histories record it)."""
    return workflow._SignalDefinition.must_name_from_fn_or_str(handler)


ORDER_EVENT_SIGNAL = signal_name(OrderSync.event)


def erp_queue(task_queue: str, connection_id: str, requests_per_minute: int | None) -> str | None:
    """The task queue of a connection's ERP calls when its ERP quota is set: the server rate
    limits it for every worker on every host at once. None: the main queue."""
    return f"{task_queue}/erp/{connection_id}" if requests_per_minute else None


def _connection_attribute(connection_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(SA_CONNECTION, connection_id)])


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
        OrderSync.run, inp, id=wf_id, task_queue=task_queue, start_signal=ORDER_EVENT_SIGNAL,
        start_signal_args=[event], id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=_connection_attribute(connection_id))
    return wf_id


async def customer_changed(client: Client, connection_id: str, customer_id: str, *,
                           task_queue: str) -> str:
    """A store customer changed: sync it to the ERP. A change arriving while a sync of the
    same customer runs joins it (that run re-reads the record); the scheduled pass catches
    anything in between."""
    wf_id = f"customer/{connection_id}/{customer_id}"
    await client.start_workflow(
        StoreCustomerChanged.run,
        CustomerSyncInput(connection_id=connection_id, customer_id=customer_id),
        id=wf_id, task_queue=task_queue, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=_connection_attribute(connection_id))
    return wf_id


# ERPs that push change notifications, and the sync each topic sets going.
ERP_WEBHOOK_SYSTEMS = ("exact_online",)
ERP_TOPICS = {"accounts": CustomerSync.run, "items": CatalogPush.run,
              "stockpositions": CatalogPush.run}


def erp_sync_for(conn, resource: str) -> Callable[..., Awaitable[Any]] | None:
    """The workflow (its run method) an ERP change notification of ``resource`` runs for
    ``conn``, if any."""
    run = ERP_TOPICS.get(resource.lower())
    if run is CustomerSync.run and not conn.customer_sync:
        return None
    return run


async def erp_changed(client: Client, conn, resource: str, *, task_queue: str) -> str:
    """An ERP record changed: run the connection's sync for that kind now instead of at its
    next schedule. Notifications arriving while one runs join it (it reads since its
    watermark, so it sees them)."""
    run = erp_sync_for(conn, resource)
    arg = (ConnectionInput(connection_id=conn.id) if run is CustomerSync.run
           else CatalogInput(connection_id=conn.id))
    wf_id = f"{workflow_type(run).lower()}-now/{conn.id}"
    await client.start_workflow(
        run, arg, id=wf_id, task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=_connection_attribute(conn.id))
    return wf_id

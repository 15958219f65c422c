"""The Temporal Schedules of a connection: definitions and their idempotent apply.

Per connection: ``poll/{id}`` (OrderPoll every ``poll_minutes``, or ``polling_mode_minutes``
while a hook is down), ``catalog/{id}`` (CatalogPush), ``catalog-reconcile/{id}`` (the nightly
full CatalogPush), ``reconcile/{id}`` (the nightly store-versus-ERP Reconcile of the last
days, kept for ``status``), ``shipments/{id}`` (ShipmentSync), ``customers/{id}`` (CustomerSync, when
the connection aligns customers) and ``webhooks/{id}`` (WebhookHealth, when the connection has a receiver
URL). Every scheduled workflow is safe to run twice at once and to overlap with webhooks;
overlapping runs of one schedule are skipped anyway.
"""
from __future__ import annotations

from datetime import timedelta

from temporalio.client import (Client, Schedule, ScheduleActionStartWorkflow,
                               ScheduleAlreadyRunningError, ScheduleIntervalSpec,
                               ScheduleOverlapPolicy, SchedulePolicy, ScheduleSpec,
                               ScheduleUpdate, ScheduleUpdateInput)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from activities.messages import CatalogInput, ConnectionInput, PollInput
from activities.reconcile import ReconcileInput
from connections.config import Connection
from workflows.catalog import CatalogPush
from workflows.customers import CustomerSync
from workflows.poll import OrderPoll
from workflows.reconcile import Reconcile
from workflows.search_attributes import SA_CONNECTION
from workflows.shipments import ShipmentSync
from workflows.webhooks import WebhookHealth

KINDS = ("poll", "catalog", "catalog-reconcile", "reconcile", "shipments", "customers", "webhooks")
# The nightly books check, after the catalog's (UTC): the day's late refunds are in by then.
RECONCILE_CRON = "41 3 * * *"


def schedule_id(kind: str, connection_id: str) -> str:
    return f"{kind}/{connection_id}"


def _every(minutes: float) -> ScheduleSpec:
    return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=minutes))])


def definitions(conn: Connection, task_queue: str, *, poll_minutes: float | None = None
                ) -> dict[str, Schedule]:
    attrs = TypedSearchAttributes([SearchAttributePair(SA_CONNECTION, conn.id)])

    def start(kind: str, workflow, arg, spec: ScheduleSpec) -> tuple[str, Schedule]:
        sid = schedule_id(kind, conn.id)
        action = ScheduleActionStartWorkflow(workflow, arg, id=sid, task_queue=task_queue,
                                             typed_search_attributes=attrs)
        return sid, Schedule(action=action, spec=spec,
                             policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP))

    items = [
        start("poll", OrderPoll.run, PollInput(connection_id=conn.id, task_queue=task_queue),
              _every(poll_minutes or conn.poll_minutes)),
        start("catalog", CatalogPush.run, CatalogInput(connection_id=conn.id),
              _every(conn.catalog_minutes)),
        start("catalog-reconcile", CatalogPush.run, CatalogInput(connection_id=conn.id, full=True),
              ScheduleSpec(cron_expressions=[f"17 {conn.catalog_reconcile_hour} * * *"])),
        start("reconcile", Reconcile.run, ReconcileInput(connection_id=conn.id),
              ScheduleSpec(cron_expressions=[RECONCILE_CRON])),
        start("shipments", ShipmentSync.run, ConnectionInput(connection_id=conn.id),
              _every(conn.shipment_minutes)),
    ]
    if conn.customer_sync:
        items.append(start("customers", CustomerSync.run, ConnectionInput(connection_id=conn.id),
                           _every(conn.customer_sync_minutes)))
    if conn.receiver_url:
        items.append(start("webhooks", WebhookHealth.run, ConnectionInput(connection_id=conn.id),
                           _every(conn.webhook_check_minutes)))
    return dict(items)


async def apply_schedules(client: Client, conn: Connection, task_queue: str,
                          *, poll_minutes: float | None = None) -> dict[str, str]:
    """Create or update every schedule of ``conn``; returns ``{id: "created"|"updated"}``.
    Running it twice changes nothing the second time."""
    done: dict[str, str] = {}
    for sid, schedule in definitions(conn, task_queue, poll_minutes=poll_minutes).items():
        try:
            await client.create_schedule(sid, schedule)
            done[sid] = "created"
        except ScheduleAlreadyRunningError:
            async def replace(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(sid).update(replace)
            done[sid] = "updated"
    return done


async def set_poll_interval(client: Client, connection_id: str, minutes: float) -> bool:
    """Move the poll schedule to ``minutes`` (polling mode and back). False when it already
    runs at that interval or the connection has no schedules yet."""
    handle = client.get_schedule_handle(schedule_id("poll", connection_id))
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    wanted = timedelta(minutes=minutes)
    if [i.every for i in desc.schedule.spec.intervals] == [wanted]:
        return False

    async def retime(inp: ScheduleUpdateInput) -> ScheduleUpdate:
        inp.description.schedule.spec = _every(minutes)
        return ScheduleUpdate(schedule=inp.description.schedule)

    await handle.update(retime)
    return True

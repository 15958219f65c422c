"""``ml-connector schedules list``: each Temporal Schedule with what an operator asks first —
is it paused, what does it start, when did it last run and when will it run next. Bare ids
answer none of that, and the visibility list can lag a fresh change, so every schedule is
described."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError, RPCStatusCode

COLUMNS = ("SCHEDULE", "STATE", "WORKFLOW", "LAST RUN", "NEXT RUN")


@dataclass(frozen=True)
class ScheduleRow:
    id: str
    paused: bool
    note: str
    workflow: str
    last_run: datetime | None
    next_run: datetime | None


async def describe_schedules(client: Client, connection_id: str | None = None) -> list[ScheduleRow]:
    """Every schedule of the namespace (ids are ``{kind}/{connection}``), or one connection's."""
    ids = sorted([entry.id async for entry in await client.list_schedules()])
    if connection_id:
        ids = [sid for sid in ids if sid.partition("/")[2] == connection_id]
    rows = []
    for sid in ids:
        try:
            desc = await client.get_schedule_handle(sid).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # deleted since it was listed
                continue
            raise
        action = desc.schedule.action
        workflow = action.workflow if isinstance(action, ScheduleActionStartWorkflow) else "-"
        recent = desc.info.recent_actions
        last = max((r.started_at for r in recent), default=None)
        state = desc.schedule.state
        rows.append(ScheduleRow(id=sid, paused=state.paused, note=state.note or "",
                                workflow=str(workflow), last_run=last,
                                next_run=min(desc.info.next_action_times, default=None)))
    return rows


def _when(moment: datetime | None, missing: str) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment else missing


def render(rows: list[ScheduleRow]) -> str:
    table = [COLUMNS] + [
        (r.id, f"paused ({r.note})" if r.paused and r.note else "paused" if r.paused else "active",
         r.workflow, _when(r.last_run, "never"), _when(r.next_run, "-"))
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in table)

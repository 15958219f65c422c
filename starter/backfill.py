"""``ml-connector backfill``: start (or resume) the Backfill workflow of a date range and
show its progress until it is done."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy

from activities.messages import BackfillInput, BackfillProgress
from workflows.backfill import Backfill


def backfill_id(connection_id: str, since: datetime, until: datetime) -> str:
    return f"backfill/{connection_id}/{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}"


async def start_backfill(client: Client, connection_id: str, since: datetime, until: datetime,
                         task_queue: str):
    """The same range twice is the same workflow: a second start attaches to the first."""
    return await client.start_workflow(
        Backfill.run, BackfillInput(connection_id=connection_id, task_queue=task_queue,
                                  since=since, until=until),
        id=backfill_id(connection_id, since, until), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


async def follow(handle, since: datetime, until: datetime, *, interval: float = 1.0) -> BackfillProgress | None:
    """A progress bar over the date range, fed by the workflow's ``progress`` query."""
    span = max((until - since).total_seconds(), 1.0)
    with Progress(TextColumn("backfill {task.fields[position]}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%  {task.fields[seen]} orders, "
                             "{task.fields[handed]} handed over"), TimeElapsedColumn()) as bar:
        task = bar.add_task("backfill", total=100, position=since.date(), seen=0, handed=0)
        while True:
            desc = await handle.describe()
            running = desc.status == WorkflowExecutionStatus.RUNNING
            try:
                p = await handle.query(Backfill.progress)
            except Exception:  # between runs of a continue-as-new chain
                p = None
            if p is not None:
                bar.update(task, completed=100 * (p.position - since).total_seconds() / span,
                           position=p.position.date(), seen=p.orders_seen, handed=p.handed_over)
            if not running:
                if desc.status == WorkflowExecutionStatus.COMPLETED:
                    # result() takes no result_type: the handle's decides, and a handle
                    # made without one gives back a plain dict.
                    p = BackfillProgress.model_validate(await handle.result())
                    bar.update(task, completed=100, seen=p.orders_seen, handed=p.handed_over)
                    return p
                return None
            await asyncio.sleep(interval)


def parse_day(value: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} must be a date like 2026-11-01 (or an ISO timestamp), got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_range(since: str, until: str | None) -> tuple[datetime, datetime]:
    """``--since``/``--until`` (until defaults to now), ValueError with the user's message when
    either is not a date or the range is empty."""
    start = parse_day(since, "--since")
    end = parse_day(until, "--until") if until else datetime.now(timezone.utc)
    if end <= start:
        raise ValueError(f"--until ({end.isoformat()}) must be after --since ({start.isoformat()})")
    return start, end

"""``ml-connector errors``: the error history (connections/error_history.py) as an operator
reads it — what went wrong, since when, how long it stayed open and how it was resolved."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from connections.error_history import Episode
from starter.durations import how_long


def as_json(found: list[Episode]) -> str:
    """A list of episodes; each field is documented in the README ("Error history")."""
    return json.dumps([e.as_dict() for e in found], indent=2)


def _short(moment: str) -> str:
    return datetime.fromisoformat(moment).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(found: list[Episode], *, what: str) -> str:
    if not found:
        return f"no {what} error episodes"
    lines = []
    for e in found:
        order = e.order_number or e.order_id
        head = f"{e.connection_id}  order {order}  {e.kind}"
        if e.step:
            head += f" at {e.step} ({e.attempts} failed attempt{'s' if e.attempts != 1 else ''})"
        if e.is_open:
            head += f"  open since {_short(e.opened_at)} ({how_long(e.duration_seconds())})"
        else:
            by = f" by {e.resolved_by}" if e.resolved_by else ""
            detail = f" ({e.resolution_detail})" if e.resolution_detail else ""
            head += (f"  {_short(e.opened_at)} → {_short(e.resolved_at)} "
                     f"({how_long(e.duration_seconds())}), resolved: {e.resolution}{by}{detail}"
                     f", ended {e.outcome}")
        lines.append(head)
        # Multi-line ERP messages stay under their episode, indented.
        lines += [f"    {line}" for line in (e.message or "").splitlines() if line.strip()]
    return "\n".join(lines)

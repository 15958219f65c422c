"""Dates as BigCommerce writes and reads them (shared/reference/bigcommerce.md).

v2 bodies carry RFC 2822 in UTC (``Mon, 11 Mar 2019 15:17:25 +0000``, and ``""`` for a date
not set); v3 bodies carry ISO 8601. A date bound in a query may come in either form.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

_YEAR_FIRST = re.compile(r"\d{4}")  # ISO 8601 opens with the year; RFC 2822 never does


def v2_text(moment: datetime | None) -> str:
    return "" if moment is None else format_datetime(moment.astimezone(UTC))


def v3_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def read_date(text: str) -> datetime:
    """A moment from either form: ISO 8601 when it opens with a year, RFC 2822 otherwise.
    A moment without an offset is taken as UTC. Raises ValueError."""
    text = text.strip()
    if _YEAR_FIRST.match(text):
        moment = datetime.fromisoformat(text)  # 3.11 reads the whole of ISO 8601, "Z" included
    else:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, IndexError) as exc:
            raise ValueError(f"not a date: {text!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

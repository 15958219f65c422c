"""The one place that turns connector errors into Temporal's retry decisions."""
from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from connectors.errors import ExternalError


def jittered(seconds: float) -> timedelta:
    """The server's reset plus up to 10% (at least 0.2 s) so retries don't arrive in step."""
    return timedelta(seconds=seconds + random.uniform(0.2, max(0.2, seconds * 0.1)))


@asynccontextmanager
async def classified() -> AsyncIterator[None]:
    try:
        yield
    except ExternalError as exc:
        # Each error carries its decision: whether to retry, and when it names the wait (a
        # quota's reset, a consent not yet renewed), that wait instead of the policy's back-off.
        delay = None if exc.retry_after is None else jittered(exc.retry_after)
        raise ApplicationError(str(exc), type=exc.kind, non_retryable=not exc.retryable,
                               next_retry_delay=delay) from exc
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ApplicationError(
            f"the record cannot be read: {where}: {first.get('msg', exc)} "
            f"Resolution: correct the record at its source, then replay the order",
            type="Rejected", non_retryable=True) from exc

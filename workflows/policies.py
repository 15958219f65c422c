"""Retry policies and timeouts, declared once per kind of activity.

Retries are unlimited in count: an ERP outage or a 429 storm delays work and never drops
it; an operator sees the pending activity and its last failure in the UI. Refusals that no
retry can fix are raised non-retryable by the activity layer itself.
"""
from datetime import timedelta

from temporalio.common import RetryPolicy

# Capped at a minute: a 5xx storm or a restart stretches the tail of attempts, and a minute
# between them keeps a recovered ERP busy again quickly without hammering a down one.
_BACKOFF = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                       maximum_interval=timedelta(minutes=1))

# A heartbeat timeout (activities/heartbeat.py beats for them): a dead worker's attempts
# are retried within seconds, not after the start-to-close timeout.
_BEAT = timedelta(seconds=15)
STORE_READ = {"start_to_close_timeout": timedelta(seconds=90), "heartbeat_timeout": _BEAT,
              "retry_policy": _BACKOFF}
# A local activity has no heartbeat: the order fetch is one store read, retried like any other.
STORE_READ_LOCAL = {k: v for k, v in STORE_READ.items() if k != "heartbeat_timeout"}
ERP_WRITE = {"start_to_close_timeout": timedelta(minutes=5), "heartbeat_timeout": _BEAT,
             "retry_policy": _BACKOFF}
LEDGER = {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": _BACKOFF}
# The first try of an ERP step as a local activity (workflows/order.py): one attempt, then the
# step goes to an activity with ERP_WRITE, whose retries operators see in the UI.
ERP_FIRST_TRY = {"start_to_close_timeout": timedelta(minutes=1),
                 "retry_policy": RetryPolicy(maximum_attempts=1)}

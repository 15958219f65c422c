"""The worker's activity interceptor: correlation ids on every log line and the business
metrics, around each activity attempt (local activities included).

Log lines written while an activity runs carry ``workflow_id``, ``run_id``,
``activity_type`` and ``attempt`` (structlog contextvars; starter/logs.py still redacts
secrets and personal data). What the interceptor reads to count is what the activity was
given and what it returned; it never changes either.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

import structlog
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from activities.orders import ERP_STEP_NAMES, OrderActivities, activity_name
from connections import error_history
from connections.ledger import LedgerKind, OrderState
from connectors import http

log = structlog.get_logger("ml_connector.activity")

# The order steps the metrics tell apart, named from their definitions. The ERP steps'
# attempts (ERP_STEP_NAMES) are the ERP calls we can always see.
UPSERT_CUSTOMER = activity_name(OrderActivities.upsert_customer)
POST_INVOICE = activity_name(OrderActivities.post_invoice)
RECORD_ORDER_STATE = activity_name(OrderActivities.record_order_state)
DOCUMENT_KINDS = {POST_INVOICE: LedgerKind.INVOICE,
                  activity_name(OrderActivities.post_credit_memo): LedgerKind.CREDIT_MEMO,
                  activity_name(OrderActivities.post_receipt): LedgerKind.RECEIPT,
                  activity_name(OrderActivities.post_adjustment): LedgerKind.ADJUSTMENT}

ORDERS_POSTED = "ml_orders_posted"
DOCUMENTS_POSTED = "ml_documents_posted"
DUPLICATES_AVOIDED = "ml_duplicates_avoided"
ORDERS_PARKED = "ml_orders_parked"
ORDERS_FAILED = "ml_orders_failed"
CUSTOMERS = "ml_customers"
RATE_LIMITED = "ml_rate_limited"
ERP_ACTIVITY_ATTEMPTS = "ml_erp_activity_attempts"
EXTERNAL_REQUESTS = "ml_external_requests"
REQUESTS_PER_ACTIVITY = "ml_external_requests_per_activity"
POSTING_LATENCY = "ml_posting_latency_seconds"
SYNC_FRESHNESS = "ml_sync_freshness_seconds"


class BusinessMetrics:
    """The business figures, each labelled with its connection. ``meter`` is an activity's
    meter (it adds namespace, task queue and activity type) or the runtime's."""

    def __init__(self, meter: MetricMeter, connection_id: str = "") -> None:
        self.meter = meter.with_additional_attributes({"connection": connection_id}) \
            if connection_id else meter

    def _count(self, name: str, description: str, value: int = 1, **labels: str) -> None:
        if value:
            self.meter.create_counter(name, description).add(value, labels or None)

    def document_posted(self, kind: str, created: bool, retried: bool = False) -> None:
        """A post returned its document. ``created`` False means it was already there (a
        ledger hit or a look-up by external reference): a duplicate avoided. On a retry
        that is this order's own earlier attempt, committed before its answer was lost, so
        the document still counts as posted now; on a first attempt it was booked before."""
        if created or retried:
            self._count(DOCUMENTS_POSTED, "ERP documents booked", kind=kind)
            if kind == LedgerKind.INVOICE:
                self._count(ORDERS_POSTED, "orders whose invoice was booked in the ERP")
        if not created:
            self._count(DUPLICATES_AVOIDED,
                        "posts that found their document already in the ledger or the ERP",
                        kind=kind)

    def customer(self, created: bool) -> None:
        self._count(CUSTOMERS, "customers upserted in the ERP",
                    outcome="created" if created else "matched")

    def order_state(self, state: str) -> None:
        if state == OrderState.PARKED:
            self._count(ORDERS_PARKED, "orders parked until an operator fixes a mapping")
        elif state == OrderState.FAILED:
            self._count(ORDERS_FAILED, "orders whose workflow failed")

    def rate_limited(self, system: str) -> None:
        self._count(RATE_LIMITED, "activity attempts ended by a 429", system=system or "unknown")

    def erp_attempt(self, outcome: str) -> None:
        self._count(ERP_ACTIVITY_ATTEMPTS, "attempts of activities that call the ERP",
                    outcome=outcome)

    def external_requests(self, by_system: Mapping[str, int]) -> None:
        """HTTP requests one activity attempt made, per external system."""
        for system, count in by_system.items():
            self._count(EXTERNAL_REQUESTS, "HTTP requests to external systems", count,
                        system=system)
        total = sum(by_system.values())
        if total:
            self.meter.create_histogram(
                REQUESTS_PER_ACTIVITY, "HTTP requests per activity attempt").record(total)

    def posting_latency(self, seconds: float) -> None:
        self.meter.create_histogram_float(
            POSTING_LATENCY, "order created/paid in the store until its invoice was posted",
            "s").record(max(0.0, seconds))

    def freshness(self, seconds: float) -> None:
        self.meter.create_gauge_float(
            SYNC_FRESHNESS, "age of the last successful order poll's watermark", "s").set(
            max(0.0, seconds))


def posting_latency_seconds(order: object, now: datetime | None = None) -> float | None:
    """Seconds from the order being paid (else created) in the store until now."""
    start = getattr(order, "paid_at", None) or getattr(order, "created_at", None)
    if start is None:
        return None
    return ((now or datetime.now(timezone.utc)) - start).total_seconds()


class ObservabilityInterceptor(Interceptor):
    """Registered on the worker (worker.build_worker)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityObserver(next)


class _ActivityObserver(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        arg = input.args[0] if input.args else None
        connection_id = str(getattr(arg, "connection_id", "") or "")
        requests: Counter[str] = Counter()
        with structlog.contextvars.bound_contextvars(
                workflow_id=info.workflow_id, run_id=info.workflow_run_id,
                activity_type=info.activity_type, attempt=info.attempt,
                **({"connection": connection_id} if connection_id else {})):
            token = _observe_requests(requests)
            started = time.monotonic()
            try:
                result = await self.next.execute_activity(input)
            except asyncio.CancelledError:  # worker shutdown, or the workflow moved on
                _safely(_failed, info, connection_id, None)
                log.info("activity attempt cancelled",
                         seconds=round(time.monotonic() - started, 3))
                raise
            except BaseException as exc:
                _safely(_failed, info, connection_id, exc)
                await _record_episode(input, info, connection_id, arg, exc)
                log.warning("activity attempt failed", error_type=_error_type(exc),
                            error=str(exc)[:500], seconds=round(time.monotonic() - started, 3))
                raise
            else:
                _safely(_succeeded, info, connection_id, arg, result)
                await _record_episode(input, info, connection_id, arg, None)
                log.debug("activity completed", seconds=round(time.monotonic() - started, 3))
                return result
            finally:
                _stop_observing(token)
                _safely(lambda: BusinessMetrics(activity.metric_meter(), connection_id)
                        .external_requests(requests))


# The order steps whose failed attempts, retried, make a *retrying* episode in the error
# history (connections/error_history.py): the store read and every ERP step.
EPISODE_STEPS = ERP_STEP_NAMES | {activity_name(OrderActivities.fetch_order)}


async def _record_episode(input: ExecuteActivityInput, info: activity.Info, connection_id: str,
                          arg: Any, exc: BaseException | None) -> None:
    """A failed attempt that will be retried opens (or counts on) its order's retrying
    episode; a later success closes it. Never fails the activity."""
    order_id, number = _order_of(arg)
    # The connection store of the activity's own runtime (every activity class holds it).
    store = getattr(getattr(getattr(input.fn, "__self__", None), "rt", None), "store", None)
    if info.activity_type not in EPISODE_STEPS or not connection_id or not order_id \
            or store is None:
        return
    try:
        if exc is None:
            # Only a retry, or the activity that took over a failed local first try, can
            # have an episode open: a plain first try costs no read.
            if (info.attempt > 1 or not info.is_local) and await asyncio.to_thread(
                    error_history.has_open_retry, store, connection_id, order_id):
                await asyncio.to_thread(error_history.step_succeeded, store, connection_id,
                                        order_id)
        elif not (isinstance(exc, ApplicationError) and exc.non_retryable):
            await asyncio.to_thread(error_history.step_failed, store, connection_id, order_id,
                                    step=info.activity_type, message=str(exc)[:1000],
                                    order_number=number)
    except Exception as err:  # the history never fails an activity
        log.debug("error history not recorded", error=repr(err))


def _order_of(arg: Any) -> tuple[str, str]:
    """The store order id and number an order step's input names: its own fields
    (OrderRef, CustomerInput), its snapshot's (the posts), or its order's."""
    snapshot, order = getattr(arg, "snapshot", None), getattr(arg, "order", None)
    order_id = (getattr(arg, "order_id", None) or getattr(snapshot, "order_id", None)
                or getattr(order, "store_id", None) or "")
    number = (getattr(arg, "order_number", None) or getattr(snapshot, "number", None)
              or getattr(order, "number", None) or "")
    return str(order_id), str(number)


def _observe_requests(requests: Counter[str]) -> Any:
    """Count this attempt's HTTP requests per system when connectors/http.py offers its
    per-request hook (a ContextVar of a callable taking the system name)."""
    hook: ContextVar | None = getattr(http, "REQUEST_OBSERVER", None)
    if hook is None:
        return None
    return hook, hook.set(lambda system, *_: requests.update([system]))


def _stop_observing(token: Any) -> None:
    if token is not None:
        hook, reset = token
        hook.reset(reset)


def _safely(fn, *args) -> None:
    """Metrics never fail an activity."""
    try:
        fn(*args)
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("metrics not recorded", error=repr(exc))


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, ApplicationError) and exc.type:
        return exc.type
    return type(exc).__name__


def _succeeded(info: activity.Info, connection_id: str, arg: Any, result: Any) -> None:
    metrics = BusinessMetrics(activity.metric_meter(), connection_id)
    name = info.activity_type
    if name in ERP_STEP_NAMES:
        metrics.erp_attempt("completed")
    if name == UPSERT_CUSTOMER and result is not None:
        metrics.customer(bool(getattr(result, "created", True)))
    elif name in DOCUMENT_KINDS and result is not None:
        ref = getattr(result, "ref", None)
        created = bool(getattr(ref, "created", True))
        # A retry by Temporal, or the activity that took over a failed local first try.
        retried = info.attempt > 1 or bool(getattr(result, "retried", False))
        metrics.document_posted(DOCUMENT_KINDS[name], created, retried)
        order = getattr(arg, "snapshot", None)  # the order's times (activities/messages.py)
        if name == POST_INVOICE and (created or retried) and order is not None:
            latency = posting_latency_seconds(order)
            if latency is not None:
                metrics.posting_latency(latency)
    elif name == RECORD_ORDER_STATE:
        metrics.order_state(str(getattr(arg, "state", "")))


def _failed(info: activity.Info, connection_id: str, exc: BaseException | None) -> None:
    """``exc`` None: the attempt was cancelled."""
    metrics = BusinessMetrics(activity.metric_meter(), connection_id)
    if info.activity_type in ERP_STEP_NAMES:
        metrics.erp_attempt("failed" if exc is not None else "cancelled")
    if exc is not None and _error_type(exc) == "RateLimited":
        metrics.rate_limited(str(getattr(exc.__cause__, "system", "") or ""))

"""The one pacer that reads every vendor's rate headers, so 429s stay rare instead of being the
control mechanism.

Each response tells how much of a quota window is left and when it resets; a vendor's
:class:`RateHeaders` says where. Before a request the pacer waits for the reset once only
``reserve`` requests are left, and below ``slow_below`` (else a tenth of the quota the server
names) it spreads the remaining requests over the rest of the window. A spent daily quota
raises :class:`RateLimited` without calling.
"""
from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from connectors.errors import RateLimited


@dataclass(frozen=True)
class RateHeaders:
    """Where one quota window is told: requests left, the reset in milliseconds (``from_now``
    or an ``epoch`` time), and optionally the window's quota."""

    remaining: str
    reset: str
    reset_is: Literal["from_now", "epoch"]
    quota: str | None = None


BIGCOMMERCE = RateHeaders("X-Rate-Limit-Requests-Left", "X-Rate-Limit-Time-Reset-Ms", "from_now",
                          quota="X-Rate-Limit-Requests-Quota")
EXACT_MINUTELY = RateHeaders("X-RateLimit-Minutely-Remaining", "X-RateLimit-Minutely-Reset",
                             "epoch")
EXACT_DAILY = RateHeaders("X-RateLimit-Remaining", "X-RateLimit-Reset", "epoch")
DEFAULT_RETRY_AFTER = 30.0  # seconds, when a 429 names no reset at all


@dataclass
class Window:
    remaining: int
    reset_at: float  # on the pacer's clock
    quota: int | None = None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reset_in(headers: Mapping[str, str], where: RateHeaders, now: float) -> float | None:
    """Seconds until ``where``'s window resets, if the headers say."""
    reset = _int(headers.get(where.reset))
    if reset is None:
        return None
    return reset / 1000 - now if where.reset_is == "epoch" else reset / 1000


def retry_after_seconds(headers: Mapping[str, str],
                        default: float = DEFAULT_RETRY_AFTER) -> float:
    """Seconds until a 429's quota resets, from whichever header the server sent: the standard
    ``Retry-After`` (seconds or an HTTP date), else a vendor's reset."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    for where in (BIGCOMMERCE, EXACT_MINUTELY, EXACT_DAILY):
        seconds = _reset_in(headers, where, time.time())
        if seconds is not None:
            return max(0.0, seconds)
    return default


class Pacer:
    """Keeps one client inside a quota ``window`` (and a ``daily`` one, where the vendor has
    it). ``max_wait`` caps a wait at the window's length where a reset may lie further out.
    ``clock`` is the wall clock by default: epoch resets are read against it."""

    def __init__(self, window: RateHeaders, *, daily: RateHeaders | None = None,
                 reserve: int = 1, slow_below: int | None = None,
                 max_wait: float | None = None, system: str = "", label: str = "",
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self._headers, self._daily_headers = window, daily
        self.reserve, self.slow_below, self.max_wait = reserve, slow_below, max_wait
        self.system, self.label = system, label
        self._clock, self._sleep = clock, sleep
        self.window: Window | None = None
        self.daily: Window | None = None
        self.waited = 0.0  # seconds slept, for tests and stats
        self._lock = asyncio.Lock()

    @property
    def left(self) -> int | None:
        """Requests left in the window, as far as this client knows."""
        return self.window.remaining if self.window else None

    def _read(self, headers: Mapping[str, str], where: RateHeaders,
              known: Window | None) -> Window | None:
        now = self._clock()
        remaining, reset_in = _int(headers.get(where.remaining)), _reset_in(headers, where, now)
        if remaining is None or reset_in is None:
            return known  # an answer without the headers changes nothing
        reset_at = now + reset_in
        quota = _int(headers.get(where.quota)) if where.quota else None
        return Window(remaining, reset_at, quota or (known.quota if known else None))

    def observe(self, answer: httpx.Response | Mapping[str, str]) -> None:
        headers = answer.headers if isinstance(answer, httpx.Response) else answer
        self.window = self._read(headers, self._headers, self.window)
        if self._daily_headers is not None:
            self.daily = self._read(headers, self._daily_headers, self.daily)

    async def on_response(self, response: httpx.Response) -> None:
        """``observe`` as an httpx response hook."""
        self.observe(response)

    def _day_spent(self, now: float) -> bool:
        return bool(self.daily and self.daily.remaining <= 0 and self.daily.reset_at > now)

    def delay(self) -> float:
        """Seconds to wait before the next request (0 when there is room)."""
        now = self._clock()
        if self._day_spent(now):
            raise RateLimited(f"{self.label} daily API quota exhausted".lstrip(),
                              retry_after=self.daily.reset_at - now, system=self.system,
                              status=429)
        w = self.window
        if w is None or now >= w.reset_at:
            return 0.0
        left = w.reset_at - now
        if self.max_wait is not None:
            left = min(left, self.max_wait)
        if w.remaining <= self.reserve:
            return left
        slow_below = self.slow_below if self.slow_below is not None else (
            w.quota / 10 if w.quota else None)
        if slow_below is not None and w.remaining < slow_below:
            return left / (w.remaining - self.reserve + 1)
        return 0.0

    async def before(self) -> None:
        """Wait for this request's turn; then count it, since concurrent requests spend the
        same window before any of their answers tells the new count."""
        async with self._lock:
            wait = self.delay()
            if wait > 0:
                self.waited += wait
                await self._sleep(wait)
                w = self.window
                if w is not None and (self._clock() >= w.reset_at or w.remaining <= self.reserve):
                    self.window = None  # a new window; the next answer tells its allowance
                    return
            if self.window is not None:
                self.window.remaining -= 1

    def retry_after(self, default: float) -> float:
        """The reset a 429 named: the daily one when the day is spent, else the window's."""
        now = self._clock()
        if self._day_spent(now):
            return self.daily.reset_at - now
        if self.window and self.window.reset_at > now:
            return self.window.reset_at - now
        return default

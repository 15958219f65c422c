"""Fault injection shared by every simulator: the control surface tests and the demo use.

``POST /_sandbox/faults`` with any of the fields of :class:`Faults` sets them; ``GET`` reads
them. Counters count down as requests consume them. The ratios draw from a private RNG
(reseeded by ``seed``) so a chaos run is reproducible; ``storm_seconds`` answers 429 to
every API request for that long from the moment it is set. ``injected`` counts what was
actually injected, for the figures of a chaos run.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.configure import set_fields


@dataclass
class Faults:
    fail_next: int = 0  # the next N API requests answer ``fail_status``
    fail_status: int = 500
    storm_429: int = 0  # the next N API requests answer 429
    retry_after: float = 1.0  # seconds named in Retry-After during a storm
    lose_next_commits: int = 0  # the next N writes commit, then the response is lost (502)
    slow_ms: int = 0  # every API request waits this long first
    expire_tokens: bool = False  # one-shot: every issued access token stops working now
    fail_ratio: float = 0.0  # each API request answers ``fail_status`` with this probability
    lose_ratio: float = 0.0  # each committed write loses its response with this probability
    storm_seconds: float = 0.0  # every API request answers 429 for this long (GET: time left)
    seed: int = 0  # reseeds the RNG of the ratios when set

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._storm_until = 0.0
        self.injected = {"failures": 0, "throttled": 0, "lost_commits": 0}

    def configure(self, **values: object) -> None:
        set_fields(self, values, what="fault")
        if "seed" in values:
            self._rng.seed(self.seed)
        if "storm_seconds" in values:
            self._storm_until = time.monotonic() + self.storm_seconds

    def reset(self) -> None:
        """Every fault back to its default, a running storm ended and the RNG reseeded."""
        self.configure(**asdict(Faults()))

    def _draw(self, ratio: float) -> bool:
        return ratio > 0 and self._rng.random() < ratio

    def take_failure(self) -> int | None:
        if self.fail_next > 0:
            self.fail_next -= 1
        elif not self._draw(self.fail_ratio):
            return None
        self.injected["failures"] += 1
        return self.fail_status

    def take_429(self) -> float | None:
        if self.storm_429 > 0:
            self.storm_429 -= 1
            self.injected["throttled"] += 1
            return self.retry_after
        left = self._storm_until - time.monotonic()
        if left > 0:
            self.injected["throttled"] += 1
            return min(self.retry_after, left)
        return None

    def take_lost_commit(self) -> bool:
        if self.lose_next_commits > 0:
            self.lose_next_commits -= 1
        elif not self._draw(self.lose_ratio):
            return False
        self.injected["lost_commits"] += 1
        return True

    async def delay(self) -> None:
        if self.slow_ms:
            await asyncio.sleep(self.slow_ms / 1000)

    async def admit(self, expire_tokens: Callable[[], None]) -> None:
        """What an API request meets before the 429s and failures: the slow-down, then a
        pending token expiry, which ``expire_tokens`` carries out once."""
        await self.delay()
        if self.expire_tokens:
            self.expire_tokens = False
            expire_tokens()

    def as_dict(self) -> dict:
        return {**asdict(self), "storm_seconds": max(0.0, self._storm_until - time.monotonic()),
                "injected": dict(self.injected)}


def lost_response() -> Response:
    """What a client sees when the server committed but the answer never arrived intact:
    the proxy in front of the application reports the broken upstream connection."""
    return PlainTextResponse("502 Bad Gateway: upstream connection reset", status_code=502)


def fault_routes(faults: Faults) -> list[Route]:
    async def faults_endpoint(request: Request) -> Response:
        if request.method == "POST":
            try:
                faults.configure(**(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(faults.as_dict())

    return [Route("/_sandbox/faults", faults_endpoint, methods=["GET", "POST"])]

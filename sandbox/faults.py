"""Fault injection shared by every simulator: the control surface tests and the demo use.

``POST /_sandbox/faults`` with any of the fields of :class:`Faults` sets them; ``GET`` reads
them. Counters count down as requests consume them.
"""
from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, fields

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class Faults:
    fail_next: int = 0  # the next N API requests answer ``fail_status``
    fail_status: int = 500
    storm_429: int = 0  # the next N API requests answer 429
    retry_after: float = 1.0  # seconds named in Retry-After during a storm
    lose_next_commits: int = 0  # the next N writes commit, then the response is lost (502)
    slow_ms: int = 0  # every API request waits this long first
    expire_tokens: bool = False  # one-shot: every issued access token stops working now

    def configure(self, **values: object) -> None:
        names = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(names))}")
            current = getattr(self, key)
            setattr(self, key, type(current)(value))

    def take_failure(self) -> int | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return self.fail_status
        return None

    def take_429(self) -> float | None:
        if self.storm_429 > 0:
            self.storm_429 -= 1
            return self.retry_after
        return None

    def take_lost_commit(self) -> bool:
        if self.lose_next_commits > 0:
            self.lose_next_commits -= 1
            return True
        return False

    async def delay(self) -> None:
        if self.slow_ms:
            await asyncio.sleep(self.slow_ms / 1000)

    def as_dict(self) -> dict:
        return asdict(self)


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

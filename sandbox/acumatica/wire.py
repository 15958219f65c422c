"""Acumatica on the wire: the endpoint's constants, JSON with exact decimals, and its error bodies."""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from sandbox import wire


ENDPOINT = "Default"
BUILD_VERSION = "24.200.0001"
SESSION_IDLE_SECONDS = 600
REFRESH_CHAIN_SECONDS = 30 * 24 * 3600
QUOTA_WINDOW_SECONDS = 60
KNOWN_SCOPES = {"api", "offline_access", "api:concurrent_access", "openid", "email", "profile", "phone"}
RELEASED = {"Open", "Closed"}
INACTIVE_ITEM = {"Inactive", "Marked for Deletion", "No Sales"}


# --------------------------------------------------------------------------- JSON on the wire

def dumps(obj: Any) -> str:
    return wire.dumps(obj, iso)


class JSON(Response):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def http_error(status: int, message: str, exception: str | None = None,
               exception_type: str = "PX.Api.ContractBased.Exception", **extra: Any) -> JSON:
    body: dict[str, Any] = {"message": message}
    if exception:
        body.update(exceptionMessage=exception, exceptionType=exception_type, stackTrace="")
    body.update(extra)
    return JSON(body, status_code=status)


def no_resource(request: Request) -> JSON:
    return JSON({"message": f"No HTTP resource was found that matches the request URI '{request.url}'."},
                status_code=404)


def not_found() -> JSON:
    return http_error(404, "No entity satisfies the condition.")


def unauthorized() -> JSON:
    return http_error(401, "You are not logged in.", "You are not logged in.",
                      "PX.Data.PXNotLoggedInException")


def too_many_requests(retry_after: float | None) -> Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else {}
    return PlainTextResponse("API request limit per minute exceeded. Try again later.",
                             status_code=429, headers=headers)


def oauth_error(error: str, description: str | None = None) -> JSON:
    body = {"error": error} | ({"error_description": description} if description else {})
    return JSON(body, status_code=400, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")

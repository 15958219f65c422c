"""Oracle REST on the wire: versions, media types, JSON with exact decimals, the error bodies and value
coercion."""
from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from sandbox import wire


VERSIONS = ("11.13.18.05", "latest")
FRAMEWORK_VERSIONS = tuple(str(v) for v in range(1, 10))
PAGE_DEFAULT, PAGE_MAX = 25, 500
BATCH_MEDIA_TYPE = "application/vnd.oracle.adf.batch+json"
BATCH_OPERATIONS = {"get": "GET", "create": "POST", "update": "PATCH", "replace": "PUT",
                    "delete": "DELETE"}
QUOTA_WINDOW = 60
ZERO = Decimal(0)
MINOR_UNITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3,
               "JOD": 3, "TND": 3}
CHART = ("Company", "CostCenter", "Account", "SubAccount", "Product")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def money(value: Decimal, currency: str) -> Decimal:
    places = MINOR_UNITS.get(currency, 2)
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


dumps = wire.dumps


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


class ApiError(Exception):
    """A refusal; rendered per framework version."""

    def __init__(self, status: int, message: str, *, code: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.path = status, message, code, path


TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 415: "Unsupported Media Type"}


def error_response(exc: ApiError, version: int) -> Response:
    if version < 4:
        text = f"{exc.code}: {exc.message}" if exc.code else exc.message
        return PlainTextResponse(text, status_code=exc.status)
    detail: dict[str, Any] = {"detail": exc.message}
    if exc.code:
        detail["o:errorCode"] = exc.code
    if exc.path:
        detail["o:errorPath"] = exc.path
    return JSON({"type": "http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html",
                 "title": TITLES.get(exc.status, "Error"), "status": str(exc.status),
                 "o:errorDetails": [detail]}, status_code=exc.status,
                media_type="application/vnd.oracle.adf.error+json")


def bad(message: str, path: str = "", code: str = "") -> ApiError:
    return ApiError(400, message, path=path, code=code)


def to_amount(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise bad(f"The value of the attribute {path} isn't a valid number.", path)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise bad(f"The value of the attribute {path} isn't a valid number.", path) from None
    if not amount.is_finite():
        raise bad(f"The value of the attribute {path} isn't a valid number.", path)
    return amount


def to_date(value: Any, path: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise bad(f"The value {value} of the attribute {path} isn't a valid date (YYYY-MM-DD).",
                  path) from None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def too_many(retry_after: float | None) -> Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else {}
    return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return JSON({"error": error, "error_description": description}, status_code=status)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body(), parse_float=Decimal)
    except ValueError:
        raise bad("The request payload isn't valid JSON.") from None

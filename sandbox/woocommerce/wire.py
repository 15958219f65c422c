"""WordPress on the wire: error bodies, PHP-style JSON, parameter coercion, dates, and small text helpers."""
from __future__ import annotations

import json
import re
import secrets
import string
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Iterable

from starlette.responses import Response

from sandbox.woocommerce.constants import ADDRESS_FIELDS, CENT, ZERO


# --------------------------------------------------------------------------------------------
# Errors, JSON, money, dates
# --------------------------------------------------------------------------------------------

class ApiError(Exception):
    """A WP_Error: ``{code, message, data: {status, ...}}``."""

    def __init__(self, status: int, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data
        self.headers: dict[str, str] = {}

    def body(self) -> dict:
        return {"code": self.code, "message": self.message, "data": {"status": self.status, **self.data}}


def invalid_param(errors: dict[str, str]) -> ApiError:
    return ApiError(400, "rest_invalid_param", "Invalid parameter(s): " + ", ".join(errors),
                    params=errors)


def php_json(data: Any) -> bytes:
    """``wp_json_encode``: compact, ``\\/`` for slashes, ``\\uXXXX`` for non-ASCII."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode()


def wp_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(php_json(data), status_code=status, headers=headers,
                    media_type="application/json; charset=UTF-8")


def error_response(err: ApiError) -> Response:
    return wp_response(err.body(), err.status, err.headers)


def to_decimal(value: Any, name: str = "amount") -> Decimal:
    if value is None or value == "":
        return ZERO
    if isinstance(value, bool):
        raise invalid_param({name: f"{name} is not of type number."})
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid_param({name: f"{name} is not of type number."}) from None
    if not result.is_finite():
        raise invalid_param({name: f"{name} is not of type number."})
    return result


def round2(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def money(value: Decimal) -> str:
    """Store money: a string with two decimals."""
    q = round2(value)
    return "0.00" if q == 0 else f"{q:.2f}"


def trimmed(value: Decimal) -> str:
    """Stored tax amounts come back like PHP prints floats: ``"1.8"``, ``"2"``."""
    q = round2(value)
    if q == 0:
        return "0"
    return format(q.normalize(), "f")


def number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def to_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise invalid_param({name: f"{name} is not of type integer."})
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise invalid_param({name: f"{name} is not of type integer."}) from None


def wp_list(items: Iterable[str]) -> str:
    """``wp_sprintf_l``: "a, b, and c"."""
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def fmt_date(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S") if value else None


def parse_iso(value: str) -> datetime:
    text = value.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------------------------
# Small pure helpers for the store
# --------------------------------------------------------------------------------------------

def random_token(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def merge_address(current: dict, update: dict | None, *, billing: bool) -> dict:
    keys = (*ADDRESS_FIELDS, "email", "phone") if billing else (*ADDRESS_FIELDS, "phone")
    merged = {k: current.get(k, "") for k in keys}
    for key, value in (update or {}).items():
        if key in keys:
            merged[key] = "" if value is None else str(value)
    return merged


def is_number(value: Any) -> bool:
    try:
        return value not in (None, "") and not isinstance(value, bool) and Decimal(str(value)).is_finite()
    except InvalidOperation:
        return False


def wp_specialchars_decode(text: str) -> str:
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#039;", "'"),
                         ("&#x27;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text

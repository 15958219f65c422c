"""Exact Online on the wire: the OData envelope, JSON with exact decimals, ``/Date(ms)/`` and the error
bodies."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.responses import Response

from sandbox import wire


DEFAULT_DIVISION = 123456
CHAIN_DAYS = 30
SAFE = "$',/()"  # kept as they are in a __next link (``$skiptoken=guid'…'``)


# --------------------------------------------------------------------------- wire format

dumps = wire.dumps


class JSON(Response):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def odata_error(status: int, message: str, headers: dict | None = None) -> JSON:
    return JSON({"error": {"code": "", "message": {"lang": "", "value": message}}},
                status_code=status, headers=headers)


def oauth_error(status: int, error: str, description: str = "", headers: dict | None = None) -> JSON:
    body = {"error": error} | ({"error_description": description} if description else {})
    return JSON(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def ms_date(epoch: float) -> str:
    return f"/Date({int(epoch * 1000)})/"


def minor_places(currency: str) -> Decimal:
    return Decimal(1).scaleb(-wire.minor_unit(currency))


def rounded(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_places(currency), rounding=ROUND_HALF_UP)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

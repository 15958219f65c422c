"""Wire plumbing every simulator shares (never the clients'): JSON with exact decimal
amounts, and the minor units of currencies."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

ZERO_DECIMAL_CURRENCIES = {"JPY", "KRW", "VND", "CLP", "ISK", "PYG", "UGX", "XAF", "XOF"}
THREE_DECIMAL_CURRENCIES = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}


def minor_unit(currency: str) -> int:
    code = currency.upper()
    return 0 if code in ZERO_DECIMAL_CURRENCIES else 3 if code in THREE_DECIMAL_CURRENCIES else 2


def dumps(obj: Any, datetime_text: Callable[[datetime], str] | None = None) -> str:
    """JSON text with Decimals written as exact numbers (the stdlib would need floats);
    ``datetime_text`` renders datetimes the way the simulated system does."""
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v, datetime_text)}"
                              for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v, datetime_text) for v in obj) + "]"
    if datetime_text is not None and isinstance(obj, datetime):
        return json.dumps(datetime_text(obj))
    return json.dumps(obj)

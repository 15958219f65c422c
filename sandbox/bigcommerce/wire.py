"""BigCommerce on the wire: constants, the error bodies of v2 and v3, money rounding and JSON with
exact decimals."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sandbox.bigcommerce.dates import v2_text, v3_text


ERROR_TYPE = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"
UNAUTHORIZED = ("Unauthorized - the v3 Auth client ID or token in the request are not a valid "
                "combination for this store.")
CENT = Decimal("0.01")
ZERO = Decimal(0)
MAX_LIMIT = 250
STATUSES = {0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped", 4: "Refunded",
            5: "Cancelled", 6: "Declined", 7: "Awaiting Payment", 8: "Awaiting Pickup",
            9: "Awaiting Shipment", 10: "Completed", 11: "Awaiting Fulfillment",
            12: "Manual Verification Required", 13: "Disputed", 14: "Partially Refunded"}
RETRY_SCHEDULE = (60, 180, 300, 600, 900, 1800, 3600, 7200, 21600, 50400, 86400)
TAX_CLASSES = {0: "Default Tax Class", 1: "Non-Taxable Products", 2: "Reduced Rate", 3: "Shipping"}
EU = ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
      "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")
US_STATES = {"California": "CA", "New York": "NY", "Texas": "TX", "Oregon": "OR",
             "Washington": "WA"}
DEFAULT_TAX_RATES = [
    {"id": 1, "name": "CA Sales Tax", "sales_tax_id": "CA-SALES-TAX", "rate": "8.25",
     "tax_class_ids": [0], "countries": ["US"], "states": ["CA"], "shipping": True},
    {"id": 2, "name": "CA Reduced Rate", "sales_tax_id": "CA-REDUCED-RATE", "rate": "2.5",
     "tax_class_ids": [2], "countries": ["US"], "states": ["CA"], "shipping": False},
    {"id": 3, "name": "VAT", "sales_tax_id": "EU-VAT", "rate": "20", "tax_class_ids": [0],
     "countries": list(EU), "states": [], "shipping": True},
]
GATEWAYS = {  # gateway -> (transaction method, order payment_method, offline)
    "braintree": ("credit_card", "Credit Card", False),
    "paypalexpress": ("electronic_wallet", "PayPal", False),
    "stripe": ("credit_card", "Credit Card", False),
    "testgateway": ("credit_card", "Test Payment Gateway", False),
    "bankdeposit": ("offline", "Bank Deposit", True),
    "cod": ("offline", "Cash on Delivery", True),
    "giftcertificate": ("gift_certificate", "Gift Certificate", False),
    "storecredit": ("store_credit", "Store Credit", False),
}
# Tenders the store itself holds: taken in full at checkout (never authorized), and a part of
# the order total only when another gateway pays the rest (split tender).
STORE_TENDERS = ("giftcertificate", "storecredit")


# --------------------------------------------------------------------------------------------
# Errors, money, dates, JSON
# --------------------------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, title: str, *, errors: dict | None = None,
                 wrap_data: bool = False, headers: dict | None = None,
                 media_type: str = "application/json") -> None:
        super().__init__(title)
        self.status, self.title, self.errors = status, title, errors
        self.wrap_data, self.headers, self.media_type = wrap_data, headers or {}, media_type

    def body(self, version: str) -> Any:
        if version == "v2":
            return [{"status": self.status, "message": self.title}]
        entry: dict[str, Any] = {"status": self.status, "title": self.title, "type": ERROR_TYPE}
        if self.errors is not None:
            entry["errors"] = self.errors
        return {"data": [entry]} if self.wrap_data else entry


def q2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def dec(value: Any, name: str) -> Decimal:
    try:
        if isinstance(value, float):
            value = repr(value)
        result = Decimal(str(value))
    except (InvalidOperation, TypeError, ValueError):
        raise ApiError(400, f"The field '{name}' is invalid.") from None
    if not result.is_finite():
        raise ApiError(400, f"The field '{name}' is invalid.")
    return result


def money4(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.0001")), "f")


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _encode(value: Any, v2: bool) -> str:
    if isinstance(value, Decimal):
        return json.dumps(money4(value)) if v2 else format(value, "f")
    if isinstance(value, datetime):
        return json.dumps(v2_text(value) if v2 else v3_text(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v, v2)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v, v2) for v in value) + "]"
    return json.dumps(value)


def dumps(data: Any, version: str) -> bytes:
    """v2 money as 4-decimal strings and RFC-2822 dates; v3 money as exact numbers, ISO dates."""
    return _encode(data, version == "v2").encode()


def compact_json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=False, default=str).encode()

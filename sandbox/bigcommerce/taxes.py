"""Tax rates by address and class, and the split of amounts into tax and net."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from sandbox.bigcommerce.wire import CENT, US_STATES, ZERO, q2

if TYPE_CHECKING:
    from sandbox.bigcommerce.model import Settings


# --------------------------------------------------------------------------------------------
# Pricing
# --------------------------------------------------------------------------------------------

def rates_for(settings: Settings, tax_class_id: int, country: str, state: str, *,
              shipping: bool = False) -> list[dict]:
    state_code = US_STATES.get(state, state)
    out = []
    for rate in settings.tax_rates:
        if tax_class_id not in rate.get("tax_class_ids", [0]):
            continue
        if shipping and not rate.get("shipping", True):
            continue
        if rate.get("countries") and country not in rate["countries"]:
            continue
        if rate.get("states") and state_code not in rate["states"]:
            continue
        out.append(rate)
    return out


def split_tax(amount: Decimal, rates: list[dict], inclusive: bool) -> tuple[Decimal, dict[int, Decimal]]:
    """(net, tax per rate id) of an amount in the store's price basis, rounded per rate."""
    total_rate = sum((Decimal(str(r["rate"])) for r in rates), ZERO)
    if not rates or total_rate == 0:
        return amount, {}
    if not inclusive:
        return amount, {r["id"]: q2(amount * Decimal(str(r["rate"])) / 100) for r in rates}
    tax_total = q2(amount * total_rate / (100 + total_rate))
    taxes, given = {}, ZERO
    for i, r in enumerate(rates):
        share = (tax_total - given if i == len(rates) - 1
                 else q2(amount * Decimal(str(r["rate"])) / (100 + total_rate)))
        taxes[r["id"]] = share
        given += share
    return amount - tax_total, taxes


def allocate(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split ``total`` in cents proportionally to ``weights`` (largest remainder)."""
    cents = int((total / CENT).to_integral_value(ROUND_HALF_UP))
    whole = sum(weights, ZERO)
    if whole <= 0 or cents <= 0:
        return [ZERO] * len(weights)
    raw = [Decimal(cents) * w / whole for w in weights]
    base = [int(r) for r in raw]
    rest = cents - sum(base)
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - base[i], reverse=True)[:rest]:
        base[i] += 1
    return [Decimal(b) * CENT for b in base]

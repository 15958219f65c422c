"""Tax rates (§4) and how core applies them: matching by location and class, inclusive and exclusive tax."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sandbox.woocommerce.constants import ZERO
from sandbox.woocommerce.wire import round2


# --------------------------------------------------------------------------------------------
# Taxes
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaxRate:
    id: int
    code: str
    rate: Decimal
    label: str
    shipping: bool
    compound: bool
    tax_class: str
    priority: int
    countries: tuple[str, ...]
    state: str

    def matches(self, tax_class: str, country: str, state: str) -> bool:
        return (self.tax_class == tax_class
                and (not self.countries or country in self.countries)
                and (not self.state or self.state == state))


def parse_tax_rates(config: dict) -> list[TaxRate]:
    rates = []
    for code, spec in config.items():
        suffix = code.rsplit("-", 1)[-1]
        country = spec.get("country") or ()
        rates.append(TaxRate(
            id=int(spec["id"]), code=code, rate=Decimal(str(spec["rate"])),
            label=spec.get("label", "Tax"), shipping=bool(spec.get("shipping", True)),
            compound=bool(spec.get("compound", False)),
            tax_class=spec.get("class", spec.get("tax_class", "")),
            priority=int(spec.get("priority", suffix if suffix.isdigit() else 1)),
            countries=(country,) if isinstance(country, str) else tuple(country),
            state=spec.get("state", "")))
    return rates


def select_rates(rates: list[TaxRate], tax_class: str, location: tuple[str, str]) -> list[TaxRate]:
    """The most specific matching rate of each priority, in priority order."""
    matching = [r for r in rates if r.matches(tax_class, *location)]
    matching.sort(key=lambda r: (r.priority, -(bool(r.countries) + bool(r.state)), r.id))
    chosen: dict[int, TaxRate] = {}
    for rate in matching:
        chosen.setdefault(rate.priority, rate)
    return list(chosen.values())


def calc_exclusive(amount: Decimal, rates: list[TaxRate]) -> dict[int, Decimal]:
    taxes = {r.id: amount * r.rate / 100 for r in rates if not r.compound}
    for rate in rates:
        if rate.compound:
            taxes[rate.id] = (amount + sum(taxes.values(), ZERO)) * rate.rate / 100
    return taxes


def calc_inclusive(amount: Decimal, rates: list[TaxRate]) -> dict[int, Decimal]:
    taxes: dict[int, Decimal] = {}
    net = amount
    for rate in reversed([r for r in rates if r.compound]):
        taxes[rate.id] = net - net / (1 + rate.rate / 100)
        net -= taxes[rate.id]
    regular = [r for r in rates if not r.compound]
    divisor = 1 + sum((r.rate for r in regular), ZERO) / 100
    for rate in regular:
        taxes[rate.id] = rate.rate / 100 / divisor * net
    return taxes


def calc_tax(amount: Decimal, rates: list[TaxRate], inclusive: bool) -> dict[int, Decimal]:
    return calc_inclusive(amount, rates) if inclusive else calc_exclusive(amount, rates)


def rounded(taxes: dict[int, Decimal]) -> dict[int, Decimal]:
    return {k: round2(v) for k, v in taxes.items()}

"""Totals as WooCommerce core computes them: tax rates by location, per-line rounding, coupon split in
cents."""
from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Callable

from sandbox.woocommerce.constants import ZERO
from sandbox.woocommerce.model import TaxLine
from sandbox.woocommerce.taxes import TaxRate, calc_exclusive, calc_tax, rounded, select_rates
from sandbox.woocommerce.wire import round2

if TYPE_CHECKING:
    from sandbox.woocommerce.model import CouponLine, LineItem, Order


# --------------------------------------------------------------------------------------------
# Order pricing (pure functions over an Order)
# --------------------------------------------------------------------------------------------

RatesFor = Callable[[str], list[TaxRate]]


def _cents(value: Decimal) -> int:
    return int((value * 100).quantize(Decimal(1), ROUND_HALF_UP))


class DiscountAllocator:
    """``WC_Discounts``: coupons split over items in cents, remainders a cent per unit."""

    def __init__(self, items: list[LineItem], prices: dict[int, int]) -> None:
        self.prices = prices
        self.remaining = dict(prices)
        self.items = sorted((i for i in items if prices[i.id] > 0 and i.quantity > 0),
                            key=lambda i: prices[i.id] * i.quantity, reverse=True)

    def apply(self, coupon: CouponLine) -> dict[int, int]:
        alloc: dict[int, int] = defaultdict(int)
        if coupon.discount_type == "percent":
            self._percent(alloc, coupon.nominal)
        elif coupon.discount_type == "fixed_product":
            self._fixed_product(alloc, self.items, _cents(coupon.nominal))
        else:
            self._fixed_cart(alloc, _cents(coupon.nominal))
        for item_id, cents in alloc.items():
            self.remaining[item_id] -= cents
        return dict(alloc)

    def _available(self, alloc: dict[int, int], item: LineItem) -> int:
        return self.remaining[item.id] - alloc[item.id]

    def _percent(self, alloc: dict[int, int], percent: Decimal) -> None:
        total = cart = 0
        for item in self.items:
            price = self.prices[item.id]
            share = int((price * percent / 100).to_integral_value(ROUND_FLOOR))
            share = min(self._available(alloc, item), share)
            alloc[item.id] += share
            total += share
            cart += price
        whole = int((cart * percent / 100).quantize(Decimal(1), ROUND_HALF_UP))
        if total < whole:
            self._remainder(alloc, whole - total)

    def _fixed_product(self, alloc: dict[int, int], items: list[LineItem], per_unit: int) -> int:
        total = 0
        for item in items:
            share = min(self._available(alloc, item), per_unit * item.quantity)
            alloc[item.id] += share
            total += share
        return total

    def _fixed_cart(self, alloc: dict[int, int], amount: int) -> int:
        count = sum(i.quantity for i in self.items)
        if not count or amount <= 0:
            return 0
        per_unit = amount // count
        if per_unit > 0:
            total = self._fixed_product(alloc, self.items, per_unit)
            if 0 < total < amount:
                total += self._fixed_cart(alloc, amount - total)
            return total
        return self._remainder(alloc, amount)

    def _remainder(self, alloc: dict[int, int], amount: int) -> int:
        total = 0
        for item in self.items:
            for _ in range(item.quantity):
                share = min(self._available(alloc, item), 1)
                alloc[item.id] += share
                total += share
                if total >= amount:
                    return total
        return total


def apply_coupons(order: Order, item_rates: dict[int, list[TaxRate]]) -> None:
    """``recalculate_coupons``: reset line totals to subtotals, then take each coupon off."""
    inclusive = order.prices_include_tax
    prices = {i.id: _cents(i.subtotal + (sum(i.subtotal_taxes.values(), ZERO) if inclusive else ZERO))
              for i in order.line_items}
    allocator = DiscountAllocator(order.line_items, prices)
    taken: dict[int, Decimal] = defaultdict(Decimal)
    for coupon in order.coupon_lines:
        alloc = allocator.apply(coupon)
        discount, discount_tax = Decimal(sum(alloc.values())) / 100, ZERO
        for item in order.line_items:
            amount = Decimal(alloc.get(item.id, 0)) / 100
            if not amount:
                continue
            tax = ZERO
            if item.taxable:
                tax = round2(sum(calc_tax(amount, item_rates[item.id], inclusive).values(), ZERO))
            discount_tax += tax
            if inclusive:
                discount -= tax
            taken[item.id] += amount - tax if inclusive else amount
        coupon.discount, coupon.discount_tax = round2(discount), discount_tax
    for item in order.line_items:
        item.total = max(ZERO, round2(item.subtotal - taken[item.id]))


def price_order(order: Order, rates: list[TaxRate], location: tuple[str, str],
                next_id: Callable[[], int]) -> None:
    """``WC_Order::calculate_totals`` with taxes rounded per line (core default)."""
    def rates_for(tax_class: str) -> list[TaxRate]:
        return select_rates(rates, tax_class, location)

    item_rates = {i.id: rates_for(i.tax_class) if i.taxable else [] for i in order.line_items}
    for item in order.line_items:
        item.subtotal_taxes = rounded(calc_exclusive(item.subtotal, item_rates[item.id]))
    if order.coupon_lines:
        apply_coupons(order, item_rates)
    else:
        for item in order.line_items:
            item.total = item.subtotal if item.custom_total is None else item.custom_total
    for item in order.line_items:
        item.taxes = rounded(calc_exclusive(item.total, item_rates[item.id]))
    for fee in order.fee_lines:
        fee_rates = rates_for(fee.tax_class) if fee.tax_status == "taxable" else []
        fee.taxes = rounded(calc_exclusive(fee.total, fee_rates))
    shipping_rates = [r for r in rates_for(shipping_tax_class(order)) if r.shipping]
    for line in order.shipping_lines:
        line.taxes = rounded(calc_exclusive(line.total, shipping_rates))
    _sum_taxes(order, {r.id: r for r in rates}, next_id)
    _sum_totals(order)


def shipping_tax_class(order: Order) -> str:
    classes = [i.tax_class for i in order.line_items if i.taxable]
    return "" if not classes or "" in classes else classes[0]


def _sum_taxes(order: Order, rates: dict[int, TaxRate], next_id: Callable[[], int]) -> None:
    cart: dict[int, Decimal] = defaultdict(Decimal)
    shipping: dict[int, Decimal] = defaultdict(Decimal)
    for line in [*order.line_items, *order.fee_lines]:
        for rate_id, tax in line.taxes.items():
            cart[rate_id] += tax
    for line in order.shipping_lines:
        for rate_id, tax in line.taxes.items():
            shipping[rate_id] += tax
    known = {t.rate.id: t.rate for t in order.tax_lines} | rates
    order.tax_lines = [TaxLine(next_id(), known.get(rid) or unknown_rate(rid), cart.get(rid, ZERO),
                               shipping.get(rid, ZERO))
                       for rid in dict.fromkeys([*cart, *shipping])]
    order.cart_tax = round2(sum(cart.values(), ZERO))
    order.shipping_tax = round2(sum(shipping.values(), ZERO))
    order.total_tax = order.cart_tax + order.shipping_tax


def unknown_rate(rate_id: int) -> TaxRate:
    """A rate id no longer configured (a refund may name one): shown with a neutral code."""
    return TaxRate(rate_id, f"TAX-{rate_id}", ZERO, "Tax", True, False, "", 1, (), "")


def _sum_totals(order: Order) -> None:
    subtotal = sum((i.subtotal for i in order.line_items), ZERO)
    total = sum((i.total for i in order.line_items), ZERO)
    subtotal_tax = sum((sum(i.subtotal_taxes.values(), ZERO) for i in order.line_items), ZERO)
    line_tax = sum((sum(i.taxes.values(), ZERO) for i in order.line_items), ZERO)
    fees = sum((f.total for f in order.fee_lines), ZERO)
    order.shipping_total = round2(sum((s.total for s in order.shipping_lines), ZERO))
    order.discount_total = round2(subtotal - total)
    order.discount_tax = round2(subtotal_tax - line_tax)
    order.total = round2(total + fees + order.shipping_total + order.cart_tax + order.shipping_tax)

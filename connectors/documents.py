"""From canonical orders and refunds to the ERP documents that book them.

One place for the accounting rules every ERP shares: item and tax mapping, the store's
computed discounts and tax posted as they are, the totals check to the cent before posting,
the rounding line within tolerance, refunds as credit memos, edits after posting as explicit
adjustments. ERP connectors only translate an :class:`ErpDocument` into their wire format.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Literal, TypeVar

from pydantic import BaseModel, Field

from connectors.errors import MappingMissing, Rejected, TotalsMismatch
from connectors.model import (ZERO, ErpDocumentRef, Order, OrderLine, Payment, Refund,
                              RefundLine, minor_unit, quantize)

UNIT_PRICE_PLACES = Decimal("0.000001")

# A connection's customer-matching policy, the merchant's choice: "own" books every buyer to a
# customer ml-connector created, keyed by its external id (never to one found by e-mail or
# name); "email" books a buyer to an existing customer with the same e-mail (compared
# case-insensitively) when there is one, and never changes that customer.
CustomerMatch = Literal["own", "email"]
CUSTOMER_MATCHES: tuple[CustomerMatch, ...] = ("own", "email")


class LineRule(BaseModel):
    """Where a line is booked, for ERPs that want it per line (Oracle's distributions, Exact's
    GL account / VAT code / cost center). The first rule whose patterns all match wins;
    an empty pattern matches anything. ``sku`` is a glob (``SHIRT-*``)."""

    sku: str = ""
    category: str = ""
    kind: str = ""  # "product", "shipping", "fee", "adjustment", "rounding"
    gl_account: str = ""
    cost_center: str = ""

    def matches(self, sku: str | None, category: str, kind: str) -> bool:
        return ((not self.sku or fnmatchcase(sku or "", self.sku))
                and (not self.category or self.category.lower() == category.lower())
                and (not self.kind or self.kind == kind))


class Mappings(BaseModel):
    """Per-connection mapping from store vocabulary to ERP vocabulary."""

    sku_to_item: dict[str, str] = Field(default_factory=dict)  # overrides; identity otherwise
    tax_codes: dict[str, str] = Field(default_factory=dict)  # store tax rate code -> ERP tax id
    shipping_item: str = "SHIPPING"
    fee_item: str = "FEE"
    adjustment_item: str = "ADJUSTMENT"  # amount-only refunds, edits after posting
    rounding_item: str = "ROUNDING"
    rounding_tolerance: Decimal = Decimal("0.05")
    document_prefix: str = "WC-"  # external reference = prefix + store order id
    line_rules: list[LineRule] = Field(default_factory=list)  # first match wins
    payment_methods: dict[str, str] = Field(default_factory=dict)  # store method -> ERP method
    default_payment_method: str = ""  # for store methods not in ``payment_methods``
    post_receipts: bool = True  # book the store's captured payments as ERP receipts
    # The ERP customer every guest checkout is booked to (Acumatica CustomerID, Oracle account
    # number, Exact account code), e.g. a "web shop guests" account; "" gives each guest an ERP
    # customer of their own, matched by e-mail or created.
    guest_customer: str = ""
    # Which existing ERP customer a buyer may be booked to (see CustomerMatch); a customer
    # ml-connector did not create is never written to, whichever is chosen.
    customer_match: CustomerMatch = "own"

    def item_for(self, line: OrderLine | None, sku: str | None, kind: str, name: str) -> str:
        if kind == "shipping":
            return self.shipping_item
        if kind == "fee":
            return self.fee_item
        if not sku:
            raise MappingMissing(
                f"line '{name}' has no SKU",
                resolution=f"give the product '{name}' a SKU in the store, then replay the order")
        return self.sku_to_item.get(sku, sku)

    def tax_code_for(self, rate_code: str) -> str:
        try:
            return self.tax_codes[rate_code]
        except KeyError:
            raise MappingMissing(
                f"tax rate '{rate_code}' has no ERP tax id",
                resolution=f"map tax rate {rate_code} to an ERP tax id "
                           f"(ml-connector connections map CONNECTION --tax {rate_code}=TAXID)",
            ) from None

    def rule_for(self, sku: str | None, category: str, kind: str) -> LineRule | None:
        return next((r for r in self.line_rules if r.matches(sku, category, kind)), None)

    def payment_method_for(self, method: str) -> str:
        found = self.payment_methods.get(method) or self.default_payment_method
        if not found:
            raise MappingMissing(
                f"payment method '{method or '(none)'}' has no ERP payment method",
                resolution=f"map payment method {method or '(none)'} to an ERP payment method "
                           f"(ml-connector connections map CONNECTION --payment {method}=METHOD)")
        return found


def require_rule(line: "DocumentLine", system: str) -> "LineRule":
    """The GL rule of a line for an ERP that cannot post without one (a parked order names
    the fix otherwise). ERP connectors call this; the rule itself was chosen by the builder."""
    if line.gl_account:
        return LineRule(gl_account=line.gl_account, cost_center=line.cost_center)
    what = f"SKU {line.sku}" if line.sku else f"{line.kind} line '{line.description}'"
    pattern = line.sku or "*"
    raise MappingMissing(
        f"{what} matches no GL account rule",
        resolution=f"add a {system} GL rule for {what} (ml-connector connections map "
                   f"CONNECTION --gl-rule sku={pattern},account=ACCOUNT[,cost_center=CC]), "
                   f"then the parked order is replayed")


T = TypeVar("T")


def erp_type_of(kind: str, types: Mapping[str, T], label: str, system: str) -> T:
    """The ERP's own document type for a kind of document, from the connector's table; a kind
    it does not post is refused (never posted as something else)."""
    try:
        return types[kind]
    except KeyError:
        raise Rejected(f"the {label} connector does not post {kind} documents",
                       system=system) from None


class DocumentLine(BaseModel):
    item_id: str
    description: str = ""
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal = ZERO
    amount: Decimal  # quantity * unit_price - discount, rounded: excl. tax
    source_line_id: str | None = None
    sku: str | None = None
    kind: str = "product"  # "product", "shipping", "fee", "adjustment", "rounding"
    category: str = ""
    tax: Decimal = ZERO  # the store's tax on this line (already in the document's taxes)
    tax_code: str = ""  # the ERP tax id of this line's (first) tax rate, "" when untaxed
    gl_account: str = ""  # from the connection's line rules; "" when no rule matched
    cost_center: str = ""


class DocumentTax(BaseModel):
    tax_code: str
    taxable_amount: Decimal
    amount: Decimal


DocKind = Literal["invoice", "credit_memo", "adjustment_invoice"]


class ErpDocument(BaseModel):
    kind: DocKind
    external_ref: str
    order_number: str
    store_order_id: str
    currency: str
    date: date
    customer_key: str
    description: str = ""
    lines: list[DocumentLine]
    taxes: list[DocumentTax] = Field(default_factory=list)
    applies_to: ErpDocumentRef | None = None  # the invoice a credit memo reduces

    @property
    def net_total(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), ZERO)

    @property
    def tax_total(self) -> Decimal:
        return sum((t.amount for t in self.taxes), ZERO)

    @property
    def total(self) -> Decimal:
        return self.net_total + self.tax_total


class PostedTotals(BaseModel):
    """What an order's documents booked so far: the base for edit adjustments."""

    net: Decimal = ZERO
    total: Decimal = ZERO
    tax_by_code: dict[str, Decimal] = Field(default_factory=dict)

    @classmethod
    def of(cls, doc: ErpDocument, sign: int = 1) -> "PostedTotals":
        taxes: dict[str, Decimal] = {}
        for t in doc.taxes:
            taxes[t.tax_code] = taxes.get(t.tax_code, ZERO) + sign * t.amount
        return cls(net=sign * doc.net_total, total=sign * doc.total, tax_by_code=taxes)

    def plus(self, other: "PostedTotals") -> "PostedTotals":
        taxes = dict(self.tax_by_code)
        for code, amount in other.tax_by_code.items():
            taxes[code] = taxes.get(code, ZERO) + amount
        return PostedTotals(net=self.net + other.net, total=self.total + other.total,
                            tax_by_code=taxes)


def _line(item: str, name: str, qty: Decimal, gross: Decimal, net: Decimal, currency: str,
          source: str | None, sku: str | None, mappings: Mappings, *, kind: str = "product",
          category: str = "", tax: Decimal = ZERO, rate_codes: list[str] | None = None
          ) -> DocumentLine:
    qty = qty if qty > 0 else Decimal(1)
    unit = (gross / qty).quantize(UNIT_PRICE_PLACES)
    extended, booked = quantize(qty * unit, currency), quantize(net, currency)
    tax_code = mappings.tax_code_for(rate_codes[0]) if rate_codes and tax else ""
    rule = mappings.rule_for(sku, category, kind)
    return DocumentLine(item_id=item, description=name, quantity=qty, unit_price=unit,
                        discount=extended - booked, amount=booked,
                        source_line_id=source, sku=sku, kind=kind, category=category,
                        tax=quantize(tax, currency), tax_code=tax_code,
                        gl_account=rule.gl_account if rule else "",
                        cost_center=rule.cost_center if rule else "")


def _service_line(item: str, name: str, amount: Decimal, kind: str,
                  mappings: Mappings) -> DocumentLine:
    """A line ml-connector adds itself (rounding, amount-only refund, edit adjustment)."""
    rule = mappings.rule_for(None, "", kind)
    return DocumentLine(item_id=item, description=name, quantity=Decimal(1), unit_price=amount,
                        amount=amount, kind=kind, gl_account=rule.gl_account if rule else "",
                        cost_center=rule.cost_center if rule else "")


def _taxes(amounts: dict[str, tuple[Decimal, Decimal]], mappings: Mappings,
           currency: str) -> list[DocumentTax]:
    out: dict[str, DocumentTax] = {}
    for rate_code, (taxable, amount) in amounts.items():
        if amount == 0 and taxable == 0:
            continue
        code = mappings.tax_code_for(rate_code)
        prev = out.get(code)
        out[code] = DocumentTax(
            tax_code=code,
            taxable_amount=quantize(taxable + (prev.taxable_amount if prev else ZERO), currency),
            amount=quantize(amount + (prev.amount if prev else ZERO), currency))
    return list(out.values())


def _tax_by_rate(lines: list, tax_lines: list) -> dict[str, tuple[Decimal, Decimal]]:
    """Taxable base and tax per store rate. The store's tax lines are authoritative for the
    amounts; the lines that carry each rate give the taxable base."""
    taxable: dict[str, Decimal] = {}
    for ln in lines:
        base = ln.total if isinstance(ln, OrderLine) else ln.amount
        for code in ln.tax_rate_codes:
            taxable[code] = taxable.get(code, ZERO) + base
    if tax_lines:
        return {t.rate_code: (t.taxable_amount if t.taxable_amount is not None
                              else taxable.get(t.rate_code, ZERO), t.amount) for t in tax_lines}
    amounts: dict[str, Decimal] = {}
    for ln in lines:
        if ln.tax and ln.tax_rate_codes:
            amounts[ln.tax_rate_codes[0]] = amounts.get(ln.tax_rate_codes[0], ZERO) + ln.tax
    return {code: (taxable.get(code, ZERO), amt) for code, amt in amounts.items()}


def _balance(doc: ErpDocument, expected: Decimal, mappings: Mappings, what: str) -> ErpDocument:
    """Totals check at the store's precision; the ERP's total must equal the store's exactly.

    The document books every amount at the currency's minor unit (the precision Acumatica,
    Oracle Fusion and Exact Online keep: 0 places for JPY, 3 for KWD/BHD), so lines and tax
    rounded one by one may drift from the store's total by whole ERP units: that drift goes to
    the rounding item, within the connection's tolerance (widened to half an ERP unit per
    rounded amount, since that is all per-line rounding can produce, e.g. 1 JPY over two
    lines). The difference is never rounded before the check. A store total the ERP cannot
    hold (JPY 72.95 against a 0-decimal JPY) parks the order instead of becoming 73: an
    invoice that silently differs from what the store charged cannot be reconciled, and a
    rounding line cannot carry 0.05 JPY either. The fix is in the store (whole-unit totals).
    """
    diff = expected - doc.total
    if diff == 0:
        return doc
    cur, unit_places = doc.currency, minor_unit(doc.currency)
    if quantize(diff, cur) != diff:
        raise TotalsMismatch(
            f"{what}: store total {expected} {cur} has more decimals than {cur} has in the ERP "
            f"({unit_places}); booking it would make it {quantize(expected, cur)} {cur}",
            resolution=f"set the store to {unit_places} decimals for {cur} so it charges what the "
                       f"ERP can book, correct this order's total to the amount charged, then "
                       f"replay the order")
    unit = Decimal(1).scaleb(-unit_places)
    rounded = len(doc.lines) * 2 + len(doc.taxes)  # each line's amount and tax, each tax total
    tolerance = max(mappings.rounding_tolerance, unit * rounded / 2)
    if abs(diff) > tolerance:
        raise TotalsMismatch(
            f"{what}: store total {expected} {cur} but lines and tax add up to "
            f"{doc.total} (difference {diff})",
            resolution="correct the order in the store or raise the connection's rounding "
                       "tolerance, then replay the order")
    doc.lines.append(_service_line(mappings.rounding_item, "Rounding", quantize(diff, cur),
                                   "rounding", mappings))
    return doc


def build_invoice(order: Order, customer_key: str, mappings: Mappings) -> ErpDocument:
    """The invoice for a paid order: every line, the store's discounts and tax as computed."""
    if not order.lines:
        raise TotalsMismatch(f"order {order.number} has no lines",
                             resolution="check the order in the store, then replay it")
    lines = [
        _line(mappings.item_for(ln, ln.sku, ln.kind, ln.name), ln.name, ln.quantity, ln.subtotal,
              ln.total, order.currency, ln.line_id, ln.sku, mappings, kind=ln.kind,
              category=ln.category, tax=ln.tax, rate_codes=ln.tax_rate_codes)
        for ln in order.lines
    ]
    doc = ErpDocument(
        kind="invoice", external_ref=f"{mappings.document_prefix}{order.store_id}",
        order_number=order.number, store_order_id=order.store_id, currency=order.currency,
        date=(order.paid_at or order.created_at).date(), customer_key=customer_key,
        description=f"{order.store} order {order.number}", lines=lines,
        taxes=_taxes(_tax_by_rate(order.lines, order.tax_lines), mappings, order.currency))
    return _balance(doc, order.total, mappings, f"order {order.number}")


def _category_of(order: Order, line: RefundLine) -> str:
    return next((ln.category for ln in order.lines if ln.line_id == line.line_id), "")


def build_credit_memo(order: Order, refund: Refund, customer_key: str, invoice: ErpDocumentRef,
                      mappings: Mappings) -> ErpDocument:
    """A refund as a credit memo against the invoice: refunded lines as they were, and what
    the lines do not explain (amount-only refunds) on the adjustment item."""
    cur = order.currency
    lines = [
        _line(mappings.item_for(None, ln.sku, ln.kind, ln.name), ln.name, ln.quantity, ln.amount,
              ln.amount, cur, ln.line_id, ln.sku, mappings, kind=ln.kind,
              category=_category_of(order, ln), tax=ln.tax, rate_codes=ln.tax_rate_codes)
        for ln in refund.lines if ln.amount or ln.quantity
    ]
    taxes = _taxes(_tax_by_rate(refund.lines, refund.tax_lines), mappings, cur)
    explained = sum((ln.amount for ln in lines), ZERO) + sum((t.amount for t in taxes), ZERO)
    rest = quantize(refund.amount - explained, cur)
    if rest < 0:  # lines claim more than was paid back: book only what was paid back
        lines, taxes, rest = [], [], refund.amount
    if rest > 0:
        lines.append(_service_line(mappings.adjustment_item,
                                   f"Refund {refund.store_id}: {refund.reason}"[:255], rest,
                                   "adjustment", mappings))
    doc = ErpDocument(
        kind="credit_memo",
        external_ref=f"{mappings.document_prefix}{order.store_id}-R{refund.store_id}",
        order_number=order.number, store_order_id=order.store_id, currency=cur,
        date=refund.created_at.date(), customer_key=customer_key,
        description=f"Refund {refund.store_id} of {order.store} order {order.number}",
        lines=lines, taxes=taxes, applies_to=invoice)
    return _balance(doc, refund.amount, mappings, f"refund {refund.store_id}")


def build_adjustment(order: Order, posted: PostedTotals, customer_key: str,
                     invoice: ErpDocumentRef, mappings: Mappings, seq: int) -> ErpDocument | None:
    """An order edited after its invoice was posted: book the difference explicitly, as an
    additional invoice (increase) or a credit memo (decrease). None when nothing changed."""
    cur = order.currency
    delta = quantize(order.total - posted.total, cur)
    if delta == 0:
        return None
    sign = 1 if delta > 0 else -1
    now = _taxes(_tax_by_rate(order.lines, order.tax_lines), mappings, cur)
    tax_delta = {t.tax_code: t.amount for t in now}
    for code, amount in posted.tax_by_code.items():
        tax_delta[code] = tax_delta.get(code, ZERO) - amount
    net_delta = delta - sum(tax_delta.values(), ZERO)
    if all(v * sign >= 0 for v in tax_delta.values()) and net_delta * sign >= 0:
        taxes = [DocumentTax(tax_code=c, taxable_amount=ZERO, amount=abs(v))
                 for c, v in tax_delta.items() if v]
        net = abs(net_delta)
    else:
        taxes, net = [], abs(delta)
    lines = [_service_line(mappings.adjustment_item,
                           f"Adjustment {seq}: order {order.number} edited after posting", net,
                           "adjustment", mappings)] if net else []
    return ErpDocument(
        kind="adjustment_invoice" if sign > 0 else "credit_memo",
        external_ref=f"{mappings.document_prefix}{order.store_id}-A{seq}",
        order_number=order.number, store_order_id=order.store_id, currency=cur,
        date=order.modified_at.date(), customer_key=customer_key,
        description=f"Adjustment {seq} of {order.store} order {order.number}", lines=lines,
        taxes=taxes, applies_to=invoice if sign < 0 else None)


class ReceiptDocument(BaseModel):
    """A payment the store captured, as an ERP cash receipt applied to the order's invoice."""

    external_ref: str
    order_number: str
    store_order_id: str
    payment_id: str
    currency: str
    date: date
    customer_key: str
    amount: Decimal
    payment_method: str  # the ERP's payment method (mapped)
    reference: str = ""  # the processor's transaction id: the remittance reference
    description: str = ""
    applies_to: ErpDocumentRef

    kind: Literal["receipt"] = "receipt"


def receipt_due(order: Order, payment: Payment) -> bool:
    """Whether a captured payment books a receipt: a zero amount (a 100% coupon with free
    shipping) is nothing to book. The invoice alone records the sale; a 0.00 receipt is a
    document no ERP can release (Acumatica refuses it) and no bank statement matches."""
    return payment.amount != 0


def build_receipt(order: Order, payment: Payment, customer_key: str, invoice: ErpDocumentRef,
                  mappings: Mappings) -> ReceiptDocument:
    """The receipt of one captured payment, at the store's amount exactly: a payment the ERP's
    currency cannot hold parks (as its invoice would) instead of being rounded away."""
    what = f"payment {payment.store_id} of order {order.number}"
    if not receipt_due(order, payment):
        raise Rejected(f"{what} is zero: nothing to book")
    if quantize(payment.amount, order.currency) != payment.amount:
        raise TotalsMismatch(
            f"{what}: {payment.amount} {order.currency} has more decimals than "
            f"{order.currency} has in the ERP ({minor_unit(order.currency)})",
            resolution="correct the payment in the store to the amount charged, then replay "
                       "the order")
    return ReceiptDocument(
        external_ref=f"{mappings.document_prefix}{order.store_id}-P{payment.store_id}",
        order_number=order.number, store_order_id=order.store_id, payment_id=payment.store_id,
        currency=order.currency, date=(payment.paid_at or order.paid_at or order.created_at).date(),
        customer_key=customer_key, amount=quantize(payment.amount, order.currency),
        payment_method=mappings.payment_method_for(payment.method),
        reference=payment.reference or order.number,
        description=f"Payment {payment.store_id} of {order.store} order {order.number}",
        applies_to=invoice)


class RefundPaymentDocument(BaseModel):
    """The cash side of a refund: the money the store paid back to the buyer, as an ERP
    payment applied to the refund's credit document. Without it a refund of a paid invoice
    leaves the credit memo open, a credit on the customer's account that no longer exists."""

    external_ref: str  # the credit memo's reference + "-P"
    order_number: str
    store_order_id: str
    refund_id: str
    currency: str
    date: date
    customer_key: str
    amount: Decimal  # positive: what was paid back
    payment_method: str  # the ERP's payment method (mapped) the money went back through
    reference: str = ""  # the processor's transaction id of the original payment
    description: str = ""
    # The credit memo (credit note) of the refund; or the receipt whose unapplied balance the
    # refund left, when its memo settled the invoice before the payment was booked.
    applies_to: ErpDocumentRef

    kind: Literal["refund_payment"] = "refund_payment"


def refund_payment_ref(credit_memo_ref: str) -> str:
    """External reference of a refund's cash-back: its credit memo's, plus ``-P``."""
    return f"{credit_memo_ref}-P"


def build_refund_payment(order: Order, refund: Refund, customer_key: str,
                         credit_memo: ErpDocumentRef, mappings: Mappings,
                         paid_back: Decimal | None = None,
                         receipt: ErpDocumentRef | None = None) -> RefundPaymentDocument:
    """The cash-back of one refund, through the payment method the order was paid with (a card
    refund goes back to the card). ``paid_back``: the credit its memo still holds (the part of
    the refund that did not settle an open invoice balance), or what ``receipt`` holds
    unapplied; None: the whole refund. ``receipt``: the cash-back pays back that receipt's
    unapplied balance instead of the memo's credit (the memo settled the invoice before the
    payment came); its reference stays the memo's, so it is one cash-back per refund."""
    what = f"refund {refund.store_id} of order {order.number}"
    if refund.amount == 0:
        raise Rejected(f"{what} is zero: no money went back")
    if paid_back is not None and not 0 < paid_back <= refund.amount:
        raise Rejected(f"{what}: {paid_back} {order.currency} paid back is not within the "
                       f"refund's {refund.amount}")
    if quantize(refund.amount, order.currency) != refund.amount:
        raise TotalsMismatch(
            f"{what}: {refund.amount} {order.currency} has more decimals than "
            f"{order.currency} has in the ERP ({minor_unit(order.currency)})",
            resolution="correct the refund in the store to the amount paid back, then replay "
                       "the order")
    paid_with = next((p for p in order.payments if p.amount), None)
    method = paid_with.method if paid_with else order.payment_method
    memo_ref = (credit_memo.external_ref
                or f"{mappings.document_prefix}{order.store_id}-R{refund.store_id}")
    return RefundPaymentDocument(
        external_ref=refund_payment_ref(memo_ref), order_number=order.number,
        store_order_id=order.store_id, refund_id=refund.store_id, currency=order.currency,
        date=refund.created_at.date(), customer_key=customer_key,
        amount=quantize(refund.amount if paid_back is None else paid_back, order.currency),
        payment_method=mappings.payment_method_for(method),
        reference=(paid_with.reference if paid_with else "") or order.payment_reference
        or order.number,
        description=f"Refund {refund.store_id} of {order.store} order {order.number} paid back",
        applies_to=receipt or credit_memo)

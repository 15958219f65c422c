"""The REST representations of records (orders, refunds, customers, products, webhooks)."""
from __future__ import annotations

import copy
import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.woocommerce.constants import API_ROOT, CURRENCY_SYMBOLS, WC_VERSION, WEBHOOK_HOOKS, ZERO
from sandbox.woocommerce.products import variation_name
from sandbox.woocommerce.wire import fmt_date, money, number, slugify, trimmed

if TYPE_CHECKING:
    from sandbox.woocommerce.model import (CouponLine, Customer, FeeLine, LineItem, Order, Product, Refund,
                                           RefundItem, ShippingLine, TaxLine, Webhook)


class Views:
    """Records as the REST API shows them."""

    # ---- JSON views ------------------------------------------------------------------------
    def links(self, base: str, path: str, collection: str, **extra: str) -> dict:
        links = {"self": [{"href": f"{base}{API_ROOT}{path}"}],
                 "collection": [{"href": f"{base}{API_ROOT}{collection}"}]}
        for rel, href in extra.items():
            links[rel] = [{"href": f"{base}{API_ROOT}{href}"}]
        return links

    def order_json(self, order: Order, base: str) -> dict:
        o = order
        data = {
            "id": o.id, "parent_id": o.parent_id, "status": o.status, "currency": o.currency,
            "version": WC_VERSION, "prices_include_tax": o.prices_include_tax,
            "date_created": fmt_date(self.local(o.created)), "date_modified": fmt_date(self.local(o.modified)),
            "discount_total": money(o.discount_total), "discount_tax": money(o.discount_tax),
            "shipping_total": money(o.shipping_total), "shipping_tax": money(o.shipping_tax),
            "cart_tax": money(o.cart_tax), "total": money(o.total), "total_tax": money(o.total_tax),
            "customer_id": o.customer_id, "order_key": o.order_key,
            "billing": dict(o.billing), "shipping": dict(o.shipping),
            "payment_method": o.payment_method, "payment_method_title": o.payment_method_title,
            "transaction_id": o.transaction_id, "customer_ip_address": o.customer_ip_address,
            "customer_user_agent": o.customer_user_agent, "created_via": o.created_via,
            "customer_note": o.customer_note, "date_completed": fmt_date(self.local(o.date_completed)),
            "date_paid": fmt_date(self.local(o.date_paid)), "cart_hash": "", "number": str(o.id),
            "meta_data": copy.deepcopy(o.meta_data),
            "line_items": [line_item_json(i) for i in o.line_items],
            "tax_lines": [tax_line_json(t) for t in o.tax_lines],
            "shipping_lines": [shipping_line_json(s) for s in o.shipping_lines],
            "fee_lines": [fee_line_json(f) for f in o.fee_lines],
            "coupon_lines": [coupon_line_json(c) for c in o.coupon_lines],
            "refunds": [{"id": r.id, "reason": r.reason, "total": money(-r.amount)}
                        for r in sorted((self.refunds[i] for i in o.refund_ids if i in self.refunds),
                                        key=lambda r: r.id, reverse=True)],
            "payment_url": f"{base}/checkout/order-pay/{o.id}/?pay_for_order=true&key={o.order_key}",
            "is_editable": o.status in ("pending", "on-hold", "auto-draft", "checkout-draft"),
            "needs_payment": self.needs_payment(o), "needs_processing": True,
            "date_created_gmt": fmt_date(o.created), "date_modified_gmt": fmt_date(o.modified),
            "date_completed_gmt": fmt_date(o.date_completed), "date_paid_gmt": fmt_date(o.date_paid),
            "currency_symbol": CURRENCY_SYMBOLS.get(o.currency, o.currency),
        }
        extra = {"customer": f"customers/{o.customer_id}"} if o.customer_id else {}
        data["_links"] = self.links(base, f"orders/{o.id}", "orders", **extra)
        return data

    def refund_json(self, refund: Refund, base: str, *, with_parent: bool = False) -> dict:
        data: dict[str, Any] = {"id": refund.id}
        if with_parent:
            data["parent_id"] = refund.order_id
        data |= {
            **self.dates("date_created", refund.created), "amount": money(refund.amount),
            "reason": refund.reason, "refunded_by": refund.refunded_by,
            "refunded_payment": refund.refunded_payment, "meta_data": list(refund.meta_data),
            "line_items": [refund_item_json(i) for i in refund.items if i.kind == "line_item"],
            "shipping_lines": [refund_item_json(i) for i in refund.items if i.kind == "shipping"],
            "tax_lines": [tax_line_json(t) for t in refund.tax_lines],
            "fee_lines": [refund_item_json(i) for i in refund.items if i.kind == "fee"],
        }
        path = f"orders/{refund.order_id}/refunds"
        data["_links"] = self.links(base, f"{path}/{refund.id}", path, up=f"orders/{refund.order_id}")
        return data

    def customer_json(self, c: Customer, base: str) -> dict:
        digest = hashlib.md5(c.email.strip().lower().encode()).hexdigest()
        return {"id": c.id, **self.dates("date_created", c.created), **self.dates("date_modified", c.modified),
                "email": c.email, "first_name": c.first_name, "last_name": c.last_name,
                "role": c.role, "username": c.username, "billing": dict(c.billing),
                "shipping": dict(c.shipping), "is_paying_customer": c.is_paying_customer,
                "avatar_url": f"https://secure.gravatar.com/avatar/{digest}?s=96&d=mm&r=g",
                "meta_data": list(c.meta_data),
                "_links": self.links(base, f"customers/{c.id}", "customers")}

    def product_json(self, p: Product, base: str) -> dict:
        price = self.price_of(p)
        data = {
            "id": p.id, "name": p.name if p.type != "variation" else self._variation_title(p),
            "slug": slugify(p.name), "permalink": f"{base}/product/{slugify(p.name)}/",
            **self.dates("date_created", p.created), **self.dates("date_modified", p.modified),
            "type": p.type, "status": p.status, "featured": False, "catalog_visibility": "visible",
            "description": p.description, "short_description": "", "sku": p.sku, "price": price,
            "regular_price": p.regular_price, "sale_price": p.sale_price,
            "on_sale": bool(p.sale_price), "purchasable": price != "" and p.status == "publish",
            "total_sales": p.total_sales, "virtual": p.virtual, "downloadable": False,
            "tax_status": p.tax_status, "tax_class": p.tax_class, "manage_stock": p.manage_stock,
            "stock_quantity": p.stock_quantity, "backorders": p.backorders,
            "backorders_allowed": p.backorders != "no", "backordered": False,
            "stock_status": p.stock_status, "parent_id": p.parent_id,
            "attributes": self._product_attributes(p), "variations": list(p.variations),
            "meta_data": list(p.meta_data),
        }
        data["_links"] = self.links(base, f"products/{p.id}", "products")
        return data

    def variation_json(self, v: Product, base: str) -> dict:
        price = self.price_of(v)
        data = {
            "id": v.id, **self.dates("date_created", v.created), **self.dates("date_modified", v.modified),
            "description": v.description, "permalink": f"{base}/product/{v.id}/", "sku": v.sku,
            "price": price, "regular_price": v.regular_price, "sale_price": v.sale_price,
            "on_sale": bool(v.sale_price), "status": v.status, "purchasable": price != "",
            "virtual": v.virtual, "downloadable": False, "tax_status": v.tax_status,
            "tax_class": v.tax_class, "manage_stock": v.manage_stock,
            "stock_quantity": v.stock_quantity, "stock_status": v.stock_status,
            "backorders": v.backorders, "backorders_allowed": v.backorders != "no",
            "backordered": False, "attributes": [dict(a) for a in v.attributes],
            "parent_id": v.parent_id, "meta_data": list(v.meta_data),
        }
        path = f"products/{v.parent_id}/variations"
        data["_links"] = self.links(base, f"{path}/{v.id}", path, up=f"products/{v.parent_id}")
        return data

    def _variation_title(self, variation: Product) -> str:
        return variation_name(variation, self.products.get(variation.parent_id))

    def _product_attributes(self, product: Product) -> list[dict]:
        if product.type != "variable":
            return [dict(a) for a in product.attributes]
        options: dict[str, list[str]] = {}
        for variation in self.variations_of(product):
            for attribute in variation.attributes:
                values = options.setdefault(attribute["name"], [])
                if attribute["option"] not in values:
                    values.append(attribute["option"])
        return [{"id": 0, "name": name, "position": n, "visible": True, "variation": True, "options": values}
                for n, (name, values) in enumerate(options.items())]

    def webhook_json(self, hook: Webhook, base: str, *, edit: bool = False) -> dict:
        data = {"id": hook.id, "name": hook.name, "status": hook.status, "topic": hook.topic,
                "resource": hook.resource, "event": hook.event,
                "hooks": list(WEBHOOK_HOOKS.get(hook.topic, [hook.topic.removeprefix("action.")])),
                "delivery_url": hook.delivery_url,
                **self.dates("date_created", hook.created), **self.dates("date_modified", hook.modified)}
        if edit:
            data["secret"] = hook.secret
        data["_links"] = self.links(base, f"webhooks/{hook.id}", "webhooks")
        return data


def taxes_json(totals: dict[int, Decimal], subtotals: dict[int, Decimal] | None) -> list[dict]:
    ids = dict.fromkeys([*totals, *(subtotals or {})])
    return [{"id": rid, "total": trimmed(totals.get(rid, ZERO)),
             "subtotal": trimmed(subtotals.get(rid, ZERO)) if subtotals is not None else ""}
            for rid in ids]


def line_item_json(i: LineItem) -> dict:
    return {"id": i.id, "name": i.name, "product_id": i.product_id, "variation_id": i.variation_id,
            "quantity": i.quantity, "tax_class": i.tax_class, "subtotal": money(i.subtotal),
            "subtotal_tax": money(sum(i.subtotal_taxes.values(), ZERO)), "total": money(i.total),
            "total_tax": money(sum(i.taxes.values(), ZERO)),
            "taxes": taxes_json(i.taxes, i.subtotal_taxes), "meta_data": copy.deepcopy(i.meta_data),
            "sku": i.sku, "price": float(i.total / max(1, abs(i.quantity))),
            "image": {"id": "", "src": ""}, "parent_name": i.parent_name}


def shipping_line_json(s: ShippingLine) -> dict:
    return {"id": s.id, "method_title": s.method_title, "method_id": s.method_id,
            "instance_id": s.instance_id, "total": money(s.total),
            "total_tax": money(sum(s.taxes.values(), ZERO)), "taxes": taxes_json(s.taxes, None),
            "meta_data": copy.deepcopy(s.meta_data)}


def fee_line_json(f: FeeLine) -> dict:
    return {"id": f.id, "name": f.name, "tax_class": f.tax_class, "tax_status": f.tax_status,
            "amount": trimmed(f.total), "total": money(f.total),
            "total_tax": money(sum(f.taxes.values(), ZERO)), "taxes": taxes_json(f.taxes, None),
            "meta_data": copy.deepcopy(f.meta_data)}


def coupon_line_json(c: CouponLine) -> dict:
    return {"id": c.id, "code": c.code, "discount": money(c.discount),
            "discount_tax": money(c.discount_tax), "discount_type": c.discount_type,
            "nominal_amount": number(c.nominal), "free_shipping": c.free_shipping, "meta_data": []}


def tax_line_json(t: TaxLine) -> dict:
    return {"id": t.id, "rate_code": t.rate.code, "rate_id": t.rate.id, "label": t.rate.label,
            "compound": t.rate.compound, "tax_total": money(t.tax_total),
            "shipping_tax_total": money(t.shipping_tax_total), "rate_percent": number(t.rate.rate),
            "meta_data": []}


def refund_item_json(r: RefundItem) -> dict:
    negative = {k: -v for k, v in r.taxes.items()}
    meta = [{"id": r.id, "key": "_refunded_item_id", "value": str(r.source.id),
             "display_key": "_refunded_item_id", "display_value": str(r.source.id)}]
    if r.kind == "line_item":
        data = line_item_json(r.source)
        data |= {"quantity": -r.quantity, "subtotal": money(-r.total), "total": money(-r.total),
                 "subtotal_tax": money(-sum(r.taxes.values(), ZERO)),
                 "total_tax": money(-sum(r.taxes.values(), ZERO)),
                 "taxes": taxes_json(negative, negative),
                 "price": float(-r.total / max(1, abs(r.quantity)))}
    elif r.kind == "shipping":
        data = shipping_line_json(r.source)
        data |= {"total": money(-r.total), "total_tax": money(-sum(r.taxes.values(), ZERO)),
                 "taxes": taxes_json(negative, None)}
    else:
        data = fee_line_json(r.source)
        data |= {"amount": trimmed(-r.total), "total": money(-r.total),
                 "total_tax": money(-sum(r.taxes.values(), ZERO)), "taxes": taxes_json(negative, None)}
    data["id"] = r.id
    data["meta_data"] = [*data["meta_data"], *meta]
    return data

"""Records as the v2 and v3 APIs show them."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from sandbox.bigcommerce.wire import STATUSES, TAX_CLASSES, ZERO

if TYPE_CHECKING:
    from sandbox.bigcommerce.model import Hook, Product, Variant


class Views:
    """Records as the v2 and v3 APIs show them."""

    # ---- JSON views ---------------------------------------------------------------------
    def link(self, order_id: int, what: str) -> dict:
        return {"url": f"https://api.bigcommerce.com/stores/{self.settings.store_hash}/v2/orders/{order_id}/{what}",
                "resource": f"/orders/{order_id}/{what}"}

    def order_json(self, o: dict) -> dict:
        lines, addresses, wrap = o["lines"], o["addresses"], o["wrapping"]
        ship_net = sum((a["net"] for a in addresses), ZERO)
        ship_tax = sum((sum(a["taxes"].values(), ZERO) for a in addresses), ZERO)
        hand_net = sum((a["handling_net"] for a in addresses), ZERO)
        hand_tax = sum((sum(a["handling_taxes"].values(), ZERO) for a in addresses), ZERO)
        wrap_tax = sum(wrap["taxes"].values(), ZERO)
        sub_ex = sum((ln["undiscounted_net"] for ln in lines), ZERO)
        sub_tax = sum((sum(ln["taxes"].values(), ZERO) for ln in lines), ZERO)
        sub_inc = sum((ln["undiscounted_net"] + sum(ln["undiscounted_taxes"].values(), ZERO) for ln in lines), ZERO)
        return {
            "id": o["id"], "customer_id": o["customer_id"], "date_created": o["date_created"],
            "date_modified": o["date_modified"], "date_shipped": "", "status_id": o["status_id"],
            "status": STATUSES[o["status_id"]], "custom_status": STATUSES[o["status_id"]],
            "subtotal_ex_tax": sub_ex, "subtotal_inc_tax": sub_inc, "subtotal_tax": sub_tax,
            "base_shipping_cost": sum((a["base"] for a in addresses), ZERO),
            "shipping_cost_ex_tax": ship_net, "shipping_cost_inc_tax": ship_net + ship_tax,
            "shipping_cost_tax": ship_tax, "shipping_cost_tax_class_id": self.settings.shipping_tax_class_id,
            "base_handling_cost": sum((a["handling_base"] for a in addresses), ZERO),
            "handling_cost_ex_tax": hand_net, "handling_cost_inc_tax": hand_net + hand_tax,
            "handling_cost_tax": hand_tax, "handling_cost_tax_class_id": self.settings.shipping_tax_class_id,
            "base_wrapping_cost": wrap["base"], "wrapping_cost_ex_tax": wrap["net"],
            "wrapping_cost_inc_tax": wrap["net"] + wrap_tax, "wrapping_cost_tax": wrap_tax,
            "wrapping_cost_tax_class_id": 0,
            "total_ex_tax": o["total_ex_tax"], "total_inc_tax": o["total_inc_tax"],
            "total_tax": o["total_tax"], "items_total": sum(ln["quantity"] for ln in lines),
            "items_shipped": 0, "payment_method": o["payment_method"],
            "payment_provider_id": o["payment_provider_id"], "payment_status": o["payment_status"],
            "refunded_amount": ZERO, "order_is_digital": not addresses,
            "store_credit_amount": o.get("store_credit_amount", ZERO),
            "gift_certificate_amount": o.get("gift_certificate_amount", ZERO),
            "ip_address": "", "ip_address_v6": "",
            "geoip_country": "", "geoip_country_iso2": "", "currency_id": 1,
            "currency_code": o["currency"], "currency_exchange_rate": "1.0000000000",
            "default_currency_id": 1, "default_currency_code": o["currency"],
            "store_default_currency_code": self.settings.currency,
            "store_default_to_transactional_exchange_rate": "1.0000000000",
            "staff_notes": o["staff_notes"], "customer_message": o["customer_message"],
            "discount_amount": o["discount_amount"], "coupon_discount": o["coupon_discount"],
            "shipping_address_count": len(addresses), "is_deleted": o["is_deleted"],
            "ebay_order_id": "0", "cart_id": "", "billing_address": {**o["billing_address"], "form_fields": []},
            "is_email_opt_in": False, "credit_card_type": None, "order_source": "external",
            "channel_id": 1, "external_source": o["external_source"],
            "products": self.link(o["id"], "products"),
            "shipping_addresses": self.link(o["id"], "shipping_addresses"),
            "coupons": self.link(o["id"], "coupons"), "external_id": None,
            "external_merchant_id": None, "tax_provider_id": "BasicTaxProvider",
            "customer_locale": "en", "external_order_id": "",
            "is_tax_inclusive_pricing": o["inclusive"],
        }

    def product_line_json(self, o: dict, ln: dict) -> dict:
        address_id = o["addresses"][0]["id"] if o["addresses"] else 0
        tax = sum(ln["taxes"].values(), ZERO)
        undiscounted_tax = sum(ln["undiscounted_taxes"].values(), ZERO)
        qty = Decimal(ln["quantity"])
        price_ex = (ln["undiscounted_net"] / qty).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        price_inc = ((ln["undiscounted_net"] + undiscounted_tax) / qty).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        return {
            "id": ln["id"], "order_id": o["id"], "product_id": ln["product_id"],
            "variant_id": ln["variant_id"], "order_address_id": address_id, "name": ln["name"],
            "name_customer": ln["name_customer"], "name_merchant": ln["name_merchant"],
            "sku": ln["sku"], "upc": "", "type": ln["type"], "base_price": ln["unit"],
            "price_ex_tax": price_ex, "price_inc_tax": price_inc, "price_tax": price_inc - price_ex,
            "base_total": ln["gross"], "total_ex_tax": ln["undiscounted_net"],
            "total_inc_tax": ln["undiscounted_net"] + undiscounted_tax, "total_tax": tax,
            "quantity": ln["quantity"], "base_cost_price": ZERO, "cost_price_inc_tax": ZERO,
            "cost_price_ex_tax": ZERO, "cost_price_tax": ZERO, "weight": "1.0000",
            "is_refunded": ln["quantity_refunded"] >= ln["quantity"],
            "quantity_refunded": ln["quantity_refunded"], "refund_amount": ZERO, "return_id": 0,
            "wrapping_id": 0, "wrapping_name": None, "base_wrapping_cost": ZERO,
            "wrapping_cost_ex_tax": ZERO, "wrapping_cost_inc_tax": ZERO, "wrapping_cost_tax": ZERO,
            "wrapping_message": "", "quantity_shipped": ln.get("quantity_shipped", 0), "fixed_shipping_cost": ZERO,
            "option_set_id": None, "parent_order_product_id": None, "is_bundled_product": False,
            "bin_picking_number": "", "external_id": None, "brand": "",
            "applied_discounts": [dict(d) for d in ln["discounts"]], "product_options": [],
            "configurable_fields": [], "gift_certificate_id": None,
            "discounted_total_inc_tax": ln["net"] + tax,
        }

    def address_json(self, o: dict, a: dict) -> dict:
        tax = sum(a["taxes"].values(), ZERO)
        h_tax = sum(a["handling_taxes"].values(), ZERO)
        return {"id": a["id"], "order_id": o["id"], **a["fields"], "form_fields": [],
                "items_total": sum(ln["quantity"] for ln in o["lines"]), "items_shipped": 0,
                "shipping_method": a["shipping_method"], "base_cost": a["base"],
                "cost_ex_tax": a["net"], "cost_inc_tax": a["net"] + tax, "cost_tax": tax,
                "cost_tax_class_id": self.settings.shipping_tax_class_id,
                "base_handling_cost": a["handling_base"], "handling_cost_ex_tax": a["handling_net"],
                "handling_cost_inc_tax": a["handling_net"] + h_tax, "handling_cost_tax": h_tax,
                "handling_cost_tax_class_id": self.settings.shipping_tax_class_id,
                "shipping_zone_id": 1, "shipping_zone_name": a["fields"]["country"] or "Default",
                "shipping_quotes": {"url": "", "resource": f"/orders/{o['id']}/shipping_addresses/{a['id']}/shipping_quotes"}}

    def coupon_rows(self, o: dict) -> list[dict]:
        c = o["coupon"]
        if not c:
            return []
        return [{"id": o["id"] * 10 + 1, "coupon_id": c["id"], "order_id": o["id"], "code": c["code"],
                 "amount": c["amount"], "type": c["type_id"], "discount": o["coupon_discount"]}]

    def tax_rows(self, o: dict, details: bool) -> list[dict]:
        address_id = o["addresses"][0]["id"] if o["addresses"] else 0
        rows: list[tuple[int, str, Any, dict, Decimal]] = []  # (address, type, product id, rate, amount)
        by_id = {r["id"]: r for r in self.settings.tax_rates}
        for ln in o["lines"]:
            rows += [(address_id, "item", str(ln["id"]), by_id[r], amt) for r, amt in ln["taxes"].items()]
        for a in o["addresses"]:
            rows += [(a["id"], "shipping", None, by_id[r], amt) for r, amt in a["taxes"].items()]
            rows += [(a["id"], "handling", None, by_id[r], amt) for r, amt in a["handling_taxes"].items()]
        rows += [(address_id, "gift-wrapping", None, by_id[r], amt) for r, amt in o["wrapping"]["taxes"].items()]
        rows = [r for r in rows if r[4]]
        if not details:
            grouped: dict[tuple[int, int], list] = {}
            for address, _, _, rate, amount in rows:
                grouped.setdefault((address, rate["id"]), [address, None, None, rate, ZERO])[4] += amount
            rows = [tuple(v) for v in grouped.values()]
        out = []
        for n, (address, kind, product_id, rate, amount) in enumerate(rows, start=1):
            row = {"id": o["id"] * 100 + n, "order_id": o["id"], "order_address_id": address,
                   "tax_rate_id": rate["id"], "sales_tax_id": rate.get("sales_tax_id", ""),
                   "tax_class_id": rate.get("tax_class_ids", [0])[0], "name": rate["name"],
                   "class": TAX_CLASSES.get(rate.get("tax_class_ids", [0])[0], "Default Tax Class"),
                   "rate": Decimal(str(rate["rate"])), "priority": 0, "priority_amount": amount,
                   "line_amount": amount, "order_pickup_method_id": 0}
            if details:
                row.update({"order_product_id": product_id, "line_item_type": kind})
            out.append(row)
        return out

    def refund_json(self, r: dict) -> dict:
        return {**{k: v for k, v in r.items() if k != "items"},
                "items": [{k: v for k, v in i.items()} for i in r["items"]]}

    def product_json(self, p: Product, include_variants: bool = False) -> dict:
        out = {"id": p.id, "name": p.name, "type": "physical", "sku": p.sku, "price": p.price,
               "cost_price": p.cost_price, "retail_price": ZERO, "sale_price": ZERO,
               "map_price": ZERO, "calculated_price": p.price, "tax_class_id": p.tax_class_id,
               "inventory_level": (p.inventory_level if p.inventory_tracking == "product"
                                   else sum(self.variants[v].inventory_level for v in p.variant_ids)),
               "inventory_warning_level": 0, "inventory_tracking": p.inventory_tracking,
               "date_modified": p.date_modified, "base_variant_id": p.base_variant_id or None,
               "is_visible": True}
        if include_variants:
            out["variants"] = [self.variant_json(self.variants[v]) for v in p.variant_ids]
        return out

    def variant_json(self, v: Variant) -> dict:
        product = self.products[v.product_id]
        price = self.variant_price(v)
        return {"id": v.id, "product_id": v.product_id, "sku": v.sku,
                "sku_id": None if v.is_base else v.id + 10000, "price": v.price,
                "cost_price": v.cost_price, "sale_price": None, "retail_price": None,
                "map_price": None, "calculated_price": price,
                "inventory_level": product.inventory_level if v.is_base else v.inventory_level,
                "inventory_warning_level": 0, "purchasing_disabled": False, "upc": "",
                "option_values": list(v.option_values)}

    def hook_json(self, h: Hook) -> dict:
        return {"id": h.id, "client_id": h.client_id, "store_hash": self.settings.store_hash,
                "scope": h.scope, "destination": h.destination, "headers": h.headers,
                "is_active": h.is_active, "created_at": h.created_at, "updated_at": h.updated_at}

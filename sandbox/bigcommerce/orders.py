"""Orders: lines, discounts, addresses, totals and status."""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sandbox.bigcommerce.taxes import allocate, rates_for, split_tax
from sandbox.bigcommerce.wire import ApiError, STATUSES, ZERO, dec, now_utc, q2

if TYPE_CHECKING:
    from sandbox.bigcommerce.model import Variant


class OrderBook:
    """Orders: lines, discounts, addresses, totals and status."""

    # ---- orders -------------------------------------------------------------------------
    def _customer_or_guest(self, body: dict) -> int:
        customer_id = int(dec(body.get("customer_id") or 0, "customer_id"))
        if customer_id and customer_id not in self.customers:
            raise ApiError(400, f"The customer with ID {customer_id} does not exist.")
        return customer_id

    def _order_line(self, order_id: int, entry: dict, index: int, inclusive: bool,
                    location: tuple[str, str]) -> dict:
        if not isinstance(entry, dict):
            raise ApiError(400, "The field 'products' is invalid.")
        quantity = int(dec(entry.get("quantity", 1), "quantity"))
        if quantity < 1:
            raise ApiError(400, "The field 'quantity' is invalid.")
        variant: Variant | None = None
        if entry.get("product_id") is not None:
            product = self.products.get(int(dec(entry["product_id"], "product_id")))
            if product is None:
                raise ApiError(400, f"Product ID {entry['product_id']} does not exist.")
            if entry.get("variant_id") is not None:
                variant = self.variants.get(int(dec(entry["variant_id"], "variant_id")))
                if variant is None or variant.product_id != product.id:
                    raise ApiError(400, f"Variant ID {entry['variant_id']} does not exist.")
            elif product.inventory_tracking == "variant":
                raise ApiError(400, f"Product ID {product.id} has options: product_options or "
                                    "variant_id is required.")
            else:
                variant = self.variants[product.base_variant_id]
            unit = dec(entry["price_inc_tax" if inclusive else "price_ex_tax"], "price") \
                if entry.get("price_ex_tax") is not None and entry.get("price_inc_tax") is not None \
                else self.variant_price(variant)
            name, sku, tax_class = product.name, variant.sku, product.tax_class_id
            product_id, variant_id = product.id, variant.id
        else:
            if not entry.get("name"):
                raise ApiError(400, "The field 'name' is invalid.")
            unit = dec(entry.get("price_inc_tax" if inclusive else "price_ex_tax"), "price_ex_tax")
            name, sku, tax_class = str(entry["name"]), str(entry.get("sku") or ""), 0
            product_id, variant_id = 0, None
        return {"id": self.next_id("order_product", 1), "order_id": order_id,
                "product_id": product_id, "variant_id": variant_id, "name": name,
                "name_customer": name, "name_merchant": name, "sku": sku, "type": "physical",
                "quantity": quantity, "unit": unit, "gross": unit * quantity,
                "rates": rates_for(self.settings, tax_class, *location), "tax_class_id": tax_class,
                "discounts": [], "quantity_refunded": 0}

    def create_order(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "The request body is invalid.")
        billing = body.get("billing_address")
        if not isinstance(billing, dict) or len(str(billing.get("zip") or "")) < 2:
            raise ApiError(400, "The field 'billing_address.zip' is invalid.")
        items = body.get("products")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "The field 'products' is invalid.")
        currency = str(body.get("default_currency_code") or self.settings.currency).upper()
        if currency not in self.settings.currencies:
            raise ApiError(400, f"The currency '{currency}' is not enabled for this store.")
        status_id = int(dec(body.get("status_id", 1), "status_id"))
        if status_id not in STATUSES:
            raise ApiError(400, "The field 'status_id' is invalid.")
        customer_id = self._customer_or_guest(body)
        coupon = None
        if body.get("coupon_code"):
            coupon = self.coupons.get(str(body["coupon_code"]).lower())
            if coupon is None:
                raise ApiError(400, f"The coupon code '{body['coupon_code']}' is invalid.")
        addresses = body.get("shipping_addresses") or []
        if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
            raise ApiError(400, "The field 'shipping_addresses' is invalid.")
        tax_address = addresses[0] if addresses else billing
        location = (str(tax_address.get("country_iso2") or ""), str(tax_address.get("state") or ""))
        inclusive = self.settings.prices_include_tax
        order_id = self.next_id("order", 100)
        lines = [self._order_line(order_id, e, i, inclusive, location) for i, e in enumerate(items)]
        now = now_utc()
        order = {
            "id": order_id, "customer_id": customer_id, "date_created": now, "date_modified": now,
            "status_id": status_id, "currency": currency, "inclusive": inclusive,
            "billing_address": {k: str(billing.get(k) or "") for k in (
                "first_name", "last_name", "company", "street_1", "street_2", "city", "state",
                "zip", "country", "country_iso2", "phone", "email")},
            "lines": lines, "coupon": coupon, "payment_method": str(body.get("payment_method") or ""),
            "payment_provider_id": str(body.get("payment_provider_id") or ""), "payment_status": "",
            "customer_message": str(body.get("customer_message") or ""),
            "staff_notes": str(body.get("staff_notes") or ""), "is_deleted": False,
            "transactions": [], "refund_ids": [], "external_source": body.get("external_source"),
        }
        self._apply_discounts(order, coupon, dec(body.get("discount_amount") or 0, "discount_amount"))
        order["addresses"] = self._addresses(order, addresses, body, coupon, location)
        self._totals(order)
        self.orders[order_id] = order
        self.emit("store/order/created", {"type": "order", "id": order_id})
        return order

    def _apply_discounts(self, order: dict, coupon: dict | None, manual: Decimal) -> None:
        lines = order["lines"]
        gross = [ln["gross"] for ln in lines]
        order["coupon_discount"] = ZERO
        if coupon and coupon["type"] in ("percentage_discount", "per_total_discount"):
            if coupon["type"] == "percentage_discount":
                shares = [q2(g * coupon["amount"] / 100) for g in gross]
            else:
                shares = allocate(min(coupon["amount"], sum(gross, ZERO)), gross)
            for ln, share in zip(lines, shares):
                if share:
                    ln["discounts"].append({"id": coupon["id"], "amount": share, "name": coupon["name"],
                                            "code": coupon["code"], "target": "order"})
            order["coupon_discount"] = sum(shares, ZERO)
        order["discount_amount"] = min(manual, sum(gross, ZERO) - order["coupon_discount"])
        left = [g - sum((d["amount"] for d in ln["discounts"]), ZERO) for g, ln in zip(gross, lines)]
        for ln, share in zip(lines, allocate(order["discount_amount"], left)):
            if share:
                ln["discounts"].append({"id": "manual-discount", "amount": share,
                                        "name": "Manual Discount", "code": None, "target": "order"})
        for ln in lines:
            paid = ln["gross"] - sum((d["amount"] for d in ln["discounts"]), ZERO)
            ln["net"], ln["taxes"] = split_tax(paid, ln["rates"], order["inclusive"])
            ln["undiscounted_net"], ln["undiscounted_taxes"] = split_tax(ln["gross"], ln["rates"], order["inclusive"])

    def _addresses(self, order: dict, addresses: list[dict], body: dict, coupon: dict | None,
                   location: tuple[str, str]) -> list[dict]:
        s, inclusive = self.settings, order["inclusive"]
        shipping = dec(body.get("base_shipping_cost") or 0, "base_shipping_cost")
        if body.get("shipping_cost_ex_tax") is not None and body.get("shipping_cost_inc_tax") is not None:
            shipping = dec(body["shipping_cost_inc_tax" if inclusive else "shipping_cost_ex_tax"],
                           "shipping_cost_ex_tax")
        if coupon and coupon["type"] == "free_shipping":
            shipping = ZERO
        handling = dec(body.get("base_handling_cost") or 0, "base_handling_cost")
        wrapping = dec(body.get("base_wrapping_cost") or 0, "base_wrapping_cost")
        ship_rates = rates_for(s, s.shipping_tax_class_id, *location, shipping=True)
        order["wrapping"] = {"base": wrapping, "rates": rates_for(s, 0, *location),
                             **dict(zip(("net", "taxes"), split_tax(wrapping, rates_for(s, 0, *location), inclusive)))}
        out = []
        for i, raw in enumerate(addresses):
            base_ship = shipping if i == 0 else ZERO
            base_handling = handling if i == 0 else ZERO
            net, taxes = split_tax(base_ship, ship_rates, inclusive)
            h_net, h_taxes = split_tax(base_handling, ship_rates, inclusive)
            out.append({"id": self.next_id("order_address", 1), "order_id": order["id"],
                        "fields": {k: str(raw.get(k) or "") for k in (
                            "first_name", "last_name", "company", "street_1", "street_2", "city",
                            "state", "zip", "country", "country_iso2", "phone", "email")},
                        "shipping_method": str(raw.get("shipping_method") or ""),
                        "base": base_ship, "net": net, "taxes": taxes, "rates": ship_rates,
                        "handling_base": base_handling, "handling_net": h_net, "handling_taxes": h_taxes})
        if not addresses and (shipping or handling):
            raise ApiError(400, "Shipping or handling needs a shipping address.")
        return out

    def _totals(self, order: dict) -> None:
        lines, addresses, wrap = order["lines"], order["addresses"], order["wrapping"]
        tax = sum((sum(ln["taxes"].values(), ZERO) for ln in lines), ZERO)
        net = sum((ln["net"] for ln in lines), ZERO)
        for a in addresses:
            tax += sum(a["taxes"].values(), ZERO) + sum(a["handling_taxes"].values(), ZERO)
            net += a["net"] + a["handling_net"]
        tax += sum(wrap["taxes"].values(), ZERO)
        net += wrap["net"]
        order["total_ex_tax"], order["total_tax"], order["total_inc_tax"] = net, tax, net + tax

    def order_status(self, order: dict, status_id: int) -> None:
        previous = order["status_id"]
        if status_id == previous:
            return
        order["status_id"] = status_id
        order["date_modified"] = now_utc()
        self.emit("store/order/statusUpdated", {"type": "order", "id": order["id"], "status": {
            "previous_status_id": previous, "new_status_id": status_id}})

    def touch(self, order: dict) -> None:
        order["date_modified"] = now_utc()
        self.emit("store/order/updated", {"type": "order", "id": order["id"]})

    def update_order(self, order: dict, body: dict) -> None:
        if not isinstance(body, dict) or not body:
            raise ApiError(400, "The request body is invalid.")
        for key in ("staff_notes", "customer_message"):
            if key in body:
                order[key] = str(body[key] or "")
        if "status_id" in body:
            status_id = int(dec(body["status_id"], "status_id"))
            if status_id not in STATUSES:
                raise ApiError(400, "The field 'status_id' is invalid.")
            self.order_status(order, status_id)
        self.touch(order)

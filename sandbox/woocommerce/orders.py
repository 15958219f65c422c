"""Orders: creation and edits priced like core, status side effects, stock moves."""
from __future__ import annotations

import copy
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from sandbox.woocommerce.constants import (CURRENCIES, ORDER_REFUNDED_REASON, ORDER_STATUSES, PAID_STATUSES,
                                           PAYMENT_COMPLETE_FROM, STOCK_REDUCING, STOCK_RESTORING, ZERO)
from sandbox.woocommerce.model import CouponLine, FeeLine, LineItem, Order, ShippingLine
from sandbox.woocommerce.products import variation_name
from sandbox.woocommerce.refunds import is_removal
from sandbox.woocommerce.taxes import calc_inclusive, select_rates
from sandbox.woocommerce.wire import (ApiError, invalid_param, merge_address, random_token, round2, slugify,
                                      to_bool, to_decimal, to_int, wp_list)

if TYPE_CHECKING:
    from sandbox.woocommerce.model import Product


class OrderBook:
    """Orders: creation and edits priced like core, status side effects, stock moves."""

    # ---- orders ----------------------------------------------------------------------------
    def new_order(self, body: dict) -> Order:
        if body.get("id"):
            raise ApiError(400, "woocommerce_rest_shop_order_exists", "Cannot create existing shop_order.")
        currency = str(body.get("currency") or self.settings.currency).upper()
        self._check_currency(currency)
        now = self.now()
        order = Order(id=self.next_post_id(), status="pending", currency=currency,
                      prices_include_tax=bool(self.settings.prices_include_tax), created=now,
                      modified=now, order_key="wc_order_" + random_token(13),
                      billing=merge_address({}, None, billing=True),
                      shipping=merge_address({}, None, billing=False))
        self._apply_order_fields(order, body)
        self._apply_items(order, body, creating=True)
        self.price(order)
        if "status" in body:
            order.status = self._valid_status(body["status"])
        return order

    def create_order(self, body: dict) -> dict:
        """``POST /orders`` without HTTP; returns the order JSON."""
        return self.order_json(self._create_order(body), self.home)

    def _create_order(self, body: dict) -> Order:
        order = self.new_order(body)
        self.orders[order.id] = order
        self._after_status(order, "pending" if order.status != "pending" else "")
        self.emit("order", "created", order.id)
        if to_bool(body.get("set_paid", False)):
            self.payment_complete(order, str(body.get("transaction_id") or ""))
        self.emit("order", "updated", order.id)
        return order

    def edit_order(self, order_id: int, body: dict) -> dict:
        """``PUT /orders/{id}`` without HTTP; returns the order JSON."""
        order = self.orders.get(order_id)
        if order is None:
            raise ApiError(400, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
        return self.order_json(self._edit_order(order, body), self.home)

    def _edit_order(self, order: Order, body: dict) -> Order:
        draft = copy.deepcopy(order)
        if "currency" in body and body["currency"]:
            draft.currency = str(body["currency"]).upper()
            self._check_currency(draft.currency)
        self._apply_order_fields(draft, body)
        if self._apply_items(draft, body, creating=False) or "billing" in body or "shipping" in body:
            self.price(draft)
        status = self._valid_status(body["status"]) if body.get("status") else None
        draft.modified = self.now()
        self.orders[order.id] = draft
        if status and status != draft.status:
            self.set_status(draft, status)
        if to_bool(body.get("set_paid", False)) and self.needs_payment(draft):
            self.payment_complete(draft, str(body.get("transaction_id") or ""))
        self.emit("order", "updated", draft.id)
        return draft

    def delete_order(self, order: Order, force: bool) -> None:
        if force:
            del self.orders[order.id]
            for refund_id in order.refund_ids:
                self.refunds.pop(refund_id, None)
        elif order.status == "trash":
            raise ApiError(410, "woocommerce_rest_already_trashed", "The shop_order has already been deleted.")
        else:
            order.previous_status, order.status, order.modified = order.status, "trash", self.now()
        self.emit("order", "deleted", order.id)

    def get_order(self, order_id: int) -> dict:
        return self.order_json(self.orders[order_id], self.home)

    def _check_currency(self, currency: str) -> None:
        if currency not in CURRENCIES:
            raise invalid_param({"currency": f"currency is not one of {wp_list(sorted(CURRENCIES))}."})

    def _valid_status(self, value: Any) -> str:
        status = str(value).removeprefix("wc-")
        if status not in ORDER_STATUSES:
            raise invalid_param({"status": f"status is not one of {wp_list(ORDER_STATUSES)}."})
        return status

    def _apply_order_fields(self, order: Order, body: dict) -> None:
        if "customer_id" in body:
            customer_id = to_int(body["customer_id"] or 0, "customer_id")
            if customer_id and customer_id not in self.customers:
                raise ApiError(400, "woocommerce_rest_invalid_customer_id", "Customer ID is invalid.")
            order.customer_id = customer_id
        order.billing = merge_address(order.billing, body.get("billing"), billing=True)
        order.shipping = merge_address(order.shipping, body.get("shipping"), billing=False)
        for key in ("payment_method", "payment_method_title", "transaction_id", "customer_note",
                    "customer_ip_address", "customer_user_agent", "created_via"):
            if key in body and body[key] is not None:
                setattr(order, key, str(body[key]))
        if "parent_id" in body:
            order.parent_id = to_int(body["parent_id"] or 0, "parent_id")
        if "meta_data" in body:  # merged as WC_Data does: by id, else by key, else added
            for m in body["meta_data"] or []:
                found = next((x for x in order.meta_data if (m.get("id") and x["id"] == m["id"])
                              or (not m.get("id") and x["key"] == m.get("key"))), None)
                if found is not None:
                    found["value"] = m.get("value")
                else:
                    order.meta_data.append({"id": self.next_item_id(), "key": m.get("key"),
                                            "value": m.get("value")})

    def _apply_items(self, order: Order, body: dict, *, creating: bool) -> bool:
        changed = False
        for entry in body.get("line_items") or []:
            changed |= self._apply_line_item(order, entry, creating)
        for entry in body.get("shipping_lines") or []:
            changed |= self._apply_shipping(order, entry)
        for entry in body.get("fee_lines") or []:
            changed |= self._apply_fee(order, entry)
        for entry in body.get("coupon_lines") or []:
            changed |= self._apply_coupon(order, entry)
        return changed

    def _find_item(self, items: list, item_id: Any) -> Any:
        wanted = to_int(item_id, "id")
        for item in items:
            if item.id == wanted:
                return item
        raise ApiError(400, "woocommerce_rest_invalid_item_id",
                       "Order item ID provided is not associated with order.")

    def _apply_line_item(self, order: Order, entry: dict, creating: bool) -> bool:
        if entry.get("id") and not creating:
            item = self._find_item(order.line_items, entry["id"])
            if is_removal(entry, "quantity"):
                order.line_items.remove(item)
                return True
            self._update_line_item(order, item, entry)
            return True
        order.line_items.append(self._new_line_item(order, entry))
        return True

    def _resolve_product(self, entry: dict) -> Product:
        if entry.get("sku") and not entry.get("product_id") and not entry.get("variation_id"):
            product = self.product_by_sku(str(entry["sku"]))
        elif entry.get("variation_id"):
            product = self.products.get(to_int(entry["variation_id"], "variation_id"))
            if product is not None and product.type != "variation":
                product = None
        elif entry.get("product_id"):
            product = self.products.get(to_int(entry["product_id"], "product_id"))
        else:
            raise ApiError(400, "woocommerce_rest_required_product_reference", "Product ID or SKU is required.")
        if product is None or product.status == "trash":
            raise ApiError(400, "woocommerce_rest_invalid_product_id", "Product ID provided is invalid.")
        return product

    def _line_subtotal(self, order: Order, product: Product, quantity: int) -> Decimal:
        """``wc_get_price_excluding_tax``: catalog prices may include the base-location tax."""
        line = to_decimal(self.price_of(product)) * quantity
        if order.prices_include_tax and product.tax_status == "taxable":
            base = select_rates(self.tax_rates(), self.tax_class_of(product),
                                (self.settings.base_country, self.settings.base_state))
            line = round2(line - sum(calc_inclusive(line, base).values(), ZERO))
        return line

    def _new_line_item(self, order: Order, entry: dict) -> LineItem:
        product = self._resolve_product(entry)
        quantity = to_int(entry.get("quantity", 1), "quantity")
        if quantity <= 0:
            raise ApiError(400, "woocommerce_rest_invalid_product_quantity",
                           "Product quantity must be a positive float.")
        parent = self.products.get(product.parent_id) if product.type == "variation" else None
        subtotal = self._line_subtotal(order, product, quantity)
        item = LineItem(
            id=self.next_item_id(), name=variation_name(product, parent), quantity=quantity,
            product_id=parent.id if parent else product.id,
            variation_id=product.id if parent else 0,
            tax_class=self.tax_class_of(product), taxable=product.tax_status == "taxable",
            sku=product.sku, subtotal=subtotal, total=subtotal,
            meta_data=[self._attribute_meta(a) for a in product.attributes] if parent else [],
            parent_name=parent.name if parent else None)
        self._override_totals(item, entry)
        if entry.get("name"):
            item.name = str(entry["name"])
        return item

    def _attribute_meta(self, attribute: dict) -> dict:
        key, value = "pa_" + slugify(attribute["name"]), slugify(attribute["option"])
        return {"id": self.next_item_id(), "key": key, "value": value,
                "display_key": attribute["name"], "display_value": attribute["option"]}

    def _update_line_item(self, order: Order, item: LineItem, entry: dict) -> None:
        if "quantity" in entry and entry["quantity"] is not None:
            quantity = to_int(entry["quantity"], "quantity")
            if quantity < 0:
                raise ApiError(400, "woocommerce_rest_invalid_product_quantity",
                               "Product quantity must be a positive float.")
            if quantity != item.quantity:
                product = self.products.get(item.variation_id or item.product_id)
                unit = item.subtotal / item.quantity if item.quantity else ZERO
                item.quantity = quantity
                item.subtotal = (self._line_subtotal(order, product, quantity) if product
                                 else round2(unit * quantity))
                item.custom_total = None
        self._override_totals(item, entry)
        if entry.get("name"):
            item.name = str(entry["name"])

    @staticmethod
    def _override_totals(item: LineItem, entry: dict) -> None:
        if entry.get("subtotal") not in (None, ""):
            item.subtotal = round2(to_decimal(entry["subtotal"], "subtotal"))
        if entry.get("total") not in (None, ""):
            item.custom_total = round2(to_decimal(entry["total"], "total"))
        elif entry.get("subtotal") not in (None, ""):
            item.custom_total = item.subtotal

    def _apply_shipping(self, order: Order, entry: dict) -> bool:
        return self._apply_charge(
            order.shipping_lines, entry, "method_id", ("method_id", "method_title", "instance_id"),
            lambda: ShippingLine(self.next_item_id(), "", "", ZERO),
            "woocommerce_rest_invalid_shipping_item", "Shipping method ID is required.")

    def _apply_fee(self, order: Order, entry: dict) -> bool:
        return self._apply_charge(
            order.fee_lines, entry, "name", ("name", "tax_class", "tax_status"),
            lambda: FeeLine(self.next_item_id(), "", ZERO),
            "woocommerce_rest_invalid_fee_item", "Fee name is required.")

    def _apply_charge(self, lines: list, entry: dict, required: str, texts: tuple[str, ...],
                      new_line: Callable[[], Any], code: str, message: str) -> bool:
        """A shipping or fee line of an order edit: by id an update (or removal when the
        required field is emptied), without one a new line that must name ``required``."""
        if entry.get("id"):
            line = self._find_item(lines, entry["id"])
            if is_removal(entry, required):
                lines.remove(line)
                return True
        else:
            if not entry.get(required):
                raise ApiError(400, code, message)
            line = new_line()
            lines.append(line)
        for key in texts:
            if entry.get(key) is not None:
                setattr(line, key, str(entry[key]))
        if "total" in entry:
            line.total = round2(to_decimal(entry["total"], "total"))
        return True

    def _apply_coupon(self, order: Order, entry: dict) -> bool:
        if entry.get("id"):
            line = self._find_item(order.coupon_lines, entry["id"])
            if entry.get("code") is None:
                order.coupon_lines.remove(line)
                return True
        code = str(entry.get("code") or "").strip().lower()
        if not code:
            raise ApiError(400, "woocommerce_rest_invalid_coupon", "Coupon code is required.")
        coupon = self.coupons.get(code)
        if coupon is None:
            raise ApiError(400, "woocommerce_rest_invalid_coupon", f'Coupon "{code}" does not exist!')
        if any(c.code == code for c in order.coupon_lines):
            raise ApiError(400, "woocommerce_rest_invalid_coupon", "Coupon code already applied!")
        order.coupon_lines.append(CouponLine(self.next_item_id(), code, coupon.discount_type,
                                             coupon.amount, coupon.free_shipping))
        return True

    def needs_payment(self, order: Order) -> bool:
        return order.status in ("pending", "failed") and order.total > 0

    def payment_complete(self, order: Order, transaction_id: str = "") -> None:
        """``WC_Order::payment_complete``."""
        if order.status not in PAYMENT_COMPLETE_FROM:
            return
        if transaction_id:
            order.transaction_id = transaction_id
        order.date_paid = order.date_paid or self.now()
        self.set_status(order, "processing")
        self._mark_paying(order)

    def set_status(self, order: Order, status: str) -> None:
        previous = order.status
        if status == previous:
            return
        order.status = status
        order.modified = self.now()
        self._after_status(order, previous)

    def _after_status(self, order: Order, previous: str) -> None:
        """Core hooks on order status transitions."""
        status = order.status
        if status in PAID_STATUSES and order.date_paid is None:
            order.date_paid = self.now()
        if status == "completed" and order.date_completed is None:
            order.date_completed = self.now()
            self._mark_paying(order)
        if status in STOCK_REDUCING and not order.stock_reduced:
            self._move_stock(order, -1)
        elif status in STOCK_RESTORING and order.stock_reduced:
            self._move_stock(order, +1)
        if status == "refunded" and previous:
            remaining = order.total - self.refunded_total(order)
            if remaining > 0:
                self._make_refund(order, remaining, ORDER_REFUNDED_REASON, [], refund_payment=False, restock=False)

    def _move_stock(self, order: Order, sign: int) -> None:
        for item in order.line_items:
            self.adjust_stock(item.variation_id or item.product_id, sign * item.quantity)
        order.stock_reduced = sign < 0

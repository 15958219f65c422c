"""Products, variations, coupons, stock and customers."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.woocommerce.model import Coupon, Customer, Product
from sandbox.woocommerce.products import normalise_attributes
from sandbox.woocommerce.wire import ApiError, merge_address, money, to_bool, to_decimal, to_int

if TYPE_CHECKING:
    from sandbox.woocommerce.model import Order


class CatalogBook:
    """Products, variations, coupons, stock and customers."""

    # ---- catalog ---------------------------------------------------------------------------
    def product_by_sku(self, sku: str) -> Product | None:
        return next((p for p in self.products.values() if sku and p.sku == sku), None)

    def _check_sku(self, sku: str, own_id: int = 0) -> None:
        other = self.product_by_sku(sku)
        if other is not None and other.id != own_id:
            raise ApiError(400, "product_invalid_sku", "Invalid or duplicated SKU.",
                           resource_id=other.id, unique_sku=sku)

    def new_product(self, body: dict, parent: Product | None = None) -> Product:
        if body.get("id"):
            kind = "product_variation" if parent else "product"
            raise ApiError(400, f"woocommerce_rest_{kind}_exists", f"Cannot create existing {kind}.")
        now = self.now()
        product = Product(id=self.next_post_id(), name=str(body.get("name") or ("" if parent else "Product")),
                          created=now, modified=now)
        if parent is not None:
            product.type, product.parent_id, product.tax_class = "variation", parent.id, "parent"
        self.apply_product(product, body)
        self.products[product.id] = product
        if parent is not None:
            parent.variations.append(product.id)
            parent.modified = now
        return product

    def apply_product(self, product: Product, body: dict) -> None:
        if "sku" in body:
            self._check_sku(str(body["sku"] or ""), product.id)
            product.sku = str(body["sku"] or "")
        for key in ("name", "type", "status", "tax_status", "tax_class", "backorders",
                    "description", "stock_status"):
            if key in body and body[key] is not None:
                setattr(product, key, str(body[key]))
        for key in ("regular_price", "sale_price"):
            if key in body:
                setattr(product, key, "" if body[key] in (None, "") else str(to_decimal(body[key], key)))
        if "manage_stock" in body:
            product.manage_stock = to_bool(body["manage_stock"])
        if "stock_quantity" in body:
            value = body["stock_quantity"]
            product.stock_quantity = None if value is None else to_int(value, "stock_quantity")
        if "virtual" in body:
            product.virtual = to_bool(body["virtual"])
        if "attributes" in body:
            product.attributes = normalise_attributes(body["attributes"], product.type == "variation")
        if "meta_data" in body:
            product.meta_data = list(body["meta_data"] or [])
        self._refresh_stock_status(product)

    def _refresh_stock_status(self, product: Product) -> None:
        if product.manage_stock and product.stock_quantity is not None:
            if product.stock_quantity > 0:
                product.stock_status = "instock"
            else:
                product.stock_status = "outofstock" if product.backorders == "no" else "onbackorder"

    def create_product(self, body: dict, parent: Product | None = None, *, notify: bool = True) -> Product:
        product = self.new_product(body, parent)
        specs = [] if parent is not None else [v for v in body.get("variations") or [] if isinstance(v, dict)]
        for spec in specs:
            product.type = "variable"
            self.new_product(spec, product)
        if notify:
            self.emit("product", "created", product.id)
        return product

    def update_product(self, product: Product, body: dict) -> Product:
        self.apply_product(product, body)
        product.modified = self.now()
        self.emit("product", "updated", product.id)
        return product

    def delete_product(self, product: Product, force: bool) -> None:
        if not force and product.type != "variation":
            if product.status == "trash":
                raise ApiError(410, "woocommerce_rest_already_trashed", "The product has already been deleted.")
            product.status = "trash"
            product.modified = self.now()
        else:
            for child in list(product.variations):
                self.products.pop(child, None)
            self.products.pop(product.id, None)
            parent = self.products.get(product.parent_id)
            if parent is not None and product.id in parent.variations:
                parent.variations.remove(product.id)
        self.emit("product", "deleted", product.id)

    def price_of(self, product: Product) -> str:
        if product.type == "variable":
            prices = [Decimal(v.sale_price or v.regular_price) for v in self.variations_of(product)
                      if (v.sale_price or v.regular_price)]
            return str(min(prices)) if prices else ""
        return product.sale_price or product.regular_price

    def variations_of(self, product: Product) -> list[Product]:
        return [self.products[v] for v in product.variations if v in self.products]

    def tax_class_of(self, product: Product) -> str:
        if product.type == "variation" and product.tax_class == "parent":
            parent = self.products.get(product.parent_id)
            return parent.tax_class if parent else ""
        return product.tax_class

    def add_product(self, sku: str, name: str, regular_price: str, *, tax_class: str = "",
                    variations: list[dict] | None = None, **extra: Any) -> dict:
        """Seed one catalog product (no webhooks); returns it as the API shows it."""
        body = {"sku": sku, "name": name, "regular_price": regular_price, "tax_class": tax_class,
                "variations": variations or [], **extra}
        if variations:
            body.setdefault("type", "variable")
        product = self.create_product(body, notify=False)
        return self.product_json(product, self.home)

    def add_coupon(self, code: str, discount_type: str = "percent", amount: Any = "10",
                   free_shipping: bool = False) -> dict:
        if discount_type not in ("percent", "fixed_cart", "fixed_product"):
            raise ValueError(f"unknown discount_type {discount_type!r}")
        coupon = Coupon(self._next("coupon"), code.strip().lower(), discount_type,
                        to_decimal(amount), bool(free_shipping))
        self.coupons[coupon.code] = coupon
        return {"id": coupon.id, "code": coupon.code, "discount_type": coupon.discount_type,
                "amount": money(coupon.amount), "free_shipping": coupon.free_shipping}

    def adjust_stock(self, product_id: int, delta: int) -> None:
        product = self.products.get(product_id)
        if product is not None and product.manage_stock and product.stock_quantity is not None:
            product.stock_quantity += delta
            self._refresh_stock_status(product)

    # ---- customers -------------------------------------------------------------------------
    def create_customer(self, body: dict) -> Customer:
        if body.get("id"):
            raise ApiError(400, "woocommerce_rest_customer_exists", "Cannot create existing resource.")
        email = str(body.get("email") or "").strip()
        if not email:
            raise ApiError(400, "rest_missing_callback_param", "Missing parameter(s): email", params=["email"])
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise ApiError(400, "registration-error-invalid-email", "Please provide a valid email address.")
        if any(c.email.lower() == email.lower() for c in self.customers.values()):
            raise ApiError(400, "registration-error-email-exists",
                           "An account is already registered with your email address. Please log in.")
        username = str(body.get("username") or "") or self._username_for(email)
        if any(c.username == username for c in self.customers.values()):
            raise ApiError(400, "registration-error-username-exists",
                           "An account is already registered with that username. Please choose another.")
        now = self.now()
        customer = Customer(self._next("user"), email, username, now, now)
        self.apply_customer(customer, body)
        self.customers[customer.id] = customer
        self.emit("customer", "created", customer.id)
        return customer

    def _username_for(self, email: str) -> str:
        base = re.sub(r"[^a-z0-9._-]", "", email.split("@")[0].lower()) or "customer"
        name, n = base, 1
        while any(c.username == name for c in self.customers.values()):
            n += 1
            name = f"{base}{n}"
        return name

    def apply_customer(self, customer: Customer, body: dict) -> None:
        for key in ("first_name", "last_name"):
            if key in body and body[key] is not None:
                setattr(customer, key, str(body[key]))
        if body.get("email"):
            customer.email = str(body["email"]).strip()
        customer.billing = merge_address(customer.billing, body.get("billing"), billing=True)
        customer.shipping = merge_address(customer.shipping, body.get("shipping"), billing=False)
        if "meta_data" in body:
            customer.meta_data = list(body["meta_data"] or [])

    def update_customer(self, customer: Customer, body: dict) -> Customer:
        self.apply_customer(customer, body)
        customer.modified = self.now()
        self.emit("customer", "updated", customer.id)
        return customer

    def add_customer(self, email: str, **fields_: Any) -> dict:
        return self.customer_json(self.create_customer({"email": email, **fields_}), self.home)

    def _mark_paying(self, order: Order) -> None:
        customer = self.customers.get(order.customer_id)
        if customer is not None and not customer.is_paying_customer:
            customer.is_paying_customer = True
            customer.modified = self.now()
            self.emit("customer", "updated", customer.id)

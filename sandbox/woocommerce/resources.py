"""The resources of wc/v3: orders, refunds, customers, products, variations, webhooks."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.woocommerce.constants import ORDER_STATUSES, WEBHOOK_STATUSES
from sandbox.woocommerce.listing import ListSpec, Resource
from sandbox.woocommerce.wire import ApiError, wp_list

if TYPE_CHECKING:
    from sandbox.woocommerce.listing import Call, Params
    from sandbox.woocommerce.model import Customer, Order, Product, Refund, Webhook


class Orders(Resource):
    path, post_type, trashable = "orders", "shop_order", True
    view, creates, updates, deletes = "order_json", "_create_order", "_edit_order", "delete_order"

    def find(self, call: Call, record_id: int) -> Order | None:
        return call.state.orders.get(record_id)

    def records(self, call: Call, p: Params) -> list[Order]:
        allowed = ("any", "trash", *ORDER_STATUSES)
        statuses = p.strings("status") or ["any"]
        bad = [s for s in statuses if s not in allowed]
        if bad:
            p.errors["status"] = f"status[{statuses.index(bad[0])}] is not one of {wp_list(allowed)}."
        wanted = set(ORDER_STATUSES) if "any" in statuses else set()
        wanted |= {s for s in statuses if s != "any"}
        customer, product = p.integer("customer", None), p.integer("product", None)
        parent, search = p.ids("parent"), str(p.values.get("search") or "").lower()
        orders = [o for o in call.state.orders.values() if o.status in wanted]
        if customer is not None:
            orders = [o for o in orders if o.customer_id == customer]
        if product is not None:
            orders = [o for o in orders if any(product in (i.product_id, i.variation_id) for i in o.line_items)]
        if parent:
            orders = [o for o in orders if o.parent_id in parent]
        if search:
            orders = [o for o in orders if search in order_search_text(o)]
        return orders



def order_search_text(order: Order) -> str:
    parts = [str(order.id), *order.billing.values(), *order.shipping.values(),
             *(i.name for i in order.line_items)]
    return " ".join(parts).lower()


class OrderRefunds(Resource):
    path, post_type, default_force = "orders/{order_id}/refunds", "shop_order_refund", True
    trash_message = "Refunds do not support trashing."
    spec = ListSpec(orderby=("date", "id", "include", "title", "slug", "modified"))
    view = "refund_json"

    def order(self, call: Call) -> Order:
        order = call.state.orders.get(call.ids["order_id"])
        if order is None:
            raise ApiError(404, "woocommerce_rest_invalid_order_id", "Invalid order ID.")
        return order

    def find(self, call: Call, record_id: int) -> Refund | None:
        refund = call.state.refunds.get(record_id)
        return refund if refund and refund.order_id == self.order(call).id else None

    def records(self, call: Call, p: Params) -> list[Refund]:
        order = self.order(call)
        return [call.state.refunds[r] for r in order.refund_ids if r in call.state.refunds]

    async def create(self, call: Call, body: dict) -> Refund:
        return call.state._create_refund(call.ids["order_id"], body)

    def delete(self, call: Call, obj: Refund, force: bool) -> None:
        call.state.delete_refund(obj)


class AllRefunds(OrderRefunds):
    path = "refunds"

    def find(self, call: Call, record_id: int) -> Refund | None:
        return call.state.refunds.get(record_id)

    def records(self, call: Call, p: Params) -> list[Refund]:
        parents = p.ids("parent")
        return [r for r in call.state.refunds.values() if not parents or r.order_id in parents]

    def render(self, call: Call, obj: Refund) -> dict:
        return call.state.refund_json(obj, call.base, with_parent=True)


class Customers(Resource):
    path, post_type = "customers", "customer"
    view, creates, updates = "customer_json", "create_customer", "update_customer"
    trash_message = "Customers do not support trashing."
    spec = ListSpec(orderby=("id", "include", "name", "registered_date"), default_orderby="name",
                    default_order="asc", dates=False)

    def invalid_id(self, status: int) -> ApiError:
        return ApiError(status, "woocommerce_rest_invalid_id", "Invalid resource ID.")

    def find(self, call: Call, record_id: int) -> Customer | None:
        return call.state.customers.get(record_id)

    def records(self, call: Call, p: Params) -> list[Customer]:
        email = str(p.values.get("email") or "").strip().lower()
        role = str(p.values.get("role") or "customer")
        search = str(p.values.get("search") or "").strip("*").lower()
        found = [c for c in call.state.customers.values() if role == "all" or c.role == role]
        if email:
            found = [c for c in found if c.email.lower() == email]
        if search:
            found = [c for c in found if search in f"{c.email} {c.username} {c.first_name} {c.last_name}".lower()]
        return found

    def delete(self, call: Call, obj: Customer, force: bool) -> None:
        del call.state.customers[obj.id]
        call.state.emit("customer", "deleted", obj.id)


class Products(Resource):
    path, post_type, trashable = "products", "product", True
    view, creates, updates, deletes = "product_json", "create_product", "update_product", "delete_product"
    spec = ListSpec(orderby=("date", "id", "include", "title", "slug", "modified", "price",
                             "popularity", "rating"))

    def find(self, call: Call, record_id: int) -> Product | None:
        return call.state.products.get(record_id)

    def records(self, call: Call, p: Params) -> list[Product]:
        skus = set(p.strings("sku"))
        status = str(p.values.get("status") or "any")
        kind, stock = p.values.get("type"), p.values.get("stock_status")
        search = str(p.values.get("search") or "").lower()
        found = [x for x in call.state.products.values() if x.type != "variation"]
        found = [x for x in found if (x.status != "trash" if status == "any" else x.status == status)]
        if skus:
            found = [x for x in found if x.sku in skus]
        if kind:
            found = [x for x in found if x.type == kind]
        if stock:
            found = [x for x in found if x.stock_status == stock]
        if search:
            found = [x for x in found if search in x.name.lower()]
        return found



class Variations(Products):
    path, post_type, trashable = "products/{product_id}/variations", "product_variation", False
    trash_message = "Variations do not support trashing."
    view = "variation_json"

    def parent(self, call: Call) -> Product:
        parent = call.state.products.get(call.ids["product_id"])
        if parent is None or parent.type == "variation":
            raise ApiError(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
        return parent

    def find(self, call: Call, record_id: int) -> Product | None:
        found = call.state.products.get(record_id)
        return found if found and found.parent_id == self.parent(call).id else None

    def records(self, call: Call, p: Params) -> list[Product]:
        skus = set(p.strings("sku"))
        found = call.state.variations_of(self.parent(call))
        return [v for v in found if not skus or v.sku in skus]

    async def create(self, call: Call, body: dict) -> Product:
        parent = self.parent(call)
        variation = call.state.new_product(body, parent)
        parent.type = "variable"
        call.state.emit("product", "created", variation.id)
        return variation


class Webhooks(Resource):
    path, post_type = "webhooks", "shop_webhook"
    trash_message = "Webhooks do not support trashing."
    spec = ListSpec(orderby=("date", "id", "title"))

    def find(self, call: Call, record_id: int) -> Webhook | None:
        return call.state.webhooks.get(record_id)

    def records(self, call: Call, p: Params) -> list[Webhook]:
        status = p.enum("status", ("all", *WEBHOOK_STATUSES), "all")
        search = str(p.values.get("search") or "").lower()
        hooks = [h for h in call.state.webhooks.values() if status == "all" or h.status == status]
        return [h for h in hooks if search in h.name.lower()]

    def render(self, call: Call, obj: Webhook) -> dict:
        edit = call.arg("context") == "edit"
        return call.state.webhook_json(obj, call.base, edit=edit)

    async def create(self, call: Call, body: dict) -> Webhook:
        return await call.state.create_webhook(body)

    async def update(self, call: Call, obj: Webhook, body: dict) -> Webhook:
        return await call.state.update_webhook(obj, body)

    def delete(self, call: Call, obj: Webhook, force: bool) -> None:
        call.state.delete_webhook(obj)

"""The v3 catalog routes: customers, products, variants and inventory adjustments."""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from sandbox.bigcommerce.listing import csv, fields_filtered, respond, v3_list
from sandbox.bigcommerce.model import Product
from sandbox.bigcommerce.wire import ApiError, ERROR_TYPE, dec, now_utc

if TYPE_CHECKING:
    from sandbox.bigcommerce.listing import Call
    from sandbox.bigcommerce.model import Variant
    from sandbox.bigcommerce.state import Store


def batch_body(body: Any, limit: int, errors: dict | None = None) -> list:
    """A v3 batch: a non-empty array of at most ``limit`` items (``errors`` goes with the 413)."""
    if not isinstance(body, list) or not body:
        raise ApiError(422, "JSON data is missing or invalid", errors={"": "error.type.array"})
    if len(body) > limit:
        raise ApiError(413, f"The request payload is too large. The maximum items allowed in the array is {limit}",
                       errors=errors)
    return body


async def v3_customers(call: Call) -> Response:
    store = call.store
    if call.request.method == "POST":
        body = batch_body(call.body, 10)
        created = []
        for n, entry in enumerate(body):
            missing = [k for k in ("email", "first_name", "last_name")
                       if not isinstance(entry, dict) or not entry.get(k)]
            if missing:
                raise ApiError(422, "JSON data is missing or invalid",
                               errors={f"[{n}].{k}": "error.path.missing" for k in missing})
            email_ = str(entry["email"]).strip().lower()
            if any(c["email"] == email_ for c in store.customers.values()):
                raise ApiError(422, f"The email address {email_} is already in use.",
                               errors={f"[{n}].email": "error.email.duplicate"})
            customer = {"id": store.next_id("customer", 1), "email": email_,
                        "first_name": str(entry["first_name"]), "last_name": str(entry["last_name"]),
                        "company": str(entry.get("company") or ""), "phone": str(entry.get("phone") or ""),
                        "notes": "", "tax_exempt_category": "", "customer_group_id": 0,
                        "date_created": now_utc(), "date_modified": now_utc(), "address_count": 0,
                        "attribute_count": 0, "registration_ip_address": "",
                        "accepts_product_review_abandoned_cart_emails": False,
                        "origin_channel_id": 1, "channel_ids": None, "addresses": []}
            store.customers[customer["id"]] = customer
            created.append(customer)
            store.emit("store/customer/created", {"type": "customer", "id": customer["id"]})
        return respond({"data": created, "meta": {}}, "v3")
    if call.request.method == "PUT":
        return update_customers(call)
    customers = sorted(store.customers.values(), key=lambda c: c["id"])
    if emails := [e.lower() for e in csv(call, "email:in")]:
        customers = [c for c in customers if c["email"] in emails]
    if ids := csv(call, "id:in"):
        customers = [c for c in customers if str(c["id"]) in ids]
    return v3_list(call, customers)


def update_customers(call: Call) -> Response:
    """``PUT /v3/customers``: at most 10, each with ``id``; read-only fields are refused."""
    store, body = call.store, batch_body(call.body, 10)
    saved = []
    for n, entry in enumerate(body):
        customer = store.customers.get(int(dec(entry.get("id", 0), "id"))) if isinstance(entry, dict) else None
        if customer is None:
            raise ApiError(422, "JSON data is missing or invalid", errors={f"[{n}].id": "error.not_found"})
        for key in ("email", "first_name", "last_name", "company", "phone", "notes"):
            if key in entry:
                customer[key] = str(entry[key] or "").strip().lower() if key == "email" else str(entry[key] or "")
        customer["date_modified"] = now_utc()
        saved.append(customer)
        store.emit("store/customer/updated", {"type": "customer", "id": customer["id"]})
    return respond({"data": saved, "meta": {}}, "v3")


async def v3_products(call: Call) -> Response:
    store = call.store
    if call.request.method == "PUT":
        return batch_update(call, "product", 10)
    products = _by_id_and_sku(call, store.products)
    if skus := csv(call, "sku:in"):
        products = [p for p in products if p.sku in skus]
    if ids := csv(call, "id:in"):
        products = [p for p in products if str(p.id) in ids]
    with_variants = "variants" in csv(call, "include")
    return v3_list(call, fields_filtered(call, [store.product_json(p, with_variants) for p in products]))


def _by_id_and_sku(call: Call, records: dict[int, Any]) -> list:
    """Catalog records in id order, only the one SKU when ``sku`` is asked for."""
    found = sorted(records.values(), key=lambda r: r.id)
    if call.params.get("sku"):
        found = [r for r in found if r.sku == call.params["sku"]]
    return found


def _product(call: Call) -> Product:
    product = call.store.products.get(call.ids[0])
    if product is None:
        raise ApiError(404, "The requested product was not found.")
    return product


async def v3_product(call: Call) -> Response:
    store = call.store
    product = _product(call)
    if call.request.method == "PUT":
        apply_product(store, product, call.body if isinstance(call.body, dict) else {})
    return respond({"data": store.product_json(product, "variants" in csv(call, "include")), "meta": {}}, "v3")


async def v3_product_variants(call: Call) -> Response:
    store = call.store
    product = _product(call)
    return v3_list(call, [store.variant_json(store.variants[v]) for v in product.variant_ids])


async def v3_variants(call: Call) -> Response:
    store = call.store
    if call.request.method == "PUT":
        return batch_update(call, "variant", 50)
    variants = _by_id_and_sku(call, store.variants)
    if call.params.get("id"):
        variants = [v for v in variants if str(v.id) == call.params["id"]]
    if pids := csv(call, "product_id:in"):
        variants = [v for v in variants if str(v.product_id) in pids]
    return v3_list(call, fields_filtered(call, [store.variant_json(v) for v in variants]))


def apply_product(store: Store, product: Product, body: dict) -> None:
    if "price" in body:
        product.price = dec(body["price"], "price")
    if "cost_price" in body:
        product.cost_price = dec(body["cost_price"], "cost_price")
    if "name" in body:
        product.name = str(body["name"])
    if "inventory_level" in body and product.inventory_tracking == "product":
        product.inventory_level = int(dec(body["inventory_level"], "inventory_level"))
    product.date_modified = now_utc()
    store.emit("store/product/updated", {"type": "product", "id": product.id})


def apply_variant(store: Store, variant: Variant, body: dict) -> None:
    for key in ("price", "cost_price"):
        if key in body:
            setattr(variant, key, None if body[key] is None else dec(body[key], key))
    store.emit("store/sku/updated", {"type": "sku", "id": variant.id,
                                     "sku": {"product_id": variant.product_id, "variant_id": variant.id}})


def batch_update(call: Call, kind: str, limit: int) -> Response:
    store, body = call.store, batch_body(call.body, limit, errors={})
    table = store.products if kind == "product" else store.variants
    bad = [n for n, e in enumerate(body) if not isinstance(e, dict) or int(dec(e.get("id", 0), "id")) not in table]
    if kind == "variant" and bad:
        return respond({"batch_errors": [{"status": 422, "title": f"Variant with id {body[n].get('id') if isinstance(body[n], dict) else '?'} not found",
                                          "type": ERROR_TYPE, "errors": {f"[{n}].id": "error.not_found"}} for n in bad]}, "v3", 422)
    if kind == "product" and len(bad) == len(body):
        raise ApiError(409, "The product ids are invalid.", errors={f"[{n}].id": "not found" for n in bad})
    saved = []
    for n, entry in enumerate(body):
        if n in bad:
            continue
        record = table[int(dec(entry["id"], "id"))]
        (apply_product if kind == "product" else apply_variant)(store, record, entry)
        saved.append(store.product_json(record) if kind == "product" else store.variant_json(record))
    if bad:
        return respond({"data": saved, "errors": [{"status": 404, "title": f"Product with id {body[n].get('id')} not found",
                                                   "type": ERROR_TYPE} for n in bad],
                        "meta": {"total": len(body), "success": len(saved), "failed": len(bad)}}, "v3", 207)
    return respond({"data": saved, "meta": {}}, "v3")


async def v3_inventory_absolute(call: Call) -> Response:
    store, body = call.store, call.body
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(422, "JSON data is missing or invalid", errors={"items": "error.path.missing"},
                       media_type="application/problem+json")
    if len(items) > 2000:
        raise ApiError(413, "The request payload is too large. The maximum items allowed in the array is 2000")
    changes = []
    for n, item in enumerate(items):
        keys = [k for k in ("sku", "variant_id", "product_id") if isinstance(item, dict) and item.get(k) not in (None, "")]
        if len(keys) != 1 or "location_id" not in item or "quantity" not in item:
            raise ApiError(422, "JSON data is missing or invalid",
                           errors={f"items[{n}]": "needs location_id, quantity and one of sku/variant_id/product_id"},
                           media_type="application/problem+json")
        if int(dec(item["location_id"], "location_id")) != 1:
            raise ApiError(422, f"[Location {item['location_id']} does not exist]", errors={},
                           media_type="application/problem+json")
        quantity = int(dec(item["quantity"], "quantity"))
        if not 0 <= quantity <= 2_147_483_647:
            raise ApiError(422, f"[Quantity {quantity} is out of range]", errors={},
                           media_type="application/problem+json")
        target = stock_target(store, keys[0], item[keys[0]])
        if target is None:
            raise ApiError(422, f"[Item with {keys[0]} {item[keys[0]]} does not exist]", errors={},
                           media_type="application/problem+json")
        changes.append((target, quantity))

    def apply() -> None:
        for target, quantity in changes:
            target.inventory_level = quantity
            if isinstance(target, Product):
                store.emit("store/product/inventory/updated", {"type": "product", "id": target.id, "inventory": {
                    "product_id": target.id, "method": "absolute", "value": quantity}})
            else:
                store.emit("store/sku/inventory/updated", {"type": "sku", "id": target.id, "inventory": {
                    "product_id": target.product_id, "variant_id": target.id, "method": "absolute",
                    "value": quantity}})

    store.later(apply)
    return respond({"transaction_id": str(uuid.uuid4())}, "v3")


def stock_target(store: Store, key: str, value: Any) -> Product | Variant | None:
    """The record that holds the stock: the product when tracked by product (its base
    variant's SKU names the product), the variant when tracked by variant."""
    if key == "product_id":
        product = store.products.get(int(dec(value, key)))
        if product is not None and product.inventory_tracking == "variant":
            raise ApiError(422, f"[Item with product_id {value} is tracked by variant, please update stock by variant id]",
                           errors={}, media_type="application/problem+json")
        return product
    variant = store.variants.get(int(dec(value, key))) if key == "variant_id" else store.variant_by_sku(str(value))
    if variant is None:
        return None
    if variant.is_base:
        return store.products[variant.product_id]
    return variant


async def v3_inventory_items(call: Call) -> Response:
    store = call.store
    rows = []
    for v in sorted(store.variants.values(), key=lambda v: v.id):
        target = store.products[v.product_id] if v.is_base else v
        rows.append({"identity": {"sku": v.sku, "variant_id": v.id, "product_id": v.product_id},
                     "locations": [{"location_id": 1, "available_to_sell": target.inventory_level,
                                    "total_inventory_onhand": target.inventory_level}]})
    if skus := csv(call, "sku:in"):
        rows = [r for r in rows if r["identity"]["sku"] in skus]
    return v3_list(call, rows)

"""The control surface (``/_sandbox/``) and the app factory."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import control
from sandbox.control import SettingsControl, WebhookControl, read_json
from sandbox.faults import Faults

from sandbox.bigcommerce.api import Api
from sandbox.bigcommerce.model import Settings
from sandbox.bigcommerce.state import Store
from sandbox.bigcommerce.wire import ApiError, ERROR_TYPE, dumps


# --------------------------------------------------------------------------------------------
# Control surface and the app
# --------------------------------------------------------------------------------------------

def control_routes(store: Store, faults: Faults) -> list[Route]:
    """``/_sandbox/``: seeding, settings, payments, webhook faults and observation (no auth)."""

    def error(exc: Exception, status: int = 400) -> Response:
        message = exc.title if isinstance(exc, ApiError) else str(exc)
        return JSONResponse({"error": message}, status_code=getattr(exc, "status", status))

    async def products(request: Request) -> Response:
        data = await read_json(request, Decimal)
        try:
            made = [store.add_product(spec) for spec in (data if isinstance(data, list) else [data])]
        except (ApiError, KeyError, TypeError, ValueError) as exc:
            return error(exc)
        return Response(dumps([store.product_json(p, True) for p in made], "v3"), media_type="application/json")

    async def coupons(request: Request) -> Response:
        data = await read_json(request, Decimal)
        types = {"per_item_discount": 0, "percentage_discount": 1, "per_total_discount": 2,
                 "shipping_discount": 3, "free_shipping": 4}
        made = []
        for spec in data if isinstance(data, list) else [data]:
            if spec.get("type") not in ("percentage_discount", "per_total_discount", "free_shipping"):
                return JSONResponse({"error": f"unsupported coupon type {spec.get('type')!r}"}, status_code=400)
            coupon = {"id": store.next_id("coupon", 1), "code": str(spec["code"]),
                      "name": str(spec.get("name") or spec["code"]), "type": spec["type"],
                      "type_id": types[spec["type"]], "amount": Decimal(str(spec.get("amount", 0)))}
            store.coupons[coupon["code"].lower()] = coupon
            made.append({**coupon, "amount": str(coupon["amount"])})
        return JSONResponse(made)

    async def payments(request: Request) -> Response:
        order = store.orders.get(int(request.path_params["order_id"]))
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        data = await read_json(request, Decimal)
        try:  # one tender (the whole order) or a list of them (split tender)
            made = store.take_payments(order, data if isinstance(data, list) else [data or {}])
        except ApiError as exc:
            return error(exc)
        return Response(dumps(made if isinstance(data, list) else made[0], "v3"),
                        media_type="application/json")

    async def capture(request: Request) -> Response:
        """A capture of part of the authorization, as the control panel takes it for gateways
        that allow partial captures (v3 ``payment_actions/capture`` captures all the rest)."""
        order = store.orders.get(int(request.path_params["order_id"]))
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        data = await read_json(request, Decimal)
        try:
            store.capture(order, (data or {}).get("amount"))
        except ApiError as exc:
            return error(exc)
        return JSONResponse({"payment_status": order["payment_status"]}, status_code=201)

    def reset() -> None:
        for timer in store.timers:
            timer.cancel()
        store.reset()

    return [
        *control.control_routes(
            faults, reset=reset, render=v3_json, parse_float=Decimal,
            settings=SettingsControl(lambda: store.settings, lambda values: store.settings.update(values)),
            counts=store.counts,
            webhooks=WebhookControl(lambda: store, lambda: [dict(d) for d in store.deliveries],
                                    lambda timeout, options: store.wait_idle(
                                        timeout, retries=bool(options.get("retries"))))),
        Route("/_sandbox/products", products, methods=["POST"]),
        Route("/_sandbox/coupons", coupons, methods=["POST"]),
        Route("/_sandbox/orders/{order_id:int}/payments", payments, methods=["POST"]),
        Route("/_sandbox/orders/{order_id:int}/capture", capture, methods=["POST"]),
    ]


def v3_json(content: Any, status_code: int = 200) -> Response:
    """JSON as v3 writes it: exact decimal numbers, ISO 8601 dates."""
    return Response(dumps(content, "v3"), status_code=status_code, media_type="application/json")


def create_app(**settings: Any) -> Starlette:
    """The simulator; keyword arguments are :class:`Settings` fields. ``app.state.store`` is
    the :class:`Store`, ``app.state.faults`` the faults."""
    config = Settings()
    config.update(settings)
    store = Store(config)
    faults = Faults()
    api = Api(store, faults)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes = [*control_routes(store, faults),
              Route("/stores/{store_hash}/{version:str}/{rest:path}", api.handle, methods=methods)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"status": 404, "title": "The requested resource was not found.",
                             "type": ERROR_TYPE}, status_code=404)

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.store = store
    app.state.faults = faults
    return app

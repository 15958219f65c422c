"""The control surface (``/_sandbox/``) and the app factory."""
from __future__ import annotations

import copy
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import control
from sandbox.control import SettingsControl, WebhookControl, read_json
from sandbox.faults import Faults

from sandbox.woocommerce.api import Api, no_route
from sandbox.woocommerce.model import ApiKey, Settings
from sandbox.woocommerce.state import WooState
from sandbox.woocommerce.taxes import parse_tax_rates
from sandbox.woocommerce.wire import error_response, fmt_date


# --------------------------------------------------------------------------------------------
# Control surface and the app
# --------------------------------------------------------------------------------------------

def control_routes(state: WooState, faults: Faults) -> list[Route]:
    """``/_sandbox/``: seeding, settings, webhook delivery faults and observation (no auth)."""

    def listed(data: Any, key: str) -> list[dict]:
        return data.get(key, [data]) if isinstance(data, dict) else list(data)

    async def products(request: Request) -> Response:
        created = []
        for spec in listed(await read_json(request), "products"):
            spec = dict(spec)
            created.append(seeded_product(state, state.add_product(
                spec.pop("sku", ""), spec.pop("name", "Product"), spec.pop("regular_price", ""), **spec)))
        return JSONResponse(created)

    async def coupons(request: Request) -> Response:
        try:
            made = [state.add_coupon(**c) for c in listed(await read_json(request), "coupons")]
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(made)

    async def keys(request: Request) -> Response:
        data = await read_json(request)
        state.add_key(data["consumer_key"], data["consumer_secret"], data.get("permissions", "read_write"))
        return JSONResponse({"ok": True})

    async def clock(request: Request) -> Response:
        state.advance_clock(float((await read_json(request)).get("advance", 0)))
        return JSONResponse({"now_gmt": fmt_date(state.now())})

    return [
        *control.control_routes(
            faults, reset=state.reset,
            settings=SettingsControl(lambda: state.settings, lambda values: state.settings.update(values)),
            counts=state.counts,
            webhooks=WebhookControl(lambda: state, state.webhook_deliveries,
                                    lambda timeout, options: state.wait_idle(timeout))),
        Route("/_sandbox/products", products, methods=["POST"]),
        Route("/_sandbox/coupons", coupons, methods=["POST"]),
        Route("/_sandbox/keys", keys, methods=["POST"]),
        Route("/_sandbox/clock", clock, methods=["POST"]),
    ]


def seeded_product(state: WooState, product: dict) -> dict:
    """A seeded product as the API shows it, its variations expanded for the seeder's use."""
    variations = [state.variation_json(state.products[v], state.home) for v in product["variations"]]
    return {**product, "variations": variations}


def create_app(*, consumer_key: str = "ck_test", consumer_secret: str = "cs_test",
               home_url: str = "https://shop.test/", currency: str = "USD",
               prices_include_tax: bool = False, tax_rates: dict | None = None,
               strip_authorization: bool = False, max_webhook_failures: int = 5,
               delivery_timeout: float = 60.0, deliver_async: bool = True) -> Starlette:
    """The simulator. ``app.state.woo`` is the :class:`WooState`, ``app.state.faults`` the faults."""
    settings = Settings(home_url=home_url if home_url.endswith("/") else home_url + "/",
                        currency=currency, prices_include_tax=prices_include_tax,
                        strip_authorization=strip_authorization,
                        max_webhook_failures=max_webhook_failures,
                        delivery_timeout=delivery_timeout, deliver_async=deliver_async)
    if tax_rates is not None:
        parse_tax_rates(tax_rates)
        settings.tax_rates = copy.deepcopy(tax_rates)
    state = WooState(settings, [ApiKey(consumer_key, consumer_secret)])
    faults = Faults()
    api = Api(state, faults)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = [*control_routes(state, faults),
              Route("/wp-json/{rest:path}", api.handle, methods=methods),
              Route("/wp-json", api.handle, methods=methods)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(no_route())

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.woo = state
    app.state.faults = faults
    return app

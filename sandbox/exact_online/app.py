"""The control surface (``/_sandbox/``) and the app factory."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.control import SettingsControl, control_routes
from sandbox.faults import Faults

from sandbox.exact_online.api import _body
from sandbox.exact_online.delivery import Deliverer
from sandbox.exact_online.entities import (ACCOUNT, COST_CENTER, DELIVERY, GL_ACCOUNT, INVOICE, ITEM, JOURNAL,
                                           TOPIC_OF, VAT_CODE)
from sandbox.exact_online.oauth import OAuth
from sandbox.exact_online.rules import Rules
from sandbox.exact_online.state import ExactState, Settings
from sandbox.exact_online.views import coerce
from sandbox.exact_online.webhooks import WebhookApi
from sandbox.exact_online.wire import BadRequest, JSON, odata_error

if TYPE_CHECKING:
    from sandbox.exact_online.entities import EntityDef
    from sandbox.exact_online.state import Division


# --------------------------------------------------------------------------- control surface

class Control:
    def __init__(self, state: ExactState, faults: Faults, deliverer: Deliverer):
        self.state, self.faults, self.deliverer = state, faults, deliverer

    async def seed(self, request: Request) -> Response:
        body = _body(await request.body()) or {}
        if not isinstance(body, dict):
            return odata_error(400, "The seed body must be an object.")
        for d in body.get("divisions", []):
            if d.get("Current"):
                self.state.current_division = int(d["Code"])
            self.state.add_division(int(d["Code"]), d.get("Description", f"Division {d['Code']}"),
                                    d.get("Currency", "EUR"), d.get("Country", "NL"))
        div = self.state.divisions.get(int(body.get("division") or self.state.current_division))
        if div is None:
            return odata_error(400, f"Unknown division {body.get('division')}.")
        counts = {}
        for name, entity in (("gl_accounts", GL_ACCOUNT), ("cost_centers", COST_CENTER), ("vat_codes", VAT_CODE),
                             ("journals", JOURNAL), ("items", ITEM), ("accounts", ACCOUNT)):
            for raw in body.get(name, []):
                values = {k: coerce(entity.fields[k], v, k) for k, v in raw.items() if k in entity.fields}
                if entity is ITEM and raw.get("GLRevenueCode"):
                    gl = div.by_code(GL_ACCOUNT, raw["GLRevenueCode"])
                    values["GLRevenue"] = gl["ID"] if gl else None
                if entity is ACCOUNT:
                    values["Code"] = str(values.get("Code") or div.next_account).strip().rjust(18)
                existing = div.by_code(entity, values["Code"]) if "Code" in values else None
                if existing is not None:
                    existing.update(values)
                    existing["Modified"] = self.state.now()
                    self.api_notify(div, entity, existing, "Update")
                else:
                    record = self.state.add(div, entity, values)
                    self.api_notify(div, entity, record, "Create")
            counts[name] = len(div.table(entity))
        return JSON({"division": div.code, "counts": counts})

    def api_notify(self, div: Division, entity: EntityDef, record: dict, action: str) -> None:
        topic = TOPIC_OF.get(entity.path)
        if topic:
            self.deliverer.notify(div, topic, str(record[entity.key]), action,
                                  f"{self.deliverer.base_url}/api/v1/{div.code}/{entity.path}")

    async def documents(self, request: Request) -> Response:
        kind = request.query_params.get("type")
        return JSON([d for d in self.state.documents() if kind is None or d["type"] == kind])

    async def balances(self, request: Request) -> Response:
        """Each account's outstanding balance (invoices less credit notes less bank lines)."""
        return JSON(self.state.balances())

    async def accounts(self, request: Request) -> Response:
        return JSON([{"division": div.code, **{k: v for k, v in a.items() if k not in ("Created", "Modified")}}
                     for div in self.state.divisions.values() for a in div.table(ACCOUNT).values()])

    async def update_account(self, request: Request) -> Response:
        """An Exact user edits an account: fields in the API's names; ``Modified`` moves on."""
        found = self.state.account_by_id(request.path_params["account_id"])
        if found is None:
            return odata_error(404, "The requested record does not exist.")
        div, record = found
        try:
            Rules(self.state).update(div, ACCOUNT, record, _body(await request.body()) or {})
        except BadRequest as exc:
            return odata_error(exc.status, str(exc))
        self.api_notify(div, ACCOUNT, record, "Update")
        return JSON({k: v for k, v in record.items() if k not in ("Created", "Modified")})

    async def record_delivery(self, request: Request) -> Response:
        """A warehouse user ships an order: ``{"your_ref", "tracking_number", "shipping_method"?}``
        → the sales order of the invoice with that ``YourRef`` (made from its lines when there is
        none) and a goods delivery of it carrying the tracking number."""
        body = _body(await request.body()) or {}
        ref = str(body.get("your_ref") or "")
        for div in self.state.divisions.values():
            invoice = next((i for i in div.table(INVOICE).values()
                            if i["Type"] == 8020 and ref and i.get("YourRef") == ref), None)
            if invoice is None:
                continue
            order = self.state.sales_order_for(div, invoice)
            delivery = self.state.deliver(div, order, str(body.get("tracking_number") or ""),
                                          str(body.get("shipping_method") or ""))
            self.api_notify(div, DELIVERY, delivery, "Create")
            return JSON({"EntryID": delivery["EntryID"], "DeliveryNumber": delivery["DeliveryNumber"],
                         "SalesOrderNumber": order["OrderNumber"], "division": div.code})
        return odata_error(404, f"No sales invoice has YourRef {ref!r}.")

    async def authorize(self, request: Request) -> Response:
        body = _body(await request.body()) or {}
        uri = body.get("redirect_uri") or ""
        if self.state.redirect_uris and uri not in self.state.redirect_uris:
            return JSON({"error": "the redirect_uri is not registered for this app"}, status_code=400)
        code = self.state.new_code(uri)
        params = {"code": code} | ({"state": body["state"]} if body.get("state") else {})
        return JSON({"code": code, "location": f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"})

    async def clock(self, request: Request) -> Response:
        body = _body(await request.body()) or {}
        self.state.offset += float(body.get("advance", 0))
        return JSON({"now": self.state.now(), "offset": self.state.offset})

    async def deliveries(self, request: Request) -> Response:
        if self.deliverer.tasks:
            await asyncio.gather(*list(self.deliverer.tasks), return_exceptions=True)
        return JSON(self.state.deliveries)

    def routes(self) -> list[Route]:
        state = self.state
        return [
            *control_routes(self.faults, reset=state.reset, render=JSON,
                            settings=SettingsControl(lambda: state.settings,
                                                     lambda values: state.settings.configure(values)),
                            expire_tokens=state.expire_tokens,
                            stats=lambda: {**state.stats, "quota": state.quota},
                            requests=lambda: state.request_log),
            Route("/_sandbox/seed", self.seed, methods=["POST"]),
            Route("/_sandbox/documents", self.documents, methods=["GET"]),
            Route("/_sandbox/accounts", self.accounts, methods=["GET"]),
            Route("/_sandbox/balances", self.balances, methods=["GET"]),
            Route("/_sandbox/accounts/{account_id}", self.update_account, methods=["POST"]),
            Route("/_sandbox/deliveries", self.record_delivery, methods=["POST"]),
            Route("/_sandbox/authorize", self.authorize, methods=["POST"]),
            Route("/_sandbox/clock", self.clock, methods=["POST"]),
            Route("/_sandbox/webhook-deliveries", self.deliveries, methods=["GET"]),
        ]


def create_app(*, client_id: str = "9a8b7c6d-0000-4000-8000-000000000001", client_secret: str = "sandbox-secret",
               webhook_secret: str = "sandbox-webhook-secret", redirect_uris: tuple[str, ...] = (),
               callback_verify: Any = True, **settings: Any) -> Starlette:
    """One simulated Exact Online app registration + user; ``settings`` are :class:`Settings`
    fields. State is ``app.state.exact``, faults ``app.state.faults``."""
    config = Settings()
    config.configure(settings)
    state = ExactState(client_id=client_id, client_secret=client_secret, webhook_secret=webhook_secret,
                       redirect_uris=tuple(redirect_uris), settings=config)
    faults = Faults()
    deliverer = Deliverer(state, verify=callback_verify)
    api = WebhookApi(state, faults, deliverer)
    oauth = OAuth(state)

    async def remember_host(request: Request) -> None:
        deliverer.base_url = f"{request.url.scheme}://{request.url.netloc}"

    async def me(request: Request) -> Response:
        await remember_host(request)
        return await api.me(request)

    async def resource(request: Request) -> Response:
        await remember_host(request)
        return await api.resource(request)

    methods = ["GET", "POST", "PUT", "DELETE"]
    app = Starlette(routes=[
        *Control(state, faults, deliverer).routes(),
        Route("/api/oauth2/auth", oauth.authorize, methods=["GET"]),
        Route("/api/oauth2/token", oauth.token, methods=["POST"]),
        Route("/api/v1/current/Me", me, methods=["GET"]),
        Route("/api/v1/{division}/{rest:path}", resource, methods=methods),
    ])
    app.state.exact = state
    app.state.faults = faults
    return app

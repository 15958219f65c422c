"""The control surface (``/_sandbox/``) and the app factory."""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.control import SettingsControl, control_routes
from sandbox.faults import Faults

from sandbox.acumatica.endpoint import EntityApi
from sandbox.acumatica.entities import RULES
from sandbox.acumatica.identity import IdentityServer
from sandbox.acumatica.model import Settings
from sandbox.acumatica.orders import ORDER_TYPES, plain_shipment
from sandbox.acumatica.state import AcumaticaState
from sandbox.acumatica.values import parse_body, parse_datetime
from sandbox.acumatica.views import plain
from sandbox.acumatica.wire import JSON


# --------------------------------------------------------------------------- HTTP: control surface

class Control:
    """``/_sandbox/*``: seeding, settings and read-outs for tests, the demo and benchmarks."""

    def __init__(self, state: AcumaticaState, faults: Faults):
        self.state, self.faults = state, faults

    async def stock_items(self, request: Request) -> Response:
        items = [self.state.add_stock_item(
            i["InventoryID"], default_price=i.get("DefaultPrice", 0), last_cost=i.get("LastCost", 0),
            qty_on_hand=i.get("QtyOnHand", 0), warehouse_id=i.get("WarehouseID", "WHOLESALE"),
            description=i.get("Description"), item_status=i.get("ItemStatus", "Active"))
            for i in await _list_body(request)]
        return JSON([plain(i) for i in items])

    async def non_stock_items(self, request: Request) -> Response:
        items = [self.state.add_non_stock_item(
            i["InventoryID"], default_price=i.get("DefaultPrice", 0), last_cost=i.get("LastCost", 0),
            description=i.get("Description"), item_type=i.get("ItemType", "Non-Stock Item"),
            item_status=i.get("ItemStatus", "Active")) for i in await _list_body(request)]
        return JSON([plain(i) for i in items])

    async def taxes(self, request: Request) -> Response:
        for tax in await _list_body(request):
            if isinstance(tax, dict):
                self.state.add_tax(tax["TaxID"], tax.get("Rate"))
            else:
                self.state.add_tax(str(tax))
        return JSON({k: plain(v) for k, v in self.state.taxes.items()})

    async def cash_accounts(self, request: Request) -> Response:
        if request.method == "POST":
            for account in await _list_body(request):
                if isinstance(account, dict):
                    self.state.add_cash_account(account["CashAccountCD"], currency=account.get("CurrencyID"),
                                                description=account.get("Description"))
                else:
                    self.state.add_cash_account(str(account))
        return JSON(list(self.state.cash_accounts.values()))

    async def payment_methods(self, request: Request) -> Response:
        if request.method == "POST":
            for method in await _list_body(request):
                if not isinstance(method, dict):
                    method = {"PaymentMethodID": str(method)}
                self.state.add_payment_method(
                    method["PaymentMethodID"], cash_account=method.get("CashAccount"),
                    cash_accounts=tuple(method.get("CashAccounts") or ()), active=method.get("Active", True))
        return JSON(list(self.state.payment_methods.values()))

    async def customers(self, request: Request) -> Response:
        if request.method == "POST":
            for c in await _list_body(request):
                self.state.add_customer(c["CustomerID"], name=c.get("CustomerName"), email=c.get("Email"),
                                        currency=c.get("CurrencyID"), customer_class=c.get("CustomerClass", "DEFAULT"),
                                        contact=c.get("MainContact"), account_ref=c.get("AccountRef"))
        return JSON(self.state.customers())

    async def documents(self, request: Request) -> Response:
        return JSON(self.state.documents(request.query_params.get("type")))

    async def shipments(self, request: Request) -> Response:
        """POST: confirmed shipments of posted sales orders (``{OrderNbr, OrderType?} | {ExternalRef}``,
        ``TrackingNbr`` or ``TrackingNumbers``, ``ShipVia?``, ``ShipmentDate?``, ``Confirm?``); GET: all."""
        if request.method == "GET":
            return JSON([plain_shipment(s) for s in self.state.records["Shipment"].values()])
        made = []
        for spec in await _list_body(request):
            order = (self.state.order_by_ref(spec["ExternalRef"]) if spec.get("ExternalRef") else
                     self.state.find("SalesOrder", OrderType=spec.get("OrderType") or ORDER_TYPES[0],
                                     OrderNbr=spec.get("OrderNbr")))
            if order is None:
                return JSON({"error": "no such sales order"}, status_code=404)
            numbers = spec.get("TrackingNumbers") or ([spec["TrackingNbr"]] if spec.get("TrackingNbr") else [])
            try:
                made.append(self.state.add_shipment(
                    order, tracking_numbers=tuple(numbers), ship_via=spec.get("ShipVia"),
                    shipment_date=parse_datetime(spec["ShipmentDate"]) if spec.get("ShipmentDate") else None,
                    confirm=spec.get("Confirm", True)))
            except ValueError as exc:
                return JSON({"error": str(exc)}, status_code=422)
        return JSON([plain_shipment(s) for s in made])

    def routes(self) -> list[Route]:
        state = self.state
        return [
            *control_routes(self.faults, reset=state.reset, render=JSON,
                            settings=SettingsControl(lambda: state.settings,
                                                     lambda values: state.settings.configure(values)),
                            expire_tokens=state.expire_tokens, stats=lambda: state.stats,
                            requests=lambda: state.request_log),
            Route("/_sandbox/stock-items", self.stock_items, methods=["POST"]),
            Route("/_sandbox/non-stock-items", self.non_stock_items, methods=["POST"]),
            Route("/_sandbox/taxes", self.taxes, methods=["POST"]),
            Route("/_sandbox/customers", self.customers, methods=["GET", "POST"]),
            Route("/_sandbox/cash-accounts", self.cash_accounts, methods=["GET", "POST"]),
            Route("/_sandbox/payment-methods", self.payment_methods, methods=["GET", "POST"]),
            Route("/_sandbox/documents", self.documents, methods=["GET"]),
            Route("/_sandbox/shipments", self.shipments, methods=["GET", "POST"]),
        ]


async def _list_body(request: Request) -> list:
    body = parse_body(await request.body())
    return body if isinstance(body, list) else [body]


# --------------------------------------------------------------------------- the app

def create_app(*, tenant: str = "Company", client_id: str = "00000000-0000-0000-0000-000000000001@Company",
               client_secret: str = "secret", username: str = "admin", password: str = "admin",
               versions: tuple[str, ...] = ("23.200.001", "24.200.001"), requests_per_minute: int = 0,
               token_lifetime: int = 3600, send_retry_after: bool = True, base_currency: str = "USD",
               site_path: str = "") -> Starlette:
    """One simulated Acumatica tenant; its state is ``app.state.acumatica``, faults ``app.state.faults``."""
    site = "/" + site_path.strip("/") if site_path.strip("/") else ""
    settings = Settings(requests_per_minute=requests_per_minute, send_retry_after=send_retry_after,
                        token_lifetime=token_lifetime)
    state = AcumaticaState(tenant=tenant, base_currency=base_currency, settings=settings, rules=RULES)
    faults = Faults()
    credentials = {"client_id": client_id, "client_secret": client_secret, "username": username,
                   "password": password}
    api = EntityApi(state, faults, site_path=site, versions=tuple(versions), credentials=credentials)
    identity = IdentityServer(state, credentials, site)
    methods = ["GET", "PUT", "POST", "PATCH", "DELETE"]
    routes = [
        *Control(state, faults).routes(),
        Route(f"{site}/identity/connect/token", identity.token, methods=["POST"]),
        Route(f"{site}/identity/.well-known/openid-configuration", identity.configuration, methods=["GET"]),
        Route(f"{site}/entity", api.discovery, methods=["GET"]),
        Route(f"{site}/entity/", api.discovery, methods=["GET"]),
        Route(f"{site}/entity/auth/login", api.login, methods=["POST"]),
        Route(f"{site}/entity/auth/logout", api.logout, methods=["POST"]),
        Route(f"{site}/entity/{{endpoint}}/{{version}}/{{rest:path}}", api.entity, methods=methods),
        Route(f"{site}/entity/{{endpoint}}/{{version}}", api.entity, methods=methods),
    ]
    app = Starlette(routes=routes)
    app.state.acumatica = state
    app.state.faults = faults
    return app

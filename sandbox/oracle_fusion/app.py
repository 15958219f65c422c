"""The control surface (``/_sandbox/``) and the app factory."""
from __future__ import annotations

import json
from decimal import Decimal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.control import SettingsControl, control_routes
from sandbox.faults import Faults

from sandbox.oracle_fusion.api import Api
from sandbox.oracle_fusion.state import OracleState, Settings
from sandbox.oracle_fusion.wire import CHART, JSON


# --------------------------------------------------------------------------- control surface

class Control:
    def __init__(self, state: OracleState, faults: Faults) -> None:
        self.state, self.faults = state, faults

    async def _list(self, request: Request) -> list:
        body = json.loads(await request.body() or b"[]", parse_float=Decimal)
        return body if isinstance(body, list) else [body]

    async def items(self, request: Request) -> Response:
        for item in await self._list(request):
            number = item["ItemNumber"] if isinstance(item, dict) else str(item)
            self.state.lookups["items"][number] = {"ItemNumber": number,
                                                   "Description": (item.get("Description")
                                                                   if isinstance(item, dict) else None)}
        return JSON(sorted(self.state.lookups["items"]))

    def _values(self, segment: str):
        async def endpoint(request: Request) -> Response:
            for value in await self._list(request):
                self.state.lookups["values"][segment].add(str(value))
            return JSON(sorted(self.state.lookups["values"][segment]))
        return endpoint

    async def combinations(self, request: Request) -> Response:
        for row in await self._list(request):
            combo = row["combination"] if isinstance(row, dict) else str(row)
            parts = combo.split("-")
            if len(parts) != len(CHART):
                return JSON({"error": f"{combo}: {len(CHART)} segments expected"}, status_code=400)
            for part, segment in zip(parts, CHART):
                self.state.lookups["values"][segment].add(part)
            if isinstance(row, dict) and row.get("enabled") is False:
                self.state.lookups["disabled"].add(combo)
            else:
                self.state.lookups["disabled"].discard(combo)
        return JSON({"ok": True})

    async def tax_codes(self, request: Request) -> Response:
        for row in await self._list(request):
            row = row if isinstance(row, dict) else {"code": str(row)}
            rate = row.get("rate")
            self.state.lookups["tax_codes"][row["code"]] = {
                "regime": row.get("regime", "US SALES TAX"),
                "rate": Decimal(str(rate)) if rate is not None else None}
        return JSON({k: {"regime": v["regime"], "rate": v["rate"]}
                     for k, v in self.state.lookups["tax_codes"].items()})

    async def receipt_methods(self, request: Request) -> Response:
        for row in await self._list(request):
            row = row if isinstance(row, dict) else {"name": str(row)}
            self.state.lookups["receipt_methods"][row["name"]] = {
                "id": self.state.next_id(), "bank_account": row.get("bank_account", "10271-17621-619")}
        return JSON(sorted(self.state.lookups["receipt_methods"]))

    async def customers(self, request: Request) -> Response:
        if request.method == "POST":
            for row in await self._list(request):
                self.state.add_customer(row["name"], row.get("email", ""), row.get("source_reference", ""),
                                        phone=row.get("phone", ""), address=row.get("address"),
                                        account=row.get("account", True))
        return JSON([{**{k: v for k, v in a.items() if k != "sites"},
                      "balance": self.state.account_balance(a["AccountNumber"])}
                     for a in self.state.accounts.values()])

    async def parties(self, request: Request) -> Response:
        return JSON(list(self.state.parties.values()))

    async def documents(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        return JSON([d for d in self.state.documents() if kind is None or d["kind"] == kind])

    async def automatch(self, request: Request) -> Response:
        return JSON({"applied": self.state.automatch()})

    def routes(self) -> list[Route]:
        state = self.state
        return [
            *control_routes(self.faults, reset=state.reset, render=JSON,
                            settings=SettingsControl(lambda: state.settings,
                                                     lambda values: state.settings.configure(values)),
                            expire_tokens=lambda: state.tokens.clear(), stats=lambda: state.stats,
                            requests=lambda: state.request_log),
            Route("/_sandbox/items", self.items, methods=["POST"]),
            Route("/_sandbox/accounts", self._values("Account"), methods=["POST"]),
            Route("/_sandbox/cost-centers", self._values("CostCenter"), methods=["POST"]),
            Route("/_sandbox/combinations", self.combinations, methods=["POST"]),
            Route("/_sandbox/tax-codes", self.tax_codes, methods=["POST"]),
            Route("/_sandbox/receipt-methods", self.receipt_methods, methods=["POST"]),
            Route("/_sandbox/customers", self.customers, methods=["GET", "POST"]),
            Route("/_sandbox/parties", self.parties, methods=["GET"]),
            Route("/_sandbox/documents", self.documents, methods=["GET"]),
            Route("/_sandbox/automatch", self.automatch, methods=["POST"]),
        ]


def create_app(*, username: str = "integration.user", password: str = "Welcome1",
               client_id: str = "ml-connector-client", client_secret: str = "client-secret",
               requests_per_minute: int = 0, token_lifetime: int = 3600) -> Starlette:
    """One simulated Fusion pod and its identity domain; state ``app.state.oracle``, faults
    ``app.state.faults``."""
    settings = Settings()
    state = OracleState(settings)
    settings.requests_per_minute, settings.token_lifetime = requests_per_minute, token_lifetime
    faults = Faults()
    api = Api(state, faults, {"username": username, "password": password,
                              "client_id": client_id, "client_secret": client_secret})
    rest = "/{family}/resources/{version}"
    app = Starlette(routes=[
        *Control(state, faults).routes(),
        Route("/oauth2/v1/token", api.token, methods=["POST"]),
        Route("/crmService/CustomerAccountService", api.soap, methods=["POST"]),
        Route("/fscmService/CreditMemoService", api.soap, methods=["POST"]),
        Route(rest, api.catalog, methods=["GET"]),
        Route(rest + "/", api.catalog, methods=["GET"]),
        Route(rest, api.batch, methods=["POST"]),
        Route(rest + "/", api.batch, methods=["POST"]),
        Route(rest + "/{rest:path}", api.resource, methods=["GET", "POST", "PATCH", "DELETE"]),
    ])
    app.state.oracle = state
    app.state.faults = faults
    return app

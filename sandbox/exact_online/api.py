"""The REST endpoint: division routing, auth, quotas and faults, list/get/create/update/delete."""
from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from sandbox.faults import Faults, lost_response

from sandbox.exact_online.entities import ENTITIES, RECEIVABLES, EntityDef, G, INVOICE, TOPIC_OF, _f
from sandbox.exact_online.query import compile_filter
from sandbox.exact_online.rules import Rules
from sandbox.exact_online.views import parse_select, render
from sandbox.exact_online.wire import BadRequest, JSON, SAFE, odata_error

if TYPE_CHECKING:
    from sandbox.exact_online.state import Chain, Division, ExactState
    from sandbox.exact_online.delivery import Deliverer


# --------------------------------------------------------------------------- HTTP: API

class Api:
    def __init__(self, state: ExactState, faults: Faults, deliverer: "Deliverer"):
        self.state, self.faults, self.rules, self.deliverer = state, faults, Rules(state), deliverer

    async def _fault(self) -> Response | None:
        await self.faults.admit(self.state.expire_tokens)
        retry_after = self.faults.take_429()
        if retry_after is None and self.faults.fail_status == 429 and self.faults.fail_next:
            self.faults.fail_next -= 1
            retry_after = self.faults.retry_after
        if retry_after is not None:
            reset = str(int((self.state.now() + retry_after) * 1000))
            self.state.stats["rate_limited"] += 1
            return odata_error(429, "API rate limit exceeded.", {
                "X-RateLimit-Minutely-Limit": str(self.state.settings.minutely_limit),
                "X-RateLimit-Minutely-Remaining": "0", "X-RateLimit-Minutely-Reset": reset})
        status = self.faults.take_failure()
        if status is not None:
            return odata_error(status, "An error occurred. Simulated failure.")
        return None

    def _count(self, response: Response, request: Request) -> Response:
        self.state.request_log.append({"method": request.method, "path": request.url.path,
                                       "query": request.url.query, "status": response.status_code})
        by = self.state.stats["by_status"]
        by[str(response.status_code)] = by.get(str(response.status_code), 0) + 1
        self.state.stats["api_requests"] += 1
        return response

    async def me(self, request: Request) -> Response:
        async def handler(chain: Chain) -> Response:
            record = {"UserID": self.state.user_id, "CurrentDivision": chain.division, "UserName": "sandbox",
                      "FullName": "Sandbox User", "Email": "sandbox@example.com", "Language": "EN",
                      "LanguageCode": "en-GB", "DivisionCustomer": None}
            me = EntityDef("current/Me", "Exact.Web.Api.System.Me", "UserID", _f(
                guid="UserID DivisionCustomer", int="CurrentDivision",
                string="UserName FullName Email Language LanguageCode"), frozenset(), methods=frozenset({"GET"}))
            select, _ = parse_select(request.query_params.get("$select"), me)
            base = f"{request.url.scheme}://{request.url.netloc}/api/v1"
            return JSON({"d": {"results": [render(me, record, f"{base}/current", select, set())]}})
        return await self.guarded(request, None, handler)

    async def guarded(self, request: Request, division: int | None, handler) -> Response:
        response = await self._fault()
        if response is not None:
            return self._count(response, request)
        chain = self.state.authenticated(request)
        if chain is None:
            self.state.stats["unauthorized"] += 1
            return self._count(odata_error(401, "Unauthorized: the access token is missing, invalid or expired."),
                               request)
        if division is not None and division not in self.state.divisions:
            return self._count(odata_error(403, "Forbidden - WrongDivision"), request)
        headers, allowed = self.state.admit(division if division is not None else chain.division)
        if not allowed:
            self.state.stats["rate_limited"] += 1
            return self._count(odata_error(429, "API rate limit exceeded.", headers), request)
        try:
            response = await handler(chain)
        except BadRequest as exc:
            response = odata_error(exc.status, str(exc))
        response.headers.update(headers)
        if request.method != "GET" and response.status_code < 300 and self.faults.take_lost_commit():
            return self._count(lost_response(), request)
        return self._count(response, request)

    async def resource(self, request: Request) -> Response:
        try:
            division = int(request.path_params["division"])
        except ValueError:
            return self._count(odata_error(404, "Not found"), request)
        rest = request.path_params["rest"]
        m = re.match(r"^(?P<path>(?:read/)?[A-Za-z]+/[A-Za-z]+)(?:\((?P<key>[^)]*)\))?$", rest)
        entity = ENTITIES.get(m.group("path").lower()) if m else None

        async def handler(chain: Chain) -> Response:
            if entity is None:
                raise BadRequest(f"Resource not found for the segment '{rest}'.", 404)
            if request.method not in entity.methods:
                raise BadRequest(f"The HTTP method '{request.method}' is not allowed here.", 405)
            div = self.state.divisions[division]
            route = f"{request.method} {entity.path}"
            self.state.stats["by_route"][route] = self.state.stats["by_route"].get(route, 0) + 1
            key = _key(m.group("key"), entity) if m.group("key") is not None else None
            base = f"{request.url.scheme}://{request.url.netloc}/api/v1/{division}"
            if request.method == "GET":
                return self.get(request, div, entity, key, base)
            if request.method == "POST" and key is None:
                body = _body(await request.body())
                record = self.rules.create(div, entity, body)
                self._notify(div, entity, record, "Create")
                return JSON({"d": render(entity, record, base, None, {entity.lines} if entity.lines else set())},
                            status_code=201)
            record = div.table(entity).get(str(key).lower()) if key is not None else None
            if record is None:
                raise BadRequest("The requested record does not exist." if key is not None
                                 else "A key is required.", 404 if key is not None else 400)
            if request.method == "PUT":
                self.rules.update(div, entity, record, _body(await request.body()))
                self._notify(div, entity, record, "Update")
                return Response(status_code=204)
            if request.method == "DELETE":
                if entity is INVOICE and record.get("Status") != 20:
                    raise BadRequest("Only open invoices can be deleted.")
                del div.table(entity)[str(key).lower()]
                for line in record.get(entity.lines or "", []) or []:
                    div.table(ENTITIES[entity.line_entity.lower()]).pop(line["ID"], None)
                self._notify(div, entity, record, "Delete")
                return Response(status_code=204)
            raise BadRequest(f"The HTTP method '{request.method}' is not allowed here.", 405)

        return await self.guarded(request, division, handler)

    def get(self, request: Request, div: Division, entity: EntityDef, key: Any, base: str) -> Response:
        params = request.query_params
        select, nested = parse_select(params.get("$select"), entity)
        expand = {e.strip() for e in (params.get("$expand") or "").split(",") if e.strip()} | nested
        if key is not None:
            record = div.table(entity).get(str(key).lower())
            if record is None:
                raise BadRequest("The requested record does not exist.", 404)
            return JSON({"d": render(entity, record, base, select, expand)})
        if select is None and params.get("$select") is None:
            raise BadRequest("$select is mandatory: name the properties to return.")
        if "$skip" in params:
            raise BadRequest("The query option $skip is not supported on this endpoint; use __next.")
        records = (self.state.receivables(div) if entity is RECEIVABLES
                   else list(div.table(entity).values()))
        if params.get("$filter"):
            predicate = compile_filter(params["$filter"], entity)
            records = [r for r in records if predicate(r)]
        token = params.get("$skiptoken")
        if token:
            after = _key(token, entity)
            keys = [str(r[entity.key]).lower() for r in records]
            records = records[keys.index(str(after).lower()) + 1:] if str(after).lower() in keys else []
        top = _count_param(params.get("$top"))
        if top is not None:
            records = records[:top]
        page = records[:self.state.settings.page_size]
        body: dict[str, Any] = {"results": [render(entity, r, base, select, expand) for r in page]}
        if len(records) > len(page):
            last = page[-1][entity.key]
            options = {k: v for k, v in params.items() if k != "$skiptoken"}
            if top is not None:
                options["$top"] = str(top - len(page))
            options["$skiptoken"] = f"guid'{last}'" if entity.fields[entity.key] == G else str(last)
            body["__next"] = f"{base}/{entity.path}?{urlencode(options, quote_via=quote, safe=SAFE)}"
        return JSON({"d": body})

    def _notify(self, div: Division, entity: EntityDef, record: dict, action: str) -> None:
        topic = TOPIC_OF.get(entity.path)
        if topic:
            self.deliverer.notify(div, topic, str(record[entity.key]), action,
                                  f"{self.deliverer.base_url}/api/v1/{div.code}/{entity.path}")


def _key(text: str, entity: EntityDef) -> Any:
    m = re.match(r"^guid'([^']*)'$", text.strip())
    if m:
        try:
            return str(uuid.UUID(m.group(1)))
        except ValueError:
            raise BadRequest(f"Invalid key {text}.") from None
    if entity.fields.get(entity.key) == G:
        raise BadRequest(f"Invalid key {text}: expected guid'...'.")
    return text.strip("'")


def _count_param(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise BadRequest(f"Invalid $top value '{text}'.")
    return int(text)


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null", parse_float=Decimal)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc

"""The contract-based endpoint: routing, auth/quota/fault guard, list/get/put/delete, actions."""
from __future__ import annotations

import copy
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from sandbox.faults import Faults, lost_response

from sandbox.acumatica.contract import ENTITIES, contract_for, label
from sandbox.acumatica.entities import RULES
from sandbox.acumatica.model import Errors, Operation, new_id, new_record
from sandbox.acumatica.query import compile_filter, expand_paths, parse_count, parse_paths
from sandbox.acumatica.records import merge
from sandbox.acumatica.values import BadRequest, parse_body, unwrap
from sandbox.acumatica.views import View, render, sent_paths
from sandbox.acumatica.wire import (BUILD_VERSION, ENDPOINT, JSON, http_error, no_resource, not_found,
                                    too_many_requests, unauthorized)

if TYPE_CHECKING:
    from sandbox.acumatica.contract import EntityDef, Shape
    from sandbox.acumatica.rules import Rules
    from sandbox.acumatica.state import AcumaticaState


# --------------------------------------------------------------------------- HTTP: entity API

@dataclass
class Call:
    """A resolved ``/entity/{endpoint}/{version}/...`` request."""
    request: Request
    version: str
    entity: EntityDef
    segments: list[str]

    @property
    def contract(self) -> dict[str, Shape]:
        return contract_for(self.version)

    @property
    def shape(self) -> Shape:
        return self.contract[self.entity.name]

    @property
    def rules(self) -> Rules:
        return RULES[self.entity.name]

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.query_params)


class EntityApi:
    """The contract-based endpoint: routing, auth/quota/fault guard, CRUD and actions."""

    def __init__(self, state: AcumaticaState, faults: Faults, *, site_path: str, versions: tuple[str, ...],
                 credentials: dict[str, str]):
        self.state, self.faults = state, faults
        self.site_path, self.versions, self.credentials = site_path, versions, credentials

    # ---- guard

    async def guarded(self, request: Request, entity: str | None, handler: Callable, *,
                      authenticate: bool = True, metered: bool = True) -> Response:
        """Faults first (they model the network and the proxy), then auth, then the licence quota."""
        response = await self._fault(request)
        if response is None and authenticate and not self.state.is_authenticated(request):
            response = unauthorized()
        if response is None and metered:
            wait = self.state.admit()
            if wait is not None:
                response = too_many_requests(wait if self.state.settings.send_retry_after else None)
        if response is None:
            try:
                response = await handler()
            except BadRequest as exc:
                response = exc.response()
        self.state.record_request(request.method, request.url.path, request.url.query, entity,
                                  response.status_code)
        return response

    async def _fault(self, request: Request) -> Response | None:
        await self.faults.admit(self.state.expire_tokens)
        retry_after = self.faults.take_429()
        if retry_after is not None:
            return too_many_requests(retry_after if self.state.settings.send_retry_after else None)
        status = self.faults.take_failure()
        if status is None:
            return None
        if status == 429:
            return too_many_requests(self.faults.retry_after if self.state.settings.send_retry_after else None)
        return http_error(status, "An error has occurred.", "Simulated failure.", "System.Exception")

    # ---- routes

    async def discovery(self, request: Request) -> Response:
        async def handler() -> Response:
            return JSON({"version": {"acumaticaBuildVersion": BUILD_VERSION, "databaseVersion": BUILD_VERSION},
                         "endpoints": [{"name": ENDPOINT, "version": v,
                                        "href": f"{self.site_path}/entity/{ENDPOINT}/{v}/"} for v in self.versions]})
        return await self.guarded(request, None, handler)

    async def login(self, request: Request) -> Response:
        async def handler() -> Response:
            body = await _json_or_form(request)
            tenant = body.get("tenant")
            if (body.get("name") != self.credentials["username"] or body.get("password") != self.credentials["password"]
                    or (tenant and tenant != self.state.tenant)):
                return http_error(500, "An error has occurred.", "Invalid credentials. Please try again.",
                                  "PX.Data.PXException")
            session = self.state.open_session()
            response = Response(status_code=204)
            secure = request.url.scheme == "https"
            response.set_cookie(".ASPXAUTH", session, httponly=True, secure=secure, path="/")
            response.set_cookie("ASP.NET_SessionId", secrets.token_hex(12), httponly=True, secure=secure, path="/")
            response.set_cookie("CompanyID", self.state.tenant, secure=secure, path="/")
            return response
        return await self.guarded(request, "auth/login", handler, authenticate=False)

    async def logout(self, request: Request) -> Response:
        async def handler() -> Response:
            self.state.sessions.pop(request.cookies.get(".ASPXAUTH", ""), None)
            response = Response(status_code=204)
            response.delete_cookie(".ASPXAUTH", path="/")
            return response
        return await self.guarded(request, "auth/logout", handler, authenticate=False, metered=False)

    async def entity(self, request: Request) -> Response:
        call = self._resolve(request)
        if call is None:
            async def missing() -> Response:
                return no_resource(request)
            return await self.guarded(request, None, missing, authenticate=False, metered=False)
        return await self.guarded(request, call.entity.name, lambda: self._dispatch(call))

    def _resolve(self, request: Request) -> Call | None:
        endpoint, version = request.path_params["endpoint"], request.path_params["version"]
        segments = [s for s in request.path_params.get("rest", "").split("/") if s]
        if endpoint != ENDPOINT or version not in self.versions or not segments:
            return None
        definition = ENTITIES.get(segments[0])
        return Call(request, version, definition, segments[1:]) if definition else None

    async def _dispatch(self, call: Call) -> Response:
        method, segments = call.request.method, call.segments
        if segments and segments[0] in call.entity.actions:
            if method == "POST" and len(segments) == 1:
                return await self.invoke_action(call, segments[0])
            if method == "GET" and len(segments) == 3 and segments[1] == "status":
                return self.poll_action(segments[2])
        if method == "POST" and len(segments) == 1:
            return no_resource(call.request)
        handlers = {("GET", False): self.get_list, ("GET", True): self.get_one, ("PUT", False): self.put,
                    ("PATCH", False): self.patch, ("DELETE", True): self.delete}
        handler = handlers.get((method, bool(segments)))
        if handler is None:
            return http_error(405, f"The requested resource does not support http method '{method}'.")
        return await handler(call)

    # ---- reads

    async def get_list(self, call: Call) -> Response:
        params = call.params
        records = list(self.state.records[call.entity.name].values())
        if params.get("$filter"):
            predicate = compile_filter(params["$filter"], call.contract, call.shape)
            records = [r for r in records if predicate(r)]
        skip, top = parse_count(params, "$skip") or 0, parse_count(params, "$top")
        records = records[skip:] if top is None else records[skip:skip + top]
        view = View(expand_paths(params.get("$expand")), parse_paths(params.get("$select")))
        return JSON([self._render(call, r, view, row) for row, r in enumerate(records, start=1)])

    async def get_one(self, call: Call) -> Response:
        record = self._by_url(call)
        if record is None:
            return not_found()
        params = call.params
        return JSON(self._render(call, record, View(expand_paths(params.get("$expand")),
                                                    parse_paths(params.get("$select")))))

    def _by_url(self, call: Call) -> dict | None:
        records = self.state.records[call.entity.name]
        segments = call.segments
        if len(segments) == 1 and _is_guid(segments[0]) and segments[0].lower() in records:
            return records[segments[0].lower()]
        if len(segments) != len(call.entity.keys):
            return None
        return self.state.find(call.entity.name, **dict(zip(call.entity.keys, segments)))

    def _render(self, call: Call, record: dict, view: View, row: int = 1) -> dict:
        body = render(call.contract, call.shape, record, view, row=row)
        base = f"{self.site_path}/entity/{ENDPOINT}/{call.version}"
        body["_links"] = {"self": f"{base}/{call.entity.name}/{record['id']}",
                          "files:put": f"{base}/files/{call.entity.graph}/{record['id']}/{{filename}}"}
        return body

    # ---- writes

    async def put(self, call: Call, *, update_only: bool = False) -> Response:
        body = parse_body(await call.request.body())
        changes = unwrap(call.contract, call.shape, body)
        existing = self._target(call, changes)
        headers = call.request.headers
        if existing is not None and headers.get("if-none-match", "").strip() == "*":
            return http_error(412, "The record already exists.")
        if existing is None and (update_only or headers.get("if-match", "").strip() == "*"):
            return not_found() if update_only else http_error(412, "The record does not exist.")
        view = View(expand_paths(call.params.get("$expand")), parse_paths(call.params.get("$select")))
        if existing is not None and call.rules.is_locked(existing):
            return JSON(self._render(call, existing, view))
        draft = copy.deepcopy(existing) if existing is not None else new_record()
        merge(call.contract, call.shape, draft, changes)
        errors = call.rules.apply(self.state, draft, changes, existing is None)
        if errors:
            return self._unprocessable(call, draft, errors, body, existing is None)
        call.rules.assign_number(self.state, draft)
        self.state.save(call.entity.name, draft)
        if self.faults.take_lost_commit():
            return lost_response()
        return JSON(self._render(call, draft, view))

    async def patch(self, call: Call) -> Response:
        return await self.put(call, update_only=True)

    def _target(self, call: Call, changes: dict) -> dict | None:
        """PUT decides insert vs update from ``$filter``, then ``id``, then the key fields."""
        if call.params.get("$filter"):
            predicate = compile_filter(call.params["$filter"], call.contract, call.shape)
            matches = [r for r in self.state.records[call.entity.name].values() if predicate(r)]
            if len(matches) > 1:
                raise BadRequest(f"The $filter matches {len(matches)} records; a PUT needs exactly one.", "$filter")
            return matches[0] if matches else None
        if "id" in changes:
            record = self.state.records[call.entity.name].get(changes["id"])
            if record is None:
                raise BadRequest(f"No {call.entity.name} record has id '{changes['id']}'.", "entity.id")
            return record
        keys = call.rules.key_values(changes)
        return self.state.find(call.entity.name, **keys) if keys else None

    def _unprocessable(self, call: Call, draft: dict, errors: Errors, body: Any, is_new: bool) -> Response:
        summary = "\r\n".join(f"{label(str(path[-1]))}: {msg}" for path, msg in errors.items() if path[-1])
        entity_error = errors.get(("",))
        errors[("",)] = (f"{'Inserting' if is_new else 'Updating'}  '{call.entity.display}' record raised at least "
                         f"one error. Please review the errors.") + (f"\r\n{entity_error}" if entity_error else "") \
            + (f"\r\n{summary}" if summary else "")
        view = View(expand=sent_paths(body), errors=dict(errors))
        return JSON(self._render(call, draft, view), status_code=422)

    async def delete(self, call: Call) -> Response:
        record = self._by_url(call)
        if record is None:
            return not_found()
        if call.rules.is_locked(record):
            errors = Errors({("",): "A released document cannot be deleted."})
            return JSON(self._render(call, record, View(errors=errors)), status_code=422)
        self.state.forget(call.entity.name, record["id"])
        if self.faults.take_lost_commit():
            return lost_response()
        return Response(status_code=204)

    # ---- actions

    async def invoke_action(self, call: Call, action: str) -> Response:
        body = parse_body(await call.request.body())
        if not isinstance(body, dict):
            raise BadRequest("The action body must be a JSON object with 'entity'.", "invocation")
        changes = unwrap(call.contract, call.shape, body.get("entity") or {}, "invocation.entity")
        doc = self._action_target(call, changes)
        key = call.entity.keys[-1]
        problem = (f"'{label(key)}' cannot be found in the system." if doc is None
                   else call.rules.release_problem(self.state, doc))
        if problem:
            record = doc or {"id": None, **changes}
            path = (key,) if doc is None else ("",)
            return JSON(self._render(call, record, View(errors={path: problem})), status_code=422)
        settings = self.state.settings
        now = self.state.clock()
        operation = Operation(new_id(), doc["id"], settings.action_polls, call.entity.name,
                              asked_at=now, ready_at=now + settings.action_ms / 1000)
        self.state.operations[operation.id] = operation
        if self.faults.take_lost_commit():
            self._finish(operation)
            return lost_response()
        if operation.polls_left <= 0 and settings.action_ms <= 0:
            self._finish(operation)
            return Response(status_code=204)
        location = (f"{self.site_path}/entity/{ENDPOINT}/{call.version}/{call.entity.name}/{action}"
                    f"/status/{operation.id}")
        return Response(status_code=202, headers={"Location": location})

    def _action_target(self, call: Call, changes: dict) -> dict | None:
        if changes.get("id"):
            return self.state.records[call.entity.name].get(changes["id"])
        keys = call.rules.key_values(changes)
        return self.state.find(call.entity.name, **keys) if keys else None

    def poll_action(self, operation_id: str) -> Response:
        operation = self.state.operations.get(operation_id.lower())
        if operation is None:
            return not_found()
        if not operation.done and (operation.polls_left > 0 or self.state.clock() < operation.ready_at):
            operation.polls_left -= 1
            return Response(status_code=202)
        self._finish(operation)
        if operation.error:
            return http_error(500, "An error has occurred.", operation.error, "PX.Data.PXException")
        return Response(status_code=204)

    def _finish(self, operation: Operation) -> None:
        if operation.done:
            return
        operation.done = True
        rules = RULES[operation.entity]
        doc = self.state.records[operation.entity].get(operation.doc_id)
        operation.error = "The document no longer exists." if doc is None else rules.release_problem(self.state, doc)
        if operation.error is None:
            rules.release(self.state, doc)


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


async def _json_or_form(request: Request) -> dict:
    raw = await request.body()
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return dict(parse_qsl(raw.decode()))
    body = parse_body(raw)
    return body if isinstance(body, dict) else {}

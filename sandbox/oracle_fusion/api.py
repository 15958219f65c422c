"""The REST endpoint: versions, auth, quota and fault guard, describe, collections and items, tokens."""
from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from sandbox.faults import Faults, lost_response

from sandbox.oracle_fusion.batch import BatchApi
from sandbox.oracle_fusion.finder import parse_q
from sandbox.oracle_fusion.parties import PartyApi
from sandbox.oracle_fusion.receivables import Receivables
from sandbox.oracle_fusion.soap import SoapApi, SoapFault
from sandbox.oracle_fusion.views import CHILDREN, CHILD_KEYS, FAMILIES, QUERYABLE, View, render, scalars
from sandbox.oracle_fusion.wire import (ApiError, FRAMEWORK_VERSIONS, JSON, PAGE_DEFAULT, PAGE_MAX, VERSIONS,
                                        ZERO, _json, bad, error_response, oauth_error, too_many)

if TYPE_CHECKING:
    from sandbox.oracle_fusion.state import OracleState


# --------------------------------------------------------------------------- HTTP: the API

class Api(BatchApi, PartyApi, SoapApi):
    def __init__(self, state: OracleState, faults: Faults, credentials: dict[str, str]) -> None:
        self.state, self.faults, self.credentials = state, faults, credentials
        self.ar = Receivables(state)
        self._batching = False

    # ---- guard
    def _version(self, request: Request) -> int:
        raw = request.headers.get("REST-Framework-Version", "1").strip()
        if raw not in FRAMEWORK_VERSIONS:
            raise ApiError(400, f"The REST-Framework-Version {raw} isn't supported; allowed: "
                                f"{', '.join(FRAMEWORK_VERSIONS)}.")
        return int(raw)

    def _authenticated(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (self.credentials["username"], self.credentials["password"])
        if scheme.lower() == "bearer":
            expires = self.state.tokens.get(value.strip())
            return expires is not None and expires > time.time()
        return False

    async def guarded(self, request: Request, route: str, handler: Callable, *, soap: bool = False
                      ) -> Response:
        version = 1
        try:
            response = await self._fault()
            if response is None and not self._authenticated(request):
                response = PlainTextResponse("Unauthorized", status_code=401,
                                             headers={"WWW-Authenticate": 'Basic realm="Oracle"'})
            if response is None:
                wait = self.state.admit(self.state.settings.requests_per_minute)
                if wait is not None:
                    response = too_many(wait if self.state.settings.send_retry_after else None)
            if response is None:
                if not soap:
                    version = self._version(request)
                response = await handler(version)
        except ApiError as exc:
            response = error_response(exc, version)
        except SoapFault as exc:
            response = exc.response()
        self.state.record(request, route, response.status_code)
        return response

    async def _fault(self) -> Response | None:
        await self.faults.admit(self.state.tokens.clear)
        wait = self.faults.take_429()
        if wait is not None:
            return too_many(wait if self.state.settings.send_retry_after else None)
        status = self.faults.take_failure()
        if status is None:
            return None
        if status == 429:
            return too_many(self.faults.retry_after)
        return PlainTextResponse("Simulated failure.", status_code=status)

    def _committed(self, response: Response) -> Response:
        """A write that committed: its answer may be lost on the way back (a batch's as one)."""
        if self._batching:
            return response
        return lost_response() if self.faults.take_lost_commit() else response

    # ---- REST
    async def catalog(self, request: Request) -> Response:
        family, version = request.path_params["family"], request.path_params["version"]

        async def handler(v: int) -> Response:
            if version not in VERSIONS or family not in FAMILIES:
                raise ApiError(404, "The requested resource doesn't exist.")
            base = str(request.url).split("?")[0].rstrip("/")
            return JSON({"items": [{"name": r, "kind": "collection", "href": f"{base}/{r}"}
                                   for r in sorted(FAMILIES[family])],
                         "Resource-Versions": list(VERSIONS),
                         "REST-Framework-Versions": list(FRAMEWORK_VERSIONS),
                         "Default-REST-Framework-Version": "1"})
        return await self.guarded(request, f"{family}/", handler)

    async def resource(self, request: Request) -> Response:
        family, version = request.path_params["family"], request.path_params["version"]
        parts = [p for p in request.path_params["rest"].split("/") if p]
        route = parts[0] if parts else "-"

        async def handler(v: int) -> Response:
            return await self._serve(request, family, version, parts, v)
        return await self.guarded(request, route, handler)

    async def _serve(self, request: Request, family: str, version: str, parts: list[str],
                     v: int) -> Response:
        route = parts[0] if parts else "-"
        if version not in VERSIONS or family not in FAMILIES or route not in FAMILIES[family]:
            raise ApiError(404, f"The resource {route} doesn't exist.")
        base = f"{request.url.scheme}://{request.url.netloc}/{family}/resources/{version}"
        params = request.query_params
        view = View(v, base, params.get("onlyData") == "true",
                    params["fields"].split(",") if params.get("fields") else None,
                    set(filter(None, params.get("expand", "").split(","))))
        return await self.dispatch(request, route, parts[1:], view)

    def records(self, resource: str) -> list[dict]:
        s = self.state
        if resource == "receivablesInvoices":
            return list(s.invoices.values())
        if resource == "receivablesCreditMemos":
            return list(s.memos.values())
        if resource == "standardReceipts":
            return list(s.receipts.values())
        if resource == "accounts":
            return list(s.parties.values())
        if resource == "accountCombinationsLOV":
            return s.combinations()
        if resource == "receiptMethods":
            return [{"ReceiptMethodId": m["id"], "Name": name, "ReceiptClass": "Manual",
                     "BankAccountNumber": m["bank_account"], "StartDate": "2000-01-01",
                     "EndDate": None} for name, m in s.lookups["receipt_methods"].items()]
        if resource == "receivablesCustomerAccountActivities":
            return [{"AccountId": a["AccountId"], "AccountNumber": a["AccountNumber"],
                     "CustomerId": a["CustomerId"], "CustomerName": a["CustomerName"],
                     "TotalOpenReceivablesForAccount": sum(
                         (i["InvoiceBalanceAmount"] for i in s.invoices.values()
                          if i["BillToCustomerNumber"] == a["AccountNumber"]), ZERO),
                     "creditMemoApplications": s.credit_memo_applications(a["AccountNumber"])}
                    for a in s.accounts.values()]
        return []

    async def dispatch(self, request: Request, resource: str, rest: list[str], view: View) -> Response:
        key_field, children = CHILDREN[resource]
        method = request.method
        href = f"{view.base}/{resource}"
        if not rest:
            if method == "GET":
                return self.collection(request, self.records(resource), view, href, key_field,
                                       children, QUERYABLE[resource])
            if method == "POST":
                return self._committed(await self.create(request, resource, view))
            raise ApiError(405, f"The method {method} isn't allowed on {resource}.")
        record = next((r for r in self.records(resource) if str(r.get(key_field)) == rest[0]), None)
        if record is None:
            raise ApiError(404, f"The {resource} item {rest[0]} doesn't exist.")
        href = f"{href}/{rest[0]}"
        if resource == "accounts" and method in ("PATCH", "POST"):
            return self._committed(await self.change_party(request, record, rest, view, href))
        if len(rest) == 1:
            if method == "GET":
                return JSON(render(record, href, view, children))
            if method == "DELETE" and resource == "receivablesInvoices":
                if record["InvoiceBalanceAmount"] != record["EnteredAmount"]:
                    raise bad(f"The transaction {record['TransactionNumber']} has applications "
                              f"and can't be deleted.")
                del self.state.invoices[record["CustomerTransactionId"]]
                return self._committed(Response(status_code=204))
            raise ApiError(405, f"The method {method} isn't allowed on a {resource} item.")
        if len(rest) >= 3 and rest[1] == "child" and rest[2] in children and method == "GET":
            rows = record.get(rest[2], [])
            ckey = CHILD_KEYS.get(rest[2], "")
            sub = tuple(k for r in rows[:1] for k, v in r.items() if isinstance(v, list))
            if len(rest) == 3:
                return self.collection(request, rows, view, f"{href}/child/{rest[2]}", ckey, sub)
            row = next((r for r in rows if str(r.get(ckey)) == rest[3]), None)
            if row is None:
                raise ApiError(404, f"The child item {rest[3]} doesn't exist.")
            return JSON(render(row, f"{href}/child/{rest[2]}/{rest[3]}", view, sub))
        if (len(rest) == 3 and rest[1] == "action" and method == "POST"
                and resource == "standardReceipts" and rest[2] == "applyReceipt"
                and self.state.settings.apply_receipt_action):
            if not request.headers.get("content-type", "").startswith("application/vnd.oracle.adf.action+json"):
                raise ApiError(415, "Actions need Content-Type application/vnd.oracle.adf.action+json.")
            return self._committed(JSON(self.ar.apply_receipt(record, await _json(request))))
        raise ApiError(404, f"The path {'/'.join(rest)} of {resource} doesn't exist.")

    def collection(self, request: Request, rows: list[dict], view: View, href: str, key_field: str,
                   children: tuple[str, ...], attributes: set[str] | None = None) -> Response:
        params = request.query_params
        attributes = (attributes or set()) | {k for r in rows for k in scalars(r)} | {key_field}
        if params.get("q"):
            pred = parse_q(params["q"], view.version, attributes | {key_field})
            rows = [r for r in rows if pred(r)]
        for spec in reversed([s for s in params.get("orderBy", "").split(",") if s]):
            name, _, direction = spec.partition(":")
            if name not in attributes:
                raise bad(f"The attribute {name} in orderBy isn't valid.", "orderBy")
            rows = sorted(rows, key=lambda r: (r.get(name) is None, str(r.get(name) or "")),
                          reverse=direction == "desc")
        try:
            limit = min(int(params.get("limit", PAGE_DEFAULT)), PAGE_MAX)
            offset = int(params.get("offset", 0))
        except ValueError:
            raise bad("limit and offset must be whole numbers.", "limit") from None
        if limit < 0 or offset < 0:
            raise bad("limit and offset can't be negative.", "limit")
        page = rows[offset:offset + limit]
        body: dict[str, Any] = {
            "items": [render(r, f"{href}/{r.get(key_field)}", view, children) for r in page],
            "count": len(page), "hasMore": offset + len(page) < len(rows), "limit": limit,
            "offset": offset}
        if params.get("totalResults") == "true":
            body["totalResults"] = len(rows)
        if not view.only_data:
            body["links"] = [{"rel": "self", "href": href, "name": href.rsplit("/", 1)[-1],
                              "kind": "collection"}]
        return JSON(body)

    async def create(self, request: Request, resource: str, view: View) -> Response:
        ctype = request.headers.get("content-type", "")
        if not (ctype.startswith("application/json") or ctype.startswith("application/vnd.oracle.adf.resourceitem+json")):
            raise ApiError(415, f"The media type {ctype or '(none)'} isn't supported.")
        body = await _json(request)
        if resource == "receivablesInvoices":
            record = self.ar.create_invoice(body)
            key = record["CustomerTransactionId"]
        elif resource == "receivablesCreditMemos":
            record = self.ar.create_memo(body)
            key = record["CustomerTransactionId"]
        elif resource == "standardReceipts":
            record = self.ar.create_receipt(body)
            key = record["StandardReceiptId"]
        elif resource == "accounts":
            record = self.create_party(body)
            key = record["PartyNumber"]
        else:
            raise ApiError(405, f"{resource} is read-only.")
        href = f"{view.base}/{resource}/{key}"
        children = CHILDREN[resource][1]
        full = View(view.version, view.base, False, None, set(children))
        return JSON(render(record, href, full, children), status_code=201,
                    headers={"Location": href})

    # ---- OAuth (the identity domain)
    async def token(self, request: Request) -> Response:
        self.state.stats["token_requests"] += 1
        wait = self.state.admit(self.state.settings.token_requests_per_minute, token=True)
        if wait is not None:
            return too_many(wait)
        form = dict(parse_qsl((await request.body()).decode()))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = base64.b64decode(value).decode().partition(":")
            except ValueError:
                client_id = secret = None
        if (client_id, secret) != (self.credentials["client_id"], self.credentials["client_secret"]):
            return oauth_error("invalid_client", "Client authentication failed.", 401)
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", "The grant type isn't supported.")
        scope = form.get("scope", "").strip()
        if not scope:
            return oauth_error("invalid_scope", "A scope is required.")
        lifetime = self.state.settings.token_lifetime
        m = re.search(r"urn:opc:resource:expiry=(\d+)", scope)
        if m:
            lifetime = max(60, int(m.group(1)))
        token = ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (
            b'{"alg":"RS256","typ":"JWT"}', json.dumps({"sub": client_id, "scope": scope}).encode(),
            secrets.token_bytes(32)))
        self.state.tokens[token] = time.time() + lifetime
        return JSON({"access_token": token, "token_type": "Bearer", "expires_in": lifetime},
                    headers={"Cache-Control": "no-store"})

"""The console's routes. Every page needs a signed-in operator (else: the sign-in page, and
no order data); every POST needs the session's CSRF token (else 403, nothing done); every
action is recorded (actions.py). Responses are never cached and never framed; the console
writes no access log (paths carry order numbers) and logs actions by kind only."""
from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import structlog
from jinja2 import Environment as Templates, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from temporalio.client import Client
from temporalio.service import RPCError

from connections import order_overrides
from connections.store import ConnectionNotFound, ConnectionStore
from starter.console import fixes, views
from starter.console.accounts import Accounts, Session, csrf_ok
from starter.console.actions import MAPPING, REPLAY, ActionLog
from starter.console.throttle import SignInThrottle
from starter.temporal import TemporalUnavailable

HERE = Path(__file__).parent
SESSION_COOKIE = "ml_console_session"
LOGIN_COOKIE = "ml_console_login"  # the sign-in form's own CSRF token (double submit)
log = structlog.get_logger("console")


@dataclass(frozen=True)
class Settings:
    """How one deployment runs the console (``ml-connector console`` flags)."""

    task_queue: str = "ml-connector"
    namespace: str = "default"
    temporal_ui: str = "http://127.0.0.1:8233"
    auth: str = "password"  # or "proxy": trust proxy_header, set by an authenticating proxy
    proxy_header: str = "X-Ml-Operator"
    base_path: str = ""  # e.g. "/console" behind a proxy that routes that prefix here
    secure_cookies: bool = False  # True behind https


class Forbidden(Exception):
    pass


def create_console(store: ConnectionStore, client: Callable[[], Awaitable[Client]],
                   settings: Settings, accounts: Accounts | None = None,
                   throttle: SignInThrottle | None = None) -> Starlette:
    accounts = accounts or Accounts(store.db)
    throttle = throttle or SignInThrottle(store.db, clock=accounts.clock)
    actions = ActionLog(store)
    base = settings.base_path.rstrip("/")
    templates = Templates(loader=FileSystemLoader(HERE / "templates"),
                          autoescape=select_autoescape(["html"]))

    def url(path: str) -> str:
        return base + path

    templates.globals.update(url=url, auth_mode=settings.auth)
    templates.filters["when"] = when

    def render(request: Request, name: str, session: Session | None, status: int = 200,
               **context) -> HTMLResponse:
        html = templates.get_template(name).render(
            request=request, session=session, csrf=session.csrf if session else "",
            path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)

    def operator_session(request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        session = accounts.session(token)
        if settings.auth != "proxy":
            return session
        asserted = request.headers.get(settings.proxy_header, "").strip()
        if not asserted:
            return None
        if session is not None and session.operator == asserted:
            return session
        new_token, session = accounts.open_session(asserted)
        request.state.new_cookie = new_token
        actions.record(asserted, "sign-in", detail="identity asserted by the proxy")
        return session

    def finish(request: Request, response: Response) -> Response:
        if token := getattr(request.state, "new_cookie", None):
            _set_cookie(response, SESSION_COOKIE, token, settings, base)
        response.headers.update(SECURITY_HEADERS)
        return response

    def page(handler):
        """Resolve the operator; GET without one goes to sign-in, POST without a valid CSRF
        token is refused (403) before the handler runs."""

        async def endpoint(request: Request) -> Response:
            session = operator_session(request)
            if request.method == "POST":
                form = await request.form()
                if session is None or not csrf_ok(session, form.get("csrf_token")):
                    log.warning("console form refused: no session or bad CSRF token")
                    return finish(request, render(request, "refused.html", session, 403))
                request.state.form = form
            elif session is None:
                if settings.auth == "proxy":
                    return finish(request, PlainTextResponse(
                        "no operator identity from the proxy", status_code=401))
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return finish(request, RedirectResponse(
                    url("/login") + "?next=" + quote(target, safe=""), status_code=303))
            try:
                return finish(request, await handler(request, session))
            except ConnectionNotFound as exc:
                return finish(request, render(request, "message.html", session, 404,
                                              title="Not found", message=str(exc)))
            except (TemporalUnavailable, RPCError) as exc:
                return finish(request, render(
                    request, "message.html", session, 503, title="Temporal is unreachable",
                    message=f"{str(exc).splitlines()[0][:200]} — the store's pages still answer."))

        return endpoint

    async def temporal() -> Client:
        return await client()

    # --- sign-in --------------------------------------------------------------------------
    async def login_form(request: Request) -> Response:
        if settings.auth == "proxy":
            return RedirectResponse(url("/"), status_code=303)
        return _login_page(request, None, 200)

    def _login_page(request: Request, error: str | None, status: int) -> Response:
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", None, status, login_csrf=token, error=error,
                          next=request.query_params.get("next", ""))
        _set_cookie(response, LOGIN_COOKIE, token, settings, base, max_age=1800)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def login(request: Request) -> Response:
        form = await request.form()
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        submitted = str(form.get("csrf_token", ""))
        if settings.auth == "proxy" or not cookie or not secrets.compare_digest(cookie, submitted):
            log.warning("console sign-in refused: bad CSRF token")
            response = render(request, "refused.html", None, 403)
            response.headers.update(SECURITY_HEADERS)
            return response
        name, password = str(form.get("operator", "")), str(form.get("password", ""))
        keys = throttle.keys(name, request.client.host if request.client else "")
        if wait := throttle.locked_for(keys):
            log.warning("console sign-in refused: too many failed attempts")
            response = _login_page(request, "Too many failed sign-ins: try again in "
                                            f"{-(-wait // 60)} minute(s).", 429)
            response.headers["Retry-After"] = str(wait)
            return response
        if not accounts.verify(name, password):
            log.warning("console sign-in refused: wrong name or password")
            if throttle.failed(keys):  # this failure starts a lock: recorded once
                record_lock(name, keys)
            return _login_page(request, "That name and password do not match an operator.", 401)
        throttle.succeeded(name)
        token, _ = accounts.open_session(name)
        actions.record(name, "sign-in")
        target = str(form.get("next", ""))
        if not target.startswith(base + "/") or target.startswith("//"):
            target = url("/")
        response = RedirectResponse(target, status_code=303)
        _set_cookie(response, SESSION_COOKIE, token, settings, base)
        response.delete_cookie(LOGIN_COOKIE, path=base or "/")
        response.headers.update(SECURITY_HEADERS)
        return response

    def record_lock(name: str, keys: list[str]) -> None:
        """Who was locked out, by operator name only when it is one (a name typed wrong may
        be a password), never by client address."""
        limits = throttle.limits
        by_name = name in accounts.operators() and throttle.locked_for(keys[:1])
        whom = f"operator {name}" if by_name else "one client"
        actions.record("console", "sign-in locked", detail=(
            f"{limits.attempts} failed sign-ins for {whom} within {limits.window // 60} min: "
            f"sign-in refused for {limits.lockout // 60} min"))

    async def logout(request: Request, session: Session) -> Response:
        accounts.close_session(request.cookies.get(SESSION_COOKIE))
        actions.record(session.operator, "sign-out")
        response = RedirectResponse(url("/login") if settings.auth != "proxy" else url("/"),
                                    status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=base or "/")
        return response

    # --- pages ----------------------------------------------------------------------------
    async def overview(request: Request, session: Session) -> Response:
        return render(request, "overview.html", session,
                      connections=await views.overview(store, temporal, settings.task_queue))

    async def attention(request: Request, session: Session) -> Response:
        q = request.query_params
        rows = views.attention(store, connection_id=q.get("connection", ""),
                               state=q.get("state", ""), query=q.get("q", ""))
        temporal_error = ""
        try:
            await views.fill_amounts(await temporal(), rows)
        except (TemporalUnavailable, RPCError) as exc:
            temporal_error = str(exc).splitlines()[0][:200]
        return render(request, "attention.html", session, rows=rows,
                      connections=[c.id for c in store.list_connections()],
                      states=views.ATTENTION_STATES, filters=dict(q), notice=request.query_params.get("done", ""),
                      temporal_error=temporal_error)

    async def bulk_replay(request: Request, session: Session) -> Response:
        chosen: dict[str, list[str]] = {}
        for key in request.state.form.getlist("order"):
            cid, _, order_id = str(key).partition("|")
            if cid and order_id:
                chosen.setdefault(cid, []).append(order_id)
        total = 0
        for cid, ids in chosen.items():
            store.get_connection(cid)
            total += await fixes.replay(await temporal(), store, cid, ids,
                                        task_queue=settings.task_queue)
            actions.record(session.operator, REPLAY, connection_id=cid, order_ids=ids,
                           detail="replayed from the console")
        log.info("console action", action="replay", orders=total)
        return RedirectResponse(url(f"/attention?done={total}+order(s)+replayed"), status_code=303)

    async def order(request: Request, session: Session) -> Response:
        from starter.audit import OrderNotFound, audit

        cid, number = request.path_params["connection"], request.path_params["number"]
        store.get_connection(cid)
        row = views.order_row(store, cid, number)
        timeline, timeline_error = [], ""
        try:
            timeline = await audit(await temporal(), store, cid, number)
        except OrderNotFound as exc:
            if row is None:
                return render(request, "message.html", session, 404, title="No such order",
                              message=str(exc))
        except (TemporalUnavailable, RPCError) as exc:
            timeline_error = str(exc).splitlines()[0][:200]
        workflow_id = views.order_workflow_id(cid, row.store_id if row else number)
        return render(request, "order.html", session, connection=cid, number=number, row=row,
                      timeline=timeline, timeline_error=timeline_error,
                      documents=views.erp_documents(store, cid, number), workflow_id=workflow_id,
                      ui_link=views.temporal_ui_link(settings.temporal_ui, settings.namespace,
                                                     workflow_id))

    async def fixes_page(request: Request, session: Session, *, error: str = "",
                         status: int = 200) -> Response:
        conns = store.list_connections()
        chosen = (request.query_params.get("connection") or _form_value(request, "connection")
                  or (conns[0].id if conns else ""))
        conn = store.get_connection(chosen) if chosen else None
        parked = views.attention(store, connection_id=chosen, state="parked") if chosen else []
        prefill = {k: str(request.query_params.get(k) or _form_value(request, k))
                   for k in ("kind", "key", "order")}
        # "Map for this order only" is offered for an order that is waiting on a mapping.
        target = next((r for r in views.attention(store, connection_id=chosen)
                       if r.order_id == prefill["order"] and r.state in ("parked", "failed")),
                      None) if chosen and prefill["order"] else None
        return render(request, "fixes.html", session, status, connections=[c.id for c in conns],
                      conn=conn, parked=parked, kinds=fixes.KINDS, error=error,
                      notice=request.query_params.get("done", ""), prefill=prefill,
                      target=target, target_overrides=order_overrides.overrides(
                          store, chosen, target.order_id) if target else {})

    async def map_fix(request: Request, session: Session) -> Response:
        form = request.state.form
        cid = str(form.get("connection", ""))
        kind, key, value = (str(form.get(k, "")) for k in ("kind", "key", "value"))
        if form.get("scope") == "order":
            return await map_one_order(request, session, cid, str(form.get("order", "")),
                                       kind, key, value)
        try:
            fixes.apply_mapping(store, cid, kind, key, value)
        except fixes.FixError as exc:
            return await fixes_page(request, session, error=str(exc), status=400)
        what = f"{kind} {key} → {value}" if kind != "gl" else f"GL rule {value or key}"
        parked = fixes.parked_orders(store, cid)
        # Recorded before the replay, so the episodes it closes name it as their resolution.
        actions.record(session.operator, MAPPING, connection_id=cid, detail=f"mapped {what}")
        if parked:
            await fixes.replay(await temporal(), store, cid, parked,
                               task_queue=settings.task_queue, why="mapping_changed")
        log.info("console action", action="map", kind=kind, replayed=len(parked))
        done = quote(f"saved {what}; {len(parked)} parked order(s) replayed")
        return RedirectResponse(url(f"/fixes?connection={quote(cid)}&done={done}"),
                                status_code=303)

    async def map_one_order(request: Request, session: Session, cid: str, order_id: str,
                            kind: str, key: str, value: str) -> Response:
        """A one-order override: saved where safe, recorded, then that order alone replayed."""
        try:
            order_id, what = fixes.map_for_order(store, cid, order_id, kind, key, value,
                                                 actor=session.operator)
        except fixes.FixError as exc:
            return await fixes_page(request, session, error=str(exc), status=400)
        # Recorded before the replay, so the episode it closes names it as its resolution.
        actions.record(session.operator, MAPPING, connection_id=cid, order_ids=[order_id],
                       detail=what)
        await fixes.replay(await temporal(), store, cid, [order_id],
                           task_queue=settings.task_queue, why="mapping_changed")
        log.info("console action", action="map one order", kind=kind)
        return RedirectResponse(url(f"/fixes?connection={quote(cid)}&done="
                                    + quote(f"{what}; the order replayed")), status_code=303)

    async def errors(request: Request, session: Session) -> Response:
        cid = request.query_params.get("connection", "")
        episodes = views.error_episodes(store, cid)
        return render(request, "errors.html", session, episodes=episodes,
                      actions=actions.recent(200, cid or None),
                      connections=[c.id for c in store.list_connections()], chosen=cid)

    async def reconciliation(request: Request, session: Session, *, error: str = "",
                             status: int = 200) -> Response:
        rows = [{"connection": c.id, "run": views.last_reconciliation(store, c.id)}
                for c in store.list_connections()]
        return render(request, "reconciliation.html", session, rows=rows,
                      columns=views.DIFFERENCE_COLUMNS, error=error, status=status)

    async def reconcile_now(request: Request, session: Session) -> Response:
        import httpx

        from connectors.errors import ExternalError

        cid = request.path_params["connection"]
        store.get_connection(cid)
        # Under no connection: a look at the books resolves no episode of the connection.
        actions.record(session.operator, "reconcile", detail=f"connection {cid}")
        try:
            await views.reconcile_now(store, cid)
        except (ExternalError, httpx.HTTPError) as exc:  # either system down or refusing
            return await reconciliation(request, session,
                                        error=f"cannot reconcile {cid}: {exc}", status=502)
        log.info("console action", action="reconcile")
        return RedirectResponse(url("/reconciliation"), status_code=303)

    async def reconciliation_csv(request: Request, session: Session) -> Response:
        cid = request.path_params["connection"]
        store.get_connection(cid)
        actions.record(session.operator, "download",
                       detail=f"reconciliation CSV of connection {cid}")
        return Response(views.reconciliation_csv(store, cid), media_type="text/csv",
                        headers={"Content-Disposition":
                                 f'attachment; filename="reconciliation-{cid}.csv"'})

    async def schedules(request: Request, session: Session) -> Response:
        from starter.schedule_table import describe_schedules

        rows = await describe_schedules(await temporal())
        return render(request, "schedules.html", session, rows=rows)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        Route("/", page(overview)),
        Route("/attention", page(attention)),
        Route("/attention/replay", page(bulk_replay), methods=["POST"]),
        Route("/orders/{connection}/{number}", page(order)),
        Route("/fixes", page(fixes_page)),
        Route("/fixes/map", page(map_fix), methods=["POST"]),
        Route("/errors", page(errors)),
        Route("/reconciliation", page(reconciliation)),
        Route("/reconciliation/{connection}.csv", page(reconciliation_csv)),
        Route("/reconciliation/{connection}/run", page(reconcile_now), methods=["POST"]),
        Route("/schedules", page(schedules)),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=[Mount(base, routes=routes)] if base else routes)


SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def _form_value(request: Request, name: str) -> str:
    """A posted form's field (a refused post shows its page again with what was typed)."""
    form = getattr(request.state, "form", None)
    return str(form.get(name, "")) if form is not None else ""


def when(value: object) -> str:
    """An ISO timestamp as people read it: ``2026-12-03 07:11:25Z`` (UTC)."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "")
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _set_cookie(response: Response, name: str, value: str, settings: Settings, base: str,
                max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=base or "/", httponly=True,
                        samesite="lax", secure=settings.secure_cookies)

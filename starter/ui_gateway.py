"""``ml-connector dev``'s door to the Temporal UI: a sign-in, the codec, and the UI behind them.

The dev server's bundled UI hands its settings, the codec endpoint included, to any client at
``GET /api/v1/settings``, and ``temporal server start-dev`` has no flag for a login or for the
UI's "include credentials" codec setting. A secret in the codec URL would therefore reach
anyone who can reach the UI (and it would sit in the server's command line). So dev starts the
UI on an internal port with no codec endpoint (anyone who finds that port sees ciphertext, as
on the frontend port itself), and the operator opens the UI through this gateway instead:

- ``GET /_signin/{code}``: a one-time code that dev prints to its terminal (never in a
  process's arguments) becomes a session cookie: HttpOnly, SameSite=Lax, living as long as the
  dev run (sessions are kept in memory only);
- ``/codec/decode`` and ``/codec/encode``: the codec (starter.codec_server) on the UI's own
  origin, for a signed-in browser only; same-origin, so the browser sends the cookie without
  any CORS or credentials setting;
- everything else is the UI, for a signed-in browser only, with ``/api/v1/settings`` naming
  the codec on the origin the browser opened (127.0.0.1 and localhost both decode);
- a request naming another host is refused (a DNS-rebinding page cannot borrow the session).
"""
from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from starter.codec_server import create_codec_server

COOKIE = "ml_connector_dev_ui"
CODEC_PATH = "/codec"
SIGN_IN_PATH = "/_signin"
# Not forwarded either way: per-hop headers, and what the gateway sets itself.
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "host", "content-length", "accept-encoding",
        "content-encoding"}
SIGN_IN_HINT = ("Sign in first: open the sign-in link that `ml-connector dev` printed in its "
                "terminal for this address (each link works once; a new start prints new ones).")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class Sessions:
    """One-time sign-in codes and the sessions they open, in memory (a dev run's lifetime).
    Only digests are kept; a code is spent by its first use."""

    def __init__(self) -> None:
        self._codes: set[str] = set()
        self._sessions: set[str] = set()

    def new_code(self) -> str:
        code = secrets.token_urlsafe(24)
        self._codes.add(_digest(code))
        return code

    def redeem(self, code: str) -> str | None:
        """A new session for an unspent code, or None."""
        digest = _digest(code)
        if digest not in self._codes:
            return None
        self._codes.discard(digest)
        session = secrets.token_urlsafe(32)
        self._sessions.add(_digest(session))
        return session

    def signed_in(self, request: Request) -> bool:
        session = request.cookies.get(COOKIE)
        return bool(session) and _digest(session) in self._sessions


def sign_in_links(origins: Sequence[str], sessions: Sessions) -> list[str]:
    """One one-time link per origin the UI may be opened at (a cookie belongs to one host)."""
    return [f"{origin}{SIGN_IN_PATH}/{sessions.new_code()}" for origin in origins]


def create_ui_gateway(keyring, *, upstream: str, origins: Sequence[str], sessions: Sessions,
                      transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """``upstream``: the dev server's own UI (e.g. ``http://127.0.0.1:PORT``); ``origins``:
    where the operator may open the gateway (dev.ui_origins)."""
    codec = create_codec_server(keyring, ui_origin=list(origins), sessions=sessions)
    client = httpx.AsyncClient(base_url=upstream, transport=transport, timeout=60.0)

    async def sign_in(request: Request) -> Response:
        session = sessions.redeem(request.path_params["code"])
        if session is None:
            return HTMLResponse(_page("This sign-in link was already used or is not one that "
                                      "`ml-connector dev` printed. " + SIGN_IN_HINT), 403)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session, httponly=True, samesite="lax", path="/")
        return response

    async def ui(request: Request) -> Response:
        if not sessions.signed_in(request):
            if request.url.path.startswith("/api/"):
                return JSONResponse({"message": SIGN_IN_HINT}, 401)
            return HTMLResponse(_page(SIGN_IN_HINT), 401)
        headers = [(k, v) for k, v in request.headers.items() if k not in _HOP and k != "cookie"]
        if cookie := _without_ours(request.headers.get("cookie", "")):
            headers.append(("cookie", cookie))
        # the path as the browser sent it: workflow ids such as order/shop/42 travel as %2F
        target = request.scope.get("raw_path") or request.url.path.encode()
        if query := request.scope.get("query_string"):
            target += b"?" + query
        try:
            answer = await client.request(request.method, target.decode("latin-1"),
                                          headers=headers, content=await request.body())
        except httpx.HTTPError:
            return JSONResponse({"message": "the Temporal UI is not answering"}, 502)
        content = answer.content
        if request.url.path == "/api/v1/settings" and answer.status_code == 200:
            content = _with_codec(content, f"{request.url.scheme}://{request.headers['host']}")
        response = Response(content, answer.status_code)  # sets its own content-length
        response.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                 for k, v in answer.headers.multi_items() if k.lower() not in _HOP]
        return response

    hosts = sorted({urlsplit(origin).hostname or "" for origin in origins})
    app = Starlette(
        routes=[Route(f"{SIGN_IN_PATH}/{{code:str}}", sign_in, methods=["GET"]),
                Mount(CODEC_PATH, app=codec),
                Route("/{path:path}", ui, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])
    app.state.aclose = client.aclose  # the upstream connections, closed when dev stops
    return app


def _without_ours(cookie_header: str) -> str:
    return "; ".join(part.strip() for part in cookie_header.split(";")
                     if part.strip() and part.split("=", 1)[0].strip() != COOKIE)


def _with_codec(settings: bytes, origin: str) -> bytes:
    """The UI's settings naming the codec on the origin the browser opened (same-origin: the
    session cookie goes along by default)."""
    try:
        data = json.loads(settings)
        data.setdefault("Codec", {}).update({"Endpoint": origin + CODEC_PATH,
                                             "PassAccessToken": False, "IncludeCredentials": False})
    except (ValueError, AttributeError):
        return settings
    return json.dumps(data).encode()


def _page(message: str) -> str:
    return ("<!doctype html><meta charset=utf-8><title>ml-connector dev: Temporal UI</title>"
            f"<p style='font-family:sans-serif;max-width:40em;margin:3em auto'>{message}</p>")

"""The one place that builds httpx clients and turns responses into typed errors."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from connectors.errors import (AuthExpired, AuthFailed, ConfigurationError, ExternalError,
                               NotFound, RateLimited, Rejected, Unavailable)
from connectors.pacing import retry_after_seconds

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# As many idle connections kept as may be open (httpx keeps 20): a burst of concurrent
# activities to one API then reuses its TLS sessions instead of handshaking anew.
POOL = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=30.0)

ErrorReader = Callable[[httpx.Response], tuple[str, dict[str, str]]]
# Set by the worker's activity interceptor around each attempt: called with the system name
# once per request, to count external calls per activity (activities/interceptors.py).
REQUEST_OBSERVER: ContextVar[Callable[[str], None] | None] = ContextVar("ml_request_observer",
                                                                         default=None)
# Set around each attempt of an activity of a connection with a licensed ERP rate: awaited
# with the system name before each request, it returns when the request may go, so every
# worker on every host shares the one rate (activities/quota.py).
REQUEST_GATE: ContextVar[Callable[[str], Awaitable[None]] | None] = ContextVar("ml_request_gate",
                                                                               default=None)
# Set by work outside Temporal that reads page after page (a reconciliation from the CLI, the
# console or the demo): how often a GET that met a 5xx, a timeout or a 429 is sent again, after
# the server's wait or a doubling back-off. A long read then survives a flaky ERP without
# starting over; inside an activity it stays 0, and Temporal's retry policy decides.
READ_RETRIES: ContextVar[int] = ContextVar("ml_read_retries", default=0)
READ_RETRY_FIRST_WAIT, READ_RETRY_LONGEST_WAIT = 0.5, 10.0


log = logging.getLogger(__name__)

# The one, loud, way to send credentials over plain HTTP: a connector setting meant for a
# local test server, never for a real store or ERP.
INSECURE_HTTP_SETTING = "allow_insecure_http"


def insecure_http_allowed(settings: Mapping[str, Any]) -> bool:
    """The connection side's settings opt into plain HTTP (as typed on the command line too)."""
    return str(settings.get(INSECURE_HTTP_SETTING, "")).lower() in ("true", "1", "yes", "on")


def insecure_url_problem(url: str, what: str) -> str | None:
    """Why ``url`` may not carry credentials (None when it is an https:// URL)."""
    scheme = httpx.URL(url).scheme.lower() if "://" in url else ""
    if scheme == "https":
        return None
    return (f"{what} must be an https:// URL (credentials travel over TLS only); "
            f"only a local test server may use http:// with {INSECURE_HTTP_SETTING}=true")


def require_https(url: str, *, system: str, what: str, allow_insecure: bool = False) -> None:
    """Refuse a credential-bearing URL that is not https://, unless the connection explicitly
    allows plain HTTP (then warn, each time a connector is built)."""
    problem = insecure_url_problem(url, what)
    if problem is None:
        return
    if not (allow_insecure and httpx.URL(url).scheme.lower() == "http"):
        raise ConfigurationError(problem, system=system)
    log.warning("%s: %s %s uses plain HTTP (%s): credentials and data travel unencrypted; "
                "for local test servers only", system, what, httpx.URL(url).host,
                INSECURE_HTTP_SETTING)


def returned_url(base: httpx.URL | str, url: str, *, system: str) -> str:
    """A URL the vendor answered (a paging link, a ``Location``), made absolute against the
    configured ``base`` and accepted only on its scheme, host and port: the client's
    credentials go only where they were configured."""
    base_url = httpx.URL(str(base))
    target = base_url.join(url)
    if (target.scheme, target.host, _port(target)) != (base_url.scheme, base_url.host,
                                                          _port(base_url)):
        raise ConfigurationError(
            f"the API answered a link to {target.scheme}://{target.host}:{_port(target)}, "
            f"not the configured {base_url.scheme}://{base_url.host}:{_port(base_url)}; "
            "refused (credentials go only to the configured host)", system=system,
            resolution="check the connection's URL setting (a proxy or load balancer may "
                       "rewrite links to another host or to http://)")
    return str(target)


def _port(url: httpx.URL) -> int | None:
    return url.port or {"https": 443, "http": 80}.get(url.scheme)


async def before_request(system: str) -> None:
    """Count the request and wait for its slot in the connection's quota, if it has one."""
    count_request(system)
    await wait_for_slot(system)


def count_request(system: str) -> None:
    """Count one external request of the running activity."""
    observer = REQUEST_OBSERVER.get()
    if observer is not None:
        observer(system)


async def wait_for_slot(system: str) -> None:
    """Wait for the next slot of the connection's quota, if it has one."""
    gate = REQUEST_GATE.get()
    if gate is not None:
        await gate(system)


def build_client(base_url: str, *, auth: httpx.Auth | None = None, verify: str | bool = True,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 headers: dict[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, system: str = "",
                 allow_insecure_http: bool = False) -> httpx.AsyncClient:
    """``verify`` is True (system CAs), False, or the path of a CA bundle (e.g. a private CA).
    ``transport`` replaces the network, for tests. A ``base_url`` carries credentials, so it
    must be https:// unless ``allow_insecure_http``."""
    if base_url:
        require_https(base_url, system=system or "connector", what="the connection URL",
                      allow_insecure=allow_insecure_http)
    return httpx.AsyncClient(base_url=base_url, auth=auth, verify=verify, timeout=timeout,
                             headers={"Accept": "application/json", **(headers or {})},
                             follow_redirects=False, limits=POOL,
                             transport=transport or network_transport(verify))


def network_transport(verify: str | bool) -> httpx.AsyncBaseTransport:
    """httpx's API (auth flows, cookies, timeouts, errors) over aiohttp's connection pool,
    which spends a third of httpcore's CPU per request once twenty requests share a pool.
    Cookies stay httpx's alone: aiohttp's own jar would send each one twice."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    ssl_context = httpx.create_ssl_context(verify=verify)

    def session() -> aiohttp.ClientSession:  # made on first use, inside the running loop
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=POOL.max_connections or 0,
                                           keepalive_timeout=POOL.keepalive_expiry),
            cookie_jar=aiohttp.DummyCookieJar())

    return AiohttpTransport(client=session)


def _generic_error(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    try:
        body = resp.json()
    except ValueError:
        return (resp.text[:300] or resp.reason_phrase), {}
    if isinstance(body, dict):
        for key in ("message", "error", "title", "detail"):
            if isinstance(body.get(key), str):
                return body[key], {}
    return str(body)[:300], {}


def raise_for_response(resp: httpx.Response, system: str,
                       read_error: ErrorReader = _generic_error) -> httpx.Response:
    """Return ``resp`` when it succeeded, otherwise raise the typed error for its status."""
    status = resp.status_code
    if status < 400:
        return resp
    message, fields = read_error(resp)
    where = f"{resp.request.method} {resp.request.url.path}"
    text = f"HTTP {status} on {where}: {message}"
    if status == 429:
        raise RateLimited(text, retry_after=retry_after_seconds(resp.headers), system=system,
                          status=status)
    if status == 401:
        raise AuthExpired(text, system=system, status=status)
    if status == 403:
        raise AuthFailed(text, system=system, status=status)
    if status == 404:
        raise NotFound(text, system=system, status=status)
    if status in (408, 425) or status >= 500:
        raise Unavailable(text, system=system, status=status)
    raise Rejected(text, system=system, status=status, field_errors=fields)


T = TypeVar("T")


def _transient(exc: ExternalError) -> bool:
    """A 5xx, a timeout or a 429: sending the same request again can succeed."""
    return isinstance(exc, (Unavailable, RateLimited))


def _retryable(exc: ExternalError) -> bool:
    return exc.retryable


async def with_retries(call: Callable[[], Awaitable[T]], retries: int, *,
                       retry_on: Callable[[ExternalError], bool] = _retryable) -> T:
    """``call()``, and again up to ``retries`` times while ``retry_on`` says a retry can fix
    its failure: after the server's wait, else a doubling back-off (READ_RETRY_FIRST_WAIT up
    to READ_RETRY_LONGEST_WAIT). For work outside Temporal, whose activities leave this to
    their retry policy."""
    wait = READ_RETRY_FIRST_WAIT
    for _ in range(retries):
        try:
            return await call()
        except ExternalError as exc:
            if not retry_on(exc):
                raise
            await asyncio.sleep(exc.retry_after if exc.retry_after is not None else wait)
            wait = min(wait * 2, READ_RETRY_LONGEST_WAIT)
    return await call()


async def send(client: httpx.AsyncClient, method: str, url: str, *, system: str,
               read_error: ErrorReader = _generic_error, **kwargs: Any) -> httpx.Response:
    """One request: transport failures become ``Unavailable``, HTTP errors their typed error.
    A GET is sent again up to READ_RETRIES times when a retry can fix its failure."""
    return await with_retries(
        lambda: _send_once(client, method, url, system=system, read_error=read_error, **kwargs),
        READ_RETRIES.get() if method == "GET" else 0, retry_on=_transient)


async def _send_once(client: httpx.AsyncClient, method: str, url: str, *, system: str,
                     read_error: ErrorReader, **kwargs: Any) -> httpx.Response:
    await before_request(system)
    try:
        resp = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise Unavailable(f"timeout on {method} {url}: {exc!r}", system=system) from exc
    except httpx.TransportError as exc:
        raise Unavailable(f"connection error on {method} {url}: {exc!r}", system=system) from exc
    return raise_for_response(resp, system, read_error)


# --- JSON with exact amounts ------------------------------------------------------------

def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send {value} as an amount")
        return format(value, "f")
    if isinstance(value, (date, datetime)):
        return json.dumps(value.isoformat())
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def to_json(body: Any) -> bytes:
    """JSON with Decimals as exact numbers (``json`` would pass them through a float)."""
    return _encode(body).encode()


def parse_json(resp: httpx.Response) -> Any:
    """A response body with every JSON number read as a Decimal."""
    return json.loads(resp.content, parse_float=Decimal)

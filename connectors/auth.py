"""Every authentication scheme the connectors speak, each an ``httpx.Auth`` flow.

- :class:`QueryStringAuth`, :class:`OAuth1Auth` (and httpx's own ``BasicAuth``): WooCommerce's
  key pair, chosen per connection by ``woocommerce.auth_for``.
- :class:`XAuthToken`: a BigCommerce API account's token.
- :class:`OAuth2Auth`: a bearer token obtained before the first request, refreshed shortly
  before it expires and once more on a 401. Refreshes are single-flight under the token
  store's lock, held only around the token request itself (its quota slot is awaited
  before), and every new token set is saved before its access token is used, because
  refresh tokens rotate: a token set used but not saved would be lost with the process.
- :class:`ExactAuth`: OAuth 2 over Exact Online's authorization-code chain, which only a
  user's consent can restart.

Secrets and tokens never appear in messages.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

import httpx
from oauthlib import oauth1
from pydantic import AwareDatetime, BaseModel, SecretStr

from connectors.errors import AuthExpired, AuthFailed, ConsentRequired, Unavailable
from connectors.http import (DEFAULT_TIMEOUT, build_client, count_request, raise_for_response,
                             require_https, wait_for_slot)

DEFAULT_EXPIRES_IN = 3600  # seconds; what Acumatica and most servers issue when they omit it


# --- API keys ---------------------------------------------------------------------------------

class QueryStringAuth(httpx.Auth):
    """Key pair as ``consumer_key``/``consumer_secret`` query parameters (HTTPS only)."""

    def __init__(self, key: str, secret: str) -> None:
        self._params = {"consumer_key": key, "consumer_secret": secret}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_merge_params(self._params)
        yield request


class OAuth1Auth(httpx.Auth):
    """OAuth 1.0a one-legged (no token), signed by oauthlib, parameters in the query string:
    every WooCommerce version reads them there and hosts cannot strip them. JSON bodies are
    not signed (WooCommerce signs only query and form parameters)."""

    requires_request_body = True
    _FORM = "application/x-www-form-urlencoded"

    def __init__(self, key: str, secret: str, method: str = "HMAC-SHA256") -> None:
        if method not in ("HMAC-SHA256", "HMAC-SHA1"):
            raise ValueError("WooCommerce accepts HMAC-SHA256 or HMAC-SHA1 only")
        self._key, self._secret, self._method = key, secret, method

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        content_type = request.headers.get("Content-Type", "")
        form = content_type.startswith(self._FORM)
        client = oauth1.Client(self._key, client_secret=self._secret,
                               signature_method=self._method,
                               signature_type=oauth1.SIGNATURE_TYPE_QUERY)
        uri, _, _ = client.sign(str(request.url), request.method,
                                body=request.content.decode() if form else None,
                                headers={"Content-Type": self._FORM} if form else None)
        request.url = httpx.URL(uri)
        yield request


class XAuthToken(httpx.Auth):
    """A BigCommerce API account's token in ``X-Auth-Token`` (it does not expire)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self._token
        yield request


# --- OAuth 2 ----------------------------------------------------------------------------------


class TokenSet(BaseModel):
    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: AwareDatetime
    scope: str = ""

    @classmethod
    def from_response(cls, body: Mapping[str, Any], previous: TokenSet | None = None) -> TokenSet:
        """A token endpoint answer; a server that does not rotate keeps the old refresh token."""
        expires_in = int(body.get("expires_in") or DEFAULT_EXPIRES_IN)
        kept = previous.refresh_token if previous else None
        refresh = body.get("refresh_token") or (kept.get_secret_value() if kept else None)
        return cls(access_token=body["access_token"], refresh_token=refresh,
                   expires_at=datetime.now(timezone.utc) + timedelta(seconds=expires_in),
                   scope=body.get("scope") or (previous.scope if previous else ""))

    def to_secret_dict(self) -> dict[str, Any]:
        """Plain values, for a store that encrypts them."""
        refresh = self.refresh_token
        return {"access_token": self.access_token.get_secret_value(),
                "refresh_token": refresh.get_secret_value() if refresh else None,
                "expires_at": self.expires_at.isoformat(), "scope": self.scope}

    def fresh(self, margin: timedelta) -> bool:
        return self.expires_at - margin > datetime.now(timezone.utc)


class TokenStore(Protocol):
    async def load(self) -> TokenSet | None: ...

    async def save(self, tokens: TokenSet) -> None: ...

    def refresh_lock(self) -> AbstractAsyncContextManager[Any]: ...


class MemoryTokenStore:
    """Tokens of one process only (tests, one-off commands)."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self._tokens = tokens
        self._lock = asyncio.Lock()

    async def load(self) -> TokenSet | None:
        return self._tokens

    async def save(self, tokens: TokenSet) -> None:
        self._tokens = tokens

    def refresh_lock(self) -> asyncio.Lock:
        return self._lock


class _Refused(Exception):
    """The token endpoint answered with an OAuth error (400/401)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status, self.error, self.description = status, error, description


def _reveal(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _oauth_error(resp: httpx.Response) -> tuple[str, str]:
    try:
        body = resp.json()
    except ValueError:
        return "", resp.text[:200]
    if not isinstance(body, dict):
        return "", str(body)[:200]
    return str(body.get("error") or ""), str(body.get("error_description") or "")


class OAuth2Auth(httpx.Auth):
    """Bearer auth over a token endpoint. ``grant`` is the form of the configured grant (e.g.
    ``{"grant_type": "password", "username": ..., "password": ..., "scope": ...}``), used for
    the first token and whenever the refresh token is refused."""

    def __init__(self, token_url: str, client_id: str, client_secret: str | SecretStr,
                 store: TokenStore, *, grant: Mapping[str, Any],
                 refresh_margin: timedelta = timedelta(seconds=60),
                 transport: httpx.AsyncBaseTransport | None = None, verify: str | bool = True,
                 system: str = "oauth2", timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 client_auth: Literal["post", "basic"] = "post",
                 allow_insecure_http: bool = False) -> None:
        """``client_auth``: the client credentials in the form body (``post``) or in a Basic
        header (``basic``, RFC 6749 §2.3.1's client_secret_basic, which e.g. Oracle's
        identity domains expect). The token URL receives the client secret: https:// only,
        unless the connection explicitly allows plain HTTP (a local test server)."""
        require_https(token_url, system=system, what="the token URL",
                      allow_insecure=allow_insecure_http)
        self._client_auth = client_auth
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = SecretStr(_reveal(client_secret))
        self._store = store
        self._grant = dict(grant)
        self._margin = refresh_margin
        self._system = system
        self._tokens: TokenSet | None = None
        self._flights: dict[int, asyncio.Lock] = {}  # per event loop: one refresh at a time
        self._client = build_client("", verify=verify, timeout=timeout, transport=transport)

    def sync_auth_flow(
            self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuth2Auth works with httpx.AsyncClient only")

    async def async_auth_flow(
            self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        tokens = await self._current()
        _authorize(request, tokens)
        response = yield request
        if response.status_code == 401:
            _authorize(request, await self._renew(rejected=tokens))
            yield request

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _current(self) -> TokenSet:
        if self._tokens is None:
            self._tokens = await self._store.load()
        if self._tokens is not None and self._tokens.fresh(self._margin):
            return self._tokens
        return await self._renew(rejected=None)

    async def _renew(self, rejected: TokenSet | None) -> TokenSet:
        """Single flight: whoever holds the lock first refreshes; the others find its tokens.

        The token request's quota slot is awaited before the store's refresh lock is taken:
        the lock (a lease across processes) then covers only the request and the save, so no
        backlog of ERP requests ahead of that slot can outlast it and let another process
        spend the same refresh token."""
        flight = self._flights.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
        async with flight:
            if (found := await self._stored_usable(rejected)) is not None:
                return found
            await wait_for_slot(self._system)
            async with self._store.refresh_lock():
                if (found := await self._stored_usable(rejected)) is not None:
                    return found
                tokens = await self._obtain(await self._store.load())
                await self._store.save(tokens)  # before use: the old refresh token may be dead
                self._tokens = tokens
                return tokens

    async def _stored_usable(self, rejected: TokenSet | None) -> TokenSet | None:
        """The stored set, when it is fresh and not the one the server just refused."""
        stored = await self._store.load()
        if (stored is not None and stored.fresh(self._margin)
                and (rejected is None or stored.access_token != rejected.access_token)):
            self._tokens = stored
            return stored
        return None

    async def _obtain(self, stored: TokenSet | None) -> TokenSet:
        if stored is not None and stored.refresh_token is not None:
            try:
                return await self._request(
                    {"grant_type": "refresh_token",
                     "refresh_token": stored.refresh_token.get_secret_value()}, stored)
            except _Refused as exc:
                if exc.error != "invalid_grant":
                    raise self._failed("refresh_token", exc) from None
        try:
            return await self._request(self._grant, None)
        except _Refused as exc:
            raise self._failed(str(self._grant.get("grant_type", "")), exc) from None

    async def _request(self, form: Mapping[str, Any], previous: TokenSet | None) -> TokenSet:
        data = {k: _reveal(v) for k, v in form.items()}
        secret = self._client_secret.get_secret_value()
        basic = None
        if self._client_auth == "basic":
            basic = httpx.BasicAuth(self._client_id, secret)
        else:
            data = {"client_id": self._client_id, "client_secret": secret, **data}
        count_request(self._system)  # its quota slot was awaited before the refresh lock
        try:
            resp = await self._client.post(self._token_url, data=data, auth=basic)
        except httpx.TransportError as exc:
            raise Unavailable(f"token endpoint unreachable: {type(exc).__name__}",
                              system=self._system) from None
        if resp.status_code in (400, 401):
            raise _Refused(resp.status_code, *_oauth_error(resp))
        raise_for_response(resp, self._system, lambda r: (" ".join(_oauth_error(r)).strip(), {}))
        try:
            return TokenSet.from_response(json.loads(resp.content), previous)
        except (ValueError, KeyError, TypeError):
            raise Unavailable("token endpoint answered without an access token",
                              system=self._system, status=resp.status_code) from None

    def _failed(self, grant_type: str, exc: _Refused) -> AuthFailed:
        described = self._redact(f"{exc.error or 'refused'}: {exc.description}".rstrip(": "))
        return AuthFailed(f"token request ({grant_type}) refused with HTTP {exc.status}: "
                          f"{described}", system=self._system, status=exc.status,
                          resolution="check the connection's client id, secret, user and password",
                          details={"error": exc.error})

    def _redact(self, text: str) -> str:
        """A server may echo what it was sent; none of it may reach a log."""
        secrets = [self._client_secret.get_secret_value(), *(
            str(_reveal(v)) for k, v in self._grant.items() if k in ("password", "client_secret"))]
        if self._tokens is not None:
            secrets.append(self._tokens.access_token.get_secret_value())
            if self._tokens.refresh_token:
                secrets.append(self._tokens.refresh_token.get_secret_value())
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _authorize(request: httpx.Request, tokens: TokenSet) -> None:
    request.headers["Authorization"] = f"Bearer {tokens.access_token.get_secret_value()}"


class ExactAuth(OAuth2Auth):
    """:class:`OAuth2Auth` for Exact's authorization-code apps: there is no grant a machine can
    repeat, so a refused refresh token (a broken chain, or unused for 30 days) means a user
    must consent again. That state is kept in the token store when it can keep it
    (``consent_required``/``require_consent``, the connection store's health), so no worker
    keeps spending refresh attempts on a dead chain; orders wait on :class:`ConsentRequired`.

    The single-flight rule is OAuth2Auth's: under the store's refresh lock the stored token set
    is re-read, and a set another worker just saved is used instead of refreshing again."""

    SYSTEM = "exact_online"

    def __init__(self, token_url: str, client_id: str, client_secret: SecretStr, store: TokenStore,
                 *, initial: TokenSet | None = None, code: SecretStr | None = None,
                 redirect_uri: str = "", margin_seconds: float = 25, **kw: Any) -> None:
        grant = ({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
                 if code is not None else {})
        super().__init__(token_url, client_id, client_secret, store, grant=grant,
                         refresh_margin=timedelta(seconds=margin_seconds), system=self.SYSTEM,
                         **kw)
        self._initial = initial
        self._consent: str | None = None  # for stores that cannot keep the state

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """A consent's authorization code -> the first token set of a new chain (not saved:
        the caller stores it). A refused code raises AuthFailed."""
        await wait_for_slot(self._system)  # a sign-in spends the licensed rate too
        try:
            return await self._request({"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": redirect_uri}, None)
        except _Refused as exc:
            raise self._failed("authorization_code", exc) from None

    async def _consent_reason(self) -> str | None:
        check = getattr(self._store, "consent_required", None)
        return (await check()) if check is not None else self._consent

    async def _require_consent(self, reason: str) -> None:
        mark = getattr(self._store, "require_consent", None)
        if mark is not None:
            await mark(reason)
        else:
            self._consent = reason

    def _waiting(self, reason: str) -> ConsentRequired:
        return ConsentRequired(
            f"the Exact Online authorization needs a user's consent again: {reason}",
            system=self.SYSTEM, resolution="run `ml-connector connections authorize CONNECTION` "
                                           "and sign in to Exact Online; waiting orders then "
                                           "continue")

    async def _obtain(self, stored: TokenSet | None) -> TokenSet:
        reason = await self._consent_reason()
        if reason:
            raise self._waiting(reason)
        if stored is None and self._initial is not None:
            return self._initial  # the first token set of the consent, saved by _renew
        if stored is None and self._grant:
            form, previous = self._grant, None  # a consent's code, exchanged once
        elif stored is None or stored.refresh_token is None:
            raise self._waiting("the connection has no token set yet")
        else:
            form = {"grant_type": "refresh_token",
                    "refresh_token": stored.refresh_token.get_secret_value()}
            previous = stored
        try:
            return await self._request(form, previous)
        except _Refused as exc:
            described = self._redact(f"{exc.error or 'refused'}: {exc.description}".rstrip(": "))
            if exc.error == "invalid_client":
                raise self._failed(str(form["grant_type"]), exc) from None
            if exc.status == 401:  # "Access Token not expired": the stored set is still current
                raise AuthExpired(f"Exact Online refused the refresh for now (HTTP 401: "
                                  f"{described})", system=self.SYSTEM, status=401) from None
            reason = f"{form['grant_type']} refused with HTTP {exc.status}: {described}"
            await self._require_consent(reason)
            raise self._waiting(reason) from None

"""The identity server: OAuth 2.0 tokens (password and refresh grants) and cookie sessions."""
from __future__ import annotations

from base64 import b64decode
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from sandbox.acumatica.model import Grant, _bump
from sandbox.acumatica.wire import JSON, KNOWN_SCOPES, REFRESH_CHAIN_SECONDS, oauth_error

if TYPE_CHECKING:
    from sandbox.acumatica.state import AcumaticaState


# --------------------------------------------------------------------------- HTTP: identity server

class IdentityServer:
    """``/identity/connect/token``: ROPC and refresh grants for one registered client and user."""

    def __init__(self, state: AcumaticaState, credentials: dict[str, str], site_path: str):
        self.state, self.credentials, self.site_path = state, credentials, site_path

    async def token(self, request: Request) -> Response:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return oauth_error("invalid_request", "The token request must be form-encoded.")
        form = dict(parse_qsl((await request.body()).decode()))
        client_id, client_secret = self._client(request, form)
        if client_id != self.credentials["client_id"] or client_secret != self.credentials["client_secret"]:
            return oauth_error("invalid_client")
        grant_type = form.get("grant_type")
        self.state.stats["token_requests"] += 1
        _bump(self.state.stats["by_grant"], str(grant_type))
        if grant_type == "password":
            return self._password(form, client_id)
        if grant_type == "refresh_token":
            return self._refresh(form, client_id)
        return oauth_error("unsupported_grant_type")

    @staticmethod
    def _client(request: Request, form: dict) -> tuple[str | None, str | None]:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, secret = b64decode(value).decode().partition(":")
            except ValueError:
                return None, None
            return user, secret
        return form.get("client_id"), form.get("client_secret")

    def _password(self, form: dict, client_id: str) -> Response:
        scopes = tuple((form.get("scope") or "api").split())
        if set(scopes) - KNOWN_SCOPES:
            return oauth_error("invalid_scope")
        if form.get("username") != self.credentials["username"] or form.get("password") != self.credentials["password"]:
            return oauth_error("invalid_grant", "invalid_username_or_password")
        grant = Grant(client_id, form["username"], scopes, self.state.clock() + REFRESH_CHAIN_SECONDS)
        return self._tokens(grant)

    def _refresh(self, form: dict, client_id: str) -> Response:
        if not form.get("refresh_token"):
            return oauth_error("invalid_request", "refresh_token is missing.")
        grant = self.state.redeem_refresh_token(form["refresh_token"], client_id)
        if grant is None:
            return oauth_error("invalid_grant")
        return self._tokens(grant)

    def _tokens(self, grant: Grant) -> Response:
        return JSON(self.state.issue_tokens(grant), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def configuration(self, request: Request) -> Response:
        issuer = f"{request.url.scheme}://{request.url.netloc}{self.site_path}/identity"
        return JSON({"issuer": issuer, "token_endpoint": f"{issuer}/connect/token",
                     "authorization_endpoint": f"{issuer}/connect/authorize",
                     "userinfo_endpoint": f"{issuer}/connect/userinfo",
                     "grant_types_supported": ["authorization_code", "implicit", "password", "refresh_token",
                                               "hybrid"],
                     "scopes_supported": sorted(KNOWN_SCOPES), "code_challenge_methods_supported": ["S256"]})

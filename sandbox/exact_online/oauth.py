"""OAuth 2.0 authorization code flow: authorize, token, refresh chains."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sandbox.exact_online.state import Chain
from sandbox.exact_online.wire import CHAIN_DAYS, JSON, oauth_error

if TYPE_CHECKING:
    from sandbox.exact_online.state import ExactState


# --------------------------------------------------------------------------- HTTP: OAuth

class OAuth:
    def __init__(self, state: ExactState):
        self.state = state

    def _redirect_ok(self, uri: str) -> bool:
        return bool(uri) and (not self.state.redirect_uris or uri in self.state.redirect_uris)

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.state.client_id:
            return Response("Unknown client_id.", status_code=400, media_type="text/plain")
        if not self._redirect_ok(q.get("redirect_uri", "")):
            return Response("The redirect_uri is not registered for this app.", status_code=400,
                            media_type="text/plain")
        if q.get("response_type") != "code":
            return Response("response_type must be 'code'.", status_code=400, media_type="text/plain")
        code = self.state.new_code(q["redirect_uri"])
        params = {"code": code} | ({"state": q["state"]} if q.get("state") else {})
        sep = "&" if "?" in q["redirect_uri"] else "?"
        return RedirectResponse(f"{q['redirect_uri']}{sep}{urlencode(params)}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.state.stats["token_requests"] += 1
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return oauth_error(400, "invalid_request", "The token request must be form-encoded.")
        form = dict(parse_qsl((await request.body()).decode()))
        grant = form.get("grant_type", "")
        by = self.state.stats["by_grant"]
        by[grant] = by.get(grant, 0) + 1
        if form.get("client_id") != self.state.client_id or form.get("client_secret") != self.state.client_secret:
            return oauth_error(400, "invalid_client", "The client credentials are invalid.")
        if grant == "authorization_code":
            return self._code(form)
        if grant == "refresh_token":
            return self._refresh(form)
        return oauth_error(400, "unsupported_grant_type")

    def _code(self, form: dict) -> Response:
        entry = self.state.codes.pop(form.get("code", ""), None)
        if entry is None or entry["expires"] < self.state.now():
            return oauth_error(400, "invalid_grant", "The authorization code is invalid or expired.")
        if form.get("redirect_uri") != entry["redirect_uri"]:
            return oauth_error(400, "invalid_grant", "The redirect_uri does not match the authorization request.")
        chain = Chain(uuid.uuid4().hex, 0, self.state.current_division)
        self.state.chains[chain.id] = chain
        return JSON(self.state.issue(chain), headers={"Cache-Control": "no-store"})

    def _refresh(self, form: dict) -> Response:
        """Rotation with Exact's grace window: a used refresh token still works for
        ``refresh_grace_seconds`` (a client that lost the answer can ask again; the set issued
        the first time dies) until a newer token of the chain is used. 0 is the strict mode."""
        s, now = self.state, self.state.now()
        token = form.get("refresh_token", "")
        entry = s.refresh.get(token)
        chain = s.chains.get(entry["chain"]) if entry else None
        if entry is None or chain is None or chain.revoked:
            return oauth_error(400, "invalid_grant", "Token is not allowed, because of invalid or empty chainId")
        grace = s.settings.refresh_grace_seconds
        again = entry["used"] is not None
        if entry.get("dead") or (again and (grace <= 0 or now - entry["used"] > grace)):
            s.stats["refresh_reused"] += 1
            return oauth_error(400, "invalid_grant", "Token is not allowed, because of invalid or empty chainId")
        if now - entry["issued"] > CHAIN_DAYS * 86400:
            s.stats["refresh_expired"] += 1
            expired = datetime.fromtimestamp(entry["issued"] + CHAIN_DAYS * 86400, tz=timezone.utc)
            now_text = datetime.fromtimestamp(now, tz=timezone.utc)
            return oauth_error(400, "invalid_request", f"The refresh token expired at "
                               f"{expired:%m/%d/%Y %I:%M:%S %p} and it is now {now_text:%m/%d/%Y %I:%M:%S %p}")
        if again:  # inside the grace window: the set issued for it the first time is void
            s.stats["refresh_grace_used"] += 1
            lost = s.refresh.get(entry.get("successor", ""))
            if lost is not None:
                lost["dead"] = True
        else:
            if now - chain.last_issued < s.settings.refresh_not_before:
                s.stats["refresh_too_early"] += 1
                return oauth_error(401, "invalid_request", "Access Token not expired",
                                   headers={"Reason": "Access Token not expired"})
            s.settle(chain)  # the newest refresh token is used: older ones lose their grace
            entry["used"] = now
            chain.spent.append(token)
        s.stats["refreshes"] += 1
        issued = s.issue(chain)
        entry["successor"] = issued["refresh_token"]
        return JSON(issued, headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- the app

def grant_code(app: Starlette, redirect_uri: str, code: str | None = None) -> str:
    """In-process twin of ``POST /_sandbox/authorize`` for callers that cannot make a request
    from inside the event loop serving the app (a consent given without a browser)."""
    return app.state.exact.new_code(redirect_uri, code)

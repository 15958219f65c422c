"""The OAuth consent flow of ``ml-connector connections authorize NAME`` (Exact Online).

Exact Online apps use the authorization-code grant: only a user can start (or restart) a
connection's token chain. This prints the authorization URL, then takes the code either
from a one-shot HTTP server on ``127.0.0.1:PORT`` that receives the redirect, or pasted by the
user in a second run (``--code``: the code itself or the whole URL the browser was sent to).
Each authorization request has a fresh ``state``; a run that prints the URL keeps its state
and redirect URI (encrypted, in the connection store) for the ``--code`` run, which refuses a
pasted URL whose ``state`` is not that request's. The code is exchanged,
the token set is saved encrypted in the connection store (under the refresh lock, so no worker
refreshes the old chain meanwhile), and the connection's "needs re-consent" state is cleared:
waiting orders continue at their next retry. Nothing secret is ever printed.
"""
from __future__ import annotations

import asyncio
import html
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from activities.runtime import StoreTokenStore
from connections.config import ERP_CREDENTIALS
from connections.store import ConnectionStore
from connectors import exact_online

CALLBACK_TIMEOUT = 300.0  # seconds to wait for the browser's redirect
# The authorization request a later ``--code`` run completes: its state and redirect URI.
PENDING = "erp_consent_pending"


class AuthorizationError(Exception):
    """The consent did not complete (wrong system, refused, timed out, state mismatch)."""


def redirect_uri_for(configured: str, port: int | None) -> str:
    """The configured redirect URI, on ``port`` when one is given (it must be the URI
    registered with the Exact app)."""
    if port is None:
        return configured
    parts = urlsplit(configured)
    return urlunsplit(("http", f"127.0.0.1:{port}", parts.path or "/callback", "", ""))


def code_from(pasted: str, state: str) -> str:
    """A pasted code, or the code in a pasted redirect URL, whose state must be ``state``."""
    text = pasted.strip()
    if "code=" not in text:
        return text
    query = parse_qs(urlsplit(text).query or text)
    if query.get("state", [""])[0] != state:
        raise AuthorizationError("the pasted address does not answer this connection's "
                                 "authorization request (its state differs): run the command "
                                 "without --code again and paste the address that follows")
    try:
        return query["code"][0]
    except (KeyError, IndexError):
        raise AuthorizationError("no code in the pasted URL") from None


async def wait_for_redirect(port: int, path: str, state: str, *,
                            timeout: float = CALLBACK_TIMEOUT,
                            ready: Callable[[], None] | None = None) -> str:
    """Serve one redirect on 127.0.0.1:``port``: the first request to ``path`` carrying a
    code (or an error) ends it."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[str] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1")
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            target = line.split(" ")[1] if line.count(" ") >= 2 else "/"
            url = urlsplit(target)
            query = parse_qs(url.query)
            status, text = "404 Not Found", "Not found."
            if url.path == path and not result.done():
                if query.get("state", [""])[0] != state:
                    status, text = "400 Bad Request", "This authorization response does not match."
                elif "code" in query:
                    status = "200 OK"
                    text = "Exact Online is authorized. You can close this window."
                    result.set_result(query["code"][0])
                elif "error" in query:
                    status, text = "400 Bad Request", "The authorization was not granted."
                    result.set_exception(AuthorizationError(
                        f"Exact Online answered: {query['error'][0]} "
                        f"{query.get('error_description', [''])[0]}".strip()))
            body = f"<html><body><p>{html.escape(text)}</p></body></html>".encode()
            head = (f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        if ready is not None:
            ready()
        return await asyncio.wait_for(result, timeout)
    except asyncio.TimeoutError:
        raise AuthorizationError(f"no redirect arrived on 127.0.0.1:{port} within "
                                 f"{timeout:.0f} s") from None
    finally:
        server.close()
        await server.wait_closed()


async def authorize(store: ConnectionStore, connection_id: str, *, code: str | None = None,
                    redirect_port: int | None = None, say: Callable[[str], Any] = print,
                    transport: httpx.AsyncBaseTransport | None = None,
                    callback_timeout: float = CALLBACK_TIMEOUT) -> None:
    """Run the consent for ``connection_id``: with ``code`` (pasted) or, with
    ``redirect_port``, by receiving the browser's redirect on localhost. Neither: the URL is
    printed and the user is asked to run the command again with the code."""
    conn = store.get_connection(connection_id)
    if conn.erp_system != "exact_online":
        raise AuthorizationError(f"connection {connection_id} uses {conn.erp_system}, which signs "
                                 f"in with its stored credentials: nothing to authorize")
    settings = exact_online.ExactSettings.model_validate(conn.erp)
    credentials = exact_online.ExactCredentials.model_validate(
        store.get_secret_json(connection_id, ERP_CREDENTIALS) or {})
    if code is not None:
        pending = store.get_secret_json(connection_id, PENDING) or {}
        if not pending.get("state"):
            raise AuthorizationError(
                f"no authorization of connection {connection_id} is waiting for a code: run "
                f"`ml-connector connections authorize {connection_id}` first, then paste what "
                f"the browser shows")
        redirect_uri = pending["redirect_uri"]
        obtained = code_from(code, pending["state"])
    else:
        redirect_uri = redirect_uri_for(settings.redirect_uri, redirect_port)
        state = secrets.token_urlsafe(16)
        url = exact_online.authorization_url(settings, credentials.client_id.get_secret_value(),
                                             redirect_uri, state)
        say(f"Open this address, sign in to Exact Online and allow access:\n  {url}")
        if redirect_port is None:
            store.put_secret(connection_id, PENDING, {"state": state, "redirect_uri": redirect_uri})
            say("Then run this command again with --code CODE (the code, or the whole address "
                "the browser was sent to).")
            return
        obtained = await wait_for_redirect(
            redirect_port, urlsplit(redirect_uri).path or "/callback", state,
            timeout=callback_timeout,
            ready=lambda: say(f"Waiting for the redirect on {redirect_uri} ..."))
    tokens = await exact_online.exchange_code(settings, credentials, obtained, redirect_uri,
                                              transport=transport)
    token_store = StoreTokenStore(store, connection_id)
    async with token_store.refresh_lock():
        await token_store.save(tokens)
    store.put_secret(connection_id, PENDING, {})  # answered: a request is completed once
    store.set_connection_health(connection_id, "ok")
    say(f"Connection {connection_id} is authorized; its token set is saved encrypted "
        f"(access valid until {tokens.expires_at:%H:%M:%S} UTC, refreshed automatically).")

"""The codec endpoint the Temporal UI calls to show an operator decoded payloads.

Temporal's codec-server protocol: ``POST …/decode`` and ``POST …/encode`` with a JSON
``{"payloads": [...]}`` body in protobuf JSON (base64 ``metadata`` values and ``data``); only
the last path segment names the operation and the UI adds a query string, which is ignored.
The UI's page calls it from the browser, so it answers the CORS preflight for exactly the
UI's origins (never ``*``) and refuses every other origin.

Two ways to authenticate a caller. ``ml-connector codec`` (compose) takes a random token: in
the path (``TEMPORAL_CODEC_ENDPOINT=…/codec/TOKEN``) or as ``Authorization: Bearer TOKEN`` (the
CLI's ``--codec-auth``); it is served only behind the authenticating proxy (deploy/Caddyfile),
so the UI's settings that carry the token reach only signed-in operators. ``ml-connector dev``
passes ``sessions`` instead (starter.ui_gateway): the codec then answers only a browser that
signed in through the gateway (its session cookie), and its URL carries no secret. Tokens are
never logged (uvicorn's access log is off in sandbox/server.py). It decodes with the same
AesGcmCodec, and the same keyring, as the workers, so it follows key rotations like they do.
"""
from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads

from connections.vault import VaultError
from starter.codec import MalformedPayload, UnknownPayloadKey, codec_from_keyring
from starter.receiver import BODY_TIMEOUT, Oversize, SlowBody, nested_deeper_than, read_body

MAX_BODY = 8 * 1024 * 1024  # a UI request carries one event's payloads (each < 2 MiB)
MAX_DEPTH = 8  # {"payloads": [{"metadata": {...}}]} is four deep
ALLOWED_HEADERS = "content-type,x-namespace,authorization"
log = structlog.get_logger("codec_server")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def codec_endpoint_url(host: str, port: int, token: str, *, scheme: str = "http") -> str:
    """A codec endpoint as the UI takes it (compose's ``TEMPORAL_CODEC_ENDPOINT``): the UI
    appends ``/decode`` (or ``/encode``)."""
    return f"{scheme}://{host}:{port}/{token}"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def create_codec_server(keyring, *, token: str | None = None, ui_origin: str | Sequence[str],
                        sessions: Any = None, max_body: int = MAX_BODY,
                        body_timeout: float | None = BODY_TIMEOUT) -> Starlette:
    """Every refusal is a 4xx whose message names no server path (keys are named by
    their label, e.g. "the key file (ML_CONNECTOR_KEY_FILE)"); never a 500. ``ui_origin``: the
    UI's origin, or each one it may be opened at (dev: 127.0.0.1 and localhost are two origins).
    ``sessions`` (an object with ``signed_in(request) -> bool``) replaces the token."""
    if sessions is None and (token is None or len(token) < 16):
        raise ValueError("the codec endpoint token must be a long random string (new_token())")
    origins = [ui_origin] if isinstance(ui_origin, str) else ui_origin
    origins_allowed = {origin.rstrip("/") for origin in origins}
    codec = codec_from_keyring(keyring)

    def cors(request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin not in origins_allowed:
            return {"Vary": "Origin"}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Allow-Credentials": "true"}

    def refusal(request: Request, path_token: str | None) -> Response | None:
        """403 for a foreign origin or a bad bearer token, 404 for a bad path token."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in origins_allowed:
            log.warning("codec.refused", reason="origin")
            return JSONResponse({"message": "origin not allowed"}, status_code=403)
        if sessions is not None:
            if request.method != "OPTIONS" and (path_token is not None or not sessions.signed_in(request)):
                log.warning("codec.refused", reason="session")
                return JSONResponse({"message": "sign in first: open the sign-in link that "
                                                "`ml-connector dev` printed"}, status_code=401)
            return None
        if path_token is not None:
            if not _same(path_token, token):
                log.warning("codec.refused", reason="token")
                return JSONResponse({"message": "not found"}, status_code=404)
            return None
        if request.method == "OPTIONS":  # browsers send no credentials on a preflight
            return None
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not _same(credential.strip(), token):
            log.warning("codec.refused", reason="token")
            return JSONResponse({"message": "a valid bearer token is required"}, status_code=403)
        return None

    async def endpoint(request: Request) -> Response:
        path_token = request.path_params.get("token")
        if request.path_params["op"] not in ("decode", "encode"):
            return JSONResponse({"message": "not found"}, status_code=404)
        if (refused := refusal(request, path_token)) is not None:
            return refused
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={
                **cors(request), "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": "600"})
        try:
            body = await read_body(request, max_body, body_timeout)
            if nested_deeper_than(body, MAX_DEPTH):
                raise json_format.ParseError("nested too deep")
            payloads = json_format.Parse(body, Payloads(), ignore_unknown_fields=True).payloads
        except Oversize:
            return JSONResponse({"message": f"body larger than {max_body} bytes"}, 413, cors(request))
        except SlowBody:
            return JSONResponse({"message": f"body not received within {body_timeout:g} s"}, 408,
                                {**cors(request), "Connection": "close"})
        except (json_format.ParseError, ValueError, RecursionError, ClientDisconnect):
            return JSONResponse({"message": "expected {\"payloads\": [...]} in protobuf JSON"},
                                400, cors(request))
        try:
            result = await _apply(request.path_params["op"], payloads)
        except MalformedPayload as exc:
            return JSONResponse({"message": str(exc)}, 400, cors(request))
        except UnknownPayloadKey as exc:
            return JSONResponse({"message": str(exc)}, 422, cors(request))
        except VaultError as exc:  # the key file became unreadable: named by its label only
            log.error("codec.keys_unavailable", error=str(exc))
            return JSONResponse({"message": str(exc)}, 503, cors(request))
        except DecodeError:
            return JSONResponse({"message": "a payload decrypted to no Temporal payload"},
                                422, cors(request))
        except InvalidTag:
            return JSONResponse({"message": "a payload failed authentication (altered or "
                                            "encrypted under another key with the same id)"},
                                422, cors(request))
        return Response(json_format.MessageToJson(Payloads(payloads=result)),
                        media_type="application/json", headers=cors(request))

    async def _apply(op: str, payloads: Sequence[Payload]) -> list[Payload]:
        return await (codec.decode(payloads) if op == "decode" else codec.encode(payloads))

    ops = "{op:str}"
    return Starlette(routes=[
        Route(f"/{{token:str}}/{ops}", endpoint, methods=["POST", "OPTIONS"]),
        Route(f"/{ops}", endpoint, methods=["POST", "OPTIONS"]),
    ])

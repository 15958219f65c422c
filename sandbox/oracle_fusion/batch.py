"""The batch endpoint: parts run in order, each with its own status."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.oracle_fusion.views import FAMILIES
from sandbox.oracle_fusion.wire import (ApiError, BATCH_MEDIA_TYPE, BATCH_OPERATIONS, JSON, VERSIONS, _json,
                                        bad, dumps, error_response)


class BatchApi:
    """The batch endpoint: parts run in order, each with its own status."""

    async def batch(self, request: Request) -> Response:
        """``POST`` on the context root: the parts in order, in one transaction. A failing part
        undoes the others and is the only one in the answer, with its own status."""
        family, version = request.path_params["family"], request.path_params["version"]

        async def handler(v: int) -> Response:
            if version not in VERSIONS or family not in FAMILIES:
                raise ApiError(404, "The requested resource doesn't exist.")
            if not request.headers.get("content-type", "").startswith(BATCH_MEDIA_TYPE):
                raise ApiError(415, f"A batch needs Content-Type {BATCH_MEDIA_TYPE}.")
            body = await _json(request)
            parts = body.get("parts") if isinstance(body, dict) else None
            if not isinstance(parts, list) or not parts:
                raise bad("A batch request needs a non-empty array parts.", "parts")
            saved = self.state.snapshot()
            answered, wrote = [], False
            for part in parts:
                answer, status = await self._part(request, family, version, part, v)
                if status >= 400:
                    self.state.restore(saved)
                    return JSON({"parts": [answer]}, status_code=status)
                answered.append(answer)
                wrote |= part.get("operation") != "get"
            response = JSON({"parts": answered})
            return self._committed(response) if wrote else response
        return await self.guarded(request, "batch", handler)

    async def _part(self, request: Request, family: str, version: str, part: Any,
                    v: int) -> tuple[dict, int]:
        """One part served as the request it stands for, without faults or quota of its own."""
        if not isinstance(part, dict) or not all(isinstance(part.get(k), str)
                                                 for k in ("id", "path", "operation")):
            raise bad("Every part needs the strings id, path and operation.", "parts")
        method = BATCH_OPERATIONS.get(part["operation"])
        if method is None:
            raise bad(f"The operation {part['operation']} isn't valid in a batch.", "operation")
        path, _, query = part["path"].partition("?")
        if "/action/" in path:
            raise bad(f"The action {path.rsplit('/', 1)[-1]} isn't enabled for batch execution.")
        payload = dumps(part["payload"]).encode() if "payload" in part else b""
        prefix = f"/{family}/resources/{version}"
        headers = [(name, value) for name, value in request.scope["headers"]
                   if name not in (b"content-type", b"content-length")]
        scope = {**{key: value for key, value in request.scope.items() if key != "raw_path"},
                 "method": method, "path": prefix + path, "query_string": query.encode(),
                 "headers": headers + [(b"content-type", b"application/json")]}

        async def receive() -> dict:
            return {"type": "http.request", "body": payload, "more_body": False}

        try:
            self._batching = True
            response = await self._serve(Request(scope, receive), family, version,
                                         [p for p in path.split("/") if p], v)
        except ApiError as exc:
            response = error_response(exc, v)
        finally:
            self._batching = False
        content = response.body.decode() if response.body else ""
        try:
            answer_payload = json.loads(content, parse_float=Decimal) if content else None
        except ValueError:
            answer_payload = content
        return ({"id": part["id"], "path": part["path"], "operation": part["operation"],
                 "payload": answer_payload}, response.status_code)

"""The webhook subscription endpoint (deliveries are sandbox/exact_online/delivery.py)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sandbox.exact_online.api import Api, _body
from sandbox.exact_online.wire import BadRequest, odata_error


# --------------------------------------------------------------------------- webhook subscribe

class WebhookApi(Api):
    """Subscriptions validate their callback before they are saved."""

    async def resource(self, request: Request) -> Response:
        rest = request.path_params.get("rest", "")
        if request.method == "POST" and rest.lower() == "webhooks/webhooksubscriptions":
            raw = await request.body()
            try:
                url = (_body(raw) or {}).get("CallbackURL", "")
            except (BadRequest, AttributeError):
                url = ""
            secure = url.startswith("https://") or (self.state.settings.allow_http_callbacks
                                                     and url.startswith("http://"))
            if url and secure and self.state.authenticated(request) is not None:
                status = await self.deliverer.post(url, b"")
                if status is None or not 200 <= status < 300:
                    return self._count(odata_error(
                        500, f"Error 500: Invalid: Post to callback URL endpoint returns {status or 500} "
                             f"An error occurred while sending the request."), request)
        return await super().resource(request)

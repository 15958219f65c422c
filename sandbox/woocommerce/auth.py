"""Authentication as §2 describes it: query-string and Basic over HTTPS, OAuth 1.0a over HTTP."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from starlette.requests import Request

from sandbox.woocommerce.constants import OAUTH_WINDOW
from sandbox.woocommerce.wire import ApiError

if TYPE_CHECKING:
    from sandbox.woocommerce.model import ApiKey
    from sandbox.woocommerce.state import WooState


# --------------------------------------------------------------------------------------------
# Authentication (§2)
# --------------------------------------------------------------------------------------------

@dataclass
class AuthResult:
    key: ApiKey | None = None
    error: ApiError | None = None
    method: str = ""


def php_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """PHP's ``$_GET``/``$_POST``: ``a[]=x`` and ``a[k]=x`` become arrays, last plain key wins."""
    params: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"([^\[]+)\[([^\]]*)\]", key)
        if not match:
            params[key] = value
            continue
        name, sub = match.groups()
        bucket = params.get(name)
        if not isinstance(bucket, dict):
            bucket = params[name] = {}
        bucket[sub if sub else str(len(bucket))] = value
    return params


def oauth_header_params(header: str) -> dict[str, str]:
    if not header.startswith("OAuth "):
        return {}
    params = {}
    for name, _, quoted, bare in re.findall(r'(oauth_[a-z_-]*)=(:?"([^"]*)"|([^,]*))', header):
        params[name] = unquote((quoted or bare).replace("+", " "))
    return params


def rfc3986(text: str) -> str:
    return quote(str(text), safe="~")


def oauth_base_string(method: str, url: str, params: dict[str, Any]) -> str:
    pairs = []
    for key in sorted(params, key=lambda k: k.encode()):
        value = params[key]
        if isinstance(value, dict):
            pairs += [(f"{key}[{sub}]", v) for sub, v in value.items()]
        else:
            pairs.append((key, value))
    normalized = "%26".join(rfc3986(f"{rfc3986(k)}={rfc3986(v)}") for k, v in pairs)
    return f"{method.upper()}&{rfc3986(url)}&{normalized}"


def oauth_signature(base_string: str, consumer_secret: str, method: str) -> str:
    digest = hashlib.sha256 if method == "HMAC-SHA256" else hashlib.sha1
    return base64.b64encode(hmac.new(f"{consumer_secret}&".encode(), base_string.encode(), digest).digest()).decode()


class Authenticator:
    """``WC_REST_Authentication``."""

    REQUIRED = ("oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature",
                "oauth_signature_method")

    def __init__(self, state: WooState) -> None:
        self.state = state

    def authenticate(self, request: Request, query: list[tuple[str, str]], form: list[tuple[str, str]]) -> AuthResult:
        result = AuthResult()
        header = "" if self.state.settings.strip_authorization else request.headers.get("authorization", "")
        if request.url.scheme == "https":
            self._basic(result, header, dict(query))
        if result.key is None:
            self._oauth(result, request, header, query, form)
        return result

    def _basic(self, result: AuthResult, header: str, query: dict[str, str]) -> None:
        key, secret = query.get("consumer_key", ""), query.get("consumer_secret", "")
        if not (key and secret):
            key, secret = parse_basic(header)
        if not (key and secret):
            return
        result.method = "basic_auth"
        found = self.state.keys.get(key)
        if found is None:
            return
        if not hmac.compare_digest(found.consumer_secret.encode(), secret.encode()):
            result.error = ApiError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
            result.error.headers["WWW-Authenticate"] = (
                'Basic realm="WooCommerce API. Use a consumer key in the username field and a '
                'consumer secret in the password field."')
            return
        result.key = found

    def _oauth(self, result: AuthResult, request: Request, header: str,
               query: list[tuple[str, str]], form: list[tuple[str, str]]) -> None:
        params = php_params(query) | php_params(form) | oauth_header_params(header.strip())
        missing = [name for name in self.REQUIRED if not params.get(name)]
        if len(missing) == len(self.REQUIRED):
            return
        result.method = "oauth1"
        if missing:
            word = "parameter" if len(missing) == 1 else "parameters"
            result.error = ApiError(401, "woocommerce_rest_authentication_missing_parameter",
                                    f"Missing OAuth {word} {', '.join(missing)}")
            return
        key = self.state.keys.get(str(params["oauth_consumer_key"]))
        if key is None:
            result.error = auth_error("Consumer key is invalid.")
            return
        result.error = self._check_signature(request, key, params) or self._check_nonce(key, params)
        if result.error is None:
            result.key = key

    def _check_signature(self, request: Request, key: ApiKey, params: dict) -> ApiError | None:
        given = unquote(str(params["oauth_signature"]).replace(" ", "+"))
        signed = {k: v for k, v in params.items() if k != "oauth_signature"}
        method = signed["oauth_signature_method"]
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            return auth_error("Invalid signature - signature method is invalid.")
        base = oauth_base_string(request.method, request_url(request), signed)
        if not hmac.compare_digest(oauth_signature(base, key.consumer_secret, method), given):
            return auth_error("Invalid signature - provided signature does not match.")
        return None

    def _check_nonce(self, key: ApiKey, params: dict) -> ApiError | None:
        now = self.state.now().replace(tzinfo=timezone.utc).timestamp()
        try:
            stamp = int(str(params["oauth_timestamp"]))
        except ValueError:
            return auth_error("Invalid timestamp.")
        if not now - OAUTH_WINDOW <= stamp <= now + OAUTH_WINDOW:
            return auth_error("Invalid timestamp.")
        nonce = str(params["oauth_nonce"])
        if nonce in key.nonces.values():
            return auth_error("Invalid nonce - nonce has already been used.")
        key.nonces[stamp] = nonce
        for old in [t for t in key.nonces if t < now - OAUTH_WINDOW]:
            del key.nonces[old]
        return None


def auth_error(message: str) -> ApiError:
    return ApiError(401, "woocommerce_rest_authentication_error", message)


def parse_basic(header: str) -> tuple[str, str]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return "", ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else ("", "")


def request_url(request: Request) -> str:
    """The URL the server sees: scheme, Host header and the raw path."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1").split("?", 1)[0] if raw else request.url.path
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}{path}"


def request_base(request: Request) -> str:
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}"

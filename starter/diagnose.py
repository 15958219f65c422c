"""``ml-connector connections test NAME``: reach both systems of a connection with its stored
credentials and say precisely what is wrong, with the fix.

Each side is checked in the order a request fails in: the host resolves, the port answers,
the TLS certificate is trusted (with the connection's ``ca_bundle``), and then the
connector's own ``ping()`` (an authenticated read) whose typed errors and report name the
bad credential, the wrong endpoint version, division or region, or a skewed clock. A
connector without ``ping()`` is tested with one read of the contract instead. Messages
carry no secret: connector errors are redacted at their source, and every stored secret
value is scrubbed from the text once more here.
"""
from __future__ import annotations

import asyncio
import email.utils
import re
import socket
import ssl
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from activities.runtime import Runtime
from connections.config import ERP_CREDENTIALS, STORE_CREDENTIALS, Connection
from connections.store import ConnectionStore
from connectors.errors import ConfigurationError, ExternalError
from starter.logs import redact_value

CONNECT_TIMEOUT = 10.0
SKEW_TOLERANCE = 60.0  # seconds of clock difference worth naming
OAUTH1_WINDOW_MINUTES = 15  # WooCommerce accepts OAuth 1.0a timestamps within ±15 minutes

# Which stored credential a refusal points at, per system (the names `connections add` uses).
CREDENTIALS = {
    "woocommerce": "the store's consumer key and consumer secret (ck_…/cs_…)",
    "bigcommerce": "the store's API account access token (and its store hash)",
    "acumatica": "the ERP's client id and client secret, or the API user's name and password",
    "oracle_fusion": "the ERP integration user's name and password (or its OAuth client)",
    "exact_online": "the ERP app's client id and secret (they are region-specific) or the "
                    "consented user's refresh token",
}


@dataclass
class Finding:
    side: str  # "store" or "erp"
    system: str
    ok: bool
    check: str  # config, dns, network, timeout, tls, credentials, permission, endpoint,
    #             division, region, clock, consent, api
    message: str
    fix: str = ""


async def test_connection(runtime_or_store: Runtime | ConnectionStore,
                          conn: Connection) -> list[Finding]:
    """One or more findings per side; the connection works when every finding is ok."""
    runtime = (runtime_or_store if isinstance(runtime_or_store, Runtime)
               else Runtime(runtime_or_store))
    try:
        secrets = _secret_values(runtime.store, conn.id)
        findings = []
        for side in ("store", "erp"):
            findings += [_scrubbed(f, secrets) for f in await _test_side(runtime, conn, side)]
        return findings
    finally:
        if runtime is not runtime_or_store:
            await runtime.aclose()


def passed(findings: list[Finding]) -> bool:
    return bool(findings) and all(f.ok for f in findings)


def render(conn: Connection, findings: list[Finding]) -> str:
    lines = [f"connection {conn.id}: {conn.store_system} -> {conn.erp_system}"]
    for f in findings:
        lines.append(f"  {f.side:<5} {f.system:<13} {'ok  ' if f.ok else 'FAIL'}  "
                     f"{f.check}: {f.message}")
        if f.fix:
            lines.append(f"  {'':<5} {'':<13}       fix: {f.fix}")
    lines.append("  result: " + ("both systems answer" if passed(findings)
                                 else "the connection does not work as configured"))
    return "\n".join(lines)


def as_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]


# --- one side --------------------------------------------------------------------------------

async def _test_side(runtime: Runtime, conn: Connection, side: str) -> list[Finding]:
    system = conn.store_system if side == "store" else conn.erp_system
    label = "store" if side == "store" else "ERP"
    try:
        connector = runtime.storefront(conn) if side == "store" else runtime.erp(conn)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return [Finding(side, system, False, "config", f"the {label} settings or credentials "
                        f"are incomplete: {where}: {err['msg']}",
                        f"correct the connection ({where}) with `ml-connector connections add "
                        f"{conn.id} --replace ...`")]
    except ConfigurationError as exc:  # e.g. a plain-HTTP URL that would expose credentials
        return [Finding(side, system, False, "config", exc.message,
                        f"correct the connection with `ml-connector connections add {conn.id} "
                        "--replace ...` (an https:// URL)")]
    settings = getattr(connector, "settings", None)
    url = _url_of(settings)
    if url:
        problem = await probe(url, getattr(settings, "ca_bundle", None), label)
        if problem is not None:
            check, message, fix = problem
            return [Finding(side, system, False, check, message, fix)]
    return [await _ping(connector, side, system, label, settings)]


def _url_of(settings: Any) -> str:
    """The URL a connector talks to (Exact's region host, a store's or instance's URL)."""
    for name in ("host", "base_url", "instance_url"):
        value = getattr(settings, name, None)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    return ""


async def probe(url: str, ca_bundle: str | None, label: str = "system",
                timeout: float = CONNECT_TIMEOUT) -> tuple[str, str, str] | None:
    """(check, message, fix) of the first network or TLS failure on the way to ``url``,
    None when a connection (and, for https, a trusted TLS session) is established."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    where = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return ("dns", f"the {label} host {host!r} does not resolve ({exc.strerror})",
                f"check the {label} URL ({url}) and this host's DNS")
    context = None
    if tls:
        try:
            context = httpx.create_ssl_context(verify=ca_bundle or True)
        except (OSError, ssl.SSLError) as exc:
            return ("tls", f"the {label}'s ca_bundle {ca_bundle!r} cannot be used: "
                    f"{getattr(exc, 'strerror', None) or exc}",
                    "point ca_bundle at a readable PEM file of the CA that signed the certificate")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context,
                                    server_hostname=host if tls else None), timeout)
    except ssl.SSLCertVerificationError as exc:
        return ("tls", *_certificate_problem(exc, label, host, ca_bundle))
    except ssl.SSLError as exc:
        return ("tls", f"no TLS session with {where}: {exc.reason or exc}",
                f"check that {where} serves HTTPS on that port (credentials go over TLS "
                "only; a TLS-terminating proxy in between must present a valid certificate)")
    except ConnectionRefusedError:
        return ("network", f"nothing listens on {where} (connection refused)",
                f"check the {label} URL's port and that the {label} is running")
    except (asyncio.TimeoutError, TimeoutError):
        return ("timeout", f"no answer from {where} within {timeout:g} s",
                "check firewalls and proxies between this host and the "
                f"{label} (or whether the {label} is down)")
    except OSError as exc:
        return ("network", f"cannot connect to {where}: {exc.strerror or exc}",
                f"check the {label} URL and the network route to it")
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return None


def _certificate_problem(exc: ssl.SSLCertVerificationError, label: str, host: str,
                         ca_bundle: str | None) -> tuple[str, str]:
    code = getattr(exc, "verify_code", None)
    detail = getattr(exc, "verify_message", None) or str(exc)
    if code == 10:
        return (f"the {label}'s certificate has expired ({detail})",
                f"renew the {label}'s TLS certificate")
    if code == 62 or "hostname mismatch" in detail.lower() or "doesn't match" in detail:
        return (f"the {label}'s certificate does not name {host!r} ({detail})",
                f"use the host name the certificate was issued for in the {label} URL")
    if ca_bundle:
        return (f"the {label}'s certificate is not trusted by the ca_bundle {ca_bundle} "
                f"({detail})", "set ca_bundle to the CA that signed the certificate")
    return (f"the {label}'s certificate is not trusted: set ca_bundle ({detail})",
            f"set ca_bundle to the CA file of the {label}'s private CA "
            "(connections add --ca-bundle PATH)")


async def _ping(connector: Any, side: str, system: str, label: str, settings: Any) -> Finding:
    ping = getattr(connector, "ping", None)
    try:
        if ping is not None:
            report = await ping()
        else:
            await _contract_read(connector, side)
            report = {"ok": True, "via": "a contract read (the connector has no ping())"}
    except ExternalError as exc:
        return classify(side, system, label, str(exc), exc.kind, exc.status, {}, settings)
    except ValueError as exc:
        return classify(side, system, label, str(exc), "NotTheApi", None, {}, settings)
    if report.get("ok"):
        return Finding(side, system, True, "api", _summary(report, label))
    error = (report.get("error") or report.get("entity_error") or report.get("discovery_error")
             or "the ping failed without a message")
    return classify(side, system, label, str(error), report.get("error_kind"),
                    report.get("status"), report, settings)


async def _contract_read(connector: Any, side: str) -> None:
    """A cheap authenticated read every connector has."""
    if side == "store":
        now = datetime.now(timezone.utc)
        async for _ in connector.iter_orders_modified(now - timedelta(minutes=1), now):
            break
    else:
        await connector.find_document("invoice", "ml-connector-ping")


def _summary(report: dict[str, Any], label: str) -> str:
    facts = [f"{k.replace('_', ' ')} {report[k]}" for k in
             ("auth_mode", "endpoint", "build", "division", "api_version", "host",
              "minutely_remaining", "daily_remaining", "via") if report.get(k) not in (None, "")]
    return f"the {label} answers an authenticated read" + (f" ({', '.join(facts)})" if facts else "")


# --- classification --------------------------------------------------------------------------

def classify(side: str, system: str, label: str, error: str, kind: str | None,
             status: int | None, report: dict[str, Any], settings: Any = None) -> Finding:
    """The precise finding for a failed ping: what is wrong and what to change."""
    text = error
    lowered = text.lower()
    status = status if status is not None else _status_in(text)

    def found(check: str, message: str, fix: str) -> Finding:
        return Finding(side, system, False, check, message, fix)

    if report.get("endpoint_served") is False or kind == "ConfigurationError" \
            or "is not served by this instance" in lowered:
        served = report.get("served_endpoints") or []
        wanted = report.get("endpoint") or getattr(settings, "endpoint", "")
        message = (f"endpoint {wanted} is not served by the {label}; it serves "
                   f"{', '.join(served) or 'no endpoints'}") if served else text
        return found("endpoint", message,
                     "set the connection's endpoint version to one the instance serves "
                     "(connections add --erp-version VERSION --replace)")
    if "invalid timestamp" in lowered or "nonce" in lowered:
        return clock_finding(side, system, label, text, report.get("server_date"))
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return found("tls", f"the {label}'s certificate is not trusted: set ca_bundle ({text})",
                     "set ca_bundle to the CA file that signed the certificate")
    if kind == "ConsentRequired" or "consent" in lowered:
        return found("consent", text, "a user must consent again: "
                     "`ml-connector connections authorize NAME`")
    if "wrongdivision" in lowered.replace(" ", "") or ("division" in lowered and status == 403):
        division = getattr(settings, "division", None) or report.get("division")
        return found("division", f"the {label} refuses division {division}: {text}",
                     "set the connection's division to one the user can access "
                     "(GET /api/v1/{division}/system/Divisions lists them), or leave it unset "
                     "to use the user's current division")
    if status == 403:
        return found("permission", f"the {label} accepted the credentials but refuses access: "
                     f"{text}", _permission_fix(system))
    if kind in ("AuthFailed", "AuthExpired") or status == 401:
        return found("credentials", f"the {label} refuses the credentials: {text}",
                     f"fix {_which_credential(system, text, settings)}")
    if kind == "NotTheApi" or (status == 404 and side == "store"):
        return found("api", f"the {label} URL does not serve the {system} API: {text}",
                     f"check the {label} URL (base_url)")
    if status == 404:
        return found("api", f"the {label} answers 404: {text}",
                     f"check the {label} URL and its API version settings")
    if "timeout" in lowered:
        return found("timeout", f"the {label} did not answer in time: {text}",
                     "check the network path, or retry: the system may be overloaded")
    if "connection refused" in lowered or "connecterror" in lowered or "unreachable" in lowered:
        return found("network", f"cannot reach the {label}: {text}",
                     f"check the {label} URL and that the {label} is up")
    if kind == "RateLimited" or status == 429:
        return found("api", f"the {label} is rate limiting this client: {text}",
                     "wait for the quota to reset; the worker paces itself below it")
    if status is not None and status >= 500 or kind == "Unavailable":
        return found("api", f"the {label} is failing: {text}",
                     "the system is down or erroring: retry later or ask its administrator")
    return found("api", f"the {label} refused the test read: {text}",
                 "read the system's own message above")


def _status_in(text: str) -> int | None:
    m = re.search(r"HTTP (\d{3})", text)
    return int(m.group(1)) if m else None


def _which_credential(system: str, text: str, settings: Any) -> str:
    lowered = text.lower()
    if "consumer secret is invalid" in lowered:
        return "the store's consumer secret (the consumer key is known to the store)"
    if "consumer key is invalid" in lowered:
        return "the store's consumer key (the store knows no such key)"
    if "invalid_client" in lowered:
        hint = ""
        if system == "exact_online":
            hint = (f"; Exact apps are region-specific: check that the app is registered in "
                    f"region {getattr(settings, 'region', '?')}")
        return f"the ERP's client id or client secret{hint}"
    if "invalid_grant" in lowered:
        return "the API user's name or password (or a revoked refresh token)"
    return CREDENTIALS.get(system, "the connection's credentials")


def _permission_fix(system: str) -> str:
    if system == "woocommerce":
        return ("give the key Read/Write permission (WooCommerce → Settings → Advanced → "
                "REST API) or create a new key")
    return "grant the API user or app the rights it needs (customers, invoices, payments)"


def clock_finding(side: str, system: str, label: str, text: str,
                  server_date: str | None, now: datetime | None = None) -> Finding:
    """OAuth 1.0a refused the timestamp or nonce: compare the server's Date header with
    this host's clock and say whose clock to fix."""
    now = now or datetime.now(timezone.utc)
    served = email.utils.parsedate_to_datetime(server_date) if server_date else None
    window = f"WooCommerce accepts OAuth timestamps within {OAUTH1_WINDOW_MINUTES} minutes"
    if served is None:
        return Finding(side, system, False, "clock",
                       f"the {label} refused the OAuth 1.0a timestamp ({text}); it sent no Date "
                       f"header to compare clocks with",
                       f"synchronise this host's and the {label}'s clocks (NTP); {window}")
    skew = (served - now).total_seconds()
    if abs(skew) > SKEW_TOLERANCE:
        direction = "behind" if skew > 0 else "ahead of"
        return Finding(side, system, False, "clock",
                       f"clock skew: this host's clock is {abs(skew):.0f} s {direction} the "
                       f"{label}'s (its Date header says {served.isoformat()}); the {label} "
                       f"refused the OAuth 1.0a timestamp ({text})",
                       f"synchronise the clocks (NTP) on this host or the {label}; {window}")
    return Finding(side, system, False, "clock",
                   f"the {label} refused the OAuth 1.0a timestamp ({text}) although its Date "
                   f"header agrees with this host's clock within {abs(skew):.0f} s: the "
                   f"WordPress/PHP clock or time zone behind its web server is wrong",
                   f"fix the clock of the {label}'s PHP host (NTP); {window}")


# --- no secret in a finding ------------------------------------------------------------------

SECRET_FIELDS = re.compile(r"secret|password|token|consumer_key|api_key", re.IGNORECASE)


def _secret_values(store: ConnectionStore, connection_id: str) -> list[str]:
    values: list[str] = []
    for name in (STORE_CREDENTIALS, ERP_CREDENTIALS):
        data = store.get_secret_json(connection_id, name) or {}
        values += [str(v) for k, v in data.items() if SECRET_FIELDS.search(k) and v
                   and len(str(v)) >= 8]  # shorter values would scrub ordinary words
    return sorted(values, key=len, reverse=True)


def _scrubbed(finding: Finding, secrets: list[str]) -> Finding:
    def clean(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return str(redact_value(text))

    finding.message, finding.fix = clean(finding.message), clean(finding.fix)
    return finding

"""structlog JSON logs with secrets and personal data redacted before they are written.

Every line goes through ``redact``: by key (a field named like a credential or personal
data) and by shape inside any string (``name=value`` pairs of credentials, as in query-string
consumer keys and ``access_token=``; ``Authorization`` schemes; JSON/dict fragments with
credential keys; e-mail addresses, URL-encoded too). Standard-library records (the Temporal
SDK, uvicorn, httpx) are rendered through the same processors, so a failed activity's message
logged by the SDK is redacted like our own lines. ``ML_CONNECTOR_LOG_FILE`` appends every
line to a file as well (the test suite scans it for plain-text secrets).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import structlog

LOG_FILE_ENV = "ML_CONNECTOR_LOG_FILE"
SENSITIVE_KEYS = re.compile(
    r"secret|password|passwd|token|authorization|cookie|signature|consumer_key|api[_-]?key"
    r"|email|phone|address|name$", re.IGNORECASE)
REDACTED = "[redacted]"
_CREDENTIAL = r"[\w.-]*(?:key|secret|token|password|passwd|signature|email|authorization)"
# Patterns inside strings, each keeping the part before the value (group 1).
_TEXT_RULES = [
    # JSON or Python-repr fragments: "access_token": "abc" / 'consumer_secret': 'cs_x'
    re.compile(rf"(?i)([\"']{_CREDENTIAL}[\"']\s*:\s*[\"'])[^\"']*"),
    # header lines: Authorization: xyz / X-Api-Key: xyz / Cookie: a=b
    re.compile(r"(?im)((?:authorization|proxy-authorization|x-api-key|api-key|cookie|set-cookie)"
               r"\s*:\s*)[^\r\n]+"),
    # authorization schemes wherever they appear
    re.compile(r"(?i)(\b(?:bearer|basic|digest)\s+)[\w~+/=.-]+"),
    # name=value pairs: query strings, form bodies, OAuth 1.0a parameters
    re.compile(rf"(?i)({_CREDENTIAL}=\"?)[^&#\s\"',;]+"),
    re.compile(r"(?i)(\b(?:code|oauth_verifier)=)[^&#\s\"',;]+"),
]
EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")


def redact_text(text: str) -> str:
    for rule in _TEXT_RULES:
        text = rule.sub(lambda m: m.group(1) + REDACTED, text)
    return EMAIL.sub(REDACTED, text)


def redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (bytes, bytearray)):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: REDACTED if SENSITIVE_KEYS.search(str(k)) else redact_value(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact(_, __, event: dict) -> dict:
    return {k: REDACTED if SENSITIVE_KEYS.search(k) and k not in ("event", "logger") else redact_value(v)
            for k, v in event.items()}


class _Lines:
    """The file-like object structlog prints to: stderr (looked up at each write, so a
    replaced ``sys.stderr`` is honoured) and, when set, the log file."""

    def __init__(self, path: Path | None) -> None:
        self.file = open(path, "a", buffering=1, encoding="utf-8") if path else None

    def write(self, text: str) -> None:
        sys.stderr.write(text)
        if self.file is not None:
            self.file.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
        if self.file is not None:
            self.file.flush()


_installed: list[logging.Handler] = []


def _stdlib_handlers(lines: _Lines, level: int) -> None:
    """Route standard-library records through the same redacting JSON rendering."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact,
                    structlog.processors.JSONRenderer()])
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
    _installed.clear()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    _installed.append(handler)
    root.setLevel(level)


# uvicorn's ``log_config`` for our servers: its loggers keep no handlers of their own and
# propagate to the root handler above, so its error lines and tracebacks (and access lines,
# where a server turns them on) are redacted JSON like every other line.
UVICORN_LOG_CONFIG = {
    "version": 1, "disable_existing_loggers": False,
    "loggers": {name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")},
}


def configure(level: int = logging.INFO, *, log_file: Path | None = None) -> None:
    path = log_file or (Path(p) if (p := os.environ.get(LOG_FILE_ENV)) else None)
    lines = _Lines(path)
    _stdlib_handlers(lines, level)
    # oauthlib logs the signature base string (consumer key included) at DEBUG.
    logging.getLogger("oauthlib").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, redact,
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(lines), cache_logger_on_first_use=False)

"""structlog JSON logs with secrets and personal data redacted before they are written."""
from __future__ import annotations

import logging
import re
import sys

import structlog

SENSITIVE_KEYS = re.compile(
    r"secret|password|token|authorization|consumer_key|api_key|email|phone|address|name$",
    re.IGNORECASE)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
REDACTED = "[redacted]"


def redact_value(value: object) -> object:
    if isinstance(value, str):
        return EMAIL.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: REDACTED if SENSITIVE_KEYS.search(str(k)) else redact_value(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def redact(_, __, event: dict) -> dict:
    return {k: REDACTED if SENSITIVE_KEYS.search(k) and k != "event" else redact_value(v)
            for k, v in event.items()}


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    # oauthlib logs the signature base string (consumer key included) at DEBUG.
    logging.getLogger("oauthlib").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), redact,
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr))

"""Typed failures of external systems. Each carries the decision the activity layer makes
(``activities/errors.py`` ``classified()`` reads ``retryable`` and ``retry_after``).

The hierarchy::

    ExternalError                   (not retryable unless a subclass says so)
    ├── Unavailable                 transient (5xx, timeouts, connection errors): retry, back off
    ├── RateLimited                 retry after ``retry_after`` s (the server's reset), plus jitter
    ├── ConsentRequired             the OAuth chain is broken; only a user's new consent fixes it:
    │                               orders wait (retry every ``retry_after`` s), never fail
    ├── AuthExpired                 credentials refused even after one refresh: retryable, but loud
    ├── AuthFailed                  credentials are wrong (bad key): stop, an operator fixes them
    ├── NotFound                    the record does not exist: stop (the order parks)
    └── Rejected                    the system refused the request (400/412/422): stop, its message
        ├── MappingMissing          an operator must add a mapping: the order parks, not fails
        ├── TotalsMismatch          store and document totals differ beyond tolerance: parks
        └── ConfigurationError      the connection itself is wrong: no order can succeed, fail
                                    loudly
"""
from __future__ import annotations


class ExternalError(Exception):
    retryable: bool = False
    kind: str = "ExternalError"

    def __init__(self, message: str, *, system: str = "", status: int | None = None,
                 resolution: str | None = None, details: dict | None = None,
                 retry_after: float | None = None) -> None:
        """``retry_after``: seconds the next attempt must wait, where the error names them
        (else the retry policy's back-off applies)."""
        super().__init__(message)
        self.message = message
        self.system = system
        self.status = status
        self.resolution = resolution
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        prefix = f"{self.system}: " if self.system else ""
        suffix = f" Resolution: {self.resolution}" if self.resolution else ""
        return f"{prefix}{self.message}{suffix}"


class Unavailable(ExternalError):
    retryable = True
    kind = "Unavailable"


class RateLimited(ExternalError):
    retryable = True
    kind = "RateLimited"

    def __init__(self, message: str, *, retry_after: float, **kw) -> None:
        super().__init__(message, retry_after=retry_after, **kw)


class ConsentRequired(ExternalError):
    """The ERP refused the connection's refresh token (a broken or expired OAuth chain): only a
    user's new consent (``ml-connector connections authorize NAME``) can fix it. Orders wait
    rather than fail: retryable, each attempt ``retry_after`` seconds after the last, so nobody
    spends the quota on a chain that is dead until someone re-authorizes."""

    retryable = True
    kind = "ConsentRequired"
    DEFAULT_RETRY_AFTER = 900.0  # seconds between attempts while nobody has re-authorized

    def __init__(self, message: str, *, retry_after: float = DEFAULT_RETRY_AFTER, **kw) -> None:
        super().__init__(message, retry_after=retry_after, **kw)


class AuthExpired(ExternalError):
    retryable = True
    kind = "AuthExpired"


class AuthFailed(ExternalError):
    kind = "AuthFailed"


class Rejected(ExternalError):
    kind = "Rejected"

    def __init__(self, message: str, *, field_errors: dict[str, str] | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.field_errors = field_errors or {}


class NotFound(ExternalError):
    kind = "NotFound"


class MappingMissing(Rejected):
    """The order cannot be posted as it is until an operator adds a mapping (park, don't fail)."""

    kind = "MappingMissing"


class TotalsMismatch(Rejected):
    """Store total and the document built from it differ by more than the tolerance (park)."""

    kind = "TotalsMismatch"


class ConfigurationError(Rejected):
    """The connection itself is wrong (e.g. an endpoint version the ERP does not serve):
    no order can succeed until an operator fixes it, so the workflow fails, loudly."""

    kind = "ConfigurationError"


# Order-specific refusals: the order waits (parked) with the resolution until replayed.
PARKING_KINDS = frozenset({"MappingMissing", "TotalsMismatch", "Rejected", "NotFound"})

"""Sign-in rate limiting: after ``attempts`` failed sign-ins for one operator name, or from
one client, within ``window`` seconds, that name or client is refused for ``lockout`` seconds
without its password being checked (no argon2 work for a guesser either).

Failures are kept in the connection store (a table of their own, created if missing, the
same SQL on SQLite and PostgreSQL), so every console process behind one store counts them
together. A name or client address is kept only as its SHA-256, never in plain text. A
refused attempt is not counted: the lock ends on time even while a guesser keeps trying."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from connections.store import Database

TABLE = """CREATE TABLE IF NOT EXISTS console_sign_in_failures (
    key_hash TEXT NOT NULL,
    at BIGINT NOT NULL
)"""
INDEX = ("CREATE INDEX IF NOT EXISTS console_sign_in_failures_key "
         "ON console_sign_in_failures (key_hash, at)")


@dataclass(frozen=True)
class Limits:
    attempts: int = 5
    window: int = 15 * 60
    lockout: int = 15 * 60


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


class SignInThrottle:
    """``clock``: seconds since the epoch (injectable, so a lock is tested without waiting)."""

    def __init__(self, db: Database, limits: Limits = Limits(), *, clock=time.time) -> None:
        self.db, self.limits, self.clock = db, limits, clock
        with db.transaction() as cur:
            cur.execute(TABLE)
            cur.execute(INDEX)

    @staticmethod
    def keys(operator: str, client: str) -> list[str]:
        return [_key("operator", operator.strip().lower()), _key("client", client)]

    def locked_for(self, keys: list[str]) -> int:
        """Seconds until the first of these keys may try again (0: not locked)."""
        now = int(self.clock())
        longest = 0
        for key in keys:
            times = [r[0] for r in self.db.query(
                "SELECT at FROM console_sign_in_failures WHERE key_hash = ? AND at > ? "
                "ORDER BY at", (key, now - self.limits.window - self.limits.lockout))]
            # Locked from each failure that made ``attempts`` within one window.
            n = self.limits.attempts
            for i in range(n - 1, len(times)):
                if times[i] - times[i - n + 1] < self.limits.window:
                    longest = max(longest, times[i] + self.limits.lockout - now)
        return max(longest, 0)

    def failed(self, keys: list[str]) -> bool:
        """Count a failure; True when it is the one that locks (to be recorded once)."""
        now = int(self.clock())
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM console_sign_in_failures WHERE at <= ?",
                        (now - self.limits.window - self.limits.lockout,))
            for key in keys:
                cur.execute("INSERT INTO console_sign_in_failures (key_hash, at) VALUES (?, ?)",
                            (key, now))
        return self.locked_for(keys) > 0

    def succeeded(self, operator: str) -> None:
        """A right password clears the operator's failures (not the client's)."""
        self.db.execute("DELETE FROM console_sign_in_failures WHERE key_hash = ?",
                        (self.keys(operator, "")[0],))

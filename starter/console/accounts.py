"""Operators, their sessions and the CSRF token of each session.

Kept in tables of their own in the connection store (created if missing, the same SQL on
SQLite and PostgreSQL): passwords as argon2id hashes (argon2-cffi), sessions by the SHA-256
of their random token (a stolen database holds no usable cookie), each with an absolute
expiry and its own CSRF token. Nothing here logs a name, a password or a token."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from connections.store import Database

TABLES = (
    """CREATE TABLE IF NOT EXISTS console_operators (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS console_sessions (
        token_hash TEXT PRIMARY KEY,
        operator TEXT NOT NULL,
        csrf TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    )""",
)
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 12
_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """Bad operator name or password: one line for the operator."""


@dataclass(frozen=True)
class Session:
    operator: str
    csrf: str
    expires_at: int


def ensure_tables(db: Database) -> None:
    with db.transaction() as cur:
        for sql in TABLES:
            cur.execute(sql)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """``clock``: seconds since the epoch (injectable, so expiry is tested without waiting)."""

    def __init__(self, db: Database, *, session_seconds: int = 8 * 3600, clock=time.time) -> None:
        self.db, self.session_seconds, self.clock = db, session_seconds, clock
        ensure_tables(db)

    # operators -----------------------------------------------------------------------------
    def add_operator(self, name: str, password: str, *, replace: bool = False) -> None:
        if not NAME.match(name):
            raise AccountError("an operator name is 1-64 letters, digits or . _ @ -")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
        exists = self.db.query("SELECT 1 FROM console_operators WHERE name = ?", (name,))
        if exists and not replace:
            raise AccountError(f"operator {name!r} exists; pass --replace to set a new password")
        self.db.execute(
            "INSERT INTO console_operators (name, password_hash, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
            (name, _hasher.hash(password), int(self.clock())))
        if replace:  # a new password ends the sessions the old one opened
            self.db.execute("DELETE FROM console_sessions WHERE operator = ?", (name,))

    def operators(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT name FROM console_operators ORDER BY name")]

    def verify(self, name: str, password: str) -> bool:
        rows = self.db.query("SELECT password_hash FROM console_operators WHERE name = ?",
                             (name,))
        try:
            return _hasher.verify(rows[0][0] if rows else _DUMMY_HASH, password) and bool(rows)
        except (VerificationError, InvalidHashError):
            return False

    # sessions ------------------------------------------------------------------------------
    def open_session(self, operator: str) -> tuple[str, Session]:
        """A new session: (the cookie's token, the session). Expired rows are swept here."""
        now = int(self.clock())
        token = secrets.token_urlsafe(32)
        session = Session(operator, secrets.token_urlsafe(32), now + self.session_seconds)
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            cur.execute("INSERT INTO console_sessions (token_hash, operator, csrf, expires_at) "
                        "VALUES (?, ?, ?, ?)", (_digest(token), operator, session.csrf,
                                                session.expires_at))
        return token, session

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie's token; None when unknown or expired."""
        if not token:
            return None
        rows = self.db.query("SELECT operator, csrf, expires_at FROM console_sessions "
                             "WHERE token_hash = ?", (_digest(token),))
        if not rows or rows[0][2] <= self.clock():
            return None
        return Session(*rows[0])

    def close_session(self, token: str | None) -> None:
        if token:
            self.db.execute("DELETE FROM console_sessions WHERE token_hash = ?", (_digest(token),))


def csrf_ok(session: Session | None, submitted: str | None) -> bool:
    """The form's token is the session's own (constant-time compare)."""
    return bool(session and submitted) and hmac.compare_digest(session.csrf, submitted)

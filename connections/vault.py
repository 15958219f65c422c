"""Encryption of secrets at rest and of workflow payloads, from one keyring.

Each master key (32 random bytes, with an id) derives two sub-keys by HKDF: a Fernet key for
stored secrets and an AES-GCM key for Temporal payloads. The first key encrypts; every key
decrypts, so rotation never strands old data. Keys come from ``ML_CONNECTOR_MASTER_KEYS``
(``id:base64,id:base64``, newest first) or from the key file, created with mode 0600 in a
0700 folder, and only while the store holds no secret.

Keys fail closed: every key must be valid base64 of exactly 32 bytes, and a key file that is
missing (while secrets exist), unreadable or damaged stops the process with one line that
says how to restore it. A key derived from nothing, or a fresh key that decrypts none of the
stored secrets, never reaches the vault. Messages name the key file by its variable, never by
a server path.

Rotation without downtime: ``ml-connector keys rotate`` rewrites the key file (new key first,
old keys kept) while workers and receivers keep running with the keyring they loaded. A
keyring read from a file notices the new file (a ``stat`` before encrypting, a forced re-read
when a ciphertext matches no known key), so those processes decrypt what the rotation wrote
and start encrypting under the new key without a restart.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
from dataclasses import dataclass
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connections.state_files import private_dir, tighten

ENV_KEYS = "ML_CONNECTOR_MASTER_KEYS"
ENV_HINT = (f"keys come from {ENV_KEYS}: put the new key first in the variable of every "
            "process (keep the old ones after it) and restart them")
KEY_BYTES = 32
KEY_FILE = "the key file"
NEW_KEY_HINT = ("make one with: python3 -c 'import os,base64;"
                "print(base64.b64encode(os.urandom(32)).decode())'")


class VaultError(Exception):
    """No usable key: a malformed or missing key, or a secret no known key decrypts. Its
    message is one line for the operator, naming no server path and no key material."""


@dataclass(frozen=True)
class MasterKey:
    id: str
    material: bytes

    def derive(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"ml-connector/" + purpose).derive(self.material)

    def __repr__(self) -> str:  # never the material
        return f"MasterKey(id={self.id!r})"


def new_key(key_id: str | None = None) -> MasterKey:
    return MasterKey(key_id or datetime.now(timezone.utc).strftime("k%Y%m%d%H%M%S"),
                     secrets.token_bytes(32))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def decode_key(key_id: str, b64: str, where: str) -> MasterKey:
    """A master key from its text form: standard (or URL-safe) base64 of exactly 32 bytes.
    ``where`` names the source in the error, which never repeats the key."""
    if not key_id:
        raise VaultError(f"{where}: every key needs an id ('id:base64key')")
    try:
        material = base64.b64decode(b64.strip().replace("-", "+").replace("_", "/"),
                                    validate=True)
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != KEY_BYTES:
        raise VaultError(f"{where}: key {key_id!r} is not base64 of exactly {KEY_BYTES} bytes; "
                         + NEW_KEY_HINT)
    return MasterKey(key_id, material)


def _keys_from_environment(value: str) -> list[MasterKey]:
    keys = []
    for part in value.split(","):
        key_id, sep, b64 = part.strip().partition(":")
        if not sep:
            raise VaultError(f"{ENV_KEYS} must be 'id:base64key[,id:base64key]'")
        keys.append(decode_key(key_id.strip(), b64, ENV_KEYS))
    return _distinct(keys, ENV_KEYS)


def _distinct(keys: list[MasterKey], where: str) -> list[MasterKey]:
    if not keys:
        raise VaultError(f"{where} holds no key")
    ids = [k.id for k in keys]
    if len(set(ids)) != len(ids):
        raise VaultError(f"{where}: two keys share an id")
    return keys


def _read_key_file(path: Path, label: str = KEY_FILE) -> list[MasterKey]:
    """The key file's keys; one-line errors for an unreadable or damaged file."""
    damaged = f"{label} is damaged ({{}}): restore it from backup or set {ENV_KEYS}"
    tighten(path)  # an older version or a copy may have left it readable by others
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise VaultError(f"{label} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VaultError(damaged.format("not JSON")) from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(k, dict) and isinstance(k.get("id"), str) and isinstance(k.get("key"), str)
            for k in entries):
        raise VaultError(damaged.format('no "keys" list of {"id", "key"}'))
    try:
        return _distinct([decode_key(k["id"], k["key"], label) for k in entries], label)
    except VaultError as exc:
        raise VaultError(damaged.format(str(exc).removeprefix(f"{label}: ").split(";")[0])) from None


class Keyring:
    """The master keys, newest first. ``generation`` grows whenever ``refresh`` adopts new
    keys, so every user of a shared keyring (vault, codec) knows to re-derive."""

    def __init__(self, keys: list[MasterKey], path: Path | None = None,
                 label: str = KEY_FILE) -> None:
        if not keys:
            raise VaultError("the keyring is empty")
        self.keys = keys
        self.path = path
        self.label = label  # how messages name the key file (its variable, not its path)
        self.generation = 0
        self._stamp = _stamp(path) if path is not None else None
        self._lock = threading.Lock()

    @property
    def primary(self) -> MasterKey:
        return self.keys[0]

    @property
    def from_environment(self) -> bool:
        return self.path is None

    @classmethod
    def load(cls, path: Path, *, label: str = KEY_FILE,
             may_create: Callable[[], bool] = lambda: True) -> "Keyring":
        """From the environment if set, else the key file. A missing key file is created
        only if ``may_create()`` says so (the store holds no secret yet): a new key would
        decrypt none of them, so otherwise the operator is told to restore the old one."""
        if (env := os.environ.get(ENV_KEYS)) is not None:
            return cls(_keys_from_environment(env))
        if not path.exists():
            if not may_create():
                raise VaultError(
                    f"{label} is missing but the store holds encrypted secrets: restore the key "
                    f"file from backup or set {ENV_KEYS}; a new key would decrypt none of them")
            ring = cls([new_key()], path, label)
            ring.save()
            return ring
        return cls(_read_key_file(path, label), path, label)

    def refresh(self, *, force: bool = False) -> bool:
        """Adopt the key file's keys if the file changed since it was read (``force``: re-read
        it anyway). True when the keys changed. A no-op for keys from the environment."""
        if self.path is None:
            return False
        with self._lock:
            stamp = _stamp(self.path)
            if stamp is None or (stamp == self._stamp and not force):
                return False
            keys = _read_key_file(self.path, self.label)
            self._stamp = stamp
            if keys == self.keys or not keys:
                return False
            self.keys = keys
            self.generation += 1
            return True

    def save(self) -> None:
        if self.path is None:
            raise VaultError(ENV_HINT)
        private_dir(self.path.parent)
        body = json.dumps({"keys": [{"id": k.id, "key": base64.b64encode(k.material).decode()}
                                    for k in self.keys]})
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._stamp = _stamp(self.path)

    def rotated(self) -> "Keyring":
        """A new keyring: a fresh primary key (an id no older key has), every old key kept."""
        key = new_key()
        ids = {k.id for k in self.keys}
        n = 1
        while key.id in ids:
            key = MasterKey(f"{key.id.split('-')[0]}-{n}", key.material)
            n += 1
        return Keyring([key, *self.keys], self.path, self.label)

    def codec_keys(self) -> dict[str, bytes]:
        return {k.id: k.derive(b"payload-codec") for k in self.keys}

    def unknown_key_hint(self) -> str:
        """What to do when data carries a key this process does not have."""
        if self.path is None:
            return ENV_HINT
        return f"{self.label} does not hold it (restore the key file from backup)"


class Vault:
    """Fernet (AES-128-CBC + HMAC) over stored secrets; MultiFernet for rotation."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._generation = -1
        self._sync()

    def _sync(self) -> None:
        """Re-derive the Fernet keys if the keyring adopted new keys."""
        if self._generation != self.keyring.generation:
            ring = self.keyring
            self._generation = ring.generation
            self._fernet = MultiFernet([
                Fernet(base64.urlsafe_b64encode(k.derive(b"vault"))) for k in ring.keys])

    def _current(self) -> MultiFernet:
        self.keyring.refresh()  # a stat: a rotation elsewhere switches our primary key
        self._sync()
        return self._fernet

    def encrypt(self, plaintext: str) -> str:
        return self._current().encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._current().decrypt(token.encode()).decode()
        except InvalidToken:
            pass
        if self.keyring.refresh(force=True):  # written under a key added since we read ours
            self._sync()
            try:
                return self._fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                pass
        raise VaultError("a stored secret cannot be decrypted with the configured keys; "
                         + self.keyring.unknown_key_hint()) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the primary key (it must decrypt with a known key)."""
        try:
            return self._current().rotate(token.encode()).decode()
        except InvalidToken:
            raise VaultError("a stored secret cannot be decrypted with the configured keys; "
                             + self.keyring.unknown_key_hint()) from None

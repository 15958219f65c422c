"""Encryption of secrets at rest and of workflow payloads, from one keyring.

Each master key (32 random bytes, with an id) derives two sub-keys by HKDF: a Fernet key for
stored secrets and an AES-GCM key for Temporal payloads. The first key encrypts; every key
decrypts, so rotation never strands old data. Keys come from ``ML_CONNECTOR_MASTER_KEYS``
(``id:base64,id:base64``, newest first) or from the key file, created on first use with
mode 0600.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENV_KEYS = "ML_CONNECTOR_MASTER_KEYS"


class VaultError(Exception):
    """A secret could not be decrypted with any known key (wrong or missing key file)."""


@dataclass(frozen=True)
class MasterKey:
    id: str
    material: bytes

    def derive(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"ml-connector/" + purpose).derive(self.material)


def new_key(key_id: str | None = None) -> MasterKey:
    return MasterKey(key_id or datetime.now(timezone.utc).strftime("k%Y%m%d%H%M%S"),
                     secrets.token_bytes(32))


class Keyring:
    def __init__(self, keys: list[MasterKey], path: Path | None = None) -> None:
        if not keys:
            raise VaultError("the keyring is empty")
        self.keys = keys
        self.path = path

    @property
    def primary(self) -> MasterKey:
        return self.keys[0]

    @classmethod
    def load(cls, path: Path) -> "Keyring":
        """From the environment if set, else the key file (created when missing)."""
        if env := os.environ.get(ENV_KEYS):
            keys = []
            for part in env.split(","):
                key_id, _, b64 = part.strip().partition(":")
                if not b64:
                    raise VaultError(f"{ENV_KEYS} must be 'id:base64key[,id:base64key]'")
                keys.append(MasterKey(key_id, base64.b64decode(b64)))
            return cls(keys)
        if not path.exists():
            ring = cls([new_key()], path)
            ring.save()
            return ring
        data = json.loads(path.read_text())
        return cls([MasterKey(k["id"], base64.b64decode(k["key"])) for k in data["keys"]], path)

    def save(self) -> None:
        if self.path is None:
            raise VaultError(f"keys come from {ENV_KEYS}; add the new key there")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"keys": [{"id": k.id, "key": base64.b64encode(k.material).decode()}
                                    for k in self.keys]})
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        os.replace(tmp, self.path)

    def rotated(self) -> "Keyring":
        return Keyring([new_key(), *self.keys], self.path)

    def codec_keys(self) -> dict[str, bytes]:
        return {k.id: k.derive(b"payload-codec") for k in self.keys}


class Vault:
    """Fernet (AES-128-CBC + HMAC) over stored secrets; MultiFernet for rotation."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._fernet = MultiFernet([
            Fernet(base64.urlsafe_b64encode(k.derive(b"vault"))) for k in keyring.keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise VaultError("a stored secret cannot be decrypted with the configured keys") from None

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()

"""AES-GCM payload codec: workflow inputs, results and signals are ciphertext in history.

The key id travels in each payload's metadata, so payloads written under an old key still
decode after rotation. Keys come from the same keyring as the connection store's vault; a
keyring read from the key file is re-read when a payload names a key id this process has not
seen yet (a worker that started before ``ml-connector keys rotate`` keeps decoding what newer
processes write), and a changed key file switches the encoding key without a restart.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES, TAG_BYTES = 12, 16


class UnknownPayloadKey(ValueError):
    """A payload was encrypted under a key this process does not have."""


class MalformedPayload(ValueError):
    """A payload marked encrypted is too short to hold a nonce and a tag: no ciphertext of
    ours (the codec endpoint answers 400, not 500)."""


class AesGcmCodec(PayloadCodec):
    """``keyring`` (optional) is followed: its new keys are adopted as it adopts them."""

    def __init__(self, keys: dict[str, bytes], primary: str, *, keyring=None) -> None:
        self._keyring = keyring
        self._generation = keyring.generation if keyring is not None else 0
        self._set_keys(keys, primary)

    def _set_keys(self, keys: dict[str, bytes], primary: str) -> None:
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._primary = primary

    def _sync(self, *, force: bool = False) -> bool:
        """Follow the keyring; True when the keys changed."""
        ring = self._keyring
        if ring is None:
            return False
        ring.refresh(force=force)
        if ring.generation == self._generation:
            return False
        self._generation = ring.generation
        self._set_keys(ring.codec_keys(), ring.primary.id)
        return True

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self._sync()
        primary = self._primary
        aes = self._keys[primary]
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE_BYTES)
            out.append(Payload(
                metadata={"encoding": ENCODING, KEY_ID: primary.encode()},
                data=nonce + aes.encrypt(nonce, p.SerializeToString(), None)))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(p) for p in payloads]

    def _decode_one(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            return p
        if len(p.data) < NONCE_BYTES + TAG_BYTES:
            raise MalformedPayload(f"an encrypted payload holds {len(p.data)} bytes, fewer than "
                                   f"its nonce and tag ({NONCE_BYTES + TAG_BYTES})")
        key_id = p.metadata.get(KEY_ID, b"").decode(errors="replace")
        aes = self._keys.get(key_id)
        if aes is None and self._sync(force=True):
            aes = self._keys.get(key_id)
        if aes is None:
            hint = self._keyring.unknown_key_hint() if self._keyring is not None else ""
            raise UnknownPayloadKey(f"payload encrypted with unknown key id {key_id!r}"
                                    + (f"; {hint}" if hint else ""))
        decoded = Payload()
        decoded.ParseFromString(aes.decrypt(p.data[:NONCE_BYTES], p.data[NONCE_BYTES:], None))
        return decoded


def codec_from_keyring(keyring) -> AesGcmCodec:
    return AesGcmCodec(keyring.codec_keys(), keyring.primary.id, keyring=keyring)

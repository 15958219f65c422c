"""AES-GCM payload codec: workflow inputs, results and signals are ciphertext in history.

The key id travels in each payload's metadata, so payloads written under an old key still
decode after rotation. Keys come from the same keyring as the connection store's vault.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


class AesGcmCodec(PayloadCodec):
    def __init__(self, keys: dict[str, bytes], primary: str) -> None:
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._primary = primary

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        aes = self._keys[self._primary]
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            out.append(Payload(
                metadata={"encoding": ENCODING, KEY_ID: self._primary.encode()},
                data=nonce + aes.encrypt(nonce, p.SerializeToString(), None)))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(p) for p in payloads]

    def _decode_one(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            return p
        key_id = p.metadata.get(KEY_ID, b"").decode()
        aes = self._keys.get(key_id)
        if aes is None:
            raise ValueError(f"payload encrypted with unknown key id {key_id!r}")
        decoded = Payload()
        decoded.ParseFromString(aes.decrypt(p.data[:12], p.data[12:], None))
        return decoded


def codec_from_keyring(keyring) -> AesGcmCodec:
    return AesGcmCodec(keyring.codec_keys(), keyring.primary.id)



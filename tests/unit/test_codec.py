"""The payload codec: ciphertext in history, old keys still decode, new keys followed."""
import pytest
from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload

from connections.vault import Keyring, Vault, new_key
from starter.codec import UnknownPayloadKey, codec_from_keyring


async def test_payloads_are_ciphertext_and_survive_rotation():
    old = Keyring([new_key("old")])
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email":"ann@example.com"}')
    encoded = await codec_from_keyring(old).encode([plain])
    assert b"ann@example.com" not in encoded[0].SerializeToString()
    assert encoded[0].metadata["encryption-key-id"] == b"old"
    rotated = Keyring([new_key("new"), *old.keys])
    assert (await codec_from_keyring(rotated).decode(encoded)) == [plain]
    fresh = await codec_from_keyring(rotated).encode([plain])
    assert fresh[0].metadata["encryption-key-id"] == b"new"


async def test_plain_payloads_pass_and_tampering_fails():
    ring = Keyring([new_key("k1")])
    codec = codec_from_keyring(ring)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b"{}")
    assert await codec.decode([plain]) == [plain]  # written before encryption was on
    [encoded] = await codec.encode([plain])
    encoded.data = encoded.data[:-1] + bytes([encoded.data[-1] ^ 1])
    with pytest.raises(InvalidTag):
        await codec.decode([encoded])


async def test_unknown_key_id_says_what_to_do(monkeypatch, tmp_path):
    [stranger] = await codec_from_keyring(Keyring([new_key("gone")])).encode([Payload(data=b"x")])
    with pytest.raises(UnknownPayloadKey, match="ML_CONNECTOR_MASTER_KEYS"):
        await codec_from_keyring(Keyring([new_key("k1")])).decode([stranger])
    monkeypatch.delenv("ML_CONNECTOR_MASTER_KEYS", raising=False)
    with pytest.raises(UnknownPayloadKey, match="does not hold it"):
        await codec_from_keyring(Keyring.load(tmp_path / "keys.json")).decode([stranger])


async def test_codec_follows_a_keyring_the_vault_refreshed(monkeypatch, tmp_path):
    """Vault and codec share one keyring in a process: whichever re-reads the key file first,
    both use the new keys."""
    monkeypatch.delenv("ML_CONNECTOR_MASTER_KEYS", raising=False)
    ring = Keyring.load(tmp_path / "keys.json")
    codec, vault = codec_from_keyring(ring), Vault(ring)
    rotated = ring.rotated()
    rotated.save()
    vault.encrypt("x")  # the vault notices the new file
    [encoded] = await codec.encode([Payload(data=b"x")])
    assert encoded.metadata["encryption-key-id"] == rotated.primary.id.encode()


@pytest.mark.parametrize("size", [0, 1, 11, 12, 27])
async def test_a_payload_shorter_than_nonce_and_tag_is_malformed(size):
    """It used to reach AES-GCM with a short nonce (a ValueError the endpoint answered 500)."""
    from starter.codec import ENCODING, KEY_ID, MalformedPayload

    short = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k1"}, data=b"\x00" * size)
    with pytest.raises(MalformedPayload, match="fewer than its nonce and tag"):
        await codec_from_keyring(Keyring([new_key("k1")])).decode([short])

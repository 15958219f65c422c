from temporalio.api.common.v1 import Payload

from connections.vault import Keyring, new_key
from starter.codec import codec_from_keyring


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

"""``keys rotate`` without downtime: the key file first (old keys kept), then every stored
secret re-encrypted, while a process that loaded the old keyring keeps working."""
from __future__ import annotations

import base64

import pytest
from temporalio.api.common.v1 import Payload

from connections.store import ConnectionStore, Database
from connections.vault import ENV_KEYS, Keyring, Vault, VaultError, _stamp, new_key
from starter.codec import UnknownPayloadKey, codec_from_keyring
from starter.keys import reencrypt, retire_keys, rotate_keys

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email":"ann@example.com"}')
SECRETS = {("shop", "webhook_secret"): "whsec-0123456789",
           ("shop", "erp_tokens"): '{"access_token": "at-1", "refresh_token": "rt-1"}',
           ("other", "store_credentials"): '{"consumer_key": "ck_1", "consumer_secret": "cs_1"}'}


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEYS, raising=False)
    return tmp_path / "keys.json"


@pytest.fixture
def process(db_url, key_file):
    """Open the store the way a process does: its own keyring read from the key file."""
    opened = []

    def open_process() -> ConnectionStore:
        opened.append(ConnectionStore(Database(db_url), Vault(Keyring.load(key_file))))
        return opened[-1]

    yield open_process
    for s in opened:
        s.db.close()


def _ciphertexts(store: ConnectionStore) -> dict:
    return {(c, n): t for c, n, t in store.db.query("SELECT connection_id, name, ciphertext FROM secrets")}


async def test_rotation_while_a_worker_holds_the_old_keyring(process, key_file):
    admin = process()
    for (cid, name), value in SECRETS.items():
        admin.put_secret(cid, name, value)
    worker = process()  # started before the rotation: holds only the old key
    worker_codec = codec_from_keyring(worker.vault.keyring)
    old_id = worker.vault.keyring.primary.id
    old_payload = (await worker_codec.encode([PLAIN]))[0]
    before = _ciphertexts(admin)

    result = rotate_keys(admin, key_file)

    assert result["secrets"] == len(SECRETS) and result["keys"] == 2 and result["key_id"] != old_id
    assert "key" not in result and all(not isinstance(v, bytes) for v in result.values())
    on_disk = Keyring.load(key_file)
    assert [k.id for k in on_disk.keys] == [result["key_id"], old_id]
    assert key_file.stat().st_mode & 0o777 == 0o600
    # every row re-encrypted: none of the old ciphertexts is left, all under the new key alone
    after = _ciphertexts(admin)
    assert not set(before.values()) & set(after.values())
    only_new = Vault(Keyring([on_disk.primary]))
    assert {k: only_new.decrypt(t) for k, t in after.items()} == SECRETS
    # the running worker still reads every secret and decodes what new processes write
    assert {k: worker.get_secret(*k) for k in SECRETS} == SECRETS
    new_payload = (await codec_from_keyring(on_disk).encode([PLAIN]))[0]
    assert new_payload.metadata["encryption-key-id"] == result["key_id"].encode()
    assert await worker_codec.decode([new_payload, old_payload]) == [PLAIN, PLAIN]
    # ...and writes under the new key from now on
    worker.put_secret("shop", "erp_tokens", "rotated-token")
    assert only_new.decrypt(_ciphertexts(admin)[("shop", "erp_tokens")]) == "rotated-token"
    assert (await worker_codec.encode([PLAIN]))[0].metadata["encryption-key-id"] == result["key_id"].encode()


async def test_codec_rereads_the_key_file_on_an_unknown_key_id(key_file):
    """A worker whose codec never encoded since the rotation (no stat) still decodes."""
    running = codec_from_keyring(Keyring.load(key_file))
    Keyring.load(key_file).rotated().save()
    fresh = Keyring.load(key_file)
    payload = (await codec_from_keyring(fresh).encode([PLAIN]))[0]
    assert await running.decode([payload]) == [PLAIN]


def test_vault_rereads_the_key_file_when_a_ciphertext_is_unknown(key_file, tmp_path):
    running = Vault(Keyring.load(key_file))
    Keyring.load(key_file).rotated().save()
    token = Vault(Keyring.load(key_file)).encrypt("whsec")
    running.keyring._stamp = _stamp(key_file)  # as if the stat had missed the change
    assert running.decrypt(token) == "whsec"
    with pytest.raises(VaultError, match="cannot be decrypted"):
        running.decrypt(Vault(Keyring([new_key("stranger")])).encrypt("x"))


def test_rotating_twice_in_a_second_gives_distinct_ids(process, key_file):
    admin = process()
    admin.put_secret("shop", "webhook_secret", "whsec")
    ids = {rotate_keys(admin, key_file)["key_id"] for _ in range(3)}
    assert len(ids) == 3 and len(Keyring.load(key_file).keys) == 4
    assert admin.get_secret("shop", "webhook_secret") == "whsec"


async def test_retire_keeps_secrets_but_old_payloads_no_longer_decode(process, key_file):
    admin = process()
    admin.put_secret("shop", "webhook_secret", "whsec")
    old_payload = (await codec_from_keyring(admin.vault.keyring).encode([PLAIN]))[0]
    new_id = rotate_keys(admin, key_file)["key_id"]
    result = retire_keys(admin, key_file, keep=1)
    assert result["retired"] and result["keys"] == 1
    assert [k.id for k in Keyring.load(key_file).keys] == [new_id]
    assert process().get_secret("shop", "webhook_secret") == "whsec"
    with pytest.raises(UnknownPayloadKey, match="unknown key id"):
        await codec_from_keyring(Keyring.load(key_file)).decode([old_payload])
    with pytest.raises(VaultError):
        retire_keys(admin, key_file, keep=0)


def test_environment_keys_are_rotated_by_the_operator(db_url, monkeypatch, tmp_path):
    old, new = new_key("old"), new_key("new")
    env = lambda *keys: ",".join(f"{k.id}:{base64.b64encode(k.material).decode()}" for k in keys)
    monkeypatch.setenv(ENV_KEYS, env(old))
    store = ConnectionStore(Database(db_url), Vault(Keyring.load(tmp_path / "unused.json")))
    store.put_secret("shop", "webhook_secret", "whsec")
    with pytest.raises(VaultError, match=ENV_KEYS):
        rotate_keys(store, tmp_path / "unused.json")
    monkeypatch.setenv(ENV_KEYS, env(new, old))  # the operator puts the new key first
    store.vault = Vault(Keyring.load(tmp_path / "unused.json"))
    assert reencrypt(store) == {"key_id": "new", "keys": 2, "secrets": 1}
    assert Vault(Keyring([new])).decrypt(_ciphertexts(store)[("shop", "webhook_secret")]) == "whsec"
    with pytest.raises(VaultError, match=ENV_KEYS):  # a process without the new key says what to do
        Vault(Keyring([old])).decrypt(_ciphertexts(store)[("shop", "webhook_secret")])
    store.db.close()


def test_master_key_repr_hides_material():
    key = new_key("k1")
    assert base64.b64encode(key.material).decode() not in repr(key) and key.material.hex() not in repr(key)


def test_messages_name_the_key_file_by_its_variable_not_its_path(key_file):
    label = "the key file (ML_CONNECTOR_HOME/keys.json)"
    ring = Keyring.load(key_file, label=label)
    assert ring.rotated().label == label
    with pytest.raises(VaultError) as caught:
        Vault(ring).decrypt(Vault(Keyring([new_key("stranger")])).encrypt("x"))
    assert label in str(caught.value) and str(key_file.parent) not in str(caught.value)
    key_file.write_text('{"keys": [{"id": "k1", "key": "AA=="}]}')
    with pytest.raises(VaultError, match=r"is damaged \(key 'k1' is not base64 of exactly 32 bytes\)") as caught:
        ring.refresh(force=True)  # a running process meets the damaged file: one line too
    assert str(key_file.parent) not in str(caught.value)

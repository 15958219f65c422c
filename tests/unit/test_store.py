"""The connection store on SQLite and PostgreSQL: one code path, same answers."""
from __future__ import annotations

import pytest

from connections.config import Connection
from connections.store import ConnectionNotFound, ConnectionStore, Database
from connections.vault import Keyring, Vault, VaultError, new_key


def _conn(cid: str = "shop") -> Connection:
    return Connection(id=cid, store_system="woocommerce", store={"base_url": "https://s/"},
                      erp_system="acumatica", erp={"instance_url": "https://e"})


def test_connection_round_trip(store: ConnectionStore):
    store.save_connection(_conn())
    assert store.get_connection("shop").store["base_url"] == "https://s/"
    assert [c.id for c in store.list_connections()] == ["shop"]
    with pytest.raises(ConnectionNotFound, match="no connection named 'nope'"):
        store.get_connection("nope")


def test_secrets_are_ciphertext_at_rest(store: ConnectionStore):
    store.put_secret("shop", "store_credentials", {"consumer_secret": "cs_very_secret"})
    raw = store.db.query("SELECT ciphertext FROM secrets")[0][0]
    assert "cs_very_secret" not in raw
    assert store.get_secret_json("shop", "store_credentials") == {"consumer_secret": "cs_very_secret"}


def test_rotation_keeps_secrets_readable(store: ConnectionStore, keyring: Keyring):
    store.put_secret("shop", "webhook_secret", "whsec")
    rotated = Vault(Keyring([new_key("next"), *keyring.keys]))
    after = ConnectionStore(store.db, rotated)
    assert after.rotate_secrets() == 1
    only_new = ConnectionStore(store.db, Vault(Keyring([rotated.keyring.primary])))
    assert only_new.get_secret("shop", "webhook_secret") == "whsec"
    with pytest.raises(VaultError):
        ConnectionStore(store.db, Vault(Keyring([new_key("stranger")]))).get_secret("shop", "webhook_secret")


def test_ledger_posted_is_final(store: ConnectionStore):
    store.ledger_mark("shop", "invoice", "7", "posting", order_number="1007", count_attempt=True)
    store.ledger_mark("shop", "invoice", "7", "posted", erp_ref={"number": "INV1"}, totals={"total": "10"})
    store.ledger_mark("shop", "invoice", "7", "error", error="late failure")
    row = store.ledger_get("shop", "invoice", "7")
    assert (row.state, row.erp_ref, row.order_number, row.attempts) == ("posted", {"number": "INV1"}, "1007", 1)
    assert [r.store_id for r in store.ledger_rows("shop", state="posted")] == ["7"]


def test_ledger_unique_key(store: ConnectionStore):
    for _ in range(3):
        store.ledger_mark("shop", "credit_memo", "r1", "posted", erp_ref={"number": "CRM1"})
    assert len(store.ledger_rows("shop", kind="credit_memo")) == 1


def test_watermarks(store: ConnectionStore):
    assert store.get_watermark("shop", "orders") is None
    store.set_watermark("shop", "orders", "2026-01-01T00:00:00+00:00")
    store.set_watermark("shop", "orders", "2026-01-02T00:00:00+00:00")
    assert store.get_watermark("shop", "orders") == "2026-01-02T00:00:00+00:00"


def test_migrations_are_versioned_and_idempotent(db_url, keyring):
    db = Database(db_url)
    first = db.migrate()
    assert db.migrate() == first
    assert db.query("SELECT COUNT(*) FROM schema_version")[0][0] == first
    db.close()


def test_key_file_created_private(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_CONNECTOR_MASTER_KEYS", raising=False)
    ring = Keyring.load(tmp_path / "keys.json")
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    assert Keyring.load(tmp_path / "keys.json").primary == ring.primary

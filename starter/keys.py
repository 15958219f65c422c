"""``ml-connector keys rotate|retire``: a new master key without downtime.

Order matters. The key file is written first, with the new key in front and every old key
kept (payloads in Temporal history written under old keys must still decode); only then is
every stored secret and token re-encrypted under the new key, in one transaction. A worker or
receiver that loaded the old key file meanwhile keeps working: its vault and codec re-read the
key file when they meet a ciphertext or key id they do not know (connections/vault.py).
"""
from __future__ import annotations

from pathlib import Path

from connections.store import ConnectionStore
from connections.vault import ENV_HINT, Keyring, VaultError


def _file_keyring(store: ConnectionStore, key_file: Path) -> Keyring:
    """The store's keyring, which must be the one in ``key_file`` (never the environment)."""
    ring = store.vault.keyring
    if ring.path is None:
        raise VaultError(ENV_HINT + "; then run `ml-connector keys rotate` to re-encrypt")
    if Path(ring.path).resolve() != Path(key_file).resolve():
        raise VaultError(f"the store's keys come from another key file than {ring.label}: "
                         "set ML_CONNECTOR_KEY_FILE alike for both")
    ring.refresh(force=True)  # another rotation may have written the file since we read it
    return ring


def reencrypt(store: ConnectionStore) -> dict:
    """Every stored secret and token under the keyring's first key (for keys from
    ``ML_CONNECTOR_MASTER_KEYS``: after the operator put the new key first)."""
    ring = store.vault.keyring
    count = store.rotate_secrets()
    return {"key_id": ring.primary.id, "keys": len(ring.keys), "secrets": count}


def rotate_keys(store: ConnectionStore, key_file: Path) -> dict:
    """A new primary key in ``key_file`` (old keys kept), then every secret re-encrypted.
    Returns ``{"key_id", "keys", "secrets"}`` (never key material)."""
    ring = _file_keyring(store, key_file)
    ring.rotated().save()
    if not ring.refresh(force=True):
        raise VaultError(f"{ring.label} did not take the new key (is it writable?)")
    return reencrypt(store)


def retire_keys(store: ConnectionStore, key_file: Path, keep: int) -> dict:
    """Drop every key after the ``keep`` newest. Secrets are re-encrypted under the primary
    first, so none is stranded; payloads in Temporal history under a retired key can no longer
    be decoded (retire only keys older than the namespace's retention and the longest-lived
    open workflow). Returns ``{"key_id", "keys", "secrets", "retired": [ids]}``."""
    if keep < 1:
        raise VaultError("keep at least one key")
    ring = _file_keyring(store, key_file)
    result = reencrypt(store)
    retired = [k.id for k in ring.keys[keep:]]
    if retired:
        Keyring(ring.keys[:keep], ring.path, ring.label).save()
        ring.refresh(force=True)
    return {**result, "keys": len(ring.keys), "retired": retired}

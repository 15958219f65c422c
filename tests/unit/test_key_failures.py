"""Keys fail closed, run as a user runs the CLI: a malformed key, a lost or damaged key file
or an unreachable database stops the command with one line (no traceback, no server path,
no key material) and saves nothing; state files and folders are owner-only."""
from __future__ import annotations

import base64
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from connections.vault import ENV_KEYS, Keyring, VaultError, decode_key
from starter.stack import start_temporal_server

CLI = Path(sys.executable).with_name("ml-connector")
ADD = ["connections", "add", "shop", "--store-url", "https://shop.example/", "--store-key", "ck_1",
       "--erp-url", "https://erp.example", "--erp-client-id", "id@T", "--erp-username", "api",
       "--no-schedules"]  # no Temporal in these tests
SECRETS = {"ML_STORE_SECRET": "cs_topsecret", "ML_ERP_CLIENT_SECRET": "erp_topsecret",
           "ML_ERP_PASSWORD": "pw_topsecret"}
GOOD_KEY = base64.b64encode(b"k" * 32).decode()


def run(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in (ENV_KEYS, "ML_CONNECTOR_DB", "ML_CONNECTOR_KEY_FILE")}
    full.update({"ML_CONNECTOR_HOME": str(home), **SECRETS, **(env or {})})
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=full,
                          stdin=subprocess.DEVNULL, timeout=60)


def one_line_failure(out: subprocess.CompletedProcess, *, home: Path) -> str:
    """The failure as a user sees it: non-zero exit, one stderr line, no traceback, no path."""
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ml-connector: "), out.stderr
    assert str(home) not in out.stderr and str(home.resolve()) not in out.stderr
    return lines[0]


def saved_rows(home: Path) -> int:
    """Connections and secrets in the home's SQLite store (0 when it has none, or no tables)."""
    db = home / "connector.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in {"connections", "secrets"} & tables)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "state" / "home"  # not there yet: the CLI makes it


# -- malformed master keys ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    "k1:!!!!",  # not base64: decoded to 0 bytes before
    "k1:AA==",  # valid base64 of 1 byte
    f"k1:{base64.b64encode(b'x' * 31).decode()}",  # one byte short
    f"k1:{base64.b64encode(b'x' * 33).decode()}",
    f"k1:{GOOD_KEY[:-4]}",  # cut off
    f":{GOOD_KEY}",  # no id
    GOOD_KEY,  # no id at all
    f"k1:{GOOD_KEY},k1:{GOOD_KEY}",  # two keys, one id
    f"k2:{GOOD_KEY},k1:AA==",  # a bad older key is as bad as a bad first one
    "",
])
def test_a_malformed_master_key_stops_the_command_and_saves_nothing(home, value):
    out = run(home, *ADD, env={ENV_KEYS: value})
    line = one_line_failure(out, home=home)
    assert ENV_KEYS in line
    for part in value.split(","):  # the key material is never echoed
        material = part.partition(":")[2]
        assert len(material) < 4 or material not in line
    assert saved_rows(home) == 0 and not (home / "keys.json").exists()


def test_a_valid_master_key_from_the_environment_works(home):
    added = run(home, *ADD, env={ENV_KEYS: f"k1:{GOOD_KEY}"})
    assert added.returncode == 0, added.stderr
    assert saved_rows(home) == 4 and not (home / "keys.json").exists()
    shown = run(home, "connections", "show", "shop", env={ENV_KEYS: f"k1:{GOOD_KEY}"})
    assert shown.returncode == 0 and '"(set, encrypted)"' in shown.stdout


def test_a_valid_but_wrong_master_key_stops_before_it_encrypts_anything(home):
    assert run(home, *ADD, env={ENV_KEYS: f"k1:{GOOD_KEY}"}).returncode == 0
    other = base64.b64encode(b"o" * 32).decode()
    for args in (["connections", "list"], [*ADD[:2], "other", *ADD[3:]]):
        line = one_line_failure(run(home, *args, env={ENV_KEYS: f"k9:{other}"}), home=home)
        assert "cannot be decrypted with the configured keys" in line and ENV_KEYS in line
    assert saved_rows(home) == 4


def test_key_checks_name_no_material():
    with pytest.raises(VaultError, match="exactly 32 bytes") as caught:
        decode_key("k1", "c2hvcnQ=", "somewhere")
    assert "c2hvcnQ" not in str(caught.value)
    assert decode_key("k1", base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "x").material == b"\xfb" * 32


# -- the key file -----------------------------------------------------------------------------
def test_a_new_key_file_only_for_a_store_without_secrets_and_all_state_private(home):
    listed = run(home, "connections", "list")
    assert listed.returncode == 0, listed.stderr
    assert mode(home) == 0o700 and mode(home.parent) == 0o700
    assert mode(home / "keys.json") == 0o600 and mode(home / "connector.db") == 0o600
    assert run(home, *ADD).returncode == 0
    for made in home.iterdir():  # connector.db-wal and -shm too
        assert mode(made) == 0o600, made.name


def test_state_files_an_older_version_left_readable_are_tightened(home):
    assert run(home, *ADD).returncode == 0
    for name in ("keys.json", "connector.db"):
        (home / name).chmod(0o644)
    assert run(home, "connections", "list").returncode == 0
    assert mode(home / "keys.json") == 0o600 and mode(home / "connector.db") == 0o600


def test_a_missing_key_file_while_secrets_exist_is_an_error_never_a_new_key(home):
    assert run(home, *ADD).returncode == 0
    (home / "keys.json").unlink()
    for args in (["connections", "show", "shop"], ["status"], ["keys", "rotate"],
                 [*ADD[:2], "other", *ADD[3:]]):
        line = one_line_failure(run(home, *args), home=home)
        assert "the key file (ML_CONNECTOR_HOME/keys.json) is missing" in line
        assert "restore the key file from backup" in line and ENV_KEYS in line
        assert not (home / "keys.json").exists(), args
    assert saved_rows(home) == 4  # the first connection's row + 3 secrets, nothing more


def test_the_message_names_the_key_file_variable_when_it_is_set(home, tmp_path):
    key_file = tmp_path / "elsewhere" / "keys.json"
    assert run(home, *ADD, env={"ML_CONNECTOR_KEY_FILE": str(key_file)}).returncode == 0
    assert mode(key_file) == 0o600 and mode(key_file.parent) == 0o700
    key_file.unlink()
    out = run(home, "connections", "list", env={"ML_CONNECTOR_KEY_FILE": str(key_file)})
    assert "the key file (ML_CONNECTOR_KEY_FILE) is missing" in one_line_failure(out, home=home)
    assert str(key_file) not in out.stderr


@pytest.mark.parametrize("body,why", [
    ("{not json", "not JSON"),
    ("\xff\xfe", "not JSON"),
    ('{"keys": []}', "holds no key"),
    ('["k1"]', '"keys" list'),
    ('{"keys": [{"id": "k1"}]}', '"keys" list'),
    ('{"keys": [{"id": "k1", "key": "!!!!"}]}', "not base64 of exactly 32 bytes"),
    ('{"keys": [{"id": "k1", "key": "AA=="}]}', "not base64 of exactly 32 bytes"),
])
def test_a_damaged_key_file_is_one_line_and_left_as_it_is(home, body, why):
    assert run(home, *ADD).returncode == 0
    (home / "keys.json").write_text(body, encoding="latin-1")
    for args in (["connections", "list"], [*ADD[:2], "other", *ADD[3:]]):
        line = one_line_failure(run(home, *args), home=home)
        assert "the key file (ML_CONNECTOR_HOME/keys.json) is damaged" in line and why in line
        assert "restore it from backup" in line
    assert (home / "keys.json").read_text(encoding="latin-1") == body
    assert saved_rows(home) == 4


def test_an_unreadable_key_file_is_one_line(home):
    assert run(home, "connections", "list").returncode == 0
    (home / "keys.json").unlink()
    (home / "keys.json").mkdir()  # readable by no one, root included
    line = one_line_failure(run(home, "connections", "list"), home=home)
    assert "the key file (ML_CONNECTOR_HOME/keys.json) cannot be read" in line


def test_the_library_refuses_to_replace_a_missing_key_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEYS, raising=False)
    with pytest.raises(VaultError, match="is missing but the store holds encrypted secrets"):
        Keyring.load(tmp_path / "keys.json", may_create=lambda: False)
    assert not (tmp_path / "keys.json").exists()


# -- the database -----------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_postgresql_is_one_line_without_the_password(home):
    url = f"postgresql://ml:pw-not-to-print@127.0.0.1:{_closed_port()}/ml_connector"
    for args in (["connections", "list"], ADD):
        line = one_line_failure(run(home, *args, env={"ML_CONNECTOR_DB": url}), home=home)
        assert "the connection store's database (ML_CONNECTOR_DB" in line
        assert "cannot be opened" in line and "refused" in line.lower()
        assert "pw-not-to-print" not in line
    assert not (home / "keys.json").exists()


def test_an_unopenable_sqlite_file_is_one_line(home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run(home, "connections", "list", env={"ML_CONNECTOR_DB": f"sqlite:///{blocker}/store.db"})
    assert "ML_CONNECTOR_DB" in one_line_failure(out, home=home)
    assert str(blocker) not in out.stderr


# -- the dev stack's Temporal state ---------------------------------------------------------------
async def test_the_dev_servers_database_and_folder_are_private(tmp_path):
    home = tmp_path / "home" / "dev"
    server = await start_temporal_server(home, port=_closed_port(), ui_port=_closed_port())
    try:
        assert mode(home) == 0o700 and mode(home.parent) == 0o700
        made = sorted(p.name for p in home.iterdir())
        assert "temporal.db" in made
        for name in made:
            assert mode(home / name) == 0o600, name
    finally:
        server.terminate()
        server.wait(10)

"""The CLI as a user runs it: clear one-line errors, exit code 2, secrets never printed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ML_CONNECTOR_HOME": str(tmp_path), **(env or {})}
    full_env.pop("ML_CONNECTOR_MASTER_KEYS", None)
    return subprocess.run([sys.executable, "-m", "starter.cli", *args], capture_output=True,
                          text=True, env=full_env, stdin=subprocess.DEVNULL, timeout=60)


ADD = ["connections", "add", "shop", "--store-url", "https://shop.example/", "--store-key", "ck_1",
       "--erp-url", "https://erp.example", "--erp-client-id", "id@T", "--erp-username", "api",
       "--tax", "US-CA-TAX-1=CATAX", "--no-schedules"]  # no Temporal in these tests
SECRETS = {"ML_STORE_SECRET": "cs_topsecret", "ML_ERP_CLIENT_SECRET": "erp_topsecret",
           "ML_ERP_PASSWORD": "pw_topsecret"}


def test_add_list_show_never_prints_secrets(tmp_path):
    added = run(tmp_path, *ADD, env=SECRETS)
    assert added.returncode == 0, added.stderr
    listed = run(tmp_path, "connections", "list")
    shown = run(tmp_path, "connections", "show", "shop")
    assert "shop" in listed.stdout and '"CATAX"' in shown.stdout
    for out in (added, listed, shown):
        assert not any(s in out.stdout + out.stderr for s in SECRETS.values())
    db = (tmp_path / "connector.db").read_bytes()
    assert not any(s.encode() in db for s in SECRETS.values())


@pytest.mark.parametrize("args,message", [
    (["connections", "show", "nope"], "no connection named 'nope'"),
    (ADD[:-3] + ["--tax", "oops"], "--tax must look like KEY=VALUE"),
    (["connections", "add", "Bad Name!"] + ADD[3:], "id: String should match pattern"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    out = run(tmp_path, *args, env=SECRETS)
    assert out.returncode == 2 and message in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_secret_without_a_terminal(tmp_path):
    out = run(tmp_path, *ADD, env={"ML_STORE_SECRET": "x"})
    assert out.returncode == 2 and "ML_ERP_CLIENT_SECRET" in out.stderr


def test_map_gl_rule_payment_and_status(tmp_path):
    assert run(tmp_path, *ADD, env=SECRETS).returncode == 0
    mapped = run(tmp_path, "connections", "map", "shop", "--gl-rule",
                 "sku=SHIRT-*,account=4010,cost_center=WEB", "--payment", "stripe=CARD")
    assert mapped.returncode == 0, mapped.stderr
    shown = run(tmp_path, "connections", "show", "shop").stdout
    assert '"gl_account": "4010"' in shown and '"stripe": "CARD"' in shown
    status = run(tmp_path, "status")
    # Never "ok" by default: nothing checked yet, and no schedules or no Temporal: attention.
    assert status.returncode == 1 and "health: never checked" in status.stdout, status.stdout
    assert "never polled" in status.stdout and "Traceback" not in status.stderr
    bad = run(tmp_path, "connections", "map", "shop", "--gl-rule", "sku=X")
    assert bad.returncode == 2 and "names no account" in bad.stderr and "Traceback" not in bad.stderr


def test_add_other_pairs_and_name_the_missing_setting(tmp_path):
    exact = run(tmp_path, "connections", "add", "eu", "--store", "bigcommerce", "--store-hash", "abc123",
                "--erp", "exact_online", "--erp-client-id", "app-1", "--erp-setting", "region=BE", "--no-schedules",
                env={"ML_STORE_TOKEN": "bc_tok_secret", "ML_ERP_CLIENT_SECRET": "ex_secret"})
    assert exact.returncode == 0, exact.stderr
    assert "connections authorize eu" in exact.stdout
    shown = run(tmp_path, "connections", "show", "eu").stdout
    assert '"region": "BE"' in shown and '"document_prefix": "BC-"' in shown
    assert "bc_tok_secret" not in shown and "ex_secret" not in shown
    oracle = run(tmp_path, "connections", "add", "o", "--erp", "oracle_fusion", "--store-url",
                 "https://shop.example/", "--store-key", "ck_1", "--erp-url", "https://x.oraclecloud.com",
                 "--erp-username", "int", env={"ML_STORE_SECRET": "s", "ML_ERP_PASSWORD": "p"})
    assert oracle.returncode == 2 and "business_unit" in oracle.stderr and "Traceback" not in oracle.stderr


def test_keys_rotate_keeps_every_secret_readable(tmp_path):
    import json as _json
    import sqlite3

    def ciphertexts() -> set:
        with sqlite3.connect(tmp_path / "connector.db") as db:
            return {row[0] for row in db.execute("SELECT ciphertext FROM secrets")}

    assert run(tmp_path, *ADD, env=SECRETS).returncode == 0
    before = ciphertexts()
    rotated = run(tmp_path, "keys", "rotate")
    assert rotated.returncode == 0 and "re-encrypted 3 secrets" in rotated.stdout, rotated.stderr
    assert ciphertexts().isdisjoint(before)
    assert len(_json.loads((tmp_path / "keys.json").read_text())["keys"]) == 2
    assert run(tmp_path, "connections", "show", "shop").returncode == 0


def test_guest_customer_and_receipts_are_the_merchants_choice(tmp_path):
    assert run(tmp_path, *ADD, "--receipts", "off", env=SECRETS).returncode == 0
    shown = run(tmp_path, "connections", "show", "shop").stdout
    assert '"post_receipts": false' in shown and '"guest_customer": ""' in shown
    mapped = run(tmp_path, "connections", "map", "shop", "--guest-customer", "WEBGUEST",
                 "--receipts", "on")
    assert mapped.returncode == 0, mapped.stderr
    shown = run(tmp_path, "connections", "show", "shop").stdout
    assert '"post_receipts": true' in shown and '"guest_customer": "WEBGUEST"' in shown
    bad = run(tmp_path, "connections", "map", "shop", "--receipts", "maybe")
    assert bad.returncode == 2 and "--receipts" in bad.stderr and "Traceback" not in bad.stderr


def test_set_changes_settings_without_secrets_and_add_warns_of_a_twin(tmp_path):
    assert run(tmp_path, *ADD, env=SECRETS).returncode == 0
    twin = run(tmp_path, "connections", "add", "shop2", *ADD[3:], env=SECRETS)
    assert twin.returncode == 0, twin.stderr
    assert "connection shop already reads this store" in twin.stderr
    assert "connections set shop2 always_look_up=true" in twin.stderr
    changed = run(tmp_path, "connections", "set", "shop", "--default-payment", "CARD",
                  "erp.release_documents=false", "rounding_tolerance=0.10")  # no secrets given
    assert changed.returncode == 0, changed.stderr
    shown = run(tmp_path, "connections", "show", "shop").stdout
    assert '"default_payment_method": "CARD"' in shown and '"release_documents": false' in shown
    assert '"rounding_tolerance": "0.10"' in shown
    bad = run(tmp_path, "connections", "set", "shop", "colour=blue")
    assert bad.returncode == 2 and "unknown setting 'colour'" in bad.stderr
    assert "Traceback" not in bad.stderr

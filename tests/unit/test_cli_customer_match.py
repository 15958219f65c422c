"""The customer-matching policy as a merchant sets it: ``connections add``/``map``
``--customer-match`` and ``connections set``, run as the command (a subprocess)."""
from __future__ import annotations

from tests.unit.test_cli import ADD, SECRETS, run


def test_customer_match_defaults_to_own_and_is_the_merchants_choice(tmp_path):
    assert run(tmp_path, *ADD, env=SECRETS).returncode == 0
    assert '"customer_match": "own"' in run(tmp_path, "connections", "show", "shop").stdout
    mapped = run(tmp_path, "connections", "map", "shop", "--customer-match", "email")
    assert mapped.returncode == 0, mapped.stderr
    assert '"customer_match": "email"' in run(tmp_path, "connections", "show", "shop").stdout
    again = run(tmp_path, "connections", "set", "shop", "customer_match=own")
    assert again.returncode == 0, again.stderr
    assert '"customer_match": "own"' in run(tmp_path, "connections", "show", "shop").stdout
    for bad in (["connections", "map", "shop", "--customer-match", "name"],
                ["connections", "set", "shop", "customer_match=name"]):
        refused = run(tmp_path, *bad)
        assert refused.returncode == 2 and "customer" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr

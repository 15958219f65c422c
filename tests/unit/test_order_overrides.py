"""One-order mapping overrides on a real connection store (both engines): applied to that
order's documents only, refused where they would not be safe, never touching an amount; and
`connections map NAME --order` as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from connections.config import Connection
from connections.ledger import LedgerKind
from connections.order_overrides import (OverrideRefused, add_override, mappings_for,
                                         overrides)
from connectors.documents import Mappings, build_invoice
from tests.unit.test_documents import order

SHOP = Connection(id="shop", store_system="woocommerce", store={"base_url": "https://s/"},
                  erp_system="acumatica", erp={"instance_url": "https://e/"},
                  mappings=Mappings(tax_codes={"US-CA-TAX-1": "CATAX"},
                                    sku_to_item={"SHIRT": "SHIRT01"}))


@pytest.fixture
def shop(store):
    store.save_connection(SHOP)
    for number in ("727", "728"):
        store.ledger_mark("shop", LedgerKind.ORDER, number, "parked", order_number=f"#{number}",
                          error="Resolution: map SKU HOODIE-M to an Acumatica InventoryID")
    return store


def test_an_override_maps_that_orders_documents_only_and_never_an_amount(shop):
    add_override(shop, "shop", "727", "sku", "HOODIE-M", "HOOD01", actor="alice")
    add_override(shop, "shop", "#727", "payment", "stripe", "CARD")  # by order number too
    conn = shop.get_connection("shop")
    mine, other = mappings_for(shop, conn, "727"), mappings_for(shop, conn, "728")
    assert mine.sku_to_item == {"SHIRT": "SHIRT01", "HOODIE-M": "HOOD01"}
    assert mine.payment_methods == {"stripe": "CARD"} and mine.tax_codes == conn.mappings.tax_codes
    assert other is conn.mappings  # no override: the connection's own mappings
    assert conn.mappings.sku_to_item == {"SHIRT": "SHIRT01"}  # the connection is unchanged
    with_override, without = build_invoice(order(), "C1", mine), build_invoice(order(), "C1", other)
    assert with_override.lines[0].item_id == "HOOD01" and without.lines[0].item_id == "HOODIE-M"
    assert [(ln.quantity, ln.amount, ln.discount) for ln in with_override.lines] == \
        [(ln.quantity, ln.amount, ln.discount) for ln in without.lines]
    assert with_override.total == without.total
    # mapped again: the newer value replaces the older one
    add_override(shop, "shop", "727", "sku", "HOODIE-M", "HOOD02")
    assert overrides(shop, "shop", "727")["sku"] == {"HOODIE-M": "HOOD02"}


@pytest.mark.parametrize("order_ref,kind,key,value,message", [
    ("727", "gl", "X", "account=4000", "a GL rule applies to the whole connection"),
    ("727", "sku", "HOODIE-M", "", "both the store's value and the ERP's value"),
    ("999", "sku", "HOODIE-M", "H", "has no order '999'"),
    ("730", "sku", "HOODIE-M", "H", "is posted"),
    ("731", "sku", "HOODIE-M", "H", "already has its invoice"),
])
def test_an_override_is_refused_where_it_is_not_safe(shop, order_ref, kind, key, value, message):
    shop.ledger_mark("shop", LedgerKind.ORDER, "730", "posted", order_number="730")
    shop.ledger_mark("shop", LedgerKind.ORDER, "731", "parked", order_number="731")
    shop.ledger_mark("shop", LedgerKind.INVOICE, "731", "posted", order_number="731",
                     erp_ref={"system": "acumatica", "kind": "invoice", "number": "INV1"})
    with pytest.raises(OverrideRefused, match=message):
        add_override(shop, "shop", order_ref, kind, key, value)
    assert not any(overrides(shop, "shop", order_ref.lstrip("#")).values())


def test_a_payment_method_may_still_be_mapped_after_the_invoice(shop):
    shop.ledger_mark("shop", LedgerKind.INVOICE, "727", "posted", order_number="#727",
                     erp_ref={"system": "acumatica", "kind": "invoice", "number": "INV1"})
    add_override(shop, "shop", "727", "payment", "stripe", "CARD")
    assert overrides(shop, "shop", "727")["payment"] == {"stripe": "CARD"}


def cli(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ML_CONNECTOR_HOME": str(home), "TEMPORAL_ADDRESS": "127.0.0.1:9"}
    env.pop("ML_CONNECTOR_MASTER_KEYS", None)
    env.pop("ML_CONNECTOR_DB", None)
    return subprocess.run([sys.executable, "-m", "starter.cli", *args], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)


def test_connections_map_order_from_the_command_line(tmp_path):
    from connections.config import Environment
    from connections.store import open_store

    store = open_store(Environment(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'connector.db'}"))
    store.save_connection(SHOP)
    store.ledger_mark("shop", LedgerKind.ORDER, "727", "parked", order_number="727")
    store.ledger_mark("shop", LedgerKind.ORDER, "728", "posted", order_number="728")
    # Bad input: one line each, nothing saved.
    for args, message in (
            (["--order", "727"], "--order needs at least one --sku, --tax or --payment"),
            (["--order", "727", "--gl-rule", "sku=X,account=1"], "other settings apply"),
            (["--order", "728", "--sku", "A=B"], "order 728 is posted"),
            (["--order", "727", "--sku", "oops"], "--sku must look like KEY=VALUE")):
        out = cli(tmp_path, "connections", "map", "shop", *args)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert not any(overrides(store, "shop", "727").values())
    # Saved, then the replay needs Temporal (unreachable here): said in one line.
    out = cli(tmp_path, "connections", "map", "shop", "--order", "727", "--sku", "HOODIE-M=HOOD01")
    assert "mapped SKU HOODIE-M → HOOD01 for order 727 only" in out.stdout, out.stderr
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert overrides(store, "shop", "727")["sku"] == {"HOODIE-M": "HOOD01"}
    assert store.get_connection("shop").mappings.sku_to_item == {"SHIRT": "SHIRT01"}

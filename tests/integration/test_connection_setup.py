"""Setting a connection up as a merchant's IT does, with `.venv/bin/ml-connector` in a
subprocess against the stack's sandboxes and Temporal: `connections add` makes it run (store
webhooks + schedules), warns about a second connection to the same books, `connections check`
says before going live what would park, `connections set` changes a setting without the
secrets, and the order command `ml-connector dev` prints works as printed."""
from __future__ import annotations

import asyncio

from temporalio.service import RPCError

from connections.ledger import LedgerKind, OrderState
from starter.dev import order_command
from starter.sandboxes.acumatica import CLIENT_ID
from tests.integration.conftest import eventually
from tests.integration.helpers import documents, place_order, products, wait_order_state
from tests.integration.test_cli_commands import cli, cli_for, uid  # noqa: F401  (fixtures)

SECRETS = {"ML_STORE_SECRET": "cs_sandbox", "ML_ERP_CLIENT_SECRET": "secret",
           "ML_ERP_PASSWORD": "admin"}


def add_args(stack, name: str) -> list[str]:
    ca = str(stack.ca.ca_file)
    return ["connections", "add", name, "--store-url", stack.shop.url + "/", "--store-key",
            "ck_sandbox", "--erp-url", stack.erp_server.url, "--erp-version", "24.200.001",
            "--erp-client-id", CLIENT_ID, "--erp-username", "admin", "--ca-bundle", ca,
            "--tax", "US-CA-TAX-1=CATAX", "--tax", "US-CA-REDUCED-1=CAREDUCED",
            "--default-payment", "CARD", "--erp-setting", "cash_account=10200"]


async def schedule_ids(stack, connection_id: str) -> set[str]:
    return {s.id async for s in await stack.client.list_schedules()
            if s.id.endswith(f"/{connection_id}")}


async def delete_schedules(stack, connection_id: str) -> None:
    for kind in ("poll", "catalog", "catalog-reconcile", "shipments", "customers", "webhooks"):
        try:
            await stack.client.get_schedule_handle(f"{kind}/{connection_id}").delete()
        except RPCError:
            pass


async def test_add_registers_the_webhooks_and_applies_the_schedules(stack, cli):
    name = uid("add")
    try:
        added = await cli(*add_args(stack, name), "--receiver-url", stack.receiver.url,
                          extra_env=SECRETS)
        assert added.returncode == 0, added.stderr
        assert "webhooks: created" in added.stdout and f"poll/{name} created" in added.stdout
        conn = stack.store.get_connection(name)
        hooks = await stack.runtime.storefront(conn).list_webhooks()
        ours = [h for h in hooks if h.delivery_url == conn.delivery_url]
        assert ours and all(h.status == "active" for h in ours)
        for kind in ("poll", "webhooks", "catalog", "shipments"):
            desc = await stack.client.get_schedule_handle(f"{kind}/{name}").describe()
            assert not desc.schedule.state.paused
        order = await place_order(stack)  # the webhook alone hands it over: it posts
        await wait_order_state(stack, name, order["id"])

        # The same store and ERP company again: warned, naming the first connection.
        twin = uid("twin")
        again = await cli(*add_args(stack, twin), "--no-hooks", "--no-schedules",
                          extra_env=SECRETS)
        assert again.returncode == 0, again.stderr
        assert f"connection {name} already reads this store" in again.stderr
        assert f"connections set {twin} always_look_up=true" in again.stderr
        assert await schedule_ids(stack, twin) == set()
        looked = await cli("connections", "set", twin, "always_look_up=true", "--no-schedules")
        assert looked.returncode == 0, looked.stderr
        assert stack.store.get_connection(twin).always_look_up is True
    finally:
        await delete_schedules(stack, name)


async def test_check_reports_what_would_park_without_writing_and_set_fixes_it(stack, cli):
    mappings = stack.default_mappings()
    sku = (await products(stack))[0]["sku"]
    mappings.sku_to_item[sku] = "NO-SUCH-ITEM"
    mappings.default_payment_method = ""
    conn = await stack.add_connection(uid("chk"), register_webhooks=False, mappings=mappings)
    order = await place_order(stack)

    checked = await cli("connections", "check", conn.id, "--orders", "5")
    assert checked.returncode == 1, checked.stderr + checked.stdout
    assert "Traceback" not in checked.stderr
    assert f"order {order['number']}: WOULD PARK" in checked.stdout, checked.stdout
    assert f"SKU {sku}" in checked.stdout and "NO-SUCH-ITEM" in checked.stdout
    assert "has no ERP payment method" in checked.stdout
    assert await documents(stack, f"WC-{order['id']}") == []  # nothing written to the ERP

    before = stack.store.get_secret(conn.id, "erp_credentials")
    set_ = await cli("connections", "set", conn.id, "--default-payment", "CARD",
                     "erp.release_documents=false", "poll_minutes=7", "--no-schedules")
    assert set_.returncode == 0, set_.stderr
    saved = stack.store.get_connection(conn.id)
    assert saved.mappings.default_payment_method == "CARD" and saved.poll_minutes == 7
    assert saved.erp["release_documents"] is False  # typed as the connector reads it
    assert stack.store.get_secret(conn.id, "erp_credentials") == before
    mapped = await cli("connections", "map", conn.id, "--sku", f"{sku}={sku}")
    assert mapped.returncode == 0, mapped.stderr

    fixed = await cli("connections", "check", conn.id, "--orders", "5")
    assert fixed.returncode == 0, fixed.stdout
    assert f"order {order['number']}: post" in fixed.stdout
    assert f"invoice WC-{order['id']}" in fixed.stdout and "→ CARD" in fixed.stdout

    for bad, message in ((["nope=1"], "unknown setting 'nope'"),
                         (["sku_to_item=x"], "use `ml-connector connections map"),
                         (["poll_minutes=0"], "poll_minutes"),
                         (["erp.endpoint_version"], "KEY=VALUE")):
        refused = await cli("connections", "set", conn.id, *bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


async def test_the_order_command_dev_prints_places_orders_that_post(stack):
    """`ml-connector dev` prints this line for its own store; run here as a shell runs it."""
    conn = await stack.add_connection(uid("dev"))  # its webhooks registered, as dev's are
    command = order_command(stack.shop.url, str(stack.ca.ca_file), orders=2)
    proc = await asyncio.create_subprocess_shell(command, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE,
                                                 stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert "2 orders" in out.decode()

    async def posted():
        rows = stack.store.ledger_rows(conn.id, kind=LedgerKind.ORDER, state=OrderState.POSTED)
        return len(rows) >= 2

    await eventually(posted, timeout=90)


async def test_check_reads_each_erp_without_writing(stack_factory, cli_for):
    """Oracle Fusion's account combinations and receipt methods, Exact's items and GL
    accounts: looked up, nothing written; a GL rule removed is reported per line."""
    for erp in ("oracle_fusion", "exact_online"):
        stack = await stack_factory(erp_system=erp)
        conn = await stack.add_connection(uid("erp"), register_webhooks=False)
        order = await place_order(stack)
        run = cli_for(stack)
        good = await run("connections", "check", conn.id, "--orders", "3")
        assert good.returncode == 0, good.stdout + good.stderr
        assert f"order {order['number']}: post" in good.stdout
        conn.mappings.line_rules = []
        stack.store.save_connection(conn)
        bad = await run("connections", "check", conn.id, "--orders", "3")
        assert bad.returncode == 1 and "matches no GL account rule" in bad.stdout, bad.stdout
        assert await stack.erp_documents() == []

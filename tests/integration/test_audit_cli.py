"""`ml-connector audit` as an operator runs it (a subprocess): one order number seen by two
connections of the same store, one booking it and one parking it on an unknown item."""
from __future__ import annotations

import json
from datetime import datetime

from starter.audit import TimelineEntry, render
from tests.integration.helpers import place_order, products, wait_order_state
from tests.integration.test_cli_commands import cli, cli_for, uid  # noqa: F401  (fixtures)


async def test_audit_is_in_time_order_labelled_by_connection_and_retries_only_what_is_retried(
        stack, cli):
    books = await stack.add_connection(uid("books"))
    parks_mappings = stack.default_mappings()
    sku = (await products(stack))[0]["sku"]
    parks_mappings.sku_to_item[sku] = "NO-SUCH-ITEM"  # the ERP answers 422: the order parks
    parks_mappings.document_prefix = "WX-"  # its own documents in the shared ERP
    parks = await stack.add_connection(uid("parks"), mappings=parks_mappings)
    order = await place_order(stack)
    await wait_order_state(stack, books.id, order["id"])
    await wait_order_state(stack, parks.id, order["id"], "parked")

    done = await cli("audit", str(order["number"]))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()[1:]
    stamps = [line.split()[0] + line.split()[1] for line in lines if line.startswith("  20")]
    assert stamps == sorted(stamps), done.stdout  # time order
    mine = {cid: [ln for ln in lines if ln.split()[2:3] == [cid]] for cid in (books.id, parks.id)}
    assert mine[books.id] and mine[parks.id], done.stdout  # every line names its connection
    parked = "\n".join(mine[parks.id])
    assert " refused " in parked and "NO-SUCH-ITEM" in parked
    assert " retrying " not in parked, parked  # a 422 is refused and parks; nothing retries it
    assert " parked " in parked
    refused = next(i for i, ln in enumerate(mine[parks.id]) if " refused " in ln)
    ledger = next(i for i, ln in enumerate(mine[parks.id]) if " ledger " in ln and " invoice " in ln)
    assert refused < ledger, parked  # the step before the ledger row it wrote
    continued = [ln for ln in lines if ln.startswith(" " * 20)]
    assert continued and all("Inventory ID" in ln for ln in continued)  # the 422's second line

    as_json = await cli("audit", str(order["number"]), "--json")
    assert {e["connection"] for e in json.loads(as_json.stdout)} == {books.id, parks.id}


def test_a_multi_line_message_continues_indented_under_its_entry():
    at = datetime.fromisoformat("2026-11-02T10:00:00+00:00")
    text = render("7", [
        TimelineEntry(at, "parked", "post_invoice: Rejected: Inserting 'Invoice' failed.\n"
                      "  InventoryID: 'X' cannot be found in the system.\n\nCheck the item.",
                      workflow_id="order/shop/7"),
        TimelineEntry(at, "state", "state parked", workflow_id="order/shop/7")])
    first, second, third, fourth = text.splitlines()[1:]
    column = first.index("post_invoice")
    assert second.index("InventoryID") == column and third.index("Check the item.") == column
    assert fourth.split()[2] == "state"

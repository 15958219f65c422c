"""Customer masters aligned through the real workflows (a real Temporal server, the sandboxes
over HTTP/TLS, the receiver): WooCommerce ↔ Exact Online both ways, WooCommerce → Oracle Fusion;
and the loop stops: ml-connector's own writes come back as echoes and are not sent on."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from activities.messages import ConnectionInput, CustomerSyncReport
from tests.integration.conftest import eventually

API = "wp-json/wc/v3/"
ANN = {"email": "ann.buyer@example.com", "first_name": "Ann", "last_name": "Buyer",
       "billing": {"first_name": "Ann", "last_name": "Buyer", "email": "ann.buyer@example.com",
                   "phone": "+31 20 555 0101", "address_1": "Damrak 1", "city": "Amsterdam",
                   "postcode": "1012 LG", "country": "NL"}}


async def customer_sync_stack(stack_factory, erp_system: str, *, customer_hooks: bool = True):
    """A connection with customer sync on (and, unless told otherwise, the store's customer.*
    hooks registered), and one registered store customer from before it was switched on."""
    stack = await stack_factory(store_system="woocommerce", erp_system=erp_system)
    # Hooks are registered only once the sync is on: the receiver keeps a connection it has
    # read (at the first hook's ping) for 30 s, so it would not see the switch sooner.
    conn = await stack.add_connection(f"cs-{uuid.uuid4().hex[:8]}", register_webhooks=False)
    async with stack.store_client() as shop:
        created = await shop.post(API + "customers", json=ANN)
        assert created.status_code == 201, created.text
    conn.customer_sync = True
    stack.store.save_connection(conn)
    if customer_hooks:
        await stack.register_webhooks(conn)
    return stack, conn, str(created.json()["id"])


async def sync(stack, conn) -> CustomerSyncReport:
    return await stack.client.execute_workflow(
        "CustomerSync", ConnectionInput(connection_id=conn.id), result_type=CustomerSyncReport,
        id=f"customer-sync/{conn.id}/{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue)


async def converged(stack, conn) -> None:
    """Two more passes write nothing on either side and recognise the last writes as echoes."""
    for _ in range(2):
        report = await sync(stack, conn)
        assert (report.to_erp, report.to_store) == (0, 0), report
        assert report.echoes >= 1, report


async def exact_account(stack) -> dict:
    [account] = await stack.erp_sandbox.customers(stack.http, stack.erp_server.url)
    return account


async def exact_puts(stack) -> int:
    routes = await stack.erp_sandbox.requests_by_route(stack.http, stack.erp_server.url)
    return routes.get("PUT crm/Accounts", 0)


async def oracle_writes(stack) -> dict[str, int]:
    routes = await stack.erp_sandbox.requests_by_route(stack.http, stack.erp_server.url)
    return {route: n for route, n in routes.items() if not route.startswith("GET ")}


async def store_customer(stack, customer_id: str) -> dict:
    async with stack.store_client() as shop:
        resp = await shop.get(f"{API}customers/{customer_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()


async def webhook_run(stack, conn, customer_id: str, after: datetime) -> CustomerSyncReport:
    """The StoreCustomerChanged run the store's latest customer webhook started, once done."""
    await stack.shop_sandbox.wait_deliveries(stack.http, stack.shop.url)
    handle = stack.client.get_workflow_handle(f"customer/{conn.id}/{customer_id}",
                                              result_type=CustomerSyncReport)

    async def started():
        description = await handle.describe()
        return description if description.start_time >= after else None

    await eventually(started)
    return await handle.result()


async def test_woocommerce_and_exact_stay_aligned_both_ways_without_echo(stack_factory):
    stack, conn, cid = await customer_sync_stack(stack_factory, "exact_online")
    external_id = f"{conn.mappings.document_prefix}C{cid}"

    # the first pass creates the account of the customer registered before the sync was on
    first = await sync(stack, conn)
    assert (first.to_erp, first.to_store) == (1, 0), first
    account = await exact_account(stack)
    assert (account["Name"], account["City"], account["Email"]) == (
        "Ann Buyer", "Amsterdam", "ann.buyer@example.com")
    assert external_id in account["Remarks"]
    await converged(stack, conn)

    # (a) a store change: the customer.updated webhook carries it to the Exact account
    puts = await exact_puts(stack)
    before = datetime.now(timezone.utc)
    async with stack.store_client() as shop:
        moved = await shop.put(f"{API}customers/{cid}", json={"billing": {
            "address_1": "Prinsengracht 263", "city": "Haarlem", "postcode": "2011 AA"}})
        assert moved.status_code == 200, moved.text
    report = await webhook_run(stack, conn, cid, before)
    assert report.to_erp == 1, report
    account = await exact_account(stack)
    assert (account["AddressLine1"], account["City"], account["Postcode"]) == (
        "Prinsengracht 263", "Haarlem", "2011 AA")
    assert await exact_puts(stack) == puts + 1
    await converged(stack, conn)
    assert await exact_puts(stack) == puts + 1

    # (b) an Exact user's change reaches the store on the next pass
    await stack.erp_sandbox.update_account(stack.http, stack.erp_server.url, account["ID"], {
        "AddressLine1": "Oudegracht 5", "City": "Utrecht", "Phone": "+31 30 555 0199"})
    before = datetime.now(timezone.utc)
    pulled = await sync(stack, conn)
    assert (pulled.to_erp, pulled.to_store) == (0, 1), pulled
    shopper = await store_customer(stack, cid)
    assert (shopper["billing"]["address_1"], shopper["billing"]["city"],
            shopper["billing"]["phone"]) == ("Oudegracht 5", "Utrecht", "+31 30 555 0199")
    assert (shopper["first_name"], shopper["last_name"], shopper["billing"]["postcode"]) == (
        "Ann", "Buyer", "2011 AA")  # what Exact does not keep stays as the store has it

    # (c) the store's webhook caused by that write is an echo: no write back to Exact
    echo = await webhook_run(stack, conn, cid, before)
    assert (echo.to_erp, echo.echoes) == (0, 1), echo
    await converged(stack, conn)
    assert await exact_puts(stack) == puts + 1


async def test_store_change_reaches_the_oracle_party_on_the_scheduled_pass(stack_factory):
    stack, conn, cid = await customer_sync_stack(stack_factory, "oracle_fusion",
                                                 customer_hooks=False)
    first = await sync(stack, conn)
    assert first.to_erp == 1, first
    await converged(stack, conn)
    async with stack.store_client() as shop:
        moved = await shop.put(f"{API}customers/{cid}", json={
            "email": "ann.smith@example.com", "last_name": "Smith",
            "billing": {"address_1": "9 New Rd", "city": "Berkeley", "postcode": "94704",
                        "country": "US", "state": "CA"}})
        assert moved.status_code == 200, moved.text
    changed = await sync(stack, conn)
    assert changed.to_erp == 1, changed
    [party] = await stack.erp_sandbox.parties(stack.http, stack.erp_server.url)
    address = party["PrimaryAddress"][0]
    assert (party["OrganizationName"], party["EmailAddress"]) == ("Ann Smith",
                                                                  "ann.smith@example.com")
    assert (address["Address1"], address["City"], address["PostalCode"]) == (
        "9 New Rd", "Berkeley", "94704")
    assert party["SourceSystemReferenceValue"] == f"{conn.mappings.document_prefix}C{cid}"
    writes = await oracle_writes(stack)
    assert writes.get("PATCH accounts", 0) >= 1
    await converged(stack, conn)
    assert await oracle_writes(stack) == writes  # the passes after it write nothing
    assert len(await stack.erp_sandbox.customers(stack.http, stack.erp_server.url)) == 1

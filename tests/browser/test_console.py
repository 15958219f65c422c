"""An operator's day in the console, in a real browser (Debian's chromium through
Playwright) against real processes: sign in; see a parked order (an unmapped SKU) with its
resolution and amount; reconcile and download the CSV that lists it; fix its mapping; watch
it post; the error history says who resolved it. Refused: a wrong password, a forged form
post, a signed-out visitor. Every page is photographed into docs/screenshots/ at 1280 px,
and the order list on a phone."""
from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

from playwright.async_api import Page

from starter.schedules import apply_schedules
from tests.browser.conftest import OPERATOR, PASSWORD
from tests.integration.conftest import eventually
from tests.integration.helpers import documents, place_order, products

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
BUYER_EMAIL = "ann.buyer@example.com"  # place_order's buyer: personal data


async def parked_order(stack, sku: str = "NEW-GADGET") -> tuple[object, dict, str]:
    """A connection, and an order of it parked on a SKU the ERP does not know."""
    conn = await stack.add_connection(f"ops-{uuid.uuid4().hex[:6]}")
    await stack.control("woocommerce", "/_sandbox/products",
                        [{"sku": sku, "name": "New gadget", "regular_price": "12.00"}])
    catalog = await products(stack)
    existing_item = next(p["sku"] for p in catalog if p["sku"] != sku)
    return conn, await order_with(stack, conn, sku), existing_item


async def order_with(stack, conn, sku: str) -> dict:
    """A new order of one known product and one with ``sku``, once it is parked."""
    new = next(p for p in await products(stack) if p["sku"] == sku)
    order = await place_order(stack, quantities=(1,),
                              extra_lines=[{"product_id": new["id"], "quantity": 1}])

    async def parked():
        row = stack.store.ledger_get(conn.id, "order", str(order["id"]))
        return row if row and row.state == "parked" else None

    await eventually(parked, timeout=90)
    return order


async def sign_in(page: Page, base: str, password: str = PASSWORD) -> None:
    """By keyboard alone: the name field has focus, Tab to the password, Enter submits."""
    await page.goto(base + "/login")
    await page.get_by_label("Operator name").focus()
    await page.keyboard.type(OPERATOR)
    await page.keyboard.press("Tab")
    await page.keyboard.type(password)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")


async def every_field_is_labelled(page: Page) -> None:
    unlabelled = await page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter(
        el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.name)""")
    assert unlabelled == [], unlabelled


async def reload_until(page: Page, text: str) -> None:
    async def shows():
        await page.reload()
        return text in await page.content()

    await eventually(shows, timeout=90, interval=0.5)


async def test_an_operator_fixes_a_parked_order_in_the_browser(stack, console, browser, temporal):
    conn, order, item = await parked_order(stack)
    number = str(order["number"] if "number" in order else order["id"])
    base = console.url
    ctx = await browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = await ctx.new_page()

    # A wrong password is refused, and nothing of the orders shows.
    await sign_in(page, base, "not-the-password")
    assert page.url.startswith(base + "/login")
    assert await page.get_by_role("alert").inner_text() == \
        "That name and password do not match an operator."
    await every_field_is_labelled(page)
    await page.screenshot(path=console.shot("sign-in"))

    # Signed in: the parked order with its resolution text, age and amount.
    await sign_in(page, base)
    assert page.url == base + "/"
    await page.screenshot(path=console.shot("connections"), full_page=True)
    assert conn.id in await page.content()
    await page.get_by_role("link", name="Needs attention").click()
    row = page.locator(f'tr[data-order="{number}"]')
    text = await row.inner_text()
    assert "parked" in text and "NEW-GADGET" in text and "Resolution" in text
    assert order["total"] in text  # the amount, as the store computed it
    await every_field_is_labelled(page)
    await page.screenshot(path=console.shot("needs-attention"), full_page=True)

    # Bulk replay: still parked (nothing was fixed yet), and said so.
    await page.get_by_label(f"Select order {number}").check()
    await page.get_by_role("button", name="Replay selected orders").click()
    assert "1 order(s) replayed" in await page.get_by_role("status").inner_text()

    # Reconcile: the paid order has no invoice; the CSV lists it.
    await page.get_by_role("link", name="Reconciliation").click()
    await page.get_by_role("button", name=f"Reconcile {conn.id} now").click()
    assert page.url == base + "/reconciliation", console.log.read_text()[-3000:]
    section = page.locator("section", has=page.get_by_role("heading", name=conn.id))
    assert "difference(s)" in await section.inner_text()
    async with page.expect_download() as info:
        await section.get_by_role("link", name="Download the differences (CSV)").click()
    download = await info.value
    rows = list(csv.DictReader(io.StringIO(open(await download.path()).read())))
    assert any(r["order_number"] == number and r["external_ref"] == f"WC-{order['id']}"
               for r in rows), rows
    await page.screenshot(path=console.shot("reconciliation"), full_page=True)

    # A forged form post (no token, a wrong one) changes nothing, even with the session.
    for forged in ({}, {"csrf_token": "forged"}):
        resp = await page.request.post(base + "/fixes/map", form={
            "connection": conn.id, "kind": "sku", "key": "NEW-GADGET", "value": item, **forged})
        assert resp.status == 403
    assert "NEW-GADGET" not in stack.store.get_connection(conn.id).mappings.sku_to_item

    # Fix the mapping the resolution names (the page fills in kind and SKU); the parked
    # order is replayed and posts.
    await page.goto(base + "/attention")
    await page.get_by_role("link", name="Map NEW-GADGET").click()
    assert await page.get_by_label("Kind of mapping").input_value() == "sku"
    assert await page.get_by_label(
        "Store value (SKU, tax rate, payment method)").input_value() == "NEW-GADGET"
    await page.get_by_label("ERP value (item, tax id, payment method, or the GL rule)").fill(item)
    await page.get_by_role("button", name="Save mapping and replay").click()
    assert "1 parked order(s) replayed" in await page.get_by_role("status").inner_text()
    await every_field_is_labelled(page)
    await page.screenshot(path=console.shot("fixes"), full_page=True)

    await page.goto(f"{base}/orders/{conn.id}/{number}")
    await reload_until(page, 'id="order-state" class="badge ok">posted<')  # watch it post
    documents = await page.locator("table").first.inner_text()
    assert f"WC-{order['id']}" in documents and order["total"] in documents
    link = page.get_by_role("link", name=f"Open workflow order/{conn.id}/{order['id']} in the Temporal UI")
    assert "/namespaces/default/workflows/order%2F" in await link.get_attribute("href")
    assert "fetched" in await page.locator("ol.timeline").inner_text()
    assert BUYER_EMAIL not in await page.content()
    await page.screenshot(path=console.shot("order"), full_page=True)

    # Reconciled now; the error history says who resolved the episode, and how.
    await page.goto(base + "/reconciliation")
    await page.get_by_role("button", name=f"Reconcile {conn.id} now").click()
    assert "store and ERP agree" in await page.locator(
        "section", has=page.get_by_role("heading", name=conn.id)).inner_text()
    await page.goto(f"{base}/errors?connection={conn.id}")
    await reload_until(page, "0 open, 1 resolved")  # closed when the order's state is recorded
    history = await page.locator("table").first.inner_text()
    assert "parked" in history and f"mapping by {OPERATOR}" in history
    await page.screenshot(path=console.shot("error-history"), full_page=True)

    # Schedules: state, last and next run.
    await apply_schedules(temporal.client, conn, stack.task_queue)
    try:
        await page.goto(base + "/schedules")
        assert f"poll/{conn.id}" in await page.content()
        await page.screenshot(path=console.shot("schedules"), full_page=True)
    finally:
        async for entry in await temporal.client.list_schedules():
            if entry.id.endswith(f"/{conn.id}"):
                await temporal.client.get_schedule_handle(entry.id).delete()

    # On a phone: the same pages, nothing wider than the screen.
    phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    small = await phone.new_page()
    await sign_in(small, base)
    await small.goto(f"{base}/errors?connection={conn.id}")
    assert small.url.endswith(f"/errors?connection={conn.id}")
    assert await small.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await small.screenshot(path=console.shot("error-history-phone"), full_page=True)
    await phone.close()

    # Signed out, or never signed in: no order data.
    await page.get_by_role("button", name="Sign out").click()
    stranger = await browser.new_context(viewport=DESKTOP)
    for visitor in (page, await stranger.new_page()):
        await visitor.goto(f"{base}/orders/{conn.id}/{number}")
        assert visitor.url.startswith(base + "/login")
        assert number not in await visitor.locator("main").inner_text()
    await stranger.close()
    await ctx.close()

    # Nothing personal, and no password, in the console's own output.
    logged = console.log.read_text()
    assert BUYER_EMAIL not in logged and PASSWORD not in logged


async def test_a_one_order_override_posts_that_order_and_no_other(stack, console, browser):
    """"Map for this order only": the parked order posts with the ERP item chosen for it,
    its amount as the store computed it; the connection's mappings are unchanged, so a
    second order with the same SKU still parks."""
    sku = "ONE-OFF-GADGET"
    conn, order, item = await parked_order(stack, sku)
    number = str(order["number"] if "number" in order else order["id"])
    base = console.url
    ctx = await browser.new_context(viewport=DESKTOP)
    page = await ctx.new_page()
    await sign_in(page, base)
    await page.goto(f"{base}/attention?connection={conn.id}")
    await page.locator(f'tr[data-order="{number}"]').get_by_role("link", name=f"Map {sku}").click()
    assert await page.get_by_label("Store value (SKU, tax rate, payment method)").input_value() == sku
    await page.get_by_label("ERP value (item, tax id, payment method, or the GL rule)").fill(item)
    assert await page.locator('input[name="amount"], input[name="total"]').count() == 0
    await every_field_is_labelled(page)
    await page.screenshot(path=console.shot("fixes-one-order"), full_page=True)
    await page.get_by_role("button", name=f"Map for this order only ({number})").click()
    assert f"mapped SKU {sku} → {item} for order {number} only; the order replayed" in \
        await page.get_by_role("status").inner_text()

    # It posts, with the item chosen for it and the store's amount.
    await page.goto(f"{base}/orders/{conn.id}/{number}")
    await reload_until(page, 'id="order-state" class="badge ok">posted<')
    invoice = next(d for d in await documents(stack, f"WC-{order['id']}") if d["lines"])
    assert Decimal(invoice["amount"]) == Decimal(order["total"]), invoice
    items = [line["inventory_id"] for line in invoice["lines"]]
    assert item in items and sku not in items, items
    assert sku not in stack.store.get_connection(conn.id).mappings.sku_to_item

    # The error history names the action, the order and who did it.
    await page.goto(f"{base}/errors?connection={conn.id}")
    await reload_until(page, "0 open, 1 resolved")
    assert f"mapping by {OPERATOR}" in await page.locator("table").first.inner_text()
    assert f"for order {number} only" in await page.content()

    # A second order with the same SKU is not covered by the first one's override: it parks.
    second = await order_with(stack, conn, sku)
    row = stack.store.ledger_get(conn.id, "order", str(second["id"]))
    assert row.state == "parked" and sku in row.last_error
    await ctx.close()

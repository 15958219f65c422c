"""``ml-connector dev``'s Temporal UI in a real browser (Debian's chromium through Playwright):
the real dev-server UI behind the sign-in gateway shows a workflow's encrypted input decoded
once the browser signed in with a printed link, at 127.0.0.1 and at localhost alike; a
browser that did not sign in, or that opens the dev server's own UI port, never sees it."""
from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from temporalio.client import Client

from sandbox.server import free_port, serving
from starter.dev import ui_origins
from starter.stack import start_temporal_server
from starter.temporal import data_converter
from starter.ui_gateway import COOKIE, Sessions, create_ui_gateway, sign_in_links

BUYER_EMAIL = "ann.gateway@example.com"


@pytest.fixture
async def dev_ui(keyring, tmp_path):
    """(origins, sessions, the dev server's own UI URL, a workflow whose input is encrypted:
    its id and the UI's path to its history)."""
    upstream_port, port, frontend = free_port(), free_port(), free_port()
    server = await start_temporal_server(tmp_path, port=frontend, ui_port=upstream_port)
    upstream = f"http://127.0.0.1:{upstream_port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(100):
                try:
                    if (await http.get(f"{upstream}/api/v1/settings")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        client = await Client.connect(f"127.0.0.1:{frontend}", data_converter=data_converter(keyring))
        workflow_id = f"order/gateway/{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow("OrderSync", {"email": BUYER_EMAIL}, id=workflow_id,
                                             task_queue="nobody-polls")  # its input, encrypted
        path = (f"/namespaces/default/workflows/{workflow_id.replace('/', '%2F')}/"
                f"{handle.first_execution_run_id}/history")
        sessions, origins = Sessions(), ui_origins(port)
        gateway = create_ui_gateway(keyring, upstream=upstream, origins=origins, sessions=sessions)
        async with serving(gateway, port=port, name="ui-gateway"):
            yield origins, sessions, upstream, workflow_id, path
        await gateway.state.aclose()
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("which", [0, 1])
async def test_the_ui_shows_history_decoded_only_to_a_signed_in_browser(browser, dev_ui, which):
    origins, sessions, upstream, workflow_id, path = dev_ui
    origin, link = origins[which], sign_in_links(origins, sessions)[which]

    anonymous = await browser.new_context()
    page = await anonymous.new_page()
    await page.goto(origin + path)
    assert "sign-in link" in await page.content()
    await page.goto(upstream + path)  # the dev server's own UI: ciphertext
    await page.get_by_text(workflow_id).first.wait_for(timeout=30_000)
    await page.get_by_text("Input").first.wait_for(state="attached", timeout=30_000)
    assert BUYER_EMAIL not in await page.content()
    await anonymous.close()

    signed_in = await browser.new_context()
    page = await signed_in.new_page()
    await page.goto(link)  # redirected to the UI with the session cookie
    session = [c for c in await signed_in.cookies() if c["name"] == COOKIE]
    assert len(session) == 1 and session[0]["httpOnly"] and session[0]["sameSite"] == "Lax"
    await page.goto(origin + path)
    await page.get_by_text(workflow_id).first.wait_for(timeout=30_000)
    await page.get_by_text(BUYER_EMAIL).first.wait_for(timeout=30_000)
    await signed_in.close()

"""The console's rules on a real app object (Starlette's test client, a real connection
store on both engines, no Temporal: pages that need it say so): sign-in, refusals, CSRF,
session expiry, what a signed-out visitor sees, fixes and the CSV. The whole flow in a real
browser against real servers is tests/browser/."""
from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from connections import error_history
from connections.config import Connection
from connections.reconciliations import save_reconciliation
from starter.console.accounts import AccountError, Accounts
from starter.console.app import Settings, create_console
from starter.temporal import TemporalUnavailable

PASSWORD = "correct horse battery"
ORDER = "10042"
RESOLUTION = "Resolution: map SKU NEW-GADGET to an Acumatica InventoryID"


async def no_temporal():
    raise TemporalUnavailable("Temporal at test:7233 is unreachable")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def console(store, clock):
    store.save_connection(Connection(id="shop", store_system="woocommerce",
                                     store={"base_url": "https://s/"}, erp_system="acumatica",
                                     erp={"instance_url": "https://e/"}))
    store.ledger_mark("shop", "order", ORDER, "parked", order_number=ORDER, error=RESOLUTION)
    error_history.order_state_changed(store, "shop", ORDER, "parked", order_number=ORDER,
                                      message=RESOLUTION)
    accounts = Accounts(store.db, session_seconds=600, clock=clock)
    accounts.add_operator("alice", PASSWORD)
    app = create_console(store, no_temporal, Settings(), accounts)
    with TestClient(app, base_url="http://console.test") as client:
        yield client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client: TestClient, password: str = PASSWORD):
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "operator": "alice",
                                       "password": password, "next": "/attention"},
                       follow_redirects=False)


def test_a_signed_out_visitor_is_sent_to_sign_in_and_sees_no_order(console):
    for path in ("/", "/attention", f"/orders/shop/{ORDER}", "/errors", "/reconciliation",
                 "/fixes", "/reconciliation/shop.csv"):
        resp = console.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=")
        assert ORDER not in resp.text
    assert ORDER not in console.get("/login").text


def test_a_wrong_password_is_refused(console):
    resp = sign_in(console, "not the password")
    assert resp.status_code == 401 and "do not match" in resp.text
    assert "ml_console_session" not in resp.cookies


def test_sign_in_shows_the_parked_order_with_its_resolution(console):
    resp = sign_in(console)
    assert resp.status_code == 303 and resp.headers["location"] == "/attention"
    page = console.get("/attention").text
    assert ORDER in page and RESOLUTION in page and "parked" in page
    assert "Amounts unavailable" in page  # Temporal down: the store's facts still show


def test_forms_without_the_sessions_token_are_refused(console, store):
    sign_in(console)
    before = store.get_connection("shop").mappings.sku_to_item.copy()
    form = {"connection": "shop", "kind": "sku", "key": "NEW-GADGET", "value": "GADGET"}
    assert console.post("/fixes/map", data=form).status_code == 403
    assert console.post("/fixes/map", data={**form, "csrf_token": "forged"}).status_code == 403
    assert store.get_connection("shop").mappings.sku_to_item == before
    # the sign-in form too: without its token nothing is checked
    bare = TestClient(console.app, base_url="http://console.test")
    resp = bare.post("/login", data={"operator": "alice", "password": PASSWORD},
                     follow_redirects=False)
    assert resp.status_code == 403 and "ml_console_session" not in resp.cookies


def test_sessions_expire(console, clock):
    sign_in(console)
    assert console.get("/", follow_redirects=False).status_code == 200
    clock.now += 601
    assert console.get("/", follow_redirects=False).status_code == 303


def test_signing_out_ends_the_session(console):
    sign_in(console)
    csrf = csrf_of(console.get("/").text)
    console.post("/logout", data={"csrf_token": csrf})
    assert console.get("/", follow_redirects=False).status_code == 303


def test_a_mapping_is_saved_and_recorded_with_who(console, store):
    sign_in(console)
    csrf = csrf_of(console.get("/fixes?connection=shop").text)
    resp = console.post("/fixes/map", data={"csrf_token": csrf, "connection": "shop",
                                            "kind": "sku", "key": "NEW-GADGET",
                                            "value": "GADGET"})
    # saved, then the replay needs Temporal: the page says it is unreachable
    assert store.get_connection("shop").mappings.sku_to_item["NEW-GADGET"] == "GADGET"
    assert resp.status_code == 503 and "unreachable" in resp.text
    [mapping] = [a for a in error_history.actions(store, "shop") if a.action == "mapping"]
    assert mapping.actor == "alice" and "NEW-GADGET" in mapping.detail
    assert [a.action for a in error_history.actions(store, "")][:1] == ["sign-in"]


def test_a_bad_gl_rule_is_one_line_on_the_page(console, store):
    sign_in(console)
    csrf = csrf_of(console.get("/fixes").text)
    resp = console.post("/fixes/map", data={"csrf_token": csrf, "connection": "shop",
                                            "kind": "gl", "key": "", "value": "sku=X"})
    assert resp.status_code == 400 and "names no account" in resp.text


def test_the_reconciliation_csv_lists_the_last_runs_differences(console, store):
    save_reconciliation(store, "shop", {"ok": False}, [
        {"order_number": ORDER, "external_ref": f"WC-{ORDER}", "kind": "invoice",
         "issue": "missing", "currency": "USD", "store_amount": "45.10", "erp_amount": "",
         "difference": "-45.10", "erp_number": "", "detail": "no invoice in the ERP"}])
    sign_in(console)
    assert "1 difference(s)" in console.get("/reconciliation").text
    resp = console.get("/reconciliation/shop.csv")
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    header, row = resp.text.splitlines()
    assert header.startswith("order_number,external_ref") and f"WC-{ORDER}" in row and "45.10" in row


def test_the_error_history_shows_open_episodes_and_pages_are_not_cached(console):
    sign_in(console)
    resp = console.get("/errors")
    assert ORDER in resp.text and "open" in resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-frame-options"] == "DENY"


def test_the_proxy_mode_trusts_only_its_header(store):
    app = create_console(store, no_temporal, Settings(auth="proxy", proxy_header="X-Ml-Operator"))
    client = TestClient(app, base_url="http://console.test")
    assert client.get("/", follow_redirects=False).status_code == 401
    assert client.get("/", headers={"X-Ml-Operator": "bob"}).status_code == 200
    assert client.post("/logout", headers={"X-Ml-Operator": "bob"}).status_code == 403


def test_operator_names_and_passwords_are_checked(store):
    accounts = Accounts(store.db)
    with pytest.raises(AccountError):
        accounts.add_operator("alice", "short")
    with pytest.raises(AccountError):
        accounts.add_operator("bad name", PASSWORD)
    accounts.add_operator("alice", PASSWORD)
    with pytest.raises(AccountError):
        accounts.add_operator("alice", PASSWORD)
    assert accounts.verify("alice", PASSWORD) and not accounts.verify("alice", PASSWORD + "x")
    assert not accounts.verify("nobody", PASSWORD)
    stored = store.db.query("SELECT password_hash FROM console_operators")[0][0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_compose_serves_the_console_behind_the_proxys_login():
    """The console trusts the identity header only where the proxy alone reaches it, and
    the proxy sets that header from its own login (replacing a client's)."""
    from ruamel.yaml import YAML

    from starter.cli import parser
    from tests.unit.test_compose import COMPOSE, ROOT

    service = YAML(typ="safe").load(COMPOSE.read_text())["services"]["console"]
    args = parser().parse_args(service["command"])
    assert (args.auth, args.base_path) == ("proxy", "/console") and not service.get("ports")
    caddy = (ROOT / "deploy" / "Caddyfile").read_text()
    block = caddy[caddy.index("handle /console/* {"):]
    assert f"reverse_proxy console:{args.port}" in block
    assert f"header_up {args.proxy_header} {{http.auth.user.id}}" in block
    assert caddy.index("basic_auth") < caddy.index("handle /console/*")


def test_the_console_runs_without_the_sandboxes_or_the_test_ca():
    """What the production image serves imports no sandbox (only `dev` brings them)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import importlib.abc, sys\n"
            "class Absent(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in {'sandbox', 'trustme'} or name.startswith('starter.sandboxes'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Absent())\n"
            "import starter.console.app, starter.console.commands\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


async def test_dev_starts_the_console_with_a_sign_in_for_its_operator(store):
    """`ml-connector dev` prints where to open the console and the dev operator's sign-in,
    and that sign-in works (a new password at each start)."""
    from connections.config import Environment
    from starter.console.dev import DEV_OPERATOR, start_dev_console

    served, line = await start_dev_console(store, object(), Environment(), ui_port=8233, port=0)
    try:
        assert line.startswith(f"open {served.url} — sign in as {DEV_OPERATOR} / ")
        password = line.rsplit(" / ", 1)[1]
        assert Accounts(store.db).verify(DEV_OPERATOR, password)
        import httpx

        async with httpx.AsyncClient() as http:
            assert (await http.get(served.url + "/healthz")).text == "ok"
    finally:
        await served.stop()


def test_the_needs_attention_filters(console):
    sign_in(console)
    assert ORDER in console.get("/attention?state=parked&q=NEW-GADGET").text
    assert ORDER not in console.get("/attention?state=failed").text
    assert ORDER not in console.get("/attention?q=no-such-order").text
    assert ORDER not in console.get("/attention?connection=shop&state=retrying").text


def test_console_users_add_from_the_command_line(tmp_path):
    """As an operator runs it: the password from the environment, bad input one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).parent / "ml-connector"
    env = {**os.environ, "ML_CONNECTOR_HOME": str(tmp_path), "ML_CONSOLE_PASSWORD": PASSWORD}
    for var in ("ML_CONNECTOR_DB", "ML_CONNECTOR_MASTER_KEYS", "ML_CONNECTOR_KEY_FILE"):
        env.pop(var, None)

    def run(*args, **extra):
        return subprocess.run([str(cli), "console", "users", *args], env={**env, **extra},
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=60)

    done = run("add", "carol")
    assert done.returncode == 0 and done.stdout.strip() == "operator carol added", done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    again = run("add", "carol")
    assert again.returncode == 2 and "--replace" in again.stderr and "Traceback" not in again.stderr
    short = run("add", "dave", ML_CONSOLE_PASSWORD="short")
    assert short.returncode == 2 and short.stderr.count("\n") == 1 and "12 characters" in short.stderr
    missing = run("add", "erin", ML_CONSOLE_PASSWORD="")
    assert missing.returncode == 2 and "ML_CONSOLE_PASSWORD" in missing.stderr
    assert run("list").stdout.split() == ["carol"]


def test_a_one_order_override_is_offered_saved_and_recorded(console, store):
    """"Map for this order only": the order's override, not the connection's mapping; the
    action names the order; an amount is not a field of the form."""
    from connections.order_overrides import overrides

    sign_in(console)
    page = console.get(f"/fixes?connection=shop&kind=sku&key=NEW-GADGET&order={ORDER}").text
    assert f"Map for this order only ({ORDER})" in page and 'name="amount"' not in page
    assert "Map for this order only" not in console.get("/fixes?connection=shop").text
    resp = console.post("/fixes/map", data={
        "csrf_token": csrf_of(page), "connection": "shop", "kind": "sku", "key": "NEW-GADGET",
        "value": "GADGET", "scope": "order", "order": ORDER})
    assert resp.status_code == 503 and "unreachable" in resp.text  # saved; the replay needs Temporal
    assert overrides(store, "shop", ORDER)["sku"] == {"NEW-GADGET": "GADGET"}
    assert "NEW-GADGET" not in store.get_connection("shop").mappings.sku_to_item
    [mapping] = [a for a in error_history.actions(store, "shop") if a.action == "mapping"]
    assert (mapping.actor, mapping.order_id) == ("alice", ORDER)
    assert mapping.detail == f"mapped SKU NEW-GADGET → GADGET for order {ORDER} only"


def test_a_one_order_override_that_is_not_safe_is_refused_on_the_page(console, store):
    sign_in(console)
    store.ledger_mark("shop", "order", "10043", "posted", order_number="10043")
    csrf = csrf_of(console.get("/fixes").text)
    for form, message in (({"order": "10043", "kind": "sku"}, "order 10043 is posted"),
                          ({"order": ORDER, "kind": "gl"}, "a GL rule applies to the whole")):
        resp = console.post("/fixes/map", data={"csrf_token": csrf, "connection": "shop",
                                                "key": "NEW-GADGET", "value": "GADGET",
                                                "scope": "order", **form})
        assert resp.status_code == 400 and message in resp.text
    assert not [a for a in error_history.actions(store, "shop") if a.action == "mapping"]


def test_repeated_failed_sign_ins_are_refused_for_a_while(console, store, clock):
    """Five wrong passwords for one operator: the sixth attempt is refused with 429 without
    its password being checked, even the right one; recorded once; over after the lock."""
    for _ in range(5):
        assert sign_in(console, "not the password").status_code == 401
        clock.now += 10
    refused = sign_in(console)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert int(refused.headers["retry-after"]) > 0 and "ml_console_session" not in refused.cookies
    [locked] = [a for a in error_history.actions(store, "") if a.action == "sign-in locked"]
    assert locked.actor == "console" and "5 failed sign-ins for operator alice" in locked.detail
    clock.now += 15 * 60
    assert sign_in(console).status_code == 303


def test_one_client_guessing_many_names_is_refused_too(console, store, clock):
    def attempt(name: str, password: str):
        token = csrf_of(console.get("/login").text)
        return console.post("/login", data={"csrf_token": token, "operator": name,
                                            "password": password}, follow_redirects=False)

    for i in range(5):
        assert attempt(f"guess{i}", "wrong password!").status_code == 401
    assert attempt("alice", PASSWORD).status_code == 429
    [locked] = [a for a in error_history.actions(store, "") if a.action == "sign-in locked"]
    assert "for one client" in locked.detail and "guess" not in locked.detail
    stored = " ".join(r[0] for r in store.db.query("SELECT key_hash FROM console_sign_in_failures"))
    assert "guess" not in stored and "testclient" not in stored

"""The ``ml-connector`` command. Bad input gets one clear line and exit code 2, never a
traceback; secrets are read from environment variables or a prompt, never printed."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import secrets
import sys

from pydantic import ValidationError

from connections.config import (ERP_CREDENTIALS, ERP_SYSTEMS, STORE_CREDENTIALS, STORE_SYSTEMS,
                                SETTINGS_REREAD_SECONDS, WEBHOOK_SECRET, Connection, Environment)
from connections.ledger import LedgerKind, OrderState
from connections.store import ConnectionNotFound, StoreUnavailable, open_store
from connections.vault import VaultError
from connectors.documents import CUSTOMER_MATCHES, LineRule, Mappings
from starter.logs import configure as configure_logs
from starter.output import closed_pipe, emit, emit_json


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            raise UsageError(f"{what} must look like KEY=VALUE, got {value!r}")
        out[key] = target
    return out


def _secret(env_name: str, label: str, required: bool = True) -> str | None:
    value = os.environ.get(env_name)
    if value:
        return value
    if sys.stdin.isatty():
        value = getpass.getpass(f"{label}{'' if required else ' (Enter to skip)'}: ")
        if value:
            return value
    if not required:
        return None
    raise UsageError(f"{label} is required: set the environment variable {env_name}")


def cmd_connections_add(args, env: Environment) -> int:
    from starter.setup import SetupError, side_config

    store = open_store(env)
    if args.name in {c.id for c in store.list_connections()} and not args.replace:
        raise UsageError(f"connection {args.name!r} exists; pass --replace to overwrite it")
    prefix = args.prefix or {"woocommerce": "WC-", "bigcommerce": "BC-"}[args.store]
    try:
        mappings = Mappings(tax_codes=_pairs(args.tax, "--tax"), sku_to_item=_pairs(args.sku, "--sku"),
                            payment_methods=_pairs(args.payment, "--payment"),
                            default_payment_method=(args.default_payment or "").strip(),
                            line_rules=[_gl_rule(v) for v in args.gl_rule or []],
                            document_prefix=prefix,
                            guest_customer=(args.guest_customer or "").strip(),
                            customer_match=args.customer_match or "own",
                            post_receipts=args.receipts != "off")
        store_settings, store_creds = side_config(
            args.store, args, _pairs(args.store_setting, "--store-setting"), _secret)
        erp_settings, erp_creds = side_config(
            args.erp, args, _pairs(args.erp_setting, "--erp-setting"), _secret)
        conn = Connection(
            id=args.name, store_system=args.store, erp_system=args.erp, store=store_settings,
            erp=erp_settings, mappings=mappings, poll_minutes=args.poll_minutes,
            receiver_url=args.receiver_url or "", customer_sync=args.customer_sync,
            erp_requests_per_minute=args.erp_requests_per_minute)
    except ValidationError as exc:
        raise UsageError(_first_error(exc)) from None
    except SetupError as exc:
        raise UsageError(str(exc)) from None
    from connectors.http import insecure_http_allowed

    if (problem := conn.insecure_url_problem()) is not None:
        raise UsageError(problem)
    for side, settings in (("store", conn.store), ("erp", conn.erp)):
        if insecure_http_allowed(settings):
            print(f"WARNING: the {side} allows plain HTTP (allow_insecure_http): credentials "
                  "travel unencrypted; for a local test server only", file=sys.stderr)
    store.put_secret(conn.id, STORE_CREDENTIALS, store_creds)
    store.put_secret(conn.id, ERP_CREDENTIALS, erp_creds)
    store.put_secret(conn.id, WEBHOOK_SECRET,
                     os.environ.get(args.webhook_secret_env) or secrets.token_urlsafe(32))
    store.save_connection(conn)
    print(f"connection {conn.id} saved (secrets encrypted in the connection store)")
    _warn_overlaps(store, conn)
    code = _activate(store, env, conn, hooks=not args.no_hooks, schedules=not args.no_schedules)
    if conn.erp_system == "exact_online":
        print(f"next: ml-connector connections authorize {conn.id}  (Exact needs a user's consent)")
    return code


def _warn_overlaps(store, conn: Connection) -> None:
    from starter.overlap import overlapping, warning

    for other in overlapping(conn, store.list_connections()):
        if text := warning(conn, other):
            print(text, file=sys.stderr)


def _activate(store, env: Environment, conn: Connection, *, hooks: bool, schedules: bool) -> int:
    """Register the store's webhooks and apply the schedules: what makes the connection run.
    Exit code 1 (after saving) when one of them could not be done."""
    from starter.activation import activate, report

    if not hooks and not schedules:
        return 0
    done = asyncio.run(activate(store, env, conn, hooks=hooks, schedules=schedules))
    return report(done, print, lambda line: print(line, file=sys.stderr))


def cmd_connections_list(args, env: Environment) -> int:
    for conn in open_store(env).list_connections():
        print(f"{conn.id}\t{conn.store_system} {conn.store.get('base_url', '')}\t→ "
              f"{conn.erp_system} {conn.erp.get('instance_url', '')}")
    return 0


def cmd_connections_show(args, env: Environment) -> int:
    store = open_store(env)
    conn = store.get_connection(args.name)
    shown = json.loads(conn.model_dump_json())
    shown["secrets"] = {name: "(set, encrypted)" for name in store.secret_names(conn.id)}
    print(json.dumps(shown, indent=2))
    return 0


def gl_rule(value: str) -> LineRule:
    """``sku=SHIRT-*,category=Apparel,kind=product,account=4000,cost_center=WEB`` (also
    what the console's fixes page parses)."""
    fields = _pairs(value.split(","), "--gl-rule")
    if "account" in fields:
        fields["gl_account"] = fields.pop("account")
    try:
        rule = LineRule(**fields)
    except (ValidationError, TypeError) as exc:
        raise UsageError(f"--gl-rule {value!r}: use sku=,category=,kind=,account=,cost_center=") from exc
    if not rule.gl_account:
        raise UsageError(f"--gl-rule {value!r} names no account")
    return rule


_gl_rule = gl_rule  # the name earlier callers use


def cmd_connections_map(args, env: Environment) -> int:
    if args.order is not None:
        return _map_one_order(args, env)
    store = open_store(env)
    conn = store.get_connection(args.name)
    conn.mappings.sku_to_item.update(_pairs(args.sku, "--sku"))
    conn.mappings.tax_codes.update(_pairs(args.tax, "--tax"))
    conn.mappings.payment_methods.update(_pairs(args.payment, "--payment"))
    # A new rule goes first: it is the more specific one the operator just thought of.
    conn.mappings.line_rules[:0] = [_gl_rule(v) for v in args.gl_rule or []]
    if args.guest_customer is not None:
        conn.mappings.guest_customer = args.guest_customer.strip()
    if args.customer_match is not None:
        conn.mappings.customer_match = args.customer_match
    if args.receipts is not None:
        conn.mappings.post_receipts = args.receipts == "on"
    if args.default_payment is not None:
        conn.mappings.default_payment_method = args.default_payment.strip()
    store.save_connection(conn)
    parked = store.ledger_rows(conn.id, kind=LedgerKind.ORDER, state=OrderState.PARKED)
    print(f"mappings of {conn.id} saved; replaying {len(parked)} parked order(s)")
    if parked:
        asyncio.run(_replay(env, conn.id, [r.store_id for r in parked], "mapping_changed"))
    return 0


def _map_one_order(args, env: Environment) -> int:
    """``connections map NAME --order ORDER --sku A=B``: a one-order override
    (connections/order_overrides.py), then that order alone replayed."""
    from connections.order_overrides import OverrideRefused, add_override, describe

    given = [(kind, k, v) for kind, values, flag in (("sku", args.sku, "--sku"),
                                                     ("tax", args.tax, "--tax"),
                                                     ("payment", args.payment, "--payment"))
             for k, v in _pairs(values, flag).items()]
    if args.gl_rule or any(getattr(args, name) is not None for name in (
            "guest_customer", "customer_match", "receipts", "default_payment")):
        raise UsageError("--order maps a SKU, tax rate or payment method for one order "
                         "(--sku/--tax/--payment); other settings apply to the connection")
    if not given:
        raise UsageError("--order needs at least one --sku, --tax or --payment KEY=VALUE")
    store = open_store(env)
    try:
        for kind, key, value in given:
            row = add_override(store, args.name, args.order, kind, key, value)
            print(describe(kind, key, value, row.order_number or row.store_id))
    except OverrideRefused as exc:
        raise UsageError(str(exc)) from None
    print(f"replaying order {row.order_number or row.store_id} of {args.name}")
    asyncio.run(_replay(env, args.name, [row.store_id], "mapping_changed"))
    return 0


def cmd_connections_set(args, env: Environment) -> int:
    from starter.connection_settings import (HOOK_KEYS, SCHEDULE_KEYS, SettingError,
                                             apply_settings)

    store = open_store(env)
    conn = store.get_connection(args.name)
    assignments = {}
    for value in args.settings:  # an empty value clears: default_payment_method=
        key, sep, target = value.partition("=")
        if not sep or not key:
            raise UsageError(f"a setting must look like KEY=VALUE, got {value!r}")
        assignments[key] = target
    if args.default_payment is not None:
        assignments["default_payment_method"] = args.default_payment
    if not assignments:
        raise UsageError("name at least one KEY=VALUE (e.g. default_payment_method=CARD)")
    try:
        updated, changed = apply_settings(conn, assignments)
    except SettingError as exc:
        raise UsageError(str(exc)) from None
    store.save_connection(updated)
    print(f"settings of {updated.id} saved (secrets unchanged): {', '.join(sorted(assignments))}; "
          f"running workers and the receiver use them within {SETTINGS_REREAD_SECONDS} s")
    _warn_overlaps(store, updated)
    code = 0
    if changed & (SCHEDULE_KEYS | {"store"}):
        code = _activate(store, env, updated,
                         hooks=not args.no_hooks and bool(changed & (HOOK_KEYS | {"store"})),
                         schedules=not args.no_schedules and bool(changed & SCHEDULE_KEYS))
    if "mappings" in changed:
        parked = store.ledger_rows(updated.id, kind=LedgerKind.ORDER, state=OrderState.PARKED)
        print(f"replaying {len(parked)} parked order(s)")
        if parked:
            asyncio.run(_replay(env, updated.id, [r.store_id for r in parked], "mapping_changed"))
    return code


def cmd_connections_check(args, env: Environment) -> int:
    from connectors.errors import ExternalError
    from starter.preflight import as_json, preflight, render, would_park

    if args.orders < 1:
        raise UsageError("--orders must be 1 or more")
    store = open_store(env)
    conn = store.get_connection(args.name)
    try:
        verdicts = asyncio.run(preflight(store, conn, args.orders))
    except ExternalError as exc:  # the store or the ERP could not be read at all
        raise UsageError(f"{' '.join(str(exc).split())[:300]} (ml-connector connections test "
                         f"{conn.id} says what is wrong)") from None
    emit_json(as_json(verdicts)) if args.json else emit(render(conn, verdicts))
    return 1 if would_park(verdicts) else 0


def cmd_replay(args, env: Environment) -> int:
    store = open_store(env)
    conn = store.get_connection(args.connection)
    since = None
    if args.since:
        from starter.backfill import parse_day

        try:
            since = parse_day(args.since, "--since").isoformat()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    ids = args.order or [r.store_id for state in (OrderState.PARKED, OrderState.FAILED)
                         for r in store.ledger_rows(conn.id, kind=LedgerKind.ORDER, state=state)
                         if since is None or r.updated_at >= since]
    asyncio.run(_replay(env, conn.id, ids, "replay"))
    print(f"replaying {len(ids)} order(s) of {conn.id}")
    return 0


async def _replay(env: Environment, connection_id: str, order_ids: list[str], kind: str) -> None:
    from activities.messages import OrderEvent
    from starter.temporal import connect
    from starter.dispatch import signal_order

    store = open_store(env)
    conn = store.get_connection(connection_id)
    client = await connect(env)
    if order_ids:  # before the signals: the episodes these orders close name this action
        from connections.error_history import Resolution, record_action

        record_action(store, connection_id,
                      Resolution.MAPPING if kind == "mapping_changed" else Resolution.REPLAY,
                      order_ids=order_ids, detail=" ".join(["ml-connector", *sys.argv[1:]]))
    for order_id in order_ids:
        await signal_order(client, connection_id, order_id, OrderEvent(kind=kind, source="cli"),
                           task_queue=env.task_queue,
                           erp_requests_per_minute=conn.erp_requests_per_minute)


def cmd_connections_authorize(args, env: Environment) -> int:
    from starter.authorize import AuthorizationError, authorize

    store = open_store(env)
    store.get_connection(args.name)
    try:
        asyncio.run(authorize(store, args.name, code=args.code, redirect_port=args.port,
                              say=print))
    except AuthorizationError as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_status(args, env: Environment) -> int:
    from starter.status import collect, render

    report = collect(env, open_store(env), args.connection)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n\n".join(render(s) for s in report["connections"]) or "no connections yet")
    return report["exit_code"]  # 0 healthy, 1 needs attention, 3 unknown (README "Status")


def cmd_errors(args, env: Environment) -> int:
    from connections.error_history import episodes
    from starter.backfill import parse_day
    from starter.errors_report import as_json, render

    store = open_store(env)
    if args.connection:
        store.get_connection(args.connection)  # an unknown name: one line, exit 2
    try:
        since = parse_day(args.since, "--since") if args.since else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    state = True if args.open else False if args.resolved else None
    found = episodes(store, args.connection, open=state, since=since)
    what = {True: "open", False: "resolved", None: "recorded"}[state]
    print(as_json(found) if args.json else render(found, what=what))
    return 0


def cmd_audit(args, env: Environment) -> int:
    from starter.audit import OrderNotFound, as_json, audit, render
    from starter.temporal import connect

    store = open_store(env)
    if args.connection:
        store.get_connection(args.connection)  # an unknown name: one line, exit 2

    async def run() -> list:
        client = await connect(env, store.vault.keyring)
        return await audit(client, store, args.connection, args.order_number)

    try:
        timeline = asyncio.run(run())
    except OrderNotFound as exc:
        raise UsageError(str(exc)) from None
    emit(as_json(timeline) if args.json else render(args.order_number, timeline))
    return 0


def cmd_connections_test(args, env: Environment) -> int:
    from starter.diagnose import as_json, passed, render, test_connection

    store = open_store(env)
    conn = store.get_connection(args.name)
    findings = asyncio.run(test_connection(store, conn))
    print(json.dumps(as_json(findings), indent=2) if args.json else render(conn, findings))
    return 0 if passed(findings) else 1


def cmd_schedules_apply(args, env: Environment) -> int:
    from starter.temporal import connect
    from starter.schedules import apply_schedules

    store = open_store(env)
    conns = ([store.get_connection(args.connection)] if args.connection
             else store.list_connections())

    async def apply() -> None:
        client = await connect(env, store.vault.keyring)
        for conn in conns:
            for sid, what in (await apply_schedules(client, conn, env.task_queue)).items():
                print(f"{sid}\t{what}")

    asyncio.run(apply())
    return 0


def cmd_schedules_list(args, env: Environment) -> int:
    from starter.schedule_table import describe_schedules, render
    from starter.temporal import connect

    async def show() -> list:
        client = await connect(env, open_store(env).vault.keyring)
        return await describe_schedules(client, args.connection)

    rows = asyncio.run(show())
    emit(render(rows) if rows else "no schedules yet: run `ml-connector schedules apply`")
    return 0


def cmd_backfill(args, env: Environment) -> int:
    from activities.messages import BackfillProgress
    from starter.backfill import follow, parse_range, start_backfill
    from starter.temporal import connect

    store = open_store(env)
    conn = store.get_connection(args.connection)
    try:
        since, until = parse_range(args.since, args.until)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    async def run() -> int:
        client = await connect(env, store.vault.keyring)
        handle = await start_backfill(client, conn.id, since, until, env.task_queue)
        print(f"backfill workflow {handle.id} (Temporal UI: search WorkflowId=\"{handle.id}\")")
        if args.detach:
            return 0
        # Followed by id alone: the latest run of a continue-as-new chain, decoded as progress.
        latest = client.get_workflow_handle(handle.id, result_type=BackfillProgress)
        done = await follow(latest, since, until)
        if done is None:
            print("the backfill did not complete: see its history in the Temporal UI")
            return 1
        print(f"{done.orders_seen} orders seen, {done.handed_over} handed over, "
              f"{done.orders_seen - done.handed_over} already in the books")
        return 0

    return asyncio.run(run())


def cmd_reconcile(args, env: Environment) -> int:
    from starter.reconcile import cmd_reconcile as reconcile

    return reconcile(args, env)


def cmd_keys_rotate(args, env: Environment) -> int:
    from starter.keys import reencrypt, rotate_keys

    store = open_store(env)
    if store.vault.keyring.from_environment:
        r = reencrypt(store)
        print(f"keys come from ML_CONNECTOR_MASTER_KEYS: re-encrypted {r['secrets']} secrets under "
              f"its first key {r['key_id']} (to rotate, put a new key first in the variable of "
              f"every process)")
    else:
        r = rotate_keys(store, env.key_file)
        print(f"new key {r['key_id']} ({r['keys']} keys in {env.key_file_label}); "
              f"re-encrypted {r['secrets']} secrets")
    return 0


def cmd_keys_retire(args, env: Environment) -> int:
    from starter.keys import retire_keys

    r = retire_keys(open_store(env), env.key_file, args.keep)
    print(f"retired {', '.join(r['retired']) or 'no key'}; {r['keys']} kept; "
          f"{r['secrets']} secrets under {r['key_id']}")
    return 0


def cmd_worker(args, env: Environment) -> int:
    from starter import eventloop
    from starter.workers import run

    eventloop.run(run(env))
    return 0


def cmd_receiver(args, env: Environment) -> int:
    import uvicorn

    from starter.logs import UVICORN_LOG_CONFIG
    from starter.receiver import create_receiver
    from starter.temporal import LazyClient

    store = open_store(env)
    # Temporal may be down at start and may go away later: 503 until it answers again.
    app = create_receiver(store, LazyClient(env, store.vault.keyring), task_queue=env.task_queue,
                          body_timeout=args.body_timeout)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                log_config=UVICORN_LOG_CONFIG)
    return 0


def cmd_codec(args, env: Environment) -> int:
    import uvicorn

    from starter.codec_server import create_codec_server

    token = os.environ.get("ML_CONNECTOR_CODEC_TOKEN", "")
    if len(token) < 16:
        raise UsageError("set ML_CONNECTOR_CODEC_TOKEN (16+ random characters); the UI's codec "
                         "endpoint is then http://HOST:PORT/<token>")
    from starter.logs import UVICORN_LOG_CONFIG

    app = create_codec_server(open_store(env).vault.keyring, token=token, ui_origin=args.ui_origin)
    # no access log: the token is in the path
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                log_config=UVICORN_LOG_CONFIG)
    return 0


def cmd_demo(args, env: Environment) -> int:
    from starter.demo import run_demo

    return asyncio.run(run_demo(orders=args.orders, home=env.home / "demo"))


def cmd_dev(args, env: Environment) -> int:
    from starter.dev import dev_ports, run_dev

    try:
        dev_ports(args.port_base)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return asyncio.run(run_dev(env, port_base=args.port_base))


def cmd_console(args, env: Environment) -> int:
    from starter.console.commands import serve

    return serve(args, env)


def cmd_console_users(args, env: Environment) -> int:
    from starter.console.commands import users

    return users(args, env)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ml-connector", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the main job end to end on the embedded stack").add_argument(
        "--orders", type=int, default=200)
    sub.add_parser("dev", help="start the embedded stack and stay up").add_argument(
        "--port-base", type=int, metavar="N",
        help="listen on N, N+1, … instead of the default ports (Temporal 7233, UI 8233, …)")
    from starter.console.commands import add_parser as add_console_parser

    add_console_parser(sub)
    sub.add_parser("worker", help="run a Temporal worker")
    rec = sub.add_parser("receiver", help="serve the webhook receiver")
    rec.add_argument("--host", default="127.0.0.1")
    rec.add_argument("--port", type=int, default=8000)
    rec.add_argument("--body-timeout", type=float,
                     default=os.environ.get("ML_CONNECTOR_BODY_TIMEOUT", "10"),
                     help="seconds a sender has to send a whole body before a 408 (default 10, "
                          "or ML_CONNECTOR_BODY_TIMEOUT)")
    st = sub.add_parser("status", help="what needs attention: parked, failed, retrying and "
                                       "quota-waiting orders, health, webhooks, schedules "
                                       "(exit 0 healthy, 1 needs attention, 3 unknown)")
    st.add_argument("connection", nargs="?")
    st.add_argument("--json", action="store_true")
    er = sub.add_parser("errors", help="the error history: parked, failed and retrying episodes, "
                                       "when they opened and how they were resolved")
    shown = er.add_mutually_exclusive_group()
    shown.add_argument("--open", action="store_true", help="only episodes still open")
    shown.add_argument("--resolved", action="store_true", help="only resolved episodes")
    er.add_argument("--since", help="day or ISO timestamp: opened since (resolved since, "
                                    "with --resolved)")
    er.add_argument("--connection", help="only this connection (default: every connection)")
    er.add_argument("--json", action="store_true")
    au = sub.add_parser("audit", help="an order's timeline from its workflow history and the ledger")
    au.add_argument("order_number", help="the store's order number")
    au.add_argument("--connection", help="only this connection (default: every connection)")
    au.add_argument("--json", action="store_true")
    cd = sub.add_parser("codec", help="serve the codec endpoint the Temporal UI decodes payloads with")
    cd.add_argument("--host", default="127.0.0.1")
    cd.add_argument("--port", type=int, default=8888)
    cd.add_argument("--ui-origin", default="http://localhost:8080", help="the UI's origin (CORS)")
    rp = sub.add_parser("replay", help="replay orders after the cause was fixed")
    rp.add_argument("connection")
    rp.add_argument("--order", action="append", help="store order id (default: every parked/failed)")
    rp.add_argument("--since", help="only orders parked or failed since this day or timestamp")

    bf = sub.add_parser("backfill", help="hand every order of a date range to its workflow")
    bf.add_argument("connection")
    bf.add_argument("--since", required=True, help="first day (2026-11-01) or ISO timestamp")
    bf.add_argument("--until", help="end, exclusive (default: now)")
    bf.add_argument("--detach", action="store_true", help="start it and return")
    rc = sub.add_parser("reconcile", help="store versus ERP for a date range, to the cent "
                                          "(exit 1 when they differ)")
    rc.add_argument("connection")
    rc.add_argument("--since", required=True, help="first day (2026-11-01) or ISO timestamp")
    rc.add_argument("--until", help="end, exclusive (default: now)")
    rc.add_argument("--csv", metavar="FILE", help="also write the differences to FILE")
    rc.add_argument("--json", action="store_true")
    keys = sub.add_parser("keys", help="master keys of secrets and payloads").add_subparsers(
        dest="action", required=True)
    keys.add_parser("rotate", help="new master key (old ones kept), every stored secret re-encrypted")
    keys.add_parser("retire", help="keep only the newest keys (history payloads under retired "
                                   "keys stop decoding)").add_argument("--keep", type=int, required=True)
    sch = sub.add_parser("schedules", help="the Temporal Schedules of connections").add_subparsers(
        dest="action", required=True)
    sch.add_parser("apply", help="create or update every schedule (idempotent)").add_argument(
        "connection", nargs="?")
    sch.add_parser("list", help="each schedule's state, workflow, last and next run").add_argument(
        "connection", nargs="?", help="only this connection's schedules")
    conns = sub.add_parser("connections", help="manage connections").add_subparsers(
        dest="action", required=True)
    add = conns.add_parser("add", help="add a store + ERP connection")
    add.add_argument("name")
    add.add_argument("--store", default="woocommerce", choices=STORE_SYSTEMS)
    add.add_argument("--store-url", help="the store's URL (BigCommerce: the API base URL)")
    add.add_argument("--store-key", help="WooCommerce consumer key (ck_...)")
    add.add_argument("--store-hash", help="BigCommerce store hash")
    add.add_argument("--store-auth", default="auto", choices=["auto", "basic", "query_string", "oauth1"])
    add.add_argument("--store-setting", action="append", help="any other store setting KEY=VALUE")
    add.add_argument("--erp", default="acumatica", choices=ERP_SYSTEMS)
    add.add_argument("--erp-url", help="ERP instance URL (Exact: overrides the region's host)")
    add.add_argument("--erp-version", help="Acumatica endpoint version, e.g. 24.200.001")
    add.add_argument("--erp-client-id")
    add.add_argument("--erp-username")
    add.add_argument("--erp-setting", action="append",
                     help="any other ERP setting KEY=VALUE (Oracle business_unit, Exact region, ...)")
    add.add_argument("--erp-requests-per-minute", type=int,
                     help="the ERP's licensed request rate, shared by every worker")
    add.add_argument("--webhook-secret-env", default="ML_WEBHOOK_SECRET")
    add.add_argument("--receiver-url", help="public base URL of the webhook receiver")
    add.add_argument("--ca-bundle", help="CA file to trust for both systems (private CAs)")
    add.add_argument("--tax", action="append", help="store tax rate code=ERP tax id")
    add.add_argument("--sku", action="append", help="store SKU=ERP item id")
    add.add_argument("--payment", action="append", help="store payment method=ERP payment method")
    add.add_argument("--gl-rule", action="append", help="see `connections map --help`")
    add.add_argument("--prefix", help="external reference prefix (default WC- / BC-)")
    add.add_argument("--customer-sync", action="store_true", help="align customers both ways")
    _add_booking_options(add)
    add.add_argument("--poll-minutes", type=int, default=5)
    add.add_argument("--replace", action="store_true")
    _add_activation_options(add)
    auth = conns.add_parser("authorize", help="run the OAuth consent flow (Exact Online)")
    auth.add_argument("name")
    auth.add_argument("--code", help="the code (or the whole redirect URL) from the browser")
    auth.add_argument("--port", type=int, help="serve the redirect on 127.0.0.1:PORT instead")
    conns.add_parser("list")
    ct = conns.add_parser("test", help="reach the store and the ERP with the stored credentials "
                                       "and say what is wrong (exit 1 unless both pass)")
    ct.add_argument("name")
    ct.add_argument("--json", action="store_true")
    conns.add_parser("show").add_argument("name")
    mp = conns.add_parser("map", help="add SKU/tax/payment/GL mappings and replay parked orders")
    mp.add_argument("name")
    mp.add_argument("--sku", action="append", help="store SKU=ERP item id")
    mp.add_argument("--tax", action="append", help="store tax rate code=ERP tax id")
    mp.add_argument("--payment", action="append", help="store payment method=ERP payment method")
    mp.add_argument("--gl-rule", action="append",
                    help="sku=GLOB,category=NAME,kind=product|shipping|fee,account=GL,cost_center=CC")
    mp.add_argument("--order", metavar="ORDER",
                    help="map --sku/--tax/--payment for this order only (its store id or "
                         "number; a parked or failed order), then replay it alone")
    _add_booking_options(mp)
    cs = conns.add_parser("set", help="change settings and mappings, secrets untouched "
                                      "(KEY=VALUE; store.KEY / erp.KEY for a side's own)")
    cs.add_argument("name")
    cs.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                    help="e.g. default_payment_method=CARD poll_minutes=10 "
                         "erp.release_documents=false always_look_up=true")
    cs.add_argument("--default-payment", metavar="ERP_METHOD",
                    help="the ERP payment method of store methods with no --payment mapping")
    _add_activation_options(cs)
    ck = conns.add_parser("check", help="run the store's latest orders through mapping and "
                                        "validation without writing to the ERP: what would post, "
                                        "what would park and why (exit 1 if any would park)")
    ck.add_argument("name")
    ck.add_argument("--orders", type=int, default=50, help="how many of the latest orders")
    ck.add_argument("--json", action="store_true")
    return p


def _add_activation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-hooks", action="store_true",
                        help="do not register the store's webhooks with --receiver-url now")
    parser.add_argument("--no-schedules", action="store_true",
                        help="do not apply the connection's Temporal Schedules now (polls, "
                             "webhook checks, catalog, shipments: `schedules apply` later)")


def _add_booking_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--guest-customer", metavar="ERP_CUSTOMER",
                        help="book every guest checkout to this ERP customer (Acumatica "
                             "CustomerID, Oracle account number, Exact account code); \"\" "
                             "gives each guest a customer of their own (the default)")
    parser.add_argument("--customer-match", choices=list(CUSTOMER_MATCHES),
                        help="which existing ERP customer a buyer may be booked to: own (the "
                             "default: only customers ml-connector created) or email (an "
                             "existing customer with the buyer's e-mail, never changed)")
    parser.add_argument("--default-payment", metavar="ERP_METHOD",
                        help="the ERP payment method of every store payment method with no "
                             "--payment mapping (\"\" to park those instead)")
    parser.add_argument("--receipts", choices=["on", "off"],
                        help="book the store's payments as ERP receipts (default on; off when "
                             "payments are booked from the payment provider's payouts)")


COMMANDS = {
    ("connections", "add"): cmd_connections_add, ("connections", "list"): cmd_connections_list,
    ("connections", "show"): cmd_connections_show, ("connections", "map"): cmd_connections_map,
    ("connections", "authorize"): cmd_connections_authorize,
    ("connections", "set"): cmd_connections_set, ("connections", "check"): cmd_connections_check,
    ("audit", None): cmd_audit, ("connections", "test"): cmd_connections_test,
    ("replay", None): cmd_replay, ("status", None): cmd_status, ("backfill", None): cmd_backfill,
    ("errors", None): cmd_errors,
    ("reconcile", None): cmd_reconcile,
    ("keys", "rotate"): cmd_keys_rotate, ("keys", "retire"): cmd_keys_retire,
    ("schedules", "apply"): cmd_schedules_apply, ("schedules", "list"): cmd_schedules_list, ("worker", None): cmd_worker, ("receiver", None): cmd_receiver,
    ("demo", None): cmd_demo, ("dev", None): cmd_dev, ("codec", None): cmd_codec,
    ("console", None): cmd_console, ("console", "users"): cmd_console_users,
}


def _parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``connections set NAME --flag X KEY=VALUE``: argparse takes positionals only before the
    first flag, so the KEY=VALUE pairs after one are collected here."""
    args, extra = p.parse_known_args(argv)
    if extra and getattr(args, "action", None) == "set" and args.command == "connections" and \
            all("=" in e and not e.startswith("-") for e in extra):
        args.settings = [*args.settings, *extra]
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _temporal_unavailable() -> type[Exception]:
    """Imported only once an error is being handled: the Temporal SDK costs a quarter of a
    second at start-up, which commands that never reach Temporal need not pay."""
    from starter.temporal import TemporalUnavailable

    return TemporalUnavailable


def main(argv: list[str] | None = None) -> None:
    try:
        args = _parse(parser(), argv)
    except SystemExit as exc:  # --help or bad arguments: argparse printed and exits
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(closed_pipe())
        raise exc
    # The demo's console shows progress and the books; its logs only say what went wrong.
    configure_logs(logging.WARNING if args.command == "demo" else logging.INFO)
    handler = COMMANDS[(args.command, getattr(args, "action", None))]
    try:
        code = handler(args, Environment())
    except BrokenPipeError:
        code = closed_pipe()
    except (UsageError, ConnectionNotFound, VaultError, StoreUnavailable,
            _temporal_unavailable()) as exc:
        print(f"ml-connector: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    try:
        sys.stdout.flush()  # output that fit the buffer meets a closed pipe only here
    except BrokenPipeError:
        code = closed_pipe()
    sys.stderr.flush()
    os._exit(code)  # a clean exit code even if SDK threads linger (see README)


if __name__ == "__main__":
    main()

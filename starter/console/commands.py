"""``ml-connector console``: serve the console; ``console users add NAME``: an operator
account (the password from ML_CONSOLE_PASSWORD or a prompt, never an argument)."""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from connections.config import Environment

PASSWORD_ENV = "ML_CONSOLE_PASSWORD"
DEFAULT_PORT = 8100


def add_parser(sub: argparse._SubParsersAction) -> None:
    con = sub.add_parser("console", help="serve the operations console (web pages for operators)")
    con.add_argument("--host", default="127.0.0.1")
    con.add_argument("--port", type=int, default=DEFAULT_PORT)
    con.add_argument("--auth", choices=["password", "proxy"], default="password",
                     help="password: operator accounts (console users add); proxy: trust the "
                          "identity header an authenticating proxy sets (only where nothing "
                          "but the proxy reaches the console)")
    con.add_argument("--proxy-header", default="X-Ml-Operator",
                     help="the header carrying the proxy's signed-in user (--auth proxy)")
    con.add_argument("--temporal-ui", default="http://127.0.0.1:8233",
                     help="the Temporal UI's URL as the operator's browser reaches it")
    con.add_argument("--base-path", default="", help="URL prefix behind a proxy, e.g. /console")
    con.add_argument("--session-hours", type=float, default=8.0,
                     help="a sign-in lasts this long (default 8)")
    con.add_argument("--secure-cookies", action="store_true",
                     help="mark cookies Secure (serve over https)")
    users = con.add_subparsers(dest="action").add_parser(
        "users", help="operator accounts").add_subparsers(dest="users_action", required=True)
    add = users.add_parser("add", help=f"add an operator (password from {PASSWORD_ENV} or a prompt)")
    add.add_argument("name")
    add.add_argument("--replace", action="store_true", help="set a new password (ends sessions)")
    users.add_parser("list", help="the operators' names")


def _password() -> str:
    from starter.cli import UsageError

    if value := os.environ.get(PASSWORD_ENV):
        return value
    if not sys.stdin.isatty():
        raise UsageError(f"set {PASSWORD_ENV} (or run in a terminal for a prompt)")
    first = getpass.getpass("password (12+ characters): ")
    if first != getpass.getpass("again: "):
        raise UsageError("the two passwords differ")
    return first


def users(args, env: Environment) -> int:
    from connections.store import open_store
    from starter.cli import UsageError
    from starter.console.accounts import AccountError, Accounts

    accounts = Accounts(open_store(env).db)
    if args.users_action == "list":
        print("\n".join(accounts.operators()) or "no operators yet")
        return 0
    try:
        accounts.add_operator(args.name, _password(), replace=args.replace)
    except AccountError as exc:
        raise UsageError(str(exc)) from None
    print(f"operator {args.name} {'updated' if args.replace else 'added'}")
    return 0


def settings_from(args, env: Environment):
    from starter.console.app import Settings

    base = args.base_path.rstrip("/")
    if base and not base.startswith("/"):
        base = "/" + base
    return Settings(task_queue=env.task_queue, namespace=env.namespace,
                    temporal_ui=args.temporal_ui, auth=args.auth, proxy_header=args.proxy_header,
                    base_path=base, secure_cookies=args.secure_cookies)


def serve(args, env: Environment) -> int:
    import uvicorn

    from connections.store import open_store
    from starter.console.accounts import Accounts
    from starter.console.app import create_console
    from starter.logs import UVICORN_LOG_CONFIG
    from starter.temporal import LazyClient

    store = open_store(env)
    accounts = Accounts(store.db, session_seconds=int(args.session_hours * 3600))
    if args.auth == "password" and not accounts.operators():
        print("no operator yet: add one with `ml-connector console users add NAME`",
              file=sys.stderr)
    app = create_console(store, LazyClient(env, store.vault.keyring), settings_from(args, env),
                         accounts)
    print(f"console on http://{args.host}:{args.port}{settings_from(args, env).base_path}/",
          flush=True)
    # No access log: request paths carry order numbers and filters.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                log_config=UVICORN_LOG_CONFIG)
    return 0

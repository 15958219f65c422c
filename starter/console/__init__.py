"""``ml-connector console``: the operations console for finance and retail operations.

Server-rendered pages (Starlette + Jinja2, plain forms, no front-end build) over the
connection store and Temporal: what needs attention, an order's timeline, fixes that
replay what they unblock, error history, reconciliation and schedules. Operators sign in
with a password (argon2 hashes in the connection store) or through an authenticating
proxy's asserted identity; sessions expire; every form carries a CSRF token; every
action is recorded with who, what and when.

Modules: ``accounts`` (operators, sessions, CSRF), ``actions`` (the record of operator
actions), ``views`` (what each page reads), ``fixes`` (mappings and replays), ``app``
(routes), ``commands`` (the CLI's ``console`` subcommand).
"""

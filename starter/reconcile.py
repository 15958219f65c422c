"""``ml-connector reconcile CONNECTION --since DATE --until DATE [--csv FILE] [--json]``: the
store's orders of a range against the ERP's books, to the cent, through the connection's own
connectors (activities/reconcile.py reads, connectors/reconciliation.py judges). Exit 0 when
the books agree, 1 when there are differences, 2 when either side could not be read. The
text and table shapes here are shared with ``make demo``; each run is kept as the connection's
last (connections/reconciliations.py), which ``status`` and the console show.
"""
from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from decimal import Decimal

from activities.reconcile import DIFFERENCE_COLUMNS, differences_as_rows, reconcile_patiently
from connectors.reconciliation import ReconciliationReport, shown

Reconciliation = ReconciliationReport  # the name the chaos bench knows it by
CLI_ATTEMPTS = 1  # each read retries alone for a few seconds (READ_RETRIES); then exit 2


def _money(book: dict[str, Decimal]) -> str:
    return ", ".join(f"{shown(v, c)} {c}" for c, v in sorted(book.items()) if v) or "0"


def summary_rows(rep: ReconciliationReport) -> list[tuple[str, str, str, str]]:
    """(what, store, ERP, ok|MISMATCH) — the table of the CLI and of the demo."""
    def mark(a: object, b: object) -> str:
        return "ok" if a == b else "MISMATCH"

    t = rep.totals
    rows = [("paid orders / invoices", str(rep.paid_orders), str(rep.invoices),
             mark(rep.paid_orders, rep.invoices)),
            ("refunds / credit memos", str(rep.refunds), str(rep.credit_memos),
             mark(rep.refunds, rep.credit_memos)),
            ("order totals", _money(t.store_orders), _money(t.erp_invoices),
             mark(_money(t.store_orders), _money(t.erp_invoices))),
            ("refund totals", _money(t.store_refunds), _money(t.erp_credit_memos),
             mark(_money(t.store_refunds), _money(t.erp_credit_memos)))]
    if rep.with_receipts:
        rows += [("payments / receipts", str(rep.payments), str(rep.receipts),
                  mark(rep.payments, rep.receipts)),
                 ("payment totals", _money(t.store_payments), _money(t.erp_receipts),
                  mark(_money(t.store_payments), _money(t.erp_receipts)))]
    return rows + [("edit adjustments", "", str(rep.adjustments), ""),
                   ("duplicates", "0", str(len(rep.duplicates)), mark(len(rep.duplicates), 0)),
                   ("missing", "0", str(len(rep.missing)), mark(len(rep.missing), 0))]


def render(rep: ReconciliationReport, connection_id: str) -> str:
    head = (f"{connection_id}: orders created {rep.since.isoformat()} to {rep.until.isoformat()}"
            f" (external references {rep.prefix}…)")
    rows = [("", "store", "ERP", "")] + summary_rows(rep)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if rep.differences:
        lines.append(f"{len(rep.differences)} difference(s):")
        lines += [f"  order {d.order}: {d.message}" for d in rep.differences]
    lines.append("reconciled: store and ERP agree to the cent" if rep.ok
                 else "NOT reconciled")
    return "\n".join(lines)


def as_json(rep: ReconciliationReport, connection_id: str) -> str:
    totals = {name: {c: shown(v, c) for c, v in sorted(book.items())}
              for name, book in rep.totals.model_dump().items()}
    return json.dumps({"connection": connection_id, **rep.summary(),
                       "counts": {k: getattr(rep, k) for k in (
                           "invoices", "refunds", "credit_memos", "payments", "receipts",
                           "adjustments", "other_documents")},
                       "totals": totals, "differences": differences_as_rows(rep)}, indent=2)


def write_csv(rep: ReconciliationReport, path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=DIFFERENCE_COLUMNS)
        writer.writeheader()
        writer.writerows(differences_as_rows(rep))


def cmd_reconcile(args, env) -> int:
    from pydantic import ValidationError

    from activities.runtime import Runtime
    from connections.store import open_store
    from connectors.errors import ExternalError
    from starter.backfill import parse_range
    from starter.cli import UsageError

    try:
        since, until = parse_range(args.since, args.until)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.csv and not os.path.isdir(os.path.dirname(os.path.abspath(args.csv))):
        raise UsageError(f"cannot write {args.csv}: its folder does not exist")
    store = open_store(env)
    conn = store.get_connection(args.connection)

    async def run() -> ReconciliationReport:
        runtime = Runtime(store)
        try:
            return await reconcile_patiently(runtime, conn, since, until, attempts=CLI_ATTEMPTS)
        finally:
            await runtime.aclose()

    try:
        rep = asyncio.run(run())
    except (ExternalError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"ml-connector: cannot reconcile {conn.id}: {first}", file=sys.stderr)
        return 2
    if args.csv:
        try:
            write_csv(rep, args.csv)
        except OSError as exc:
            raise UsageError(f"cannot write {args.csv}: {exc.strerror}") from None
    print(as_json(rep, conn.id) if args.json else render(rep, conn.id))
    return 0 if rep.ok else 1

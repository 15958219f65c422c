"""The ledger (binder): its key scheme, its states, and the posting protocol over a real
store on SQLite and PostgreSQL, with a plain fake client in place of an ERP."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from connections.config import Connection
from connections.ledger import (DocumentState, Ledger, LedgerKey, LedgerKind, OrderState,
                                customer_external_id)
from connections.store import ConnectionStore
from connectors.documents import Mappings, PostedTotals
from connectors.model import Customer, ErpDocumentRef


# --- the key scheme: byte for byte what existing ledgers hold ------------------------------

def test_each_kind_keys_as_before():
    assert LedgerKey.order("1001") == ("order", "1001")
    assert LedgerKey.invoice("1001") == ("invoice", "1001")
    assert LedgerKey.credit_memo("77") == ("credit_memo", "77")  # the refund id alone
    assert LedgerKey.receipt("1001", "55") == ("receipt", "1001-P55")
    assert LedgerKey.adjustment("1001", 2) == ("adjustment", "1001-A2")
    assert LedgerKey.shipment("SH000123") == ("shipment", "SH000123")
    assert LedgerKey.customer("WC-C42") == ("customer", "WC-C42")
    assert LedgerKey.customer_sync("WC-C42") == ("customer_sync", "WC-C42")
    key = LedgerKey.receipt("1001", "55")
    assert (key.kind, key.store_id) == ("receipt", "1001-P55")


def test_customer_keys_as_before():
    conn = Connection(id="shop", store_system="woocommerce", store={}, erp_system="acumatica",
                      erp={}, mappings=Mappings(document_prefix="WC1-"))
    assert customer_external_id(conn, Customer(store_id="42", email="a@example.com")) == "WC1-C42"
    digest = hashlib.sha256(b"guest@example.com").hexdigest()[:12].upper()
    guest = Customer(email="  Guest@Example.com ")
    assert customer_external_id(conn, guest) == f"WC1-G{digest}"


def test_state_values_are_the_stored_strings():
    assert [s.value for s in DocumentState] == ["posting", "posted", "error"]
    # The order operators read them in (``ml-connector status``).
    assert [s.value for s in OrderState] == ["posted", "parked", "failed", "needs_attention",
                                             "awaiting_payment", "not_billable", "received"]
    assert [k.value for k in LedgerKind] == ["order", "customer", "invoice", "credit_memo",
                                             "receipt", "adjustment", "refund_payment", "shipment",
                                             "customer_sync"]
    assert OrderState.PARKED == "parked" and f"{OrderState.PARKED}" == "parked"


def test_rows_are_stored_as_plain_text(store: ConnectionStore):
    Ledger(store, "shop").mark(LedgerKey.receipt("1001", "55"), DocumentState.POSTED,
                               order_number="1001")
    Ledger(store, "shop").mark(LedgerKey.order("1001"), OrderState.AWAITING_PAYMENT)
    rows = store.db.query("SELECT kind, store_id, state FROM ledger ORDER BY kind")
    assert rows == [("order", "1001", "awaiting_payment"), ("receipt", "1001-P55", "posted")]
    assert all(type(v) is str for row in rows for v in row)
    assert [r.store_id for r in store.ledger_rows("shop", kind=LedgerKind.ORDER,
                                                  state=OrderState.AWAITING_PAYMENT)] == ["1001"]


def test_importable_from_workflow_code():
    """No database, HTTP or Temporal module comes with it (workflows import the states)."""
    code = ("import sys, connections.ledger, activities.messages; "
            "print(sorted(m for m in ('sqlite3', 'psycopg', 'httpx', 'temporalio') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the posting protocol --------------------------------------------------------------------

@dataclass
class Doc:
    kind: str
    external_ref: str
    total: Decimal = Decimal("10.00")


@dataclass
class FakeErp:
    """Documents by external reference, and every call made."""

    documents: dict[str, ErpDocumentRef] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_create: Exception | None = None

    async def find_document(self, kind: str, external_ref: str) -> ErpDocumentRef | None:
        self.calls.append(f"find {external_ref}")
        return self.documents.get(external_ref)

    async def create_document(self, doc: Doc) -> ErpDocumentRef:
        self.calls.append(f"create {doc.external_ref}")
        if self.fail_create:
            raise self.fail_create
        ref = ErpDocumentRef(system="fake", kind=doc.kind, number=f"INV{len(self.documents) + 1}",
                             external_ref=doc.external_ref)
        self.documents[doc.external_ref] = ref
        return ref


async def post(ledger: Ledger, erp: FakeErp, key: LedgerKey, doc: Doc, *,
               retrying: bool = False, build=None, new: bool | None = True):
    """``new``: what the vouch answers (None: no vouch given)."""
    async def vouch() -> bool:
        erp.calls.append("vouch")
        return bool(new)

    return await ledger.post(
        key, "1001", build=build or (lambda: doc),
        look_up=lambda d: erp.find_document(d.kind, d.external_ref),
        create=erp.create_document,
        totals=lambda d: PostedTotals(net=d.total, total=d.total), retrying=retrying,
        vouch_new=None if new is None else vouch)


KEY = LedgerKey.invoice("1001")
DOC = Doc("invoice", "WC-1001")


async def test_fresh_key_creates_without_look_up(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp()
    booking = await post(ledger, erp, KEY, DOC)
    assert erp.calls == ["vouch", "create WC-1001"]
    assert (booking.ref.number, booking.ref.created, booking.retried) == ("INV1", True, False)
    assert booking.totals.total == Decimal("10.00")
    row = ledger.get(KEY)
    assert (row.state, row.attempts, row.order_number) == ("posted", 1, "1001")
    assert row.erp_ref["number"] == "INV1" and row.totals["total"] == "10.00"


async def test_posted_row_answers_without_a_call(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp()
    await post(ledger, erp, KEY, DOC)
    erp.calls.clear()
    again = await post(ledger, erp, KEY, DOC, retrying=True)
    assert erp.calls == []
    assert (again.ref.number, again.ref.created, again.retried) == ("INV1", False, False)
    assert again.totals == PostedTotals(net=Decimal("10.00"), total=Decimal("10.00"))
    assert ledger.get(KEY).attempts == 1


async def test_row_left_posting_looks_up_and_never_creates_twice(store: ConnectionStore):
    """An earlier attempt reached the ERP and its answer was lost: the row stayed posting."""
    ledger, erp = Ledger(store, "shop"), FakeErp()
    ledger.mark(KEY, DocumentState.POSTING, order_number="1001", count_attempt=True)
    erp.documents["WC-1001"] = ErpDocumentRef(system="fake", kind="invoice", number="INV9",
                                              external_ref="WC-1001")
    booking = await post(ledger, erp, KEY, DOC)
    assert erp.calls == ["find WC-1001"]
    assert (booking.ref.number, booking.ref.created, booking.retried) == ("INV9", False, True)
    row = ledger.get(KEY)
    assert (row.state, row.erp_ref["number"], row.attempts) == ("posted", "INV9", 2)
    await post(ledger, erp, KEY, DOC)
    assert erp.calls == ["find WC-1001"] and len(erp.documents) == 1


async def test_row_left_posting_creates_when_the_look_up_finds_nothing(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp()
    ledger.mark(KEY, DocumentState.POSTING, order_number="1001", count_attempt=True)
    booking = await post(ledger, erp, KEY, DOC)
    assert erp.calls == ["find WC-1001", "create WC-1001"]
    assert (booking.ref.created, booking.retried) == (True, True)


async def test_a_retry_without_a_row_looks_up_first(store: ConnectionStore):
    """The row's own write may be what was lost: a retry never trusts a missing row."""
    ledger, erp = Ledger(store, "shop"), FakeErp()
    await post(ledger, erp, KEY, DOC, retrying=True)
    assert erp.calls == ["find WC-1001", "create WC-1001"]  # the vouch is not even asked


async def test_failure_is_recorded_and_the_next_attempt_looks_up(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp(fail_create=TimeoutError("read timed out"))
    with pytest.raises(TimeoutError):
        await post(ledger, erp, KEY, DOC)
    row = ledger.get(KEY)
    assert (row.state, row.last_error, row.attempts) == ("error", "read timed out", 1)
    erp.fail_create, erp.calls = None, []
    await post(ledger, erp, KEY, DOC)
    assert erp.calls == ["find WC-1001", "create WC-1001"]
    assert ledger.get(KEY).state == "posted"


async def test_a_refused_build_calls_nothing(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp()

    def refuse() -> Doc:
        raise ValueError("Resolution: map SKU X")

    with pytest.raises(ValueError):
        await post(ledger, erp, KEY, DOC, build=refuse)
    assert erp.calls == []
    row = ledger.get(KEY)
    assert (row.state, row.last_error, row.attempts) == ("error", "Resolution: map SKU X", 0)


# --- a fresh key the ledger cannot vouch for: looked up first ------------------------------

async def test_a_fresh_key_not_vouched_new_finds_what_the_erp_holds(store: ConnectionStore):
    """Booked before this ledger knew the store (another connection, a lost store database):
    found, never created again, and not counted as this ledger's own retried attempt."""
    ledger, erp = Ledger(store, "shop-again"), FakeErp()
    erp.documents["WC-1001"] = ErpDocumentRef(system="fake", kind="invoice", number="INV7",
                                              external_ref="WC-1001")
    booking = await post(ledger, erp, KEY, DOC, new=False)
    assert erp.calls == ["vouch", "find WC-1001"]
    assert (booking.ref.number, booking.ref.created, booking.retried) == ("INV7", False, False)
    row = ledger.get(KEY)
    assert (row.state, row.erp_ref["number"]) == ("posted", "INV7")


async def test_a_fresh_key_not_vouched_new_creates_when_nothing_is_found(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp()
    booking = await post(ledger, erp, KEY, DOC, new=False)
    assert erp.calls == ["vouch", "find WC-1001", "create WC-1001"]
    assert (booking.ref.created, booking.retried) == (True, False)


async def test_without_a_vouch_every_fresh_key_looks_up(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp()
    await post(ledger, erp, KEY, DOC, new=None)
    assert erp.calls == ["find WC-1001", "create WC-1001"]


async def test_a_row_in_any_state_looks_up_without_asking_the_vouch(store: ConnectionStore):
    ledger, erp = Ledger(store, "shop"), FakeErp()
    ledger.mark(KEY, DocumentState.ERROR, order_number="1001", error="timeout")
    await post(ledger, erp, KEY, DOC, new=True)
    assert erp.calls == ["find WC-1001", "create WC-1001"]


# --- the poll's skip rule: the store's own times only --------------------------------------

def test_nothing_new_since_booked_compares_the_stores_times_only(store: ConnectionStore):
    from datetime import datetime, timedelta, timezone

    from connections.ledger import nothing_new_since_booked

    ledger, key = Ledger(store, "shop"), LedgerKey.order("1001")
    booked = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert not nothing_new_since_booked(None, booked)
    ledger.mark(key, OrderState.POSTED)  # written before the store's time was kept
    assert not nothing_new_since_booked(ledger.get(key), booked)
    ledger.mark(key, OrderState.POSTED, store_modified_at=booked)
    row = ledger.get(key)
    assert nothing_new_since_booked(row, booked)
    assert nothing_new_since_booked(row, booked.astimezone(timezone.utc))  # same instant
    assert nothing_new_since_booked(row, booked - timedelta(seconds=1))
    assert not nothing_new_since_booked(row, booked + timedelta(seconds=1))
    ledger.mark(key, OrderState.POSTED)  # a later write without it keeps the time booked
    assert ledger.get(key).store_modified_at == row.store_modified_at
    ledger.mark(key, OrderState.PARKED, store_modified_at=booked + timedelta(minutes=1))
    assert not nothing_new_since_booked(ledger.get(key), booked)  # not posted: never skipped

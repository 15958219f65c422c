"""A connection's ERP request schedule in the store: distinct slots for every caller on every
host (two Database handles stand for two hosts), one banked slot after a pause, and the
activity gate that waits for them."""
from __future__ import annotations

import asyncio
import threading

from connections.config import Connection
from connections.store import ConnectionStore, Database
from connections.vault import Vault
from activities.quota import QuotaInterceptor, quota_gated, request_gate, slot_interval_ms
from connectors import http

INTERVAL = 10_000  # long enough that no slot of a test falls due while it runs


def _next_ms(store: ConnectionStore, name: str) -> int:
    return store.db.query("SELECT next_ms FROM request_slots WHERE name = ?", (name,))[0][0]


def test_slots_follow_each_other(store: ConnectionStore):
    waits = [store.reserve_request("erp:a", INTERVAL) for _ in range(4)]
    assert waits[:2] == [0, 0]  # the slot banked while idle, then the current one
    for later, earlier in zip(waits[2:], waits[1:]):
        assert INTERVAL - 500 <= later - earlier <= INTERVAL
    assert store.reserve_request("erp:b", INTERVAL) == 0  # schedules are per name


def test_no_slot_is_given_twice_across_hosts(store: ConnectionStore, db_url, keyring):
    other = ConnectionStore(Database(db_url), Vault(keyring))
    store.reserve_request("erp:c", INTERVAL)
    start = _next_ms(store, "erp:c")

    def book(s: ConnectionStore) -> None:
        for _ in range(25):
            s.reserve_request("erp:c", INTERVAL)

    threads = [threading.Thread(target=book, args=(s,)) for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _next_ms(other, "erp:c") == start + 100 * INTERVAL
    other.db.close()


def test_interval_keeps_under_the_licence():
    assert slot_interval_ms(60) == 1021  # 58.8 a minute, plus one banked slot: under 60
    assert 60_000 / slot_interval_ms(240) + 1 <= 240


async def test_gate_waits_for_erp_requests_only(store: ConnectionStore):
    gate = request_gate(store, "shop", "acumatica", 60_000)  # one slot a millisecond
    await gate("woocommerce")
    assert store.db.query("SELECT COUNT(*) FROM request_slots")[0][0] == 0
    await asyncio.gather(*(gate("acumatica") for _ in range(20)))
    assert store.db.query("SELECT COUNT(*) FROM request_slots")[0][0] == 1


def test_interceptor_gates_connections_with_a_rate(store: ConnectionStore):
    store.save_connection(Connection(id="free", store_system="woocommerce", store={},
                                     erp_system="acumatica", erp={}))
    store.save_connection(Connection(id="licensed", store_system="woocommerce", store={},
                                     erp_system="exact_online", erp={},
                                     erp_requests_per_minute=60))
    quota = QuotaInterceptor(store)
    assert quota.gate_for("free") is None
    assert quota.gate_for("missing") is None
    gate = quota.gate_for("licensed")
    assert gate is not None and quota.gate_for("licensed") is gate  # cached
    assert http.REQUEST_GATE.get() is None  # nothing is gated outside an activity


async def test_work_outside_an_activity_takes_the_connections_slots(store: ConnectionStore):
    """``ml-connector reconcile``, the console and the demo read the ERP outside an activity:
    with a quota their requests take slots of the same schedule as the workers' steps."""
    free = Connection(id="free", store_system="woocommerce", store={}, erp_system="acumatica",
                      erp={})
    licensed = free.model_copy(update={"id": "licensed", "erp_requests_per_minute": 60_000})
    with quota_gated(store, free):
        assert http.REQUEST_GATE.get() is None
    with quota_gated(store, licensed):
        await http.wait_for_slot("woocommerce")  # the store side is never gated
        assert store.db.query("SELECT COUNT(*) FROM request_slots")[0][0] == 0
        await http.wait_for_slot("acumatica")
    assert store.db.query("SELECT name FROM request_slots") == [("erp:licensed",)]
    assert http.REQUEST_GATE.get() is None

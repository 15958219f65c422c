"""The chaos run at the test suite's size (bench/chaos.py, ``small=True``): 60 orders over
three pairs with the worker SIGKILLed and restarted, 5% 5xx and 2% lost responses after
commit at every ERP (the full run: 1,000 orders, three kills, 10%), a short 429 storm,
tripled and out-of-order webhook deliveries and a store that disables its hooks -- and
still every pair's books match to the cent."""
from __future__ import annotations

from bench.chaos import run_chaos


async def test_chaos_run_books_everything_once_to_the_cent(tmp_path):
    report = await run_chaos(small=True, home=tmp_path / "chaos", log=lambda *_: None)
    print("\n" + report.table() + "\n" + report.summary())
    for pair in report.pairs:
        assert pair.drain_seconds is not None, (pair.pair, pair.rec.rows() if pair.rec else None)
        assert (pair.duplicates, pair.missing, pair.difference_cents) == (0, 0, 0), pair
        assert pair.documents >= pair.orders_sent  # an invoice (and more) per order
    assert report.passed
    # the faults really happened
    injected = report.injected.values()
    assert report.kills >= 1 and report.worker_starts == report.kills + 1
    assert sum(i["failures"] for i in injected) > 0
    assert sum(i["lost_commits"] for i in injected) > 0
    assert sum(i["throttled"] for i in injected) > 0
    assert report.redelivered > 0 and report.out_of_order > 0
    assert report.hooks_disabled and report.hooks_repaired

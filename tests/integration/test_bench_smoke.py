"""Every benchmark at a tiny size, so none of them rots: each returns its row and its figures
are consistent. Sizes are far too small for the figures to mean anything; nothing here is
timed (BENCHMARKS.md holds the measurements)."""
from __future__ import annotations

import math

import pytest

from bench import backfill, calls, catalog, quota, receiver_latency, throughput
from bench.common import Bench


@pytest.fixture(scope="module")
async def bench(tmp_path_factory):
    async with Bench(tmp_path_factory.mktemp("bench")) as b:
        yield b


def figures_without_errors(row) -> dict:
    assert row.verdict != "error", row.figures
    assert row.line().startswith("| ") and row.figures
    return row.figures


async def test_throughput_against_the_baseline(bench):
    row = await throughput.run(bench, throughput.TINY)
    figures_without_errors(row)
    ml, base = row.detail["ml_trips"], row.detail["baseline_trips"]
    assert ml["steps"] == base["steps"] > 0  # the baseline takes one step per OrderSync step
    assert 0 < ml["server_round_trips"] < base["server_round_trips"]  # in fewer round trips
    assert ml["signals"] == 1 and all(r > 0 for r in row.detail["ml_rates"] + row.detail["baseline_rates"])


async def test_quota_riding(bench):
    row = await quota.run(bench, quota.TINY)
    figures_without_errors(row)
    for result in row.detail.values():
        assert result["accepted"] >= result["orders"] and result["ratio"] > 0


async def test_calls_per_order(bench):
    row = await calls.run(bench, calls.TINY)
    figures = figures_without_errors(row)
    assert all(float(figures[f"highest/order ({p})"]) > 0 for p in calls.PROFILES)
    assert sum(row.detail["by_route"].values()) > 0


async def test_receiver_latency(bench):
    row = await receiver_latency.run(bench, receiver_latency.TINY)
    assert row.verdict == "met", row.figures  # every request answered 200


async def test_catalog_push_costs_the_batch_bound(bench):
    row = await catalog.run(bench, catalog.TINY)
    assert row.verdict == "met", row.figures
    assert row.detail["report"]["write_calls"] == math.ceil(catalog.TINY.skus / 100)


async def test_backfill_with_the_worker_in_its_own_process(bench):
    row = await backfill.run(bench, backfill.TINY)
    assert row.verdict == "met", row.figures
    assert row.detail["trace"] and row.detail["idle_rss"] > 0

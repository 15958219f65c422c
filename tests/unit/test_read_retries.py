"""A reconciliation outside Temporal retries each GET alone (connectors/http.READ_RETRIES):
a long read of many pages survives a flaky ERP; writes are never sent twice, and inside an
activity nothing is retried here (Temporal's policy decides)."""
from __future__ import annotations

import httpx
import pytest

from connectors import http
from connectors.errors import Rejected, Unavailable


def _client(answers: list[int], seen: list[str]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        status = answers.pop(0) if answers else 200
        return httpx.Response(status, json={}, headers={"Retry-After": "0"} if status == 429 else {})

    return httpx.AsyncClient(base_url="https://erp.example", transport=httpx.MockTransport(handle))


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(http, "READ_RETRY_FIRST_WAIT", 0.001)


async def test_a_get_is_retried_alone_within_its_budget(quick):
    seen: list[str] = []
    token = http.READ_RETRIES.set(3)
    try:
        async with _client([503, 429, 200], seen) as client:
            resp = await http.send(client, "GET", "/page", system="erp")
        assert resp.status_code == 200 and seen == ["GET"] * 3
        seen.clear()
        async with _client([503] * 5, seen) as client:
            with pytest.raises(Unavailable):
                await http.send(client, "GET", "/page", system="erp")
        assert len(seen) == 4  # the first try and three retries
        seen.clear()
        async with _client([422], seen) as client:  # a refusal is never retried
            with pytest.raises(Rejected):
                await http.send(client, "GET", "/page", system="erp")
        assert seen == ["GET"]
    finally:
        http.READ_RETRIES.reset(token)


async def test_writes_and_activity_reads_are_sent_once(quick):
    seen: list[str] = []
    token = http.READ_RETRIES.set(3)
    try:
        async with _client([503], seen) as client:
            with pytest.raises(Unavailable):
                await http.send(client, "POST", "/doc", system="erp")
    finally:
        http.READ_RETRIES.reset(token)
    async with _client([503], seen) as client:
        with pytest.raises(Unavailable):
            await http.send(client, "GET", "/page", system="erp")
    assert seen == ["POST", "GET"]

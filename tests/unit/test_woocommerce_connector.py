"""WooCommerce connector over httpx.MockTransport: auth modes, paging, catalog push, errors,
webhooks."""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from pydantic import ValidationError

from connectors.base import Storefront
from connectors.errors import AuthExpired, NotFound, RateLimited, Rejected, Unavailable
from connectors.model import ItemChange
from connectors.woocommerce import (OAuth1Auth, WooCommerceCredentials, WooCommerceSettings,
                                    WooCommerceStore, parse_webhook, verify_signature)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "woocommerce"
KEY, SECRET = "ck_4f1d2c3b5a69788766554433221100ffeeddccbb", "cs_9a8b7c6d5e4f30211203f4e5d6c7b8a9"
API = "/wp-json/wc/v3/"


def load(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def store(handler, base_url="https://shop.example/", auth_mode="auto", allow_insecure_http=False,
          **kw) -> WooCommerceStore:
    return WooCommerceStore(
        WooCommerceSettings(base_url=base_url, auth_mode=auth_mode,
                            allow_insecure_http=allow_insecure_http),
        WooCommerceCredentials(consumer_key=KEY, consumer_secret=SECRET),
        transport=httpx.MockTransport(handler), **kw)


def wc_error(status: int, code: str, message: str, **data) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message,
                                        "data": {"status": status, **data}})


def basic_header() -> str:
    return "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()


class Recorder:
    """Records requests and answers them with ``respond(request)``."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix(API)}" for r in self.requests]


def ok_order(request: httpx.Request) -> httpx.Response:
    order = load("order_de_guest_incl_tax")
    return httpx.Response(200, json=order)


# --- auth ------------------------------------------------------------------------------

async def test_basic_auth_over_https():
    rec = Recorder(ok_order)
    wc = store(rec, auth_mode="basic")
    await wc.get_order("2210")
    (req,) = rec.requests
    assert req.headers["Authorization"] == basic_header()
    assert "consumer_secret" not in str(req.url)
    assert str(req.url) == "https://shop.example/wp-json/wc/v3/orders/2210"
    await wc.aclose()


async def test_query_string_auth_sends_keys_as_parameters_only():
    rec = Recorder(ok_order)
    wc = store(rec, auth_mode="query_string")
    await wc.get_order("2210")
    (req,) = rec.requests
    assert "Authorization" not in req.headers
    assert dict(req.url.params) == {"consumer_key": KEY, "consumer_secret": SECRET}


def test_basic_or_query_string_over_plain_http_is_refused():
    for mode in ("basic", "query_string"):
        with pytest.raises(ValidationError, match="https"):
            WooCommerceSettings(base_url="http://shop.example/", auth_mode=mode)


def reference_signature(method: str, url: httpx.URL, secret: str, algorithm: str) -> str:
    """Reference §2.3, written independently of the connector: base string
    UPPER(method) & enc(url) & enc(sorted k=v pairs), key = secret + "&"."""
    enc = lambda s: quote(s, safe="-._~")  # noqa: E731 - RFC 3986 unreserved
    params = [(k, v) for k, v in url.params.multi_items() if k != "oauth_signature"]
    normalized = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in params))
    base_url = f"{url.scheme}://{url.netloc.decode()}{url.path}"
    base = "&".join([method.upper(), enc(base_url), enc(normalized)])
    digest = hmac.new(f"{secret}&".encode(), base.encode(), algorithm).digest()
    return base64.b64encode(digest).decode()


async def test_oauth1_over_plain_http_matches_the_reference_algorithm():
    rec = Recorder(lambda r: httpx.Response(200, json=[]))
    wc = store(rec, base_url="http://shop.example/", allow_insecure_http=True)
    assert wc.auth_mode == "oauth1"
    since = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    _ = [o async for o in wc.iter_orders_modified(since, since + timedelta(hours=1))]
    (req,) = rec.requests
    params = dict(req.url.params)
    assert "Authorization" not in req.headers
    assert params["modified_after"] == "2024-03-01T11:59:59"  # reserved ':' in a signed value
    assert params["oauth_consumer_key"] == KEY and params["oauth_signature_method"] == "HMAC-SHA256"
    assert params["oauth_timestamp"].isdigit() and params["oauth_nonce"]
    assert "oauth_token" not in params and SECRET not in str(req.url)
    assert params["oauth_signature"] == reference_signature("GET", req.url, SECRET, "sha256")


async def test_oauth1_signs_query_not_json_body_and_uses_fresh_nonces():
    seen = []

    def respond(request):
        seen.append(request)
        return httpx.Response(200, json={"id": 5, "topic": "order.updated",
                                         "delivery_url": "https://hooks.example/wc",
                                         "status": "active"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(respond),
                                 auth=OAuth1Auth(KEY, SECRET, "HMAC-SHA1")) as client:
        body = {"topic": "order.updated", "delivery_url": "https://hooks.example/wc"}
        await client.post("http://shop.example:8080/sub/wp-json/wc/v3/webhooks", json=body)
        await client.get("http://shop.example:8080/sub/wp-json/wc/v3/products",
                         params={"sku": "A-1,B 2"})
    post, get = seen
    assert json.loads(post.content) == body  # body untouched, and not signed
    assert "oauth_body_hash" not in post.url.params
    for request in (post, get):
        assert request.url.params["oauth_signature_method"] == "HMAC-SHA1"
        assert request.url.params["oauth_signature"] == reference_signature(
            request.method, request.url, SECRET, "sha1")
    assert post.url.params["oauth_nonce"] != get.url.params["oauth_nonce"]


def test_oauth1_rejects_methods_woocommerce_refuses():
    with pytest.raises(ValueError):
        OAuth1Auth(KEY, SECRET, "PLAINTEXT")


def stripping_host(request: httpx.Request) -> httpx.Response:
    """A host that drops the Authorization header: only query-string keys get through."""
    if request.url.params.get("consumer_secret") == SECRET:
        return ok_order(request)
    return wc_error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource.")


async def test_auto_never_moves_the_secret_into_the_query_string_after_a_401():
    rec = Recorder(stripping_host)
    wc = store(rec)
    with pytest.raises(AuthExpired) as info:
        await wc.get_order("2210")
    assert len(rec.requests) == 1 and wc.auth_mode == "basic"
    assert rec.requests[0].headers["Authorization"] == basic_header()
    assert not any("consumer_secret" in str(r.url) or SECRET in str(r.url) for r in rec.requests)
    assert "auth_mode=query_string" in str(info.value)  # what to do instead, said once
    assert SECRET not in str(info.value) and KEY not in str(info.value)


async def test_auto_keeps_basic_when_it_works():
    rec = Recorder(ok_order)
    wc = store(rec)
    await wc.get_order("2210")
    assert len(rec.requests) == 1 and wc.auth_mode == "basic"


async def test_auto_with_a_wrong_key_raises_auth_expired_without_secrets():
    rec = Recorder(lambda r: wc_error(401, "woocommerce_rest_authentication_error",
                                      "Consumer secret is invalid."))
    wc = store(rec)
    with pytest.raises(AuthExpired) as info:
        await wc.get_order("2210")
    assert "Consumer secret is invalid" in str(info.value)
    assert SECRET not in str(info.value) and KEY not in str(info.value)
    assert wc.auth_mode == "basic" and len(rec.requests) == 1


def test_plain_http_needs_the_explicit_setting():
    with pytest.raises(ValidationError, match="https"):
        WooCommerceSettings(base_url="http://shop.example/", auth_mode="oauth1")
    assert WooCommerceSettings(base_url="http://shop.example/", auth_mode="oauth1",
                               allow_insecure_http=True).scheme == "http"


async def test_explicit_basic_does_not_probe():
    rec = Recorder(stripping_host)
    wc = store(rec, auth_mode="basic")
    with pytest.raises(AuthExpired):
        await wc.get_order("2210")
    assert len(rec.requests) == 1


# --- orders ----------------------------------------------------------------------------

async def test_get_order_fetches_refunds_only_when_the_order_has_some():
    def respond(request):
        path = request.url.path.removeprefix(API)
        if path == "orders/1047":
            return httpx.Response(200, json=load("order_us_ny"))
        if path == "orders/1047/refunds":
            return httpx.Response(200, json=load("refunds_us_ny"),
                                  headers={"X-WP-Total": "3", "X-WP-TotalPages": "1"})
        return ok_order(request)

    rec = Recorder(respond)
    wc = store(rec)
    order = await wc.get_order("1047")
    assert [r.store_id for r in order.refunds] == ["1052", "1058", "1063"]
    assert order.check_totals() == 0
    guest = await wc.get_order(2210)
    assert guest.refunds == []
    assert rec.paths() == ["GET orders/1047", "GET orders/1047/refunds", "GET orders/2210"]
    assert rec.requests[1].url.params["per_page"] == "100"


async def test_get_order_refuses_ids_that_would_change_the_path():
    wc = store(Recorder(ok_order))
    for bad in ("../customers", "12?x=1", "0", ""):
        with pytest.raises(ValueError):
            await wc.get_order(bad)


def order_modified(order_id: int, modified_utc: datetime) -> dict:
    order = copy.deepcopy(load("order_de_guest_incl_tax"))
    order["id"] = order["number"] = order_id
    order["date_modified_gmt"] = modified_utc.strftime("%Y-%m-%dT%H:%M:%S")
    order["date_modified"] = (modified_utc + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    return order


SINCE = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
UNTIL = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def paged_orders(pages: list[list[dict]], with_link: bool):
    def respond(request):
        page = int(request.url.params["page"])
        headers = {"X-WP-Total": str(sum(map(len, pages))), "X-WP-TotalPages": str(len(pages))}
        if with_link:
            # Real Link URLs echo the request's query, credentials included.
            url = f"https://shop.example{API}orders?consumer_key={KEY}&consumer_secret={SECRET}"
            links = [f'<{url}&page={page - 1}>; rel="prev"'] if page > 1 else []
            links += [f'<{url}&page={page + 1}>; rel="next"'] if page < len(pages) else []
            if links:
                headers["Link"] = ", ".join(links)
        return httpx.Response(200, json=pages[page - 1] if page <= len(pages) else [],
                              headers=headers)
    return respond


@pytest.mark.parametrize("with_link", [True, False])
async def test_iter_orders_modified_reads_three_pages_oldest_first(with_link):
    step = timedelta(seconds=10)
    pages = [[order_modified(100 + i, SINCE + i * step) for i in range(100)],
             [order_modified(200 + i, SINCE + (100 + i) * step) for i in range(100)],
             [order_modified(300, UNTIL - step), order_modified(301, UNTIL)]]
    pages[0][0] = order_modified(99, SINCE - timedelta(seconds=1))  # outside [since, until)
    rec = Recorder(paged_orders(pages, with_link))
    wc = store(rec, auth_mode="query_string")
    orders = [o async for o in wc.iter_orders_modified(SINCE, UNTIL)]
    assert [r.url.params["page"] for r in rec.requests] == ["1", "2", "3"]
    for request in rec.requests:
        params = request.url.params
        assert params["modified_after"] == "2024-05-01T07:59:59"
        assert params["modified_before"] == "2024-05-01T09:00:01"
        assert (params["dates_are_gmt"], params["orderby"], params["order"],
                params["per_page"]) == ("true", "modified", "asc", "100")
        assert params.get_list("consumer_key") == [KEY]  # the Link URL is not replayed
    ids = [o.store_id for o in orders]
    assert "99" not in ids and "301" not in ids  # 301 is modified exactly at `until`
    assert len(ids) == 200 and ids[0] == "101" and ids[-1] == "300"
    assert all(o.refunds == [] for o in orders)
    modified = [o.modified_at for o in orders]
    assert all(SINCE <= m < UNTIL for m in modified)


async def test_iter_orders_modified_without_until_and_a_short_last_page():
    pages = [[order_modified(1, SINCE + timedelta(seconds=5))]]
    rec = Recorder(lambda r: httpx.Response(200, json=pages[0]))  # no paging headers at all
    wc = store(rec)
    orders = [o async for o in wc.iter_orders_modified(SINCE)]
    assert [o.store_id for o in orders] == ["1"]
    assert "modified_before" not in rec.requests[0].url.params
    with pytest.raises(ValueError, match="timezone-aware"):
        _ = [o async for o in wc.iter_orders_modified(datetime(2024, 5, 1))]


class OrdersTable:
    """The orders listing over an in-memory table as wc/v3 serves it: strict date filters,
    ascending by modified, offset pages, ``X-WP-Total`` recomputed per request.
    ``before_page[n]`` changes the table just before the n-th request is answered."""

    def __init__(self, modified: dict[int, datetime], before_page=None):
        self.modified, self.before_page, self.calls = modified, before_page or {}, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls in self.before_page:
            self.before_page[self.calls](self.modified)
        p = request.url.params
        after = datetime.fromisoformat(p["modified_after"]).replace(tzinfo=UTC)
        before = datetime.fromisoformat(p["modified_before"]).replace(tzinfo=UTC)
        rows = sorted((m, i) for i, m in self.modified.items() if after < m < before)
        page, size = int(p["page"]), int(p["per_page"])
        chunk = rows[(page - 1) * size:page * size]
        return httpx.Response(200, json=[order_modified(i, m) for m, i in chunk], headers={
            "X-WP-Total": str(len(rows)), "X-WP-TotalPages": str(-(-len(rows) // size))})


def touch(*order_ids):
    def mutate(table):
        for order_id in order_ids:
            table[order_id] = UNTIL + timedelta(hours=1)  # modified now: leaves the window
    return mutate


async def test_orders_changing_mid_listing_are_not_skipped():
    table = {i: SINCE + i * timedelta(seconds=10) for i in range(1, 251)}
    # Orders already listed are modified before pages 2 and 4: each shifts the rest up.
    fake = OrdersTable(dict(table), before_page={2: touch(5), 4: touch(120, 130)})
    wc = store(fake)
    ids = [int(o.store_id) async for o in wc.iter_orders_modified(SINCE, UNTIL)]
    assert sorted(ids) == list(table) and len(ids) == len(set(ids))
    assert fake.calls > 3  # it resumed at least once


async def test_a_listing_that_keeps_changing_gives_up_as_unavailable():
    def unsettled(request):
        page = int(request.url.params["page"])
        orders = [order_modified(i, SINCE + timedelta(seconds=i)) for i in range(100)]
        return httpx.Response(200, json=orders if page == 1 else [],
                              headers={"X-WP-Total": str(100 + page), "X-WP-TotalPages": "2"})

    with pytest.raises(Unavailable, match="changing"):
        _ = [o async for o in store(unsettled).iter_orders_modified(SINCE, UNTIL)]


# --- catalog push ----------------------------------------------------------------------

class FakeCatalog:
    """Products and variations by SKU, with wc/v3's lookup and batch behaviour."""

    def __init__(self, products: dict[str, int], variations: dict[str, tuple[int, int]],
                 global_variations: bool = True, failing_ids: frozenset[int] = frozenset()):
        self.products, self.variations = products, variations
        self.global_variations, self.failing_ids = global_variations, failing_ids
        self.writes: list[tuple[str, list[dict]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(API)
        if request.method == "POST" and path.endswith("/batch"):
            return self.batch(path, json.loads(request.content)["update"])
        skus = request.url.params.get("sku", "").split(",")
        if path == "products" and request.url.params.get("type") == "variable":
            parents = sorted({p for p, _ in self.variations.values()})
            return httpx.Response(200, json=[{"id": p, "type": "variable"} for p in parents])
        if path == "products":
            return httpx.Response(200, json=[{"id": i, "sku": s, "type": "simple"}
                                              for s, i in self.products.items() if s in skus])
        if path == "variations":
            if not self.global_variations:
                return wc_error(404, "rest_no_route", "No route was found matching the URL")
            return httpx.Response(200, json=[{"id": v, "sku": s, "parent_id": p}
                                              for s, (p, v) in self.variations.items()
                                              if s in skus])
        if path.startswith("products/") and path.endswith("/variations"):
            parent = int(path.split("/")[1])
            return httpx.Response(200, json=[{"id": v, "sku": s} for s, (p, v)
                                              in self.variations.items()
                                              if p == parent and s in skus])
        return wc_error(404, "rest_no_route", "No route was found matching the URL")

    def batch(self, path: str, updates: list[dict]) -> httpx.Response:
        if len(updates) > 100:
            return wc_error(413, "woocommerce_rest_request_entity_too_large",
                            "Unable to accept more than 100 items for this request.")
        self.writes.append((path, updates))
        answers = []
        for u in updates:
            if u["id"] in self.failing_ids:
                answers.append({"id": u["id"], "error": {
                    "code": "woocommerce_rest_invalid_product_id",
                    "message": "Invalid ID.", "data": {"status": 400}}})
            else:
                answers.append({**u, "sku": "ignored"})
        return httpx.Response(200, json={"update": answers})


def changes(skus, price="19.90", qty="12"):
    at = datetime(2024, 5, 1, tzinfo=UTC)
    return [ItemChange(sku=s, price=Decimal(price), quantity_available=Decimal(qty),
                       modified_at=at) for s in skus]


async def test_push_batches_250_skus_into_3_writes_and_reports_unknown_skus():
    known = [f"SKU-{i:03d}" for i in range(250)]
    catalog = FakeCatalog({s: 1000 + i for i, s in enumerate(known)}, {})
    wc = store(catalog)
    result = await wc.push_item_changes(changes(known + ["GHOST-1", "GHOST-2"]))
    assert result.write_calls == 3
    assert [len(u) for _, u in catalog.writes] == [100, 100, 50]
    assert {p for p, _ in catalog.writes} == {"products/batch"}
    assert sorted(result.updated) == sorted(known)
    assert result.unknown == ["GHOST-1", "GHOST-2"] and result.failed == {}
    assert catalog.writes[0][1][0] == {"id": 1000, "regular_price": "19.90",
                                       "manage_stock": True, "stock_quantity": 12}


@pytest.mark.parametrize("global_variations", [True, False])
async def test_push_updates_variations_per_parent_and_reports_item_errors(global_variations):
    catalog = FakeCatalog({"MUG-CER-01": 120, "OLD-1": 130},
                          {"TSHIRT-BLU-L": (101, 105), "TSHIRT-BLU-M": (101, 104),
                           "CAP-RED": (140, 141)},
                          global_variations=global_variations, failing_ids=frozenset({130}))
    wc = store(catalog)
    batch = changes(["MUG-CER-01", "OLD-1", "TSHIRT-BLU-L", "TSHIRT-BLU-M", "CAP-RED", "NOPE"])
    batch.append(ItemChange(sku="MUG-CER-01", price=Decimal("9.00"),
                            modified_at=datetime(2024, 5, 2, tzinfo=UTC)))  # latest wins
    result = await wc.push_item_changes(batch)
    writes = dict(catalog.writes)
    assert writes["products/batch"] == [
        {"id": 120, "regular_price": "9.00"},
        {"id": 130, "regular_price": "19.90", "manage_stock": True, "stock_quantity": 12}]
    assert [u["id"] for u in writes["products/101/variations/batch"]] == [105, 104]
    assert [u["id"] for u in writes["products/140/variations/batch"]] == [141]
    assert result.write_calls == 3
    assert sorted(result.updated) == ["CAP-RED", "MUG-CER-01", "TSHIRT-BLU-L", "TSHIRT-BLU-M"]
    assert result.failed == {"OLD-1": "Invalid ID. (woocommerce_rest_invalid_product_id)"}
    assert result.unknown == ["NOPE"]


async def test_push_with_nothing_to_write_makes_no_calls():
    rec = Recorder(lambda r: pytest.fail("no request expected"))
    wc = store(rec)
    at = datetime(2024, 5, 1, tzinfo=UTC)
    result = await wc.push_item_changes([ItemChange(sku="X", cost=Decimal(1), modified_at=at)])
    assert result.model_dump() == {"updated": [], "in_sync": [], "unknown": [], "failed": {},
                                   "write_calls": 0, "read_calls": 0}


# --- errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("response, error", [
    (wc_error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
     AuthExpired),
    (wc_error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID."), NotFound),
    (httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "7"}), RateLimited),
    (httpx.Response(503, text="<html>Service Unavailable</html>"), Unavailable),
    (wc_error(500, "woocommerce_rest_cannot_create_order_refund", "Invalid refund amount."),
     Unavailable),
])
async def test_http_errors_map_to_typed_errors(response, error):
    wc = store(lambda r: response, auth_mode="basic")
    with pytest.raises(error) as info:
        await wc.get_order("1")
    assert info.value.system == "woocommerce" and info.value.status == response.status_code
    if error is RateLimited:
        assert info.value.retry_after == 7
    if error is NotFound:
        assert "Invalid ID. (woocommerce_rest_shop_order_invalid_id)" in str(info.value)


async def test_invalid_params_become_field_errors():
    response = wc_error(400, "rest_invalid_param", "Invalid parameter(s): per_page",
                        params={"per_page": "per_page must be between 1 (inclusive) and 100 "
                                            "(inclusive)"})
    wc = store(lambda r: response)
    with pytest.raises(Rejected) as info:
        await wc.list_webhooks()
    assert info.value.field_errors == {
        "per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"}
    missing = wc_error(400, "rest_missing_callback_param", "Missing parameter(s): topic",
                       params=["topic"])
    wc = store(lambda r: missing)
    with pytest.raises(Rejected) as info:
        await wc.create_webhook("", "https://hooks.example/wc", "s3cret")
    assert info.value.field_errors == {"topic": "missing"}


async def test_timeouts_and_connection_errors_are_unavailable():
    def timeout(request):
        raise httpx.ReadTimeout("timed out", request=request)

    def refused(request):
        raise httpx.ConnectError("connection refused", request=request)

    for handler in (timeout, refused):
        with pytest.raises(Unavailable):
            await store(handler).get_order("1")


async def test_error_messages_never_carry_credentials():
    def waf_page(request):  # a proxy error page that echoes the full URL
        return httpx.Response(502, text=f"Bad gateway for {request.url}")

    wc = store(waf_page, auth_mode="query_string")
    with pytest.raises(Unavailable) as info:
        await wc.get_order("1")
    assert "Bad gateway" in str(info.value)
    assert SECRET not in str(info.value) and KEY not in str(info.value)


# --- webhooks --------------------------------------------------------------------------

def hook(id_, status="active", topic="order.updated"):
    return {"id": id_, "name": f"ml-connector {topic}", "status": status, "topic": topic,
            "resource": topic.split(".")[0], "event": topic.split(".")[1],
            "hooks": ["woocommerce_update_order"], "delivery_url": "https://hooks.example/wc/1",
            "date_created": "2024-05-01T10:00:00", "date_created_gmt": "2024-05-01T08:00:00"}


async def test_webhook_crud():
    def respond(request):
        path = request.url.path.removeprefix(API)
        if request.method == "GET":
            page = int(request.url.params["page"])
            return httpx.Response(200, json=[hook(page, "disabled" if page == 2 else "active")],
                                  headers={"X-WP-TotalPages": "2"})
        if request.method == "POST":
            return httpx.Response(201, json=hook(9, topic=json.loads(request.content)["topic"]),
                                  headers={"Location": f"{API}webhooks/9"})
        if request.method == "PUT":
            return httpx.Response(200, json=hook(2, json.loads(request.content)["status"]))
        return httpx.Response(200, json=hook(int(path.split("/")[1])))

    rec = Recorder(respond)
    wc = store(rec)
    hooks = await wc.list_webhooks()
    assert [(h.id, h.status) for h in hooks] == [("1", "active"), ("2", "disabled")]
    created = await wc.create_webhook("order.created", "https://hooks.example/wc/1", "s3cret")
    assert (created.id, created.topic, created.status) == ("9", "order.created", "active")
    updated = await wc.update_webhook("2", status="active")
    assert updated.status == "active"
    await wc.delete_webhook("9")
    post, put, delete = rec.requests[2:]
    assert json.loads(post.content) == {"name": "ml-connector order.created",
                                        "topic": "order.created",
                                        "delivery_url": "https://hooks.example/wc/1",
                                        "secret": "s3cret"}
    assert json.loads(put.content) == {"status": "active"} and put.url.path == API + "webhooks/2"
    assert delete.method == "DELETE" and delete.url.params["force"] == "true"
    assert rec.requests[0].url.params["status"] == "all"


def signed(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_verify_signature_good_bad_and_missing():
    body = b'{"id":1047,"status":"processing"}'
    good = signed(body, "s3cret")
    assert len(good) == 44
    assert verify_signature(body, "s3cret", good)
    assert verify_signature(body, "s3cret", f" {good}\n")
    assert not verify_signature(body, "other", good)
    assert not verify_signature(body + b" ", "s3cret", good)
    assert not verify_signature(body, "s3cret", good.lower())
    assert not verify_signature(body, "s3cret", None)
    assert not verify_signature(body, "s3cret", "")
    assert not verify_signature(body, "s3cret", "ünïcode")
    assert not verify_signature(body, "", signed(body, ""))


def test_verify_signature_over_raw_php_escaped_bytes():
    order = load("order_us_ny")
    raw = json.dumps(order, separators=(",", ":")).replace("/", "\\/").encode()
    assert b"https:\\/\\/shop.example\\/wp-json" in raw
    header = signed(raw, "s3cret")
    assert verify_signature(raw, "s3cret", header)
    reserialised = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert not verify_signature(reserialised, "s3cret", header)


def test_verify_signature_decodes_html_entities_in_the_secret_like_wordpress():
    body = b'{"id":1}'
    assert verify_signature(body, "a&amp;b", signed(body, "a&b"))


def test_parse_webhook_ping_returns_none():
    headers = {"User-Agent": "WooCommerce/8.6.1 Hookshot (WordPress/6.4.3)",
               "Content-Type": "application/x-www-form-urlencoded"}
    assert parse_webhook(headers, b"webhook_id=12") is None


def test_parse_webhook_delivery():
    body = json.dumps(load("order_us_ny"), separators=(",", ":")).replace("/", "\\/").encode()
    headers = {"x-wc-webhook-source": "https://shop.example/",
               "X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Resource": "order",
               "X-WC-Webhook-Event": "updated", "X-WC-Webhook-Signature": signed(body, "s"),
               "X-WC-Webhook-ID": "12",
               "X-WC-Webhook-Delivery-ID": "b7e1c2d3a4f5061728394a5b6c7d8e9f"}
    event = parse_webhook(headers, body)
    assert event.model_dump() == {"topic": "order.updated", "resource": "order",
                                  "event": "updated", "resource_id": "1047",
                                  "delivery_id": "b7e1c2d3a4f5061728394a5b6c7d8e9f",
                                  "webhook_id": "12"}
    deleted = parse_webhook({"X-WC-Webhook-Topic": "product.deleted"}, b'{"id":55}')
    assert (deleted.resource, deleted.event, deleted.resource_id) == ("product", "deleted", "55")


def test_parse_webhook_rejects_what_is_neither_ping_nor_delivery():
    with pytest.raises(ValueError):
        parse_webhook({}, b'{"id":1}')
    with pytest.raises(ValueError):
        parse_webhook({"X-WC-Webhook-Topic": "order.updated"}, b"webhook_id=1")


def test_store_satisfies_the_storefront_protocol():
    wc = store(ok_order)
    assert isinstance(wc, Storefront) and wc.system == "woocommerce"


async def test_newest_order_created_at_asks_for_one_order_newest_first():
    answers = [[{"id": 9, "date_created": "2026-05-01T14:00:05",
                 "date_created_gmt": "2026-05-01T12:00:05"}], []]
    rec = Recorder(lambda request: httpx.Response(200, json=answers.pop(0)))
    shop = store(rec)
    assert await shop.newest_order_created_at() == datetime(2026, 5, 1, 12, 0, 5, tzinfo=UTC)
    assert await shop.newest_order_created_at() is None  # a store without orders
    params = rec.requests[0].url.params
    assert (params["orderby"], params["order"], params["per_page"]) == ("date", "desc", "1")
    assert len(rec.requests) == 2
    await shop.aclose()

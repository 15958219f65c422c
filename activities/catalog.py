"""Catalog push: ERP price, cost and stock changes onto the store's products by SKU.

Changes are read since the watermark (minus an overlap, so an item saved in the same
second as the last read is not missed) and pushed in chunks that are whole multiples of
every store's batch limit, so N changed SKUs cost ceil(N / limit) writes. The store
connector writes only what differs, which is what makes the nightly full run (every item,
compared with the store) a drift report rather than a rewrite of the catalog.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from temporalio import activity

from activities.errors import classified
from activities.messages import CatalogInput, CatalogReport
from activities.runtime import Runtime
from connectors.base import CatalogPushResult

WATERMARK = "items_modified"
OVERLAP = timedelta(seconds=60)
CHUNK = 2000  # a multiple of 50, 100, 1000 and 2000: no store batch is left half full
REPORT_CAP = 200
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class CatalogActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @activity.defn(name="push_catalog")
    async def push_catalog(self, inp: CatalogInput) -> CatalogReport:
        conn = self.rt.connection(inp.connection_id)
        mark = self.rt.store.get_watermark(conn.id, WATERMARK)
        since = EPOCH if inp.full or mark is None else datetime.fromisoformat(mark) - OVERLAP
        erp, shop = self.rt.erp(conn), self.rt.storefront(conn)
        total, newest, chunk = CatalogPushResult(), None, []
        changes = 0
        store_sku = {item: sku for sku, item in conn.mappings.sku_to_item.items()}
        async with classified():
            async for change in erp.iter_item_changes(since):
                if change.sku in store_sku:  # the connection maps this SKU to another item id
                    change = change.model_copy(update={"sku": store_sku[change.sku]})
                chunk.append(change)
                changes += 1
                newest = max(newest or change.modified_at, change.modified_at)
                if len(chunk) >= CHUNK:
                    total = total.add(await shop.push_item_changes(chunk))
                    chunk = []
                    activity.heartbeat(changes)
            if chunk:
                total = total.add(await shop.push_item_changes(chunk))
        if newest is not None and (mark is None or newest.isoformat() > mark):
            self.rt.store.set_watermark(conn.id, WATERMARK, newest.isoformat())
        return CatalogReport(
            changes=changes, updated=len(total.updated), in_sync=len(total.in_sync),
            unknown=total.unknown[:REPORT_CAP], unknown_count=len(total.unknown),
            failed=dict(list(total.failed.items())[:REPORT_CAP]), write_calls=total.write_calls,
            read_calls=total.read_calls, watermark=newest)

    def all(self) -> list:
        return [self.push_catalog]

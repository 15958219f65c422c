"""Heartbeats for every activity attempt that has a heartbeat timeout, while it runs.

A worker that dies without a goodbye (SIGKILL, OOM kill, a lost host) stops heartbeating,
so the server retries its attempts after the heartbeat timeout (seconds) instead of the
whole start-to-close timeout (minutes). The activities themselves stay unaware."""
from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor


class HeartbeatInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Beating(next)


class _Beating(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.is_local or not info.heartbeat_timeout:
            return await self.next.execute_activity(input)
        beat = asyncio.create_task(_beat(info.heartbeat_timeout.total_seconds() / 3))
        try:
            return await self.next.execute_activity(input)
        finally:
            beat.cancel()


async def _beat(every: float) -> None:
    while True:
        await asyncio.sleep(every)
        activity.heartbeat()

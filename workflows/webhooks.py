"""WebhookHealth: re-enable disabled hooks, re-create missing ones, and switch the
connection's poll to polling mode while they were down (scheduled every few minutes)."""
from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.messages import CadenceInput, ConnectionInput, WebhookReport
    from activities.webhooks import WebhookActivities
    from workflows import policies


@workflow.defn(name="WebhookHealth")
class WebhookHealth:
    @workflow.run
    async def run(self, inp: ConnectionInput) -> WebhookReport:
        report = await workflow.execute_activity_method(
            WebhookActivities.check_webhooks, inp, **policies.STORE_READ)
        if report.checked:
            await workflow.execute_activity_method(
                WebhookActivities.set_poll_cadence,
                CadenceInput(connection_id=inp.connection_id, polling_mode=bool(report.repairs),
                             reason="; ".join(report.repairs)),
                **policies.LEDGER)
        return report

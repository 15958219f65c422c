"""How failures are written into Temporal's history: a one-line summary in the clear, the
message encrypted, and no Python stack.

The message of an error may carry what an ERP said about a customer, so it goes where the
payload codec encrypts it (the UI decodes it through the codec endpoint; `ml-connector audit`
reads it). What the UI's list shows instead of "Encoded failure" is the error's kind, which
names no one. Stacks are dropped at every level: they tell an operator nothing and carry
the worker's file paths.
"""
from __future__ import annotations

import temporalio.api.failure.v1
from temporalio.converter import DefaultFailureConverter, PayloadConverter

_KINDS = {"application_failure_info": None, "timeout_failure_info": "timed out",
          "canceled_failure_info": "cancelled", "terminated_failure_info": "terminated",
          "server_failure_info": "server error", "activity_failure_info": "activity failed",
          "child_workflow_execution_failure_info": "child workflow failed"}


def summary(failure: temporalio.api.failure.v1.Failure) -> str:
    """One line naming the kind of failure, never its message."""
    info = failure.WhichOneof("failure_info")
    if info == "application_failure_info":
        kind = failure.application_failure_info.type or "error"
    else:
        kind = _KINDS.get(info or "", None) or "failure"
    if info == "activity_failure_info":
        kind = f"{failure.activity_failure_info.activity_type.name} failed"
    return f"{kind} (details encrypted: `ml-connector audit` or the UI shows them)"


class OneLineFailureConverter(DefaultFailureConverter):
    def __init__(self) -> None:
        super().__init__(encode_common_attributes=False)

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter,
                   failure: temporalio.api.failure.v1.Failure) -> None:
        super().to_failure(exception, payload_converter, failure)  # causes come back here
        if failure.HasField("encoded_attributes"):  # a failure received as it was written
            return
        failure.encoded_attributes.CopyFrom(payload_converter.to_payloads(
            [{"message": failure.message, "stack_trace": ""}])[0])
        failure.message, failure.stack_trace = summary(failure), ""

"""Connecting to Temporal the one way every process does: pydantic data converter, payload
encryption, and the failure converter that encrypts error messages too."""
from __future__ import annotations

import asyncio
import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig

from connections.config import Environment
from connections.vault import Keyring
from starter.codec import codec_from_keyring
from starter.failures import OneLineFailureConverter

# A webhook's sender retries on 503 (and the poll catches up), so the receiver gives up on an
# unreachable frontend within about a second instead of the SDK's default ten.
FAIL_FAST = RetryConfig(initial_interval_millis=100, max_interval_millis=500,
                        max_elapsed_time_millis=1000, max_retries=3)


def data_converter(keyring: Keyring) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec_from_keyring(keyring),
        failure_converter_class=OneLineFailureConverter)


class TemporalUnavailable(Exception):
    """The Temporal frontend did not answer (the CLI prints this as one line)."""


async def connect(env: Environment, keyring: Keyring | None = None, *,
                  runtime: Runtime | None = None, retry_config: RetryConfig | None = None) -> Client:
    """``runtime``: the worker's telemetry runtime (Prometheus), when metrics are on."""
    keyring = keyring or Keyring.load(env.key_file)
    try:
        return await Client.connect(env.temporal_address, namespace=env.namespace,
                                    data_converter=data_converter(keyring), runtime=runtime,
                                    retry_config=retry_config)
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"Temporal at {env.temporal_address} (namespace {env.namespace}) is unreachable: "
            f"{str(exc).splitlines()[0][:200]}; set TEMPORAL_ADDRESS or start it") from None


class LazyClient:
    """The client of a process that must start and answer while Temporal is down (the
    receiver): connects on first use, tries again on the next use after a failure, and then
    keeps the client, whose channel reconnects by itself when the frontend comes back."""

    def __init__(self, env: Environment, keyring: Keyring | None = None, *,
                 retry_config: RetryConfig | None = FAIL_FAST) -> None:
        self._env, self._keyring, self._retry = env, keyring, retry_config
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        if self._client is None:
            async with self._lock:  # one connection attempt at a time, not one per request
                if self._client is None:
                    self._client = await connect(self._env, self._keyring,
                                                 retry_config=self._retry)
        return self._client

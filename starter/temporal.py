"""Connecting to Temporal the one way every process does: pydantic data converter, payload
encryption, and the failure converter that encrypts error messages too."""
from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime

from connections.config import Environment
from connections.vault import Keyring
from starter.codec import codec_from_keyring


def data_converter(keyring: Keyring) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec_from_keyring(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


class TemporalUnavailable(Exception):
    """The Temporal frontend did not answer (the CLI prints this as one line)."""


async def connect(env: Environment, keyring: Keyring | None = None, *,
                  runtime: Runtime | None = None) -> Client:
    """``runtime``: the worker's telemetry runtime (Prometheus), when metrics are on."""
    keyring = keyring or Keyring.load(env.key_file)
    try:
        return await Client.connect(env.temporal_address, namespace=env.namespace,
                                    data_converter=data_converter(keyring), runtime=runtime)
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"Temporal at {env.temporal_address} (namespace {env.namespace}) is unreachable: "
            f"{str(exc).splitlines()[0][:200]}; set TEMPORAL_ADDRESS or start it") from None


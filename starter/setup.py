"""What ``ml-connector connections add`` asks for each system: which flags become settings,
which credentials come from flags and which secrets from environment variables (or a
prompt), validated by the connector's own settings models before anything is saved."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from activities.runtime import connector_module


@dataclass(frozen=True)
class Secret:
    field: str
    env: str
    label: str


@dataclass(frozen=True)
class SystemForm:
    settings_model: str  # class name in connectors/<system>.py
    credentials_model: str
    settings_from_flags: dict[str, str]  # setting -> argparse dest
    credentials_from_flags: dict[str, str]  # credential -> argparse dest
    secrets: tuple[Secret, ...]


FORMS: dict[str, SystemForm] = {
    "woocommerce": SystemForm(
        "WooCommerceSettings", "WooCommerceCredentials",
        {"base_url": "store_url", "auth_mode": "store_auth"}, {"consumer_key": "store_key"},
        (Secret("consumer_secret", "ML_STORE_SECRET", "WooCommerce consumer secret"),)),
    "bigcommerce": SystemForm(
        "BigCommerceSettings", "BigCommerceCredentials",
        {"base_url": "store_url", "store_hash": "store_hash"}, {},
        (Secret("access_token", "ML_STORE_TOKEN", "BigCommerce API account access token"),)),
    "acumatica": SystemForm(
        "AcumaticaSettings", "AcumaticaCredentials",
        {"instance_url": "erp_url", "endpoint_version": "erp_version"},
        {"client_id": "erp_client_id", "username": "erp_username"},
        (Secret("client_secret", "ML_ERP_CLIENT_SECRET", "Acumatica client secret"),
         Secret("password", "ML_ERP_PASSWORD", "Acumatica password"))),
    "oracle_fusion": SystemForm(
        "OracleFusionSettings", "OracleFusionCredentials", {"instance_url": "erp_url"},
        {"client_id": "erp_client_id", "username": "erp_username"},
        (Secret("password", "ML_ERP_PASSWORD", "Oracle Fusion integration user's password"),
         Secret("client_secret", "ML_ERP_CLIENT_SECRET", "Oracle Fusion client secret"))),
    "exact_online": SystemForm(
        "ExactSettings", "ExactCredentials", {"base_url": "erp_url"},
        {"client_id": "erp_client_id"},
        (Secret("client_secret", "ML_ERP_CLIENT_SECRET", "Exact Online app client secret"),)),
}


class SetupError(ValueError):
    """A connection as given cannot work; the message names the flag to fix."""


def side_config(system: str, args: Any, extra_settings: dict[str, str], read_secret,
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, credentials) of one side, validated by the connector's own models.
    ``read_secret(env, label, required)`` returns the secret or None."""
    form = FORMS[system]
    settings = {k: getattr(args, dest) for k, dest in form.settings_from_flags.items()
                if getattr(args, dest, None) not in (None, "")}
    settings.update(extra_settings)
    if getattr(args, "ca_bundle", None):
        settings["ca_bundle"] = args.ca_bundle
    credentials: dict[str, Any] = {k: getattr(args, dest) for k, dest in form.credentials_from_flags.items()
                                   if getattr(args, dest, None)}
    module = connector_module(system)
    settings_model: type[BaseModel] = getattr(module, form.settings_model)
    credentials_model: type[BaseModel] = getattr(module, form.credentials_model)
    try:
        settings_model.model_validate(settings)
    except ValidationError as exc:
        raise SetupError(f"{system} settings: {_first(exc)}") from None
    for secret in form.secrets:
        required = credentials_model.model_fields[secret.field].is_required()
        value = read_secret(secret.env, secret.label, required)
        if value:
            credentials[secret.field] = value
    try:
        credentials_model.model_validate(credentials)
    except ValidationError as exc:
        raise SetupError(f"{system} credentials: {_first(exc)}") from None
    return settings, credentials


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "value"
    return f"{where}: {err['msg']}"

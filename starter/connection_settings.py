"""``ml-connector connections set NAME KEY=VALUE …``: change a connection's settings and
mappings in place, secrets untouched (no ``add --replace`` and no typing them again).

Keys: a connection setting (``poll_minutes``, ``receiver_url``, ``always_look_up``, …), a
mapping setting (``default_payment_method``, ``rounding_tolerance``, ``guest_customer``, …),
or one of a side's own settings as ``store.KEY`` / ``erp.KEY`` (``erp.release_documents``,
``erp.cash_account``); an empty value removes a side's setting. Every change is validated by
the same models as ``connections add`` before anything is saved."""
from __future__ import annotations

from pydantic import BaseModel, ValidationError

from activities.runtime import connector_module
from connections.config import Connection
from connectors.documents import Mappings
from starter.setup import FORMS

FIXED = {"id", "store_system", "erp_system", "store", "erp", "mappings"}
MAPPING_TABLES = {"sku_to_item": "--sku", "tax_codes": "--tax", "payment_methods": "--payment",
                  "line_rules": "--gl-rule"}  # edited with `connections map`
# What the schedules and the store's webhooks are made from: changing one re-applies them.
SCHEDULE_KEYS = {"receiver_url", "poll_minutes", "polling_mode_minutes", "catalog_minutes",
                 "webhook_check_minutes", "catalog_reconcile_hour", "shipment_minutes",
                 "customer_sync", "customer_sync_minutes"}
HOOK_KEYS = {"receiver_url", "customer_sync"}


class SettingError(ValueError):
    """A key or value the connection cannot take; the message names it."""


def settable_keys() -> list[str]:
    return ([k for k in Connection.model_fields if k not in FIXED]
            + [k for k in Mappings.model_fields if k not in MAPPING_TABLES] + ["store.KEY", "erp.KEY"])


def apply_settings(conn: Connection, assignments: dict[str, str]) -> tuple[Connection, set[str]]:
    """The connection with ``assignments`` applied and validated, and the keys that changed
    (``store``/``erp`` for a side's settings, ``mappings`` for a mapping)."""
    data = conn.model_dump(mode="json")
    touched: dict[str, set[str]] = {"store": set(), "erp": set()}
    changed: set[str] = set()
    for key, value in assignments.items():
        side, dot, name = key.partition(".")
        if dot and side in touched:
            if not name:
                raise SettingError(f"{key!r}: name the {side} setting, e.g. {side}.timeout=60")
            if value == "":
                data[side].pop(name, None)
            else:
                data[side][name] = value
                touched[side].add(name)
            changed.add(side)
        elif key in MAPPING_TABLES:
            raise SettingError(f"{key} is a table: use `ml-connector connections map "
                               f"{conn.id} {MAPPING_TABLES[key]} …`")
        elif key in Connection.model_fields and key not in FIXED:
            data[key] = value
            changed.add(key)
        elif key in Mappings.model_fields:
            data["mappings"][key] = value.strip()
            changed.add("mappings")
        else:
            raise SettingError(f"unknown setting {key!r}; settable: {', '.join(settable_keys())}")
    for side, names in touched.items():
        system = data[f"{side}_system"]
        model: type[BaseModel] = getattr(connector_module(system), FORMS[system].settings_model)
        try:
            validated = model.model_validate(data[side]).model_dump(mode="json")
        except ValidationError as exc:
            raise SettingError(f"{system} settings: {_first(exc)}") from None
        for name in names:  # typed as the connector reads it ("false" → false, "60" → 60)
            if name in validated:
                data[side][name] = validated[name]
    try:
        updated = Connection.model_validate(data)
    except ValidationError as exc:
        raise SettingError(_first(exc)) from None
    if (problem := updated.insecure_url_problem()) is not None:
        raise SettingError(problem)
    return updated, changed


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "value"
    return f"{where}: {err['msg']}"

"""What a user configures: a connection (one store + one ERP + mappings), and the process
environment every ml-connector process reads (documented in the README). Kept apart from
persistence: connections/store.py reads these and opens the store (``open_store``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from connectors.documents import Mappings
from connectors.http import insecure_http_allowed, insecure_url_problem

STORE_SYSTEMS = ("woocommerce", "bigcommerce")
ERP_SYSTEMS = ("acumatica", "oracle_fusion", "exact_online")
StoreSystem = Literal["woocommerce", "bigcommerce"]
ErpSystem = Literal["acumatica", "oracle_fusion", "exact_online"]

# Names of a connection's secrets in the store (all encrypted by the vault).
STORE_CREDENTIALS = "store_credentials"
ERP_CREDENTIALS = "erp_credentials"
ERP_TOKENS = "erp_tokens"
WEBHOOK_SECRET = "webhook_secret"


# How soon a changed connection reaches running processes: the receiver's cache of it and the
# workers' scan for quota changes (``connections set`` says so).
SETTINGS_REREAD_SECONDS = 30


class Connection(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    store_system: StoreSystem
    store: dict[str, Any]  # the store connector's settings (URL, auth mode, CA bundle)
    erp_system: ErpSystem
    erp: dict[str, Any]  # the ERP connector's settings (instance URL, endpoint version, ...)
    mappings: Mappings = Field(default_factory=Mappings)
    # Where the store delivers webhooks: the receiver's public base URL ("" = no webhooks,
    # the poll alone keeps the books).
    receiver_url: str = ""
    # The ERP's licensed request rate: its calls then run on their own task queue, rate
    # limited by the server across every worker (None: no limit, the main queue).
    erp_requests_per_minute: int | None = Field(default=None, ge=1)
    poll_minutes: int = Field(default=5, ge=1)  # catch-up poll
    polling_mode_minutes: int = Field(default=1, ge=1)  # the poll while a hook is down
    catalog_minutes: int = Field(default=15, ge=1)  # ERP price/stock changes -> store
    webhook_check_minutes: int = Field(default=5, ge=1)  # WebhookHealth
    catalog_reconcile_hour: int = Field(default=2, ge=0, le=23)  # nightly full compare, UTC
    shipment_minutes: int = Field(default=10, ge=1)  # ERP shipments -> store (tracking)
    # Align customer masters both ways (e.g. WooCommerce <-> Exact Online), not only at order time.
    customer_sync: bool = False
    customer_sync_minutes: int = Field(default=60, ge=1)
    # Look every document up by its external reference before creating it, new orders too:
    # for a connection that shares its store and ERP company with another (staging, a
    # second name), whose ledger cannot know what the other booked. Costs one ERP read
    # per document.
    always_look_up: bool = False

    def insecure_url_problem(self) -> str | None:
        """Why a credential-bearing URL setting (``*_url`` of the store or ERP) is refused:
        https:// only, unless that side sets ``allow_insecure_http`` (a local test server).
        Checked when a connection is added; each connector checks again when built."""
        for side, settings in (("store", self.store), ("erp", self.erp)):
            if insecure_http_allowed(settings):
                continue
            for name, value in settings.items():
                if name.endswith("_url") and isinstance(value, str) and value:
                    problem = insecure_url_problem(value, f"{side} setting {name} ({value})")
                    if problem:
                        return problem
        return None

    @property
    def delivery_url(self) -> str:
        return (f"{self.receiver_url.rstrip('/')}/webhooks/{self.id}/{self.store_system}"
                if self.receiver_url else "")


@dataclass(frozen=True)
class Environment:
    """Process settings, from ``ML_CONNECTOR_*`` and ``TEMPORAL_*`` variables."""

    home: Path = field(default_factory=lambda: Path(os.environ.get("ML_CONNECTOR_HOME", ".ml-connector")))
    db_url: str = ""
    temporal_address: str = field(default_factory=lambda: os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    namespace: str = field(default_factory=lambda: os.environ.get("TEMPORAL_NAMESPACE", "default"))
    task_queue: str = field(default_factory=lambda: os.environ.get("ML_CONNECTOR_TASK_QUEUE", "ml-connector"))

    def __post_init__(self) -> None:
        if not self.db_url:
            url = os.environ.get("ML_CONNECTOR_DB") or f"sqlite:///{self.home / 'connector.db'}"
            object.__setattr__(self, "db_url", url)

    @property
    def key_file(self) -> Path:
        return Path(os.environ.get("ML_CONNECTOR_KEY_FILE", self.home / "keys.json"))

    @property
    def key_file_label(self) -> str:
        """How messages name the key file: by its variable, never by a server path."""
        where = ("ML_CONNECTOR_KEY_FILE" if os.environ.get("ML_CONNECTOR_KEY_FILE")
                 else "ML_CONNECTOR_HOME/keys.json")
        return f"the key file ({where})"

"""The record of operator actions (who, what, when), kept in the error history
(connections/error_history.py): a mapping or a replay recorded there becomes the resolution
of the episodes it closes. Sign-ins and downloads are recorded there too, under no
connection. Detail text never carries personal data: order numbers, SKUs and mapping targets
only."""
from __future__ import annotations

from collections.abc import Iterable

from connections import error_history
from connections.error_history import Action, Resolution
from connections.store import ConnectionStore

MAPPING, REPLAY = str(Resolution.MAPPING), str(Resolution.REPLAY)


class ActionLog:
    def __init__(self, store: ConnectionStore) -> None:
        self.store = store

    def record(self, operator: str, action: str, *, connection_id: str = "",
               order_ids: Iterable[str] = (), detail: str = "") -> None:
        error_history.record_action(self.store, connection_id, action, order_ids=order_ids,
                                    actor=operator, detail=detail)

    def recent(self, limit: int = 200, connection_id: str | None = None) -> list[Action]:
        """Newest first."""
        return list(reversed(error_history.actions(self.store, connection_id)))[:limit]

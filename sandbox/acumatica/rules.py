"""Business rules of the simple entities: customers, stock and non-stock items."""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sandbox.acumatica.contract import ENTITIES, label
from sandbox.acumatica.model import Errors, new_id

if TYPE_CHECKING:
    from sandbox.acumatica.state import AcumaticaState


# --------------------------------------------------------------------------- business rules

class Rules:
    """Per-entity defaults, validation and derived values, applied to a draft before it is saved."""
    entity = ""
    prefix = ""

    def key_values(self, data: dict) -> dict | None:
        keys = ENTITIES[self.entity].keys
        values = {k: data.get(k) for k in keys}
        return values if all(v is not None for v in values.values()) else None

    def is_locked(self, record: dict) -> bool:
        return False

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None:
        """Why the entity's release action cannot run on ``doc`` (None: it can)."""
        return "The action cannot be performed on this record."

    def release(self, state: AcumaticaState, doc: dict) -> None:
        """What the release action does once the long-running operation completes."""

    def apply(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool) -> Errors:
        errors = Errors()
        self.validate(state, draft, changes, is_new, errors)
        self.complete(state, draft)
        return errors

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        if is_new and self.prefix and not draft.get(ENTITIES[self.entity].keys[0]):
            draft[ENTITIES[self.entity].keys[0]] = "<NEW>"
        for key in ENTITIES[self.entity].keys:
            if not draft.get(key):
                errors.add((key,), f"'{label(key)}' cannot be empty.")

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record["LastModifiedDateTime"] = state.now()

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        key = ENTITIES[self.entity].keys[-1]
        if self.prefix and record.get(key) in (None, "<NEW>"):
            record[key] = state.next_number(self.prefix)


class DocumentRules(Rules):
    """A document keyed by (type, number): the type defaults to the first of ``types``, the
    number reads ``<NEW>`` until the document is saved, and ``locked`` statuses freeze it."""
    type_field, number_field = "Type", "ReferenceNbr"
    types: tuple[str, ...] = ()
    locked: frozenset[str] = frozenset()

    def key_values(self, data: dict) -> dict | None:
        if data.get(self.number_field) is None:
            return None
        return {self.type_field: data.get(self.type_field) or self.types[0], self.number_field: data[self.number_field]}

    def is_locked(self, record: dict) -> bool:
        return record.get("Status") in self.locked

    def unknown_type(self, value: str) -> str:
        return f"'{value}' is not a valid value for '{self.type_field}'. Allowed: {', '.join(self.types)}."

    def open_draft(self, draft: dict, is_new: bool, errors: Errors) -> bool:
        """Default the type and mark a new document's number; False (with the error) for a
        type the screen does not know."""
        draft.setdefault(self.type_field, self.types[0])
        if draft[self.type_field] not in self.types:
            errors.add((self.type_field,), self.unknown_type(draft[self.type_field]))
            return False
        if is_new:
            draft[self.number_field] = "<NEW>"
        return True


class CustomerRules(Rules):
    entity, prefix = "Customer", "C"

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        super().validate(state, draft, changes, is_new, errors)
        sync_email(draft, changes)
        if not draft.get("CustomerName"):
            errors.add(("CustomerName",), "'Customer Name' cannot be empty.")

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("MainContact", {"id": new_id()}).setdefault("Address", {"id": new_id()})
        record.setdefault("Status", "Active")
        record.setdefault("CustomerClass", "DEFAULT")
        record.setdefault("CurrencyID", state.base_currency)
        record.setdefault("CreatedDateTime", state.now())
        record["NoteID"] = record["id"]
        super().complete(state, record)


def sync_email(customer: dict, changes: dict) -> None:
    """Customer.Email and MainContact/Email are one field (DefContact.EMail) under two names."""
    contact = customer.setdefault("MainContact", {"id": new_id()})
    if "Email" in changes:
        contact["Email"] = changes["Email"]
    elif "Email" in (changes.get("MainContact") or {}):
        customer["Email"] = contact.get("Email")


class StockItemRules(Rules):
    entity = "StockItem"

    def complete(self, state: AcumaticaState, record: dict) -> None:
        for name, value in (("ItemStatus", "Active"), ("ItemType", "Finished Good"), ("BaseUOM", "EA"),
                            ("SalesUOM", "EA"), ("ValuationMethod", "Average"), ("ItemClass", "STOCKITEM")):
            record.setdefault(name, value)
        warehouses = record.setdefault("WarehouseDetails", [])
        for detail in warehouses:
            detail.setdefault("QtyOnHand", Decimal(0))
            detail.setdefault("Status", "Active")
        if not record.get("DefaultWarehouseID") and warehouses:
            record["DefaultWarehouseID"] = warehouses[0].get("WarehouseID")
        record["NoteID"] = record["id"]
        record["LastModified"] = state.now()
        super().complete(state, record)


class NonStockItemRules(Rules):
    entity = "NonStockItem"

    def complete(self, state: AcumaticaState, record: dict) -> None:
        for name, value in (("ItemStatus", "Active"), ("ItemType", "Non-Stock Item"), ("BaseUnit", "EA"),
                            ("SalesUnit", "EA"), ("ItemClass", "NONSTOCK")):
            record.setdefault(name, value)
        record["NoteID"] = record["id"]
        super().complete(state, record)

"""Sales orders and shipments: order types, shipping, confirmation and the invoice they prepare."""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.acumatica.invoices import _midnight, customer_of, number_lines, price_line, settle_tax
from sandbox.acumatica.model import _same_key, new_id
from sandbox.acumatica.rules import DocumentRules, Rules
from sandbox.acumatica.values import money
from sandbox.acumatica.views import plain

if TYPE_CHECKING:
    from sandbox.acumatica.model import Errors
    from sandbox.acumatica.state import AcumaticaState


# ---- sales orders

ORDER_TYPES = ("SO",)
CLOSED_ORDER = {"Completed", "Cancelled"}


class SalesOrderRules(DocumentRules):
    """SO301000: lines priced like invoice lines (``OrderQty``, ``LineDescription``), taxes taken as
    sent, ``OrderTotal = lines + tax``; ``Totals.UnpaidBalance`` falls as applied payments are released."""
    entity = "SalesOrder"
    type_field, number_field = "OrderType", "OrderNbr"
    types, locked = ORDER_TYPES, frozenset(CLOSED_ORDER)

    def unknown_type(self, value: str) -> str:
        return f"'{value}' cannot be found in the system."

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("OrderNbr") in (None, "<NEW>"):
            record["OrderNbr"] = state.next_number("", f"SOORDER-{record['OrderType']}")
        for tax in record.get("TaxDetails") or []:
            tax["OrderNbr"] = record["OrderNbr"]

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        if not self.open_draft(draft, is_new, errors):
            return
        customer = customer_of(state, draft, errors)
        if not draft.get("CurrencyID"):
            draft["CurrencyID"] = (customer or {}).get("CurrencyID") or state.base_currency
        currency = draft["CurrencyID"]
        lines = draft.setdefault("Details", [])
        for index, line in enumerate(lines):
            price_line(state, draft, line, index, errors, currency=currency, qty_field="OrderQty",
                       description_field="LineDescription")
        number_lines(lines)
        set_open_quantities(state, draft)
        line_total = money(sum((line.get("Amount") or Decimal(0) for line in lines), Decimal(0)), currency)
        for index, tax in enumerate(draft.setdefault("TaxDetails", [])):
            settle_tax(state, currency, line_total, tax, index, errors)
            tax.update(OrderType=draft["OrderType"], OrderNbr=draft["OrderNbr"])
        tax_total = money(sum((t.get("TaxAmount") or Decimal(0) for t in draft["TaxDetails"]), Decimal(0)), currency)
        draft["TaxTotal"] = tax_total
        draft["OrderTotal"] = line_total + tax_total
        draft["OrderedQty"] = sum((line.get("OrderQty") or Decimal(0) for line in lines), Decimal(0))
        paid = sum((p.get("AppliedToOrder") or Decimal(0) for p in draft.setdefault("Payments", [])), Decimal(0))
        zero = money(Decimal(0), currency)
        draft.setdefault("Totals", {"id": new_id()}).update(
            LineTotalAmount=line_total, TaxTotal=tax_total, DiscountTotal=zero, MiscTotalAmount=zero,
            UnbilledAmount=draft["OrderTotal"], UnbilledQty=draft["OrderedQty"],
            UnpaidBalance=draft["OrderTotal"] - paid)

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("Hold", False)
        if record.get("Status") not in CLOSED_ORDER:
            record["Status"] = "On Hold" if record["Hold"] else "Open"
        record["Date"] = _midnight(record.get("Date") or state.today())
        record.setdefault("CreatedDate", state.now())
        record.setdefault("Approved", True)
        record.setdefault("CreditHold", False)
        record["BaseCurrencyID"] = state.base_currency
        record["LastModified"] = state.now()
        record["NoteID"] = record["id"]
        super().complete(state, record)


# ---- shipments

SHIPMENT_TYPES = ("Shipment",)
CONFIRMED_SHIPMENT = {"Confirmed", "Completed", "Invoiced", "Partially Invoiced"}


def needs_shipment(state: AcumaticaState, inventory_id: Any) -> bool:
    """Stock items ship; non-stock items (shipping, fees) only when they require a shipment."""
    found = state.item(inventory_id) if inventory_id else None
    return found is not None and (found[0] == "StockItem" or bool(found[1].get("RequireShipment")))


def shipped_quantities(state: AcumaticaState, order: dict, *, confirmed_only: bool,
                       except_shipment: str | None = None) -> dict[Any, Decimal]:
    """Quantity of each order line on shipments (confirmed ones, or every one but ``except_shipment``:
    an open shipment already allocates what it ships)."""
    out: dict[Any, Decimal] = {}
    for shipment in state.records["Shipment"].values():
        if shipment["id"] == except_shipment or (confirmed_only and shipment.get("Status") not in CONFIRMED_SHIPMENT):
            continue
        for line in shipment.get("Details") or []:
            if (_same_key(line.get("OrderType"), order.get("OrderType"))
                    and _same_key(line.get("OrderNbr"), order.get("OrderNbr"))):
                key = line.get("OrderLineNbr")
                out[key] = out.get(key, Decimal(0)) + (line.get("ShippedQty") or Decimal(0))
    return out


def set_open_quantities(state: AcumaticaState, order: dict) -> None:
    """``OpenQty`` of each sales order line: ordered less what confirmed shipments shipped."""
    shipped = shipped_quantities(state, order, confirmed_only=True)
    for line in order.get("Details") or []:
        line["OpenQty"] = (line.get("OrderQty") or Decimal(0)) - shipped.get(line.get("LineNbr"), Decimal(0))


class ShipmentRules(Rules):
    """SO302000: lines come from open sales orders of the shipment's customer (a line naming only
    the order adds every line still to ship, like "Add Order"), packages carry the tracking numbers,
    ``ConfirmShipment`` confirms it; an order shipped in full becomes Completed."""
    entity = "Shipment"

    def is_locked(self, record: dict) -> bool:
        return record.get("Status") in CONFIRMED_SHIPMENT | {"Cancelled"}

    def assign_number(self, state: AcumaticaState, record: dict) -> None:
        if record.get("ShipmentNbr") in (None, "<NEW>"):
            record["ShipmentNbr"] = state.next_number("", "SOSHIPMENT")
        for row in record.get("Orders") or []:
            row["ShipmentNbr"] = record["ShipmentNbr"]

    def validate(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool, errors: Errors) -> None:
        draft.setdefault("Type", SHIPMENT_TYPES[0])
        draft.setdefault("Operation", "Issue")
        if draft["Type"] not in SHIPMENT_TYPES:
            errors.add(("Type",), f"'{draft['Type']}' is not a valid value for 'Type'. "
                                  f"Allowed: {', '.join(SHIPMENT_TYPES)}.")
            return
        if is_new:
            draft["ShipmentNbr"] = "<NEW>"
        customer_of(state, draft, errors)
        lines: list[dict] = []
        for index, line in enumerate(draft.setdefault("Details", [])):
            lines += self._lines(state, draft, line, index, errors)
        draft["Details"] = lines
        number_lines(lines)
        draft["Orders"] = self._orders(state, draft)
        packages = draft.setdefault("Packages", [])
        number_lines(packages)
        for package in packages:
            package.setdefault("Confirmed", False)
            package.setdefault("Weight", Decimal(0))
            package["NoteID"] = package["id"]
        draft["PackageCount"] = len(packages)
        draft["PackageWeight"] = sum((p["Weight"] for p in packages), Decimal(0))
        draft["ShippedQty"] = sum((line.get("ShippedQty") or Decimal(0) for line in lines), Decimal(0))
        if not draft.get("WarehouseID") and lines:
            draft["WarehouseID"] = lines[0].get("WarehouseID")

    def _lines(self, state: AcumaticaState, draft: dict, line: dict, index: int, errors: Errors) -> list[dict]:
        """The shipment lines one sent line stands for (every open line of its order when it names
        only the order)."""
        path = ("Details", index)
        order = state.find("SalesOrder", OrderType=line.get("OrderType") or ORDER_TYPES[0],
                           OrderNbr=line.get("OrderNbr")) if line.get("OrderNbr") else None
        if order is None:
            errors.add(path + ("OrderNbr",), "'Order Nbr.' cannot be found in the system.")
            return [line]
        if order.get("Status") != "Open":
            errors.add(path + ("OrderNbr",), f"The sales order {order['OrderNbr']} has the {order.get('Status')} "
                                             f"status; only open orders can be shipped.")
            return [line]
        if not _same_key(order.get("CustomerID"), draft.get("CustomerID")):
            errors.add(path + ("OrderNbr",), "The sales order belongs to another customer.")
            return [line]
        allocated = shipped_quantities(state, order, confirmed_only=False, except_shipment=draft["id"])
        order_lines = {ln.get("LineNbr"): ln for ln in order.get("Details") or []}
        if line.get("OrderLineNbr") is None:
            wanted = [{**line, "id": new_id(), "OrderLineNbr": nbr} for nbr, ln in order_lines.items()
                      if needs_shipment(state, ln.get("InventoryID"))
                      and (ln.get("OrderQty") or 0) > allocated.get(nbr, 0)]
            if not wanted:
                errors.add(path + ("OrderNbr",), f"The sales order {order['OrderNbr']} has nothing left to ship.")
                return [line]
        else:
            wanted = [line]
        for row in wanted:
            source = order_lines.get(row["OrderLineNbr"])
            if source is None or not needs_shipment(state, source.get("InventoryID")):
                errors.add(path + ("OrderLineNbr",), "The order line cannot be found or needs no shipment.")
                continue
            left = (source.get("OrderQty") or Decimal(0)) - allocated.get(row["OrderLineNbr"], Decimal(0))
            row.update(OrderType=order["OrderType"], OrderNbr=order["OrderNbr"], InventoryID=source.get("InventoryID"),
                       UOM=source.get("UOM"), Description=source.get("LineDescription"),
                       OrderedQty=source.get("OrderQty"), OpenQty=left, OriginalQty=left)
            row.setdefault("WarehouseID", source.get("WarehouseID"))
            if row.get("ShippedQty") is None:
                row["ShippedQty"] = left
            if not 0 < row["ShippedQty"] <= left:
                errors.add(path + ("ShippedQty",), f"The shipped quantity must be greater than 0 and not exceed "
                                                   f"the open quantity ({left}).")
        return wanted

    @staticmethod
    def _orders(state: AcumaticaState, draft: dict) -> list[dict]:
        """The Orders tab: one row per sales order on the shipment."""
        rows: dict[tuple, dict] = {}
        for line in draft["Details"]:
            key = (line.get("OrderType"), line.get("OrderNbr"))
            order = state.find("SalesOrder", OrderType=key[0], OrderNbr=key[1]) if key[1] else None
            if order is None:
                continue
            row = rows.setdefault(key, {"id": new_id(), "OrderType": order["OrderType"], "OrderNbr": order["OrderNbr"],
                                        "ShipmentNbr": draft.get("ShipmentNbr"), "ShipmentType": draft["Type"],
                                        "ShippedQty": Decimal(0), "OrderNoteID": order["id"]})
            row["ShippedQty"] += line.get("ShippedQty") or Decimal(0)
        return list(rows.values())

    def complete(self, state: AcumaticaState, record: dict) -> None:
        record.setdefault("Hold", False)
        if record.get("Status") not in CONFIRMED_SHIPMENT | {"Cancelled"}:
            record["Status"] = "On Hold" if record["Hold"] else "Open"
        record["ShipmentDate"] = _midnight(record.get("ShipmentDate") or state.today())
        record.setdefault("CreatedDateTime", state.now())
        record["BaseCurrencyID"] = state.base_currency
        record["NoteID"] = record["id"]
        super().complete(state, record)

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None:
        if doc.get("Status") in CONFIRMED_SHIPMENT:
            return "The shipment has already been confirmed."
        if doc.get("Status") != "Open":
            return "The shipment is on hold and cannot be confirmed."
        if not doc.get("ShippedQty"):
            return "The shipment cannot be confirmed because it has no shipped quantity."
        return None

    def release(self, state: AcumaticaState, doc: dict) -> None:
        """ConfirmShipment: the shipment and its packages are confirmed, its orders' open quantities
        fall, and an order with nothing left to ship is Completed."""
        doc["Status"] = "Confirmed"
        for package in doc.get("Packages") or []:
            package["Confirmed"] = True
        doc["LastModifiedDateTime"] = state.now()
        for row in doc.get("Orders") or []:
            order = state.find("SalesOrder", OrderType=row["OrderType"], OrderNbr=row["OrderNbr"])
            if order is None:
                continue
            set_open_quantities(state, order)
            if all(line["OpenQty"] <= 0 for line in order.get("Details") or []
                   if needs_shipment(state, line.get("InventoryID"))):
                order["Status"] = "Completed"
            order["LastModified"] = order["LastModifiedDateTime"] = state.now()


def plain_shipment(shipment: dict) -> dict:
    return {"id": shipment["id"], "shipment_nbr": shipment.get("ShipmentNbr"), "type": shipment.get("Type"),
            "status": shipment.get("Status"), "customer": shipment.get("CustomerID"),
            "ship_via": shipment.get("ShipVia"), "shipment_date": plain(shipment.get("ShipmentDate")),
            "shipped_qty": plain(shipment.get("ShippedQty")),
            "last_modified": plain(shipment.get("LastModifiedDateTime")),
            "orders": [{"order_type": o.get("OrderType"), "order_nbr": o.get("OrderNbr"),
                        "shipped_qty": plain(o.get("ShippedQty"))} for o in shipment.get("Orders") or []],
            "tracking_numbers": [p.get("TrackingNbr") for p in shipment.get("Packages") or [] if p.get("TrackingNbr")]}

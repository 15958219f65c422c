"""Product attributes and variation names as core derives them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from sandbox.woocommerce.model import Product


def normalise_attributes(value: Any, variation: bool) -> list[dict]:
    if isinstance(value, dict):
        value = [{"name": k, "option": v} for k, v in value.items()]
    result = []
    for attribute in value or []:
        entry = {"id": int(attribute.get("id", 0) or 0), "name": str(attribute.get("name", ""))}
        if variation:
            entry["option"] = str(attribute.get("option", ""))
        else:
            entry |= {"position": int(attribute.get("position", 0) or 0), "visible": True,
                      "variation": bool(attribute.get("variation", False)),
                      "options": [str(o) for o in attribute.get("options", [])]}
        result.append(entry)
    return result


def variation_name(product: Product, parent: Product | None) -> str:
    if parent is None:
        return product.name
    options = ", ".join(a["option"] for a in product.attributes)
    return f"{parent.name} - {options}" if options else parent.name

"""Two connections reading one store and booking into one ERP company: each has its own
ledger, so an order both see can be booked twice unless each looks documents up in the ERP
before creating them. ``connections add`` warns, naming the other connection."""
from __future__ import annotations

from connections.config import Connection


def _url(value: object) -> str:
    return str(value or "").strip().rstrip("/").lower()


def store_identity(conn: Connection) -> tuple:
    s = conn.store
    if conn.store_system == "bigcommerce":
        return (conn.store_system, _url(s.get("base_url")), str(s.get("store_hash", "")).lower())
    return (conn.store_system, _url(s.get("base_url")))


def erp_identity(conn: Connection) -> tuple:
    """The ERP instance, and the company within it where the settings name one (Oracle's
    business unit; Exact's division, None while not yet discovered)."""
    e = conn.erp
    if conn.erp_system == "exact_online":
        return (conn.erp_system, _url(e.get("base_url")) or str(e.get("region", "NL")).upper())
    if conn.erp_system == "oracle_fusion":
        return (conn.erp_system, _url(e.get("instance_url")), str(e.get("business_unit", "")))
    return (conn.erp_system, _url(e.get("instance_url")))


def _same_company(a: Connection, b: Connection) -> bool:
    if erp_identity(a) != erp_identity(b):
        return False
    if a.erp_system == "exact_online":
        da, db = a.erp.get("division"), b.erp.get("division")
        return da is None or db is None or str(da) == str(db)
    return True


def overlapping(conn: Connection, others: list[Connection]) -> list[Connection]:
    """The other connections of the same store and the same ERP company."""
    return [o for o in others if o.id != conn.id and store_identity(o) == store_identity(conn)
            and _same_company(o, conn)]


LOOK_UP = "always_look_up"  # the setting that makes every post look its document up first


def look_up_setting() -> str | None:
    return LOOK_UP if LOOK_UP in Connection.model_fields else None


def warning(conn: Connection, other: Connection) -> str:
    setting = look_up_setting()
    if setting and getattr(conn, setting) and getattr(other, setting):
        return ""  # both already look every document up first
    fix = (f"set `ml-connector connections set {conn.id} {setting}=true` (and the same on "
           f"{other.id}) so every post looks its document up in the ERP first"
           if setting else "remove one of them, or give them different stores")
    return (f"WARNING: connection {other.id} already reads this store "
            f"({conn.store.get('base_url') or conn.store.get('store_hash')}) and books into the "
            f"same {conn.erp_system} company: their ledgers are separate, so an order both see "
            f"can be booked twice; {fix}")

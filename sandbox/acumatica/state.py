"""The tenant in memory: records, numbering, tokens, sessions and the request quota."""
from __future__ import annotations

import secrets
import time
from dataclasses import asdict, replace
from datetime import datetime, time as dtime, timezone
from decimal import Decimal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Protocol

from starlette.requests import Request

from sandbox.acumatica.contract import ENTITIES
from sandbox.acumatica.model import _bump, _key_tuple, _same_key, new_id, new_record
from sandbox.acumatica.records import plain_customer, plain_document, plain_order, plain_payment
from sandbox.acumatica.wire import QUOTA_WINDOW_SECONDS, RELEASED, SESSION_IDLE_SECONDS

if TYPE_CHECKING:
    from sandbox.acumatica.model import Errors, Grant, Operation, Settings


class EntityRules(Protocol):
    """What seeding asks of an entity's rules. The rules (sandbox/acumatica/entities.py) work on
    this state, so they are passed in rather than imported: the state stays below them."""

    def apply(self, state: AcumaticaState, draft: dict, changes: dict, is_new: bool) -> Errors: ...

    def complete(self, state: AcumaticaState, record: dict) -> None: ...

    def assign_number(self, state: AcumaticaState, record: dict) -> None: ...

    def release_problem(self, state: AcumaticaState, doc: dict) -> str | None: ...

    def release(self, state: AcumaticaState, doc: dict) -> None: ...


class AcumaticaState:
    """In-memory tenant: records, numbering, tokens, sessions, quota and request statistics.

    ``rules`` are the entities' rules by entity name, which the seeding methods apply."""

    def __init__(self, *, tenant: str, base_currency: str, settings: Settings,
                 rules: Mapping[str, EntityRules], clock: Callable[[], float] = time.time):
        self.tenant, self.base_currency, self.clock = tenant, base_currency, clock
        self.rules = rules
        self.initial_settings = replace(settings)
        self.settings = settings
        self.access_tokens: dict[str, tuple[float, Grant]] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.sessions: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        self.records: dict[str, dict[str, dict]] = {name: {} for name in ENTITIES}
        self.key_index: dict[str, dict[tuple, str]] = {name: {} for name in ENTITIES}
        self.taxes: dict[str, Decimal | None] = {}
        self.cash_accounts: dict[str, dict] = {}
        self.payment_methods: dict[str, dict] = {}
        self.counters: dict[str, int] = {}
        self.operations: dict[str, Operation] = {}
        self.request_log: list[dict] = []
        self.stats = {"total": 0, "throttled": 0, "token_requests": 0, "by_grant": {}, "by_method": {}, "by_entity": {}, "by_method_entity": {},
                      "by_status": {}}
        self.window_start: float | None = None
        self.window_count = 0
        self.settings.configure(asdict(self.initial_settings))

    def now(self) -> datetime:
        """Millisecond precision, so a timestamp read back and sent in a $filter compares equal."""
        moment = datetime.fromtimestamp(self.clock(), timezone.utc)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def today(self) -> datetime:
        return datetime.combine(self.now().date(), dtime(), timezone.utc)

    def next_number(self, prefix: str, sequence: str | None = None) -> str:
        """The next number of a numbering sequence (named after its prefix unless given)."""
        key = sequence or prefix
        self.counters[key] = self.counters.get(key, 0) + 1
        return f"{prefix}{self.counters[key]:06d}"

    # ---- records

    def find(self, entity: str, **keys: Any) -> dict | None:
        if tuple(keys) == ENTITIES[entity].keys:
            record_id = self.key_index[entity].get(_key_tuple(keys.values()))
            return self.records[entity].get(record_id) if record_id else None
        for record in self.records[entity].values():
            if all(_same_key(record.get(k), v) for k, v in keys.items()):
                return record
        return None

    def item(self, inventory_id: str) -> tuple[str, dict] | None:
        for entity in ("StockItem", "NonStockItem"):
            record = self.find(entity, InventoryID=inventory_id)
            if record:
                return entity, record
        return None

    def save(self, entity: str, record: dict) -> None:
        """Store a record in place (lists keep insertion order) and re-index its keys."""
        self._unindex(entity, self.records[entity].get(record["id"]))
        self.records[entity][record["id"]] = record
        self.key_index[entity][self._keys_of(entity, record)] = record["id"]

    def forget(self, entity: str, record_id: str) -> None:
        self._unindex(entity, self.records[entity].pop(record_id, None))

    def _unindex(self, entity: str, record: dict | None) -> None:
        if record is not None:
            self.key_index[entity].pop(self._keys_of(entity, record), None)

    @staticmethod
    def _keys_of(entity: str, record: dict) -> tuple:
        return _key_tuple(record.get(k) for k in ENTITIES[entity].keys)

    def add_stock_item(self, inventory_id: str, *, default_price: Any = 0, last_cost: Any = 0,
                       qty_on_hand: Any = 0, warehouse_id: str = "WHOLESALE", description: str | None = None,
                       item_status: str = "Active") -> dict:
        record = self.find("StockItem", InventoryID=inventory_id) or new_record()
        record.update(InventoryID=inventory_id, Description=description or inventory_id,
                      DefaultPrice=Decimal(str(default_price)), LastCost=Decimal(str(last_cost)),
                      ItemStatus=item_status, DefaultWarehouseID=warehouse_id)
        record["WarehouseDetails"] = [{"id": new_id(), "WarehouseID": warehouse_id, "IsDefault": True,
                                       "QtyOnHand": Decimal(str(qty_on_hand)), "Status": "Active"}]
        self.rules["StockItem"].complete(self, record)
        self.save("StockItem", record)
        return record

    def add_non_stock_item(self, inventory_id: str, *, default_price: Any = 0, last_cost: Any = 0,
                           description: str | None = None, item_type: str = "Non-Stock Item",
                           item_status: str = "Active") -> dict:
        record = self.find("NonStockItem", InventoryID=inventory_id) or new_record()
        record.update(InventoryID=inventory_id, Description=description or inventory_id, ItemType=item_type,
                      DefaultPrice=Decimal(str(default_price)), LastCost=Decimal(str(last_cost)),
                      CurrentCost=Decimal(str(last_cost)), ItemStatus=item_status)
        self.rules["NonStockItem"].complete(self, record)
        self.save("NonStockItem", record)
        return record

    def add_customer(self, customer_id: str, *, name: str | None = None, email: str | None = None,
                     currency: str | None = None, customer_class: str = "DEFAULT",
                     contact: dict | None = None, account_ref: str | None = None) -> dict:
        """A customer as a user makes it on the Customers screen; ``contact``: its main
        contact's fields (``Phone1``, ``FirstName``, ``Address: {AddressLine1, ...}``, ...)."""
        record = self.find("Customer", CustomerID=customer_id) or new_record()
        record.update(CustomerID=customer_id, CustomerName=name or customer_id, Email=email,
                      CurrencyID=currency or self.base_currency, CustomerClass=customer_class)
        if account_ref is not None:
            record["AccountRef"] = account_ref
        main = record.setdefault("MainContact", {"id": new_id()})
        main.update({k: v for k, v in (contact or {}).items() if k != "Address"})
        if (contact or {}).get("Address"):
            main.setdefault("Address", {"id": new_id()}).update(contact["Address"])
        main["Email"] = email
        self.rules["Customer"].complete(self, record)
        self.save("Customer", record)
        return record

    def add_tax(self, tax_id: str, rate: Any = None) -> None:
        self.taxes[tax_id] = None if rate is None else Decimal(str(rate))

    def add_cash_account(self, cash_account: str, *, currency: str | None = None,
                         description: str | None = None) -> dict:
        account = {"CashAccountCD": cash_account, "CurrencyID": currency or self.base_currency,
                   "Description": description or cash_account}
        self.cash_accounts[cash_account.casefold()] = account
        return account

    def add_payment_method(self, method: str, *, cash_account: str | None = None,
                           cash_accounts: tuple[str, ...] = (), active: bool = True) -> dict:
        """A payment method usable in AR; ``cash_account`` is its default, ``cash_accounts`` the
        others allowed. Accounts not seeded yet are added in the base currency."""
        allowed = [a for a in (cash_account, *cash_accounts) if a]
        for account in allowed:
            if account.casefold() not in self.cash_accounts:
                self.add_cash_account(account)
        record = {"PaymentMethodID": method, "Active": active, "UseInAR": True,
                  "DefaultCashAccount": cash_account, "CashAccounts": allowed}
        self.payment_methods[method.casefold()] = record
        return record

    def order_by_ref(self, external_ref: str) -> dict | None:
        return next((o for o in self.records["SalesOrder"].values()
                     if _same_key(o.get("ExternalRef"), external_ref)), None)

    def add_shipment(self, order: dict, *, tracking_numbers: tuple[str, ...] = (), ship_via: str | None = None,
                     shipment_date: datetime | None = None, confirm: bool = True) -> dict:
        """What a warehouse clerk does on SO302000: a shipment of everything still to ship on ``order``,
        one package per tracking number, then Confirm Shipment. ValueError with Acumatica's message."""
        draft = new_record()
        draft.update(CustomerID=order.get("CustomerID"), ShipVia=ship_via, ShipmentDate=shipment_date,
                     Details=[{"id": new_id(), "OrderType": order["OrderType"], "OrderNbr": order["OrderNbr"]}],
                     Packages=[{"id": new_id(), "TrackingNbr": t} for t in tracking_numbers])
        shipment = self.rules["Shipment"]
        errors = shipment.apply(self, draft, {}, True)
        if errors:
            raise ValueError("; ".join(errors.values()))
        shipment.assign_number(self, draft)
        self.save("Shipment", draft)
        if confirm:
            problem = shipment.release_problem(self, draft)
            if problem:
                raise ValueError(problem)
            shipment.release(self, draft)
        return draft

    def documents(self, type: str | None = None) -> list[dict]:
        """Invoices and credit memos, then payments, then sales orders, as plain JSON."""
        docs = [plain_document(d) for d in self.records["SalesInvoice"].values()]
        docs += [plain_payment(p) for p in self.records["Payment"].values()]
        docs += [plain_order(o) for o in self.records["SalesOrder"].values()]
        return [d for d in docs if type is None or d["type"] == type]

    def customers(self) -> list[dict]:
        """Each customer with ``balance``: what it owes (released invoices' balances) less its
        credit (released credit memos' balances, payments' unapplied balances)."""
        return [{**plain_customer(c), "balance": str(self.customer_balance(c["CustomerID"]))}
                for c in self.records["Customer"].values()]

    def customer_balance(self, customer_id: str) -> Decimal:
        balance = Decimal(0)
        for doc in self.records["SalesInvoice"].values():
            if doc.get("Status") in RELEASED and _same_key(doc.get("CustomerID"), customer_id):
                balance += -doc["Balance"] if doc.get("Type") == "Credit Memo" else doc["Balance"]
        for payment in self.records["Payment"].values():
            if payment.get("Status") in RELEASED and _same_key(payment.get("CustomerID"), customer_id):
                balance -= payment.get("AvailableBalance") or Decimal(0)
        return balance

    # ---- authentication

    def issue_tokens(self, grant: Grant) -> dict:
        access = secrets.token_urlsafe(32)
        self.access_tokens[access] = (self.clock() + self.settings.token_lifetime, grant)
        body = {"access_token": access, "expires_in": self.settings.token_lifetime,
                "token_type": "Bearer", "scope": " ".join(grant.scopes)}
        if "offline_access" in grant.scopes:
            refresh = secrets.token_urlsafe(32)
            self.refresh_tokens[refresh] = grant
            body["refresh_token"] = refresh
        return body

    def redeem_refresh_token(self, token: str, client_id: str) -> Grant | None:
        """Single use: the presented refresh token is spent whether or not it is still good."""
        grant = self.refresh_tokens.pop(token, None)
        if grant is None or grant.client_id != client_id or grant.chain_expires <= self.clock():
            return None
        return grant

    def open_session(self) -> str:
        session = secrets.token_hex(32)
        self.sessions[session] = self.clock()
        return session

    def is_authenticated(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            entry = self.access_tokens.get(token.strip())
            return bool(entry) and entry[0] > self.clock() and "api" in entry[1].scopes
        session = request.cookies.get(".ASPXAUTH")
        last_seen = self.sessions.get(session or "")
        if last_seen is None or self.clock() - last_seen > SESSION_IDLE_SECONDS:
            return False
        self.sessions[session] = self.clock()
        return True

    def expire_tokens(self) -> None:
        self.access_tokens.clear()
        self.sessions.clear()

    # ---- quota and statistics

    def admit(self) -> float | None:
        """None when the request fits the per-minute quota, else seconds until the window resets."""
        limit, now = self.settings.requests_per_minute, self.clock()
        if limit <= 0:
            return None
        if self.window_start is None or now - self.window_start >= QUOTA_WINDOW_SECONDS:
            self.window_start, self.window_count = now, 0
        if self.window_count >= limit:
            return self.window_start + QUOTA_WINDOW_SECONDS - now
        self.window_count += 1
        return None

    def record_request(self, method: str, path: str, query: str, entity: str | None, status: int) -> None:
        self.request_log.append({"method": method, "path": path, "query": query, "entity": entity,
                                 "status": status, "at": self.clock()})
        self.stats["total"] += 1
        _bump(self.stats["by_method"], method)
        _bump(self.stats["by_entity"], entity or "-")
        _bump(self.stats["by_method_entity"], f"{method} {entity or '-'}")
        _bump(self.stats["by_status"], str(status))
        if status == 429:
            self.stats["throttled"] += 1

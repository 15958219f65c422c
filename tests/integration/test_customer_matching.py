"""Customer matching never corrupts the ERP's customer master: through the real workflows
(a real Temporal server, the sandboxes over HTTP/TLS, the receiver, a worker), each ERP
starts from a customer the merchant made there, and WooCommerce orders meet it.

- A guest order with its e-mail, as typed and in another case, leaves it exactly as it was;
  the invoice goes to ml-connector's own customer ("own", the default) or to the merchant's
  ("email", the merchant's choice).
- A guest and a registered buyer with one e-mail, ordering at once, are one customer (also
  BigCommerce → Exact).
- The customer sync leaves the merchant's account as it was.
- Oracle: a party with the shopper's organisation name is not the shopper's.
- Exact: a prospect or a supplier with the e-mail does not become a customer.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.integration.conftest import eventually

ERPS = ["acumatica", "exact_online", "oracle_fusion"]
PAT = "pat@acme.example"


class Merchant:
    """What a merchant does in each ERP, and what the test reads back: the customers it made
    (every field, as the ERP holds them) and who an invoice is booked to."""

    def __init__(self, stack) -> None:
        self.stack, self.erp = stack, stack.erp_system

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = await self.stack.http.request(method, self.stack.erp_server.url + path, json=body)
        assert resp.status_code < 300, resp.text
        return resp.json()

    async def make_customer(self, name: str, email: str, **extra: Any) -> str:
        """A customer with a phone and an address; its key as invoices name it."""
        if self.erp == "acumatica":
            number = extra.get("CustomerID", "ACME01")
            await self.control("POST", "/_sandbox/customers", [{
                "CustomerID": number, "CustomerName": name, "Email": email,
                "MainContact": {"FirstName": "Pat", "LastName": "Ng", "Phone1": "+1 512 555 0100",
                                "Address": {"AddressLine1": "1 Industry Way", "City": "Austin",
                                            "State": "TX", "PostalCode": "73301",
                                            "Country": "US"}}}])
            return number
        if self.erp == "exact_online":
            code = extra.pop("Code", "4100")
            await self.control("POST", "/_sandbox/seed", {"accounts": [{
                "Code": code, "Name": name, "Email": email, "Status": "C",
                "Phone": "+31 20 555 0100", "AddressLine1": "Industrieweg 1",
                "City": "Utrecht", "Postcode": "3542 AD", "Country": "NL", **extra}]})
            [account] = [a for a in await self.records() if a["Code"].strip() == code]
            return account["ID"]
        await self.control("POST", "/_sandbox/customers", [{
            "name": name, "email": email, "phone": "+1 512 555 0100",
            "address": {"Address1": "1 Industry Way", "City": "Austin", "State": "TX",
                        "PostalCode": "73301", "Country": "US"}}])
        accounts = await self.control("GET", "/_sandbox/customers")
        return next(a["AccountNumber"] for a in accounts if a["CustomerName"] == name)

    async def records(self) -> list[dict]:
        """Every customer record in full (Oracle: the party and its accounts)."""
        if self.erp == "acumatica":
            return await self.control("GET", "/_sandbox/customers")
        if self.erp == "exact_online":
            return await self.control("GET", "/_sandbox/accounts")
        parties = await self.control("GET", "/_sandbox/parties")
        accounts = await self.control("GET", "/_sandbox/customers")
        return [{**p, "accounts": [{k: v for k, v in a.items() if k != "balance"}  # not master data
                                   for a in accounts if a["CustomerId"] == p["PartyId"]]}
                for p in parties]

    @staticmethod
    def email_of(record: dict) -> str:
        return str(record.get("email") or record.get("Email") or record.get("EmailAddress")
                   or "").casefold()

    async def customer_of(self, external_ref: str) -> str:
        """Who the invoice ``external_ref`` is booked to, once it is there."""
        async def booked():
            return [d for d in await self.stack.erp_documents() if d.external_ref == external_ref]

        [doc] = await eventually(booked, timeout=90)
        return str(doc.raw.get("customer") or doc.raw.get("ordered_by"))


async def shop_stack(stack_factory, erp: str, match: str = "own", store: str = "woocommerce"):
    stack = await stack_factory(store_system=store, erp_system=erp)
    conn = await stack.add_connection(f"cm-{uuid.uuid4().hex[:8]}")
    conn.mappings.customer_match = match
    stack.store.save_connection(conn)
    return stack, conn, Merchant(stack)


def unchanged(before: list[dict], after: list[dict]) -> None:
    """Every record the merchant had is still there, field for field."""
    now = {str(r.get("id") or r.get("ID") or r.get("PartyId")): r for r in after}
    for record in before:
        key = str(record.get("id") or record.get("ID") or record.get("PartyId"))
        assert now.get(key) == record, (record, now.get(key))


@pytest.mark.parametrize("match", ["own", "email"])
@pytest.mark.parametrize("erp", ERPS)
async def test_a_guest_with_a_merchant_customers_email_never_changes_it(stack_factory, erp, match):
    stack, conn, merchant = await shop_stack(stack_factory, erp, match)
    acme = await merchant.make_customer("ACME Corp", PAT)
    before = await merchant.records()
    prefix = conn.mappings.document_prefix
    async with stack.store_client() as admin:
        typed = await stack.shop_sandbox.place_order(admin, quantities=(1,), email=PAT)
        cased = await stack.shop_sandbox.place_order(admin, quantities=(1,), email="Pat@ACME.Example")
    booked = {await merchant.customer_of(f"{prefix}{p.id}") for p in (typed, cased)}
    after = await merchant.records()
    unchanged(before, after)
    if match == "email":
        assert booked == {acme}
        assert len(after) == len(before)  # nobody new
    else:
        [ours] = booked  # the e-mail in either case is one buyer: one customer of our own
        assert ours != acme and len(after) == len(before) + 1


@pytest.mark.parametrize("store, erp", [("woocommerce", e) for e in ERPS]
                         + [("bigcommerce", "exact_online")])
async def test_a_guest_and_a_registered_buyer_with_one_email_are_one_customer(stack_factory, store,
                                                                            erp):
    stack, conn, merchant = await shop_stack(stack_factory, erp, store=store)
    prefix, shop = conn.mappings.document_prefix, stack.shop_sandbox
    async with stack.store_client() as admin:
        placed = await asyncio.gather(
            shop.place_order(admin, quantities=(1,), email="Sam@Example.com"),
            shop.place_order(admin, quantities=(2,), email="sam@example.com", registered=True))
    assert placed[1].raw["customer_id"] and not placed[0].raw["customer_id"]
    booked = {await merchant.customer_of(f"{prefix}{p.id}") for p in placed}
    sams = [r for r in await merchant.records() if merchant.email_of(r) == "sam@example.com"]
    assert len(booked) == 1 and len(sams) == 1, (booked, sams)


async def test_oracle_a_party_with_the_shoppers_name_is_not_the_shoppers(stack_factory):
    """The shop's buyer is "Ann Buyer"; so is a party the merchant made, with another e-mail:
    a namesake, neither booked to nor changed, whichever the policy."""
    for match in ("own", "email"):
        stack, conn, merchant = await shop_stack(stack_factory, "oracle_fusion", match)
        namesake = await merchant.make_customer("Ann Buyer", "ann@another.example")
        before = await merchant.records()
        async with stack.store_client() as admin:
            placed = await stack.shop_sandbox.place_order(admin, quantities=(1,))
        booked = await merchant.customer_of(f"{conn.mappings.document_prefix}{placed.id}")
        assert booked != namesake
        unchanged(before, await merchant.records())


async def test_exact_a_prospect_or_a_supplier_never_becomes_a_customer(stack_factory):
    """With the "email" policy a buyer is booked only to an account that already is a
    customer: a prospect and a supplier with the buyer's e-mail stay what they are."""
    stack, conn, merchant = await shop_stack(stack_factory, "exact_online", "email")
    prospect = await merchant.make_customer("Lead Ltd", "lead@example.com", Code="4200",
                                            Status="P")
    supplier = await merchant.make_customer("Parts BV", "parts@example.com", Code="4300",
                                            Status="A", IsSupplier=True)
    before = await merchant.records()
    prefix = conn.mappings.document_prefix
    async with stack.store_client() as admin:
        placed = [await stack.shop_sandbox.place_order(admin, quantities=(1,), email=email)
                  for email in ("LEAD@example.com", "parts@example.com")]
    booked = [await merchant.customer_of(f"{prefix}{p.id}") for p in placed]
    assert prospect not in booked and supplier not in booked and len(set(booked)) == 2
    unchanged(before, await merchant.records())
    statuses = {a["Code"].strip(): a["Status"] for a in await merchant.records()}
    assert (statuses["4200"], statuses["4300"]) == ("P", "A")


@pytest.mark.parametrize("match", ["own", "email"])
async def test_customer_sync_never_updates_the_merchants_account(stack_factory, match):
    """WooCommerce ↔ Exact: the registered store customer has the e-mail of an account the
    merchant made. The sync passes leave that account as it was ("email": the buyer is booked
    to it, "own": to an account of ml-connector's own) and converge."""
    from tests.integration.test_customer_sync import ANN, converged, customer_sync_stack, sync

    stack, conn, cid = await customer_sync_stack(stack_factory, "exact_online",
                                                 customer_hooks=False)
    conn.mappings.customer_match = match
    stack.store.save_connection(conn)
    merchant = Merchant(stack)
    acme = await merchant.make_customer("ACME Corp", ANN["email"].upper())
    before = await merchant.records()
    first = await sync(stack, conn)
    assert first.to_erp == 1, first
    await converged(stack, conn)
    after = await merchant.records()
    unchanged(before, after)
    booked = stack.store.ledger_get(conn.id, "customer", f"{conn.mappings.document_prefix}C{cid}")
    assert (booked.erp_ref["number"] == acme) == (match == "email")
    assert len(after) == len(before) + (match == "own")

"""One buyer identity per e-mail: the ids a buyer is booked under, and how the ledger books a
buyer found under one of them (over a real connection store)."""
from __future__ import annotations

from activities.buyers import fully_known, known_buyer, record_buyer
from connections.config import Connection
from connections.ledger import Ledger, LedgerKey, buyer_ids, customer_external_id
from connections.store import ConnectionStore
from connectors.documents import Mappings
from connectors.model import Customer, ErpDocumentRef

CONN = Connection(id="shop", store_system="woocommerce", store={}, erp_system="acumatica",
                  erp={}, mappings=Mappings(document_prefix="WC-"))


def ref(number: str) -> ErpDocumentRef:
    return ErpDocumentRef(system="acumatica", kind="customer", number=number)


def test_a_guest_and_a_registered_buyer_with_one_email_share_its_id():
    guest = Customer(email="Sam@Example.com")
    registered = Customer(store_id="7", email=" sam@example.COM")
    [guest_id] = buyer_ids(CONN, guest)
    assert buyer_ids(CONN, registered) == ["WC-C7", guest_id]  # its own first, the lock last
    assert guest_id == customer_external_id(CONN, guest)  # the key guests always had
    assert buyer_ids(CONN, Customer(store_id="8")) == ["WC-C8"]  # no e-mail: itself alone


async def test_a_buyer_found_under_one_id_is_booked_under_the_others(store: ConnectionStore):
    ledger = Ledger(store, CONN.id)
    ids = ["WC-C7", "WC-GABC"]
    await record_buyer(ledger, ["WC-GABC"], ref("C1"))  # the guest checkout came first
    assert known_buyer(ledger, ids).number == "C1" and fully_known(ledger, ids) is None
    await record_buyer(ledger, ids, known_buyer(ledger, ids))
    assert fully_known(ledger, ids).number == "C1"
    # An id booked before keeps its customer (two made for one person earlier stay so).
    await record_buyer(ledger, ["WC-C7"], ref("C2"))
    assert ledger.booked(LedgerKey.customer("WC-C7")).number == "C1"

"""Customer alignment rules: what counts as a change, and how an ERP record fills the store's."""
from activities.customers import fingerprint, merged
from connectors.model import Address, Customer

ANN = Customer(store_id="7", email="Ann@Example.com", first_name="Ann", last_name="Buyer",
               phone="555-1", billing=Address(first_name="Ann", last_name="Buyer", line1="1 Main St",
                                              city="Oakland", state="CA", postcode="94607", country="US"))


def test_fingerprint_ignores_case_of_email_and_what_only_one_side_keeps():
    assert fingerprint(ANN) == fingerprint(ANN.model_copy(update={"email": "ann@example.com"}))
    assert fingerprint(ANN) == fingerprint(ANN.model_copy(update={"store_id": None}))
    moved = ANN.model_copy(update={"billing": ANN.billing.model_copy(update={"city": "Berkeley"})})
    assert fingerprint(ANN) != fingerprint(moved) and fingerprint(None) == ""


def test_erp_record_fills_only_what_it_has():
    erp = Customer(email="ann@example.com", company="", first_name="", last_name="",
                   billing=Address(line1="9 New Rd", city="Berkeley", country="US"))
    out = merged(ANN, erp)
    assert (out.first_name, out.last_name, out.phone) == ("Ann", "Buyer", "555-1")
    assert (out.billing.line1, out.billing.city, out.billing.postcode) == ("9 New Rd", "Berkeley", "94607")
    assert out.store_id == "7"

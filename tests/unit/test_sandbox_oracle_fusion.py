"""The Oracle Fusion simulator on its own, through HTTP as a client sees it (ASGI transport):
framework versions, filters, paging, errors, auth, quota, faults and the Receivables rules."""
from __future__ import annotations

import json
from decimal import Decimal as D

import httpx
import pytest

from sandbox import oracle_fusion as sandbox

ROOT = "/fscmRestApi/resources/11.13.18.05"
BASIC = httpx.BasicAuth("integration.user", "Welcome1")


@pytest.fixture
async def api():
    app = sandbox.create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://pod",
                                 auth=BASIC) as client:
        for path, body in (("items", ["SKU-1", "SHIPPING"]), ("accounts", ["4000"]),
                           ("cost-centers", ["100"]), ("tax-codes", [{"code": "CA-STD"}]),
                           ("receipt-methods", [{"name": "Credit Card"}])):
            assert (await client.post(f"/_sandbox/{path}", json=body)).status_code == 200
        client.state = app.state.oracle  # type: ignore[attr-defined]
        yield client


def v(n: int) -> dict[str, str]:
    return {"REST-Framework-Version": str(n)}


def loads(resp: httpx.Response):
    return json.loads(resp.content, parse_float=D)


async def customer(api) -> str:
    return api.state.add_customer("Ann Buyer", "ann@example.com")["AccountNumber"]


def invoice_body(account: str, number: str = "WC-1", **extra) -> dict:
    return {"BusinessUnit": "Vision Operations", "TransactionSource": "Manual",
            "TransactionType": "Invoice", "TransactionNumber": number,
            "TransactionDate": "2026-03-01", "BillToCustomerNumber": account,
            "InvoiceCurrencyCode": "USD", "AllowCompletion": "Y",
            "receivablesInvoiceLines": [
                {"LineNumber": 1, "Description": "Shirt", "ItemNumber": "SKU-1", "Quantity": 2,
                 "UnitSellingPrice": D("19.95"), "TaxClassificationCode": "CA-STD",
                 "receivablesInvoiceLineTaxLines": [{"TaxRateCode": "CA-STD",
                                                     "TaxAmount": D("3.29")}]}],
            "receivablesInvoiceDistributions": [
                {"InvoiceLineNumber": 1, "AccountClass": "Revenue",
                 "AccountCombination": "01-100-4000-000-000", "Percent": 100}], **extra}


async def post(api, resource: str, body: dict, version: int = 4) -> httpx.Response:
    return await api.post(f"{ROOT}/{resource}", content=sandbox.dumps(body),
                          headers={**v(version),
                                   "Content-Type": "application/vnd.oracle.adf.resourceitem+json"})


async def test_empty_result_is_200_and_unknown_item_404(api):
    resp = await api.get(f"{ROOT}/receivablesInvoices", params={"q": "TransactionNumber='X'"},
                         headers=v(2))
    assert resp.status_code == 200
    assert loads(resp) | {"links": None} == {"items": [], "count": 0, "hasMore": False,
                                              "limit": 25, "offset": 0, "links": None}
    assert (await api.get(f"{ROOT}/receivablesInvoices/1")).status_code == 404
    assert (await api.get(f"{ROOT}/nothingHere")).status_code == 404


async def test_create_computes_totals_and_installment(api):
    resp = await post(api, "receivablesInvoices", invoice_body(await customer(api)))
    assert resp.status_code == 201 and "Location" in resp.headers
    body = loads(resp)
    assert body["EnteredAmount"] == D("43.19") and body["InvoiceBalanceAmount"] == D("43.19")
    assert body["InvoiceStatus"] == "Complete"
    inst = body["receivablesInvoiceInstallments"]["items"][0]  # v3+: a collection
    assert inst["InstallmentBalanceDue"] == D("43.19") and inst["InstallmentStatus"] == "Open"


async def test_filters_by_framework_version(api):
    account = await customer(api)
    await post(api, "receivablesInvoices", invoice_body(account, "WC-1"))
    await post(api, "receivablesInvoices", invoice_body(account, "WC-2"))
    url = f"{ROOT}/receivablesInvoices"
    one = await api.get(url, params={"q": "TransactionNumber=WC-1;BusinessUnit=Vision Operations"})
    assert [i["TransactionNumber"] for i in loads(one)["items"]] == ["WC-1"]  # v1 default
    two = await api.get(url, params={"q": "TransactionNumber='WC-2' or TransactionNumber='WC-1'"},
                        headers=v(2))
    assert loads(two)["count"] == 2
    assert (await api.get(url, params={"q": "TransactionNumber=WC-1;BusinessUnit=X"},
                          headers=v(2))).status_code == 400
    assert (await api.get(url, params={"q": "TransactionNumber=WC-1"}, headers=v(2))).status_code == 400
    assert (await api.get(url, params={"q": "Nope='1'"}, headers=v(2))).status_code == 400
    assert (await api.get(url, headers=v(10))).status_code == 400


async def test_paging_limit_offset_has_more(api):
    account = await customer(api)
    for n in range(3):
        await post(api, "receivablesInvoices", invoice_body(account, f"WC-{n}"))
    url = f"{ROOT}/receivablesInvoices"
    first = loads(await api.get(url, params={"limit": 2, "totalResults": "true", "onlyData": "true"}))
    assert (first["count"], first["hasMore"], first["totalResults"]) == (2, True, 3)
    assert "links" not in first["items"][0]
    rest = loads(await api.get(url, params={"limit": 2, "offset": 2, "orderBy": "TransactionNumber:desc"}))
    assert (rest["count"], rest["hasMore"]) == (1, False)
    assert loads(await api.get(url, params={"limit": 9999}))["limit"] == 500


async def test_error_body_shapes(api):
    body = invoice_body(await customer(api))
    body["receivablesInvoiceLines"][0]["ItemNumber"] = "NOPE"
    text = await post(api, "receivablesInvoices", body, version=1)
    assert text.status_code == 400 and text.headers["content-type"].startswith("text/plain")
    assert text.text == "AR_INVALID_INVENTORY_ITEM: The item NOPE isn't valid."
    doc = loads(await post(api, "receivablesInvoices", body, version=4))
    assert doc["o:errorDetails"][0]["o:errorCode"] == "AR_INVALID_INVENTORY_ITEM"
    assert doc["o:errorDetails"][0]["o:errorPath"].endswith("/0/ItemNumber")
    assert api.state.invoices == {}  # all or nothing


@pytest.mark.parametrize("change, message", [
    (lambda b: b["receivablesInvoiceDistributions"][0].update(Percent=50), "100"),
    (lambda b: b["receivablesInvoiceDistributions"][0].update(AccountCombination="01-999-4000-000-000"),
     "account combination"),
    (lambda b: b["receivablesInvoiceLines"][0].update(Bogus=1), "Bogus"),
    (lambda b: b["receivablesInvoiceLines"][0].update(LineAmount=D("40.00")), "line amount"),
    (lambda b: b.pop("TransactionNumber"), "manual numbering"),
    (lambda b: b.update(BillToCustomerNumber="404"), "bill-to customer"),
])
async def test_invoice_validation(api, change, message):
    body = invoice_body(await customer(api))
    change(body)
    resp = await post(api, "receivablesInvoices", body)
    assert resp.status_code == 400 and message in resp.text, resp.text


async def test_credit_memo_is_negative_and_applies_through_soap(api):
    account = await customer(api)
    inv = loads(await post(api, "receivablesInvoices", invoice_body(account)))
    memo = {"BusinessUnit": "Vision Operations", "TransactionSource": "Manual",
            "TransactionType": "Credit Memo", "TransactionNumber": "WC-1-R1",
            "TransactionDate": "2026-03-02", "BillToCustomerNumber": account,
            "CreditMemoCurrency": "USD", "receivablesCreditMemoLines": [
                {"LineNumber": 1, "LineDescription": "Refund", "ItemNumber": "SKU-1",
                 "LineQuantityCredit": 1, "UnitSellingPrice": D("19.95")}]}
    assert "must be negative" in (await post(api, "receivablesCreditMemos", memo)).text
    memo["receivablesCreditMemoLines"][0]["UnitSellingPrice"] = D("-19.95")
    memo["receivablesCreditMemoLines"][0]["Description"] = "x"
    assert (await post(api, "receivablesCreditMemos", memo)).status_code == 400
    del memo["receivablesCreditMemoLines"][0]["Description"]
    created = loads(await post(api, "receivablesCreditMemos", memo))
    assert created["EnteredAmount"] == D("-19.95") == created["TransactionBalanceDue"]
    inst = inv["receivablesInvoiceInstallments"]["items"][0]["InstallmentId"]

    async def apply(amount: str) -> httpx.Response:
        envelope = (f'<s:Envelope xmlns:s="{sandbox.SOAP_ENV}"><s:Body>'
                    f'<t:applyOnAccountCreditMemo xmlns:t="urn:t" xmlns:n="urn:n">'
                    f'<n:CreditMemoTrxId>{created["CustomerTransactionId"]}</n:CreditMemoTrxId>'
                    f'<n:AppliedPaymentScheduleId>{inst}</n:AppliedPaymentScheduleId>'
                    f'<n:AmountApplied>{amount}</n:AmountApplied></t:applyOnAccountCreditMemo>'
                    f'</s:Body></s:Envelope>')
        return await api.post("/fscmService/CreditMemoService", content=envelope,
                              headers={"Content-Type": "text/xml"})

    over = await apply("20.00")
    assert over.status_code == 500 and "faultstring" in over.text and "exceeds" in over.text
    assert (await apply("19.95")).status_code == 200
    [doc] = [d for d in api.state.documents() if d["kind"] == "invoice"]
    assert doc["balance"] == D("23.24")
    assert api.state.memos[created["CustomerTransactionId"]]["TransactionBalanceDue"] == 0


async def test_receipt_apply_action_and_automatch(api):
    account = await customer(api)
    inv = loads(await post(api, "receivablesInvoices", invoice_body(account)))
    receipt = {"ReceiptNumber": "WC-1-P1", "ReceiptMethod": "Credit Card",
               "ReceiptDate": "2026-03-01", "BusinessUnit": "Vision Operations",
               "Amount": "43.19", "Currency": "USD", "CustomerAccountNumber": account,
               "remittanceReferences": [{"ReceiptMatchBy": "Transaction Number",
                                         "ReferenceNumber": "WC-1", "ReferenceAmount": "43.19"}]}
    made = loads(await post(api, "standardReceipts", receipt))
    assert made["UnappliedAmount"] == D("43.19")
    action = f"{ROOT}/standardReceipts/{made['StandardReceiptId']}/action/applyReceipt"
    inst = inv["receivablesInvoiceInstallments"]["items"][0]["InstallmentId"]
    wrong_type = await api.post(action, json={"appliedPaymentScheduleId": inst})
    assert wrong_type.status_code == 415
    ok = await api.post(action, content=json.dumps({"appliedPaymentScheduleId": inst,
                                                    "amountApplied": 40}),
                        headers={"Content-Type": "application/vnd.oracle.adf.action+json"})
    assert ok.json() == {"result": "SUCCESS"}
    assert api.state.receipts[made["StandardReceiptId"]]["UnappliedAmount"] == D("3.19")
    assert (await api.post("/_sandbox/automatch")).json() == {"applied": 1}
    [doc] = [d for d in api.state.documents() if d["kind"] == "invoice"]
    assert doc["balance"] == 0
    await api.post("/_sandbox/settings", json={"apply_receipt_action": False})
    assert (await api.post(action, json={}, headers={
        "Content-Type": "application/vnd.oracle.adf.action+json"})).status_code == 404


async def test_v3_expands_as_collections_and_v9_ids_are_strings(api):
    inv = loads(await post(api, "receivablesInvoices", invoice_body(await customer(api))))
    url = f"{ROOT}/receivablesInvoices/{inv['CustomerTransactionId']}"
    v3 = loads(await api.get(url, params={"expand": "receivablesInvoiceLines"}, headers=v(3)))
    assert v3["receivablesInvoiceLines"]["count"] == 1
    v2 = loads(await api.get(url, params={"expand": "receivablesInvoiceLines"}, headers=v(2)))
    assert isinstance(v2["receivablesInvoiceLines"], list)
    assert loads(await api.get(url, headers=v(9)))["CustomerTransactionId"] == str(
        inv["CustomerTransactionId"])


async def test_auth_token_lifetime_and_expiry(api):
    url = f"{ROOT}/receivablesInvoices"
    assert (await api.get(url, auth=httpx.BasicAuth("integration.user", "wrong"))).status_code == 401
    form = {"grant_type": "client_credentials", "scope": "urn:opc:resource:consumer::all"}
    bad = await api.post("/oauth2/v1/token", data=form, auth=httpx.BasicAuth("x", "y"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    token = (await api.post("/oauth2/v1/token", data=form,
                            auth=httpx.BasicAuth("ml-connector-client", "client-secret"))).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    plain = httpx.AsyncClient(transport=api._transport, base_url="https://pod")
    assert (await plain.get(url, headers=bearer)).status_code == 200
    await api.post("/_sandbox/expire-tokens")
    assert (await plain.get(url, headers=bearer)).status_code == 401
    await plain.aclose()


async def test_quota_and_faults(api):
    await api.post("/_sandbox/settings", json={"requests_per_minute": 2})
    url = f"{ROOT}/receivablesInvoices"
    codes = [(await api.get(url)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    throttled = await api.get(url)
    assert int(throttled.headers["Retry-After"]) >= 1
    await api.post("/_sandbox/settings", json={"requests_per_minute": 0})
    await api.post("/_sandbox/faults", json={"lose_next_commits": 1})
    lost = await post(api, "receivablesInvoices", invoice_body(await customer(api)))
    assert lost.status_code == 502 and len(api.state.invoices) == 1  # committed all the same
    await api.post("/_sandbox/faults", json={"fail_next": 1, "fail_status": 503})
    assert (await api.get(url)).status_code == 503
    stats = (await api.get("/_sandbox/stats")).json()
    assert stats["throttled"] == 2 and stats["by_status"]["502"] == 1


async def test_party_and_primary_address_patch_only_what_is_sent(api):
    crm = "/crmRestApi/resources/11.13.18.05/accounts"
    created = loads(await api.post(crm, content=sandbox.dumps({
        "OrganizationName": "Ann Buyer", "EmailAddress": "ann@example.com",
        "SourceSystem": "WEBSTORE", "SourceSystemReferenceValue": "WC-C5",
        "PrimaryAddress": [{"Address1": "1 Main St", "City": "Oakland", "Country": "US"}]}),
        headers={**v(4), "Content-Type": "application/json"}))
    number = created["PartyNumber"]
    address = created["PrimaryAddress"]["items"][0]["AddressNumber"]  # v3+: a collection
    headers = {**v(4), "Content-Type": "application/vnd.oracle.adf.resourceitem+json"}
    patched = await api.patch(f"{crm}/{number}", content=sandbox.dumps(
        {"EmailAddress": "ann@new.example"}), headers=headers)
    assert patched.status_code == 200 and loads(patched)["OrganizationName"] == "Ann Buyer"
    moved = await api.patch(f"{crm}/{number}/child/PrimaryAddress/{address}",
                            content=sandbox.dumps({"City": "Berkeley"}), headers=headers)
    assert moved.status_code == 200 and loads(moved)["Address1"] == "1 Main St"
    [party] = loads(await api.get("/_sandbox/parties"))
    assert (party["EmailAddress"], party["PrimaryAddress"][0]["City"]) == ("ann@new.example",
                                                                          "Berkeley")
    unknown = await api.patch(f"{crm}/{number}", content=sandbox.dumps({"Colour": "red"}),
                              headers=headers)
    assert unknown.status_code == 400
    other = await api.post(crm, content=sandbox.dumps({"OrganizationName": "Bo"}), headers=headers)
    clash = await api.patch(f"{crm}/{loads(other)['PartyNumber']}", headers=headers,
                            content=sandbox.dumps({"SourceSystem": "WEBSTORE",
                                                   "SourceSystemReferenceValue": "WC-C5"}))
    assert clash.status_code == 400 and "already exists" in clash.text
    added = await api.post(f"{crm}/{loads(other)['PartyNumber']}/child/PrimaryAddress",
                           content=sandbox.dumps({"City": "Reno", "Country": "US"}), headers=headers)
    assert added.status_code == 201 and loads(added)["AddressNumber"].startswith("CDRM_")


async def batch(api, parts: list[dict], version: int = 4) -> httpx.Response:
    return await api.post(ROOT, content=sandbox.dumps({"parts": parts}),
                          headers={**v(version), "Content-Type": sandbox.BATCH_MEDIA_TYPE})


async def test_batch_is_one_request_and_all_or_nothing(api):
    account = await customer(api)
    invoice = loads(await post(api, "receivablesInvoices", invoice_body(account)))
    installments = (f"/receivablesInvoices/{invoice['CustomerTransactionId']}"
                    f"/child/receivablesInvoiceInstallments?onlyData=true")
    before = len(api.state.request_log)
    resp = await batch(api, [
        {"id": "read", "path": installments, "operation": "get"},
        {"id": "new", "path": "/receivablesInvoices", "operation": "create",
         "payload": invoice_body(account, "WC-2")}])
    assert resp.status_code == 200 and len(api.state.request_log) == before + 1
    read, new = loads(resp)["parts"]
    assert read["id"] == "read" and read["payload"]["items"][0]["InstallmentBalanceDue"] == D("43.19")
    assert new["payload"]["TransactionNumber"] == "WC-2" and len(api.state.invoices) == 2

    refused = await batch(api, [
        {"id": "ok", "path": "/receivablesInvoices", "operation": "create",
         "payload": invoice_body(account, "WC-3")},
        {"id": "bad", "path": "/receivablesInvoices", "operation": "create",
         "payload": invoice_body(account, "WC-4", BusinessUnit="Nowhere")}])
    assert refused.status_code == 400
    [part] = loads(refused)["parts"]
    assert part["id"] == "bad" and part["payload"]["o:errorDetails"]
    assert len(api.state.invoices) == 2  # WC-3 was undone with the failing part

    action = await batch(api, [{"id": "a", "path": "/standardReceipts/1/action/applyReceipt",
                                "operation": "create", "payload": {}}])
    assert action.status_code == 400 and "enabled for batch" in action.text
    wrong_type = await api.post(ROOT, json={"parts": []}, headers=v(4))
    assert wrong_type.status_code == 415

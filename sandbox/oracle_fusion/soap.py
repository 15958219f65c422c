"""The SOAP services the REST API lacks: customer accounts, applying and refunding a credit memo."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from sandbox.oracle_fusion.wire import ApiError, SOAP_ENV, money, now_iso


class SoapApi:
    """The SOAP services: customer accounts and credit memo application."""

    # ---- SOAP
    async def soap(self, request: Request) -> Response:
        service = request.url.path.rsplit("/", 1)[-1]

        async def handler(_: int) -> Response:
            try:
                root = ElementTree.fromstring(await request.body())
            except ElementTree.ParseError:
                raise SoapFault("env:Client", "The request isn't a SOAP envelope.") from None
            body = _child(root, "Body")
            op = next(iter(body), None) if body is not None else None
            if op is None:
                raise SoapFault("env:Client", "The SOAP body is empty.")
            name = op.tag.rpartition("}")[2]
            if service == "CustomerAccountService" and name == "createCustomerAccount":
                return self._committed(self.create_customer_account(op))
            if service == "CreditMemoService" and name == "applyOnAccountCreditMemo":
                return self._committed(self.apply_memo(op))
            if service == "CreditMemoService" and name == "createOnAccountCreditMemoRefund":
                return self._committed(self.refund_memo(op))
            raise SoapFault("env:Client", f"The operation {name} isn't supported by {service}.")
        return await self.guarded(request, service, handler, soap=True)

    def create_customer_account(self, op: ElementTree.Element) -> Response:
        acct = _child(op, "customerAccount")
        if acct is None:
            raise SoapFault("env:Client", "customerAccount is required.")
        if _value(acct, "CreatedByModule") != "HZ_WS":
            raise SoapFault("env:Server", "JBO-HZ: CreatedByModule must be HZ_WS.")
        if _value(acct, "AccountNumber") and self.state.settings.automatic_account_numbers:
            raise SoapFault("env:Server", "HZ_ACCOUNT_NUMBER_AUTO_ON: account numbers are "
                                          "generated automatically; don't send AccountNumber.")
        party = self.state.party_by_id(_value(acct, "PartyId"))
        if party is None:
            raise SoapFault("env:Server", f"The party {_value(acct, 'PartyId')} doesn't exist.")
        site = _child(acct, "CustomerAccountSite")
        site_id = _value(site, "PartySiteId") if site is not None else ""
        if not any(str(a["AddressId"]) == site_id for a in party["PrimaryAddress"]):
            raise SoapFault("env:Server", f"The party site {site_id} doesn't belong to party "
                                          f"{party['PartyId']}.")
        uses = [u for u in site if u.tag.rpartition("}")[2] == "CustomerAccountSiteUse"]
        if not any(_value(u, "SiteUseCode") == "BILL_TO" for u in uses):
            raise SoapFault("env:Server", "A BILL_TO site use is required to bill the account.")
        name = _value(acct, "AccountName") or party["OrganizationName"]
        account = self.state.create_account(party["PartyId"], name, int(site_id))
        site_row = account["sites"][0]
        ns = "http://xmlns.oracle.com/apps/cdm/foundation/parties/customerAccountService/"
        value = (f"<ns1:CustomerAccountId>{account['AccountId']}</ns1:CustomerAccountId>"
                 f"<ns1:PartyId>{party['PartyId']}</ns1:PartyId>"
                 f"<ns1:AccountNumber>{account['AccountNumber']}</ns1:AccountNumber>"
                 f"<ns1:AccountName>{escape(name)}</ns1:AccountName>"
                 f"<ns1:CustomerAccountSite><ns1:CustomerAccountSiteId>{site_row['CustomerAccountSiteId']}"
                 f"</ns1:CustomerAccountSiteId><ns1:PartySiteId>{site_id}</ns1:PartySiteId>"
                 f"<ns1:CustomerAccountSiteUse><ns1:SiteUseId>{site_row['uses'][0]['SiteUseId']}"
                 f"</ns1:SiteUseId><ns1:SiteUseCode>BILL_TO</ns1:SiteUseCode>"
                 f"</ns1:CustomerAccountSiteUse></ns1:CustomerAccountSite>")
        return soap_response(f'<ns0:createCustomerAccountResponse xmlns:ns0="{ns}types/" '
                             f'xmlns:ns1="{ns}"><ns2:result xmlns:ns2="{ns}types/">'
                             f'<ns1:Value>{value}</ns1:Value></ns2:result>'
                             f'</ns0:createCustomerAccountResponse>')

    def _memo(self, op: ElementTree.Element, id_field: str) -> dict:
        memo_id, memo_number = _value(op, id_field), _value(op, "CreditMemoTrxNumber")
        memo = next((m for m in self.state.memos.values()
                     if (memo_id and str(m["CustomerTransactionId"]) == memo_id)
                     or (not memo_id and m["TransactionNumber"] == memo_number)), None)
        if memo is None:
            raise SoapFault("env:Server", f"The credit memo {memo_id or memo_number} doesn't exist.")
        return memo

    def _amount(self, op: ElementTree.Element, memo: dict) -> Decimal:
        """``AmountApplied``: positive and within what the memo still has unapplied."""
        try:
            amount = Decimal(_value(op, "AmountApplied"))
        except InvalidOperation:
            raise SoapFault("env:Server", "AmountApplied isn't a valid amount.") from None
        if amount <= 0 or amount > -memo["TransactionBalanceDue"]:
            raise SoapFault("env:Server", f"The amount applied {amount} exceeds the credit memo's "
                                          f"unapplied amount {-memo['TransactionBalanceDue']}.")
        return amount

    def refund_memo(self, op: ElementTree.Element) -> Response:
        """``createOnAccountCreditMemoRefund`` (the ``OnAccountCreditMemoRefund`` object): the
        memo's unapplied amount is refunded to the customer (a Payables payment request); the
        memo's balance falls by it."""
        memo = self._memo(op, "CreditMemoCustomerTrxId")
        business_unit = _value(op, "CreditMemoBusinessUnit")
        if business_unit and business_unit not in self.state.lookups["business_units"]:
            raise SoapFault("env:Server", f"The business unit {business_unit} isn't valid.")
        method = _value(op, "RefundPaymentMethodCode")
        if method and method not in self.state.lookups["refund_payment_methods"]:
            raise SoapFault("env:Server", f"The refund payment method {method} isn't valid.")
        amount = self._amount(op, memo)
        cur = memo["CreditMemoCurrency"]
        memo["TransactionBalanceDue"] = money(memo["TransactionBalanceDue"] + amount, cur)
        memo["LastUpdateDate"] = now_iso()
        app = {"ApplicationId": self.state.next_id(), "Kind": "refund", "ApplicationAmount": amount,
               "ApplicationDate": _value(op, "ApplyDate") or now_iso()[:10], "Currency": cur,
               "CreditMemoId": memo["CustomerTransactionId"],
               "CreditMemoNumber": memo["TransactionNumber"],
               "BillToCustomerNumber": memo["BillToCustomerNumber"],
               "Comments": _value(op, "Comments"), "RefundPaymentMethodCode": method,
               "ApplicationReferenceNumber": f"REFUND-{self.state.next_id()}"}
        self.state.applications.append(app)
        ns = CREDIT_MEMO_NS
        return soap_response(f'<ns0:createOnAccountCreditMemoRefundResponse xmlns:ns0="{ns}types/">'
                             f'<ns0:result xmlns:ns1="{ns}">'
                             f'<ns1:ReceivableApplicationId>{app["ApplicationId"]}</ns1:ReceivableApplicationId>'
                             f'<ns1:ApplicationReferenceNumber>{app["ApplicationReferenceNumber"]}'
                             f'</ns1:ApplicationReferenceNumber><ns1:AmountApplied>{amount}'
                             f'</ns1:AmountApplied></ns0:result>'
                             f'</ns0:createOnAccountCreditMemoRefundResponse>')

    def apply_memo(self, op: ElementTree.Element) -> Response:
        memo = self._memo(op, "CreditMemoTrxId")
        try:
            amount = Decimal(_value(op, "AmountApplied"))
        except InvalidOperation:
            raise SoapFault("env:Server", "AmountApplied isn't a valid amount.") from None
        try:
            inv, inst = self.ar.open_installment(_value(op, "AppliedPaymentScheduleId"),
                                                 memo["CreditMemoCurrency"],
                                                 memo["BillToCustomerNumber"], "AppliedPaymentScheduleId")
        except ApiError as exc:
            raise SoapFault("env:Server", exc.message) from None
        if amount <= 0 or amount > -memo["TransactionBalanceDue"]:
            raise SoapFault("env:Server", f"The amount applied {amount} exceeds the credit memo's "
                                          f"unapplied amount {-memo['TransactionBalanceDue']}.")
        if amount > inst["InstallmentBalanceDue"]:
            raise SoapFault("env:Server", f"The amount applied {amount} exceeds the balance "
                                          f"{inst['InstallmentBalanceDue']} of transaction "
                                          f"{inv['TransactionNumber']}.")
        app = self.state.apply(inv, inst, amount, "credit_memo", memo)
        memo["TransactionBalanceDue"] = money(memo["TransactionBalanceDue"] + amount,
                                              memo["CreditMemoCurrency"])
        memo["LastUpdateDate"] = now_iso()
        ns = CREDIT_MEMO_NS
        return soap_response(f'<ns0:applyOnAccountCreditMemoResponse xmlns:ns0="{ns}types/">'
                             f'<ns0:result><ns1:ReceivableApplicationId xmlns:ns1="{ns}">'
                             f'{app["ApplicationId"]}</ns1:ReceivableApplicationId></ns0:result>'
                             f'</ns0:applyOnAccountCreditMemoResponse>')


CREDIT_MEMO_NS = ("http://xmlns.oracle.com/apps/financials/receivables/transactions/creditMemos/"
                  "creditMemoService/")


class SoapFault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def response(self) -> Response:
        body = (f'<env:Envelope xmlns:env="{SOAP_ENV}"><env:Body><env:Fault>'
                f'<faultcode>{self.code}</faultcode><faultstring>{escape(self.message)}'
                f'</faultstring></env:Fault></env:Body></env:Envelope>')
        return Response(body, status_code=500, media_type="text/xml; charset=utf-8")


def soap_response(inner: str) -> Response:
    return Response(f'<env:Envelope xmlns:env="{SOAP_ENV}"><env:Header/><env:Body>{inner}'
                    f'</env:Body></env:Envelope>', media_type="text/xml; charset=utf-8")


def _child(el: ElementTree.Element | None, name: str) -> ElementTree.Element | None:
    if el is None:
        return None
    return next((c for c in el if c.tag.rpartition("}")[2] == name), None)


def _value(el: ElementTree.Element | None, name: str) -> str:
    """A field of the operation, directly under it or inside its parameter element."""
    c = _child(el, name)
    if c is None and el is not None:
        c = next((d for d in el.iter() if d.tag.rpartition("}")[2] == name), None)
    return (c.text or "").strip() if c is not None else ""

"""Oracle Fusion Cloud ERP (Receivables) over its REST resources, with SOAP where REST has none.
This module is the client; the wire format and record builders are
:mod:`connectors.oracle_fusion_mapping`.

What goes where (shared/reference/oracle-fusion.md):
* Invoices: ``receivablesInvoices`` with inline lines, per-line manual tax lines
  (``receivablesInvoiceLineTaxLines``: the store's tax as computed, never recomputed) and
  ``receivablesInvoiceDistributions`` (the Revenue account combination of each line, built from
  the connection's GL rule: account + cost centre segments).
* Refunds: the REST resource only creates *on-account* credit memos, so a refund is a
  ``receivablesCreditMemos`` memo (negative lines) applied to the invoice's installment with the
  SOAP ``CreditMemoService`` (``applyOnAccountCreditMemo``, the operation that handles the
  ``ApplyOnAccountCreditMemo`` object). Only the invoice's open balance is applied; the rest stays
  on account (a refund of a paid invoice is a customer credit, as in Receivables).
* A refund's cash-back: the on-account memo refunded with the SOAP ``CreditMemoService``
  ``createOnAccountCreditMemoRefund`` (Oracle's SOAP reference; Payables then holds the refund
  as a payment request), found again through its memo's unapplied balance.
* Payments: ``standardReceipts`` with ``remittanceReferences`` (always, for AutoMatch), then the
  ``applyReceipt`` action where the release has it (404 → left for AutoMatch).
* Customers: the party through CRM ``accounts`` (external id in ``SourceSystemReferenceValue``);
  the Receivables customer account with its primary bill-to site through the SOAP
  ``CustomerAccountService`` (REST creates parties only); accounts read back from
  ``receivablesCustomerAccountActivities``.
* A memo or receipt for an invoice is created in one batch request (the framework's
  ``application/vnd.oracle.adf.batch+json``, all or nothing) with the read of the invoice's open
  installment that its application needs: one request fewer per document.
* Every document is found again by its ``TransactionNumber`` / ``ReceiptNumber`` = the external
  reference (the transaction sources must number manually).
* Reference data (account combinations, receipt methods) is read once per TTL and checked before
  any write, so a GL rule naming an account Oracle lacks parks the order without a half-post.

Money is Decimal both ways (``parse_float=Decimal``, amounts written as exact JSON numbers).
"""
from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from xml.etree import ElementTree

import httpx
from pydantic import BaseModel, SecretStr, field_validator, model_validator

from connectors import documents
from connectors.auth import OAuth2Auth, TokenStore
from connectors.documents import (CustomerMatch, DocumentLine, ErpDocument, ReceiptDocument,
                                  RefundPaymentDocument)
from connectors.errors import (AuthExpired, AuthFailed, ExternalError, MappingMissing, NotFound,
                               Rejected, Unavailable)
from connectors.http import build_client, parse_json, raise_for_response, send, to_json
from connectors.model import (ZERO, Address, Customer, DocumentKind, ErpDocumentRef, ItemChange,
                              to_decimal)
from connectors.oracle_fusion_mapping import (SYSTEM, address_fields, allocate_taxes,
                                              differences, document_line, fault_string, id_text,
                                              invoice_ref, line_kind_word, mapping_error, memo_ref,
                                              open_installment_of, owned_party, parties_by_email,
                                              party_fields, primary_address, q_equals,
                                              q_ours_or_email, q_prefix_since, read_error, receipt_ref,
                                              sdo_xml, xml_text)

LABEL = "Oracle Fusion"
RESOURCE_ITEM = "application/vnd.oracle.adf.resourceitem+json"
ACTION = "application/vnd.oracle.adf.action+json"
BATCH = "application/vnd.oracle.adf.batch+json"
PARTY_PAGE = 25  # parties per customer look-up
MEMO_LINK = re.compile(r"\[invoice (\S+) id (\S+)\]$")
CUSTOMER_NS = "http://xmlns.oracle.com/apps/cdm/foundation/parties/customerAccountService/"
CREDIT_MEMO_NS = ("http://xmlns.oracle.com/apps/financials/receivables/transactions/creditMemos/"
                  "creditMemoService/")


class OracleFusionSettings(BaseModel):
    instance_url: str  # https://{pod}.fa.{dc}.oraclecloud.com
    api_version: str = "11.13.18.05"
    framework_version: str = "4"  # v2+ filter syntax, v4+ JSON error details
    auth: Literal["basic", "oauth2"] = "basic"
    token_url: str = ""  # OAuth: https://{identity-domain}/oauth2/v1/token
    scope: str = "urn:opc:resource:consumer::all"
    ca_bundle: str | None = None
    timeout: float = 30
    business_unit: str
    invoice_source: str = "Manual"
    invoice_type: str = "Invoice"
    credit_memo_source: str = "Manual"
    credit_memo_type: str = "Credit Memo"
    credit_reason: str = ""  # a value of the credit-memo reason lookup; omitted when empty
    payment_terms: str = "IMMEDIATE"
    tax_regime_code: str = ""  # sent with each manual tax line when set
    account_template: str = "{account}"  # e.g. "01-{cost_center}-{account}-000-000"
    segment_delimiter: str = "-"
    default_cost_center: str = ""
    remittance_bank_account_number: str = ""
    receipt_application: Literal["action", "automatch"] = "action"
    customer_source_system: str = "WEBSTORE"
    default_country: str = "US"
    customer_account_service: str = "/crmService/CustomerAccountService"
    credit_memo_service: str = "/fscmService/CreditMemoService"
    # The Payables payment method of a refund's cash-back. Oracle books a credit memo's refund
    # only as a Payables payment request, while the card processor has already paid the buyer:
    # a method that payment runs never pay (e.g. a clearing method) books what happened. Empty:
    # each refund's cash-back parks naming the manual step.
    refund_payment_method: str = ""
    reference_ttl: float = 900  # seconds reference data (accounts, receipt methods) is trusted
    allow_insecure_http: bool = False  # plain-HTTP instance/token URL: a local test server only

    @field_validator("instance_url", "token_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @model_validator(mode="after")
    def _oauth_needs_token_url(self) -> "OracleFusionSettings":
        if self.auth == "oauth2" and not self.token_url:
            raise ValueError("auth 'oauth2' needs token_url "
                             "(the identity domain's /oauth2/v1/token)")
        return self

    def root(self, family: str = "fscmRestApi") -> str:
        return f"{self.instance_url}/{family}/resources/{self.api_version}"


class OracleFusionCredentials(BaseModel):
    username: SecretStr | None = None  # integration user (basic)
    password: SecretStr | None = None
    client_id: SecretStr | None = None  # confidential application (oauth2)
    client_secret: SecretStr | None = None


class _TtlCache:
    """Reference data per connection: answers are trusted for ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[tuple, tuple[float, Any]] = {}

    def get(self, key: tuple) -> tuple[bool, Any]:
        hit = self._values.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: tuple, value: Any) -> None:
        self._values[key] = (time.monotonic() + self.ttl, value)


class OracleFusionErp:
    system = SYSTEM

    def __init__(self, settings: OracleFusionSettings, credentials: OracleFusionCredentials,
                 token_store: TokenStore, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        verify: str | bool = settings.ca_bundle or True
        self._oauth: OAuth2Auth | None = None
        auth: httpx.Auth
        if settings.auth == "oauth2":
            if credentials.client_id is None or credentials.client_secret is None:
                raise AuthFailed("auth 'oauth2' needs client_id and client_secret", system=SYSTEM)
            self._oauth = auth = OAuth2Auth(
                settings.token_url, credentials.client_id.get_secret_value(),
                credentials.client_secret, token_store,
                grant={"grant_type": "client_credentials", "scope": settings.scope},
                transport=transport, verify=verify, system=SYSTEM, timeout=settings.timeout,
                client_auth="basic",  # the identity domain takes client credentials as Basic
                allow_insecure_http=settings.allow_insecure_http)
        else:
            if credentials.username is None or credentials.password is None:
                raise AuthFailed("auth 'basic' needs username and password", system=SYSTEM)
            auth = httpx.BasicAuth(credentials.username.get_secret_value(),
                                   credentials.password.get_secret_value())
        self._client = build_client(
            settings.instance_url, auth=auth, verify=verify, timeout=settings.timeout,
            headers={"REST-Framework-Version": settings.framework_version},
            transport=transport, system=SYSTEM, allow_insecure_http=settings.allow_insecure_http)
        self._cache = _TtlCache(settings.reference_ttl)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._oauth is not None:
            await self._oauth.aclose()

    # --- transport ---------------------------------------------------------------------------

    async def _call(self, method: str, url: str, *, body: Any = None,
                    content_type: str = RESOURCE_ITEM, params: Mapping[str, Any] | None = None
                    ) -> httpx.Response:
        kwargs: dict[str, Any] = {"params": params} if params else {}
        if body is not None:
            kwargs.update(content=to_json(body), headers={"Content-Type": content_type})
        try:
            return await send(self._client, method, url, system=SYSTEM, read_error=read_error,
                              **kwargs)
        except AuthExpired as exc:
            if self._oauth is not None:
                raise
            raise AuthFailed(exc.message, system=SYSTEM, status=exc.status,
                             resolution="check the integration user's name, password and "
                                        "roles") from None

    async def _items(self, resource: str, q: str, *, family: str = "fscmRestApi",
                     limit: int = 25, **params: Any) -> list[dict[str, Any]]:
        """One page of a collection filtered by ``q`` (no match: 200 with ``items: []``)."""
        body = parse_json(await self._call(
            "GET", f"{self.settings.root(family)}/{resource}",
            params={"q": q, "limit": limit, "onlyData": "true", **params}))
        return list(body.get("items") or [])

    async def _all(self, url: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of a (child) collection: ``offset`` advances by ``count`` until
        ``hasMore`` is false."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = parse_json(await self._call(
                "GET", url, params={"limit": 100, "offset": offset, "onlyData": "true", **params}))
            items = list(body.get("items") or [])
            out += items
            if not body.get("hasMore") or not items:
                return out
            offset += int(body.get("count") or len(items))

    async def _create(self, resource: str, body: Mapping[str, Any], *,
                      family: str = "fscmRestApi") -> dict[str, Any]:
        return parse_json(await self._call("POST", f"{self.settings.root(family)}/{resource}",
                                           body=body))

    async def _batch(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Several operations in one request and one transaction (all or none): each part's
        payload by its id."""
        body = parse_json(await self._call("POST", self.settings.root(), body={"parts": parts},
                                           content_type=BATCH))
        return {p.get("id"): p.get("payload") for p in body.get("parts") or []
                if isinstance(p, dict)}

    async def _create_for_invoice(self, resource: str, body: Mapping[str, Any], invoice_id: str
                                  ) -> tuple[dict[str, Any], tuple[str, Decimal] | None]:
        """A memo or receipt created, and the invoice's open installment read, in one batch:
        applying it to the invoice needs both."""
        installments = (f"/receivablesInvoices/{invoice_id}/child/receivablesInvoiceInstallments"
                        f"?onlyData=true&limit=100")
        out = await self._batch([
            {"id": "installments", "path": installments, "operation": "get"},
            {"id": "created", "path": f"/{resource}", "operation": "create", "payload": body}])
        if not isinstance(out.get("created"), dict):
            # Committed or not, a retry finds the document by its number before creating it.
            raise Unavailable(f"Oracle's batch answer has no created {resource} part",
                              system=SYSTEM)
        page = out.get("installments") or {}
        installment = (open_installment_of(page.get("items") or []) if not page.get("hasMore")
                       else await self._open_installment(invoice_id))
        return out["created"], installment

    async def _soap(self, path: str, namespace: str, operation: str, payload: str
                    ) -> ElementTree.Element:
        """One SOAP call; a fault (HTTP 500 with ``env:Fault``) is Oracle refusing the request."""
        envelope = (f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                    f'xmlns:typ="{namespace}types/" xmlns:ns="{namespace}"><soapenv:Header/>'
                    f'<soapenv:Body><typ:{operation}>{payload}</typ:{operation}></soapenv:Body>'
                    f'</soapenv:Envelope>')
        url = f"{self.settings.instance_url}{path}"
        try:
            resp = await self._client.post(url, content=envelope.encode(), headers={
                "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f"{namespace}{operation}"})
        except httpx.TransportError as exc:
            raise Unavailable(f"connection error on POST {path}: {type(exc).__name__}",
                              system=SYSTEM) from exc
        fault = fault_string(resp.text) if resp.status_code == 500 else None
        if fault is not None:
            raise Rejected(f"HTTP 500 on POST {path} ({operation}): {fault}", system=SYSTEM,
                           status=500)
        try:
            raise_for_response(resp, SYSTEM, read_error)
        except AuthExpired as exc:
            raise AuthFailed(exc.message, system=SYSTEM, status=exc.status) from None
        try:
            return ElementTree.fromstring(resp.content)
        except ElementTree.ParseError:
            raise Unavailable(f"{operation} answered without a SOAP envelope", system=SYSTEM,
                              status=resp.status_code) from None

    # --- customers ---------------------------------------------------------------------------

    async def upsert_customer(self, customer: Customer, external_id: str, *,
                              aliases: Sequence[str] = (),
                              match: CustomerMatch = "own") -> ErpDocumentRef:
        """Ours (:func:`owned_party`) takes the store's name, e-mail, phone and primary address
        (an empty store field never blanks Oracle's); with ``match`` "email" an existing party
        with the e-mail that already has a customer account is booked to as it is (a party
        without one is not made a customer); else ours is created under ``external_id``.
        Never matched by name. Then ours gets its customer account (created with a primary
        bill-to site when it has none): the account number is what invoices bill to."""
        ids = [external_id, *aliases]
        email = customer.email.strip()
        rows = await self._candidate_parties(ids, email if match == "email" else "")
        party, created = owned_party(rows, self.settings.customer_source_system, ids), False
        if party is not None:
            await self._update_party(party, customer)
        elif match == "email":
            for theirs in parties_by_email(rows, email):
                if (account := await self._account_of(theirs)) is not None:
                    return self._customer_ref(account, external_id, created=False)
        if party is None:
            party, created = await self._create_party(customer, external_id), True
        account = None if created else await self._account_of(party)  # a new party has none
        if account is None:
            account = await self._create_account(party, customer)
            created = True
        return self._customer_ref(account, external_id, created=created)

    @staticmethod
    def _customer_ref(account: Mapping[str, Any], external_id: str, *,
                      created: bool) -> ErpDocumentRef:
        return ErpDocumentRef(system=SYSTEM, kind="customer", number=account["AccountNumber"],
                              id=id_text(account.get("AccountId")), external_ref=external_id,
                              created=created)

    async def get_customer(self, external_id: str) -> Customer | None:
        """The party ml-connector keeps for ``external_id``, in canonical form (the inverse of
        what :meth:`upsert_customer` writes: the organization name comes back as ``company``)."""
        party = await self._party_by_reference(external_id)
        if party is None:
            return None
        address = primary_address(party)
        a = address or {}

        def text(row: Mapping[str, Any], name: str) -> str:
            return str(row.get(name) or "").strip()

        phone = text(party, "PhoneNumber")
        return Customer(email=text(party, "EmailAddress"), company=text(party, "OrganizationName"),
                        phone=phone, billing=Address(
                            line1=text(a, "Address1"), line2=text(a, "Address2"),
                            city=text(a, "City"), state=text(a, "State"),
                            postcode=text(a, "PostalCode"), country=text(a, "Country"),
                            phone=phone))

    async def _party_by_reference(self, external_id: str) -> dict[str, Any] | None:
        rows = await self._items("accounts", q_equals(
            SourceSystem=self.settings.customer_source_system,
            SourceSystemReferenceValue=external_id), family="crmRestApi", limit=1,
            expand="PrimaryAddress")
        return rows[0] if rows else None

    async def _candidate_parties(self, ids: list[str], email: str) -> list[dict[str, Any]]:
        """One look-up for both kinds of match (``or``): ours by source reference and, when
        ``email`` is given, parties with the e-mail. Only when a full page of e-mail matches
        hides whether ours exists is it looked up on its own."""
        source = self.settings.customer_source_system
        rows = await self._parties(q_ours_or_email(source, ids, email))
        if email and owned_party(rows, source, ids) is None and len(rows) >= PARTY_PAGE:
            rows = await self._parties(q_ours_or_email(source, ids, "")) + rows
        return rows

    async def _parties(self, q: str) -> list[dict[str, Any]]:
        return await self._items("accounts", q, family="crmRestApi", limit=PARTY_PAGE,
                                 expand="PrimaryAddress")

    async def _update_party(self, party: dict[str, Any], customer: Customer) -> None:
        """PATCH what differs on a party of ours: its own fields, then its primary address
        (added when the party has none and the store has a street address)."""
        url = f"{self.settings.root('crmRestApi')}/accounts/{party['PartyNumber']}"
        changes = differences(party, party_fields(customer))
        if changes:
            await self._call("PATCH", url, body=changes)
            party.update(changes)
        wanted = address_fields(customer.billing, "")
        current = primary_address(party)
        if current is None and "PrimaryAddress" not in party:
            rows = await self._all(f"{url}/child/PrimaryAddress")
            current = rows[0] if rows else None
        if current is not None:
            changes = differences(current, wanted)
            if changes:
                await self._call("PATCH", f"{url}/child/PrimaryAddress/"
                                          f"{current['AddressNumber']}", body=changes)
        elif customer.billing.line1:
            created = parse_json(await self._call("POST", f"{url}/child/PrimaryAddress", body={
                **wanted, "Country": wanted.get("Country") or self.settings.default_country}))
            party["PrimaryAddress"] = [created]

    async def _create_party(self, customer: Customer, external_id: str) -> dict[str, Any]:
        address = address_fields(customer.billing, self.settings.default_country)
        body = {k: v for k, v in {
            **party_fields(customer),
            "OrganizationName": (customer.display_name or external_id)[:360],
            "SourceSystem": self.settings.customer_source_system,
            "SourceSystemReferenceValue": external_id,
            "PrimaryAddress": [address]}.items() if v}
        return await self._create("accounts", body, family="crmRestApi")

    async def _account_of(self, party: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = await self._items("receivablesCustomerAccountActivities",
                                 q_equals(CustomerId=id_text(party.get("PartyId"))), limit=1)
        return rows[0] if rows else None

    async def _party_site(self, party: Mapping[str, Any]) -> str:
        address = primary_address(party)
        addresses = [address] if address is not None else []
        if not addresses:
            addresses = await self._all(f"{self.settings.root('crmRestApi')}/accounts/"
                                        f"{party['PartyNumber']}/child/PrimaryAddress")
        if not addresses:
            raise Rejected(f"party {party.get('PartyNumber')} has no address to bill to",
                           system=SYSTEM, resolution="give the customer an address in Oracle "
                                                     "Fusion, then replay the order")
        return id_text(addresses[0].get("AddressId"))

    async def _create_account(self, party: Mapping[str, Any],
                              customer: Customer) -> dict[str, Any]:
        """SOAP ``createCustomerAccount``: account, account site and primary BILL_TO use."""
        use = {"SiteUseCode": "BILL_TO", "PrimaryFlag": "true", "CreatedByModule": "HZ_WS"}
        account = {
            "PartyId": id_text(party.get("PartyId")),
            "AccountName": str(party.get("OrganizationName") or customer.display_name)[:240],
            "CustomerType": "R", "CreatedByModule": "HZ_WS",
            "CustomerAccountSite": {"PartySiteId": await self._party_site(party),
                                    "CreatedByModule": "HZ_WS", "CustomerAccountSiteUse": use}}
        payload = f"<typ:customerAccount>{sdo_xml(account)}</typ:customerAccount>"
        root = await self._soap(self.settings.customer_account_service, CUSTOMER_NS,
                                "createCustomerAccount", payload)
        number = xml_text(root, "AccountNumber")
        if not number:
            raise Unavailable("createCustomerAccount answered without an AccountNumber",
                              system=SYSTEM)
        return {"AccountNumber": number, "AccountId": xml_text(root, "CustomerAccountId")}

    # --- reference data ----------------------------------------------------------------------

    def combination(self, line: DocumentLine) -> str:
        """The line's Revenue account combination: a GL rule naming a full combination is
        used as it is; otherwise account and cost centre fill the connection's template."""
        rule = documents.require_rule(line, LABEL)
        if self.settings.segment_delimiter in rule.gl_account:
            return rule.gl_account
        return self.settings.account_template.format(
            account=rule.gl_account,
            cost_center=rule.cost_center or self.settings.default_cost_center)

    def _segment_names(self) -> dict[int, str]:
        parts = self.settings.account_template.split(self.settings.segment_delimiter)
        return {i: {"{account}": "account", "{cost_center}": "cost center"}[p]
                for i, p in enumerate(parts) if p in ("{account}", "{cost_center}")}

    async def _cached(self, key: tuple, load) -> Any:
        found, value = self._cache.get(key)
        if not found:
            value = await load()
            self._cache.put(key, value)
        return value

    async def _combination_exists(self, combo: str) -> bool:
        segments = combo.split(self.settings.segment_delimiter)

        async def load() -> bool:
            q = q_equals(**{f"Segment{i + 1}": s for i, s in enumerate(segments)},
                         EnabledFlag="Y")
            return bool(await self._items("accountCombinationsLOV", q, limit=1))
        return await self._cached(("combination", combo), load)

    async def _segment_exists(self, position: int, value: str) -> bool:
        async def load() -> bool:
            return bool(await self._items("accountCombinationsLOV",
                                          q_equals(**{f"Segment{position + 1}": value}), limit=1))
        return await self._cached(("segment", position, value), load)

    async def validate_accounts(self, doc: ErpDocument) -> dict[int, str]:
        """Each line's combination, every one checked against Oracle before anything is
        written; the first unknown one raises MappingMissing naming the account/cost centre."""
        combos = {n: self.combination(line) for n, line in enumerate(doc.lines, start=1)}
        for n, combo in combos.items():
            if await self._combination_exists(combo):
                continue
            line = doc.lines[n - 1]
            segments = combo.split(self.settings.segment_delimiter)
            missing = [f"{what} {segments[i]}" for i, what in self._segment_names().items()
                       if i < len(segments) and not await self._segment_exists(i, segments[i])]
            what = " and ".join(missing) or f"account combination {combo}"
            raise MappingMissing(
                f"Oracle Fusion has no enabled {what} (combination {combo}) for "
                f"{line_kind_word(line)}", system=SYSTEM,
                resolution=f"create {what} in Oracle Fusion's chart of accounts or change the "
                           f"connection's GL rule for {line_kind_word(line)} (ml-connector "
                           f"connections map CONNECTION --gl-rule sku={line.sku or '*'},"
                           f"account=ACCOUNT[,cost_center=CC]), then replay the order")
        return combos

    async def validate_receipt_method(self, method: str) -> None:
        async def load() -> bool:
            return bool(await self._items("receiptMethods", q_equals(Name=method), limit=1))
        if not await self._cached(("receipt_method", method), load):
            raise MappingMissing(
                f"Oracle Fusion has no receipt method '{method}'", system=SYSTEM,
                resolution=f"create the receipt method {method} in Oracle Fusion or map the "
                           f"store's payment method to an existing one (ml-connector connections "
                           f"map CONNECTION --payment METHOD={method})")

    # --- documents ---------------------------------------------------------------------------

    async def find_document(self, kind: DocumentKind, external_ref: str) -> ErpDocumentRef | None:
        """Also finishes the application an interrupted attempt left undone (a memo or
        receipt created but not applied)."""
        if kind in ("invoice", "adjustment_invoice"):
            rows = await self._items("receivablesInvoices",
                                     q_equals(TransactionNumber=external_ref), limit=1)
            return invoice_ref(kind, rows[0], created=False) if rows else None
        if kind == "credit_memo":
            rows = await self._items("receivablesCreditMemos",
                                     q_equals(TransactionNumber=external_ref), limit=1)
            if not rows:
                return None
            link = MEMO_LINK.search(str(rows[0].get("CreditMemoComments") or ""))
            if link and to_decimal(rows[0].get("TransactionBalanceDue")) != 0:
                await self._apply_memo(rows[0], await self._open_installment(link.group(2)))
            return memo_ref(rows[0], created=False)
        if kind == "refund_payment":
            return await self._find_refund(external_ref)
        if kind == "receipt":
            rows = await self._items("standardReceipts", q_equals(ReceiptNumber=external_ref),
                                     limit=1)
            if not rows:
                return None
            if (self.settings.receipt_application == "action"
                    and to_decimal(rows[0].get("UnappliedAmount")) > 0):
                await self._apply_unapplied(rows[0])
            return receipt_ref(rows[0], created=False)
        raise Rejected(f"the Oracle Fusion connector has no {kind} documents", system=SYSTEM)

    async def create_document(self, doc: ErpDocument) -> ErpDocumentRef:
        combos = await self.validate_accounts(doc)
        memo = doc.kind == "credit_memo"
        body = self._memo_body(doc, combos) if memo else self._invoice_body(doc, combos)
        invoice_id = doc.applies_to.id if memo and doc.applies_to is not None else ""
        try:
            if invoice_id:
                saved, installment = await self._create_for_invoice(
                    "receivablesCreditMemos", body, invoice_id)
            else:
                saved = await self._create(
                    "receivablesCreditMemos" if memo else "receivablesInvoices", body)
        except Rejected as exc:
            mapped = mapping_error(exc, doc)
            if mapped is exc:
                raise
            raise mapped from exc
        if not memo:
            return invoice_ref(doc.kind, saved, created=True)
        if invoice_id:
            await self._apply_memo(saved, installment)
        return memo_ref(saved, created=True)

    def _header(self, doc: ErpDocument) -> dict[str, Any]:
        return {"BusinessUnit": self.settings.business_unit, "TransactionNumber": doc.external_ref,
                "TransactionDate": doc.date, "AccountingDate": doc.date,
                "BillToCustomerNumber": doc.customer_key}

    def _invoice_body(self, doc: ErpDocument, combos: Mapping[int, str]) -> dict[str, Any]:
        taxes = allocate_taxes(doc)
        return {
            **self._header(doc), "TransactionSource": self.settings.invoice_source,
            "TransactionType": self.settings.invoice_type, "InvoiceCurrencyCode": doc.currency,
            "PaymentTerms": self.settings.payment_terms, "PurchaseOrder": doc.order_number[:50],
            "Comments": doc.description[:1760], "AllowCompletion": "Y",
            "receivablesInvoiceLines": [
                document_line(n, line, taxes.get(n, {}), "Quantity", "Description", "LineAmount",
                              1, doc.currency, self.settings.tax_regime_code)
                for n, line in enumerate(doc.lines, start=1)],
            "receivablesInvoiceDistributions": [
                {"InvoiceLineNumber": n, "AccountClass": "Revenue", "AccountCombination": combo,
                 "Percent": 100} for n, combo in combos.items()]}

    def _memo_body(self, doc: ErpDocument, combos: Mapping[int, str]) -> dict[str, Any]:
        taxes = allocate_taxes(doc)
        comments = doc.description
        if doc.applies_to is not None:  # find_document reads it to finish an interrupted apply
            comments = f"{comments} [invoice {doc.applies_to.number} id {doc.applies_to.id}]"
        body = {
            **self._header(doc), "TransactionSource": self.settings.credit_memo_source,
            "TransactionType": self.settings.credit_memo_type, "CreditMemoCurrency": doc.currency,
            "CreditMemoComments": comments[:1760],
            "receivablesCreditMemoLines": [
                document_line(n, line, taxes.get(n, {}), "LineQuantityCredit", "LineDescription",
                              "LineAmountCredit", -1, doc.currency, self.settings.tax_regime_code)
                for n, line in enumerate(doc.lines, start=1)],
            "receivablesCreditMemoDistributions": [
                {"CreditMemoLineNumber": n, "AccountClass": "Revenue", "AccountCombination": combo,
                 "Percent": 100} for n, combo in combos.items()]}
        if self.settings.credit_reason:
            body["CreditReason"] = self.settings.credit_reason
        return body

    async def _open_installment(self, invoice_id: str) -> tuple[str, Decimal] | None:
        return open_installment_of(await self._all(
            f"{self.settings.root()}/receivablesInvoices/{invoice_id}"
            f"/child/receivablesInvoiceInstallments"))

    async def _apply_memo(self, memo: Mapping[str, Any],
                          installment: tuple[str, Decimal] | None) -> None:
        """Apply what the invoice's open installment still owes (never more); the rest stays on
        account. The parameter element is named after the documented
        ``ApplyOnAccountCreditMemo`` object."""
        unapplied = abs(to_decimal(memo.get("TransactionBalanceDue", memo.get("EnteredAmount"))))
        if installment is None or unapplied == 0:
            return
        amount = min(unapplied, installment[1])
        day = str(memo.get("TransactionDate") or date.today().isoformat())
        application = {
            "CreditMemoTrxId": id_text(memo.get("CustomerTransactionId")),
            "CreditMemoTrxNumber": str(memo.get("TransactionNumber")),
            "AppliedPaymentScheduleId": installment[0], "AmountApplied": format(amount, "f"),
            "ApplyDate": day, "GlDate": day, "BusinessUnit": self.settings.business_unit}
        wrapper = "typ:ApplyOnAccountCreditMemo"
        payload = f"<{wrapper}>{sdo_xml(application)}</{wrapper}>"
        await self._soap(self.settings.credit_memo_service, CREDIT_MEMO_NS,
                         "applyOnAccountCreditMemo", payload)

    async def iter_documents(self, prefix: str, since: date) -> AsyncIterator[ErpDocumentRef]:
        """Every invoice, credit memo and standard receipt whose number starts with ``prefix``
        (ml-connector numbers them with their external reference) dated ``since`` or later,
        all pages."""
        sources = [("receivablesInvoices", "TransactionNumber", "TransactionDate"),
                   ("receivablesCreditMemos", "TransactionNumber", "TransactionDate"),
                   ("standardReceipts", "ReceiptNumber", "ReceiptDate")]
        for resource, number, dated in sources:
            q = q_prefix_since(number, prefix, dated, since)
            for row in await self._all(f"{self.settings.root()}/{resource}", q=q):
                if not str(row.get(number) or "").startswith(prefix):
                    continue  # LIKE's own wildcards ("_") in a prefix match more
                if resource == "receivablesInvoices":
                    yield invoice_ref("invoice", row, created=False)
                elif resource == "receivablesCreditMemos":
                    yield memo_ref(row, created=False)
                else:
                    yield receipt_ref(row, created=False)

    # --- refunds' cash-back -------------------------------------------------------------------

    async def create_refund_payment(self, doc: RefundPaymentDocument) -> ErpDocumentRef:
        """The on-account credit memo refunded to the customer with the SOAP
        ``CreditMemoService.createOnAccountCreditMemoRefund`` (its ``OnAccountCreditMemoRefund``
        object): the memo's unapplied balance falls to zero, and Payables receives the refund
        as a payment request. A memo with less unapplied than the refund parks naming the
        manual refund."""
        memo = doc.applies_to
        if not self.settings.refund_payment_method:
            raise Rejected(
                f"refund {doc.refund_id} of order {doc.order_number} ({doc.amount} "
                f"{doc.currency}) is on account on credit memo {memo.number}: Oracle Fusion "
                f"refunds it only as a Payables payment request, and the card processor has "
                f"already paid the buyer", system=SYSTEM,
                resolution=f"refund credit memo {memo.number} of customer account "
                           f"{doc.customer_key} in Receivables and record it as paid in Payables "
                           f"(not paid again), or set the connection's Oracle "
                           f"refund_payment_method to a Payables payment method your payment "
                           f"runs leave alone (e.g. CLEARING) so ml-connector books it; then "
                           f"replay the order")
        refund = {"CreditMemoCustomerTrxId": memo.id, "CreditMemoTrxNumber": memo.number,
                  "CreditMemoBusinessUnit": self.settings.business_unit,
                  "AmountApplied": format(doc.amount, "f"), "ApplyDate": doc.date.isoformat(),
                  "GlDate": doc.date.isoformat(), "Comments": doc.external_ref}
        if not memo.id:
            del refund["CreditMemoCustomerTrxId"]
        refund["RefundPaymentMethodCode"] = self.settings.refund_payment_method
        wrapper = "typ:OnAccountCreditMemoRefund"
        try:
            root = await self._soap(self.settings.credit_memo_service, CREDIT_MEMO_NS,
                                    "createOnAccountCreditMemoRefund",
                                    f"<{wrapper}>{sdo_xml(refund)}</{wrapper}>")
        except Rejected as exc:
            if "exceeds" not in exc.message:
                raise
            raise Rejected(
                f"Oracle Fusion refused the refund of {doc.amount} {doc.currency} on credit memo "
                f"{memo.number}: {exc.message}", system=SYSTEM, status=exc.status,
                resolution=f"credit memo {memo.number} has less unapplied than the {doc.amount} "
                           f"paid back (it was applied to its invoice, whose receipt was not "
                           f"booked first); in Receivables refund the customer's credit by hand "
                           f"(Manage Customer Credits, or the receipt's unapplied amount), then "
                           f"replay the order") from exc
        number = (xml_text(root, "ApplicationReferenceNumber")
                  or xml_text(root, "ReceivableApplicationId") or memo.number)
        return ErpDocumentRef(system=SYSTEM, kind="refund_payment",
                              doc_type="On-account credit memo refund", number=number,
                              id=xml_text(root, "ReceivableApplicationId"),
                              external_ref=doc.external_ref, total=doc.amount,
                              currency=doc.currency, created=True)

    async def refund_credit(self, memo: ErpDocumentRef) -> Decimal:
        """The credit a refund's memo still holds: its unapplied balance, what its application
        to the invoice's open installment left on account (the money paid back)."""
        row = await self._memo_row(memo.number)
        return abs(to_decimal(row.get("TransactionBalanceDue"))) if row else ZERO

    async def receipt_credit(self, receipt: ErpDocumentRef) -> Decimal:
        """What a receipt holds unapplied (its UnappliedAmount): the customer's credit a refund
        booked before the payment left on it."""
        rows = await self._items("standardReceipts", q_equals(ReceiptNumber=receipt.number),
                                 limit=1)
        return max(ZERO, to_decimal(rows[0].get("UnappliedAmount"))) if rows else ZERO

    @staticmethod
    def manual_receipt_refund(doc: RefundPaymentDocument) -> str:
        """The step that pays a receipt's unapplied amount back, done in Receivables: the REST
        action that refunds a standard receipt (``refundReceipt``) exists only in the newest
        releases, so ml-connector books none and names the step."""
        receipt = doc.applies_to
        return (f"{doc.amount} {doc.currency} of receipt {receipt.number} is unapplied: refund "
                f"{doc.refund_id} of order {doc.order_number} was booked before the payment (its "
                f"credit memo settled the invoice) and the buyer got the {doc.amount} back. "
                f"Resolution: in Receivables (Manage Receipts) open receipt {receipt.number} of "
                f"customer account {doc.customer_key} and create a refund of {doc.amount} "
                f"{doc.currency} from its unapplied amount (record it as paid in Payables, not "
                f"paid again), then replay the order")

    async def _memo_row(self, number: str) -> dict[str, Any] | None:
        rows = await self._items("receivablesCreditMemos", q_equals(TransactionNumber=number),
                                 limit=1)
        return rows[0] if rows else None

    async def _find_refund(self, external_ref: str) -> ErpDocumentRef | None:
        """A refund has no number of its own that REST reads back: it is found through its
        credit memo (the reference without ``-P``). A memo with nothing left unapplied may have
        been refunded or applied in full to its invoice (a refund before the payment): what it
        applied to transactions (the account's ``creditMemoApplications``) tells them apart;
        the rest of its amount, neither applied nor unapplied, is the refund."""
        memo_number = external_ref.removesuffix("-P")
        row = await self._memo_row(memo_number)
        if row is None or row.get("EnteredAmount") is None:
            return None
        total = abs(to_decimal(row["EnteredAmount"]))
        unapplied = abs(to_decimal(row.get("TransactionBalanceDue")))
        if unapplied >= total:
            return None  # nothing applied, nothing refunded
        refunded = total - unapplied - await self._applied_to_transactions(row)
        if refunded <= 0:
            return None
        return ErpDocumentRef(system=SYSTEM, kind="refund_payment",
                              doc_type="On-account credit memo refund", number=memo_number,
                              id=id_text(row.get("CustomerTransactionId")),
                              external_ref=external_ref, total=refunded,
                              currency=row.get("CreditMemoCurrency"), created=False)

    async def _applied_to_transactions(self, memo: Mapping[str, Any]) -> Decimal:
        """What a memo applied to invoices: its rows in its account's ``creditMemoApplications``
        that name a reference transaction. An account it cannot read counts the whole memo as
        applied: no refund is found then, and a second one would exceed what is unapplied."""
        accounts = await self._items("receivablesCustomerAccountActivities",
                                     q_equals(AccountNumber=str(memo.get("BillToCustomerNumber"))),
                                     limit=1)
        if not accounts:
            return abs(to_decimal(memo.get("EnteredAmount")))
        memo_id = id_text(memo.get("CustomerTransactionId"))
        rows = await self._all(
            f"{self.settings.root()}/receivablesCustomerAccountActivities/"
            f"{id_text(accounts[0].get('AccountId'))}/child/creditMemoApplications")
        return sum((abs(to_decimal(r.get("ApplicationAmount"))) for r in rows
                    if id_text(r.get("CreditMemoId")) == memo_id
                    and (r.get("ReferenceTransactionId") or r.get("ReferenceTransactionNumber"))),
                   ZERO)

    # --- receipts ----------------------------------------------------------------------------

    async def create_receipt(self, receipt: ReceiptDocument) -> ErpDocumentRef:
        await self.validate_receipt_method(receipt.payment_method)
        invoice = receipt.applies_to
        body: dict[str, Any] = {
            "ReceiptNumber": receipt.external_ref, "ReceiptMethod": receipt.payment_method,
            "ReceiptDate": receipt.date, "AccountingDate": receipt.date,
            "BusinessUnit": self.settings.business_unit, "Amount": receipt.amount,
            "Currency": receipt.currency, "CustomerAccountNumber": receipt.customer_key,
            "Comments": f"{receipt.description} ({receipt.reference})"[:240],
            "remittanceReferences": [{"ReceiptMatchBy": "Transaction Number",
                                      "ReferenceNumber": invoice.number,
                                      "ReferenceAmount": receipt.amount}]}
        if self.settings.remittance_bank_account_number:
            body["RemittanceBankAccountNumber"] = self.settings.remittance_bank_account_number
        if self.settings.receipt_application == "action" and invoice.id:
            saved, installment = await self._create_for_invoice("standardReceipts", body,
                                                                invoice.id)
            await self._apply_receipt(saved, installment)
        else:
            saved = await self._create("standardReceipts", body)
        return receipt_ref(saved, created=True)

    async def _apply_unapplied(self, row: Mapping[str, Any]) -> None:
        """The invoice a receipt was for, from its remittance reference."""
        refs = await self._all(f"{self.settings.root()}/standardReceipts/"
                               f"{id_text(row['StandardReceiptId'])}/child/remittanceReferences")
        number = next((r.get("ReferenceNumber") for r in refs if r.get("ReferenceNumber")), None)
        if not number:
            return
        invoices = await self._items("receivablesInvoices",
                                     q_equals(TransactionNumber=str(number)), limit=1)
        if invoices:
            await self._apply_receipt(row, await self._open_installment(
                id_text(invoices[0].get("CustomerTransactionId"))))

    async def _apply_receipt(self, receipt: Mapping[str, Any],
                             installment: tuple[str, Decimal] | None) -> None:
        """The ``applyReceipt`` action to the invoice's open installment; a release without it
        (404) leaves the receipt to AutoMatch, which its remittance reference feeds."""
        unapplied = to_decimal(receipt.get("UnappliedAmount", receipt.get("Amount")))
        if installment is None or unapplied <= 0:
            return
        url = (f"{self.settings.root()}/standardReceipts/{id_text(receipt['StandardReceiptId'])}"
               f"/action/applyReceipt")
        body = {"appliedPaymentScheduleId": int(installment[0]) if installment[0].isdigit()
                else installment[0], "amountApplied": min(unapplied, installment[1])}
        try:
            await self._call("POST", url, body=body, content_type=ACTION)
        except NotFound:
            return

    # --- catalog and health ------------------------------------------------------------------

    async def iter_item_changes(self, since: datetime) -> AsyncIterator[ItemChange]:
        """Nothing: the reference covers Receivables only, not the SCM item and price-list
        resources, so Oracle is not a catalog source for this connector (yet)."""
        return
        yield  # pragma: no cover  (makes this an async generator)

    async def ping(self) -> dict[str, Any]:
        """The resource catalog (reachability, framework version) and one authenticated read."""
        report: dict[str, Any] = {"instance": self.settings.instance_url,
                                  "api_version": self.settings.api_version,
                                  "framework_version": self.settings.framework_version,
                                  "auth": self.settings.auth}
        try:
            await self._items("receivablesInvoices",
                              q_equals(TransactionNumber="ml-connector-ping"), limit=1)
            report["ok"] = True
        except ExternalError as exc:
            report["ok"] = False
            report["error"] = str(exc)
        return report


def open_connector(settings: Mapping[str, Any], credentials: Mapping[str, Any], *,
                   tokens: TokenStore, transport: httpx.AsyncBaseTransport | None = None,
                   on_settings_change: Any = None) -> OracleFusionErp:
    """The :class:`connectors.base.ConnectorFactory` of Oracle Fusion."""
    return OracleFusionErp(OracleFusionSettings.model_validate(settings),
                           OracleFusionCredentials.model_validate(credentials), tokens,
                           transport=transport)

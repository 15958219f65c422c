"""Trading Community parties: creation and changes of organizations, sites and contacts."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.oracle_fusion.receivables import ADDRESS_FIELDS, PARTY_FIELDS, _check_fields, _text
from sandbox.oracle_fusion.views import render
from sandbox.oracle_fusion.wire import ApiError, JSON, _json, bad, now_iso

if TYPE_CHECKING:
    from sandbox.oracle_fusion.views import View


class PartyApi:
    """Trading Community parties: creation and changes of organizations, sites and contacts."""

    async def change_party(self, request: Request, party: dict, rest: list[str], view: View,
                           href: str) -> Response:
        """``PATCH accounts/{PartyNumber}``, ``POST …/child/PrimaryAddress`` and ``PATCH
        …/child/PrimaryAddress/{AddressNumber}``: only the attributes sent change."""
        ctype = request.headers.get("content-type", "")
        if not (ctype.startswith("application/json")
                or ctype.startswith("application/vnd.oracle.adf.resourceitem+json")):
            raise ApiError(415, f"The media type {ctype or '(none)'} isn't supported.")
        body = await _json(request)
        method = request.method
        if len(rest) == 1 and method == "PATCH":
            where = f"accounts/{rest[0]}"
            body = _check_fields(body, PARTY_FIELDS - {"PrimaryAddress", "PartyNumber"}, where)
            if "OrganizationName" in body:
                _text(body, "OrganizationName", where, required=True, max_len=360)
            source = body.get("SourceSystem", party.get("SourceSystem"))
            ref = body.get("SourceSystemReferenceValue", party.get("SourceSystemReferenceValue"))
            if ref is not None and ("SourceSystem" in body or "SourceSystemReferenceValue" in body):
                if source not in self.state.lookups["source_systems"]:
                    raise bad(f"The source system {source} isn't defined.", f"{where}/SourceSystem")
                if any(p is not party and p["SourceSystem"] == source
                       and p["SourceSystemReferenceValue"] == ref for p in self.state.parties.values()):
                    raise bad(f"The source system reference {source} {ref} already exists.",
                              f"{where}/SourceSystemReferenceValue")
            party.update(body)
            party["LastUpdateDate"] = now_iso()
            return JSON(render(party, href, view, ("PrimaryAddress",)))
        if len(rest) in (3, 4) and rest[1] == "child" and rest[2] == "PrimaryAddress":
            where = f"accounts/{rest[0]}/child/PrimaryAddress"
            body = _check_fields(body, ADDRESS_FIELDS, where)
            if len(rest) == 3 and method == "POST":
                _text(body, "Country", where, required=True)
                address = self.state.add_address(party, body)
                status = 201
            elif len(rest) == 4 and method == "PATCH":
                address = next((a for a in party["PrimaryAddress"] if a["AddressNumber"] == rest[3]), None)
                if address is None:
                    raise ApiError(404, f"The child item {rest[3]} doesn't exist.")
                if "Country" in body:
                    _text(body, "Country", where, required=True)
                address.update(body)
                status = 200
            else:
                raise ApiError(405, f"The method {method} isn't allowed on {where}.")
            party["LastUpdateDate"] = now_iso()
            return JSON(render(address, f"{href}/child/PrimaryAddress/{address['AddressNumber']}", view),
                        status_code=status)
        raise ApiError(405, f"The method {method} isn't allowed on {'/'.join(['accounts', *rest])}.")

    def create_party(self, body: Any) -> dict:
        where = "accounts"
        body = _check_fields(body, PARTY_FIELDS, where)
        _text(body, "OrganizationName", where, required=True, max_len=360)
        source, ref = body.get("SourceSystem"), body.get("SourceSystemReferenceValue")
        if ref is not None:
            if source not in self.state.lookups["source_systems"]:
                raise bad(f"The source system {source} isn't defined.", f"{where}/SourceSystem")
            if any(p["SourceSystem"] == source and p["SourceSystemReferenceValue"] == ref
                   for p in self.state.parties.values()):
                raise bad(f"The source system reference {source} {ref} already exists.",
                          f"{where}/SourceSystemReferenceValue")
        addresses = body.get("PrimaryAddress") or []
        if not isinstance(addresses, list):
            raise bad("PrimaryAddress must be a list.", f"{where}/PrimaryAddress")
        for i, address in enumerate(addresses):
            _check_fields(address, ADDRESS_FIELDS, f"{where}/PrimaryAddress/{i}")
            _text(address, "Country", f"{where}/PrimaryAddress/{i}", required=True)
        return self.state.create_party(body)

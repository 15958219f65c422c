"""Redaction: by key, and by shape inside strings (URLs, headers, JSON fragments, e-mails),
for our structlog lines and for standard-library records alike."""
from __future__ import annotations

import json
import logging

import pytest
import structlog

from starter.logs import configure, redact, redact_text


def test_secrets_and_personal_data_are_redacted():
    event = {"event": "webhook.accepted", "consumer_secret": "cs_1", "access_token": "t",
             "detail": "order for ann@example.com", "payload": {"billing": {"email": "a@b.co"}},
             "connection": "shop"}
    out = redact(None, None, event)
    assert out["consumer_secret"] == out["access_token"] == "[redacted]"
    assert "ann@example.com" not in out["detail"]
    assert out["payload"]["billing"]["email"] == "[redacted]"
    assert out["connection"] == "shop" and out["event"] == "webhook.accepted"


@pytest.mark.parametrize("text,secrets,kept", [
    ("GET https://shop.example/wp-json/wc/v3/orders?consumer_key=ck_live1&consumer_secret=cs_live2&page=2",
     ["ck_live1", "cs_live2"], ["page=2", "/wc/v3/orders"]),
    ("POST /oauth/token grant_type=refresh_token&refresh_token=rt-9x&client_secret=s3c", ["rt-9x", "s3c"],
     ["grant_type=refresh_token"]),
    ("https://erp.example/api?access_token=at.XYZ#frag", ["at.XYZ"], ["https://erp.example/api"]),
    ("request headers: Authorization: Bearer eyJhbGciOi.payload.sig", ["eyJhbGciOi"], ["request headers"]),
    ("{'Authorization': 'Basic Y2tfbGl2ZTE6Y3NfbGl2ZTI=', 'Accept': 'application/json'}",
     ["Y2tfbGl2ZTE6Y3NfbGl2ZTI="], ["application/json"]),
    ('OAuth oauth_consumer_key="ck_live1", oauth_signature="tR3%2Bx", oauth_nonce="n1"',
     ["ck_live1", "tR3%2Bx"], ['oauth_nonce="n1"']),
    ('400 body {"refresh_token": "rt-secret", "error": "invalid_grant"}', ["rt-secret"], ["invalid_grant"]),
    ("customer lookup ?email=ann.buyer%40example.com failed", ["ann.buyer%40example.com", "ann.buyer"], ["failed"]),
    ("duplicate customer Ann Buyer <ann.buyer+shop@mail.example.co.uk>", ["ann.buyer", "mail.example"], ["duplicate"]),
    ("callback?code=AUTH-CODE-1&state=abc", ["AUTH-CODE-1"], ["state=abc"]),
])
def test_credentials_and_emails_inside_strings(text, secrets, kept):
    out = redact_text(text)
    assert all(s not in out for s in secrets), out
    assert all(k in out for k in kept), out


def test_header_maps_and_exceptions():
    out = redact(None, None, {"event": "call", "headers": {"Authorization": "Bearer x1", "X-Api-Key": "k1",
                                                          "Cookie": "sid=1", "X-WC-Webhook-Signature": "sig",
                                                          "Accept": "json"},
                              "error": ValueError("refused for ann@example.com"), "body": b"token=abc"})
    assert set(out["headers"].values()) == {"[redacted]", "json"}
    assert "ann@example.com" not in out["error"] and "abc" not in out["body"]


def test_every_line_is_redacted_in_the_log_file_too(tmp_path, capsys):
    path = tmp_path / "run.log"
    try:
        configure(logging.INFO, log_file=path)
        structlog.get_logger("t").info("store.call", url="https://s/?consumer_key=ck_leak1",
                                       customer="ann@example.com")
        logging.getLogger("temporalio.activity").warning(
            "Completing activity as failed: customer %s rejected, Authorization: Bearer tok-leak2",
            "bob@example.com")
        try:
            raise RuntimeError("refresh_token=rt-leak3")
        except RuntimeError:
            logging.getLogger("temporalio.worker").exception("activity failed")
    finally:
        configure(logging.INFO)  # back to stderr only
    text, err = path.read_text(), capsys.readouterr().err
    assert "store.call" in err
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["event"].split(":")[0] for line in lines] == [
        "store.call", "Completing activity as failed", "activity failed"]
    assert lines[1]["logger"] == "temporalio.activity" and "RuntimeError" in lines[2]["exception"]
    for leak in ("ck_leak1", "ann@example.com", "bob@example.com", "tok-leak2", "rt-leak3"):
        assert leak not in text and leak not in err

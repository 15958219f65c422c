from starter.logs import redact


def test_secrets_and_personal_data_are_redacted():
    event = {"event": "webhook.accepted", "consumer_secret": "cs_1", "access_token": "t",
             "detail": "order for ann@example.com", "payload": {"billing": {"email": "a@b.co"}},
             "connection": "shop"}
    out = redact(None, None, event)
    assert out["consumer_secret"] == out["access_token"] == "[redacted]"
    assert "ann@example.com" not in out["detail"]
    assert out["payload"]["billing"]["email"] == "[redacted]"
    assert out["connection"] == "shop" and out["event"] == "webhook.accepted"

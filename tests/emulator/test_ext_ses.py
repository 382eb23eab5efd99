"""Tests of ext_ses.py: the SES outbox and the verified-sender check."""

from __future__ import annotations

import base64

import pytest
from botocore.exceptions import ClientError

from helpers import Emulator, REGION


# -- SES outbox --------------------------------------------------------------

RAW_MIME = (
    b"From: keyfleet <keyfleet@example.com>\r\n"
    b"To: owner@example.com\r\n"
    b"Subject: Your new access key\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Open the zip with 7-Zip.\r\n"
    b"--b1\r\n"
    b"Content-Type: application/zip\r\n"
    b'Content-Disposition: attachment; filename="keyfleet-1-alice.zip"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    + base64.encodebytes(bytes(range(256))).replace(b"\n", b"\r\n")
    + b"--b1--\r\n"
)


def test_ses_outbox_shows_sesv2_raw_email_byte_for_byte(emu: Emulator) -> None:
    account = "600000000001"
    ses = emu.client("sesv2", account)
    ses.create_email_identity(EmailIdentity="keyfleet@example.com")
    assert emu.control("DELETE", "/_keyfleet/ses/outbox")[0] == 200

    sent = ses.send_email(
        FromEmailAddress="keyfleet@example.com",
        Destination={"ToAddresses": ["owner@example.com"]},
        Content={"Raw": {"Data": RAW_MIME}},
    )
    status, box = emu.control("GET", "/_keyfleet/ses/outbox")
    assert status == 200
    assert len(box["messages"]) == 1
    msg = box["messages"][0]
    assert msg["raw"].encode("utf-8") == RAW_MIME
    assert base64.b64decode(msg["raw_base64"]) == RAW_MIME
    assert msg["message_id"] == sent["MessageId"]
    assert (msg["account"], msg["region"], msg["api"]) == (account, REGION, "sesv2")
    assert msg["source"] == "keyfleet@example.com"
    assert msg["destinations"] == ["owner@example.com"]


def test_ses_outbox_order_simple_content_v1_and_clear(emu: Emulator) -> None:
    account = "600000000002"
    v2 = emu.client("sesv2", account)
    v1 = emu.client("ses", account)
    v2.create_email_identity(EmailIdentity="example.org")  # a domain identity
    emu.control("DELETE", "/_keyfleet/ses/outbox")

    # An unverified sender is rejected and nothing reaches the outbox (AWS does the same).
    with pytest.raises(ClientError) as err:
        v2.send_email(
            FromEmailAddress="nobody@unverified.example",
            Destination={"ToAddresses": ["a@example.com"]},
            Content={"Simple": {"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "x"}}}},
        )
    assert err.value.response["Error"]["Code"] == "MessageRejected"

    v2.send_email(
        FromEmailAddress="security@example.org",
        Destination={"ToAddresses": ["a@example.com"], "CcAddresses": ["c@example.com"]},
        Content={
            "Simple": {
                "Subject": {"Data": "Key rotation summary"},
                "Body": {"Text": {"Data": "3 keys rotated"}, "Html": {"Data": "<p>3 keys</p>"}},
            }
        },
    )
    v1.send_email(
        Source="security@example.org",
        Destination={"ToAddresses": ["b@example.com"]},
        Message={"Subject": {"Data": "Second"}, "Body": {"Text": {"Data": "second body"}}},
    )
    raw_v1 = RAW_MIME.replace(b"keyfleet@example.com", b"security@example.org")
    v1.send_raw_email(RawMessage={"Data": raw_v1})  # recipients from the headers
    box = emu.control("GET", "/_keyfleet/ses/outbox")[1]["messages"]
    assert [m["api"] for m in box] == ["sesv2", "ses", "ses"]
    assert box[0]["destinations"] == ["a@example.com", "c@example.com"]
    assert box[1]["destinations"] == ["b@example.com"]
    assert box[2]["destinations"] == ["owner@example.com"]
    assert box[2]["source"] == "security@example.org"
    assert base64.b64decode(box[2]["raw_base64"]) == raw_v1

    import email
    from email import policy

    first = email.message_from_string(box[0]["raw"], policy=policy.default)
    assert first["Subject"] == "Key rotation summary"
    assert first["From"] == "security@example.org"
    assert first["To"] == "a@example.com" and first["Cc"] == "c@example.com"
    assert first.get_body(("plain",)).get_content().strip() == "3 keys rotated"
    assert first.get_body(("html",)).get_content().strip() == "<p>3 keys</p>"
    second = email.message_from_string(box[1]["raw"], policy=policy.default)
    assert second["Subject"] == "Second"
    assert second.get_content().strip() == "second body"

    assert emu.control("DELETE", "/_keyfleet/ses/outbox") == (200, {"ok": True, "cleared": 3})
    assert emu.control("GET", "/_keyfleet/ses/outbox") == (200, {"messages": []})

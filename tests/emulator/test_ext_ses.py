"""Tests of ext_ses.py (the SES outbox and the verified-sender check) and of
ext_ses_quota.py (the sending quota and the send rate)."""

from __future__ import annotations

import base64
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import Emulator, REGION, own_harness


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


# -- SES sending quota and send rate (ext_ses_quota.py) ------------------------

SENDER = "keyfleet@example.com"
HOUR = 1 / 24  # in days, for clock/advance


def _ses(emu: Emulator, account: str, region: str = REGION) -> tuple[Any, Any]:
    """SES v2 and v1 clients of the account, with a verified sender. They
    make one attempt: botocore would retry a refusal (429, Throttling)."""

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=emu.endpoint,
            region_name=region,
            config=Config(retries={"max_attempts": 1}),
            **emu.credentials(account),
        )

    v2 = client("sesv2")
    v2.create_email_identity(EmailIdentity=SENDER)
    return v2, client("ses")


def _send(v2: Any, *to: str) -> str:
    return v2.send_email(
        FromEmailAddress=SENDER,
        Destination={"ToAddresses": list(to or ("owner@example.com",))},
        Content={"Simple": {"Subject": {"Data": "Your new key"}, "Body": {"Text": {"Data": "x"}}}},
    )["MessageId"]


def _send_v1(v1: Any) -> None:
    v1.send_email(
        Source=SENDER,
        Destination={"ToAddresses": ["owner@example.com"]},
        Message={"Subject": {"Data": "v1"}, "Body": {"Text": {"Data": "x"}}},
    )


def _send_raw_v1(v1: Any) -> None:
    v1.send_raw_email(RawMessage={"Data": RAW_MIME})  # From keyfleet@, To owner@


def _refusal(call: Callable[[], Any]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def _quota(emu: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = emu.control("POST", "/_keyfleet/ses/quota", body)
    assert status == 200, answer
    return answer


def _send_quota(v2: Any) -> dict[str, float]:
    return v2.get_account()["SendQuota"]


def _advance(emu: Emulator, days: float, account: str) -> None:
    status, answer = emu.control("POST", "/_keyfleet/clock/advance", {"days": days, "account": account})
    assert status == 200, answer


def _outbox_ids(emu: Emulator, account: str) -> list[str]:
    box = emu.control("GET", "/_keyfleet/ses/outbox")[1]["messages"]
    return [m["message_id"] for m in box if m["account"] == account]


DAILY_V2 = ("LimitExceededException", 400, "Daily message quota exceeded.")
DAILY_V1 = ("Throttling", 400, "Daily message quota exceeded.")
RATE_V2 = ("TooManyRequestsException", 429, "Maximum sending rate exceeded.")
RATE_V1 = ("Throttling", 400, "Maximum sending rate exceeded.")


def test_ses_get_account_reports_the_quota_and_the_recipients_sent(emu: Emulator) -> None:
    account = "600000000011"
    v2, v1 = _ses(emu, account)

    # By default nothing is limited (-1, AWS's "unlimited") and every send goes through.
    answer = v2.get_account()
    assert answer["SendQuota"] == {"Max24HourSend": -1.0, "MaxSendRate": -1.0, "SentLast24Hours": 0.0}
    assert answer["ProductionAccessEnabled"] is True and answer["SendingEnabled"] is True
    assert answer["EnforcementStatus"] == "HEALTHY"
    for _ in range(5):
        _send(v2)
    _send(v2, "a@example.com", "b@example.com")  # two recipients count twice, as in AWS
    _send_v1(v1)
    sent = {"Max24HourSend": -1.0, "MaxSendRate": -1.0, "SentLast24Hours": 8.0}
    assert _send_quota(v2) == sent
    quota_v1 = v1.get_send_quota()
    assert {k: quota_v1[k] for k in sent} == sent
    # Quotas are per region: eu-west-1 of the same account sent nothing.
    assert _send_quota(emu.client("sesv2", account, "eu-west-1"))["SentLast24Hours"] == 0.0

    _quota(emu, {"account": account, "sandbox": True})
    assert _send_quota(v2) == {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 8.0}
    answer = _quota(emu, {"account": account, "max_24_hour_send": 50000, "max_send_rate": 14.5})
    assert answer == {"ok": True, "account": account, "max_24_hour_send": 50000, "max_send_rate": 14.5}
    assert _send_quota(v2) == {"Max24HourSend": 50000.0, "MaxSendRate": 14.5, "SentLast24Hours": 8.0}
    state = emu.control("GET", "/_keyfleet/ses/quota")[1]
    assert state["accounts"][account] == {"max_24_hour_send": 50000, "max_send_rate": 14.5}
    assert {"account": account, "region": REGION, "sent_last_24_hours": 8} in state["sending"]


def test_ses_24_hour_quota_refuses_until_the_clock_moves_on(emu: Emulator) -> None:
    account = "600000000012"
    v2, v1 = _ses(emu, account)
    _quota(emu, {"account": account, "max_24_hour_send": 3})

    accepted = [_send(v2), _send(v2)]
    _advance(emu, 12 * HOUR, account)
    accepted.append(_send(v2))
    assert _send_quota(v2)["SentLast24Hours"] == 3.0

    # The fourth email is refused, by each API as SES refuses it, and not sent.
    assert _refusal(lambda: _send(v2)) == DAILY_V2
    assert _refusal(lambda: _send_v1(v1)) == DAILY_V1
    assert _refusal(lambda: _send_raw_v1(v1)) == DAILY_V1
    assert _outbox_ids(emu, account) == accepted
    assert _send_quota(v2)["SentLast24Hours"] == 3.0

    # 12 hours later the first two are a day old: only the third still counts.
    _advance(emu, 12 * HOUR, account)
    assert _send_quota(v2)["SentLast24Hours"] == 1.0
    accepted.append(_send(v2))
    # Fewer sent than the quota: accepted even with more recipients than are left.
    accepted.append(_send(v2, "a@example.com", "b@example.com", "c@example.com"))
    assert _send_quota(v2)["SentLast24Hours"] == 5.0
    assert _refusal(lambda: _send(v2)) == DAILY_V2
    assert _outbox_ids(emu, account) == accepted

    # A day on, all of it has left the 24 hours.
    _advance(emu, 1, account)
    assert _send_quota(v2) == {"Max24HourSend": 3.0, "MaxSendRate": -1.0, "SentLast24Hours": 0.0}
    _send_v1(v1)
    assert _send_quota(v2)["SentLast24Hours"] == 1.0


def test_ses_send_rate_refuses_without_relying_on_timing(emu: Emulator) -> None:
    # One email an hour: no real delay between two requests can refill it, so
    # the outcome never depends on how fast the machine is; the clock moves it.
    account = "600000000013"
    v2, v1 = _ses(emu, account)
    _quota(emu, {"account": account, "max_send_rate": 1 / 3600})

    accepted = [_send(v2)]
    assert _refusal(lambda: _send(v2)) == RATE_V2
    assert _refusal(lambda: _send_v1(v1)) == RATE_V1
    assert _refusal(lambda: _send_raw_v1(v1)) == RATE_V1
    assert _outbox_ids(emu, account) == accepted
    assert _send_quota(v2)["SentLast24Hours"] == 1.0

    _advance(emu, 1.5 * HOUR, account)
    # One email in the bucket: three recipients go, then three hours to wait.
    accepted.append(_send(v2, "a@example.com", "b@example.com", "c@example.com"))
    _advance(emu, 1.5 * HOUR, account)
    assert _refusal(lambda: _send(v2)) == RATE_V2
    _advance(emu, 2 * HOUR, account)
    accepted.append(_send(v2))
    assert _outbox_ids(emu, account) == accepted
    assert _send_quota(v2) == {
        "Max24HourSend": -1.0,
        "MaxSendRate": 1 / 3600,
        "SentLast24Hours": 5.0,
    }


def test_ses_quota_is_per_account_or_for_all_accounts() -> None:
    # The all-accounts setting is global to the harness: a harness of its own.
    with own_harness() as emu:
        limited, free, other = "600000000021", "600000000022", "600000000023"
        clients = {a: _ses(emu, a)[0] for a in (limited, free, other)}

        _quota(emu, {"account": limited, "max_24_hour_send": 1})
        _send(clients[limited])
        assert _refusal(lambda: _send(clients[limited])) == DAILY_V2
        for _ in range(3):
            _send(clients[free])
        assert _send_quota(clients[free])["Max24HourSend"] == -1.0

        # Every account, but for one with its own setting given afterwards.
        _quota(emu, {"max_24_hour_send": 2})
        _quota(emu, {"account": free, "max_24_hour_send": None})
        _send(clients[other])
        _send(clients[other])
        assert _refusal(lambda: _send(clients[other])) == DAILY_V2
        _send(clients[free])
        assert _send_quota(clients[limited])["Max24HourSend"] == 2.0  # its own was dropped
        assert emu.control("DELETE", "/_keyfleet/ses/quota?account=" + free) == (
            200,
            {"ok": True, "cleared": 1},
        )
        assert _refusal(lambda: _send(clients[free])) == DAILY_V2  # 4 sent, 2 allowed

        assert emu.control("DELETE", "/_keyfleet/ses/quota")[0] == 200
        for account in (limited, free, other):
            _send(clients[account])
            assert _send_quota(clients[account])["Max24HourSend"] == -1.0
        assert emu.control("GET", "/_keyfleet/ses/quota")[1]["all_accounts"] == {
            "max_24_hour_send": None,
            "max_send_rate": None,
        }

        for bad in (
            {"max_24_hour_send": -1},
            {"max_24_hour_send": 1.5},
            {"max_send_rate": 0},
            {"max_send_rate": "fast"},
            {"account": "123"},
            {"sandbox": True, "max_send_rate": 2},
            {"daily": 1},
        ):
            assert emu.control("POST", "/_keyfleet/ses/quota", bad)[0] == 400, bad


def test_an_identity_moto_sends_from_says_it_is_verified(emu: Emulator) -> None:
    """GetEmailIdentity says what sending does: an identity SES sends from
    is verified for sending (moto sent from it and answered ``false``)."""
    sesv2 = emu.client("sesv2")
    sesv2.create_email_identity(EmailIdentity="verified-sender@example.org")
    got = sesv2.get_email_identity(EmailIdentity="verified-sender@example.org")
    assert got["VerifiedForSendingStatus"] is True
    assert got["VerificationStatus"] == "SUCCESS"
    sesv2.send_email(
        FromEmailAddress="verified-sender@example.org",
        Destination={"ToAddresses": ["someone@example.org"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
    )
    sesv2.delete_email_identity(EmailIdentity="verified-sender@example.org")
    with pytest.raises(ClientError) as e:
        sesv2.get_email_identity(EmailIdentity="verified-sender@example.org")
    assert e.value.response["Error"]["Code"] == "NotFoundException"


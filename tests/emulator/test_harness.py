"""Tests of the emulator harness: one harness process per session, each
extension checked on its own, in accounts of its own.

Run: tests/emulator/.venv/bin/python -m pytest tests/emulator -q
"""

from __future__ import annotations

import contextlib

import base64
import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "harness.py")
REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"  # moto's account for the dummy "testing" keys


# -- helpers -----------------------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def start_harness(ready_file: str, *extra: str) -> subprocess.Popen:
    """Start a harness; its stderr goes to ``<ready_file>.stderr``."""
    with open(ready_file + ".stderr", "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, HARNESS, "--port", "0", "--ready-file", ready_file, *extra],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )


def read_port(ready_file: str, proc: subprocess.Popen | None = None, timeout: float = 60) -> int:
    def ready() -> str | None:
        if proc is not None and proc.poll() is not None:
            with open(ready_file + ".stderr", encoding="utf-8", errors="replace") as fh:
                raise AssertionError(f"harness exited with {proc.returncode}: {fh.read()}")
        if os.path.exists(ready_file):
            return open(ready_file, encoding="ascii").read()
        return None

    text = wait_for(ready, timeout, "the ready file")
    assert text.endswith("\n"), repr(text)
    return int(text)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # an exited process nobody has reaped yet counts as gone
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


class Emulator:
    def __init__(self, port: int):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._creds: dict[str, dict[str, str]] = {}

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def credentials(self, account: str | None) -> dict[str, str]:
        if account is None:
            return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if account not in self._creds:
            sts = self.client("sts")
            creds = sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/keyfleet-test",
                RoleSessionName="emulator-test",
            )["Credentials"]
            self._creds[account] = {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
            }
        return self._creds[account]

    def client(self, service: str, account: str | None = None, region: str = REGION) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            **self.credentials(account),
        )


@pytest.fixture(scope="session")
def emu() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "port")
        proc = start_harness(ready, "--parent-pid", str(os.getpid()))
        port = read_port(ready, proc)
        line = proc.stdout.readline().decode()
        assert line == f"READY {port}\n"
        try:
            yield Emulator(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert proc.stdout.read() == b""  # stdout carries the READY line only
            proc.stdout.close()


# -- health ------------------------------------------------------------------


def test_health(emu: Emulator) -> None:
    assert emu.control("GET", "/_keyfleet/health") == (200, {"ok": True})
    status, body = emu.control("GET", "/_keyfleet/nope")
    assert status == 404


# -- account addressing ------------------------------------------------------


def test_assume_role_into_any_account_without_the_role_existing(emu: Emulator) -> None:
    assert emu.client("sts").get_caller_identity()["Account"] == DEFAULT_ACCOUNT
    ident = emu.client("sts", "300000000001").get_caller_identity()
    assert ident["Account"] == "300000000001"
    assert ident["Arn"] == "arn:aws:sts::300000000001:assumed-role/keyfleet-test/emulator-test"
    emu.client("iam", "300000000001").create_user(UserName="only-in-300000000001")
    names = [u["UserName"] for u in emu.client("iam", "300000000002").list_users()["Users"]]
    assert "only-in-300000000001" not in names


# -- SQS: account from the QueueUrl ------------------------------------------


def test_sqs_cross_account_json_protocol(emu: Emulator) -> None:
    owner, sender = "400000000001", "400000000002"
    sqs_owner = emu.client("sqs", owner)
    sqs_sender = emu.client("sqs", sender)
    assert sqs_sender.meta.service_model.protocol == "json"  # x-amz-target: AmazonSQS.*

    url = sqs_owner.create_queue(QueueName="keyfleet-jobs")["QueueUrl"]
    assert url == f"{emu.endpoint}/{owner}/keyfleet-jobs"

    sqs_sender.send_message(QueueUrl=url, MessageBody="job-1")
    # The production form of the URL works against the emulator too (only the
    # account and queue name in the path matter).
    aws_url = f"https://sqs.{REGION}.amazonaws.com/{owner}/keyfleet-jobs"
    batch = sqs_sender.send_message_batch(
        QueueUrl=aws_url,
        Entries=[{"Id": "a", "MessageBody": "job-2"}, {"Id": "b", "MessageBody": "job-3"}],
    )
    assert len(batch["Successful"]) == 2 and not batch.get("Failed")

    # Nothing landed in a queue of the sender's own account.
    assert sqs_sender.list_queues().get("QueueUrls", []) == []
    attrs = sqs_sender.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    assert attrs["Attributes"]["QueueArn"] == f"arn:aws:sqs:{REGION}:{owner}:keyfleet-jobs"

    got = sqs_owner.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    bodies = sorted(m["Body"] for m in got["Messages"])
    assert bodies == ["job-1", "job-2", "job-3"]

    # The sender can work the owner's queue too (receive, change visibility, delete).
    first = got["Messages"][0]
    sqs_sender.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    again = sqs_sender.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again] == [first["Body"]]
    sqs_sender.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])
    deleted = sqs_sender.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(got["Messages"][1:])
        ],
    )
    assert len(deleted["Successful"]) == 2 and not deleted.get("Failed")
    left = sqs_owner.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert left == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_sqs_get_queue_url_with_owner_account(emu: Emulator) -> None:
    owner, sender = "400000000011", "400000000012"
    url = emu.client("sqs", owner).create_queue(QueueName="keyfleet-results")["QueueUrl"]
    sqs_sender = emu.client("sqs", sender)
    found = sqs_sender.get_queue_url(QueueName="keyfleet-results", QueueOwnerAWSAccountId=owner)
    assert found["QueueUrl"] == url
    with pytest.raises(ClientError) as err:
        sqs_sender.get_queue_url(QueueName="keyfleet-results")
    assert "NonExistentQueue" in err.value.response["Error"]["Code"]


def _signed_query(emu: Emulator, account: str, path: str, params: dict[str, str]) -> str:
    creds = emu.credentials(account)
    body = urllib.parse.urlencode(params)
    request = AWSRequest(
        method="POST",
        url=emu.endpoint + path,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(
        Credentials(
            creds["aws_access_key_id"],
            creds["aws_secret_access_key"],
            creds["aws_session_token"],
        ),
        "sqs",
        REGION,
    ).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(
        prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def test_sqs_cross_account_query_protocol(emu: Emulator) -> None:
    owner, sender = "400000000021", "400000000022"
    sqs_owner = emu.client("sqs", owner)
    url = sqs_owner.create_queue(QueueName="legacy")["QueueUrl"]
    # QueueUrl as a form parameter, posted to the service endpoint.
    xml = _signed_query(
        emu,
        sender,
        "/",
        {"Action": "SendMessage", "Version": "2012-11-05", "QueueUrl": url, "MessageBody": "q-1"},
    )
    assert "<SendMessageResponse" in xml and "<MessageId>" in xml
    # Older SDKs post to the queue URL itself.
    xml = _signed_query(
        emu,
        sender,
        f"/{owner}/legacy",
        {"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "q-2"},
    )
    assert "<SendMessageResponse" in xml
    got = sqs_owner.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["q-1", "q-2"]


# -- IAM paging --------------------------------------------------------------

PAGED_ACCOUNT = "500000000001"
PAGED_USERS = [f"user-{i:03d}" for i in range(250)]


@pytest.fixture(scope="module")
def iam_250(emu: Emulator) -> Any:
    iam = emu.client("iam", PAGED_ACCOUNT)
    for name in PAGED_USERS:
        iam.create_user(UserName=name)
    return iam


def _raw_body_recorder(client: Any, operation: str) -> list[str]:
    bodies: list[str] = []

    def record(http_response: Any, **_: Any) -> None:
        bodies.append(http_response.text)

    client.meta.events.register(f"after-call.iam.{operation}", record)
    return bodies


def test_list_users_pages_like_aws(iam_250: Any) -> None:
    raw = _raw_body_recorder(iam_250, "ListUsers")
    first = iam_250.list_users()
    assert len(first["Users"]) == 100
    assert first["IsTruncated"] is True and first["Marker"]
    assert "<IsTruncated>true</IsTruncated>" in raw[-1]
    assert f"<Marker>{first['Marker']}</Marker>" in raw[-1]

    second = iam_250.list_users(Marker=first["Marker"])
    assert len(second["Users"]) == 100
    assert second["IsTruncated"] is True and second["Marker"] != first["Marker"]

    third = iam_250.list_users(Marker=second["Marker"])
    assert len(third["Users"]) == 50
    assert third["IsTruncated"] is False and "Marker" not in third
    assert "<IsTruncated>false</IsTruncated>" in raw[-1] and "<Marker>" not in raw[-1]

    names = [u["UserName"] for page in (first, second, third) for u in page["Users"]]
    assert len(names) == len(set(names)) == 250
    assert set(names) == set(PAGED_USERS)

    # MaxItems is honoured, and boto3's paginator walks the markers.
    assert len(iam_250.list_users(MaxItems=7)["Users"]) == 7
    paged = [u["UserName"] for p in iam_250.get_paginator("list_users").paginate() for u in p["Users"]]
    assert sorted(paged) == PAGED_USERS


def test_list_users_rejects_bad_paging_input(iam_250: Any) -> None:
    with pytest.raises(ClientError) as err:
        iam_250.list_users(MaxItems=1001)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as err:
        iam_250.list_users(Marker="not-a-marker")
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_get_account_authorization_details_pages_like_aws(iam_250: Any) -> None:
    first = iam_250.get_account_authorization_details(Filter=["User"])
    assert len(first["UserDetailList"]) == 100 and first["IsTruncated"] is True
    second = iam_250.get_account_authorization_details(Filter=["User"], Marker=first["Marker"])
    assert len(second["UserDetailList"]) == 100 and second["IsTruncated"] is True
    third = iam_250.get_account_authorization_details(Filter=["User"], Marker=second["Marker"])
    assert len(third["UserDetailList"]) == 50 and third["IsTruncated"] is False
    assert "Marker" not in third
    names = [u["UserName"] for p in (first, second, third) for u in p["UserDetailList"]]
    assert sorted(names) == PAGED_USERS
    assert first["RoleDetailList"] == [] and first["GroupDetailList"] == []


def test_list_access_keys_and_user_tags_accept_paging(emu: Emulator) -> None:
    iam = emu.client("iam", "500000000002")
    iam.create_user(UserName="alice", Tags=[{"Key": f"k{i}", "Value": str(i)} for i in range(3)])
    ids = [iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"] for _ in range(2)]
    keys = iam.list_access_keys(UserName="alice")
    assert keys["IsTruncated"] is False and len(keys["AccessKeyMetadata"]) == 2
    one = iam.list_access_keys(UserName="alice", MaxItems=1)
    assert one["IsTruncated"] is True and len(one["AccessKeyMetadata"]) == 1
    two = iam.list_access_keys(UserName="alice", MaxItems=1, Marker=one["Marker"])
    assert two["IsTruncated"] is False
    assert [k["AccessKeyId"] for k in one["AccessKeyMetadata"] + two["AccessKeyMetadata"]] == ids

    tags = iam.list_user_tags(UserName="alice", MaxItems=2)
    assert [t["Key"] for t in tags["Tags"]] == ["k0", "k1"] and tags["IsTruncated"] is True
    rest = iam.list_user_tags(UserName="alice", Marker=tags["Marker"])
    assert [t["Key"] for t in rest["Tags"]] == ["k2"] and rest["IsTruncated"] is False


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


# -- message log -------------------------------------------------------------


def test_message_log_keeps_every_sqs_send_and_sns_publish(emu: Emulator) -> None:
    account, sender = "920000000001", "920000000002"
    sqs = emu.client("sqs", account)
    sns = emu.client("sns", account)
    url = sqs.create_queue(QueueName="kf-log")["QueueUrl"]
    path = f"/{account}/kf-log"

    sqs.send_message(QueueUrl=url, MessageBody="single")  # JSON protocol
    batch = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "batch-a"},
            {"Id": "late", "MessageBody": "refused", "DelaySeconds": 901},  # moto fails this entry
            {"Id": "b", "MessageBody": "batch-b"},
        ],
    )
    assert [e["Id"] for e in batch["Successful"]] == ["a", "b"]
    assert [e["Id"] for e in batch["Failed"]] == ["late"]
    # query protocol, posted to the queue URL, by another account (cross-account queue)
    _signed_query(emu, sender, path, {"Action": "SendMessage", "Version": "2012-11-05",
                                       "MessageBody": "query"})
    _signed_query(emu, sender, "/", {"Action": "SendMessageBatch", "Version": "2012-11-05",
                                     "QueueUrl": url,
                                     "SendMessageBatchRequestEntry.1.Id": "q",
                                     "SendMessageBatchRequestEntry.1.MessageBody": "query-batch"})
    with pytest.raises(ClientError):  # refused by moto: not logged
        sqs.send_message(QueueUrl=url.replace("kf-log", "kf-log-missing"), MessageBody="lost")

    topic = sns.create_topic(Name="kf-log-topic")["TopicArn"]
    sub_url = sqs.create_queue(QueueName="kf-log-sub")["QueueUrl"]
    sub_arn = sqs.get_queue_attributes(QueueUrl=sub_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sub_arn)
    sns.publish(TopicArn=topic, Subject="Rotated", Message="published")
    sns.publish(TopicArn=topic, Message="no subject")
    delivered = sqs.receive_message(QueueUrl=sub_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(json.loads(m["Body"])["Message"] for m in delivered) == ["no subject", "published"]

    # Consumed and deleted: still in the log.
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 5
    for queue, messages in ((sub_url, delivered), (url, received)):
        for m in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    status, log = emu.control("GET", "/_keyfleet/messages")
    assert status == 200 and set(log) == {"sqs", "sns"}
    mine = [m for m in log["sqs"] if m["queue"].startswith(f"/{account}/")]
    # Nothing for kf-log-sub: SNS's deliveries are the Publish already logged.
    assert mine == [
        {"queue": path, "body": "single", "account": account},
        {"queue": path, "body": "batch-a", "account": account},
        {"queue": path, "body": "batch-b", "account": account},
        {"queue": path, "body": "query", "account": sender},
        {"queue": path, "body": "query-batch", "account": sender},
    ]
    assert [m for m in log["sns"] if m["topic"] == topic] == [
        {"topic": topic, "subject": "Rotated", "message": "published"},
        {"topic": topic, "subject": None, "message": "no subject"},
    ]

    status, body = emu.control("DELETE", "/_keyfleet/messages")
    assert status == 200 and body["ok"] is True and body["cleared"] >= 7
    status, log = emu.control("GET", "/_keyfleet/messages")
    assert status == 200
    assert not [m for m in log["sqs"] if m["queue"].startswith(f"/{account}/")]
    assert not [m for m in log["sns"] if m["topic"] == topic]
    assert emu.control("POST", "/_keyfleet/messages", {})[0] == 405


# -- clock and key use -------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _close(a: dt.datetime, b: dt.datetime, seconds: float = 120) -> bool:
    return abs((a - b).total_seconds()) <= seconds


def _report(iam: Any) -> tuple[dict[str, dict[str, str]], dt.datetime]:
    wait_for(
        lambda: iam.generate_credential_report()["State"] == "COMPLETE", 10, "the credential report"
    )
    resp = iam.get_credential_report()
    rows = list(csv.DictReader(io.StringIO(resp["Content"].decode())))
    return {r["user"]: r for r in rows}, resp["GeneratedTime"]


def _report_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def test_clock_advance_ages_keys_everywhere_they_show(emu: Emulator) -> None:
    account, other = "700000000001", "700000000002"
    iam = emu.client("iam", account)
    iam.create_user(UserName="carol")
    key_id = iam.create_access_key(UserName="carol")["AccessKey"]["AccessKeyId"]
    emu.client("iam", other).create_user(UserName="dave")
    other_key = emu.client("iam", other).create_access_key(UserName="dave")["AccessKey"]
    status, _ = emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {"account": account, "access_key_id": key_id, "service": "s3", "region": "eu-west-1"},
    )
    assert status == 200

    before = iam.list_access_keys(UserName="carol")["AccessKeyMetadata"][0]["CreateDate"]
    used_before = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]["LastUsedDate"]

    status, body = emu.control("POST", "/_keyfleet/clock/advance", {"days": 80.5, "account": account})
    assert status == 200 and body["keys_aged"] == 1 and body["accounts"] == [account]
    delta = dt.timedelta(days=80.5)

    after = iam.list_access_keys(UserName="carol")["AccessKeyMetadata"][0]["CreateDate"]
    assert after == before - delta
    last = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert last["LastUsedDate"] == used_before - delta
    assert (last["ServiceName"], last["Region"]) == ("s3", "eu-west-1")
    assert iam.get_user(UserName="carol")["User"]["CreateDate"] <= after

    rows, generated = _report(iam)
    assert _close(generated, _utcnow())
    row = rows["carol"]
    assert _report_time(row["access_key_1_last_rotated"]) == after.replace(microsecond=0)
    assert _report_time(row["access_key_1_last_used_date"]) == last["LastUsedDate"].replace(
        microsecond=0
    )
    assert row["access_key_1_last_used_service"] == "s3"
    assert row["access_key_1_last_used_region"] == "eu-west-1"
    assert row["access_key_2_active"] == "false" and row["access_key_2_last_rotated"] == "N/A"
    assert list(rows)[0] == "<root_account>"

    # The other account was not part of this advance.
    other_iam = emu.client("iam", other)
    other_created = other_iam.list_access_keys(UserName="dave")["AccessKeyMetadata"][0]["CreateDate"]
    assert other_created == other_key["CreateDate"]

    # The report is a snapshot: it changes only when generated again.
    emu.control("POST", "/_keyfleet/clock/advance", {"days": 10, "account": account})
    stale = csv.DictReader(io.StringIO(iam.get_credential_report()["Content"].decode()))
    assert {r["user"]: r for r in stale}["carol"] == row
    fresh, _ = _report(iam)
    assert _report_time(fresh["carol"]["access_key_1_last_rotated"]) == (
        after - dt.timedelta(days=10)
    ).replace(microsecond=0)


def test_clock_advance_without_account_ages_all_accounts(emu: Emulator) -> None:
    a, b = "700000000011", "700000000012"
    created = {}
    for account in (a, b):
        iam = emu.client("iam", account)
        iam.create_user(UserName="erin")
        created[account] = iam.create_access_key(UserName="erin")["AccessKey"]["CreateDate"]
    status, body = emu.control("POST", "/_keyfleet/clock/advance", {"days": 3})
    assert status == 200 and {a, b} <= set(body["accounts"])
    for account in (a, b):
        meta = emu.client("iam", account).list_access_keys(UserName="erin")["AccessKeyMetadata"]
        assert meta[0]["CreateDate"] == created[account] - dt.timedelta(days=3)
    assert emu.control("POST", "/_keyfleet/clock/advance", {"days": -1})[0] == 400
    assert emu.control("POST", "/_keyfleet/clock/advance", {})[0] == 400


def test_key_used_sets_time_service_and_region(emu: Emulator) -> None:
    account = "700000000021"
    iam = emu.client("iam", account)
    iam.create_user(UserName="frank")
    key_id = iam.create_access_key(UserName="frank")["AccessKey"]["AccessKeyId"]
    never = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert (never["ServiceName"], never["Region"]) == ("N/A", "N/A") and "LastUsedDate" not in never

    status, body = emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {
            "account": account,
            "access_key_id": key_id,
            "when": "2026-01-02T03:04:05Z",
            "service": "s3",
            "region": "eu-west-1",
        },
    )
    assert status == 200 and body["user"] == "frank"
    last = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert last == {
        "LastUsedDate": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "ServiceName": "s3",
        "Region": "eu-west-1",
    }
    rows, _ = _report(iam)
    assert rows["frank"]["access_key_1_last_used_date"] == "2026-01-02T03:04:05+00:00"
    assert rows["frank"]["access_key_1_last_used_service"] == "s3"
    assert rows["frank"]["access_key_1_last_used_region"] == "eu-west-1"

    # "when" defaults to now.
    emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {"account": account, "access_key_id": key_id, "service": "sts", "region": "us-east-1"},
    )
    last = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert _close(last["LastUsedDate"], _utcnow()) and last["ServiceName"] == "sts"

    missing = emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {"account": account, "access_key_id": "AKIANOTAKEY000000000", "service": "s3", "region": "x"},
    )
    assert missing[0] == 404
    no_service = emu.control(
        "POST", "/_keyfleet/iam/key-used", {"account": account, "access_key_id": key_id}
    )
    assert no_service[0] == 400


# -- Lambda event source mappings --------------------------------------------


def _zip_bytes(with_bootstrap: bool = True) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if with_bootstrap:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16  # executable, as Lambda requires
            zf.writestr(info, "#!/bin/sh\n")
    return buf.getvalue()


# Mappings of functions the harness does not run stay parked: another runtime
# (moto would need Docker). provided.* functions are delivered: see
# test_lambda_delivery.py.
@pytest.mark.parametrize(
    "account,runtime,with_bootstrap",
    [("800000000001", "python3.12", True)],
    ids=["other-runtime"],
)
def test_sqs_event_source_mapping_leaves_messages_in_the_queue(
    emu: Emulator, account: str, runtime: str, with_bootstrap: bool
) -> None:
    sqs = emu.client("sqs", account)
    lam = emu.client("lambda", account)
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="jobs",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = emu.client("iam", account).create_role(
        RoleName="agent",
        AssumeRolePolicyDocument=json.dumps(STACKSET_TEMPLATE["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"]),
    )["Role"]["Arn"]
    fn = lam.create_function(
        FunctionName="agent",
        Runtime=runtime,
        Handler="bootstrap",
        Role=role,
        Code={"ZipFile": _zip_bytes(with_bootstrap)},
    )
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn["FunctionArn"], BatchSize=10)
    assert len(lam.list_event_source_mappings()["EventSourceMappings"]) == 1

    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"job-{i}")
    got = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert sorted(m["Body"] for m in got) == [f"job-{i}" for i in range(5)]
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in got} == {"1"}
    dlq_count = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert dlq_count["Attributes"]["ApproximateNumberOfMessages"] == "0"
    (row,) = [r for r in emu.control("GET", "/_keyfleet/lambda/mappings")[1]["mappings"] if r["account"] == account]
    assert row["delivering"] is False and "parked" in row["reason"]
    assert row["batches"] == 0


# -- StackSets auto-deployment -----------------------------------------------

STACKSET_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "keyfleet-jobs"}},
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": {"Fn::Sub": "keyfleet-agent-${AWS::Region}"},
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
            },
        },
    },
}
STACKSET_REGIONS = ["us-east-1", "eu-west-1"]


def _deployed(emu: Emulator, account: str) -> dict[str, bool]:
    result = {}
    roles = {r["RoleName"] for r in emu.client("iam", account).list_roles()["Roles"]}
    for region in STACKSET_REGIONS:
        urls = emu.client("sqs", account, region).list_queues().get("QueueUrls", [])
        queue = any(u.endswith(f"/{account}/keyfleet-jobs") for u in urls)
        role = f"keyfleet-agent-{region}" in roles
        assert queue == role, (account, region, urls, roles)
        result[region] = queue
    return result


def test_stackset_auto_deploys_to_accounts_that_join_a_target_ou(emu: Emulator) -> None:
    management = "900000000001"
    org = emu.client("organizations", management)
    cfn = emu.client("cloudformation", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    target = org.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
    child = org.create_organizational_unit(ParentId=target, Name="team")["OrganizationalUnit"]["Id"]
    grandchild = org.create_organizational_unit(ParentId=child, Name="squad")["OrganizationalUnit"]["Id"]
    other = org.create_organizational_unit(ParentId=root, Name="sandbox")["OrganizationalUnit"]["Id"]

    def new_account(name: str, parent: str | None) -> str:
        account = org.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        if parent is not None:
            org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=parent)
        return account

    early = new_account("early", target)
    deep = new_account("deep", grandchild)

    cfn.create_stack_set(
        StackSetName="keyfleet-agent",
        TemplateBody=json.dumps(STACKSET_TEMPLATE),
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    cfn.create_stack_instances(
        StackSetName="keyfleet-agent",
        DeploymentTargets={"OrganizationalUnitIds": [target]},
        Regions=STACKSET_REGIONS,
    )
    described = cfn.describe_stack_set(StackSetName="keyfleet-agent")["StackSet"]
    assert described["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}
    assert described["OrganizationalUnitIds"] == [target]

    both = {r: True for r in STACKSET_REGIONS}
    none = {r: False for r in STACKSET_REGIONS}
    assert _deployed(emu, early) == both
    assert _deployed(emu, deep) == both  # three levels down
    assert _deployed(emu, management) == none  # never the management account

    # Created after the stack instances: nothing until it is in a target OU.
    late = new_account("late", None)
    assert _deployed(emu, late) == none
    org.move_account(AccountId=late, SourceParentId=root, DestinationParentId=other)
    assert _deployed(emu, late) == none
    org.move_account(AccountId=late, SourceParentId=other, DestinationParentId=child)
    assert _deployed(emu, late) == both

    instances = cfn.list_stack_instances(StackSetName="keyfleet-agent")["Summaries"]
    assert sorted((i["Account"], i["Region"]) for i in instances) == sorted(
        (a, r) for a in (early, deep, late) for r in STACKSET_REGIONS
    )

    # Moving within the targets changes nothing; moving out removes the stacks.
    org.move_account(AccountId=late, SourceParentId=child, DestinationParentId=target)
    assert _deployed(emu, late) == both
    org.move_account(AccountId=late, SourceParentId=target, DestinationParentId=other)
    assert _deployed(emu, late) == none
    instances = cfn.list_stack_instances(StackSetName="keyfleet-agent")["Summaries"]
    assert late not in {i["Account"] for i in instances}


def test_stackset_targeting_the_root_deploys_to_new_accounts(emu: Emulator) -> None:
    management = "900000000011"
    org = emu.client("organizations", management)
    cfn = emu.client("cloudformation", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    cfn.create_stack_set(
        StackSetName="everywhere",
        TemplateBody=json.dumps(STACKSET_TEMPLATE),
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": True},
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    cfn.create_stack_instances(
        StackSetName="everywhere",
        DeploymentTargets={"OrganizationalUnitIds": [root]},
        Regions=["us-east-1"],
    )
    fresh = org.create_account(AccountName="fresh", Email="fresh@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    assert _deployed(emu, fresh) == {"us-east-1": True, "eu-west-1": False}
    assert _deployed(emu, management)["us-east-1"] is False
    ops = cfn.list_stack_set_operations(StackSetName="everywhere")["Summaries"]
    assert [o["Status"] for o in ops] == ["SUCCEEDED", "SUCCEEDED"]


def test_stackset_without_auto_deployment_stays_put(emu: Emulator) -> None:
    management = "900000000021"
    org = emu.client("organizations", management)
    cfn = emu.client("cloudformation", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    target = org.create_organizational_unit(ParentId=root, Name="w")["OrganizationalUnit"]["Id"]
    cfn.create_stack_set(
        StackSetName="manual",
        TemplateBody=json.dumps(STACKSET_TEMPLATE),
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": False},
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    cfn.create_stack_instances(
        StackSetName="manual",
        DeploymentTargets={"OrganizationalUnitIds": [target]},
        Regions=["us-east-1"],
    )
    account = org.create_account(AccountName="x", Email="x@example.com")["CreateAccountStatus"]["AccountId"]
    org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=target)
    assert _deployed(emu, account)["us-east-1"] is False


# -- StackSets updates -------------------------------------------------------

# A function whose environment comes from a parameter (as the agent's
# coordinator public key does), fed by a queue through an event source mapping.
STACKSET_UPDATE_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {
        "PublicKey": {"Type": "String"},
        "CodeBucket": {"Type": "String"},
        "LogLevel": {"Type": "String", "Default": "info"},
    },
    "Resources": {
        "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "keyfleet-update-jobs"}},
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": {"Fn::Sub": "keyfleet-update-agent-${AWS::Region}"},
                "AssumeRolePolicyDocument": STACKSET_TEMPLATE["Resources"]["Role"]["Properties"][
                    "AssumeRolePolicyDocument"
                ],
            },
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": "keyfleet-update-agent",
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": "agent.zip"},
                "Environment": {
                    "Variables": {
                        "PUBLIC_KEY": {"Ref": "PublicKey"},
                        "RUST_LOG": {"Ref": "LogLevel"},
                        "FIXED": "same",
                    }
                },
            },
        },
        "Mapping": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": {"Fn::GetAtt": ["Jobs", "Arn"]},
                "FunctionName": {"Ref": "Function"},
                "BatchSize": 1,
            },
        },
    },
}


def _agent_state(emu: Emulator, account: str, region: str) -> dict[str, Any]:
    lam = emu.client("lambda", account, region)
    config = lam.get_function_configuration(FunctionName="keyfleet-update-agent")
    mappings = lam.list_event_source_mappings(FunctionName="keyfleet-update-agent")["EventSourceMappings"]
    return {
        "env": config["Environment"]["Variables"],
        "code": config["CodeSha256"],
        "arn": config["FunctionArn"],
        "mappings": [(m["UUID"], m["FunctionArn"], m["EventSourceArn"]) for m in mappings],
    }


def _code_bucket(emu: Emulator, account: str, bucket: str) -> None:
    s3 = emu.client("s3", account)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="agent.zip", Body=_zip_bytes())


def test_stackset_update_updates_the_stacks_in_every_account(emu: Emulator) -> None:
    management = "910000000001"
    org = emu.client("organizations", management)
    cfn = emu.client("cloudformation", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    target = org.create_organizational_unit(ParentId=root, Name="agents")["OrganizationalUnit"]["Id"]

    def new_account(name: str) -> str:
        account = org.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=target)
        return account

    members = [new_account("upd-a"), new_account("upd-b")]
    _code_bucket(emu, management, "keyfleet-update-code")
    cfn.create_stack_set(
        StackSetName="rotating",
        TemplateBody=json.dumps(STACKSET_UPDATE_TEMPLATE),
        Parameters=[
            {"ParameterKey": "PublicKey", "ParameterValue": "key-1"},
            {"ParameterKey": "CodeBucket", "ParameterValue": "keyfleet-update-code"},
        ],
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    cfn.create_stack_instances(
        StackSetName="rotating",
        DeploymentTargets={"OrganizationalUnitIds": [target]},
        Regions=STACKSET_REGIONS,
    )
    before = {(a, r): _agent_state(emu, a, r) for a in members for r in STACKSET_REGIONS}
    for state in before.values():
        assert state["env"] == {"PUBLIC_KEY": "key-1", "RUST_LOG": "info", "FIXED": "same"}
        assert len(state["mappings"]) == 1

    operation = cfn.update_stack_set(
        StackSetName="rotating",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "PublicKey", "ParameterValue": "key-2"},
            {"ParameterKey": "CodeBucket", "UsePreviousValue": True},
            {"ParameterKey": "LogLevel", "UsePreviousValue": True},  # never set: its default
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["OperationId"]

    for (account, region), old in before.items():
        state = _agent_state(emu, account, region)
        assert state["env"] == {"PUBLIC_KEY": "key-2", "RUST_LOG": "info", "FIXED": "same"}, (
            account,
            region,
        )
        # Updated in place: same function, same code, same mapping.
        assert (state["arn"], state["code"], state["mappings"]) == (
            old["arn"],
            old["code"],
            old["mappings"],
        )

    described = cfn.describe_stack_set_operation(StackSetName="rotating", OperationId=operation)
    assert described["StackSetOperation"]["Action"] == "UPDATE"
    assert described["StackSetOperation"]["Status"] == "SUCCEEDED"
    results = cfn.list_stack_set_operation_results(StackSetName="rotating", OperationId=operation)
    assert sorted((r["Account"], r["Region"], r["Status"]) for r in results["Summaries"]) == sorted(
        (a, r, "SUCCEEDED") for a in members for r in STACKSET_REGIONS
    )
    ops = cfn.list_stack_set_operations(StackSetName="rotating")["Summaries"]
    assert [(o["Action"], o["Status"]) for o in ops if o["OperationId"] == operation] == [
        ("UPDATE", "SUCCEEDED")
    ]
    assert [o["Action"] for o in ops].count("UPDATE") == 1
    instances = cfn.list_stack_instances(StackSetName="rotating")["Summaries"]
    assert {i["Status"] for i in instances} == {"CURRENT"}
    params = cfn.describe_stack_set(StackSetName="rotating")["StackSet"]["Parameters"]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in params}["PublicKey"] == "key-2"

    # An account that joins the OU afterwards gets the new parameters.
    late = new_account("upd-late")
    for region in STACKSET_REGIONS:
        assert _agent_state(emu, late, region)["env"]["PUBLIC_KEY"] == "key-2"

    # DeploymentTargets and Regions narrow an update to those instances.
    operation = cfn.update_stack_set(
        StackSetName="rotating",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "PublicKey", "ParameterValue": "key-3"},
            {"ParameterKey": "CodeBucket", "UsePreviousValue": True},
        ],
        DeploymentTargets={"OrganizationalUnitIds": [target]},
        Regions=["eu-west-1"],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["OperationId"]
    for account in members + [late]:
        assert _agent_state(emu, account, "eu-west-1")["env"]["PUBLIC_KEY"] == "key-3"
        assert _agent_state(emu, account, "us-east-1")["env"]["PUBLIC_KEY"] == "key-2"
    results = cfn.list_stack_set_operation_results(StackSetName="rotating", OperationId=operation)
    assert sorted(r["Account"] for r in results["Summaries"]) == sorted(members + [late])
    assert {r["Region"] for r in results["Summaries"]} == {"eu-west-1"}
    status = {
        (i["Account"], i["Region"]): i["Status"]
        for i in cfn.list_stack_instances(StackSetName="rotating")["Summaries"]
    }
    assert status == {
        (a, r): "CURRENT" if r == "eu-west-1" else "OUTDATED" for a in members + [late] for r in STACKSET_REGIONS
    }


def test_stackset_update_keeps_overrides_and_applies_a_new_template(emu: Emulator) -> None:
    management = "910000000011"
    cfn = emu.client("cloudformation", management)
    a, b, c = "910000000012", "910000000013", "910000000014"
    _code_bucket(emu, management, "keyfleet-update-code-2")
    cfn.create_stack_set(
        StackSetName="overridden",
        TemplateBody=json.dumps(STACKSET_UPDATE_TEMPLATE),
        Parameters=[
            {"ParameterKey": "PublicKey", "ParameterValue": "key-1"},
            {"ParameterKey": "CodeBucket", "ParameterValue": "keyfleet-update-code-2"},
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    # a overrides PublicKey; b and c take the stack set's value.
    cfn.create_stack_instances(
        StackSetName="overridden",
        Accounts=[a],
        Regions=["us-east-1"],
        ParameterOverrides=[{"ParameterKey": "PublicKey", "ParameterValue": "key-a"}],
    )
    cfn.create_stack_instances(StackSetName="overridden", Accounts=[b, c], Regions=["us-east-1"])
    env = lambda account: _agent_state(emu, account, "us-east-1")["env"]  # noqa: E731
    assert (env(a)["PUBLIC_KEY"], env(b)["PUBLIC_KEY"], env(c)["PUBLIC_KEY"]) == ("key-a", "key-1", "key-1")

    # A new template (longer queue visibility, another variable) and a new key.
    template = json.loads(json.dumps(STACKSET_UPDATE_TEMPLATE))
    template["Resources"]["Jobs"]["Properties"]["VisibilityTimeout"] = 1800
    template["Resources"]["Function"]["Properties"]["Environment"]["Variables"]["ADDED"] = "yes"
    operation = cfn.update_stack_set(
        StackSetName="overridden",
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "PublicKey", "ParameterValue": "key-2"},
            {"ParameterKey": "CodeBucket", "UsePreviousValue": True},
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["OperationId"]
    assert env(a) == {"PUBLIC_KEY": "key-a", "RUST_LOG": "info", "FIXED": "same", "ADDED": "yes"}
    assert env(b) == {"PUBLIC_KEY": "key-2", "RUST_LOG": "info", "FIXED": "same", "ADDED": "yes"}
    for account in (a, b, c):
        sqs = emu.client("sqs", account)
        url = sqs.get_queue_url(QueueName="keyfleet-update-jobs")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
        assert attrs["Attributes"]["VisibilityTimeout"] == "1800", account
    described = cfn.describe_stack_set_operation(StackSetName="overridden", OperationId=operation)
    assert (described["StackSetOperation"]["Action"], described["StackSetOperation"]["Status"]) == (
        "UPDATE",
        "SUCCEEDED",
    )
    overrides = cfn.describe_stack_instance(
        StackSetName="overridden", StackInstanceAccount=a, StackInstanceRegion="us-east-1"
    )["StackInstance"]["ParameterOverrides"]
    assert overrides == [{"ParameterKey": "PublicKey", "ParameterValue": "key-a"}]

    # Only the instances named: c keeps its stack until it is updated too.
    cfn.update_stack_set(
        StackSetName="overridden",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "PublicKey", "ParameterValue": "key-3"},
            {"ParameterKey": "CodeBucket", "UsePreviousValue": True},
        ],
        Accounts=[a, b],
        Regions=["us-east-1"],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    assert (env(a)["PUBLIC_KEY"], env(b)["PUBLIC_KEY"], env(c)["PUBLIC_KEY"]) == ("key-a", "key-3", "key-2")
    status = {
        i["Account"]: i["Status"] for i in cfn.list_stack_instances(StackSetName="overridden")["Summaries"]
    }
    assert status == {a: "CURRENT", b: "CURRENT", c: "OUTDATED"}

    # UpdateStackInstances deploys overrides: c overrides the key, a's override is dropped.
    cfn.update_stack_instances(
        StackSetName="overridden",
        Accounts=[c],
        Regions=["us-east-1"],
        ParameterOverrides=[{"ParameterKey": "PublicKey", "ParameterValue": "key-c"}],
    )
    cfn.update_stack_instances(
        StackSetName="overridden", Accounts=[a], Regions=["us-east-1"], ParameterOverrides=[]
    )
    assert (env(a)["PUBLIC_KEY"], env(b)["PUBLIC_KEY"], env(c)["PUBLIC_KEY"]) == ("key-3", "key-3", "key-c")

    # An update that fails (the code bucket does not exist) is a FAILED
    # operation and leaves the instances OUTDATED; the next good one repairs them.
    def set_bucket(bucket: str) -> str:
        return cfn.update_stack_set(
            StackSetName="overridden",
            UsePreviousTemplate=True,
            Parameters=[
                {"ParameterKey": "PublicKey", "UsePreviousValue": True},
                {"ParameterKey": "CodeBucket", "ParameterValue": bucket},
            ],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )["OperationId"]

    operation = set_bucket("keyfleet-no-such-bucket")
    described = cfn.describe_stack_set_operation(StackSetName="overridden", OperationId=operation)
    assert described["StackSetOperation"]["Status"] == "FAILED"
    results = cfn.list_stack_set_operation_results(StackSetName="overridden", OperationId=operation)
    assert {r["Status"] for r in results["Summaries"]} == {"FAILED"}
    (instance,) = [
        i for i in cfn.list_stack_instances(StackSetName="overridden")["Summaries"] if i["Account"] == b
    ]
    assert (instance["Status"], instance["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "FAILED")
    operation = set_bucket("keyfleet-update-code-2")
    described = cfn.describe_stack_set_operation(StackSetName="overridden", OperationId=operation)
    assert described["StackSetOperation"]["Status"] == "SUCCEEDED"
    assert {i["Status"] for i in cfn.list_stack_instances(StackSetName="overridden")["Summaries"]} == {"CURRENT"}


# -- process lifetime --------------------------------------------------------


def test_harness_exits_when_parent_pid_is_gone(tmp_path: Any) -> None:
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    ready = str(tmp_path / "port")
    proc = start_harness(ready, "--parent-pid", str(stand_in.pid))
    try:
        port = read_port(ready, proc)
        assert Emulator(port).control("GET", "/_keyfleet/health")[0] == 200
        stand_in.kill()
        stand_in.wait()
        assert proc.wait(timeout=15) == 0
    finally:
        for p in (stand_in, proc):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_harness_exits_when_the_process_that_started_it_dies(tmp_path: Any) -> None:
    ready = str(tmp_path / "port")
    pid_file = str(tmp_path / "pid")
    launcher = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, {HARNESS!r}, '--port', '0', '--ready-file', {ready!r}],"
        " stdout=subprocess.DEVNULL)\n"
        f"open({pid_file!r} + '.tmp', 'w').write(str(p.pid)); "
        f"__import__('os').replace({pid_file!r} + '.tmp', {pid_file!r})\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher])
    harness_pid = None
    try:
        read_port(ready)
        harness_pid = int(wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read(), 10, "pid"))
        assert not pid_gone(harness_pid)
        parent.kill()
        parent.wait()
        wait_for(lambda: pid_gone(harness_pid), 15, "the orphaned harness to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if harness_pid is not None and not pid_gone(harness_pid):
            os.kill(harness_pid, signal.SIGKILL)


def test_harness_exits_cleanly_on_sigint(tmp_path: Any) -> None:
    ready = str(tmp_path / "port")
    proc = start_harness(ready)
    try:
        read_port(ready, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- CloudFormation: FindInMap with a Number parameter -----------------------


def test_find_in_map_with_a_number_parameter(emu: Emulator) -> None:
    account = "900000000031"
    template = {
        "Parameters": {"FunctionTimeout": {"Type": "Number", "Default": 300}},
        "Mappings": {"TimeoutToVisibility": {"300": {"VisibilityTimeout": 1800}, "60": {"VisibilityTimeout": 360}}},
        "Resources": {
            "Jobs": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": "visibility",
                    "VisibilityTimeout": {
                        "Fn::FindInMap": ["TimeoutToVisibility", {"Ref": "FunctionTimeout"}, "VisibilityTimeout"]
                    },
                },
            }
        },
    }
    cfn = emu.client("cloudformation", account)
    cfn.create_stack(StackName="defaults", TemplateBody=json.dumps(template))
    sqs = emu.client("sqs", account)
    url = sqs.get_queue_url(QueueName="visibility")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "1800"

    template["Resources"]["Jobs"]["Properties"]["QueueName"] = "visibility-60"
    cfn.create_stack(
        StackName="passed",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "FunctionTimeout", "ParameterValue": "60"}],
    )
    url = sqs.get_queue_url(QueueName="visibility-60")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "360"



def test_role_inline_policy_from_a_stack_reads_back_as_json(emu: Emulator) -> None:
    """GetRolePolicy of a role a stack created returns the policy as JSON
    (URL-encoded on the wire), as for PutRolePolicy; moto stored the
    template's mapping and answered with its Python repr."""
    account = "900000000032"
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["iam:ListUsers"], "Resource": "*"}],
    }
    template = {
        "Resources": {
            "R": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": "stack-role",
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
                    "Policies": [{"PolicyName": "inline", "PolicyDocument": policy}],
                },
            }
        }
    }
    emu.client("cloudformation", account).create_stack(
        StackName="role", TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_NAMED_IAM"]
    )
    got = emu.client("iam", account).get_role_policy(RoleName="stack-role", PolicyName="inline")
    # botocore URL-decodes and parses the document; a repr stays a string.
    assert got["PolicyDocument"] == policy


def _update_template(retention: int, visibility: int, policies: dict[str, str]) -> dict[str, Any]:
    return {
        "Parameters": {"Retention": {"Type": "Number"}},
        "Resources": {
            "Logs": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": "/keyfleet/update", "RetentionInDays": {"Ref": "Retention"}},
            },
            "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "update-dlq"}},
            "Queue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": "update-jobs",
                    "VisibilityTimeout": visibility,
                    "MessageRetentionPeriod": visibility * 10,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]},
                        "maxReceiveCount": visibility // 10,
                    },
                },
            },
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": "update-role",
                    "Description": f"visibility {visibility}",
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com" if visibility < 60 else "sqs.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    },
                    "Policies": [
                        {
                            "PolicyName": name,
                            "PolicyDocument": {
                                "Version": "2012-10-17",
                                "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
                            },
                        }
                        for name, action in policies.items()
                    ],
                },
            },
        },
    }


def test_stack_update_changes_roles_queues_and_log_groups_in_place(emu: Emulator) -> None:
    """UpdateStack (and so a stack set update) changes a role's trust and inline
    policies, a queue's attributes and a log group's retention; moto changed
    only a role's description and a queue's visibility timeout, and forgot
    the log group (it outlived the stack)."""
    account = "900000000033"
    cfn = emu.client("cloudformation", account)
    iam = emu.client("iam", account)
    sqs = emu.client("sqs", account)
    logs = emu.client("logs", account)
    cfn.create_stack(
        StackName="update",
        TemplateBody=json.dumps(_update_template(7, 30, {"keep": "s3:GetObject", "drop": "s3:PutObject"})),
        Parameters=[{"ParameterKey": "Retention", "ParameterValue": "7"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    # A policy put outside the stack is not the stack's to delete.
    iam.put_role_policy(RoleName="update-role", PolicyName="manual", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}
    ))
    cfn.update_stack(
        StackName="update",
        TemplateBody=json.dumps(_update_template(30, 60, {"keep": "s3:ListBucket", "added": "sqs:SendMessage"})),
        Parameters=[{"ParameterKey": "Retention", "ParameterValue": "30"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    assert sorted(iam.list_role_policies(RoleName="update-role")["PolicyNames"]) == ["added", "keep", "manual"]
    keep = iam.get_role_policy(RoleName="update-role", PolicyName="keep")["PolicyDocument"]
    assert keep["Statement"][0]["Action"] == "s3:ListBucket"
    role = iam.get_role(RoleName="update-role")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sqs.amazonaws.com"}
    assert role["Description"] == "visibility 60"
    url = sqs.get_queue_url(QueueName="update-jobs")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["VisibilityTimeout"], attrs["MessageRetentionPeriod"]) == ("60", "600")
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 6
    (group,) = logs.describe_log_groups(logGroupNamePrefix="/keyfleet/update")["logGroups"]
    assert group["retentionInDays"] == 30
    resources = cfn.list_stack_resources(StackName="update")["StackResourceSummaries"]
    assert sorted(r["LogicalResourceId"] for r in resources) == ["Dlq", "Logs", "Queue", "Role"]

    cfn.delete_stack(StackName="update")
    assert logs.describe_log_groups(logGroupNamePrefix="/keyfleet/update")["logGroups"] == []


# -- SQS: 1 MiB messages (plain moto already matches AWS) --------------------


def test_sqs_accepts_messages_up_to_1_mib(emu: Emulator) -> None:
    sqs = emu.client("sqs", "900000000061")
    url = sqs.create_queue(QueueName="big")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
    assert attrs["Attributes"]["MaximumMessageSize"] == "1048576"
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_576)
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert [len(m["Body"]) for m in got] == [1_048_576]
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_577)

# -- Organizations: accounts carry State, not the retired Status -------------


def test_organizations_accounts_carry_state_not_the_retired_status(emu: Emulator) -> None:
    management = "900000000041"
    org = emu.client("organizations", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="members")["OrganizationalUnit"]["Id"]

    def new_account(name: str) -> str:
        account = org.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
        return account

    active = new_account("state-active")
    closed = new_account("state-closed")
    org.close_account(AccountId=closed)
    expected = {active: "ACTIVE", closed: "SUSPENDED"}

    def check(accounts: list[dict[str, Any]], where: str) -> None:
        for account in accounts:
            assert "Status" not in account, (where, account)
            assert account["State"] in ("ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED"), (
                where,
                account,
            )
        states = {a["Id"]: a["State"] for a in accounts if a["Id"] in expected}
        assert states == expected, (where, accounts)

    listed = org.list_accounts()["Accounts"]
    check(listed, "ListAccounts")
    management_entry = [a for a in listed if a["Id"] == management]
    assert [(a["State"], "Status" in a) for a in management_entry] == [("ACTIVE", False)]

    check(org.list_accounts_for_parent(ParentId=ou)["Accounts"], "ListAccountsForParent")
    paged = org.list_accounts_for_parent(ParentId=ou, MaxResults=1)
    assert len(paged["Accounts"]) == 1 and paged.get("NextToken")
    assert "Status" not in paged["Accounts"][0] and "State" in paged["Accounts"][0]

    described = [org.describe_account(AccountId=a)["Account"] for a in (active, closed)]
    check(described, "DescribeAccount")

    # DelegatedAdministrator is a shape of its own whose Status AWS has not
    # retired: it keeps both fields.
    org.register_delegated_administrator(
        AccountId=active, ServicePrincipal="ssm.amazonaws.com"
    )
    admins = org.list_delegated_administrators()["DelegatedAdministrators"]
    assert [(a["Id"], a["State"], a["Status"]) for a in admins] == [(active, "ACTIVE", "ACTIVE")]


# -- Secrets Manager: secret names are validated like AWS --------------------

INVALID_SECRET_NAME = (
    "Invalid name. Must be a valid name containing alphanumeric characters, "
    "or any of the following: -/_+=.@!"
)


def _validation_error(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400, response
    return response["Error"]


@pytest.mark.parametrize(
    "name", ["keyfleet,alice", "has space", "star*", "bang!", "colon:x", "caf\u00e9", "tab\tx"]
)
def test_secretsmanager_refuses_an_invalid_secret_name(emu: Emulator, name: str) -> None:
    sm = emu.client("secretsmanager", "900000000051")
    error = _validation_error(lambda: sm.create_secret(Name=name, SecretString="x"))
    assert error == {"Code": "ValidationException", "Message": INVALID_SECRET_NAME}
    assert [s["Name"] for s in sm.list_secrets()["SecretList"] if s["Name"] == name] == []
    # Actions that take a SecretId refuse the same name (it is not an ARN).
    for call in (
        lambda: sm.describe_secret(SecretId=name),
        lambda: sm.get_secret_value(SecretId=name),
        lambda: sm.put_secret_value(SecretId=name, SecretString="y"),
        lambda: sm.update_secret(SecretId=name, Description="d"),
        lambda: sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True),
        lambda: sm.tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}]),
        lambda: sm.untag_resource(SecretId=name, TagKeys=["k"]),
        lambda: sm.list_secret_version_ids(SecretId=name),
    ):
        assert _validation_error(call) == {
            "Code": "ValidationException",
            "Message": INVALID_SECRET_NAME,
        }


def test_secretsmanager_refuses_a_secret_name_longer_than_512(emu: Emulator) -> None:
    sm = emu.client("secretsmanager", "900000000052")
    error = _validation_error(lambda: sm.create_secret(Name="a" * 513, SecretString="x"))
    assert error["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 512" in error["Message"]
    created = sm.create_secret(Name="b" * 512, SecretString="x")
    assert created["Name"] == "b" * 512


def test_secretsmanager_accepts_every_allowed_character(emu: Emulator) -> None:
    sm = emu.client("secretsmanager", "900000000053")
    names = [f"keyfleet{c}alice" for c in "/_+=.@-"] + ["Keyfleet/Alice_01+x=y.z@example-2"]
    for name in names:
        created = sm.create_secret(Name=name, SecretString="value")
        assert created["Name"] == name
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "value"
        sm.put_secret_value(SecretId=name, SecretString="next")
        assert sm.describe_secret(SecretId=name)["Name"] == name
        # An ARN is not a name: it is looked up, not validated as one.
        assert sm.get_secret_value(SecretId=created["ARN"])["SecretString"] == "next"
    assert {s["Name"] for s in sm.list_secrets()["SecretList"]} == set(names)


def test_secretsmanager_current_value_follows_the_awscurrent_label(emu: Emulator) -> None:
    """AWS: GetSecretValue without a version returns the version labelled
    AWSCURRENT; UpdateSecretVersionStage moving AWSCURRENT changes it, and
    fails when RemoveFromVersionId no longer holds the label (a
    compare-and-swap keyfleet's account lease relies on)."""
    sm = emu.client("secretsmanager", "900000000054")
    first = sm.create_secret(Name="keyfleet-lease", SecretString="one")["VersionId"]
    staged = sm.put_secret_value(
        SecretId="keyfleet-lease", SecretString="two", VersionStages=["keyfleet-next"]
    )["VersionId"]
    assert sm.get_secret_value(SecretId="keyfleet-lease")["SecretString"] == "one"
    sm.update_secret_version_stage(
        SecretId="keyfleet-lease",
        VersionStage="AWSCURRENT",
        MoveToVersionId=staged,
        RemoveFromVersionId=first,
    )
    current = sm.get_secret_value(SecretId="keyfleet-lease")
    assert (current["SecretString"], current["VersionId"]) == ("two", staged)
    previous = sm.get_secret_value(SecretId="keyfleet-lease", VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == "one"
    # A second swap from the version that no longer holds AWSCURRENT fails.
    late = sm.put_secret_value(
        SecretId="keyfleet-lease", SecretString="three", VersionStages=["keyfleet-next"]
    )["VersionId"]
    error = _validation_error(
        lambda: sm.update_secret_version_stage(
            SecretId="keyfleet-lease",
            VersionStage="AWSCURRENT",
            MoveToVersionId=late,
            RemoveFromVersionId=first,
        )
    )
    assert error["Code"] == "InvalidParameterException", error
    assert sm.get_secret_value(SecretId="keyfleet-lease")["SecretString"] == "two"


@contextlib.contextmanager
def own_harness(*args: str) -> Iterator["Emulator"]:
    """A harness of the test module's own (for global state: faults,
    enforcement, Lambda caps), stopped when the block ends."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "port")
        proc = start_harness(ready, "--parent-pid", str(os.getpid()), *args)
        try:
            yield Emulator(read_port(ready, proc))
        finally:
            proc.terminate()
            proc.wait(timeout=10)

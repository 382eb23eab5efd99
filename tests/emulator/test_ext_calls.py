"""Tests of ext_calls.py: the request counter (GET/DELETE /_keyfleet/calls).

Own harness, started once for this module: the counts, fault rules and IAM
enforcement are global to a harness. Each test works in accounts of its own
and reads the counts of those accounts (or resets them first).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from helpers import REGION, Emulator, _signed_query, own_harness

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ACCOUNT_A = "710000000001"
ACCOUNT_B = "710000000002"
ENFORCED_ACCOUNT = "710000000003"
FAULT_ACCOUNT = "710000000004"
RESET_ACCOUNT = "710000000005"
ROLE = "keyfleet-agent-calls-test"  # matches the default enforced pattern keyfleet-agent*
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with own_harness() as harness:
        yield harness


def calls(emu: Emulator, account: str | None = None) -> dict[str, Any]:
    path = "/_keyfleet/calls" + (f"?account={account}" if account else "")
    status, body = emu.control("GET", path)
    assert status == 200, (status, body)
    assert RFC3339_UTC.match(body["since"]), body["since"]
    return body


def reset(emu: Emulator) -> dict[str, Any]:
    status, body = emu.control("DELETE", "/_keyfleet/calls")
    assert status == 200, (status, body)
    return body


def since(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["since"].replace("Z", "+00:00"))


def expected_calls(counts: dict[tuple[str, str, str], int]) -> list[dict[str, Any]]:
    return [
        {"account": a, "service": s, "action": x, "count": n}
        for (a, s, x), n in sorted(counts.items())
    ]


def expected_bytes(sizes: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    return [{"account": a, "service": s, "request_bytes": n} for (a, s), n in sorted(sizes.items())]


class Recorded:
    """boto3 clients whose every attempt's Content-Length is added up per
    (account, service), as the harness should count them."""

    def __init__(self, emu: Emulator):
        self.emu = emu
        self.sizes: Counter[tuple[str, str]] = Counter()

    def client(self, service: str, account: str) -> Any:
        client = self.emu.client(service, account)
        key = (account, service)

        def before_send(request: Any, **kwargs: Any) -> None:
            self.sizes[key] += int(request.headers.get("Content-Length") or 0)

        client.meta.events.register("before-send", before_send)
        return client


def test_calls_are_counted_per_account_service_and_action(emu: Emulator) -> None:
    rec = Recorded(emu)
    clients = {
        account: {service: rec.client(service, account) for service in ("iam", "sqs", "s3", "dynamodb", "sesv2")}
        for account in (ACCOUNT_A, ACCOUNT_B)
    }
    reset(emu)  # the AssumeRole calls behind the clients' credentials are not part of this

    a = clients[ACCOUNT_A]
    a["iam"].create_user(UserName="calls-alice")
    a["iam"].list_users()
    a["iam"].list_users()
    url_a = a["sqs"].create_queue(QueueName="calls-jobs")["QueueUrl"]
    a["sqs"].send_message(QueueUrl=url_a, MessageBody="one")
    a["sqs"].send_message(QueueUrl=url_a, MessageBody="two")
    # The query protocol, posted to the queue URL, is the same action.
    query = {"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "three"}
    _signed_query(emu, ACCOUNT_A, "/" + url_a.split("/", 3)[3], query)
    a["s3"].create_bucket(Bucket="kf-calls-a")
    a["s3"].put_object(Bucket="kf-calls-a", Key="reports/run-1.json", Body=b"x" * 1000)
    assert a["s3"].get_object(Bucket="kf-calls-a", Key="reports/run-1.json")["Body"].read() == b"x" * 1000
    a["dynamodb"].create_table(
        TableName="calls-state",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    a["dynamodb"].put_item(TableName="calls-state", Item={"pk": {"S": "1"}})
    a["dynamodb"].put_item(TableName="calls-state", Item={"pk": {"S": "2"}})
    a["dynamodb"].get_item(TableName="calls-state", Key={"pk": {"S": "1"}})
    a["sesv2"].create_email_identity(EmailIdentity="keyfleet@example.com")
    a["sesv2"].send_email(
        FromEmailAddress="keyfleet@example.com",
        Destination={"ToAddresses": ["owner@example.com"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
    )

    b = clients[ACCOUNT_B]
    b["iam"].create_user(UserName="calls-bob")
    b["iam"].create_user(UserName="calls-carol")
    url_b = b["sqs"].create_queue(QueueName="calls-jobs")["QueueUrl"]
    b["sqs"].send_message(QueueUrl=url_b, MessageBody="one")
    b["s3"].create_bucket(Bucket="kf-calls-b")
    b["s3"].put_object(Bucket="kf-calls-b", Key="a", Body=b"y" * 10)
    b["s3"].put_object(Bucket="kf-calls-b", Key="b", Body=b"z" * 20)
    b["dynamodb"].create_table(
        TableName="calls-state",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    b["dynamodb"].put_item(TableName="calls-state", Item={"pk": {"S": "1"}})
    b["sesv2"].create_email_identity(EmailIdentity="keyfleet@example.com")
    for to in ("owner@example.com", "admin@example.com"):
        b["sesv2"].send_email(
            FromEmailAddress="keyfleet@example.com",
            Destination={"ToAddresses": [to]},
            Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        )

    counts_a = {
        (ACCOUNT_A, "iam", "CreateUser"): 1,
        (ACCOUNT_A, "iam", "ListUsers"): 2,
        (ACCOUNT_A, "sqs", "CreateQueue"): 1,
        (ACCOUNT_A, "sqs", "SendMessage"): 3,
        (ACCOUNT_A, "s3", "CreateBucket"): 1,
        (ACCOUNT_A, "s3", "PutObject"): 1,
        (ACCOUNT_A, "s3", "GetObject"): 1,
        (ACCOUNT_A, "dynamodb", "CreateTable"): 1,
        (ACCOUNT_A, "dynamodb", "PutItem"): 2,
        (ACCOUNT_A, "dynamodb", "GetItem"): 1,
        (ACCOUNT_A, "sesv2", "CreateEmailIdentity"): 1,
        (ACCOUNT_A, "sesv2", "SendEmail"): 1,
    }
    counts_b = {
        (ACCOUNT_B, "iam", "CreateUser"): 2,
        (ACCOUNT_B, "sqs", "CreateQueue"): 1,
        (ACCOUNT_B, "sqs", "SendMessage"): 1,
        (ACCOUNT_B, "s3", "CreateBucket"): 1,
        (ACCOUNT_B, "s3", "PutObject"): 2,
        (ACCOUNT_B, "dynamodb", "CreateTable"): 1,
        (ACCOUNT_B, "dynamodb", "PutItem"): 1,
        (ACCOUNT_B, "sesv2", "CreateEmailIdentity"): 1,
        (ACCOUNT_B, "sesv2", "SendEmail"): 2,
    }
    sizes = dict(rec.sizes)
    sizes[(ACCOUNT_A, "sqs")] += len(urllib.parse.urlencode(query))
    # S3: request bodies are the objects (CreateBucket in us-east-1 and
    # GetObject send none).
    assert sizes[(ACCOUNT_A, "s3")] == 1000
    assert sizes[(ACCOUNT_B, "s3")] == 30

    everything = calls(emu)
    assert everything["calls"] == expected_calls({**counts_a, **counts_b})
    assert everything["bytes"] == expected_bytes(sizes)
    only_a = calls(emu, ACCOUNT_A)
    assert only_a["calls"] == expected_calls(counts_a)
    assert only_a["bytes"] == expected_bytes({k: v for k, v in sizes.items() if k[0] == ACCOUNT_A})
    assert only_a["since"] == everything["since"]
    only_b = calls(emu, ACCOUNT_B)
    assert only_b["calls"] == expected_calls(counts_b)
    assert only_b["bytes"] == expected_bytes({k: v for k, v in sizes.items() if k[0] == ACCOUNT_B})


def test_a_request_refused_by_iam_enforcement_is_counted(emu: Emulator) -> None:
    admin = emu.client("iam", ENFORCED_ACCOUNT)
    admin.create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
            }
        ),
    )
    admin.put_role_policy(
        RoleName=ROLE,
        PolicyName="list-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}],
            }
        ),
    )
    creds = boto3.client(
        "sts", endpoint_url=emu.endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).assume_role(RoleArn=f"arn:aws:iam::{ENFORCED_ACCOUNT}:role/{ROLE}", RoleSessionName="calls")[
        "Credentials"
    ]
    iam = boto3.client(
        "iam", endpoint_url=emu.endpoint, region_name=REGION, config=NO_RETRY,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    assert emu.control("DELETE", "/_keyfleet/iam/decisions")[0] == 200
    status, body = emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": True})
    assert status == 200 and body["enabled"] is True
    try:
        before = {(c["service"], c["action"]): c["count"] for c in calls(emu, ENFORCED_ACCOUNT)["calls"]}
        iam.list_users()
        with pytest.raises(ClientError) as err:
            iam.create_user(UserName="calls-denied")
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": False})
    decisions = emu.control("GET", "/_keyfleet/iam/decisions")[1]["decisions"]
    assert [(d["decision"], d["action"]) for d in decisions] == [
        ("ALLOWED", "iam:ListUsers"),
        ("DENIED", "iam:CreateUser"),
    ]
    # The setup's CreateRole and PutRolePolicy were counted before; the
    # refused CreateUser is counted like the allowed ListUsers.
    assert ("iam", "CreateUser") not in before and ("iam", "ListUsers") not in before
    after = {(c["service"], c["action"]): c["count"] for c in calls(emu, ENFORCED_ACCOUNT)["calls"]}
    assert after == {**before, ("iam", "ListUsers"): 1, ("iam", "CreateUser"): 1}


def test_a_faulted_request_is_counted_once_per_attempt(emu: Emulator) -> None:
    creds = emu.credentials(FAULT_ACCOUNT)

    def client(config: Config) -> Any:
        return boto3.client("iam", endpoint_url=emu.endpoint, region_name=REGION, config=config, **creds)

    status, body = emu.control(
        "POST",
        "/_keyfleet/faults",
        {
            "seed": 1,
            "rules": [
                # moto runs it, the caller gets a 500: one attempt, counted once
                {"service": "iam", "action": "CreateUser", "kind": "do_then_error", "account": FAULT_ACCOUNT},
                # the first two attempts are throttled: three attempts in all
                {"service": "iam", "action": "GetUser", "kind": "throttle", "first_attempts": 2,
                 "account": FAULT_ACCOUNT},
                # moto never sees it: the connection is closed
                {"service": "iam", "action": "ListUsers", "kind": "drop", "account": FAULT_ACCOUNT},
            ],
        },
    )
    assert status == 200, body
    try:
        with pytest.raises(ClientError) as err:
            client(NO_RETRY).create_user(UserName="calls-faulted")
        assert err.value.response["Error"]["Code"] == "InternalFailure"
        retrying = client(Config(retries={"total_max_attempts": 3, "mode": "standard"}))
        assert retrying.get_user(UserName="calls-faulted")["User"]["UserName"] == "calls-faulted"
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            client(NO_RETRY).list_users()
        state = emu.control("GET", "/_keyfleet/faults")[1]
        assert state["by_kind"] == {"do_then_error": 1, "throttle": 2, "drop": 1}
    finally:
        assert emu.control("DELETE", "/_keyfleet/faults")[0] == 200
    assert calls(emu, FAULT_ACCOUNT)["calls"] == expected_calls(
        {
            (FAULT_ACCOUNT, "iam", "CreateUser"): 1,
            (FAULT_ACCOUNT, "iam", "GetUser"): 3,
            (FAULT_ACCOUNT, "iam", "ListUsers"): 1,
        }
    )


def _signed_control_get(emu: Emulator, path: str) -> Any:
    request = AWSRequest(method="GET", url=emu.endpoint + path)
    SigV4Auth(Credentials("testing", "testing"), "iam", REGION).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, headers=dict(prepared.headers), method="GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def test_control_requests_are_not_counted(emu: Emulator) -> None:
    reset(emu)
    assert emu.control("GET", "/_keyfleet/health") == (200, {"ok": True})
    assert emu.control("GET", "/_keyfleet/faults")[0] == 200
    assert emu.control("GET", "/_keyfleet/iam/enforce")[0] == 200
    assert emu.control("GET", "/_keyfleet/nope")[0] == 404
    calls(emu)
    calls(emu, ACCOUNT_A)
    # Signed like an AWS call, still a control request.
    assert _signed_control_get(emu, "/_keyfleet/health") == (200, {"ok": True})
    body = calls(emu)
    assert (body["calls"], body["bytes"]) == ([], [])


def test_delete_resets_the_counts_and_since(emu: Emulator) -> None:
    sts = emu.client("sts", RESET_ACCOUNT)
    first = since(reset(emu))
    sts.get_caller_identity()
    sts.get_caller_identity()
    counted = calls(emu)
    assert since(counted) == first
    assert counted["calls"] == [
        {"account": RESET_ACCOUNT, "service": "sts", "action": "GetCallerIdentity", "count": 2}
    ]
    assert [(b["account"], b["service"]) for b in counted["bytes"]] == [(RESET_ACCOUNT, "sts")]
    assert counted["bytes"][0]["request_bytes"] > 0  # the query protocol's form body

    time.sleep(0.01)
    before = datetime.now(timezone.utc)
    cleared = reset(emu)
    after = datetime.now(timezone.utc)
    assert cleared["ok"] is True and cleared["cleared"] == 2
    assert first < since(cleared)
    assert before - timedelta(milliseconds=1) <= since(cleared) <= after
    empty = calls(emu)
    assert (empty["calls"], empty["bytes"], empty["since"]) == ([], [], cleared["since"])
    sts.get_caller_identity()
    assert calls(emu)["calls"] == [
        {"account": RESET_ACCOUNT, "service": "sts", "action": "GetCallerIdentity", "count": 1}
    ]


def test_the_account_filter(emu: Emulator) -> None:
    emu.client("sts", ACCOUNT_A).get_caller_identity()
    emu.client("sts", ACCOUNT_B).get_caller_identity()
    only_a = calls(emu, ACCOUNT_A)
    assert only_a["calls"] and {c["account"] for c in only_a["calls"]} == {ACCOUNT_A}
    assert only_a["bytes"] and {b["account"] for b in only_a["bytes"]} == {ACCOUNT_A}
    everything = calls(emu)
    assert [c for c in everything["calls"] if c["account"] == ACCOUNT_A] == only_a["calls"]
    assert [b for b in everything["bytes"] if b["account"] == ACCOUNT_A] == only_a["bytes"]
    assert ACCOUNT_B in {c["account"] for c in everything["calls"]}
    nobody = calls(emu, "719999999999")
    assert (nobody["calls"], nobody["bytes"]) == ([], [])
    assert emu.control("GET", "/_keyfleet/calls?account=nope")[0] == 400
    assert emu.control("GET", "/_keyfleet/calls?acount=" + ACCOUNT_A)[0] == 400
    assert emu.control("DELETE", "/_keyfleet/calls?account=" + ACCOUNT_A)[0] == 400

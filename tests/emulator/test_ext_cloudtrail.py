"""Tests of ext_cloudtrail.py: CloudTrail LookupEvents answered from the
requests the emulator served, and its control endpoints.

Own harness, started once for this module: the throttle settings may be
global to a harness. Each test works in accounts of its own (730000000001..).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import Emulator, own_harness

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
UNVALIDATED = Config(retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=False)
SEVEN_DAYS = timedelta(days=7)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with own_harness() as harness:
        yield harness


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_user_key(emu: Emulator, account: str, user: str) -> dict[str, str]:
    iam = emu.client("iam", account)
    iam.create_user(UserName=user)
    return iam.create_access_key(UserName=user)["AccessKey"]


def key_client(
    emu: Emulator,
    service: str,
    key: dict[str, str],
    region: str = "us-east-1",
    ip: str | None = None,
    agent: str | None = None,
) -> Any:
    """A boto3 client signing with ``key``; ``ip`` is sent as the first
    X-Forwarded-For address (a proxy after it), ``agent`` as the User-Agent."""
    client = boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name=region,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"}),
    )

    def headers(request: Any, **kwargs: Any) -> None:
        if ip is not None:
            request.headers["X-Forwarded-For"] = f"{ip}, 10.1.2.3"
        if agent is not None:
            request.headers["User-Agent"] = agent

    client.meta.events.register("before-send", headers)
    return client


def trail(emu: Emulator, account: str, region: str = "us-east-1", config: Config = NO_RETRY) -> Any:
    return boto3.client(
        "cloudtrail",
        endpoint_url=emu.endpoint,
        region_name=region,
        config=config,
        **emu.credentials(account),
    )


def by_key(ct: Any, key_id: str, **extra: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in ct.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": key_id}], **extra
    ):
        events.extend(page["Events"])
    return events


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


# -- recording and looking up ---------------------------------------------------------


def test_a_request_signed_by_a_users_key_is_looked_up_by_that_key(emu: Emulator) -> None:
    account, other = "730000000001", "730000000002"
    old = new_user_key(emu, account, "alice")
    bobs = new_user_key(emu, account, "bob")
    agent = "keyfleet-old-key-user/1.0 (cron on build-7)"
    before = _now().replace(microsecond=0)

    key_client(emu, "iam", old, ip="203.0.113.7", agent=agent).list_users()
    s3 = key_client(emu, "s3", old, region="eu-west-1", ip="198.51.100.9", agent=agent)
    s3.create_bucket(Bucket="alice-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.list_buckets()
    s3.put_object(Bucket="alice-bucket", Key="k", Body=b"data")  # a data event: not in Event history
    s3.get_object(Bucket="alice-bucket", Key="k")
    key_client(emu, "iam", bobs, ip="192.0.2.1").get_user()
    key_client(emu, "sqs", old).list_queues()  # SQS ListQueues: not in Event history either

    events = by_key(trail(emu, account), old["AccessKeyId"])
    assert [e["EventName"] for e in events] == ["ListUsers"]
    (event,) = events
    assert event["EventSource"] == "iam.amazonaws.com"
    assert event["Username"] == "alice"
    assert event["AccessKeyId"] == old["AccessKeyId"]
    assert event["ReadOnly"] == "true"
    assert event["Resources"] == []
    assert before <= event["EventTime"] <= _now()
    record = json.loads(event["CloudTrailEvent"])
    assert record["userIdentity"]["type"] == "IAMUser"
    assert record["userIdentity"]["accessKeyId"] == old["AccessKeyId"]
    assert record["userIdentity"]["userName"] == "alice"
    assert record["userIdentity"]["arn"] == f"arn:aws:iam::{account}:user/alice"
    assert record["sourceIPAddress"] == "203.0.113.7"
    assert record["userAgent"] == agent
    assert (record["eventSource"], record["eventName"], record["awsRegion"]) == (
        "iam.amazonaws.com",
        "ListUsers",
        "us-east-1",
    )
    assert record["recipientAccountId"] == account
    assert record["eventID"] == event["EventId"]
    assert record["readOnly"] is True and record["managementEvent"] is True
    assert datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00")) == event["EventTime"]

    # Event history is per region: the S3 calls were made in eu-west-1.
    s3_events = by_key(trail(emu, account, region="eu-west-1"), old["AccessKeyId"])
    assert [e["EventName"] for e in s3_events] == ["ListBuckets", "CreateBucket"]
    for e in s3_events:
        rec = json.loads(e["CloudTrailEvent"])
        assert (e["EventSource"], rec["awsRegion"], rec["sourceIPAddress"], rec["userAgent"]) == (
            "s3.amazonaws.com",
            "eu-west-1",
            "198.51.100.9",
            agent,
        )
    assert [e["ReadOnly"] for e in s3_events] == ["true", "false"]

    # Bob's key: his own event only, from his address.
    (bob_event,) = by_key(trail(emu, account), bobs["AccessKeyId"])
    assert (bob_event["EventName"], bob_event["Username"]) == ("GetUser", "bob")
    assert json.loads(bob_event["CloudTrailEvent"])["sourceIPAddress"] == "192.0.2.1"

    # Another account sees none of it, in either region.
    assert by_key(trail(emu, other), old["AccessKeyId"]) == []
    assert by_key(trail(emu, other, region="eu-west-1"), old["AccessKeyId"]) == []


def test_a_secret_read_names_the_secret_in_its_request_parameters(emu: Emulator) -> None:
    """AWS: a Secrets Manager GetSecretValue event's requestParameters holds
    the call's secretId (what keyfleet's handover check reads); the call
    itself is answered as before."""
    account = "730000000091"
    key = new_user_key(emu, account, "dora")
    emu.client("secretsmanager", account).create_secret(Name="keyfleet/dora", SecretString="v")
    sm = key_client(emu, "secretsmanager", key)
    assert sm.get_secret_value(SecretId="keyfleet/dora")["SecretString"] == "v"
    (event,) = by_key(trail(emu, account), key["AccessKeyId"])
    assert event["EventName"] == "GetSecretValue"
    assert json.loads(event["CloudTrailEvent"])["requestParameters"] == {"secretId": "keyfleet/dora"}
    # Another service's event keeps requestParameters null.
    key_client(emu, "iam", key).list_users()
    events = by_key(trail(emu, account), key["AccessKeyId"])
    (listed,) = [e for e in events if e["EventName"] == "ListUsers"]
    assert json.loads(listed["CloudTrailEvent"])["requestParameters"] is None


def test_without_x_forwarded_for_the_source_is_the_peer(emu: Emulator) -> None:
    account = "730000000003"
    key = new_user_key(emu, account, "carol")
    key_client(emu, "iam", key).get_user()
    (event,) = by_key(trail(emu, account), key["AccessKeyId"])
    record = json.loads(event["CloudTrailEvent"])
    assert record["sourceIPAddress"] == "127.0.0.1"
    assert record["userAgent"].startswith("Boto3/")


def test_an_assumed_role_key_is_its_session(emu: Emulator) -> None:
    account = "730000000004"
    creds = emu.credentials(account)  # AssumeRole keyfleet-test / emulator-test
    emu.client("iam", account).list_roles()
    ct = trail(emu, account)
    events = by_key(ct, creds["aws_access_key_id"], EndTime=_now() + timedelta(seconds=5))
    assert [e["EventName"] for e in events] == ["ListRoles"]
    (event,) = events
    assert event["Username"] == "emulator-test"
    identity = json.loads(event["CloudTrailEvent"])["userIdentity"]
    assert identity["type"] == "AssumedRole"
    assert identity["arn"] == f"arn:aws:sts::{account}:assumed-role/keyfleet-test/emulator-test"
    assert identity["sessionContext"]["sessionIssuer"]["arn"] == f"arn:aws:iam::{account}:role/keyfleet-test"

    # The lookups themselves are events (CloudTrail records LookupEvents),
    # never in their own answer.
    names = [e["EventName"] for e in by_key(ct, creds["aws_access_key_id"])]
    assert names[0] == "LookupEvents" and "ListRoles" in names
    assert all(e["EventSource"] == "cloudtrail.amazonaws.com" for e in by_key(ct, creds["aws_access_key_id"])
               if e["EventName"] == "LookupEvents")


def test_lookup_by_event_name_source_username_and_read_only(emu: Emulator) -> None:
    account = "730000000005"
    key = new_user_key(emu, account, "dave")
    iam = key_client(emu, "iam", key)
    iam.get_user()
    iam.create_group(GroupName="ops")
    key_client(emu, "sts", key).get_caller_identity()
    ct = trail(emu, account)

    def names(key_name: str, value: str) -> list[str]:
        resp = ct.lookup_events(LookupAttributes=[{"AttributeKey": key_name, "AttributeValue": value}])
        return [e["EventName"] for e in resp["Events"] if e["AccessKeyId"] == key["AccessKeyId"]]

    assert names("Username", "dave") == ["GetCallerIdentity", "CreateGroup", "GetUser"]
    assert names("EventName", "CreateGroup") == ["CreateGroup"]
    assert names("EventSource", "sts.amazonaws.com") == ["GetCallerIdentity"]
    assert names("EventSource", "iam.amazonaws.com") == ["CreateGroup", "GetUser"]
    assert names("ReadOnly", "false") == ["CreateGroup"]
    assert names("ReadOnly", "true") == ["GetCallerIdentity", "GetUser"]
    assert names("Username", "Dave") == []  # exact, case-sensitive
    assert names("ResourceType", "AWS::IAM::Group") == []  # no resources are recorded
    (group_event,) = ct.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateGroup"}]
    )["Events"]
    by_id = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventId", "AttributeValue": group_event["EventId"]}])
    assert [e["EventName"] for e in by_id["Events"]] == ["CreateGroup"]


def test_time_range_follows_the_emulator_clock(emu: Emulator) -> None:
    account = "730000000006"
    key = new_user_key(emu, account, "erin")
    iam = key_client(emu, "iam", key)
    iam.get_user()  # will look 3 days old
    status, body = emu.control("POST", "/_keyfleet/clock/advance", {"days": 3, "account": account})
    assert status == 200 and body["cloudtrail_events_aged"] >= 1, body
    iam.list_groups()  # now
    ct = trail(emu, account)
    now = _now()

    everything = by_key(ct, key["AccessKeyId"], StartTime=now - SEVEN_DAYS, EndTime=now + timedelta(minutes=1))
    assert [e["EventName"] for e in everything] == ["ListGroups", "GetUser"]
    old_time = everything[1]["EventTime"]
    assert abs((now - timedelta(days=3) - old_time).total_seconds()) < 120
    assert [e["EventName"] for e in by_key(ct, key["AccessKeyId"], StartTime=now - timedelta(days=1))] == [
        "ListGroups"
    ]
    assert [e["EventName"] for e in by_key(ct, key["AccessKeyId"], EndTime=now - timedelta(days=1))] == ["GetUser"]
    # StartTime and EndTime are inclusive.
    assert [e["EventName"] for e in by_key(ct, key["AccessKeyId"], StartTime=old_time, EndTime=old_time)] == [
        "GetUser"
    ]

    # Another 5 days: the first use is 8 days old, out of "the last 7 days".
    emu.control("POST", "/_keyfleet/clock/advance", {"days": 5, "account": account})
    assert [e["EventName"] for e in by_key(ct, key["AccessKeyId"], StartTime=_now() - SEVEN_DAYS)] == [
        "ListGroups"
    ]
    # Event history keeps 90 days: after 100 more days nothing is looked up,
    # while the control endpoint still lists what was recorded.
    emu.control("POST", "/_keyfleet/clock/advance", {"days": 100, "account": account})
    assert by_key(ct, key["AccessKeyId"]) == []
    status, body = emu.control("GET", f"/_keyfleet/cloudtrail?account={account}&access_key_id={key['AccessKeyId']}")
    assert status == 200
    assert [e["event_name"] for e in body["events"]] == ["ListGroups", "GetUser"]


def test_pages_newest_first_with_max_results_and_next_token(emu: Emulator) -> None:
    account = "730000000007"
    key = new_user_key(emu, account, "frank")
    iam = key_client(emu, "iam", key)
    for name in ("g1", "g2", "g3", "g4", "g5"):
        iam.create_group(GroupName=name)
    ct = trail(emu, account)
    attrs = [{"AttributeKey": "AccessKeyId", "AttributeValue": key["AccessKeyId"]}]

    pages = []
    resp = ct.lookup_events(LookupAttributes=attrs, MaxResults=2)
    pages.append(resp["Events"])
    while "NextToken" in resp:
        resp = ct.lookup_events(LookupAttributes=attrs, MaxResults=2, NextToken=resp["NextToken"])
        pages.append(resp["Events"])
    assert [len(p) for p in pages] == [2, 2, 1]
    events = [e for p in pages for e in p]
    assert [e["EventName"] for e in events] == ["CreateGroup"] * 5
    assert len({e["EventId"] for e in events}) == 5
    times = [e["EventTime"] for e in events]
    assert times == sorted(times, reverse=True)
    # The same order in one page (default MaxResults 50), and no NextToken.
    whole = ct.lookup_events(LookupAttributes=attrs)
    assert [e["EventId"] for e in whole["Events"]] == [e["EventId"] for e in events]
    assert "NextToken" not in whole

    first = ct.lookup_events(LookupAttributes=attrs, MaxResults=2)
    with pytest.raises(ClientError) as exc:  # a token with other parameters
        ct.lookup_events(
            LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "frank"}],
            MaxResults=2,
            NextToken=first["NextToken"],
        )
    assert error_code(exc) == ("InvalidNextTokenException", 400)
    with pytest.raises(ClientError) as exc:
        ct.lookup_events(LookupAttributes=attrs, NextToken="not-a-token")
    assert error_code(exc) == ("InvalidNextTokenException", 400)


def test_invalid_requests_are_refused_as_aws_does(emu: Emulator) -> None:
    account = "730000000008"
    ct = trail(emu, account, config=UNVALIDATED)  # let the server see what botocore would refuse
    key_attr = {"AttributeKey": "AccessKeyId", "AttributeValue": "AKIAEXAMPLE"}
    cases = [
        (
            {"LookupAttributes": [key_attr, {"AttributeKey": "EventName", "AttributeValue": "GetUser"}]},
            "InvalidLookupAttributesException",
        ),
        ({"LookupAttributes": [{"AttributeKey": "SourceIp", "AttributeValue": "1.2.3.4"}]},
         "InvalidLookupAttributesException"),
        ({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": ""}]},
         "InvalidLookupAttributesException"),
        ({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "_" * 1001}]},
         "InvalidLookupAttributesException"),
        ({"StartTime": _now(), "EndTime": _now() - timedelta(hours=1)}, "InvalidTimeRangeException"),
        ({"MaxResults": 0}, "InvalidMaxResultsException"),
        ({"MaxResults": 51}, "InvalidMaxResultsException"),
        ({"EventCategory": "data"}, "InvalidEventCategoryException"),
    ]
    for params, code in cases:
        with pytest.raises(ClientError) as exc:
            ct.lookup_events(**params)
        assert error_code(exc) == (code, 400), params
    # The edges that are valid.
    ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "_" * 1000}])
    ct.lookup_events(MaxResults=50, StartTime=_now(), EndTime=_now() + timedelta(seconds=1))
    assert ct.lookup_events(EventCategory="insight")["Events"] == []


# -- throttling ---------------------------------------------------------------------


def test_throttling_is_off_by_default_and_deterministic_when_set(emu: Emulator) -> None:
    account, other = "730000000009", "730000000010"
    ct = trail(emu, account)
    for _ in range(5):  # off by default: no limit
        ct.lookup_events(MaxResults=1)

    # One lookup an hour: the second is refused however slow the machine is.
    status, body = emu.control("POST", "/_keyfleet/cloudtrail/throttle", {"rate": 1 / 3600, "account": account})
    assert status == 200 and body["rate"] == 1 / 3600, body
    ct.lookup_events(MaxResults=1)
    with pytest.raises(ClientError) as exc:
        ct.lookup_events(MaxResults=1)
    assert error_code(exc) == ("ThrottlingException", 400)
    assert exc.value.response["Error"]["Message"] == "Rate exceeded"
    # Per account and per region.
    trail(emu, account, region="eu-west-1").lookup_events(MaxResults=1)
    trail(emu, other).lookup_events(MaxResults=1)
    trail(emu, other).lookup_events(MaxResults=1)
    # An hour of emulator time refills it.
    emu.control("POST", "/_keyfleet/clock/advance", {"days": 1 / 24, "account": account})
    ct.lookup_events(MaxResults=1)
    with pytest.raises(ClientError) as exc:
        ct.lookup_events(MaxResults=1)
    assert error_code(exc) == ("ThrottlingException", 400)

    # AWS's 2 per second: two lookups in a row always pass.
    emu.control("POST", "/_keyfleet/cloudtrail/throttle", {"rate": 2, "account": account})
    ct.lookup_events(MaxResults=1)
    ct.lookup_events(MaxResults=1)
    status, body = emu.control("GET", "/_keyfleet/cloudtrail/throttle")
    assert status == 200 and body["accounts"][account] == 2.0 and body["all_accounts"] is None

    # null turns it off for the account; DELETE for everyone.
    emu.control("POST", "/_keyfleet/cloudtrail/throttle", {"rate": None, "account": account})
    for _ in range(5):
        ct.lookup_events(MaxResults=1)
    status, body = emu.control("POST", "/_keyfleet/cloudtrail/throttle", {"rate": 1 / 3600})
    assert status == 200 and body["account"] is None
    trail(emu, other, region="ap-south-1").lookup_events(MaxResults=1)
    with pytest.raises(ClientError) as exc:
        trail(emu, other, region="ap-south-1").lookup_events(MaxResults=1)
    assert error_code(exc) == ("ThrottlingException", 400)
    status, body = emu.control("DELETE", "/_keyfleet/cloudtrail/throttle")
    assert status == 200 and body["cleared"] == 1
    for _ in range(3):
        trail(emu, other, region="ap-south-1").lookup_events(MaxResults=1)

    for bad in ({"rate": 0}, {"rate": -1}, {"rate": "2"}, {}, {"rate": 2, "account": "12"}, {"rate": 2, "x": 1}):
        status, _ = emu.control("POST", "/_keyfleet/cloudtrail/throttle", bad)
        assert status == 400, bad


# -- control endpoints ----------------------------------------------------------------


def test_control_endpoints_record_list_and_clear(emu: Emulator) -> None:
    account = "730000000011"
    key = new_user_key(emu, account, "grace")
    three_days_ago = (_now() - timedelta(days=3)).replace(microsecond=0)
    status, body = emu.control(
        "POST",
        "/_keyfleet/cloudtrail/events",
        {
            "access_key_id": key["AccessKeyId"],
            "event_name": "ListBuckets",
            "service": "s3",
            "region": "eu-central-1",
            "source_ip": "203.0.113.50",
            "user_agent": "aws-cli/2.15.0",
            "when": three_days_ago.isoformat().replace("+00:00", "Z"),
        },
    )
    assert status == 200, body
    assert (body["account"], body["username"]) == (account, "grace")

    (event,) = by_key(trail(emu, account, region="eu-central-1"), key["AccessKeyId"])
    assert event["EventId"] == body["event_id"]
    assert event["EventTime"] == three_days_ago
    assert (event["EventName"], event["EventSource"], event["Username"]) == (
        "ListBuckets",
        "s3.amazonaws.com",
        "grace",
    )
    record = json.loads(event["CloudTrailEvent"])
    assert (record["sourceIPAddress"], record["userAgent"], record["awsRegion"]) == (
        "203.0.113.50",
        "aws-cli/2.15.0",
        "eu-central-1",
    )

    key_client(emu, "iam", key, ip="192.0.2.77").get_user()
    status, body = emu.control("GET", f"/_keyfleet/cloudtrail?account={account}")
    assert status == 200
    rows = [e for e in body["events"] if e["access_key_id"] == key["AccessKeyId"]]
    assert [(e["event_name"], e["region"], e["source_ip"]) for e in rows] == [
        ("GetUser", "us-east-1", "192.0.2.77"),
        ("ListBuckets", "eu-central-1", "203.0.113.50"),
    ]
    assert rows[0]["username"] == "grace" and rows[0]["identity_type"] == "IAMUser"
    assert rows[0]["read_only"] is True and rows[0]["event_source"] == "iam.amazonaws.com"
    assert rows[1]["event_time"] == three_days_ago.strftime("%Y-%m-%dT%H:%M:%SZ")

    status, body = emu.control("DELETE", f"/_keyfleet/cloudtrail?account={account}")
    assert status == 200 and body["cleared"] >= 2
    assert emu.control("GET", f"/_keyfleet/cloudtrail?account={account}")[1]["events"] == []
    assert by_key(trail(emu, account, region="eu-central-1"), key["AccessKeyId"]) == []

    for method, path, payload in (
        ("GET", "/_keyfleet/cloudtrail?account=12", None),
        ("GET", "/_keyfleet/cloudtrail?user=x", None),
        ("DELETE", "/_keyfleet/cloudtrail?region=x", None),
        ("POST", "/_keyfleet/cloudtrail/events", {"event_name": "X", "service": "s3"}),
        ("POST", "/_keyfleet/cloudtrail/events", {"access_key_id": "AKIA1", "event_name": "X"}),
        ("POST", "/_keyfleet/cloudtrail/events",
         {"access_key_id": "AKIA1", "event_name": "X", "service": "s3", "when": "yesterday"}),
    ):
        status, _ = emu.control(method, path, payload)
        assert status == 400, (method, path, payload)


def test_recording_keeps_up(emu: Emulator) -> None:
    """Recording stays cheap: many requests, all recorded, none slowed down
    noticeably (a loose bound, only to catch an accidental O(n) per request)."""
    account = "730000000012"
    key = new_user_key(emu, account, "heidi")
    iam = key_client(emu, "iam", key)
    started = time.monotonic()
    for _ in range(200):
        iam.get_user()
    elapsed = time.monotonic() - started
    events = by_key(trail(emu, account), key["AccessKeyId"])
    assert len(events) == 200
    assert elapsed < 60

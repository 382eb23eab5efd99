"""Faults on demand (ext_faults.py): POST/GET/DELETE /_keyfleet/faults.

Own harness (the rules are global to a harness), started once for this module.
"""

from __future__ import annotations

import concurrent.futures
import time
import urllib.error
from typing import Any, Iterator

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

import ext_faults
from helpers import Emulator, _signed_query, own_harness

NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ACCOUNT = "700000000001"


@pytest.fixture(scope="module")
def femu() -> Iterator[Emulator]:
    with own_harness() as emu:
        yield emu


@pytest.fixture()
def emu(femu: Emulator) -> Iterator[Emulator]:
    femu.control("DELETE", "/_keyfleet/faults")
    yield femu
    femu.control("DELETE", "/_keyfleet/faults")


def client(emu: Emulator, service: str, account: str | None = ACCOUNT) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name="us-east-1",
        config=NO_RETRY,
        **emu.credentials(account),
    )


def set_faults(emu: Emulator, rules: list[dict[str, Any]], seed: Any = 1) -> dict[str, Any]:
    status, body = emu.control("POST", "/_keyfleet/faults", {"seed": seed, "rules": rules})
    assert status == 200, body
    return body


def faults(emu: Emulator) -> dict[str, Any]:
    status, body = emu.control("GET", "/_keyfleet/faults")
    assert status == 200
    return body


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


# -- throttling, per service shape -------------------------------------------------


def test_iam_throttling_query_xml(emu: Emulator) -> None:
    iam = client(emu, "iam")
    iam.create_user(UserName="th-alice")
    set_faults(emu, [{"service": "iam", "action": "ListAccessKeys", "kind": "throttle"}])
    resp = error_of(lambda: iam.list_access_keys(UserName="th-alice"))
    assert resp["Error"]["Code"] == "Throttling"
    assert resp["Error"]["Type"] == "Sender"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    iam.get_user(UserName="th-alice")  # other actions untouched
    state = faults(emu)
    assert state["injected"] == 1 and state["by_kind"] == {"throttle": 1}
    assert state["log"][0]["action"] == "ListAccessKeys"
    assert state["log"][0]["key"] == {"UserName": "th-alice"}


def test_sqs_throttling_json_and_query(emu: Emulator) -> None:
    sqs = client(emu, "sqs")
    url = sqs.create_queue(QueueName="th-queue")["QueueUrl"]
    set_faults(emu, [{"service": "sqs", "action": "SendMessage", "kind": "throttle"}])
    resp = error_of(lambda: sqs.send_message(QueueUrl=url, MessageBody="x"))
    assert resp["Error"]["Code"] == "RequestThrottled"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-query-error"] == "RequestThrottled;Sender"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    with pytest.raises(urllib.error.HTTPError) as err:
        _signed_query(
            emu, ACCOUNT, "/",
            {"Action": "SendMessage", "Version": "2012-11-05", "QueueUrl": url, "MessageBody": "q"},
        )
    assert err.value.code == 400
    xml = err.value.read().decode()
    assert "<Code>RequestThrottled</Code>" in xml and "<Type>Sender</Type>" in xml
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_sesv2_too_many_requests_for_one_destination(emu: Emulator) -> None:
    ses = client(emu, "sesv2")
    ses.create_email_identity(EmailIdentity="keyfleet@example.com")

    def send(to: str) -> Any:
        return ses.send_email(
            FromEmailAddress="keyfleet@example.com",
            Destination={"ToAddresses": [to]},
            Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        )

    set_faults(emu, [{"service": "sesv2", "action": "SendEmail", "kind": "throttle",
                      "match": {"Destination": "blocked@example.com"}}])
    resp = error_of(lambda: send("blocked@example.com"))
    assert resp["Error"]["Code"] == "TooManyRequestsException"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert send("owner@example.com")["MessageId"]
    assert faults(emu)["rules"][0]["injected"] == 1


def test_s3_slowdown_and_secretsmanager_throttling(emu: Emulator) -> None:
    s3 = client(emu, "s3")
    s3.create_bucket(Bucket="th-bucket")
    s3.put_object(Bucket="th-bucket", Key="a/b.txt", Body=b"hi")
    sm = client(emu, "secretsmanager")
    sm.create_secret(Name="th-secret", SecretString="s")
    set_faults(emu, [
        {"service": "s3", "action": "GetObject", "kind": "throttle", "match": {"Key": "a/b.txt"}},
        {"service": "secretsmanager", "kind": "throttle"},
    ])
    resp = error_of(lambda: s3.get_object(Bucket="th-bucket", Key="a/b.txt"))
    assert resp["Error"]["Code"] == "SlowDown"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 503
    s3.put_object(Bucket="th-bucket", Key="other", Body=b"x")  # another action
    resp = error_of(lambda: sm.get_secret_value(SecretId="th-secret"))
    assert resp["Error"]["Code"] == "ThrottlingException"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400


# -- 5xx ----------------------------------------------------------------------------


def test_internal_error_and_unavailable(emu: Emulator) -> None:
    iam = client(emu, "iam")
    iam.create_user(UserName="e5-bob")
    sqs = client(emu, "sqs")
    set_faults(emu, [
        {"service": "iam", "action": "GetUser", "kind": "internal_error"},
        {"service": "sqs", "action": "ListQueues", "kind": "unavailable"},
    ])
    resp = error_of(lambda: iam.get_user(UserName="e5-bob"))
    assert resp["Error"]["Code"] == "InternalFailure"
    assert resp["Error"]["Type"] == "Receiver"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 500
    resp = error_of(lambda: sqs.list_queues())
    assert resp["Error"]["Code"] == "ServiceUnavailable"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_error_overrides(emu: Emulator) -> None:
    iam = client(emu, "iam")
    set_faults(emu, [{"service": "iam", "action": "ListUsers", "kind": "internal_error",
                      "code": "ServiceFailure", "message": "boom"}])
    resp = error_of(lambda: iam.list_users())
    assert resp["Error"]["Code"] == "ServiceFailure" and resp["Error"]["Message"] == "boom"


# -- connections --------------------------------------------------------------------


def test_dropped_connection(emu: Emulator) -> None:
    iam = client(emu, "iam")
    set_faults(emu, [{"service": "iam", "action": "CreateUser", "kind": "drop"}])
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        iam.create_user(UserName="dr-carol")
    emu.control("DELETE", "/_keyfleet/faults")
    # moto never saw it: the user does not exist.
    assert error_of(lambda: iam.get_user(UserName="dr-carol"))["Error"]["Code"] == "NoSuchEntity"
    assert emu.control("GET", "/_keyfleet/health")[0] == 200  # server still fine


def test_do_then_drop_create_access_key_happens(emu: Emulator) -> None:
    iam = client(emu, "iam")
    iam.create_user(UserName="dd-dave")
    set_faults(emu, [{"service": "iam", "action": "CreateAccessKey", "kind": "do_then_drop",
                      "match": {"UserName": "dd-dave"}}])
    with pytest.raises(ConnectionClosedError):
        iam.create_access_key(UserName="dd-dave")
    keys = iam.list_access_keys(UserName="dd-dave")["AccessKeyMetadata"]
    assert len(keys) == 1 and keys[0]["Status"] == "Active"
    assert faults(emu)["by_kind"] == {"do_then_drop": 1}


def test_do_then_error_create_access_key_happens(emu: Emulator) -> None:
    iam = client(emu, "iam")
    iam.create_user(UserName="de-erin")
    set_faults(emu, [{"service": "iam", "action": "CreateAccessKey", "kind": "do_then_error"}])
    resp = error_of(lambda: iam.create_access_key(UserName="de-erin"))
    assert resp["Error"]["Code"] == "InternalFailure"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert len(iam.list_access_keys(UserName="de-erin")["AccessKeyMetadata"]) == 1


def test_delay_holds_the_request_then_moto_answers(emu: Emulator) -> None:
    account = "700000000031"
    iam = client(emu, "iam", account)
    iam.create_user(UserName="dl-jane")
    set_faults(emu, [{"service": "iam", "action": "ListUsers", "kind": "delay", "delay_ms": 300,
                      "account": account, "first_attempts": 1}])
    started = time.monotonic()
    users = iam.list_users()["Users"]
    assert time.monotonic() - started >= 0.3  # a lower bound only: held at least delay_ms
    assert [u["UserName"] for u in users] == ["dl-jane"]  # moto's real answer
    iam.list_users()  # attempt 1: past first_attempts, not delayed
    iam.get_user(UserName="dl-jane")  # action not named
    client(emu, "iam", "700000000032").list_users()  # another account
    state = faults(emu)
    assert state["injected"] == 1 and state["by_kind"] == {"delay": 1}
    assert (state["rules"][0]["matched"], state["rules"][0]["injected"]) == (2, 1)
    assert state["rules"][0]["delay_ms"] == 300
    (entry,) = state["log"]
    assert entry == {"rule": 0, "kind": "delay", "delay_ms": 300, "service": "iam",
                     "action": "ListUsers", "region": "us-east-1", "account": account,
                     "key": {}, "attempt": 0}
    for bad in (
        {"service": "iam", "kind": "delay"},  # delay_ms is required
        {"service": "iam", "kind": "delay", "delay_ms": 60_001},
        {"service": "iam", "kind": "delay", "delay_ms": -1},
        {"service": "iam", "kind": "delay", "delay_ms": 1.5},
        {"service": "iam", "kind": "delay", "delay_ms": True},
        {"service": "iam", "kind": "delay", "delay_ms": 10, "status": 500},
        {"service": "iam", "kind": "throttle", "delay_ms": 10},
    ):
        status, body = emu.control("POST", "/_keyfleet/faults", {"rules": [bad]})
        assert status == 400, (bad, body)
    assert set_faults(emu, [{"service": "iam", "kind": "delay", "delay_ms": 60_000}])["ok"]


# -- share, filters, determinism ---------------------------------------------------


def _list_keys_outcomes(iam: Any, users: list[str]) -> dict[str, bool]:
    out = {}
    for user in users:
        try:
            iam.list_access_keys(UserName=user)
            out[user] = False
        except ClientError as err:
            assert err.response["Error"]["Code"] == "Throttling"
            out[user] = True
    return out


def test_share_zero_and_one(emu: Emulator) -> None:
    iam = client(emu, "iam")
    users = [f"sh-{i}" for i in range(8)]
    for user in users:
        iam.create_user(UserName=user)
    set_faults(emu, [{"service": "iam", "action": "ListAccessKeys", "kind": "throttle", "share": 0}])
    assert not any(_list_keys_outcomes(iam, users).values())
    assert faults(emu)["rules"][0]["matched"] == 8
    set_faults(emu, [{"service": "iam", "action": "ListAccessKeys", "kind": "throttle", "share": 1}])
    assert all(_list_keys_outcomes(iam, users).values())


def test_filters_action_parameter_account(emu: Emulator) -> None:
    iam = client(emu, "iam")
    other = client(emu, "iam", "700000000002")
    for c in (iam, other):
        c.create_user(UserName="fl-frank")
        c.create_user(UserName="fl-gina")
    set_faults(emu, [{"service": "iam", "action": ["ListAccessKeys", "GetUser"], "kind": "throttle",
                      "match": {"UserName": ["fl-frank"]}, "account": ACCOUNT}])
    assert error_of(lambda: iam.get_user(UserName="fl-frank"))["Error"]["Code"] == "Throttling"
    assert error_of(lambda: iam.list_access_keys(UserName="fl-frank"))["Error"]["Code"] == "Throttling"
    iam.list_user_tags(UserName="fl-frank")  # action not named
    iam.get_user(UserName="fl-gina")  # parameter differs
    other.get_user(UserName="fl-frank")  # another account
    client(emu, "sts").get_caller_identity()  # another service


def test_same_seed_same_decisions_in_any_order(emu: Emulator) -> None:
    iam = client(emu, "iam")
    users = [f"dt-{i:02d}" for i in range(24)]
    for user in users:
        iam.create_user(UserName=user)
    rule = {"service": "iam", "action": "ListAccessKeys", "kind": "throttle", "share": 0.5}

    set_faults(emu, [rule], seed="replay-1")
    forward = _list_keys_outcomes(iam, users)
    set_faults(emu, [rule], seed="replay-1")
    backward = _list_keys_outcomes(iam, list(reversed(users)))
    set_faults(emu, [rule], seed="replay-1")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        parallel: dict[str, bool] = {}
        for part in pool.map(lambda u: _list_keys_outcomes(client(emu, "iam"), [u]), users):
            parallel.update(part)
    assert forward == backward == parallel
    assert 0 < sum(forward.values()) < len(users)  # a share, not all or nothing
    # The harness's decisions are the documented hash: recompute them here.
    expected = {
        u: ext_faults.draw("replay-1", 0, ["iam", "ListAccessKeys", "us-east-1", ACCOUNT,
                                           {"UserName": u}], 0) < 0.5
        for u in users
    }
    assert forward == expected
    set_faults(emu, [rule], seed="replay-2")
    assert _list_keys_outcomes(iam, users) != forward  # another seed, other decisions


def test_attempt_numbers_change_the_decision(emu: Emulator) -> None:
    iam = client(emu, "iam")
    iam.create_user(UserName="at-hank")
    rule = {"service": "iam", "action": "GetUser", "kind": "throttle", "share": 0.5}

    def run() -> list[bool]:
        set_faults(emu, [rule], seed=5)
        out = []
        for _ in range(16):
            try:
                iam.get_user(UserName="at-hank")
                out.append(False)
            except ClientError:
                out.append(True)
        return out

    first = run()
    assert True in first and False in first  # retries of one request differ
    assert run() == first  # and replay exactly
    attempts = [e["attempt"] for e in faults(emu)["log"]]
    assert attempts == [i for i, failed in enumerate(first) if failed]


def test_first_attempts_then_success(emu: Emulator) -> None:
    iam = client(emu, "iam")
    iam.create_user(UserName="fa-ivy")
    set_faults(emu, [{"service": "iam", "action": "GetUser", "kind": "throttle", "first_attempts": 2}])
    for _ in range(2):
        error_of(lambda: iam.get_user(UserName="fa-ivy"))
    iam.get_user(UserName="fa-ivy")
    # botocore's own retries get through the same way
    set_faults(emu, [{"service": "iam", "action": "GetUser", "kind": "throttle", "first_attempts": 1}])
    import boto3

    boto_retry = boto3.client(
        "iam", endpoint_url=emu.endpoint, region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
        **emu.credentials(ACCOUNT),
    )
    boto_retry.get_user(UserName="fa-ivy")
    assert faults(emu)["injected"] == 1


def test_from_attempt_lets_the_first_requests_through(emu: Emulator) -> None:
    iam = client(emu, "iam")
    iam.create_user(UserName="fa-jo")
    set_faults(emu, [{"service": "iam", "action": "GetUser", "kind": "throttle",
                      "from_attempt": 2, "first_attempts": 4}])
    iam.get_user(UserName="fa-jo")  # attempt 0
    iam.get_user(UserName="fa-jo")  # attempt 1
    for _ in range(2):  # attempts 2 and 3
        error_of(lambda: iam.get_user(UserName="fa-jo"))
    iam.get_user(UserName="fa-jo")  # attempt 4: past first_attempts
    assert [e["attempt"] for e in faults(emu)["log"]] == [2, 3]
    status, _ = emu.control("POST", "/_keyfleet/faults",
                            {"rules": [{"service": "iam", "kind": "throttle", "from_attempt": -1}]})
    assert status == 400


def test_clear_and_control_errors(emu: Emulator) -> None:
    iam = client(emu, "iam")
    set_faults(emu, [{"service": "iam", "kind": "throttle"}])
    error_of(lambda: iam.list_users())
    # control endpoints are never affected
    assert emu.control("GET", "/_keyfleet/health")[0] == 200
    status, body = emu.control("DELETE", "/_keyfleet/faults")
    assert status == 200 and body == {"ok": True, "cleared": 1}
    iam.list_users()
    state = faults(emu)
    assert state["rules"] == [] and state["injected"] == 0 and state["log"] == []
    for bad in (
        {"rules": [{"service": "iam", "kind": "explode"}]},
        {"rules": [{"kind": "throttle"}]},
        {"rules": [{"service": "iam", "kind": "throttle", "share": 1.5}]},
        {"rules": [{"service": "iam", "kind": "do_then_drop"}]},
        {"rules": [{"service": "iam", "kind": "throttle", "colour": "red"}]},
        {"seed": 1},
    ):
        status, body = emu.control("POST", "/_keyfleet/faults", bad)
        assert status == 400, (bad, body)
    assert emu.control("PUT", "/_keyfleet/faults", {})[0] == 405


def test_unsigned_requests_are_not_affected(emu: Emulator) -> None:
    import urllib.request

    set_faults(emu, [{"service": "sts", "kind": "drop"}])
    req = urllib.request.Request(
        emu.endpoint + "/", data=b"Action=GetCallerIdentity&Version=2011-06-15", method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError:
        pass  # whatever moto answers, it answered
    assert faults(emu)["rules"][0]["matched"] == 0

"""IAM enforced for the deployed roles (ext_iam_enforce.py), against a harness of its own."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from typing import Any, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from test_harness import Emulator, read_port, start_harness

REGION = "us-east-1"
ACCOUNT = "246813579024"
QUEUE_ACCOUNT = "135792468013"
ROLE = "keyfleet-agent-enforce-test"
BUCKET = "kf-enforce-test-bucket"
ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Keys",
            "Effect": "Allow",
            "Action": ["iam:ListAccessKeys", "iam:ListUsers"],
            "Resource": [f"arn:aws:iam::{ACCOUNT}:user/*", "*"],
        },
        {
            "Sid": "NotAdmins",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": f"arn:aws:iam::{ACCOUNT}:user/admin-*",
        },
        {
            "Sid": "Secrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:keyfleet/*",
        },
        {
            "Sid": "Reports",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": f"arn:aws:s3:::{BUCKET}/reports/*",
        },
        {
            "Sid": "Results",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": f"arn:aws:sqs:{REGION}:{QUEUE_ACCOUNT}:results",
        },
    ],
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "port")
        proc = start_harness(ready, "--parent-pid", str(os.getpid()))
        port = read_port(ready, proc)
        try:
            yield Emulator(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            proc.stdout.close()


@pytest.fixture(scope="module")
def world(emu: Emulator) -> dict[str, Any]:
    """The role, a user, secrets, a bucket and queues, created with admin credentials."""
    iam = emu.client("iam", ACCOUNT)
    iam.create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    iam.put_role_policy(RoleName=ROLE, PolicyName="agent", PolicyDocument=json.dumps(POLICY))
    iam.create_user(UserName="alice")
    iam.create_user(UserName="admin-bob")
    sm = emu.client("secretsmanager", ACCOUNT)
    sm.create_secret(Name="keyfleet/alice", SecretString="s3cret")
    sm.create_secret(Name="other/alice", SecretString="nope")
    s3 = emu.client("s3", ACCOUNT)
    s3.create_bucket(Bucket=BUCKET)
    sqs = emu.client("sqs", QUEUE_ACCOUNT)
    results = sqs.create_queue(QueueName="results")["QueueUrl"]
    other = sqs.create_queue(QueueName="other")["QueueUrl"]
    return {"results": results, "other": other}


def role_client(emu: Emulator, service: str, role: str = ROLE, account: str = ACCOUNT) -> Any:
    sts = boto3.client("sts", endpoint_url=emu.endpoint, region_name=REGION, **ADMIN)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="enforce-test"
    )["Credentials"]
    return boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@pytest.fixture
def enforced(emu: Emulator, world: dict[str, Any]) -> Iterator[dict[str, Any]]:
    assert emu.control("DELETE", "/_keyfleet/iam/decisions")[0] == 200
    status, body = emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": True})
    assert status == 200 and body["enabled"] is True
    try:
        yield world
    finally:
        emu.control(
            "POST",
            "/_keyfleet/iam/enforce",
            {"enabled": False, "role_name_patterns": ["keyfleet-agent*", "keyfleet-coordinator*"]},
        )


def denied(call: Any, code: str) -> str:
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403, err
    return err["Error"]["Message"]


PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/enforce-test"


def implicit(action: str, resource: str) -> str:
    return (
        f"User: {PRINCIPAL} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


# -- tests ---------------------------------------------------------------------


def test_enforcement_is_off_by_default(emu: Emulator, world: dict[str, Any]) -> None:
    assert emu.control("GET", "/_keyfleet/iam/enforce") == (
        200,
        {"enabled": False, "role_name_patterns": ["keyfleet-agent*", "keyfleet-coordinator*"]},
    )
    # Not allowed by the role's policy, but nothing is enforced.
    iam = role_client(emu, "iam")
    iam.create_access_key(UserName="alice")
    assert emu.control("GET", "/_keyfleet/iam/decisions") == (200, {"decisions": []})


def test_allowed_calls_work(emu: Emulator, enforced: dict[str, Any]) -> None:
    iam = role_client(emu, "iam")
    assert iam.list_access_keys(UserName="alice")["AccessKeyMetadata"] is not None
    assert any(u["UserName"] == "alice" for u in iam.list_users()["Users"])
    sm = role_client(emu, "secretsmanager")
    assert sm.get_secret_value(SecretId="keyfleet/alice")["SecretString"] == "s3cret"
    s3 = role_client(emu, "s3")
    s3.put_object(Bucket=BUCKET, Key="reports/run-1/summary.json", Body=b"{}")
    assert s3.get_object(Bucket=BUCKET, Key="reports/run-1/summary.json")["Body"].read() == b"{}"
    sqs = role_client(emu, "sqs")
    sqs.send_message(QueueUrl=enforced["results"], MessageBody="done")
    # GetCallerIdentity needs no permission, as in AWS.
    assert role_client(emu, "sts").get_caller_identity()["Arn"] == PRINCIPAL


def test_missing_action_is_denied_naming_action_and_resource(
    emu: Emulator, enforced: dict[str, Any]
) -> None:
    iam = role_client(emu, "iam")
    message = denied(lambda: iam.create_access_key(UserName="alice"), "AccessDenied")
    assert message == implicit("iam:CreateAccessKey", f"arn:aws:iam::{ACCOUNT}:user/alice")
    sm = role_client(emu, "secretsmanager")
    message = denied(
        lambda: sm.put_secret_value(SecretId="keyfleet/alice", SecretString="x"),
        "AccessDeniedException",
    )
    assert message.startswith(f"User: {PRINCIPAL} is not authorized to perform: secretsmanager:PutSecretValue on resource: arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:keyfleet/alice-")
    assert sm.get_secret_value(SecretId="keyfleet/alice")["SecretString"] == "s3cret"  # unchanged


def test_resource_outside_the_scope_is_denied(emu: Emulator, enforced: dict[str, Any]) -> None:
    sm = role_client(emu, "secretsmanager")
    message = denied(lambda: sm.get_secret_value(SecretId="other/alice"), "AccessDeniedException")
    assert "secretsmanager:GetSecretValue on resource: arn:aws:secretsmanager:" in message
    assert f":{ACCOUNT}:secret:other/alice-" in message
    s3 = role_client(emu, "s3")
    message = denied(
        lambda: s3.put_object(Bucket=BUCKET, Key="elsewhere/x", Body=b"x"), "AccessDenied"
    )
    assert message == implicit("s3:PutObject", f"arn:aws:s3:::{BUCKET}/elsewhere/x")
    sqs = role_client(emu, "sqs")
    message = denied(
        lambda: sqs.send_message(QueueUrl=enforced["other"], MessageBody="x"),
        "AccessDenied",  # SQS JSON answers AccessDeniedException with x-amzn-query-error AccessDenied
    )
    assert message == implicit("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{QUEUE_ACCOUNT}:other")


def test_explicit_deny_wins(emu: Emulator, enforced: dict[str, Any]) -> None:
    iam = role_client(emu, "iam")
    message = denied(lambda: iam.list_access_keys(UserName="admin-bob"), "AccessDenied")
    assert message == (
        f"User: {PRINCIPAL} is not authorized to perform: iam:ListAccessKeys on resource: "
        f"arn:aws:iam::{ACCOUNT}:user/admin-bob with an explicit deny in an identity-based policy"
    )


def test_admin_and_other_role_sessions_are_never_checked(
    emu: Emulator, enforced: dict[str, Any]
) -> None:
    admin = boto3.client("iam", endpoint_url=emu.endpoint, region_name=REGION, **ADMIN)
    admin.list_users()
    emu.client("iam", ACCOUNT).list_access_keys(UserName="admin-bob")  # keyfleet-test session
    org_role = role_client(emu, "iam", role="OrganizationAccountAccessRole")
    org_role.list_access_keys(UserName="admin-bob")
    org_role.create_access_key(UserName="alice")
    assert emu.control("GET", "/_keyfleet/iam/decisions") == (200, {"decisions": []})


def test_decisions_list_allowed_and_denied_calls(emu: Emulator, enforced: dict[str, Any]) -> None:
    iam = role_client(emu, "iam")
    iam.list_access_keys(UserName="alice")
    denied(lambda: iam.delete_user(UserName="alice"), "AccessDenied")
    status, body = emu.control("GET", "/_keyfleet/iam/decisions")
    assert status == 200
    assert [
        (d["decision"], d["role"], d["action"], d["resource"], d["reason"]) for d in body["decisions"]
    ] == [
        ("ALLOWED", ROLE, "iam:ListAccessKeys", f"arn:aws:iam::{ACCOUNT}:user/alice", "allow"),
        ("DENIED", ROLE, "iam:DeleteUser", f"arn:aws:iam::{ACCOUNT}:user/alice", "implicit-deny"),
    ]
    assert body["decisions"][0]["account"] == ACCOUNT
    assert body["decisions"][0]["session"] == "enforce-test"
    assert emu.control("DELETE", "/_keyfleet/iam/decisions") == (200, {"ok": True, "cleared": 2})
    assert emu.control("GET", "/_keyfleet/iam/decisions") == (200, {"decisions": []})


def test_role_name_patterns_choose_the_checked_roles(emu: Emulator, enforced: dict[str, Any]) -> None:
    status, body = emu.control(
        "POST", "/_keyfleet/iam/enforce", {"role_name_patterns": ["keyfleet-coordinator*"]}
    )
    assert (status, body["enabled"], body["role_name_patterns"]) == (
        200,
        True,
        ["keyfleet-coordinator*"],
    )
    role_client(emu, "iam").get_account_summary()  # not in the policy, not checked any more
    assert emu.control("GET", "/_keyfleet/iam/decisions") == (200, {"decisions": []})
    assert emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": "yes"})[0] == 400
    assert emu.control("POST", "/_keyfleet/iam/enforce", {"role_name_patterns": "x"})[0] == 400
    assert emu.control("DELETE", "/_keyfleet/iam/enforce")[0] == 405

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

from helpers import Emulator, read_port, start_harness

REGION = "us-east-1"
ACCOUNT = "246813579024"
QUEUE_ACCOUNT = "135792468013"
ROLE = "keyfleet-agent-enforce-test"
BUCKET = "kf-enforce-test-bucket"
ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEFAULT_PATTERNS = ["keyfleet-agent*", "keyfleet-coordinator*", "keyfleet-org-reader*", "keyfleet-api*"]

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
    # Across accounts the queue's own policy must allow the sender too.
    results = sqs.create_queue(
        QueueName="results",
        Attributes={
            "Policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"},
                            "Action": "sqs:SendMessage",
                            "Resource": f"arn:aws:sqs:{REGION}:{QUEUE_ACCOUNT}:results",
                        }
                    ],
                }
            )
        },
    )["QueueUrl"]
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
            {"enabled": False, "role_name_patterns": DEFAULT_PATTERNS},
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
        {"enabled": False, "role_name_patterns": DEFAULT_PATTERNS},
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


def test_org_reader_role_is_checked_by_default(emu: Emulator, enforced: dict[str, Any]) -> None:
    """keyfleet-org-reader* is a deployed role too: its sessions are checked (this one has no policy)."""
    iam = role_client(emu, "iam", role="keyfleet-org-reader-enforce-test")
    message = denied(lambda: iam.list_users(), "AccessDenied")
    principal = "assumed-role/keyfleet-org-reader-enforce-test/enforce-test"
    assert f"{principal} is not authorized to perform: iam:ListUsers" in message


def test_api_role_is_checked_by_default(emu: Emulator, enforced: dict[str, Any]) -> None:
    """keyfleet-api* (the security team's API) is a deployed role too: its sessions are checked."""
    s3 = role_client(emu, "s3", role="keyfleet-api-enforce-test")
    message = denied(lambda: s3.list_buckets(), "AccessDenied")
    assert "assumed-role/keyfleet-api-enforce-test/enforce-test is not authorized to perform: s3:ListAllMyBuckets" \
        in message


def test_lambda_invoke_is_authorized_as_invoke_function_on_the_functions_arn(
    emu: Emulator, enforced: dict[str, Any]
) -> None:
    """AWS authorizes Invoke as lambda:InvokeFunction on the function's ARN (the operation's
    name is not the action's): a role granted one function may invoke it and no other."""
    role = "keyfleet-api-invoke-test"
    iam = emu.client("iam", ACCOUNT)
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    granted = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:granted-fn"
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": granted}],
    }))
    fn = role_client(emu, "lambda", role=role)
    with pytest.raises(ClientError) as info:
        fn.invoke(FunctionName="granted-fn", Payload=b"{}")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException", info.value.response
    message = denied(lambda: fn.invoke(FunctionName="other-fn", Payload=b"{}"), "AccessDeniedException")
    assert "not authorized to perform: lambda:InvokeFunction on resource: " \
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:other-fn" in message


def test_create_secret_with_tags_also_needs_tag_resource(emu: Emulator, enforced: dict[str, Any]) -> None:
    """AWS authorizes CreateSecret with Tags as CreateSecret and TagResource."""
    role = "keyfleet-agent-tags-test"
    secrets = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:keyfleet/*"
    iam = emu.client("iam", ACCOUNT)
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))

    def grant(*actions: str) -> None:
        iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": secrets}],
        }))

    grant("secretsmanager:CreateSecret")
    sm = role_client(emu, "secretsmanager", role=role)
    sm.create_secret(Name="keyfleet/untagged", SecretString="x")
    tags = [{"Key": "a", "Value": "b"}]
    message = denied(lambda: sm.create_secret(Name="keyfleet/tagged", SecretString="x", Tags=tags),
                     "AccessDeniedException")
    assert "not authorized to perform: secretsmanager:TagResource on resource: " \
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:keyfleet/tagged-??????" in message
    grant("secretsmanager:CreateSecret", "secretsmanager:TagResource")
    sm.create_secret(Name="keyfleet/tagged", SecretString="x", Tags=tags)


ORG_ACCOUNT = "975318642000"
ORG_READER = "keyfleet-org-reader-tree-test"


def test_organizations_calls_are_checked_against_the_root_ou_or_account_they_name(
    emu: Emulator, enforced: dict[str, Any]
) -> None:
    """ListAccountsForParent and the like name a root, an OU or an account
    (arn:aws:organizations::<management>:root/<org>/<id>, ...), as AWS's
    service authorization reference defines them; ListAccounts takes none."""
    org = emu.client("organizations", ORG_ACCOUNT)
    org_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="tree-test")["OrganizationalUnit"]["Id"]
    prefix = f"arn:aws:organizations::{ORG_ACCOUNT}"
    emu.client("iam", ORG_ACCOUNT).create_role(
        RoleName=ORG_READER, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )
    emu.client("iam", ORG_ACCOUNT).put_role_policy(
        RoleName=ORG_READER,
        PolicyName="read",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "organizations:ListAccounts", "Resource": "*"},
            {"Effect": "Allow", "Action": "organizations:ListAccountsForParent",
             "Resource": f"{prefix}:root/{org_id}/*"},
        ]}),
    )
    reader = role_client(emu, "organizations", role=ORG_READER, account=ORG_ACCOUNT)
    reader.list_accounts()
    reader.list_accounts_for_parent(ParentId=root)
    principal = f"arn:aws:sts::{ORG_ACCOUNT}:assumed-role/{ORG_READER}/enforce-test"
    message = denied(lambda: reader.list_accounts_for_parent(ParentId=ou), "AccessDeniedException")
    assert message == (
        f"User: {principal} is not authorized to perform: organizations:ListAccountsForParent "
        f"on resource: {prefix}:ou/{org_id}/{ou} because no identity-based policy allows the "
        "organizations:ListAccountsForParent action"
    )
    message = denied(lambda: reader.describe_account(AccountId=ORG_ACCOUNT), "AccessDeniedException")
    assert f"on resource: {prefix}:account/{org_id}/{ORG_ACCOUNT} " in message


# -- managed policies, other services --------------------------------------------

COORD = "keyfleet-coordinator-enforce-test"
COORD_PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/{COORD}/enforce-test"


def test_attached_managed_policy_sns_kms_ses(emu: Emulator, enforced: dict[str, Any]) -> None:
    iam = emu.client("iam", ACCOUNT)
    sns = emu.client("sns", ACCOUNT)
    alerts = sns.create_topic(Name="alerts")["TopicArn"]
    other_topic = sns.create_topic(Name="other-topic")["TopicArn"]
    kms = emu.client("kms", ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/keyfleet-coordinator", TargetKeyId=key["KeyId"])
    other_key = kms.create_key()["KeyMetadata"]
    sesv2 = emu.client("sesv2", ACCOUNT)
    sesv2.create_email_identity(EmailIdentity="example.com")
    sesv2.create_email_identity(EmailIdentity="other.example")
    identity = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/example.com"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sns:Publish", "Resource": alerts},
            {
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": key["Arn"],
            },
            {"Effect": "Allow", "Action": "ses:SendEmail", "Resource": identity},
            # Conditions are not evaluated: this Allow counts as if it held.
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{BUCKET}",
                "Condition": {"StringLike": {"s3:prefix": ["reports/*"]}},
            },
            # NotAction: everything but sns/kms/ses/s3 is denied.
            {"Effect": "Deny", "NotAction": ["sns:*", "kms:*", "ses:*", "s3:*"], "Resource": "*"},
        ],
    }
    arn = iam.create_policy(PolicyName="coordinator", PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
    iam.create_role(RoleName=COORD, AssumeRolePolicyDocument="{}")
    iam.attach_role_policy(RoleName=COORD, PolicyArn=arn)

    role_sns = role_client(emu, "sns", role=COORD)
    role_sns.publish(TopicArn=alerts, Message="hi")
    message = denied(lambda: role_sns.publish(TopicArn=other_topic, Message="x"), "AuthorizationError")
    assert message == (
        f"User: {COORD_PRINCIPAL} is not authorized to perform: sns:Publish on resource: "
        f"{other_topic} because no identity-based policy allows the sns:Publish action"
    )

    role_kms = role_client(emu, "kms", role=COORD)
    role_kms.generate_data_key(KeyId="alias/keyfleet-coordinator", KeySpec="AES_256")
    message = denied(
        lambda: role_kms.generate_data_key(KeyId=other_key["KeyId"], KeySpec="AES_256"),
        "AccessDeniedException",
    )
    assert f"kms:GenerateDataKey on resource: {other_key['Arn']} " in message

    role_ses = role_client(emu, "sesv2", role=COORD)
    content = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}}
    role_ses.send_email(
        FromEmailAddress="keyfleet@example.com",
        Destination={"ToAddresses": ["owner@example.com"]},
        Content=content,
    )
    message = denied(
        lambda: role_ses.send_email(
            FromEmailAddress="keyfleet@other.example",
            Destination={"ToAddresses": ["owner@example.com"]},
            Content=content,
        ),
        "AccessDeniedException",
    )
    assert f"ses:SendEmail on resource: arn:aws:ses:{REGION}:{ACCOUNT}:identity/other.example " in message

    role_client(emu, "s3", role=COORD).list_objects_v2(Bucket=BUCKET, Prefix="reports/")
    role_iam = role_client(emu, "iam", role=COORD)
    message = denied(lambda: role_iam.list_users(), "AccessDenied")
    assert message.endswith("on resource: * with an explicit deny in an identity-based policy")
    emu.control("DELETE", "/_keyfleet/ses/outbox")


# -- the real agent role -------------------------------------------------------------

AGENT_ACCOUNT = "975318642086"


def _cfn_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"!" + suffix: value}

    Loader.add_multi_constructor("!", tag)
    return Loader


def _resolve(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_resolve(v, subs) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key == "!Sub":
                text = inner
                for name, repl in subs.items():
                    text = text.replace("${" + name + "}", repl)
                return text
            if key in ("!Ref", "!GetAtt"):
                return subs[inner if isinstance(inner, str) else ".".join(inner)]
        return {k: _resolve(v, subs) for k, v in value.items()}
    return value


def test_the_agent_roles_policy_allows_the_agents_calls(emu: Emulator, enforced: dict[str, Any]) -> None:
    import yaml

    here = os.path.dirname(os.path.abspath(__file__))
    template = os.path.join(here, "..", "..", "terraform", "templates", "agent.yaml")
    with open(template, encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=_cfn_loader())  # noqa: S506 - SafeLoader subclass
    role = doc["Resources"]["AgentRole"]["Properties"]
    admin_sqs = emu.client("sqs", AGENT_ACCOUNT)
    jobs = admin_sqs.create_queue(QueueName="keyfleet-jobs")["QueueUrl"]
    # The results queue is in another account: its policy must admit the agent.
    results_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "sqs:SendMessage",
                "Resource": f"arn:aws:sqs:{REGION}:{QUEUE_ACCOUNT}:keyfleet-results",
                "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/keyfleet-agent*"}},
            }
        ],
    }
    results = emu.client("sqs", QUEUE_ACCOUNT).create_queue(
        QueueName="keyfleet-results", Attributes={"Policy": json.dumps(results_policy)}
    )["QueueUrl"]
    subs = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": AGENT_ACCOUNT,
        "JobsQueue.Arn": f"arn:aws:sqs:{REGION}:{AGENT_ACCOUNT}:keyfleet-jobs",
        "ResultsQueueArn": f"arn:aws:sqs:{REGION}:{QUEUE_ACCOUNT}:keyfleet-results",
        "RecordsTable.Arn": f"arn:aws:dynamodb:{REGION}:{AGENT_ACCOUNT}:table/keyfleet-records",
    }
    iam = emu.client("iam", AGENT_ACCOUNT)
    iam.create_role(RoleName=role["RoleName"], AssumeRolePolicyDocument="{}")
    for policy in role["Policies"]:
        iam.put_role_policy(
            RoleName=role["RoleName"],
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(_resolve(policy["PolicyDocument"], subs)),
        )
    iam.create_user(UserName="carol", Path="/people/")

    a_iam = role_client(emu, "iam", role=role["RoleName"], account=AGENT_ACCOUNT)
    a_iam.generate_credential_report()
    a_iam.get_credential_report()
    a_iam.get_account_authorization_details()
    a_iam.list_users()
    a_iam.list_account_aliases()
    a_iam.list_user_tags(UserName="carol")
    a_iam.list_access_keys(UserName="carol")
    new = a_iam.create_access_key(UserName="carol")["AccessKey"]["AccessKeyId"]
    a_iam.get_access_key_last_used(AccessKeyId=new)
    a_iam.update_access_key(UserName="carol", AccessKeyId=new, Status="Inactive")
    a_iam.delete_access_key(UserName="carol", AccessKeyId=new)
    a_sm = role_client(emu, "secretsmanager", role=role["RoleName"], account=AGENT_ACCOUNT)
    secret = a_sm.create_secret(Name="keyfleet/carol", SecretString="v1")["ARN"]
    a_sm.put_secret_value(SecretId=secret, SecretString="v2")
    a_sm.get_secret_value(SecretId="keyfleet/carol")
    a_sm.tag_resource(SecretId=secret, Tags=[{"Key": "k", "Value": "v"}])
    a_sm.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": []}))
    a_sm.get_resource_policy(SecretId=secret)
    a_sm.describe_secret(SecretId=secret)
    # The upgrade from an earlier release (agent/src/record/migrate.rs,
    # agent/src/lease.rs): its records listed and deleted, its lease read
    # and deleted.
    a_sm.list_secrets(Filters=[{"Key": "name", "Values": ["keyfleet/"]}])
    # The handover check (agent/src/handover.rs): an old key's events.
    a_ct = role_client(emu, "cloudtrail", role=role["RoleName"], account=AGENT_ACCOUNT)
    a_ct.lookup_events(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": new}], MaxResults=50
    )
    a_sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
    emu.client("secretsmanager", AGENT_ACCOUNT).create_secret(Name="keyfleet-lease", SecretString="held")
    a_sm.get_secret_value(SecretId="keyfleet-lease")
    a_sm.delete_secret(SecretId="keyfleet-lease", ForceDeleteWithoutRecovery=True)
    # The records and the lease: items of the account's table
    # (agent/src/table.rs), its policy read first.
    admin_ddb = emu.client("dynamodb", AGENT_ACCOUNT)
    table = admin_ddb.create_table(
        TableName="keyfleet-records",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )["TableDescription"]["TableArn"]
    a_ddb = role_client(emu, "dynamodb", role=role["RoleName"], account=AGENT_ACCOUNT)
    try:
        a_ddb.get_resource_policy(ResourceArn=table)
    except a_ddb.exceptions.PolicyNotFoundException:
        pass
    a_ddb.put_item(
        TableName="keyfleet-records",
        Item={"pk": {"S": "lease"}, "body": {"S": "{}"}, "v": {"N": "1"}},
        ConditionExpression="attribute_not_exists(pk)",
    )
    a_ddb.get_item(TableName="keyfleet-records", Key={"pk": {"S": "lease"}}, ConsistentRead=True)
    # A run's cleared intents, together (agent/src/table.rs, put_many): each
    # put of the transaction is authorized as its PutItem.
    a_ddb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": "keyfleet-records",
                    "Item": {"pk": {"S": f"user/u{i}"}, "body": {"S": "{}"}, "v": {"N": "1"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for i in range(2)
        ]
    )
    a_sqs = role_client(emu, "sqs", role=role["RoleName"], account=AGENT_ACCOUNT)
    admin_sqs.send_message(QueueUrl=jobs, MessageBody="job")
    a_sqs.get_queue_attributes(QueueUrl=jobs, AttributeNames=["All"])
    msg = a_sqs.receive_message(QueueUrl=jobs)["Messages"][0]
    a_sqs.send_message(QueueUrl=results, MessageBody="result")
    a_sqs.delete_message(QueueUrl=jobs, ReceiptHandle=msg["ReceiptHandle"])

    decisions = emu.control("GET", "/_keyfleet/iam/decisions")[1]["decisions"]
    assert [d for d in decisions if d["decision"] != "ALLOWED"] == []
    used = {d["action"] for d in decisions}
    granted = {
        action
        for policy in role["Policies"]
        for st in policy["PolicyDocument"]["Statement"]
        for action in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
        if not action.startswith("logs:")  # written by Lambda, not through the emulator
    }
    assert used == granted
    resources = {d["action"]: d["resource"] for d in decisions}
    assert resources["iam:GetAccessKeyLastUsed"] == f"arn:aws:iam::{AGENT_ACCOUNT}:user/people/carol"
    assert resources["iam:ListUsers"] == "*"
    assert resources["sqs:SendMessage"] == subs["ResultsQueueArn"]
    assert resources["dynamodb:PutItem"] == subs["RecordsTable.Arn"]

    # And nothing beyond it: deleting a user or reading another secret is refused.
    denied(lambda: a_iam.delete_user(UserName="carol"), "AccessDenied")
    emu.client("secretsmanager", AGENT_ACCOUNT).create_secret(Name="other", SecretString="x")
    denied(lambda: a_sm.get_secret_value(SecretId="other"), "AccessDeniedException")
    with pytest.raises(ClientError) as refused:
        a_ddb.delete_table(TableName="keyfleet-records")
    # DynamoDB answers a refusal with HTTP 400 (see ext_iam_enforce._denied).
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


# -- the engine deciding: resource, trust and organization policies ------------------
#
# Each test below builds its own accounts and roles; the roles are named so
# that enforcement checks them (the default patterns, or "intruder-*" added).

ENGINE_PATTERNS = DEFAULT_PATTERNS + ["intruder-*"]
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
TRUST_ANY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
)


def make_role(emu: Emulator, account: str, name: str, policy: dict[str, Any] | None, trust: str = TRUST_ANY) -> str:
    iam = emu.client("iam", account)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return arn


def allow(actions: Any, resource: Any = "*", condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


@pytest.fixture
def engine(emu: Emulator, world: dict[str, Any]) -> Iterator[Emulator]:
    emu.control("DELETE", "/_keyfleet/iam/decisions")
    emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": True, "role_name_patterns": ENGINE_PATTERNS})
    try:
        yield emu
    finally:
        emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": False, "role_name_patterns": DEFAULT_PATTERNS})


def last_decision(emu: Emulator, action: str) -> dict[str, Any]:
    decisions = emu.control("GET", "/_keyfleet/iam/decisions")[1]["decisions"]
    return [d for d in decisions if d["action"] == action][-1]


def test_queue_policy_admits_only_the_named_role_across_accounts_and_denies_the_owner(
    engine: Emulator,
) -> None:
    coordinator_account, member = "300000000001", "300000000002"
    coordinator = make_role(engine, coordinator_account, "keyfleet-coordinator", allow("sqs:SendMessage"))
    queue_arn = f"arn:aws:sqs:{REGION}:{member}:keyfleet-jobs"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowCoordinatorSend",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{coordinator_account}:root"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:PrincipalArn": coordinator}},
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": coordinator}},
            },
        ],
    }
    url = engine.client("sqs", member).create_queue(
        QueueName="keyfleet-jobs", Attributes={"Policy": json.dumps(policy)}
    )["QueueUrl"]
    role_client(engine, "sqs", "keyfleet-coordinator", coordinator_account).send_message(QueueUrl=url, MessageBody="job")
    # Across accounts both sides allowed: the decision names the statements
    # that matched, conditions included (used-versus-granted reads them).
    assert last_decision(engine, "sqs:SendMessage")["allowed_by"] == ["identity:#1", "resource:AllowCoordinatorSend"]
    # An administrator of the member account itself: its own Allow * loses to the queue's Deny.
    make_role(engine, member, "intruder-admin", ALLOW_ALL)
    message = denied(
        lambda: role_client(engine, "sqs", "intruder-admin", member).send_message(QueueUrl=url, MessageBody="x"),
        "AccessDenied",
    )
    assert message.endswith("with an explicit deny in a resource-based policy"), message
    assert last_decision(engine, "sqs:SendMessage")["decided_by"] == "resource"
    # Another role of the coordinator's account: its own grant is not enough across accounts.
    make_role(engine, coordinator_account, "intruder-other", allow("sqs:SendMessage"))
    denied(
        lambda: role_client(engine, "sqs", "intruder-other", coordinator_account).send_message(QueueUrl=url, MessageBody="x"),
        "AccessDenied",
    )


def test_in_one_account_a_resource_policy_alone_may_allow(engine: Emulator) -> None:
    account = "300000000003"
    role = make_role(engine, account, "keyfleet-agent", None)  # no identity policy at all
    sm = engine.client("secretsmanager", account)
    arn = sm.create_secret(Name="shared", SecretString="v")["ARN"]
    sm.put_resource_policy(
        SecretId=arn,
        ResourcePolicy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
                ],
            }
        ),
    )
    client = role_client(engine, "secretsmanager", "keyfleet-agent", account)
    assert client.get_secret_value(SecretId=arn)["SecretString"] == "v"
    message = denied(lambda: client.describe_secret(SecretId=arn), "AccessDeniedException")
    assert message.endswith("because no identity-based policy allows the secretsmanager:DescribeSecret action")


def test_trust_policy_decides_assume_role_with_its_external_id(engine: Emulator) -> None:
    account = "300000000004"
    coordinator = make_role(engine, account, "keyfleet-coordinator", allow("sts:AssumeRole"))
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"ArnEquals": {"aws:PrincipalArn": coordinator}, "StringEquals": {"sts:ExternalId": "kf-ext-1"}},
            }
        ],
    }
    reader = make_role(engine, account, "keyfleet-org-reader", None, json.dumps(trust))
    sts = role_client(engine, "sts", "keyfleet-coordinator", account)
    message = denied(lambda: sts.assume_role(RoleArn=reader, RoleSessionName="reader"), "AccessDenied")
    assert f"sts:AssumeRole on resource: {reader}" in message
    assert last_decision(engine, "sts:AssumeRole")["decided_by"] == "trust"
    denied(lambda: sts.assume_role(RoleArn=reader, RoleSessionName="reader", ExternalId="wrong"), "AccessDenied")
    assert sts.assume_role(RoleArn=reader, RoleSessionName="reader", ExternalId="kf-ext-1")["Credentials"]["AccessKeyId"]
    assert last_decision(engine, "sts:AssumeRole")["context"]["sts:ExternalId"] == "kf-ext-1"
    # A role that does not exist cannot be assumed (moto would hand out credentials).
    denied(
        lambda: sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/keyfleet-missing", RoleSessionName="reader"),
        "AccessDenied",
    )


def _organization(emu: Emulator, management: str) -> tuple[Any, str, list[str]]:
    """An organization with two member accounts; the first moved into an OU."""
    org = emu.client("organizations", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    members = [
        org.create_account(AccountName=f"m{i}", Email=f"m{i}-{management}@example.com")["CreateAccountStatus"]["AccountId"]
        for i in (1, 2)
    ]
    ou = org.create_organizational_unit(ParentId=root, Name="locked")["OrganizationalUnit"]["Id"]
    org.move_account(AccountId=members[0], SourceParentId=root, DestinationParentId=ou)
    return org, root, [ou, *members]


def test_an_scp_on_one_ou_denies_there_and_nowhere_else(engine: Emulator) -> None:
    org, root, (ou, locked, free) = _organization(engine, "300000000010")
    for account in (locked, free):
        make_role(engine, account, "keyfleet-agent", allow(["iam:CreateAccessKey", "iam:DeleteAccessKey"]))
        engine.client("iam", account).create_user(UserName="dora")
    # Before SCPs are enabled, a policy attached to nothing decides nothing.
    org.enable_policy_type(RootId=root, PolicyType="SERVICE_CONTROL_POLICY")
    scp = org.create_policy(
        Name="no-key-deletion",
        Description="",
        Type="SERVICE_CONTROL_POLICY",
        Content=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iam:DeleteAccessKey", "Resource": "*"}]}),
    )["Policy"]["PolicySummary"]["Id"]
    org.attach_policy(PolicyId=scp, TargetId=ou)
    for account in (locked, free):
        iam = role_client(engine, "iam", "keyfleet-agent", account)
        key = iam.create_access_key(UserName="dora")["AccessKey"]["AccessKeyId"]
        if account == locked:
            message = denied(lambda: iam.delete_access_key(UserName="dora", AccessKeyId=key), "AccessDenied")
            assert message.endswith("with an explicit deny in a service control policy"), message
            assert last_decision(engine, "iam:DeleteAccessKey")["decided_by"] == "scp"
        else:
            iam.delete_access_key(UserName="dora", AccessKeyId=key)
    context = last_decision(engine, "iam:DeleteAccessKey")["context"]
    assert context["aws:PrincipalOrgID"].startswith("o-") and context["aws:ResourceOrgID"] == context["aws:PrincipalOrgID"]


def test_an_rcp_denies_access_to_the_resources_of_an_account(engine: Emulator) -> None:
    org, root, (ou, locked, free) = _organization(engine, "300000000020")
    org.enable_policy_type(RootId=root, PolicyType="RESOURCE_CONTROL_POLICY")
    rcp = org.create_policy(
        Name="no-secret-reads",
        Description="",
        Type="RESOURCE_CONTROL_POLICY",
        Content=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}
        ),
    )["Policy"]["PolicySummary"]["Id"]
    org.attach_policy(PolicyId=rcp, TargetId=locked)
    for account in (locked, free):
        make_role(engine, account, "keyfleet-agent", allow("secretsmanager:GetSecretValue"))
        engine.client("secretsmanager", account).create_secret(Name="keyfleet/erin", SecretString="v")
    client = role_client(engine, "secretsmanager", "keyfleet-agent", locked)
    message = denied(lambda: client.get_secret_value(SecretId="keyfleet/erin"), "AccessDeniedException")
    assert message.endswith("with an explicit deny in a resource control policy"), message
    assert role_client(engine, "secretsmanager", "keyfleet-agent", free).get_secret_value(SecretId="keyfleet/erin")["SecretString"] == "v"


# The request context the harness builds, checked through the engine: each
# row is a request, the condition its grant carries, and whether it holds.
CONDITION_CASES = [
    ("ses:FromAddress holds", "ses", {"StringEquals": {"ses:FromAddress": "keyfleet@example.com"}}, "keyfleet@example.com", True),
    ("ses:FromAddress another sender", "ses", {"StringEquals": {"ses:FromAddress": "keyfleet@example.com"}}, "other@example.com", False),
    ("s3:prefix inside", "s3", {"StringLike": {"s3:prefix": ["runs/*"]}}, "runs/r1/", True),
    ("s3:prefix outside", "s3", {"StringLike": {"s3:prefix": ["runs/*"]}}, "secrets/", False),
    ("iam:ResourceTag holds", "iam", {"StringEquals": {"iam:ResourceTag/team": "blue"}}, "blue-user", True),
    ("iam:ResourceTag other", "iam", {"StringEquals": {"iam:ResourceTag/team": "blue"}}, "red-user", False),
    ("aws:SecureTransport", "s3-tls", {"Bool": {"aws:SecureTransport": "true"}}, "runs/", True),
]


@pytest.mark.parametrize("name,kind,condition,value,holds", CONDITION_CASES, ids=[c[0] for c in CONDITION_CASES])
def test_conditions_see_the_request_context(engine: Emulator, name: str, kind: str, condition: dict[str, Any], value: str, holds: bool) -> None:
    account = "300000000030"
    role = "keyfleet-agent-" + str(abs(hash(name)) % 10**8)
    actions = {"ses": "ses:SendEmail", "s3": "s3:ListBucket", "s3-tls": "s3:ListBucket", "iam": "iam:ListAccessKeys"}[kind]
    make_role(engine, account, role, allow(actions, "*", condition))
    if kind == "ses":
        engine.client("sesv2", account).create_email_identity(EmailIdentity="example.com")
        call = lambda: role_client(engine, "sesv2", role, account).send_email(  # noqa: E731
            FromEmailAddress=value,
            Destination={"ToAddresses": ["x@example.com"]},
            Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
        )
        code = "AccessDeniedException"
    elif kind in ("s3", "s3-tls"):
        try:
            engine.client("s3", account).create_bucket(Bucket="kf-conditions")
        except ClientError:
            pass
        call = lambda: role_client(engine, "s3", role, account).list_objects_v2(Bucket="kf-conditions", Prefix=value)  # noqa: E731
        code = "AccessDenied"
    else:
        iam = engine.client("iam", account)
        try:
            iam.create_user(UserName="blue-user", Tags=[{"Key": "team", "Value": "blue"}])
            iam.create_user(UserName="red-user", Tags=[{"Key": "team", "Value": "red"}])
        except ClientError:
            pass
        call = lambda: role_client(engine, "iam", role, account).list_access_keys(UserName=value)  # noqa: E731
        code = "AccessDenied"
    if holds:
        call()
    else:
        denied(call, code)
    context = last_decision(engine, actions)["context"]
    key = next(iter(next(iter(condition.values()))))
    assert key in context, (key, context)


def test_implicit_kms_calls_need_the_key_and_its_policy(engine: Emulator) -> None:
    account = "300000000040"
    kms = engine.client("kms", account)
    delegating = kms.create_key()["KeyMetadata"]["Arn"]  # moto's default policy delegates to the account
    closed = kms.create_key(
        Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:role/nobody"}, "Action": "kms:*", "Resource": "*"}]}
        ),
        BypassPolicyLockoutSafetyCheck=True,
    )["KeyMetadata"]["Arn"]
    sm = engine.client("secretsmanager", account)
    open_secret = sm.create_secret(Name="keyfleet/kms-open", SecretString="v", KmsKeyId=delegating)["ARN"]
    closed_secret = sm.create_secret(Name="keyfleet/kms-closed", SecretString="v", KmsKeyId=closed)["ARN"]
    make_role(engine, account, "keyfleet-agent", allow("secretsmanager:GetSecretValue"))
    client = role_client(engine, "secretsmanager", "keyfleet-agent", account)
    message = denied(lambda: client.get_secret_value(SecretId=open_secret), "AccessDeniedException")
    assert f"kms:Decrypt on resource: {delegating}" in message
    decision = last_decision(engine, "kms:Decrypt")
    assert decision["context"]["kms:ViaService"] == f"secretsmanager.{REGION}.amazonaws.com"
    assert decision["context"]["kms:EncryptionContext:SecretARN"] == open_secret
    # kms:Decrypt granted only for this secret's encryption context.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            allow("secretsmanager:GetSecretValue")["Statement"][0],
            allow("kms:Decrypt", "*", {"StringEquals": {"kms:EncryptionContext:SecretARN": open_secret}})["Statement"][0],
        ],
    }
    engine.client("iam", account).put_role_policy(RoleName="keyfleet-agent", PolicyName="p", PolicyDocument=json.dumps(policy))
    assert client.get_secret_value(SecretId=open_secret)["SecretString"] == "v"
    # The key's own policy does not delegate to the account: no identity grant helps.
    message = denied(lambda: client.get_secret_value(SecretId=closed_secret), "AccessDeniedException")
    assert f"kms:Decrypt on resource: {closed}" in message


def test_engine_reads_kms_encryption_context() -> None:
    """The one fix iam_engine/patch.py applies to the engine: a condition on
    kms:EncryptionContext:<key> sees the request's value."""
    import iam_engine

    account = "300000000050"
    def simulate(value: str) -> str:
        return iam_engine.simulate(
            {
                "request": {
                    "principal": f"arn:aws:sts::{account}:assumed-role/r/s",
                    "action": "kms:Decrypt",
                    "resource": {"resource": f"arn:aws:kms:{REGION}:{account}:key/k", "accountId": account},
                    "contextVariables": {"kms:EncryptionContext:aws:s3:arn": value},
                },
                "identityPolicies": [
                    {"name": "p", "policy": allow("kms:Decrypt", "*", {"StringEquals": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b"}})}
                ],
                "serviceControlPolicies": [],
                "resourceControlPolicies": [],
                "resourcePolicy": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"}],
                },
            }
        )["result"]

    assert (simulate("arn:aws:s3:::b"), simulate("arn:aws:s3:::other")) == ("Allowed", "ImplicitlyDenied")


def test_s3_answers_403_for_a_missing_object_without_list_bucket(engine: Emulator) -> None:
    account = "300000000060"
    engine.client("s3", account).create_bucket(Bucket="kf-missing-objects")
    make_role(engine, account, "keyfleet-api", allow("s3:GetObject", "arn:aws:s3:::kf-missing-objects/*"))
    make_role(engine, account, "keyfleet-api-lister", allow(["s3:GetObject", "s3:ListBucket"], ["arn:aws:s3:::kf-missing-objects", "arn:aws:s3:::kf-missing-objects/*"]))
    for role, status in (("keyfleet-api", 403), ("keyfleet-api-lister", 404)):
        s3 = role_client(engine, "s3", role, account)
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket="kf-missing-objects", Key="runs/none/report.json")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status, (role, info.value.response)
    # The ListBucket question is AWS's own, logged as a probe, not as a call
    # the role made (used-versus-granted leaves it out).
    probes = [d for d in engine.control("GET", "/_keyfleet/iam/decisions")[1]["decisions"] if d["action"] == "s3:ListBucket"]
    assert [(d["role"], d["decision"], d["probe"]) for d in probes] == [
        ("keyfleet-api", "DENIED", True), ("keyfleet-api-lister", "ALLOWED", True)]


# -- DynamoDB: the table's resource policy ------------------------------------------------

DDB_KEYS = {
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
}


def ddb_table(emu: Emulator, account: str, name: str, statements: list[dict[str, Any]] | None) -> str:
    """A table created (and its policy put) with the test's own credentials."""
    ddb = emu.client("dynamodb", account)
    arn = ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **DDB_KEYS)["TableDescription"]["TableArn"]
    if statements is not None:
        ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    ddb.put_item(TableName=name, Item={"pk": {"S": "user#alice"}, "sk": {"S": "record"}, "state": {"S": "active"}})
    return arn


def ddb_denied(call: Any) -> str:
    """DynamoDB refuses with AccessDeniedException, HTTP 400 (as AWS: DynamoDB
    answers every client error 400)."""
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    assert err["Error"]["Code"] == "AccessDeniedException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    return err["Error"]["Message"]


ALICE = {"pk": {"S": "user#alice"}, "sk": {"S": "record"}}


def test_dynamodb_explicit_deny_in_the_table_policy_wins_over_the_identity_allow(engine: Emulator) -> None:
    account = "300000000070"
    arn = f"arn:aws:dynamodb:{REGION}:{account}:table/keyfleet-state"
    role = make_role(engine, account, "keyfleet-agent", allow("dynamodb:*", arn))
    ddb_table(
        engine,
        account,
        "keyfleet-state",
        [
            {
                "Sid": "NoAgentDeletes",
                "Effect": "Deny",
                "Principal": {"AWS": role},
                "Action": ["dynamodb:DeleteItem", "dynamodb:DeleteTable"],
                "Resource": arn,
            }
        ],
    )
    ddb = role_client(engine, "dynamodb", "keyfleet-agent", account)
    assert ddb.get_item(TableName="keyfleet-state", Key=ALICE)["Item"]["state"] == {"S": "active"}
    decision = last_decision(engine, "dynamodb:GetItem")
    assert (decision["resource"], decision["allowed_by"]) == (arn, ["identity:#1"])
    assert decision["context"]["dynamodb:LeadingKeys"] == ["user#alice"]
    message = ddb_denied(lambda: ddb.delete_item(TableName="keyfleet-state", Key=ALICE))
    assert message == (
        f"User: arn:aws:sts::{account}:assumed-role/keyfleet-agent/enforce-test is not authorized to perform: "
        f"dynamodb:DeleteItem on resource: {arn} with an explicit deny in a resource-based policy"
    )
    assert last_decision(engine, "dynamodb:DeleteItem")["decided_by"] == "resource"
    ddb_denied(lambda: ddb.delete_table(TableName="keyfleet-state"))
    assert engine.client("dynamodb", account).get_item(TableName="keyfleet-state", Key=ALICE)["Item"]
    # In a transaction each item is its own action, on its table, with
    # dynamodb:EnclosingOperation; the denied delete refuses the whole request.
    message = ddb_denied(
        lambda: ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "keyfleet-state", "Item": {"pk": {"S": "user#bob"}, "sk": {"S": "record"}}}},
                {"Delete": {"TableName": arn, "Key": ALICE}},
            ]
        )
    )
    assert "dynamodb:DeleteItem" in message
    put = last_decision(engine, "dynamodb:PutItem")
    assert (put["decision"], put["context"]["dynamodb:EnclosingOperation"]) == ("ALLOWED", "TransactWriteItems")
    assert "Item" not in engine.client("dynamodb", account).get_item(
        TableName="keyfleet-state", Key={"pk": {"S": "user#bob"}, "sk": {"S": "record"}}
    )
    ddb.batch_write_item(RequestItems={"keyfleet-state": [{"PutRequest": {"Item": {"pk": {"S": "user#carol"}, "sk": {"S": "record"}}}}]})
    batch = last_decision(engine, "dynamodb:BatchWriteItem")
    assert (batch["resource"], batch["context"]["dynamodb:LeadingKeys"]) == (arn, ["user#carol"])


def test_dynamodb_table_policy_alone_allows_in_the_same_account(engine: Emulator) -> None:
    account = "300000000071"
    arn = f"arn:aws:dynamodb:{REGION}:{account}:table/keyfleet-state"
    role = make_role(engine, account, "keyfleet-agent", None)  # no identity policy at all
    ddb_table(
        engine,
        account,
        "keyfleet-state",
        [
            {
                "Sid": "OwnRecordsOnly",
                "Effect": "Allow",
                "Principal": {"AWS": role},
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                "Resource": arn,
                "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["user#a*"]}},
            }
        ],
    )
    ddb = role_client(engine, "dynamodb", "keyfleet-agent", account)
    assert ddb.get_item(TableName="keyfleet-state", Key=ALICE)["Item"]
    assert last_decision(engine, "dynamodb:GetItem")["allowed_by"] == ["resource:OwnRecordsOnly"]
    ddb.put_item(TableName=arn, Item={"pk": {"S": "user#anna"}, "sk": {"S": "lease"}})
    got = ddb.query(
        TableName="keyfleet-state",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "user#anna"}},
    )
    assert got["Count"] == 1
    assert last_decision(engine, "dynamodb:Query")["context"]["dynamodb:LeadingKeys"] == ["user#anna"]
    # Another partition key, or an action the policy does not grant: no policy allows.
    message = ddb_denied(lambda: ddb.get_item(TableName="keyfleet-state", Key={"pk": {"S": "user#bob"}, "sk": {"S": "record"}}))
    assert message.endswith("because no identity-based policy allows the dynamodb:GetItem action"), message
    ddb_denied(lambda: ddb.describe_table(TableName="keyfleet-state"))


def test_dynamodb_across_accounts_both_sides_must_allow(engine: Emulator) -> None:
    management = "300000000080"
    org = engine.client("organizations", management)
    org.create_organization(FeatureSet="ALL")
    org_id = org.describe_organization()["Organization"]["Id"]
    member = org.create_account(AccountName="ddb-member", Email="ddb-member@example.com")["CreateAccountStatus"]["AccountId"]
    outsider = "300000000081"
    arn = f"arn:aws:dynamodb:{REGION}:{member}:table/keyfleet-state"
    # The table admits keyfleet-coordinator roles of its own organization only.
    ddb_table(
        engine,
        member,
        "keyfleet-state",
        [
            {
                "Sid": "CoordinatorReads",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["dynamodb:GetItem", "dynamodb:DescribeTable"],
                "Resource": arn,
                "Condition": {
                    "StringEquals": {"aws:PrincipalOrgID": org_id},
                    "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/keyfleet-coordinator"},
                },
            }
        ],
    )
    make_role(engine, management, "keyfleet-coordinator", allow(["dynamodb:GetItem", "dynamodb:PutItem"], arn))
    coordinator = role_client(engine, "dynamodb", "keyfleet-coordinator", management)
    assert coordinator.get_item(TableName=arn, Key=ALICE)["Item"]["state"] == {"S": "active"}
    decision = last_decision(engine, "dynamodb:GetItem")
    assert decision["allowed_by"] == ["identity:#1", "resource:CoordinatorReads"]
    assert (decision["context"]["aws:PrincipalOrgID"], decision["context"]["aws:ResourceAccount"]) == (org_id, member)
    # The table allows DescribeTable, the role's identity policy does not.
    message = ddb_denied(lambda: coordinator.describe_table(TableName=arn))
    assert message.endswith("because no identity-based policy allows the dynamodb:DescribeTable action"), message
    # The role allows PutItem, the table does not.
    message = ddb_denied(lambda: coordinator.put_item(TableName=arn, Item={"pk": {"S": "x"}, "sk": {"S": "y"}}))
    assert message.endswith("because no resource-based policy allows the dynamodb:PutItem action"), message
    # The same role name outside the organization: its own grant is not enough.
    make_role(engine, outsider, "keyfleet-coordinator", allow("dynamodb:GetItem", arn))
    outside = role_client(engine, "dynamodb", "keyfleet-coordinator", outsider)
    message = ddb_denied(lambda: outside.get_item(TableName=arn, Key=ALICE))
    assert message.endswith("because no resource-based policy allows the dynamodb:GetItem action"), message


def test_dynamodb_put_resource_policy_is_refused_by_the_table_policy(engine: Emulator) -> None:
    account = "300000000072"
    arn = f"arn:aws:dynamodb:{REGION}:{account}:table/keyfleet-state"
    make_role(engine, account, "keyfleet-agent", allow("dynamodb:*", arn))
    admin = make_role(engine, account, "keyfleet-api-admin", allow("dynamodb:*", arn))
    guard = {
        "Sid": "OnlyTheAdminChangesThePolicy",
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["dynamodb:PutResourcePolicy", "dynamodb:DeleteResourcePolicy"],
        "Resource": arn,
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": admin}},
    }
    ddb_table(engine, account, "keyfleet-state", [guard])
    agent = role_client(engine, "dynamodb", "keyfleet-agent", account)
    opened = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "dynamodb:*", "Resource": arn}]})
    message = ddb_denied(lambda: agent.put_resource_policy(ResourceArn=arn, Policy=opened))
    assert message.endswith("dynamodb:PutResourcePolicy on resource: " + arn + " with an explicit deny in a resource-based policy"), message
    ddb_denied(lambda: agent.delete_resource_policy(ResourceArn=arn))
    assert json.loads(agent.get_resource_policy(ResourceArn=arn)["Policy"])["Statement"] == [guard]
    assert last_decision(engine, "dynamodb:GetResourcePolicy")["resource"] == arn
    # The admin named in the condition may.
    role_client(engine, "dynamodb", "keyfleet-api-admin", account).put_resource_policy(ResourceArn=arn, Policy=opened)


def test_dynamodb_a_missing_table_is_not_found_whoever_asks(engine: Emulator) -> None:
    account = "300000000073"
    make_role(engine, account, "keyfleet-agent", None)
    ddb = role_client(engine, "dynamodb", "keyfleet-agent", account)
    engine.control("DELETE", "/_keyfleet/iam/decisions")
    for call in (
        lambda: ddb.describe_table(TableName="keyfleet-missing"),
        lambda: ddb.get_item(TableName=f"arn:aws:dynamodb:{REGION}:300000000074:table/keyfleet-missing", Key=ALICE),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException", info.value.response
    # Another account's table, for an operation AWS serves in the caller's
    # own account only: not found either.
    other = "300000000074"
    other_arn = ddb_table(engine, other, "keyfleet-state", None)
    with pytest.raises(ClientError) as info:
        ddb.get_resource_policy(ResourceArn=other_arn)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException", info.value.response
    assert engine.control("GET", "/_keyfleet/iam/decisions")[1]["decisions"] == []
    # Creating one is decided like any other action.
    message = ddb_denied(lambda: ddb.create_table(TableName="keyfleet-new", BillingMode="PAY_PER_REQUEST", **DDB_KEYS))
    assert f"dynamodb:CreateTable on resource: arn:aws:dynamodb:{REGION}:{account}:table/keyfleet-new" in message

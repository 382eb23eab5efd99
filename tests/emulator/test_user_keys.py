"""Requests signed with an IAM user's own access key, as AWS treats them:
authenticated (ext_user_keys.py: an inactive or deleted key, or a wrong
secret, is refused) and, with enforcement on, decided by the policy engine
with the user as principal (ext_iam_enforce.py). A harness of its own:
enforcement is global."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import Emulator, _zip_bytes, own_harness

REGION = "us-east-1"
ACCOUNT = "468024680246"
ADMIN = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEFAULT_PATTERNS = ["keyfleet-agent*", "keyfleet-coordinator*", "keyfleet-org-reader*", "keyfleet-api*"]
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
TOKEN_INVALID = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
AGENT_ROLE_PATTERN = f"arn:aws:iam::{ACCOUNT}:role/keyfleet-agent*"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with own_harness() as harness:
        yield harness


@pytest.fixture
def enforced(emu: Emulator) -> Iterator[None]:
    assert emu.control("DELETE", "/_keyfleet/iam/decisions")[0] == 200
    status, body = emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": True})
    assert status == 200 and body["enabled"] is True
    try:
        yield
    finally:
        emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": False, "role_name_patterns": DEFAULT_PATTERNS})


def admin(emu: Emulator, service: str) -> Any:
    """The account's administrator (a keyfleet-test session: never checked)."""
    return emu.client(service, ACCOUNT)


def make_user(emu: Emulator, name: str, path: str = "/") -> dict[str, str]:
    """A user of ACCOUNT (no policies) and its first access key."""
    iam = admin(emu, "iam")
    iam.create_user(UserName=name, Path=path)
    return iam.create_access_key(UserName=name)["AccessKey"]


def user_client(emu: Emulator, service: str, key: dict[str, str], secret: str | None = None) -> Any:
    return boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=secret or key["SecretAccessKey"],
        config=NO_RETRY,
    )


def refused(call: Callable[[], Any], code: str, status: int | None) -> str:
    """The call's error message, once its code (and HTTP status, unless None) are checked."""
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    assert err["Error"]["Code"] == code, err
    if status is not None:
        assert err["ResponseMetadata"]["HTTPStatusCode"] == status, err
    return err["Error"]["Message"]


def set_status(emu: Emulator, user: str, key: dict[str, str], status: str) -> None:
    admin(emu, "iam").update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status=status)


def user_arn(name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{ACCOUNT}:user{path}{name}"


def delivery_policy(owner_arn: str) -> dict[str, Any]:
    """The shape of keyfleet's delivery secret policy (agent/src/record/legacy.rs,
    resource_policy()): the owner reads, nobody but the owner and the agent
    reads, nobody but the agent writes."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerReads",
                "Effect": "Allow",
                "Principal": {"AWS": owner_arn},
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": "*",
            },
            {
                "Sid": "OnlyOwnerAndAgentRead",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:PrincipalArn": [owner_arn, AGENT_ROLE_PATTERN]}},
            },
            {
                "Sid": "OnlyAgentWrites",
                "Effect": "Deny",
                "Principal": "*",
                "Action": [
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:UpdateSecret",
                    "secretsmanager:DeleteSecret",
                    "secretsmanager:PutResourcePolicy",
                    "secretsmanager:DeleteResourcePolicy",
                ],
                "Resource": "*",
                "Condition": {"StringNotLike": {"aws:PrincipalArn": AGENT_ROLE_PATTERN}},
            },
        ],
    }


def delivery_secret(emu: Emulator, user: str, path: str = "/") -> str:
    """keyfleet/<user> with the delivery policy; its ARN."""
    sm = admin(emu, "secretsmanager")
    arn = sm.create_secret(Name=f"keyfleet/{user}", SecretString='{"AccessKeyId": "next"}')["ARN"]
    sm.put_resource_policy(SecretId=arn, ResourcePolicy=json.dumps(delivery_policy(user_arn(user, path))))
    return arn


def user_decisions(emu: Emulator) -> list[dict[str, Any]]:
    status, body = emu.control("GET", "/_keyfleet/iam/decisions?principal_type=User")
    assert status == 200, body
    return body["decisions"]


# -- authentication (always on) ---------------------------------------------------


def test_a_key_works_while_active_and_is_refused_inactive_or_deleted(emu: Emulator) -> None:
    key = make_user(emu, "kim")
    sts = user_client(emu, "sts", key)
    identity = sts.get_caller_identity()
    assert (identity["Arn"], identity["Account"]) == (user_arn("kim"), ACCOUNT)
    set_status(emu, "kim", key, "Inactive")
    # AWS refuses an inactive key even for GetCallerIdentity, which needs no permission.
    assert refused(sts.get_caller_identity, "InvalidClientTokenId", 403) == TOKEN_INVALID
    refused(user_client(emu, "iam", key).get_user, "InvalidClientTokenId", 403)
    set_status(emu, "kim", key, "Active")
    assert sts.get_caller_identity()["Arn"] == user_arn("kim")
    admin(emu, "iam").delete_access_key(UserName="kim", AccessKeyId=key["AccessKeyId"])
    assert refused(sts.get_caller_identity, "InvalidClientTokenId", 403) == TOKEN_INVALID


def test_an_inactive_key_is_refused_in_each_protocols_words(emu: Emulator) -> None:
    key = make_user(emu, "ines")
    set_status(emu, "ines", key, "Inactive")
    # JSON protocol: 400 UnrecognizedClientException.
    sm = user_client(emu, "secretsmanager", key)
    assert refused(lambda: sm.get_secret_value(SecretId="keyfleet/ines"), "UnrecognizedClientException", 400) == TOKEN_INVALID
    refused(user_client(emu, "dynamodb", key).list_tables, "UnrecognizedClientException", 400)
    # SQS over JSON is query-compatible: the query code, 403.
    refused(user_client(emu, "sqs", key).list_queues, "InvalidClientTokenId", 403)
    # Query protocol: 403 InvalidClientTokenId.
    refused(user_client(emu, "iam", key).list_users, "InvalidClientTokenId", 403)
    refused(user_client(emu, "sns", key).list_topics, "InvalidClientTokenId", 403)
    # REST-JSON: 403 UnrecognizedClientException.
    refused(user_client(emu, "lambda", key).list_functions, "UnrecognizedClientException", 403)
    # S3: 403 InvalidAccessKeyId.
    message = refused(user_client(emu, "s3", key).list_buckets, "InvalidAccessKeyId", 403)
    assert message == "The AWS Access Key Id you provided does not exist in our records."
    # Refused before moto: the key's use is not recorded.
    last = admin(emu, "iam").get_access_key_last_used(AccessKeyId=key["AccessKeyId"])["AccessKeyLastUsed"]
    assert "LastUsedDate" not in last, last


def test_a_presigned_url_of_an_inactive_key_is_refused(emu: Emulator) -> None:
    key = make_user(emu, "paula")
    admin(emu, "s3").create_bucket(Bucket="kf-user-keys-presigned")
    admin(emu, "s3").put_object(Bucket="kf-user-keys-presigned", Key="a.txt", Body=b"hello")
    params = {"Bucket": "kf-user-keys-presigned", "Key": "a.txt"}
    v4 = boto3.client(
        "s3", endpoint_url=emu.endpoint, region_name=REGION,
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    # botocore's default presigned URL (AWSAccessKeyId=, Signature=) and a SigV4 one.
    urls = [user_client(emu, "s3", key).generate_presigned_url("get_object", Params=params),
            v4.generate_presigned_url("get_object", Params=params)]
    assert "AWSAccessKeyId=" in urls[0] and "X-Amz-Credential=" in urls[1]
    for url in urls:
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.read() == b"hello"
    set_status(emu, "paula", key, "Inactive")
    for url in urls:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url, timeout=30)
        assert info.value.code == 403
        assert b"<Code>InvalidAccessKeyId</Code>" in info.value.read()


def test_the_key_of_a_deleted_user_is_refused_also_when_the_name_returns(emu: Emulator) -> None:
    key = make_user(emu, "dora")
    sts = user_client(emu, "sts", key)
    assert sts.get_caller_identity()["Arn"] == user_arn("dora")
    iam = admin(emu, "iam")
    iam.delete_user(UserName="dora")  # moto allows it with keys left (AWS: DeleteConflict)
    refused(sts.get_caller_identity, "InvalidClientTokenId", 403)
    iam.create_user(UserName="dora")  # a new user of the same name does not own the old key
    refused(sts.get_caller_identity, "InvalidClientTokenId", 403)
    fresh = iam.create_access_key(UserName="dora")["AccessKey"]
    assert user_client(emu, "sts", fresh).get_caller_identity()["Arn"] == user_arn("dora")


def test_a_wrong_secret_is_refused_with_the_signature_error(emu: Emulator) -> None:
    key = make_user(emu, "walt")
    wrong = "x" * 40
    assert refused(user_client(emu, "sts", key, wrong).get_caller_identity, "SignatureDoesNotMatch", 403) == SIGNATURE_MISMATCH
    refused(user_client(emu, "iam", key, wrong).get_user, "SignatureDoesNotMatch", 403)
    refused(lambda: user_client(emu, "secretsmanager", key, wrong).list_secrets(), "InvalidSignatureException", 400)
    refused(user_client(emu, "dynamodb", key, wrong).list_tables, "InvalidSignatureException", 400)
    refused(user_client(emu, "lambda", key, wrong).list_functions, "InvalidSignatureException", 403)
    refused(user_client(emu, "s3", key, wrong).list_buckets, "SignatureDoesNotMatch", 403)
    # An inactive key is refused as such, whatever the signature.
    set_status(emu, "walt", key, "Inactive")
    refused(user_client(emu, "sts", key, wrong).get_caller_identity, "InvalidClientTokenId", 403)


def test_the_right_secret_passes_the_signature_check_in_every_protocol(emu: Emulator) -> None:
    """Paths that need encoding, query strings, JSON and form bodies, S3
    uploads (single and multipart, whatever checksum mode botocore picks):
    all signed correctly, all served."""
    key = make_user(emu, "sam")
    s3 = user_client(emu, "s3", key)
    s3.create_bucket(Bucket="kf-user-keys-sig")
    name = "reports/run 1/ü+=&?.json"
    s3.put_object(Bucket="kf-user-keys-sig", Key=name, Body=b"{}", Metadata={"run_id": "r 1"})
    got = s3.get_object(Bucket="kf-user-keys-sig", Key=name)
    assert (got["Body"].read(), got["Metadata"]) == (b"{}", {"run_id": "r 1"})
    listed = s3.list_objects_v2(Bucket="kf-user-keys-sig", Prefix="reports/run 1/")["Contents"]
    assert [o["Key"] for o in listed] == [name]
    big = b"x" * (6 * 1024 * 1024)
    upload = s3.create_multipart_upload(Bucket="kf-user-keys-sig", Key="big")["UploadId"]
    part = s3.upload_part(Bucket="kf-user-keys-sig", Key="big", UploadId=upload, PartNumber=1, Body=big)
    s3.complete_multipart_upload(
        Bucket="kf-user-keys-sig", Key="big", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3.put_object(Bucket="kf-user-keys-sig", Key="crc", Body=b"abc", ChecksumAlgorithm="CRC32")
    assert s3.get_object(Bucket="kf-user-keys-sig", Key="crc")["Body"].read() == b"abc"
    sm = user_client(emu, "secretsmanager", key)
    sm.create_secret(Name="sam/a+b=c@d.e-f_g", SecretString="v")
    assert sm.get_secret_value(SecretId="sam/a+b=c@d.e-f_g")["SecretString"] == "v"
    iam = user_client(emu, "iam", key)
    assert iam.get_user()["User"]["UserName"] == "sam"
    assert iam.list_users(PathPrefix="/")["Users"]
    sqs = user_client(emu, "sqs", key)
    url = sqs.create_queue(QueueName="sam-queue")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="héllo & goodbye")
    ddb = user_client(emu, "dynamodb", key)
    ddb.create_table(
        TableName="sam-table", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    lam = user_client(emu, "lambda", key)
    role = admin(emu, "iam").create_role(
        RoleName="sam-fn-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    arn = lam.create_function(
        FunctionName="sam-fn", Runtime="provided.al2023", Role=role, Handler="bootstrap",
        Code={"ZipFile": _zip_bytes()},
    )["FunctionArn"]
    assert lam.get_function(FunctionName=arn)["Configuration"]["FunctionName"] == "sam-fn"  # ':' in the path


def test_admin_and_session_credentials_still_work_with_any_secret(emu: Emulator) -> None:
    """Keys IAM never made (the test kit's ``testing``, a 12-digit account id
    as key id, STS sessions) are left alone, as before."""
    for key_id in ("testing", "123456789012"):
        sts = boto3.client(
            "sts", endpoint_url=emu.endpoint, region_name=REGION,
            aws_access_key_id=key_id, aws_secret_access_key="anything at all",
        )
        assert sts.get_caller_identity()["Account"] == "123456789012"
    assert emu.client("sts", ACCOUNT).get_caller_identity()["Account"] == ACCOUNT


# -- access control (with enforcement on) --------------------------------------------


def test_a_resource_policy_naming_the_user_is_enough_in_its_account(emu: Emulator, enforced: None) -> None:
    key = make_user(emu, "rita")
    arn = delivery_secret(emu, "rita")
    sm = user_client(emu, "secretsmanager", key)
    assert sm.get_secret_value(SecretId="keyfleet/rita")["SecretString"] == '{"AccessKeyId": "next"}'
    assert sm.describe_secret(SecretId="keyfleet/rita")["ARN"] == arn
    decision = user_decisions(emu)[0]
    assert {k: decision[k] for k in ("decision", "principal_type", "user", "principal", "account", "action", "resource", "allowed_by")} == {
        "decision": "ALLOWED",
        "principal_type": "User",
        "user": "rita",
        "principal": user_arn("rita"),
        "account": ACCOUNT,
        "action": "secretsmanager:GetSecretValue",
        "resource": arn,
        "allowed_by": ["resource:OwnerReads"],
    }
    assert (decision["context"]["aws:PrincipalType"], decision["context"]["aws:username"]) == ("User", "rita")
    assert decision["context"]["aws:PrincipalArn"] == user_arn("rita")
    # The roles' decisions (what the test kit, used-versus-granted and the
    # demo read) hold none of the user's.
    assert emu.control("GET", "/_keyfleet/iam/decisions") == (200, {"decisions": []})


def test_the_delivery_policy_refuses_other_users_and_every_write(emu: Emulator, enforced: None) -> None:
    owner = make_user(emu, "olga", path="/people/")
    arn = delivery_secret(emu, "olga", path="/people/")
    intruder = make_user(emu, "ivan")
    sm = user_client(emu, "secretsmanager", intruder)
    message = refused(lambda: sm.get_secret_value(SecretId=arn), "AccessDeniedException", None)
    assert message == (
        f"User: {user_arn('ivan')} is not authorized to perform: secretsmanager:GetSecretValue "
        f"on resource: {arn} with an explicit deny in a resource-based policy"
    )
    own = user_client(emu, "secretsmanager", owner)
    assert own.get_secret_value(SecretId=arn)["SecretString"]
    message = refused(lambda: own.put_secret_value(SecretId=arn, SecretString="mine"), "AccessDeniedException", None)
    assert message == (
        f"User: {user_arn('olga', '/people/')} is not authorized to perform: secretsmanager:PutSecretValue "
        f"on resource: {arn} with an explicit deny in a resource-based policy"
    )
    assert admin(emu, "secretsmanager").get_secret_value(SecretId=arn)["SecretString"] == '{"AccessKeyId": "next"}'
    # An explicit Deny of the user's own beats the resource policy's Allow.
    admin(emu, "iam").put_user_policy(
        UserName="olga", PolicyName="no-secrets",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}),
    )
    message = refused(lambda: own.get_secret_value(SecretId=arn), "AccessDeniedException", None)
    assert message.endswith("with an explicit deny in an identity-based policy")


def test_identity_policies_of_the_user_and_its_groups_decide(emu: Emulator, enforced: None) -> None:
    key = make_user(emu, "nora")
    iam = user_client(emu, "iam", key)
    message = refused(iam.list_users, "AccessDenied", 403)
    assert message.startswith(f"User: {user_arn('nora')} is not authorized to perform: iam:ListUsers")
    assert message.endswith("because no identity-based policy allows the iam:ListUsers action")
    # GetCallerIdentity needs no permission.
    assert user_client(emu, "sts", key).get_caller_identity()["Arn"] == user_arn("nora")
    list_users = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ListThem", "Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}]})
    admin_iam = admin(emu, "iam")
    admin_iam.put_user_policy(UserName="nora", PolicyName="list", PolicyDocument=list_users)
    assert iam.list_users()["Users"]
    assert user_decisions(emu)[-1]["allowed_by"] == ["identity:ListThem"]
    # A group's attached managed policy counts as the user's own.
    other = make_user(emu, "gus")
    gus = user_client(emu, "iam", other)
    refused(gus.list_users, "AccessDenied", 403)
    policy = admin_iam.create_policy(PolicyName="user-keys-list-users", PolicyDocument=list_users)["Policy"]["Arn"]
    admin_iam.create_group(GroupName="listers")
    admin_iam.attach_group_policy(GroupName="listers", PolicyArn=policy)
    admin_iam.add_user_to_group(GroupName="listers", UserName="gus")
    assert gus.list_users()["Users"]
    # Without UserName, the self-service IAM actions are on the caller's own ARN.
    refused(gus.list_access_keys, "AccessDenied", 403)
    assert user_decisions(emu)[-1]["resource"] == user_arn("gus")


def test_with_enforcement_off_users_are_not_checked(emu: Emulator) -> None:
    assert emu.control("DELETE", "/_keyfleet/iam/decisions")[0] == 200
    key = make_user(emu, "otto")
    arn = delivery_secret(emu, "otto")
    user_client(emu, "iam", key).list_users()
    sm = user_client(emu, "secretsmanager", key)
    sm.put_secret_value(SecretId=arn, SecretString="written")  # the policy's deny is not evaluated
    assert user_decisions(emu) == []
    # Authentication is not switched off with it.
    set_status(emu, "otto", key, "Inactive")
    refused(lambda: sm.get_secret_value(SecretId=arn), "UnrecognizedClientException", 400)


def test_the_decisions_endpoint_keeps_users_apart(emu: Emulator, enforced: None) -> None:
    key = make_user(emu, "pia")
    refused(user_client(emu, "iam", key).list_users, "AccessDenied", 403)
    assert emu.control("GET", "/_keyfleet/iam/decisions")[1] == {"decisions": []}
    assert emu.control("GET", "/_keyfleet/iam/decisions?principal_type=AssumedRole")[1] == {"decisions": []}
    assert [(d["decision"], d["user"], d["action"]) for d in user_decisions(emu)] == [("DENIED", "pia", "iam:ListUsers")]
    assert emu.control("GET", "/_keyfleet/iam/decisions?principal_type=Root")[0] == 400
    assert emu.control("GET", "/_keyfleet/iam/decisions?who=me")[0] == 400
    assert emu.control("DELETE", "/_keyfleet/iam/decisions") == (200, {"ok": True, "cleared": 1})
    assert user_decisions(emu) == []

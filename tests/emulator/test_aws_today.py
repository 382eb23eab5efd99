"""Where AWS behaves differently from moto 5.2.5 today, and the harness follows AWS.

Each test fails against plain moto (or the harness before the change it
covers). Own harness, started once for this module: the credential-report
control and the Lambda concurrency counters are global to a harness.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import Emulator, REGION, own_harness, wait_for
from test_lambda_delivery import (  # helpers of the delivery tests
    BOOTSTRAP,
    TRUST,
    Gate,
    counts,
    invocations,
    make_queue,
    mapping_row,
    send,
    settle,
)

HERE = Path(__file__).resolve().parent
AGENT_TEMPLATE = HERE.parent.parent / "terraform" / "templates" / "agent.yaml"
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
PUBLIC_KEY = "A" * 43 + "="


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with own_harness() as emu:
        yield emu


def client(emu: Emulator, service: str, account: str | None = None, retries: bool = True) -> Any:
    return boto3.client(
        service,
        endpoint_url=emu.endpoint,
        region_name=REGION,
        config=None if retries else NO_RETRY,
        **emu.credentials(account),
    )


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


# -- CloudFormation: AWS::SQS::QueuePolicy -------------------------------------------

QUEUE_POLICY_TEMPLATE = """
Parameters:
  CoordinatorRoleArn:
    Type: String
    AllowedPattern: "^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$"
Resources:
  JobsDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: qp-jobs-dlq
  JobsQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: qp-jobs
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt JobsDeadLetterQueue.Arn
        maxReceiveCount: 3
  JobsQueuePolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref JobsQueue]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: AllowCoordinatorSend
            Effect: Allow
            Principal:
              AWS: !Sub
                - "arn:${AWS::Partition}:iam::${CoordinatorAccount}:root"
                - CoordinatorAccount: !Select [4, !Split [":", !Ref CoordinatorRoleArn]]
            Action: sqs:SendMessage
            Resource: !GetAtt JobsQueue.Arn
            Condition:
              ArnEquals:
                aws:PrincipalArn: !Ref CoordinatorRoleArn
"""


def _policy(sqs: Any, name: str) -> dict[str, Any] | None:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return json.loads(attrs["Policy"]) if "Policy" in attrs else None


def test_queue_policy_from_a_stack_is_applied_updated_and_removed(emu: Emulator) -> None:
    account = "610000000001"
    cfn, sqs = client(emu, "cloudformation", account), client(emu, "sqs", account)
    role = "arn:aws:iam::222233334444:role/keyfleet-coordinator"
    cfn.create_stack(
        StackName="qp",
        TemplateBody=QUEUE_POLICY_TEMPLATE,
        Parameters=[{"ParameterKey": "CoordinatorRoleArn", "ParameterValue": role}],
    )
    (statement,) = _policy(sqs, "qp-jobs")["Statement"]
    assert statement == {
        "Sid": "AllowCoordinatorSend",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::222233334444:root"},
        "Action": "sqs:SendMessage",
        "Resource": f"arn:aws:sqs:{REGION}:{account}:qp-jobs",
        "Condition": {"ArnEquals": {"aws:PrincipalArn": role}},
    }
    assert _policy(sqs, "qp-jobs-dlq") is None

    # UpdateStack: a new coordinator role changes the document in place.
    other = "arn:aws:iam::555566667777:role/keyfleet-coordinator"
    cfn.update_stack(
        StackName="qp",
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "CoordinatorRoleArn", "ParameterValue": other}],
    )
    (statement,) = _policy(sqs, "qp-jobs")["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::555566667777:root"}
    assert statement["Condition"] == {"ArnEquals": {"aws:PrincipalArn": other}}

    # The policy moves to the DLQ: the jobs queue loses it.
    moved = QUEUE_POLICY_TEMPLATE.replace("Queues: [!Ref JobsQueue]", "Queues: [!Ref JobsDeadLetterQueue]")
    cfn.update_stack(
        StackName="qp",
        TemplateBody=moved,
        Parameters=[{"ParameterKey": "CoordinatorRoleArn", "UsePreviousValue": True}],
    )
    assert _policy(sqs, "qp-jobs") is None
    assert _policy(sqs, "qp-jobs-dlq")["Statement"][0]["Sid"] == "AllowCoordinatorSend"

    # Removing the resource from the template removes the policy.
    template = QUEUE_POLICY_TEMPLATE.split("  JobsQueuePolicy:")[0]
    cfn.update_stack(
        StackName="qp",
        TemplateBody=template,
        Parameters=[{"ParameterKey": "CoordinatorRoleArn", "UsePreviousValue": True}],
    )
    assert _policy(sqs, "qp-jobs-dlq") is None


def _code_zip(mode: int = 0o755, bootstrap: str = "#!/bin/sh\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = mode << 16
        zf.writestr(info, bootstrap)
    return buf.getvalue()


def _agent_parameters(bucket: str, results_account: str) -> list[dict[str, str]]:
    values = {
        "CodeS3Bucket": bucket,
        "CodeS3Key": "keyfleet/agent.zip",
        "CoordinatorRoleArn": f"arn:aws:iam::{results_account}:role/keyfleet-coordinator",
        "ResultsQueueUrl": f"https://sqs.{REGION}.amazonaws.com/{results_account}/keyfleet-results",
        "ResultsQueueArn": f"arn:aws:sqs:{REGION}:{results_account}:keyfleet-results",
        "CoordinatorPublicKey": PUBLIC_KEY,
        "CoordinatorKeyId": "k-2026-01",
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def test_the_agent_template_deploys_with_its_queue_policies(emu: Emulator) -> None:
    """terraform/templates/agent.yaml as it is: its parameters pass their
    constraints, it needs CAPABILITY_NAMED_IAM, and both queue policies land."""
    account = "610000000002"
    s3 = client(emu, "s3", account)
    s3.create_bucket(Bucket="kf-today-agent-code")
    s3.put_object(Bucket="kf-today-agent-code", Key="keyfleet/agent.zip", Body=_code_zip())
    cfn, sqs = client(emu, "cloudformation", account), client(emu, "sqs", account)
    params = _agent_parameters("kf-today-agent-code", "222233334444")
    err = error_of(lambda: cfn.create_stack(
        StackName="agent", TemplateBody=AGENT_TEMPLATE.read_text(), Parameters=params
    ))
    assert err["Error"]["Code"] == "InsufficientCapabilitiesException"
    assert err["Error"]["Message"] == "Requires capabilities : [CAPABILITY_NAMED_IAM]"
    cfn.create_stack(
        StackName="agent",
        TemplateBody=AGENT_TEMPLATE.read_text(),
        Parameters=params,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    jobs = _policy(sqs, "keyfleet-jobs")
    assert [s["Sid"] for s in jobs["Statement"]] == [
        "AllowCoordinatorSend",
        "DenySendFromAnyoneElse",
        "DenyInsecureTransport",
    ]
    assert jobs["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::222233334444:root"}
    assert jobs["Statement"][2]["Resource"] == f"arn:aws:sqs:{REGION}:{account}:keyfleet-jobs"
    dlq = _policy(sqs, "keyfleet-jobs-dlq")
    assert [s["Sid"] for s in dlq["Statement"]] == ["DenyInsecureTransport"]
    cfn.delete_stack(StackName="agent")
    assert "keyfleet-jobs" not in str(sqs.list_queues().get("QueueUrls", []))


# -- CloudFormation: parameter constraints and capabilities ----------------------------

CONSTRAINED_TEMPLATE = {
    "Parameters": {
        "Bucket": {"Type": "String", "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"},
        "Arch": {"Type": "String", "Default": "x86_64", "AllowedValues": ["x86_64", "arm64"]},
        "Key": {"Type": "String", "Default": "k", "MinLength": 1, "MaxLength": 5},
        "Memory": {"Type": "Number", "Default": 256, "MinValue": 128, "MaxValue": 10240},
        "Timeout": {"Type": "Number", "Default": 300, "AllowedValues": [60, 300, 900]},
        "Level": {
            "Type": "String",
            "Default": "info",
            "AllowedPattern": "^[a-z]+$",
            "ConstraintDescription": "lower-case letters only",
        },
    },
    "Resources": {
        "Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": "constrained", "VisibilityTimeout": {"Ref": "Timeout"}},
        }
    },
}


@pytest.mark.parametrize(
    "given, message",
    [
        ({"Bucket": "Not_A_Bucket"}, "Parameter 'Bucket' must match pattern ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
        ({"Arch": "sparc"}, "Parameter 'Arch' must be one of AllowedValues"),
        ({"Key": ""}, "Parameter 'Key' must contain at least 1 characters"),
        ({"Key": "toolong"}, "Parameter 'Key' must contain at most 5 characters"),
        ({"Memory": "64"}, "Parameter 'Memory' must be a number not less than 128"),
        ({"Memory": "20000"}, "Parameter 'Memory' must be a number not greater than 10240"),
        ({"Memory": "lots"}, "Parameter 'Memory' must be a number"),
        ({"Timeout": "301"}, "Parameter 'Timeout' must be one of AllowedValues"),
        ({"Level": "INFO"}, "Parameter 'Level' failed to satisfy constraint: lower-case letters only"),
    ],
)
def test_create_stack_refuses_a_parameter_that_breaks_its_constraint(
    emu: Emulator, given: dict[str, str], message: str
) -> None:
    account = "610000000003"
    cfn, sqs = client(emu, "cloudformation", account), client(emu, "sqs", account)
    values = {"Bucket": "keyfleet-code", **given}
    err = error_of(lambda: cfn.create_stack(
        StackName="constrained",
        TemplateBody=json.dumps(CONSTRAINED_TEMPLATE),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
    ))
    assert (err["Error"]["Code"], err["Error"]["Message"]) == ("ValidationError", message)
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert sqs.list_queues().get("QueueUrls", []) == []  # nothing created
    assert [s["StackName"] for s in cfn.list_stacks()["StackSummaries"]] == []


def test_update_stack_refuses_a_parameter_that_breaks_its_constraint(emu: Emulator) -> None:
    account = "610000000004"
    cfn, sqs = client(emu, "cloudformation", account), client(emu, "sqs", account)
    body = json.dumps(CONSTRAINED_TEMPLATE)
    cfn.create_stack(
        StackName="constrained",
        TemplateBody=body,
        Parameters=[{"ParameterKey": "Bucket", "ParameterValue": "keyfleet-code"}],
    )
    err = error_of(lambda: cfn.update_stack(
        StackName="constrained",
        TemplateBody=body,
        Parameters=[
            {"ParameterKey": "Bucket", "UsePreviousValue": True},
            {"ParameterKey": "Timeout", "ParameterValue": "120"},
        ],
    ))
    assert (err["Error"]["Code"], err["Error"]["Message"]) == (
        "ValidationError",
        "Parameter 'Timeout' must be one of AllowedValues",
    )
    url = sqs.get_queue_url(QueueName="constrained")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "300"  # unchanged
    cfn.update_stack(
        StackName="constrained",
        TemplateBody=body,
        Parameters=[
            {"ParameterKey": "Bucket", "UsePreviousValue": True},
            {"ParameterKey": "Timeout", "ParameterValue": "900"},
        ],
    )
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "900"


def _role(name: str | None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    }
    if name:
        props["RoleName"] = name
    return {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": props}}}


def test_iam_resources_need_their_capability(emu: Emulator) -> None:
    account = "610000000005"
    cfn, iam = client(emu, "cloudformation", account), client(emu, "iam", account)

    def refused(call: Any, needed: str) -> None:
        err = error_of(call)
        assert (err["Error"]["Code"], err["Error"]["Message"]) == (
            "InsufficientCapabilitiesException",
            f"Requires capabilities : [{needed}]",
        )

    named, unnamed = json.dumps(_role("cap-named")), json.dumps(_role(None))
    refused(lambda: cfn.create_stack(StackName="named", TemplateBody=named), "CAPABILITY_NAMED_IAM")
    refused(
        lambda: cfn.create_stack(StackName="named", TemplateBody=named, Capabilities=["CAPABILITY_IAM"]),
        "CAPABILITY_NAMED_IAM",
    )
    refused(lambda: cfn.create_stack(StackName="unnamed", TemplateBody=unnamed), "CAPABILITY_IAM")
    assert "cap-named" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert cfn.list_stacks()["StackSummaries"] == []

    cfn.create_stack(StackName="named", TemplateBody=named, Capabilities=["CAPABILITY_NAMED_IAM"])
    cfn.create_stack(StackName="unnamed", TemplateBody=unnamed, Capabilities=["CAPABILITY_IAM"])
    assert "cap-named" in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    # Every update acknowledges them again, also with the previous template.
    refused(
        lambda: cfn.update_stack(StackName="named", UsePreviousTemplate=True, Tags=[{"Key": "a", "Value": "b"}]),
        "CAPABILITY_NAMED_IAM",
    )
    refused(
        lambda: cfn.create_stack_set(StackSetName="named-set", TemplateBody=named),
        "CAPABILITY_NAMED_IAM",
    )
    cfn.create_stack_set(StackSetName="named-set", TemplateBody=named, Capabilities=["CAPABILITY_NAMED_IAM"])
    refused(
        lambda: cfn.update_stack_set(StackSetName="named-set", UsePreviousTemplate=True, Description="x"),
        "CAPABILITY_NAMED_IAM",
    )
    # Templates without IAM resources need nothing.
    cfn.create_stack(StackName="plain", TemplateBody=json.dumps(CONSTRAINED_TEMPLATE).replace(
        '"constrained"', '"plain"'), Parameters=[{"ParameterKey": "Bucket", "ParameterValue": "b-ok"}])


# -- StackSets: a failed instance is OUTDATED with its reason --------------------------

FAILING_STACKSET_TEMPLATE = {
    "Parameters": {
        "CodeBucket": {"Type": "String", "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"},
    },
    "Resources": {
        "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "kf-failing-jobs"}},
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": "kf-failing-agent",
                "AssumeRolePolicyDocument": _role(None)["Resources"]["Role"]["Properties"][
                    "AssumeRolePolicyDocument"
                ],
            },
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": "kf-failing-agent",
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": "agent.zip"},
            },
        },
    },
}


def test_a_failed_stack_instance_is_outdated_with_its_reason(emu: Emulator) -> None:
    management = "620000000001"
    org = client(emu, "organizations", management)
    cfn = client(emu, "cloudformation", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    member = org.create_account(AccountName="failing", Email="failing@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    cfn.create_stack_set(
        StackSetName="failing",
        TemplateBody=json.dumps(FAILING_STACKSET_TEMPLATE),
        Parameters=[{"ParameterKey": "CodeBucket", "ParameterValue": "kf-today-missing-bucket"}],
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": False},
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    # The code bucket does not exist: the call succeeds, the instance fails.
    operation = cfn.create_stack_instances(
        StackSetName="failing", DeploymentTargets={"OrganizationalUnitIds": [root]}, Regions=[REGION]
    )["OperationId"]
    described = cfn.describe_stack_set_operation(StackSetName="failing", OperationId=operation)
    assert described["StackSetOperation"]["Status"] == "FAILED"
    results = cfn.list_stack_set_operation_results(StackSetName="failing", OperationId=operation)
    assert [(r["Account"], r["Status"]) for r in results["Summaries"]] == [(member, "FAILED")]
    instance = cfn.describe_stack_instance(
        StackSetName="failing", StackInstanceAccount=member, StackInstanceRegion=REGION
    )["StackInstance"]
    assert (instance["Status"], instance["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "FAILED")
    assert instance["StatusReason"] == (
        "ResourceLogicalId:Function, ResourceType:AWS::Lambda::Function, ResourceStatusReason:"
        "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: "
        "The specified bucket does not exist."
    )
    (summary,) = cfn.list_stack_instances(StackSetName="failing")["Summaries"]
    assert summary["StatusReason"] == instance["StatusReason"]
    # Rolled back, as AWS does: nothing of the stack is left in the account.
    assert client(emu, "sqs", member).list_queues().get("QueueUrls", []) == []
    assert "kf-failing-agent" not in [r["RoleName"] for r in client(emu, "iam", member).list_roles()["Roles"]]

    # A parameter that breaks its constraint fails the instance the same way
    # (an auto-deployment to a new account here: the Organizations call works).
    cfn.update_stack_set(
        StackSetName="failing",
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "CodeBucket", "ParameterValue": "Not_A_Bucket"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    late = org.create_account(AccountName="late", Email="late@example.com")["CreateAccountStatus"]["AccountId"]
    reasons = {
        i["Account"]: (i["Status"], i["StackInstanceStatus"]["DetailedStatus"], i.get("StatusReason"))
        for i in cfn.list_stack_instances(StackSetName="failing")["Summaries"]
    }
    pattern = "Parameter 'CodeBucket' must match pattern ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
    assert reasons == {member: ("OUTDATED", "FAILED", pattern), late: ("OUTDATED", "FAILED", pattern)}

    # Once the bucket exists, an update deploys every failed instance.
    s3 = client(emu, "s3", management)
    s3.create_bucket(Bucket="kf-today-code-ok")
    s3.put_object(Bucket="kf-today-code-ok", Key="agent.zip", Body=_code_zip())
    operation = cfn.update_stack_set(
        StackSetName="failing",
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "CodeBucket", "ParameterValue": "kf-today-code-ok"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["OperationId"]
    described = cfn.describe_stack_set_operation(StackSetName="failing", OperationId=operation)
    assert described["StackSetOperation"]["Status"] == "SUCCEEDED"
    for i in cfn.list_stack_instances(StackSetName="failing")["Summaries"]:
        assert (i["Status"], i["StackInstanceStatus"]["DetailedStatus"]) == ("CURRENT", "SUCCEEDED")
        assert "StatusReason" not in i
        lam = client(emu, "lambda", i["Account"])
        assert lam.get_function(FunctionName="kf-failing-agent")["Configuration"]["Runtime"] == "provided.al2023"
    # And removing the failed-then-repaired instances works as for any other.
    org.remove_account_from_organization(AccountId=late)
    assert [i["Account"] for i in cfn.list_stack_instances(StackSetName="failing")["Summaries"]] == [member]


# -- IAM: the credential report is cached for 4 hours, and can be in progress -----------


def _report_rows(iam: Any) -> tuple[dict[str, dict[str, str]], Any]:
    import csv

    resp = iam.get_credential_report()
    rows = list(csv.DictReader(io.StringIO(resp["Content"].decode())))
    return {r["user"]: r for r in rows}, resp["GeneratedTime"]


def test_credential_report_is_reused_until_the_clock_moves(emu: Emulator) -> None:
    account = "630000000001"
    iam = client(emu, "iam", account)
    iam.create_user(UserName="gina")
    first = iam.generate_credential_report()
    assert first["State"] == "STARTED"
    assert iam.generate_credential_report()["State"] == "COMPLETE"
    rows, generated = _report_rows(iam)
    assert rows["gina"]["access_key_1_active"] == "false"

    # A new key (and a new user) within 4 hours: AWS answers from the last report.
    iam.create_access_key(UserName="gina")
    iam.create_user(UserName="hank")
    assert iam.generate_credential_report()["State"] == "COMPLETE"
    cached, cached_time = _report_rows(iam)
    assert cached_time == generated
    assert cached["gina"]["access_key_1_active"] == "false" and "hank" not in cached

    # The clock moved (days stand for the hours passing): the next Generate rebuilds.
    status, _ = emu.control("POST", "/_keyfleet/clock/advance", {"days": 1, "account": account})
    assert status == 200
    assert iam.generate_credential_report()["State"] == "COMPLETE"
    fresh, fresh_time = _report_rows(iam)
    assert fresh["gina"]["access_key_1_active"] == "true" and "hank" in fresh
    assert fresh_time >= generated
    # ... and only once.
    iam.delete_user(UserName="hank")
    iam.generate_credential_report()
    assert "hank" in _report_rows(iam)[0]


def test_credential_report_generation_can_be_in_progress(emu: Emulator) -> None:
    account = "630000000002"
    iam = client(emu, "iam", account, retries=False)
    iam.create_user(UserName="ivy")
    status, body = emu.control(
        "POST", "/_keyfleet/iam/credential-report", {"in_progress": 3, "account": account}
    )
    assert (status, body) == (200, {"ok": True, "account": account, "in_progress": 3})
    # Before any Generate, nothing is generating: there is just no report.
    assert error_of(iam.get_credential_report)["Error"]["Code"] == "ReportNotPresent"
    states = [iam.generate_credential_report()["State"]]
    err = error_of(iam.get_credential_report)
    assert err["Error"]["Code"] == "ReportInProgress"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 404
    states += [iam.generate_credential_report()["State"] for _ in range(3)]
    assert states == ["STARTED", "INPROGRESS", "INPROGRESS", "COMPLETE"]
    assert "ivy" in _report_rows(iam)[0]

    # Again, with a report present: it is rebuilt once the generation is over.
    iam.create_user(UserName="jack")
    emu.control("POST", "/_keyfleet/iam/credential-report", {"in_progress": 1, "account": account})
    assert iam.generate_credential_report()["State"] == "STARTED"
    assert error_of(iam.get_credential_report)["Error"]["Code"] == "ReportInProgress"
    assert iam.generate_credential_report()["State"] == "COMPLETE"
    assert "jack" in _report_rows(iam)[0]
    bad = emu.control("POST", "/_keyfleet/iam/credential-report", {"in_progress": -1})
    assert bad[0] == 400


# -- Organizations: only the management account (or a delegated admin) lists accounts --


def test_a_member_account_may_not_list_the_organization(emu: Emulator) -> None:
    management = "640000000001"
    org = client(emu, "organizations", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    member = org.create_account(AccountName="member", Email="member@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    admin = org.create_account(AccountName="admin", Email="admin@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    everyone = {management, member, admin}
    assert {a["Id"] for a in org.list_accounts()["Accounts"]} == everyone

    as_member = client(emu, "organizations", member, retries=False)
    for call in (as_member.list_accounts, lambda: as_member.list_accounts_for_parent(ParentId=root)):
        err = error_of(call)
        assert (err["Error"]["Code"], err["Error"]["Message"]) == (
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
        )
    # DescribeOrganization is fine from a member.
    assert as_member.describe_organization()["Organization"]["MasterAccountId"] == management

    # A delegated administrator reads the organization as the management account does.
    org.register_delegated_administrator(AccountId=admin, ServicePrincipal="ssm.amazonaws.com")
    as_admin = client(emu, "organizations", admin)
    assert {a["Id"] for a in as_admin.list_accounts()["Accounts"]} == everyone
    assert {a["Id"] for a in as_admin.list_accounts_for_parent(ParentId=root)["Accounts"]} == everyone


# -- Lambda: environment size, executable bootstrap, reserved concurrency --------------


def _function(emu: Emulator, account: str, name: str, *, mode: int = 0o755, **extra: Any) -> dict[str, Any]:
    iam = client(emu, "iam", account)
    try:
        iam.create_role(RoleName="kf-today-fn", AssumeRolePolicyDocument=json.dumps(TRUST))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    lam = client(emu, "lambda", account, retries=False)
    created = lam.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=f"arn:aws:iam::{account}:role/kf-today-fn",
        Handler="bootstrap",
        Code={"ZipFile": _code_zip(mode, BOOTSTRAP)},
        Timeout=30,
        **extra,
    )
    return {"lam": lam, "arn": created["FunctionArn"], "name": name}


def test_lambda_environment_is_limited_to_4_kb(emu: Emulator) -> None:
    account = "650000000001"
    # {"BIG":"<value>"} is 10 bytes of JSON around the value.
    exact = {"BIG": "x" * (4096 - 10)}
    fn = _function(emu, account, "kf-env", Environment={"Variables": exact})
    lam = fn["lam"]
    assert lam.get_function_configuration(FunctionName="kf-env")["Environment"]["Variables"] == exact

    over = {"BIG": "x" * (4096 - 10), "A": "b"}
    err = error_of(lambda: lam.update_function_configuration(
        FunctionName="kf-env", Environment={"Variables": over}
    ))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["Error"]["Message"] == (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: " + json.dumps(over, separators=(",", ":"))
    )
    assert lam.get_function_configuration(FunctionName="kf-env")["Environment"]["Variables"] == exact
    # Multi-byte characters count in bytes.
    err = error_of(lambda: _function(
        emu, account, "kf-env-utf8", Environment={"Variables": {"K": "é" * 2100}}
    ))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert "kf-env-utf8" not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


@pytest.mark.parametrize("mode", [0o644, 0o744, 0], ids=["rw-r--r--", "rwxr--r--", "no-unix-mode"])
def test_a_bootstrap_that_is_not_executable_fails_every_invocation(emu: Emulator, mode: int) -> None:
    account = "650000000002"
    name = f"kf-noexec-{mode:o}"
    fn = _function(emu, account, name, mode=mode)
    for _ in range(2):
        resp = fn["lam"].invoke(FunctionName=name, Payload=b"{}")
        assert resp["FunctionError"] == "Unhandled"
        out = json.loads(resp["Payload"].read())
        assert out["errorType"] == "Runtime.InvalidEntrypoint"
        assert out["errorMessage"].endswith("Error: fork/exec /var/task/bootstrap: permission denied")
    entries = invocations(emu, fn["arn"])
    assert [(e["status"], e["error_type"]) for e in entries] == [("error", "Runtime.InvalidEntrypoint")] * 2


def test_synchronous_invoke_past_the_reserved_concurrency_is_throttled(emu: Emulator) -> None:
    account = "650000000003"
    fn = _function(emu, account, "kf-reserved")
    lam = fn["lam"]
    lam.put_function_concurrency(FunctionName="kf-reserved", ReservedConcurrentExecutions=1)
    work = tempfile.mkdtemp(prefix="kft")
    gate = Gate(work)
    answers: list[Any] = []
    try:
        held = threading.Thread(
            target=lambda: answers.append(lam.invoke(FunctionName="kf-reserved", Payload=json.dumps(
                {"gate": gate.path}).encode())),
            daemon=True,
        )
        held.start()
        conn = gate.accept()  # the first invocation runs and holds the only slot
        err = error_of(lambda: lam.invoke(FunctionName="kf-reserved", Payload=b"{}"))
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert (err["Error"]["Code"], err["Error"]["Message"]) == ("TooManyRequestsException", "Rate Exceeded.")
        assert err["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        Gate.release([conn])
        held.join(30)
    finally:
        gate.close()
        shutil.rmtree(work, ignore_errors=True)
    assert json.loads(answers[0]["Payload"].read()) == {"ok": True}
    assert lam.invoke(FunctionName="kf-reserved", Payload=b"{}")["StatusCode"] == 200
    statuses = [(e["status"], e["error_type"]) for e in invocations(emu, fn["arn"])]
    assert statuses == [("ok", None), ("throttled", "TooManyRequestsException"), ("ok", None)]

    # Reserved concurrency 0: the function never runs.
    lam.put_function_concurrency(FunctionName="kf-reserved", ReservedConcurrentExecutions=0)
    assert lam.get_function(FunctionName="kf-reserved")["Concurrency"] == {"ReservedConcurrentExecutions": 0}
    assert error_of(lambda: lam.invoke(FunctionName="kf-reserved", Payload=b"{}"))["Error"]["Code"] == (
        "TooManyRequestsException"
    )
    lam.invoke(FunctionName="kf-reserved", InvocationType="Event", Payload=b"{}")
    settle(emu, account)
    tail = [e["status"] for e in invocations(emu, fn["arn"])][3:]
    assert tail == ["throttled"] * 4  # the Invoke, then the event's 3 attempts
    lam.delete_function_concurrency(FunctionName="kf-reserved")
    assert lam.invoke(FunctionName="kf-reserved", Payload=b"{}")["StatusCode"] == 200


def _reserved_stack(reserved: int) -> str:
    return json.dumps({
        "Parameters": {"Reserved": {"Type": "Number", "MinValue": -1}},
        "Conditions": {"HasReserved": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Reserved"}, -1]}]}},
        "Resources": {
            "Function": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "FunctionName": "kf-reserved-sqs",
                    "Runtime": "provided.al2023",
                    "Handler": "bootstrap",
                    "Role": "arn:aws:iam::650000000004:role/kf-today-fn",
                    "Timeout": 30,
                    "Code": {"S3Bucket": "kf-today-reserved-code", "S3Key": "fn.zip"},
                    "ReservedConcurrentExecutions": {
                        "Fn::If": ["HasReserved", {"Ref": "Reserved"}, {"Ref": "AWS::NoValue"}]
                    },
                },
            }
        },
    })


def test_sqs_batches_past_the_reserved_concurrency_are_throttled_back_to_the_queue(emu: Emulator) -> None:
    account = "650000000004"
    client(emu, "iam", account).create_role(RoleName="kf-today-fn", AssumeRolePolicyDocument=json.dumps(TRUST))
    s3 = client(emu, "s3", account)
    s3.create_bucket(Bucket="kf-today-reserved-code")
    s3.put_object(Bucket="kf-today-reserved-code", Key="fn.zip", Body=_code_zip(0o755, BOOTSTRAP))
    cfn = client(emu, "cloudformation", account)
    cfn.create_stack(
        StackName="reserved", TemplateBody=_reserved_stack(1),
        Parameters=[{"ParameterKey": "Reserved", "ParameterValue": "1"}],
    )
    lam = client(emu, "lambda", account)
    arn = lam.get_function(FunctionName="kf-reserved-sqs")["Configuration"]["FunctionArn"]
    assert lam.get_function(FunctionName="kf-reserved-sqs")["Concurrency"] == {"ReservedConcurrentExecutions": 1}
    dlq = make_queue(emu, account, "jobs-dlq")
    queue = make_queue(
        emu, account, "jobs", VisibilityTimeout="300",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq["arn"], "maxReceiveCount": 1}),
    )
    # MaximumConcurrency 2 above the reserved concurrency 1: AWS warns of throttling.
    mapping = lam.create_event_source_mapping(
        EventSourceArn=queue["arn"], FunctionName=arn, BatchSize=1,
        ScalingConfig={"MaximumConcurrency": 2},
    )["UUID"]
    work = tempfile.mkdtemp(prefix="kft")
    gate = Gate(work)
    try:
        (first,) = send(emu, account, queue["url"], {"gate": gate.path})
        conn = gate.accept()  # the function's one reserved slot is busy
        (second,) = send(emu, account, queue["url"], {"mode": "ok"})
        wait_for(lambda: mapping_row(emu, mapping)["throttled"] == 1, 30, "a throttled batch")
        Gate.release([conn])
    finally:
        gate.close()
        shutil.rmtree(work, ignore_errors=True)
    settle(emu, account)  # the throttled message is in flight: settle does not wait for it
    entries = invocations(emu, arn)
    assert [(e["status"], e["message_ids"]) for e in entries] == [("ok", [first]), ("throttled", [second])]
    assert counts(emu, account, queue["url"]) == (0, 1)
    # Back in the queue after its visibility timeout, its receive count used up: the DLQ.
    emu.control("POST", "/_keyfleet/sqs/visible", {"queue_url": queue["url"]})
    settle(emu, account)
    dead = client(emu, "sqs", account).receive_message(QueueUrl=dlq["url"])["Messages"]
    assert [m["MessageId"] for m in dead] == [second]
    assert counts(emu, account, queue["url"]) == (0, 0)
    assert len(invocations(emu, arn)) == 2

    # Reserved concurrency 0 through a stack update: the function never runs.
    cfn.update_stack(
        StackName="reserved", UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "Reserved", "ParameterValue": "0"}],
    )
    assert lam.get_function(FunctionName="kf-reserved-sqs")["Concurrency"] == {"ReservedConcurrentExecutions": 0}
    send(emu, account, queue["url"], {"mode": "ok"})
    wait_for(lambda: mapping_row(emu, mapping)["throttled"] == 2, 30, "a second throttled batch")
    settle(emu, account)
    assert [e["status"] for e in invocations(emu, arn)][2:] == ["throttled"]
    assert counts(emu, account, queue["url"]) == (0, 1)
    # No reservation any more (-1: the property is left out): the next delivery runs.
    cfn.update_stack(
        StackName="reserved", UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "Reserved", "ParameterValue": "-1"}],
    )
    assert "Concurrency" not in lam.get_function(FunctionName="kf-reserved-sqs")
    (fourth,) = send(emu, account, queue["url"], {"mode": "ok"})
    settle(emu, account)
    assert (invocations(emu, arn)[-1]["status"], invocations(emu, arn)[-1]["message_ids"]) == ("ok", [fourth])


# -- S3: a conditional write can meet a concurrent one (fault kind conflict) ------------


def test_fault_conflict_answers_conditional_s3_writes_with_409(emu: Emulator) -> None:
    account = "660000000001"
    s3 = client(emu, "s3", account, retries=False)
    s3.create_bucket(Bucket="kf-today-conflict")
    rules = [{"service": "s3", "kind": "conflict", "match": {"Key": "lease"}, "first_attempts": 1}]
    status, body = emu.control("POST", "/_keyfleet/faults", {"seed": 1, "rules": rules})
    assert status == 200, body
    try:
        assert body["rules"][0]["action"] == ["PutObject", "CompleteMultipartUpload"]
        err = error_of(lambda: s3.put_object(Bucket="kf-today-conflict", Key="lease", Body=b"a", IfNoneMatch="*"))
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 409
        assert err["Error"]["Code"] == "ConditionalRequestConflict"
        assert err["Error"]["Message"].startswith("A conflicting operation occurred.")
        # Nothing was written; the retry (attempt 1) goes through.
        assert "Contents" not in s3.list_objects_v2(Bucket="kf-today-conflict")
        s3.put_object(Bucket="kf-today-conflict", Key="lease", Body=b"a", IfNoneMatch="*")
        assert s3.get_object(Bucket="kf-today-conflict", Key="lease")["Body"].read() == b"a"

        # Unconditional writes and reads never get it.
        emu.control("POST", "/_keyfleet/faults", {"seed": 1, "rules": [
            {"service": "s3", "kind": "conflict", "match": {"Key": ["lease", "big"]}}]})
        s3.put_object(Bucket="kf-today-conflict", Key="lease", Body=b"b")
        s3.get_object(Bucket="kf-today-conflict", Key="lease")
        etag = s3.head_object(Bucket="kf-today-conflict", Key="lease")["ETag"]
        err = error_of(lambda: s3.put_object(Bucket="kf-today-conflict", Key="lease", Body=b"c", IfMatch=etag))
        assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (409, "ConditionalRequestConflict")
        assert s3.get_object(Bucket="kf-today-conflict", Key="lease")["Body"].read() == b"b"

        # CompleteMultipartUpload with a condition.
        upload = s3.create_multipart_upload(Bucket="kf-today-conflict", Key="big")["UploadId"]
        part = s3.upload_part(Bucket="kf-today-conflict", Key="big", UploadId=upload, PartNumber=1, Body=b"x")
        err = error_of(lambda: s3.complete_multipart_upload(
            Bucket="kf-today-conflict", Key="big", UploadId=upload, IfNoneMatch="*",
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        ))
        assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (409, "ConditionalRequestConflict")
        faults = emu.control("GET", "/_keyfleet/faults")[1]
        assert faults["by_kind"] == {"conflict": 2}
        assert [e["action"] for e in faults["log"]] == ["PutObject", "CompleteMultipartUpload"]

        # The kind is S3's, for its two conditional writes only.
        bad = {"seed": 1, "rules": [{"service": "sqs", "kind": "conflict"}]}
        assert emu.control("POST", "/_keyfleet/faults", bad)[0] == 400
        bad = {"seed": 1, "rules": [{"service": "s3", "action": "GetObject", "kind": "conflict"}]}
        assert emu.control("POST", "/_keyfleet/faults", bad)[0] == 400
    finally:
        emu.control("DELETE", "/_keyfleet/faults")


def test_a_bucket_policy_statement_applies_only_when_its_condition_holds(emu: Emulator) -> None:
    """The TLS guard of a bucket policy (Deny ``s3:*`` to everyone when
    ``aws:SecureTransport`` is false) does not refuse a request that meets
    it: moto ignored the condition and refused every object operation with
    an empty 403. An unconditional Deny still refuses."""
    s3 = emu.client("s3")
    bucket = "keyfleet-tls-guarded"
    s3.create_bucket(Bucket=bucket)
    arns = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    guard = {
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": arns, "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [guard]}))
    s3.put_object(Bucket=bucket, Key="runs/a", Body=b"1")
    assert s3.get_object(Bucket=bucket, Key="runs/a")["Body"].read() == b"1"
    deny_all = {"Sid": "DenyDeletes", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                "Resource": arns[1]}
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [guard, deny_all]})
    )
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=bucket, Key="runs/a")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    s3.put_object(Bucket=bucket, Key="runs/b", Body=b"2")

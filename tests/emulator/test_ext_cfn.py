"""Tests of ext_cfn.py: CloudFormation mappings, role policies and in-place updates."""

from __future__ import annotations

import json
from typing import Any

from helpers import Emulator


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


def test_a_retained_resource_removed_from_the_template_stays(emu: Emulator) -> None:
    """AWS keeps a resource with ``DeletionPolicy: Retain`` when an update
    removes it from the template, as when the stack is deleted; moto 5.2.5
    honoured Retain on stack deletion only and deleted it on the update."""
    account = "900000000034"
    table = {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "Properties": {
            "TableName": "retained-state",
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        },
    }
    queue = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "retain-or-not"}}
    cfn = emu.client("cloudformation", account)
    cfn.create_stack(StackName="retain", TemplateBody=json.dumps({"Resources": {"State": table, "Queue": queue}}))
    cfn.update_stack(StackName="retain", TemplateBody=json.dumps({"Resources": {"Queue": queue}}))
    assert emu.client("dynamodb", account).list_tables()["TableNames"] == ["retained-state"]
    resources = cfn.list_stack_resources(StackName="retain")["StackResourceSummaries"]
    assert [r["LogicalResourceId"] for r in resources] == ["Queue"]
    # Without Retain the update deletes it.
    cfn.update_stack(StackName="retain", TemplateBody=json.dumps({"Resources": {"Other": dict(queue, Properties={"QueueName": "other"})}}))
    urls = emu.client("sqs", account).list_queues().get("QueueUrls", [])
    assert [u.rsplit("/", 1)[1] for u in urls] == ["other"]

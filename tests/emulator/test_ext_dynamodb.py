"""Tests of ext_dynamodb.py: a table's account from its ARN, resource
policies at CreateTable and with the table, and AWS::DynamoDB::Table as
CloudFormation (and StackSets) deploy it. Enforcement of the policies is
tested in test_iam_enforce.py (a harness of its own)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from helpers import Emulator

REGION = "us-east-1"
KEYS = {
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
}


def _table_template(statements: list[dict[str, Any]] | None, pitr: bool = True) -> dict[str, Any]:
    """The table as keyfleet's StackSet template declares it: on demand,
    PITR, SSE, a TTL attribute, a resource policy written with !Sub, kept
    when the stack goes (DeletionPolicy Retain)."""
    properties: dict[str, Any] = {
        "TableName": "keyfleet-state",
        "BillingMode": "PAY_PER_REQUEST",
        **KEYS,
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": pitr},
        "SSESpecification": {"SSEEnabled": True},
        "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
    }
    if statements is not None:
        properties["ResourcePolicy"] = {"PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "State": {
                "Type": "AWS::DynamoDB::Table",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": properties,
            }
        },
        "Outputs": {"TableArn": {"Value": {"Fn::GetAtt": ["State", "Arn"]}}},
    }


TABLE_ARN_SUB = {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/keyfleet-state"}
DENY_DELETE = {
    "Sid": "KeepTheTable",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "dynamodb:DeleteTable",
    "Resource": TABLE_ARN_SUB,
}
AGENT_ONLY = {
    "Sid": "AgentItems",
    "Effect": "Allow",
    "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/keyfleet-agent"}},
    "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
    "Resource": TABLE_ARN_SUB,
}


def _expected(account: str, *statements: dict[str, Any]) -> dict[str, Any]:
    """A statement of the template with its !Sub resolved for ``account``."""
    arn = f"arn:aws:dynamodb:{REGION}:{account}:table/keyfleet-state"
    resolved = json.loads(
        json.dumps(list(statements))
        .replace(json.dumps(TABLE_ARN_SUB), json.dumps(arn))
        .replace(
            json.dumps({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/keyfleet-agent"}),
            json.dumps(f"arn:aws:iam::{account}:role/keyfleet-agent"),
        )
    )
    return {"Version": "2012-10-17", "Statement": resolved}


def _policy(emu: Emulator, account: str) -> dict[str, Any] | None:
    ddb = emu.client("dynamodb", account)
    arn = ddb.describe_table(TableName="keyfleet-state")["Table"]["TableArn"]
    try:
        got = ddb.get_resource_policy(ResourceArn=arn)
    except ClientError as err:
        assert err.response["Error"]["Code"] == "PolicyNotFoundException", err.response
        return None
    assert got["RevisionId"]
    return json.loads(got["Policy"])


def _pitr(emu: Emulator, account: str) -> str:
    backups = emu.client("dynamodb", account).describe_continuous_backups(TableName="keyfleet-state")
    return backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]


# -- CloudFormation ---------------------------------------------------------------


def test_a_template_table_gets_its_resource_policy_pitr_sse_and_ttl(emu: Emulator) -> None:
    """moto 5.2.5 created the table but dropped ResourcePolicy,
    PointInTimeRecoverySpecification and TimeToLiveSpecification, and kept
    SSESpecification in CloudFormation's shape (SSEEnabled), so DescribeTable
    showed no encryption."""
    account = "930000000001"
    cfn = emu.client("cloudformation", account)
    cfn.create_stack(StackName="state", TemplateBody=json.dumps(_table_template([DENY_DELETE, AGENT_ONLY])))
    arn = f"arn:aws:dynamodb:{REGION}:{account}:table/keyfleet-state"
    outputs = cfn.describe_stacks(StackName="state")["Stacks"][0]["Outputs"]
    assert outputs == [{"OutputKey": "TableArn", "OutputValue": arn}]

    assert _policy(emu, account) == _expected(account, DENY_DELETE, AGENT_ONLY)
    assert _pitr(emu, account) == "ENABLED"
    ddb = emu.client("dynamodb", account)
    table = ddb.describe_table(TableName="keyfleet-state")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    managed = emu.client("kms", account).describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"]
    assert table["SSEDescription"] == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": managed}
    ttl = ddb.describe_time_to_live(TableName="keyfleet-state")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}

    # DeletionPolicy Retain: the table (and its policy) outlive the stack.
    cfn.delete_stack(StackName="state")
    assert _policy(emu, account) == _expected(account, DENY_DELETE, AGENT_ONLY)


def test_a_template_table_with_a_customer_key(emu: Emulator) -> None:
    account = "930000000002"
    key = emu.client("kms", account).create_key()["KeyMetadata"]
    emu.client("kms", account).create_alias(AliasName="alias/keyfleet-state", TargetKeyId=key["KeyId"])
    template = _table_template(None)
    template["Resources"]["State"]["Properties"]["SSESpecification"] = {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": "alias/keyfleet-state",
    }
    emu.client("cloudformation", account).create_stack(StackName="state", TemplateBody=json.dumps(template))
    table = emu.client("dynamodb", account).describe_table(TableName="keyfleet-state")["Table"]
    assert table["SSEDescription"] == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": key["Arn"]}
    assert _policy(emu, account) is None


def test_a_stack_update_applies_the_tables_new_policy_and_pitr(emu: Emulator) -> None:
    """moto 5.2.5 cannot update an AWS::DynamoDB::Table: the stack kept the
    table unchanged (ext_cfn) whatever the new template said."""
    account = "930000000003"
    cfn = emu.client("cloudformation", account)
    cfn.create_stack(StackName="state", TemplateBody=json.dumps(_table_template([DENY_DELETE])))
    ddb = emu.client("dynamodb", account)
    ddb.put_item(TableName="keyfleet-state", Item={"pk": {"S": "user#alice"}, "sk": {"S": "record"}})

    cfn.update_stack(StackName="state", TemplateBody=json.dumps(_table_template([DENY_DELETE, AGENT_ONLY], pitr=False)))
    assert _policy(emu, account) == _expected(account, DENY_DELETE, AGENT_ONLY)
    assert _pitr(emu, account) == "DISABLED"
    # Updated in place: the items are still there.
    assert ddb.get_item(TableName="keyfleet-state", Key={"pk": {"S": "user#alice"}, "sk": {"S": "record"}})["Item"]

    # A policy changed outside the stack stays while the template's does not change.
    arn = f"arn:aws:dynamodb:{REGION}:{account}:table/keyfleet-state"
    outside = {"Version": "2012-10-17", "Statement": [dict(DENY_DELETE, Resource=arn, Sid="Outside")]}
    ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(outside))
    cfn.update_stack(StackName="state", TemplateBody=json.dumps(_table_template([DENY_DELETE, AGENT_ONLY], pitr=True)))
    assert _pitr(emu, account) == "ENABLED"
    assert _policy(emu, account) == outside

    # ResourcePolicy dropped from the template: the stack deletes the policy.
    cfn.update_stack(StackName="state", TemplateBody=json.dumps(_table_template(None)))
    assert _policy(emu, account) is None


def test_stack_set_instances_get_the_table_and_policy_of_their_account(emu: Emulator) -> None:
    management, a, b = "930000000011", "930000000012", "930000000013"
    cfn = emu.client("cloudformation", management)
    cfn.create_stack_set(StackSetName="state", TemplateBody=json.dumps(_table_template([DENY_DELETE])))
    cfn.create_stack_instances(StackSetName="state", Accounts=[a, b], Regions=[REGION])
    for account in (a, b):
        assert _policy(emu, account) == _expected(account, DENY_DELETE), account
        assert _pitr(emu, account) == "ENABLED"

    operation = cfn.update_stack_set(
        StackSetName="state", TemplateBody=json.dumps(_table_template([DENY_DELETE, AGENT_ONLY]))
    )["OperationId"]
    described = cfn.describe_stack_set_operation(StackSetName="state", OperationId=operation)
    assert described["StackSetOperation"]["Status"] == "SUCCEEDED"
    for account in (a, b):
        assert _policy(emu, account) == _expected(account, DENY_DELETE, AGENT_ONLY), account


# -- the DynamoDB API ----------------------------------------------------------------


def _create(emu: Emulator, account: str, name: str, **extra: Any) -> str:
    return emu.client("dynamodb", account).create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST", **KEYS, **extra
    )["TableDescription"]["TableArn"]


def test_create_table_applies_its_resource_policy(emu: Emulator) -> None:
    """CreateTable's ResourcePolicy parameter: moto 5.2.5 ignored it."""
    account = "930000000021"
    arn = f"arn:aws:dynamodb:{REGION}:{account}:table/with-policy"
    policy = {"Version": "2012-10-17", "Statement": [dict(DENY_DELETE, Resource=arn)]}
    _create(emu, account, "with-policy", ResourcePolicy=json.dumps(policy))
    got = emu.client("dynamodb", account).get_resource_policy(ResourceArn=arn)
    assert json.loads(got["Policy"]) == policy and got["RevisionId"]


def test_a_deleted_table_takes_its_policy_along(emu: Emulator) -> None:
    """moto 5.2.5 kept the policy of a deleted table and gave it to the next
    table of that name."""
    account = "930000000022"
    ddb = emu.client("dynamodb", account)
    arn = _create(emu, account, "short-lived")
    ddb.put_resource_policy(
        ResourceArn=arn, Policy=json.dumps({"Version": "2012-10-17", "Statement": [dict(DENY_DELETE, Resource=arn)]})
    )
    ddb.delete_table(TableName="short-lived")
    _create(emu, account, "short-lived")
    with pytest.raises(ClientError) as info:
        ddb.get_resource_policy(ResourceArn=arn)
    assert info.value.response["Error"]["Code"] == "PolicyNotFoundException"


def test_a_table_arn_of_another_account_addresses_that_account(emu: Emulator) -> None:
    """AWS takes a table ARN as TableName (and ResourceArn) and, for the
    operations it serves across accounts, acts on the table of the account
    in it; moto 5.2.5 looked in the caller's account and answered
    ResourceNotFoundException. (Whether the caller may is the table
    policy's business: test_iam_enforce.py.)"""
    owner, caller = "930000000031", "930000000032"
    arn = _create(emu, owner, "shared")
    other = _create(emu, owner, "shared-2")
    ddb = emu.client("dynamodb", caller)
    key = {"pk": {"S": "user#bob"}, "sk": {"S": "lease"}}
    ddb.put_item(TableName=arn, Item={**key, "holder": {"S": "run-1"}})
    assert ddb.get_item(TableName=arn, Key=key)["Item"]["holder"] == {"S": "run-1"}
    assert emu.client("dynamodb", owner).get_item(TableName="shared", Key=key)["Item"]["holder"] == {"S": "run-1"}
    assert ddb.describe_table(TableName=arn)["Table"]["TableArn"] == arn
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "owner", "Value": "keyfleet"}])
    assert emu.client("dynamodb", owner).list_tags_of_resource(ResourceArn=arn)["Tags"] == [
        {"Key": "owner", "Value": "keyfleet"}
    ]
    got = ddb.batch_get_item(RequestItems={arn: {"Keys": [key]}})
    assert got["Responses"][arn][0]["holder"] == {"S": "run-1"}
    # A transaction across the owner's tables by ARN is all or nothing: the
    # failed condition undoes the first write (moto kept its backup by name only).
    with pytest.raises(ClientError) as info:
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": other, "Item": {"pk": {"S": "user#bob"}, "sk": {"S": "record"}}}},
                {
                    "Update": {
                        "TableName": arn,
                        "Key": key,
                        "UpdateExpression": "SET holder = :new",
                        "ConditionExpression": "holder = :expected",
                        "ExpressionAttributeValues": {":new": {"S": "run-2"}, ":expected": {"S": "run-0"}},
                    }
                },
            ]
        )
    assert info.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "Item" not in emu.client("dynamodb", owner).get_item(
        TableName="shared-2", Key={"pk": {"S": "user#bob"}, "sk": {"S": "record"}}
    )
    # The caller's own account has no such table.
    with pytest.raises(ClientError) as info:
        ddb.describe_table(TableName="shared")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # Resource policies, PITR and TTL are the owner's own business: AWS serves
    # them in the caller's account only, where the ARN names no table (even
    # when the caller has a table of that name).
    _create(emu, caller, "shared")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [dict(DENY_DELETE, Resource=arn)]})
    for call in (
        lambda: ddb.put_resource_policy(ResourceArn=arn, Policy=policy),
        lambda: ddb.get_resource_policy(ResourceArn=arn),
        lambda: ddb.update_continuous_backups(
            TableName=arn, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        ),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] in ("ResourceNotFoundException", "TableNotFoundException")
    with pytest.raises(ClientError) as info:
        emu.client("dynamodb", owner).get_resource_policy(ResourceArn=arn)
    assert info.value.response["Error"]["Code"] == "PolicyNotFoundException"

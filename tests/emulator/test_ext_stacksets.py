"""Tests of ext_stacksets.py: stack set auto-deployment and updates."""

from __future__ import annotations

import json
from typing import Any

from helpers import Emulator, STACKSET_TEMPLATE, _zip_bytes


# -- StackSets auto-deployment -----------------------------------------------

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

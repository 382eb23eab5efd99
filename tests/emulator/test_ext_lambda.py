"""Tests of ext_lambda.py: SQS event source mappings of functions the
harness does not run stay parked (provided.* delivery: test_lambda_delivery.py)."""

from __future__ import annotations

import json

import pytest

from helpers import Emulator, STACKSET_TEMPLATE, _zip_bytes


# -- Lambda event source mappings --------------------------------------------


# Mappings of functions the harness does not run stay parked: another runtime
# (moto would need Docker). provided.* functions are delivered: see
# test_lambda_delivery.py.
@pytest.mark.parametrize(
    "account,runtime,with_bootstrap",
    [("800000000001", "python3.12", True)],
    ids=["other-runtime"],
)
def test_sqs_event_source_mapping_leaves_messages_in_the_queue(
    emu: Emulator, account: str, runtime: str, with_bootstrap: bool
) -> None:
    sqs = emu.client("sqs", account)
    lam = emu.client("lambda", account)
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="jobs",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = emu.client("iam", account).create_role(
        RoleName="agent",
        AssumeRolePolicyDocument=json.dumps(STACKSET_TEMPLATE["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"]),
    )["Role"]["Arn"]
    fn = lam.create_function(
        FunctionName="agent",
        Runtime=runtime,
        Handler="bootstrap",
        Role=role,
        Code={"ZipFile": _zip_bytes(with_bootstrap)},
    )
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn["FunctionArn"], BatchSize=10)
    assert len(lam.list_event_source_mappings()["EventSourceMappings"]) == 1

    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"job-{i}")
    got = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert sorted(m["Body"] for m in got) == [f"job-{i}" for i in range(5)]
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in got} == {"1"}
    dlq_count = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert dlq_count["Attributes"]["ApproximateNumberOfMessages"] == "0"
    (row,) = [r for r in emu.control("GET", "/_keyfleet/lambda/mappings")[1]["mappings"] if r["account"] == account]
    assert row["delivering"] is False and "parked" in row["reason"]
    assert row["batches"] == 0

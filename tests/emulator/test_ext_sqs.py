"""Tests of ext_sqs.py: SQS acts on the account of the QueueUrl."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from helpers import Emulator, REGION, _signed_query


# -- SQS: account from the QueueUrl ------------------------------------------


def test_sqs_cross_account_json_protocol(emu: Emulator) -> None:
    owner, sender = "400000000001", "400000000002"
    sqs_owner = emu.client("sqs", owner)
    sqs_sender = emu.client("sqs", sender)
    assert sqs_sender.meta.service_model.protocol == "json"  # x-amz-target: AmazonSQS.*

    url = sqs_owner.create_queue(QueueName="keyfleet-jobs")["QueueUrl"]
    assert url == f"{emu.endpoint}/{owner}/keyfleet-jobs"

    sqs_sender.send_message(QueueUrl=url, MessageBody="job-1")
    # The production form of the URL works against the emulator too (only the
    # account and queue name in the path matter).
    aws_url = f"https://sqs.{REGION}.amazonaws.com/{owner}/keyfleet-jobs"
    batch = sqs_sender.send_message_batch(
        QueueUrl=aws_url,
        Entries=[{"Id": "a", "MessageBody": "job-2"}, {"Id": "b", "MessageBody": "job-3"}],
    )
    assert len(batch["Successful"]) == 2 and not batch.get("Failed")

    # Nothing landed in a queue of the sender's own account.
    assert sqs_sender.list_queues().get("QueueUrls", []) == []
    attrs = sqs_sender.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    assert attrs["Attributes"]["QueueArn"] == f"arn:aws:sqs:{REGION}:{owner}:keyfleet-jobs"

    got = sqs_owner.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    bodies = sorted(m["Body"] for m in got["Messages"])
    assert bodies == ["job-1", "job-2", "job-3"]

    # The sender can work the owner's queue too (receive, change visibility, delete).
    first = got["Messages"][0]
    sqs_sender.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    again = sqs_sender.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again] == [first["Body"]]
    sqs_sender.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])
    deleted = sqs_sender.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(got["Messages"][1:])
        ],
    )
    assert len(deleted["Successful"]) == 2 and not deleted.get("Failed")
    left = sqs_owner.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert left == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_sqs_get_queue_url_with_owner_account(emu: Emulator) -> None:
    owner, sender = "400000000011", "400000000012"
    url = emu.client("sqs", owner).create_queue(QueueName="keyfleet-results")["QueueUrl"]
    sqs_sender = emu.client("sqs", sender)
    found = sqs_sender.get_queue_url(QueueName="keyfleet-results", QueueOwnerAWSAccountId=owner)
    assert found["QueueUrl"] == url
    with pytest.raises(ClientError) as err:
        sqs_sender.get_queue_url(QueueName="keyfleet-results")
    assert "NonExistentQueue" in err.value.response["Error"]["Code"]


def test_sqs_cross_account_query_protocol(emu: Emulator) -> None:
    owner, sender = "400000000021", "400000000022"
    sqs_owner = emu.client("sqs", owner)
    url = sqs_owner.create_queue(QueueName="legacy")["QueueUrl"]
    # QueueUrl as a form parameter, posted to the service endpoint.
    xml = _signed_query(
        emu,
        sender,
        "/",
        {"Action": "SendMessage", "Version": "2012-11-05", "QueueUrl": url, "MessageBody": "q-1"},
    )
    assert "<SendMessageResponse" in xml and "<MessageId>" in xml
    # Older SDKs post to the queue URL itself.
    xml = _signed_query(
        emu,
        sender,
        f"/{owner}/legacy",
        {"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "q-2"},
    )
    assert "<SendMessageResponse" in xml
    got = sqs_owner.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["q-1", "q-2"]

"""Tests of ext_messages.py: the log of SQS and SNS messages sent."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from helpers import Emulator, _signed_query


# -- message log -------------------------------------------------------------


def test_message_log_keeps_every_sqs_send_and_sns_publish(emu: Emulator) -> None:
    account, sender = "920000000001", "920000000002"
    sqs = emu.client("sqs", account)
    sns = emu.client("sns", account)
    url = sqs.create_queue(QueueName="kf-log")["QueueUrl"]
    path = f"/{account}/kf-log"

    sqs.send_message(QueueUrl=url, MessageBody="single")  # JSON protocol
    batch = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "batch-a"},
            {"Id": "late", "MessageBody": "refused", "DelaySeconds": 901},  # moto fails this entry
            {"Id": "b", "MessageBody": "batch-b"},
        ],
    )
    assert [e["Id"] for e in batch["Successful"]] == ["a", "b"]
    assert [e["Id"] for e in batch["Failed"]] == ["late"]
    # query protocol, posted to the queue URL, by another account (cross-account queue)
    _signed_query(emu, sender, path, {"Action": "SendMessage", "Version": "2012-11-05",
                                       "MessageBody": "query"})
    _signed_query(emu, sender, "/", {"Action": "SendMessageBatch", "Version": "2012-11-05",
                                     "QueueUrl": url,
                                     "SendMessageBatchRequestEntry.1.Id": "q",
                                     "SendMessageBatchRequestEntry.1.MessageBody": "query-batch"})
    with pytest.raises(ClientError):  # refused by moto: not logged
        sqs.send_message(QueueUrl=url.replace("kf-log", "kf-log-missing"), MessageBody="lost")

    topic = sns.create_topic(Name="kf-log-topic")["TopicArn"]
    sub_url = sqs.create_queue(QueueName="kf-log-sub")["QueueUrl"]
    sub_arn = sqs.get_queue_attributes(QueueUrl=sub_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sub_arn)
    sns.publish(TopicArn=topic, Subject="Rotated", Message="published")
    sns.publish(TopicArn=topic, Message="no subject")
    delivered = sqs.receive_message(QueueUrl=sub_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(json.loads(m["Body"])["Message"] for m in delivered) == ["no subject", "published"]

    # Consumed and deleted: still in the log.
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 5
    for queue, messages in ((sub_url, delivered), (url, received)):
        for m in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    status, log = emu.control("GET", "/_keyfleet/messages")
    assert status == 200 and set(log) == {"sqs", "sns"}
    mine = [m for m in log["sqs"] if m["queue"].startswith(f"/{account}/")]
    # Nothing for kf-log-sub: SNS's deliveries are the Publish already logged.
    assert mine == [
        {"queue": path, "body": "single", "account": account},
        {"queue": path, "body": "batch-a", "account": account},
        {"queue": path, "body": "batch-b", "account": account},
        {"queue": path, "body": "query", "account": sender},
        {"queue": path, "body": "query-batch", "account": sender},
    ]
    assert [m for m in log["sns"] if m["topic"] == topic] == [
        {"topic": topic, "subject": "Rotated", "message": "published"},
        {"topic": topic, "subject": None, "message": "no subject"},
    ]

    status, body = emu.control("DELETE", "/_keyfleet/messages")
    assert status == 200 and body["ok"] is True and body["cleared"] >= 7
    status, log = emu.control("GET", "/_keyfleet/messages")
    assert status == 200
    assert not [m for m in log["sqs"] if m["queue"].startswith(f"/{account}/")]
    assert not [m for m in log["sns"] if m["topic"] == topic]
    assert emu.control("POST", "/_keyfleet/messages", {})[0] == 405

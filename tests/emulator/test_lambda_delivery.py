"""Lambda delivery in the harness: SQS event source mappings (ext_lambda_esm.py),
asynchronous invocation (ext_lambda_async.py), EventBridge rules fired on demand
(ext_events.py), the invocation log and settle (ext_lambda_exec.py).

A harness of its own, started with ``--lambda-max-processes 3`` (the
harness-wide cap is tested here) and with IAM enforcement switched on by some
tests. Functions are small Python bootstraps. Nothing waits on time: tests
synchronise on ``POST /_keyfleet/lambda/settle``, and bootstraps that must stay
running block on a Unix socket the test holds (``Gate``) until released.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import zipfile
from typing import Any, Iterator

import pytest

from helpers import REGION, Emulator, read_port, start_harness

MAX_PROCESSES = 3
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}

# One bootstrap for every test. Its instructions are the event itself (Invoke,
# EventBridge) or the JSON body of the first SQS record:
#   mode: ok | fail | hang | raw (answer "response" verbatim) | rbif (report
#         the records whose body has "fail": true as batch item failures)
#   gate: Unix socket to connect to; blocks until the test sends a byte
#   fail_unless: fail unless this file exists (and create it), so a retry passes
# KF_OUT: directory for a copy of each event; KF_COUNTER: file counting the
# bootstraps running at once (under flock), with the maximum seen.
# The shebang names this interpreter directly (a version-manager shim on PATH
# would add a tenth of a second to every invocation).
BOOTSTRAP = "#!" + sys.executable + r'''
import fcntl, json, os, socket, threading, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
with urllib.request.urlopen(api + "/invocation/next") as r:
    event = json.loads(r.read())
    rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
records = event.get("Records") if isinstance(event, dict) else None
orders = [json.loads(rec["body"]) for rec in records] if records else []
order = orders[0] if orders else (event if isinstance(event, dict) else {})
print("kf-delivery", rid, "records", len(records or []), flush=True)

out = os.environ.get("KF_OUT")
if out:
    with open(os.path.join(out, rid + "." + str(os.getpid()) + ".json"), "w") as f:
        json.dump({"event": event, "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}, f)

counter = os.environ.get("KF_COUNTER")
def count(delta):
    with open(counter, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        state = json.loads(f.read() or '{"now": 0, "max": 0}')
        state["now"] += delta
        state["max"] = max(state["max"], state["now"])
        f.seek(0)
        f.truncate()
        f.write(json.dumps(state))
if counter:
    count(1)

if order.get("gate"):
    s = socket.socket(socket.AF_UNIX)
    s.connect(order["gate"])
    s.sendall(rid.encode())
    s.recv(16)

mode = order.get("mode", "ok")
if mode == "hang":
    threading.Event().wait()
marker = order.get("fail_unless")
if marker and not os.path.exists(marker):
    open(marker, "w").close()
    mode = "fail"
if counter:
    count(-1)
if mode == "fail":
    path = "/error"
    body = json.dumps({"errorMessage": order.get("message", "boom"), "errorType": "KeyfleetError"})
elif mode == "raw":
    path, body = "/response", order["response"]
elif mode == "rbif":
    failures = [{"itemIdentifier": rec["messageId"]} for rec, o in zip(records, orders) if o.get("fail")]
    path, body = "/response", json.dumps({"batchItemFailures": failures})
else:
    path, body = "/response", json.dumps({"ok": True})
req = urllib.request.Request(api + "/invocation/" + rid + path, data=body.encode(), method="POST")
if path == "/error":
    req.add_header("Lambda-Runtime-Function-Error-Type", "KeyfleetError")
urllib.request.urlopen(req).read()
'''


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16  # executable, as Lambda requires
        zf.writestr(info, BOOTSTRAP)
    return buf.getvalue()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "port")
        proc = start_harness(
            ready, "--parent-pid", str(os.getpid()), "--lambda-max-processes", str(MAX_PROCESSES)
        )
        port = read_port(ready, proc)
        try:
            yield Emulator(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            proc.stdout.close()


@pytest.fixture
def work() -> Iterator[str]:
    """A short directory (Unix socket paths are limited to ~100 characters)."""
    path = tempfile.mkdtemp(prefix="kfd")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def enforced(emu: Emulator) -> Iterator[None]:
    assert emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": True})[0] == 200
    try:
        yield
    finally:
        emu.control("POST", "/_keyfleet/iam/enforce", {"enabled": False})


class Gate:
    """A Unix socket that gated bootstraps connect to and block on."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "gate")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.path)
        self.server.listen(16)
        self.server.settimeout(60)  # only so that a broken harness fails the test

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        conn.settimeout(60)
        assert conn.recv(64)  # the request id: the bootstrap is running
        return conn

    @staticmethod
    def release(conns: list[socket.socket]) -> None:
        for conn in conns:
            conn.sendall(b"go")
            conn.close()

    def close(self) -> None:
        self.server.close()


# -- helpers -----------------------------------------------------------------------


def settle(emu: Emulator, account: str | None = None, timeout: float = 60) -> None:
    body: dict[str, Any] = {"timeout": timeout}
    if account:
        body["accounts"] = [account]
    assert emu.control("POST", "/_keyfleet/lambda/settle", body) == (200, {"ok": True, "settled": True})


def invocations(emu: Emulator, function_arn: str) -> list[dict[str, Any]]:
    status, body = emu.control("GET", "/_keyfleet/lambda/invocations")
    assert status == 200
    return [e for e in body["invocations"] if e["function_arn"] == function_arn]


def mapping_row(emu: Emulator, mapping_uuid: str) -> dict[str, Any]:
    status, body = emu.control("GET", "/_keyfleet/lambda/mappings")
    assert status == 200
    (row,) = [r for r in body["mappings"] if r["uuid"] == mapping_uuid]
    return row


def make_function(
    emu: Emulator,
    account: str,
    name: str,
    *,
    role: str = "kf-delivery-role",
    policy: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: int = 30,
    **extra: Any,
) -> dict[str, Any]:
    iam = emu.client("iam", account)
    try:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    if policy is not None:
        iam.put_role_policy(RoleName=role, PolicyName="fn", PolicyDocument=json.dumps(policy))
    lam = emu.client("lambda", account)
    created = lam.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=f"arn:aws:iam::{account}:role/{role}",
        Handler="bootstrap",
        Code={"ZipFile": _zip()},
        Timeout=timeout,
        Environment={"Variables": env or {}},
        **extra,
    )
    return {"lam": lam, "arn": created["FunctionArn"], "name": name}


def make_queue(emu: Emulator, account: str, name: str, **attributes: str) -> dict[str, str]:
    sqs = emu.client("sqs", account)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"url": url, "arn": arn}


def counts(emu: Emulator, account: str, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = emu.client("sqs", account).get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def events_in(directory: str) -> list[dict[str, Any]]:
    found = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as fh:
                found.append(json.load(fh))
    return found


def send(emu: Emulator, account: str, url: str, *orders: dict[str, Any], **kwargs: Any) -> list[str]:
    sqs = emu.client("sqs", account)
    return [sqs.send_message(QueueUrl=url, MessageBody=json.dumps(o), **kwargs)["MessageId"] for o in orders]


# -- SQS event source mappings ---------------------------------------------------------


def test_sqs_batch_is_delivered_as_the_sqs_event_and_deleted(emu: Emulator, work: str) -> None:
    account = "510000000001"
    out = os.path.join(work, "out")
    os.mkdir(out)
    fn = make_function(emu, account, "kf-batch", env={"KF_OUT": out})
    queue = make_queue(emu, account, "jobs")
    mapping = fn["lam"].create_event_source_mapping(
        EventSourceArn=queue["arn"], FunctionName=fn["arn"], BatchSize=10, Enabled=False
    )
    # Without ReportBatchItemFailures the response is not read: all are deleted.
    ids = send(emu, account, queue["url"], {"mode": "rbif"}, {"fail": True})
    ids += send(
        emu, account, queue["url"], {"n": 3},
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "rotate"}},
    )

    settle(emu, account)  # a disabled mapping delivers nothing
    assert counts(emu, account, queue["url"]) == (3, 0)
    assert invocations(emu, fn["arn"]) == []
    assert mapping_row(emu, mapping["UUID"])["reason"] == "disabled"

    fn["lam"].update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    settle(emu, account)
    assert counts(emu, account, queue["url"]) == (0, 0)

    (entry,) = invocations(emu, fn["arn"])
    assert entry["source"] == "sqs" and entry["status"] == "ok" and entry["attempt"] == 1
    assert entry["batch_size"] == 3 and entry["failed_items"] == []
    assert entry["mapping"] == mapping["UUID"] and entry["account"] == account
    assert entry["max_rss_kib"] > 1000  # a Python process
    assert "kf-delivery" in entry["log_tail"] and entry["logs"] == "written"

    ((got),) = events_in(out)
    records = got["event"]["Records"]
    assert sorted(r["messageId"] for r in records) == sorted(ids)
    for record in records:
        assert set(record) >= {
            "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
            "md5OfBody", "eventSource", "eventSourceARN", "awsRegion",
        }
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == queue["arn"] and record["awsRegion"] == REGION
        attrs = record["attributes"]
        assert attrs["ApproximateReceiveCount"] == "1"
        assert set(attrs) == {
            "ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp",
        }
        assert all(isinstance(v, str) for v in attrs.values())
    with_attrs = next(r for r in records if r["messageAttributes"])
    assert with_attrs["messageAttributes"] == {
        "kind": {"stringValue": "rotate", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    }
    assert len(with_attrs["md5OfMessageAttributes"]) == 32

    row = mapping_row(emu, mapping["UUID"])
    assert row["delivering"] is True and row["batches"] == 1
    assert row["messages_received"] == 3 and row["messages_deleted"] == 3
    assert row["maximum_concurrency"] == 5  # the default without ScalingConfig
    config = fn["lam"].get_event_source_mapping(UUID=mapping["UUID"])
    assert config["LastProcessingResult"] == "OK"

    # The output went to CloudWatch Logs, in the stream the function was told.
    logs = emu.client("logs", account)
    lines = logs.get_log_events(logGroupName="/aws/lambda/kf-batch", logStreamName=got["stream"])["events"]
    assert any("kf-delivery" in e["message"] for e in lines)
    assert entry["log_stream"] == got["stream"]


def test_sqs_report_batch_item_failures_visible_endpoint_and_redrive(emu: Emulator, work: str) -> None:
    account = "510000000002"
    fn = make_function(emu, account, "kf-rbif")
    dlq = make_queue(emu, account, "jobs-dlq")
    queue = make_queue(
        emu, account, "jobs",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq["arn"], "maxReceiveCount": 2}),
    )
    mapping = fn["lam"].create_event_source_mapping(
        EventSourceArn=queue["arn"], FunctionName=fn["arn"], BatchSize=10, Enabled=False,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    ok1, failing, ok2 = send(
        emu, account, queue["url"], {"mode": "rbif"}, {"mode": "rbif", "fail": True}, {"mode": "rbif"}
    )
    fn["lam"].update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    settle(emu, account)

    (first,) = invocations(emu, fn["arn"])
    assert first["batch_size"] == 3 and first["failed_items"] == [failing]
    assert counts(emu, account, queue["url"]) == (0, 1)  # the failed one is in flight

    # Visible now (not after the 30 s visibility timeout), receive count untouched.
    assert emu.control("POST", "/_keyfleet/sqs/visible", {"queue_url": queue["url"]}) == (
        200, {"ok": True, "made_visible": 1},
    )
    settle(emu, account)
    second = invocations(emu, fn["arn"])[1]
    assert second["attempt"] == 2 and second["batch_size"] == 1 and second["failed_items"] == [failing]
    assert counts(emu, account, queue["url"]) == (0, 1)

    # maxReceiveCount 2 reached: the next receive moves it to the DLQ (moto's redrive).
    assert emu.control("POST", "/_keyfleet/sqs/visible", {"queue_arn": queue["arn"]})[1]["made_visible"] == 1
    settle(emu, account)
    assert len(invocations(emu, fn["arn"])) == 2
    assert counts(emu, account, queue["url"]) == (0, 0)
    dead = emu.client("sqs", account).receive_message(QueueUrl=dlq["url"], MaxNumberOfMessages=10)["Messages"]
    assert [m["MessageId"] for m in dead] == [failing]
    assert fn["lam"].get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"] == "OK"
    row = mapping_row(emu, mapping["UUID"])
    assert row["messages_deleted"] == 2 and row["batches"] == 2


def test_sqs_function_without_bootstrap_fails_every_batch_into_the_dlq(emu: Emulator) -> None:
    """Lambda cannot start a provided.* function whose zip has no bootstrap
    (Runtime.InvalidEntrypoint): each delivery fails, and after
    maxReceiveCount the message is in the DLQ."""
    account = "510000000009"
    iam = emu.client("iam", account)
    iam.create_role(RoleName="kf-nobootstrap", AssumeRolePolicyDocument=json.dumps(TRUST))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README", "no bootstrap here")
    lam = emu.client("lambda", account)
    fn = lam.create_function(
        FunctionName="kf-nobootstrap", Runtime="provided.al2023", Handler="bootstrap",
        Role=f"arn:aws:iam::{account}:role/kf-nobootstrap", Code={"ZipFile": buf.getvalue()},
    )["FunctionArn"]
    dlq = make_queue(emu, account, "jobs-dlq")
    queue = make_queue(
        emu, account, "jobs",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq["arn"], "maxReceiveCount": 2}),
    )
    lam.create_event_source_mapping(EventSourceArn=queue["arn"], FunctionName=fn, BatchSize=10)
    (sent,) = send(emu, account, queue["url"], {"mode": "ok"})
    settle(emu, account)
    (first,) = invocations(emu, fn)
    assert (first["status"], first["error_type"]) == ("error", "Runtime.InvalidEntrypoint")
    assert counts(emu, account, queue["url"]) == (0, 1)
    for _ in range(2):
        assert emu.control("POST", "/_keyfleet/sqs/visible", {"queue_url": queue["url"]})[1]["made_visible"] == 1
        settle(emu, account)
    assert len(invocations(emu, fn)) == 2
    dead = emu.client("sqs", account).receive_message(QueueUrl=dlq["url"])["Messages"]
    assert [m["MessageId"] for m in dead] == [sent]


def test_sqs_batch_item_failures_responses(emu: Emulator) -> None:
    """Which responses delete the message (batch processed) and which keep it (whole batch failed)."""
    account = "510000000003"
    fn = make_function(emu, account, "kf-responses")
    queue = make_queue(emu, account, "jobs")
    mapping = fn["lam"].create_event_source_mapping(
        EventSourceArn=queue["arn"], FunctionName=fn["arn"], BatchSize=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    cases = [
        ("", True),
        ("null", True),
        ("{}", True),
        ('{"batchItemFailures": []}', True),
        ('{"batchItemFailures": null}', True),
        ('{"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]}', False),
        ('{"batchItemFailures": [{"itemIdentifier": ""}]}', False),
        ('{"batchItemFailures": [{"itemIdentifier": null}]}', False),
        ('{"batchItemFailures": [{"messageId": "x"}]}', False),
        ('{"batchItemFailures": "all"}', False),
        ('"done"', False),
        ("not json", False),
    ]
    sent = {
        send(emu, account, queue["url"], {"mode": "raw", "response": response})[0]: (response, deleted)
        for response, deleted in cases
    }
    settle(emu, account)
    entries = invocations(emu, fn["arn"])
    assert sorted(e["message_ids"][0] for e in entries) == sorted(sent)
    for entry in entries:
        (message_id,) = entry["message_ids"]
        response, deleted = sent[message_id]
        assert entry["status"] == "ok", response
        assert entry["failed_items"] == ([] if deleted else [message_id]), response
        assert (entry["problem"] is None) == deleted, (response, entry["problem"])
    assert counts(emu, account, queue["url"]) == (0, sum(1 for _, deleted in cases if not deleted))
    fn["lam"].delete_event_source_mapping(UUID=mapping["UUID"])  # no redelivery in later tests


def test_sqs_function_error_and_timeout_keep_the_whole_batch(emu: Emulator) -> None:
    account = "510000000004"
    # The failing function has time to answer however slow the machine is;
    # only the one that never answers has a short timeout.
    fn = make_function(emu, account, "kf-fails", timeout=30)
    queue = make_queue(emu, account, "jobs")
    mapping = fn["lam"].create_event_source_mapping(
        EventSourceArn=queue["arn"], FunctionName=fn["arn"], BatchSize=10, Enabled=False,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    send(emu, account, queue["url"], {"mode": "fail"}, {"mode": "ok"})
    fn["lam"].update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    settle(emu, account)
    (failed,) = invocations(emu, fn["arn"])
    assert failed["status"] == "error" and failed["error_type"] == "KeyfleetError"
    assert len(failed["failed_items"]) == 2
    assert counts(emu, account, queue["url"]) == (0, 2)
    assert fn["lam"].get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"] == (
        "PROBLEM: Function call failed"
    )
    fn["lam"].delete_event_source_mapping(UUID=mapping["UUID"])  # no redelivery in later tests

    hangs = make_function(emu, account, "kf-hangs", timeout=1)
    slow = make_queue(emu, account, "slow-jobs")
    mapping = hangs["lam"].create_event_source_mapping(
        EventSourceArn=slow["arn"], FunctionName=hangs["arn"], BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    send(emu, account, slow["url"], {"mode": "hang"})
    settle(emu, account)
    (timed_out,) = invocations(emu, hangs["arn"])
    assert timed_out["status"] == "timeout" and timed_out["error_type"] == "Sandbox.Timedout"
    assert counts(emu, account, slow["url"]) == (0, 1)
    hangs["lam"].delete_event_source_mapping(UUID=mapping["UUID"])  # no redelivery in later tests


def test_mapping_maximum_concurrency_is_respected(emu: Emulator, work: str) -> None:
    account = "510000000005"
    counter = os.path.join(work, "counter")
    fn = make_function(emu, account, "kf-concurrency", env={"KF_COUNTER": counter})
    queue = make_queue(emu, account, "jobs")
    gate = Gate(work)
    try:
        mapping = fn["lam"].create_event_source_mapping(
            EventSourceArn=queue["arn"], FunctionName=fn["arn"], BatchSize=1,
            ScalingConfig={"MaximumConcurrency": 2},
        )
        total = 5
        send(emu, account, queue["url"], *[{"gate": gate.path} for _ in range(total)])
        handled, running = 0, []
        while handled < total:
            running.append(gate.accept())
            if len(running) == 2 or handled + len(running) == total:
                assert mapping_row(emu, mapping["UUID"])["running"] == len(running)
                Gate.release(running)
                handled += len(running)
                running = []
    finally:
        gate.close()
    settle(emu, account)
    row = mapping_row(emu, mapping["UUID"])
    assert row["maximum_concurrency"] == 2 and row["peak_concurrency"] == 2
    assert row["batches"] == total and row["messages_deleted"] == total
    with open(counter) as fh:
        assert json.load(fh) == {"now": 0, "max": 2}  # as the bootstraps saw it
    assert counts(emu, account, queue["url"]) == (0, 0)


def test_harness_wide_process_cap(emu: Emulator, work: str) -> None:
    """Default mapping concurrency 5, but only MAX_PROCESSES bootstraps at once."""
    account = "510000000006"
    counter = os.path.join(work, "counter")
    fn = make_function(emu, account, "kf-cap", env={"KF_COUNTER": counter})
    queue = make_queue(emu, account, "jobs")
    gate = Gate(work)
    try:
        mapping = fn["lam"].create_event_source_mapping(
            EventSourceArn=queue["arn"], FunctionName=fn["arn"], BatchSize=1
        )
        total = 6
        send(emu, account, queue["url"], *[{"gate": gate.path} for _ in range(total)])
        for _ in range(total // MAX_PROCESSES):
            running = [gate.accept() for _ in range(MAX_PROCESSES)]
            stats = emu.control("GET", "/_keyfleet/lambda/mappings")[1]
            assert stats["running_processes"] == MAX_PROCESSES
            Gate.release(running)
    finally:
        gate.close()
    settle(emu, account)
    stats = emu.control("GET", "/_keyfleet/lambda/mappings")[1]
    assert stats["max_processes"] == MAX_PROCESSES and stats["peak_processes"] == MAX_PROCESSES
    assert stats["default_maximum_concurrency"] == 5
    row = mapping_row(emu, mapping["UUID"])
    assert row["maximum_concurrency"] == 5 and row["peak_concurrency"] == MAX_PROCESSES
    assert row["messages_deleted"] == total
    with open(counter) as fh:
        assert json.load(fh) == {"now": 0, "max": MAX_PROCESSES}


# -- asynchronous invocation ---------------------------------------------------------------


def test_async_invoke_answers_at_once_then_retries_until_success(emu: Emulator, work: str) -> None:
    account = "510000000007"
    fn = make_function(emu, account, "kf-async-retry")
    gate = Gate(work)
    marker = os.path.join(work, "failed-once")
    try:
        resp = fn["lam"].invoke(
            FunctionName=fn["name"],
            InvocationType="Event",
            Payload=json.dumps({"gate": gate.path, "fail_unless": marker}).encode(),
        )
        assert resp["StatusCode"] == 202 and resp["Payload"].read() == b""
        first = gate.accept()  # running, while the Invoke has long answered

        status, body = emu.control(
            "POST", "/_keyfleet/lambda/settle", {"timeout": 0.2, "accounts": [account]}
        )
        assert status == 408 and body["settled"] is False and body["ok"] is False
        assert any(fn["arn"] in item and "running" in item for item in body["busy"])
        settle(emu, "510000000099")  # other accounts are settled meanwhile

        Gate.release([first])  # attempt 1 fails (and leaves the marker)
        Gate.release([gate.accept()])  # attempt 2, the retry, succeeds
    finally:
        gate.close()
    settle(emu, account)
    entries = invocations(emu, fn["arn"])
    assert [(e["attempt"], e["status"], e["source"]) for e in entries] == [(1, "error", "event"), (2, "ok", "event")]
    assert entries[0]["request_id"] == entries[1]["request_id"]  # retries keep the request id
    assert entries[0]["error_type"] == "KeyfleetError" and entries[1]["dead_letter"] is None


def test_async_invoke_dead_letter_queue_after_the_last_retry(emu: Emulator) -> None:
    account = "510000000008"
    dlq = make_queue(emu, account, "fn-dlq")
    fn = make_function(emu, account, "kf-async-dlq", DeadLetterConfig={"TargetArn": dlq["arn"]})
    assert fn["lam"].get_function_configuration(FunctionName=fn["name"])["DeadLetterConfig"] == {
        "TargetArn": dlq["arn"]
    }
    fn["lam"].put_function_event_invoke_config(FunctionName=fn["name"], MaximumRetryAttempts=0)
    fn["lam"].put_function_event_invoke_config(FunctionName=fn["name"], MaximumRetryAttempts=1)  # replaces
    assert fn["lam"].get_function_event_invoke_config(FunctionName=fn["name"])["MaximumRetryAttempts"] == 1

    payload = json.dumps({"mode": "fail", "message": "no keys today"})
    assert fn["lam"].invoke(FunctionName=fn["name"], InvocationType="Event", Payload=payload)["StatusCode"] == 202
    settle(emu, account)

    entries = invocations(emu, fn["arn"])
    assert [(e["attempt"], e["status"]) for e in entries] == [(1, "error"), (2, "error")]
    dead_letter = entries[-1]["dead_letter"]
    assert dead_letter["status"] == "sent" and dead_letter["target_arn"] == dlq["arn"]
    (message,) = emu.client("sqs", account).receive_message(
        QueueUrl=dlq["url"], MessageAttributeNames=["All"]
    )["Messages"]
    assert message["Body"] == payload and message["MessageId"] == dead_letter["message_id"]
    assert message["MessageAttributes"] == {
        "RequestID": {"StringValue": entries[0]["request_id"], "DataType": "String"},
        "ErrorCode": {"StringValue": "200", "DataType": "Number"},
        "ErrorMessage": {"StringValue": "no keys today", "DataType": "String"},
    }
    # Lambda's own send is in the message log too (as the queue's account).
    log = emu.control("GET", "/_keyfleet/messages")[1]["sqs"]
    assert [m for m in log if m["queue"] == f"/{account}/fn-dlq"] == [
        {"queue": f"/{account}/fn-dlq", "body": payload, "account": account}
    ]


# -- EventBridge -------------------------------------------------------------------------------


def test_events_fire_invokes_the_rules_lambda_targets(emu: Emulator, work: str) -> None:
    account = "510000000009"
    out = os.path.join(work, "out")
    os.mkdir(out)
    fn = make_function(emu, account, "kf-coordinator", env={"KF_OUT": out})
    queue = make_queue(emu, account, "events-target")
    target_dlq = make_queue(emu, account, "events-dlq")
    missing = f"arn:aws:lambda:{REGION}:{account}:function:not-there"
    events = emu.client("events", account)
    rule_arn = events.put_rule(Name="keyfleet-start", ScheduleExpression="rate(1 day)")["RuleArn"]
    events.put_targets(
        Rule="keyfleet-start",
        Targets=[
            {"Id": "start", "Arn": fn["arn"], "Input": json.dumps({"action": "start"})},
            {"Id": "plain", "Arn": fn["arn"]},
            {"Id": "queue", "Arn": queue["arn"]},
            {"Id": "gone", "Arn": missing, "Input": "{}", "DeadLetterConfig": {"Arn": target_dlq["arn"]}},
        ],
    )
    status, body = emu.control("POST", "/_keyfleet/events/fire", {"rule": "keyfleet-start", "account": account})
    assert status == 200 and body["ok"] is True and body["rule_arn"] == rule_arn
    assert [i["function_arn"] for i in body["invocations"]] == [fn["arn"], fn["arn"]]
    assert [s["target_id"] for s in body["skipped"]] == ["queue", "gone"]
    settle(emu, account)
    # An undeliverable event goes to the target's dead-letter queue.
    (undelivered,) = emu.client("sqs", account).receive_message(
        QueueUrl=target_dlq["url"], MessageAttributeNames=["All"]
    )["Messages"]
    assert undelivered["MessageId"] == body["skipped"][1]["dead_letter_message_id"]
    attributes = {k: v["StringValue"] for k, v in undelivered["MessageAttributes"].items()}
    assert attributes == {
        "RULE_ARN": rule_arn,
        "TARGET_ARN": missing,
        "ERROR_CODE": "ResourceNotFoundException",
        "ERROR_MESSAGE": f"Function not found: {missing}",
    }

    entries = invocations(emu, fn["arn"])
    assert sorted(e["request_id"] for e in entries) == sorted(i["request_id"] for i in body["invocations"])
    assert all(e["source"] == "event" and e["rule"] == rule_arn and e["status"] == "ok" for e in entries)
    got = [e["event"] for e in events_in(out)]
    assert {"action": "start"} in got
    (scheduled,) = [e for e in got if e != {"action": "start"}]
    assert set(scheduled) == {
        "version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail",
    }
    assert scheduled["detail-type"] == "Scheduled Event" and scheduled["source"] == "aws.events"
    assert scheduled["account"] == account and scheduled["region"] == REGION
    assert scheduled["resources"] == [rule_arn] and scheduled["detail"] == {} and scheduled["version"] == "0"

    events.disable_rule(Name="keyfleet-start")
    status, body = emu.control("POST", "/_keyfleet/events/fire", {"rule": "keyfleet-start", "account": account})
    assert status == 200 and body["invocations"] == [] and "DISABLED" in body["skipped"][0]["reason"]

    assert emu.control("POST", "/_keyfleet/events/fire", {"rule": "nope", "account": account})[0] == 404
    assert emu.control("POST", "/_keyfleet/events/fire", {"account": account})[0] == 400
    # The default account is 123456789012 (the testing/testing credentials').
    emu.client("events").put_rule(Name="keyfleet-sweep", ScheduleExpression="rate(1 hour)")
    status, body = emu.control("POST", "/_keyfleet/events/fire", {"rule": "keyfleet-sweep"})
    assert status == 200 and body["rule_arn"].endswith(":123456789012:rule/keyfleet-sweep")


# -- IAM enforcement of what Lambda does with the execution role ---------------------------------


def _policy(*statements: tuple[list[str], str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": a, "Resource": r} for a, r in statements],
    }


def _decisions(emu: Emulator, session: str) -> list[tuple[str, str, str]]:
    body = emu.control("GET", "/_keyfleet/iam/decisions")[1]
    return [(d["decision"], d["action"], d["resource"]) for d in body["decisions"] if d["session"] == session]


def test_enforced_mapping_needs_the_sqs_permissions(emu: Emulator, enforced: None) -> None:
    account = "510000000010"
    queue = make_queue(emu, account, "keyfleet-jobs")
    logs_arn = f"arn:aws:logs:{REGION}:{account}:log-group:/aws/lambda/keyfleet-agent:*"
    emu.client("logs", account).create_log_group(logGroupName="/aws/lambda/keyfleet-agent")
    without_receive = _policy(
        (["sqs:DeleteMessage", "sqs:GetQueueAttributes"], queue["arn"]),
        (["logs:CreateLogStream", "logs:PutLogEvents"], logs_arn),
    )
    fn = make_function(emu, account, "keyfleet-agent", role="keyfleet-agent", policy=without_receive)
    mapping = fn["lam"].create_event_source_mapping(EventSourceArn=queue["arn"], FunctionName=fn["arn"], BatchSize=1)
    send(emu, account, queue["url"], {"mode": "ok"})
    settle(emu, account)  # a mapping that may not poll is not waited for

    problem = "PROBLEM: The provided execution role does not have permissions to call ReceiveMessage on SQS"
    assert fn["lam"].get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"] == problem
    assert counts(emu, account, queue["url"]) == (1, 0)  # not even received
    (denied,) = invocations(emu, fn["arn"])
    assert denied["status"] == "denied" and denied["error_type"] == "AccessDenied"
    assert denied["problem"].startswith(problem)
    principal = f"arn:aws:sts::{account}:assumed-role/keyfleet-agent/keyfleet-agent"
    assert f"{principal} is not authorized to perform: sqs:ReceiveMessage" in denied["problem"]
    assert ("DENIED", "sqs:ReceiveMessage", queue["arn"]) in _decisions(emu, "keyfleet-agent")
    row = mapping_row(emu, mapping["UUID"])
    assert row["delivering"] is False and row["reason"] == problem

    # Granting the permission is enough: the mapping is checked again and delivers.
    emu.client("iam", account).put_role_policy(
        RoleName="keyfleet-agent",
        PolicyName="fn",
        PolicyDocument=json.dumps(
            _policy(
                (["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], queue["arn"]),
                (["logs:CreateLogStream", "logs:PutLogEvents"], logs_arn),
            )
        ),
    )
    settle(emu, account)
    assert counts(emu, account, queue["url"]) == (0, 0)
    ran = invocations(emu, fn["arn"])[-1]
    assert ran["status"] == "ok" and ran["logs"] == "written" and "kf-delivery" in ran["log_tail"]
    stream_arn = f"arn:aws:logs:{REGION}:{account}:log-group:/aws/lambda/keyfleet-agent:log-stream:{ran['log_stream']}"
    decisions = _decisions(emu, "keyfleet-agent")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert ("ALLOWED", action, queue["arn"]) in decisions
    assert ("ALLOWED", "logs:CreateLogStream", stream_arn) in decisions
    assert ("ALLOWED", "logs:PutLogEvents", stream_arn) in decisions
    assert fn["lam"].get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"] == "OK"


def test_enforced_logs_and_dead_letter_queue(emu: Emulator, enforced: None) -> None:
    account = "510000000011"
    dlq = make_queue(emu, account, "coordinator-dlq")
    emu.client("logs", account).create_log_group(logGroupName="/aws/lambda/keyfleet-coordinator")
    fn = make_function(
        emu, account, "keyfleet-coordinator", role="keyfleet-coordinator", policy=_policy((["iam:ListUsers"], "*")),
        DeadLetterConfig={"TargetArn": dlq["arn"]},
    )
    fn["lam"].put_function_event_invoke_config(FunctionName=fn["name"], MaximumRetryAttempts=0)

    # Synchronous: the caller still gets LogResult; CloudWatch Logs gets nothing.
    resp = fn["lam"].invoke(FunctionName=fn["name"], Payload=b'{"mode": "ok"}', LogType="Tail")
    assert resp["StatusCode"] == 200 and "LogResult" in resp
    (entry,) = invocations(emu, fn["arn"])
    assert entry["source"] == "invoke" and entry["logs"] == "dropped"
    assert entry["log_tail"] == "" and entry["log_stream"] is None
    decisions = _decisions(emu, "keyfleet-coordinator")
    assert [(d, a) for d, a, _ in decisions] == [("DENIED", "logs:CreateLogStream"), ("DENIED", "logs:PutLogEvents")]
    group_arn = f"arn:aws:logs:{REGION}:{account}:log-group:/aws/lambda/keyfleet-coordinator"
    assert decisions[0][2].startswith(f"{group_arn}:log-stream:")
    streams = emu.client("logs", account).describe_log_streams(logGroupName="/aws/lambda/keyfleet-coordinator")
    assert streams["logStreams"] == []

    # Asynchronous, failing: the dead-letter delivery needs sqs:SendMessage.
    fn["lam"].invoke(FunctionName=fn["name"], InvocationType="Event", Payload=b'{"mode": "fail"}')
    settle(emu, account)
    last = invocations(emu, fn["arn"])[-1]
    assert last["status"] == "error" and last["dead_letter"]["status"] == "denied"
    assert "is not authorized to perform: sqs:SendMessage" in last["dead_letter"]["reason"]
    assert ("DENIED", "sqs:SendMessage", dlq["arn"]) in _decisions(emu, "keyfleet-coordinator")
    assert counts(emu, account, dlq["url"]) == (0, 0)


# -- control errors ------------------------------------------------------------------------------


def test_control_errors(emu: Emulator) -> None:
    assert emu.control("POST", "/_keyfleet/sqs/visible", {})[0] == 400
    assert emu.control("POST", "/_keyfleet/sqs/visible", {"queue_url": "http://x/nope"})[0] == 400
    assert emu.control(
        "POST", "/_keyfleet/sqs/visible", {"queue_arn": f"arn:aws:sqs:{REGION}:510000000012:missing"}
    )[0] == 404
    for bad in ({"timeout": "soon"}, {"timeout": -1}, {"accounts": "510000000012"}, {"wait": 1}):
        assert emu.control("POST", "/_keyfleet/lambda/settle", bad)[0] == 400, bad
    assert emu.control("POST", "/_keyfleet/lambda/settle", {"timeout": 0, "accounts": ["510000000012"]}) == (
        200, {"ok": True, "settled": True},
    )

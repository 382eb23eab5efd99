"""Lambda execution of provided.* functions in the harness (ext_lambda_exec.py)."""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from typing import Any

import boto3
import pytest

from helpers import REGION, Emulator

ACCOUNT = "314159265358"
ROLE = "keyfleet-exec-test-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"

BOOTSTRAP = r'''#!/usr/bin/env python3
import json, os, time, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
with urllib.request.urlopen(api + "/invocation/next") as r:
    event = json.loads(r.read())
    rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
    meta = {k: r.headers[k] for k in ("Lambda-Runtime-Deadline-Ms", "Lambda-Runtime-Invoked-Function-Arn")}

mode = event.get("mode")
if mode == "sleep":
    with open(event["pidfile"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
if mode == "fail":
    url, body = api + "/invocation/" + rid + "/error", {"errorMessage": "boom", "errorType": "KeyfleetError"}
else:
    keys = [k for k in os.environ if k.startswith(("AWS_", "_HANDLER", "LAMBDA_", "KF_"))]
    url, body = api + "/invocation/" + rid + "/response", {
        "event": event, "meta": meta, "env": {k: os.environ[k] for k in keys}, "cwd": os.getcwd()}
req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
if mode == "fail":
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
def fn(emu: Emulator) -> dict[str, Any]:
    emu.client("iam", ACCOUNT).create_role(
        RoleName=ROLE,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    lam = emu.client("lambda", ACCOUNT)
    # Time enough to answer on any machine; the timeout test has a
    # function of its own that never answers within its one second.
    created = lam.create_function(
        FunctionName="kf-exec",
        Runtime="provided.al2023",
        Role=ROLE_ARN,
        Handler="bootstrap",
        Code={"ZipFile": _zip()},
        Timeout=30,
        MemorySize=256,
        Environment={"Variables": {"KF_GREETING": "hello"}},
    )
    short = lam.create_function(
        FunctionName="kf-exec-1s",
        Runtime="provided.al2023",
        Role=ROLE_ARN,
        Handler="bootstrap",
        Code={"ZipFile": _zip()},
        Timeout=1,
    )
    return {"lam": lam, "arn": created["FunctionArn"], "short_arn": short["FunctionArn"]}


def _invoke(fn: dict[str, Any], event: Any, name: str = "kf-exec") -> tuple[dict[str, Any], Any]:
    resp = fn["lam"].invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return resp, json.loads(resp["Payload"].read())


def test_event_round_trip_env_and_runtime_headers(fn: dict[str, Any], emu: Emulator) -> None:
    before = time.time() * 1000
    resp, out = _invoke(fn, {"hello": ["world", 1]})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert "LogResult" not in resp, "the log tail comes only with LogType=Tail"
    assert out["event"] == {"hello": ["world", 1]}
    assert out["meta"]["Lambda-Runtime-Invoked-Function-Arn"] == fn["arn"]
    # The deadline is the start plus the function's 30 s timeout.
    assert before + 29_000 < int(out["meta"]["Lambda-Runtime-Deadline-Ms"]) < time.time() * 1000 + 30_000
    env = out["env"]
    assert env["KF_GREETING"] == "hello"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "kf-exec"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == REGION
    assert env["_HANDLER"] == "bootstrap"
    assert env["LAMBDA_TASK_ROOT"] == out["cwd"]
    assert env["AWS_ENDPOINT_URL"] == emu.endpoint
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")


def test_credentials_are_a_session_of_the_execution_role(fn: dict[str, Any], emu: Emulator) -> None:
    _, out = _invoke(fn, {})
    env = out["env"]
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    sts = boto3.client(
        "sts",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )
    ident = sts.get_caller_identity()
    assert ident["Account"] == ACCOUNT
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/kf-exec"


def test_function_error(fn: dict[str, Any]) -> None:
    resp, out = _invoke(fn, {"mode": "fail"})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert out == {"errorMessage": "boom", "errorType": "KeyfleetError"}


def test_timeout_kills_the_process(fn: dict[str, Any], tmp_path: Any, emu: Emulator) -> None:
    pidfile = str(tmp_path / "pid")
    resp, out = _invoke(fn, {"mode": "sleep", "pidfile": pidfile}, name="kf-exec-1s")
    assert resp["FunctionError"] == "Unhandled"
    assert out["errorType"] == "Sandbox.Timedout"
    assert out["errorMessage"].endswith("Task timed out after 1.00 seconds")
    pid = int(open(pidfile).read())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    (entry,) = [
        e
        for e in emu.control("GET", "/_keyfleet/lambda/invocations")[1]["invocations"]
        if e["function_arn"] == fn["short_arn"] and e["status"] == "timeout"
    ]
    assert entry["error_type"] == "Sandbox.Timedout" and entry["max_rss_kib"] > 1000


def _entries(emu: Emulator, fn: dict[str, Any]) -> list[dict[str, Any]]:
    status, body = emu.control("GET", "/_keyfleet/lambda/invocations")
    assert status == 200
    return [e for e in body["invocations"] if e["function_arn"] == fn["arn"]]


def test_invocation_log_records_each_synchronous_invoke(fn: dict[str, Any], emu: Emulator) -> None:
    before = len(_entries(emu, fn))
    _invoke(fn, {"hello": 1})
    _invoke(fn, {"mode": "fail"})
    ok, failed = _entries(emu, fn)[before:]
    assert ok["source"] == failed["source"] == "invoke"
    assert ok["account"] == ACCOUNT and ok["region"] == REGION and ok["attempt"] == 1
    assert (ok["status"], ok["error_type"]) == ("ok", None)
    assert (failed["status"], failed["error_type"]) == ("error", "KeyfleetError")
    assert ok["request_id"] != failed["request_id"]
    # Peak RSS of the bootstrap itself (a small Python process), not the harness's.
    assert 1000 < ok["max_rss_kib"] < 100_000
    assert ok["ended"] >= ok["started"] and ok["duration_ms"] >= 0
    assert emu.control("POST", "/_keyfleet/lambda/settle", {"accounts": [ACCOUNT]}) == (
        200,
        {"ok": True, "settled": True},
    )


def test_concurrent_invocations_all_start(fn: dict[str, Any]) -> None:
    """Invocations running at once each get their bootstrap started: a
    bootstrap written while another thread forks must not be 'text file
    busy' (ETXTBSY) when it is executed (Runtime.InvalidEntrypoint). A
    large bootstrap keeps each write open long enough for the forks of the
    other invocations to meet it."""
    from concurrent.futures import ThreadPoolExecutor

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        zf.writestr(info, BOOTSTRAP + "\n#" + "x" * (8 << 20) + "\n")
    fn["lam"].create_function(
        FunctionName="kf-exec-large",
        Runtime="provided.al2023",
        Role=ROLE_ARN,
        Handler="bootstrap",
        Code={"ZipFile": buf.getvalue()},
        Timeout=30,
    )
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: _invoke(fn, {"n": i}, name="kf-exec-large"), range(48)))
    failed = [out for resp, out in answers if "FunctionError" in resp]
    assert failed == []
    assert sorted(out["event"]["n"] for _, out in answers) == list(range(48))


# Sends through the harness, as keyfleet's functions do (boto3 of this
# interpreter, the endpoint and credentials Lambda hands over).
SENDER = "#!" + sys.executable + r'''
import json, os, urllib.request
import boto3

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
with urllib.request.urlopen(api + "/invocation/next") as r:
    event = json.loads(r.read())
    rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
boto3.client("sqs").send_message(QueueUrl=event["queue_url"], MessageBody=event["body"])
boto3.client("sns").publish(TopicArn=event["topic_arn"], Message=event["body"])
req = urllib.request.Request(api + "/invocation/" + rid + "/response", data=b"{}", method="POST")
urllib.request.urlopen(req).read()
'''


def test_messages_a_function_sends_are_in_the_message_log(fn: dict[str, Any], emu: Emulator) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        zf.writestr(info, SENDER)
    fn["lam"].create_function(
        FunctionName="kf-exec-sender",
        Runtime="provided.al2023",
        Role=ROLE_ARN,
        Handler="bootstrap",
        Code={"ZipFile": buf.getvalue()},
        Timeout=30,
    )
    url = emu.client("sqs", ACCOUNT).create_queue(QueueName="kf-exec-out")["QueueUrl"]
    topic = emu.client("sns", ACCOUNT).create_topic(Name="kf-exec-out")["TopicArn"]
    event = {"queue_url": url, "topic_arn": topic, "body": "from the function"}
    resp, out = _invoke(fn, event, name="kf-exec-sender")
    assert "FunctionError" not in resp, out
    log = emu.control("GET", "/_keyfleet/messages")[1]
    assert [m for m in log["sqs"] if m["queue"] == f"/{ACCOUNT}/kf-exec-out"] == [
        {"queue": f"/{ACCOUNT}/kf-exec-out", "body": "from the function", "account": ACCOUNT}
    ]
    assert [m for m in log["sns"] if m["topic"] == topic] == [
        {"topic": topic, "subject": None, "message": "from the function"}
    ]

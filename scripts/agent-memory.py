#!/usr/bin/env python3
"""Peak memory of the agent Lambda bootstrap on one job, against the emulator.

Starts the emulator harness, seeds one member account with USERS users (one
in ten with a key due for rotation), then runs the real `agent` bootstrap
under a fake Lambda Runtime API that hands it one SQS event holding the job,
waits for its answer, and reports the process's peak RSS (ru_maxrss) and the
result the agent sent to the results queue.

Usage (from the repository root, after `bash tests/emulator/bootstrap.sh`):
  tests/emulator/.venv/bin/python scripts/agent-memory.py BOOTSTRAP [--users N]
"""

import argparse
import base64
import http.server
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_harness():
    ready = os.path.join(tempfile.mkdtemp(), "port")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests/emulator/harness.py"), "--port", "0",
         "--ready-file", ready, "--parent-pid", str(os.getpid())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not os.path.exists(ready):
        if time.time() > deadline:
            raise SystemExit("emulator did not start")
        time.sleep(0.05)  # polling another process's ready file
    return proc, f"http://127.0.0.1:{open(ready).read().strip()}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("--users", type=int, default=1000)
    a = ap.parse_args()

    harness, url = start_harness()
    base = dict(endpoint_url=url, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing")
    account = str(100000000000 + secrets.randbelow(899999999999))
    creds = boto3.client("sts", **base).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/keyfleet-agent", RoleSessionName="measure")["Credentials"]
    member = dict(endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=creds["AccessKeyId"],
                  aws_secret_access_key=creds["SecretAccessKey"],
                  aws_session_token=creds["SessionToken"])
    iam = boto3.client("iam", **member)
    results = boto3.client("sqs", **base).create_queue(QueueName="keyfleet-results")["QueueUrl"]

    def control(path, body):
        req = urllib.request.Request(f"{url}{path}", method="POST", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()

    due = [f"user-{i:05d}" for i in range(0, a.users, 10)]
    due_keys = []
    for name in due:
        iam.create_user(UserName=name, Tags=[{"Key": "Email", "Value": f"{name}@example.com"}])
        due_keys.append(iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"])
    control("/_keyfleet/clock/advance", {"days": 85, "account": account})
    yesterday = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
    for key_id in due_keys:  # in use, so due for replacement (not deletion)
        control("/_keyfleet/iam/key-used", {"account": account, "access_key_id": key_id,
                                            "when": yesterday, "service": "s3", "region": "us-east-1"})
    for i in range(a.users):
        name = f"user-{i:05d}"
        if name in due:
            continue
        iam.create_user(UserName=name, Tags=[{"Key": "Email", "Value": f"{name}@example.com"}])
        iam.create_access_key(UserName=name)

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    job = {"v": 1, "run_id": "measure-1", "account_id": account, "token": secrets.token_hex(16),
           "issued_at": now, "deadline": later, "policy": {}, "dry_run": False,
           "mode": {"kind": "scheduled"}, "results_queue_url": results}
    event = {"Records": [{
        "messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": json.dumps(job),
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:{account}:keyfleet-jobs", "awsRegion": "us-east-1"}]}

    served = threading.Event()
    answered = threading.Event()
    answer = {}

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if served.is_set():
                time.sleep(30)  # second /next: the measurement is over
                return
            served.set()
            body = json.dumps(event).encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int((time.time() + 900) * 1000)))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                             f"arn:aws:lambda:us-east-1:{account}:function:keyfleet-agent")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            n = int(self.headers.get("Content-Length", "0"))
            answer["path"] = self.path
            answer["body"] = self.rfile.read(n).decode()
            self.send_response(202)
            self.end_headers()
            answered.set()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "keyfleet-agent", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/keyfleet-agent", "AWS_LAMBDA_LOG_STREAM_NAME": "m",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "KEYFLEET_COORDINATOR_PUBLIC_KEY": base64.b64encode(os.urandom(32)).decode(),
        "RUST_LOG": "warn",
    }
    start = time.perf_counter()
    p = subprocess.Popen([a.bootstrap], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not answered.wait(timeout=600):
        p.kill()
        print(p.communicate()[1].decode(errors="replace"))
        raise SystemExit("agent did not answer")
    elapsed = time.perf_counter() - start
    p.kill()
    _, status, usage = os.wait4(p.pid, 0)
    msgs = boto3.client("sqs", **base).receive_message(QueueUrl=results, MaxNumberOfMessages=10)
    parts = [json.loads(m["Body"]) for m in msgs.get("Messages", [])]
    users = sum(len(x["users"]) for x in parts)
    sealed = sum(len(x["sealed"]) for x in parts)
    iam_calls = sum(v for x in parts[:1] for k, v in x["api_calls"].items() if k.startswith("iam:"))
    print(f"agent, {a.users} users ({len(due)} due): peak RSS {usage.ru_maxrss / 1024:.1f} MiB, "
          f"job {elapsed:.1f} s, answer {answer.get('path', '?').rsplit('/', 1)[-1]} "
          f"{answer.get('body', '')[:60]}, result parts {len(parts)}, users {users}, new keys {sealed}, "
          f"IAM calls {iam_calls}")
    harness.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

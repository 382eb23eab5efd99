"""Helpers the emulator tests share (not tests): start a harness, read its
port, talk to it. The session harness itself is the ``emu`` fixture
(conftest.py)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "harness.py")
REGION = "us-east-1"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def start_harness(ready_file: str, *extra: str) -> subprocess.Popen:
    """Start a harness; its stderr goes to ``<ready_file>.stderr``."""
    with open(ready_file + ".stderr", "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, HARNESS, "--port", "0", "--ready-file", ready_file, *extra],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )


def read_port(ready_file: str, proc: subprocess.Popen | None = None, timeout: float = 60) -> int:
    def ready() -> str | None:
        if proc is not None and proc.poll() is not None:
            with open(ready_file + ".stderr", encoding="utf-8", errors="replace") as fh:
                raise AssertionError(f"harness exited with {proc.returncode}: {fh.read()}")
        if os.path.exists(ready_file):
            return open(ready_file, encoding="ascii").read()
        return None

    text = wait_for(ready, timeout, "the ready file")
    assert text.endswith("\n"), repr(text)
    return int(text)


class Emulator:
    def __init__(self, port: int):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._creds: dict[str, dict[str, str]] = {}

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def credentials(self, account: str | None) -> dict[str, str]:
        if account is None:
            return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if account not in self._creds:
            sts = self.client("sts")
            creds = sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/keyfleet-test",
                RoleSessionName="emulator-test",
            )["Credentials"]
            self._creds[account] = {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
            }
        return self._creds[account]

    def client(self, service: str, account: str | None = None, region: str = REGION) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            **self.credentials(account),
        )


@contextlib.contextmanager
def own_harness(*args: str) -> Iterator["Emulator"]:
    """A harness of the test module's own (for global state: faults,
    enforcement, Lambda caps), stopped when the block ends."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "port")
        proc = start_harness(ready, "--parent-pid", str(os.getpid()), *args)
        try:
            yield Emulator(read_port(ready, proc))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _signed_query(emu: Emulator, account: str, path: str, params: dict[str, str]) -> str:
    creds = emu.credentials(account)
    body = urllib.parse.urlencode(params)
    request = AWSRequest(
        method="POST",
        url=emu.endpoint + path,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(
        Credentials(
            creds["aws_access_key_id"],
            creds["aws_secret_access_key"],
            creds["aws_session_token"],
        ),
        "sqs",
        REGION,
    ).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(
        prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def _zip_bytes(with_bootstrap: bool = True) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if with_bootstrap:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16  # executable, as Lambda requires
            zf.writestr(info, "#!/bin/sh\n")
    return buf.getvalue()


# A stack set template (a queue and a role Lambda may assume), for
# test_ext_stacksets.py; test_ext_lambda.py borrows the role's trust policy.
STACKSET_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "keyfleet-jobs"}},
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": {"Fn::Sub": "keyfleet-agent-${AWS::Region}"},
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
            },
        },
    },
}

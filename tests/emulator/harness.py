"""keyfleet AWS emulator: moto in server mode plus what AWS has and moto lacks.

Usage:
    python harness.py [--host 127.0.0.1] [--port 0] [--ready-file PATH]
                      [--parent-pid PID] [--log-requests]
                      [--moto-lambda-delivery] [--lambda-max-processes N]

With ``--port 0`` a free port is picked. Once the server accepts requests the
port number is written to ``--ready-file`` (written to a temporary name in the
same directory, then renamed, so a reader never sees a partial file) and
``READY <port>`` is printed on stdout; nothing else is ever written to stdout
(later output of moto goes to stderr).

The process exits with status 0 on SIGTERM/SIGINT, when ``--parent-pid`` is
gone, or when the process that started it dies (it is re-parented), so a test
run never leaves a server behind.

Everything moto serves is reachable at ``http://<host>:<port>`` for every
service (pass it as endpoint_url). The harness adds control endpoints under
``/_keyfleet/`` (see README.md):

    GET    /_keyfleet/health            -> 200 {"ok": true}
    GET    /_keyfleet/ses/outbox        -> {"messages": [...]}
    DELETE /_keyfleet/ses/outbox        -> clears the outbox
    POST   /_keyfleet/ses/quota         {"max_24_hour_send": N|null,
                                         "max_send_rate": R|null, "account"?}
                                        or {"sandbox": true, "account"?}:
                                        SES sending limits (ext_ses_quota.py)
    GET|DELETE /_keyfleet/ses/quota[?account=ID] -> the limits and sends /
                                        back to unlimited
    POST   /_keyfleet/clock/advance     {"days": N, "account": "..."?}
    POST   /_keyfleet/iam/key-used      {"account", "access_key_id", "when"?,
                                         "service", "region"}
    GET|POST /_keyfleet/iam/credential-report  {"in_progress": N, "account"?}:
                                        the next N GenerateCredentialReport
                                        calls answer STARTED/INPROGRESS
    POST   /_keyfleet/sts/expire        {"access_key_id": "ASIA..."}: that STS
                                        session's credentials expire now
                                        (ext_user_keys.py) -> {"ok": true,
                                        "access_key_id", "expiration"} | 404
    GET|POST|DELETE /_keyfleet/faults   faults on demand (ext_faults.py)
    GET    /_keyfleet/calls[?account=ID] -> {"since", "calls": [...], "bytes": [...]}:
                                        AWS requests counted (ext_calls.py)
    DELETE /_keyfleet/calls             -> resets the counts
    GET    /_keyfleet/cloudtrail[?account=ID][&access_key_id=KEY]
                                        -> {"events": [...]}: CloudTrail events
                                        recorded (ext_cloudtrail.py), newest first
    DELETE /_keyfleet/cloudtrail[?account=ID] -> forgets them
    POST   /_keyfleet/cloudtrail/events {"access_key_id", "event_name",
                                         "event_source"|"service", "region"?,
                                         "source_ip"?, "user_agent"?, "when"?,
                                         "account"?}: records one event
    GET|POST|DELETE /_keyfleet/cloudtrail/throttle {"rate": N|null, "account"?}:
                                        LookupEvents throttling (off by default)
    GET    /_keyfleet/messages          -> {"sqs": [...], "sns": [...]} (ext_messages.py)
    DELETE /_keyfleet/messages          -> clears the message log
    GET/POST /_keyfleet/iam/enforce     {"enabled": bool, "role_name_patterns": [...]}
    GET/DELETE /_keyfleet/iam/decisions[?principal_type=User]
                                        -> {"decisions": [...]} (role sessions',
                                        or IAM users') / clears both
    GET    /_keyfleet/lambda/invocations -> {"invocations": [...]} (last 1000)
    POST   /_keyfleet/lambda/settle     {"timeout": 120?, "accounts": [...]?}
                                        -> {"ok": true, "settled": true} | 408
    GET    /_keyfleet/lambda/mappings   -> SQS event source mapping counters
    POST   /_keyfleet/sqs/visible       {"queue_url" | "queue_arn", "region"?}
                                        -> {"ok": true, "made_visible": N}
    POST   /_keyfleet/events/fire       {"rule", "account"?, "region"?, "event_bus"?}
                                        -> {"ok": true, "invocations": [...], ...}

provided.* Lambda functions run natively: their bootstrap on a synchronous
Invoke (ext_lambda_exec.py), an asynchronous one with retries and the
dead-letter queue (ext_lambda_async.py), from SQS event source mappings
(ext_lambda_esm.py) and from EventBridge rules fired on demand
(ext_events.py). At most --lambda-max-processes bootstraps run at once
(default 8, or KEYFLEET_LAMBDA_MAX_PROCESSES).

The extensions live in ext_*.py, one module per gap, each patched into moto
before the first request (see each module's docstring), in the order of
EXTENSIONS (which also gives the reason for the order of any two that wrap
the same moto method).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable
from urllib.parse import parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# moto lets MOTO_ACCOUNT_ID override the account of every request, which would
# defeat the per-account addressing the harness is built around (STS
# AssumeRole credentials -> account). Never inherit it from the caller.
os.environ.pop("MOTO_ACCOUNT_ID", None)

from control import ControlError  # noqa: E402

CONTROL_PREFIX = "/_keyfleet/"


def _json_response(start_response: Callable, status: int, body: Any) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        408: "Request Timeout",
        500: "Internal Server Error",
    }
    start_response(
        f"{status} {reason.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _read_query(environ: dict[str, Any]) -> dict[str, str]:
    """The query parameters of a GET or DELETE, which its handler gets as its body."""
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    if repeated:
        raise ControlError(400, f"query parameter(s) given more than once: {repeated}")
    return {name: values[0] for name, values in params.items()}


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ControlError(400, "request body must be a JSON object")
    return body


class App:
    """WSGI app: /_keyfleet/* control endpoints, everything else to moto."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            create_backend_app,
        )

        import ext_calls
        import ext_clock
        import ext_cloudtrail
        import ext_events
        import ext_faults
        import ext_iam_enforce
        import ext_lambda_esm
        import ext_lambda_exec
        import ext_messages
        import ext_ses
        import ext_ses_quota
        import ext_user_keys

        self.moto = DomainDispatcherApplication(create_backend_app)
        self.routes: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "health"): lambda body: {"ok": True},
            ("GET", "ses/outbox"): lambda body: ext_ses.outbox_snapshot(),
            ("DELETE", "ses/outbox"): lambda body: ext_ses.outbox_clear(),
            ("GET", "ses/quota"): ext_ses_quota.snapshot,
            ("POST", "ses/quota"): ext_ses_quota.set_from_request,
            ("DELETE", "ses/quota"): ext_ses_quota.clear,
            ("POST", "clock/advance"): ext_clock.advance_from_request,
            ("POST", "iam/key-used"): ext_clock.key_used_from_request,
            ("GET", "iam/credential-report"): ext_clock.credential_report_state,
            ("POST", "iam/credential-report"): ext_clock.credential_report_from_request,
            ("POST", "sts/expire"): ext_user_keys.expire_from_request,
            ("GET", "iam/enforce"): lambda body: ext_iam_enforce.settings(),
            ("POST", "iam/enforce"): ext_iam_enforce.enforce_from_request,
            ("GET", "iam/decisions"): ext_iam_enforce.decisions_snapshot,
            ("DELETE", "iam/decisions"): ext_iam_enforce.decisions_clear,
            ("GET", "faults"): ext_faults.snapshot,
            ("POST", "faults"): ext_faults.set_from_request,
            ("DELETE", "faults"): ext_faults.clear,
            ("GET", "calls"): ext_calls.snapshot,
            ("DELETE", "calls"): ext_calls.clear,
            ("GET", "cloudtrail"): ext_cloudtrail.snapshot,
            ("DELETE", "cloudtrail"): ext_cloudtrail.clear,
            ("POST", "cloudtrail/events"): ext_cloudtrail.record_from_request,
            ("GET", "cloudtrail/throttle"): ext_cloudtrail.throttle_snapshot,
            ("POST", "cloudtrail/throttle"): ext_cloudtrail.throttle_from_request,
            ("DELETE", "cloudtrail/throttle"): ext_cloudtrail.throttle_clear,
            ("GET", "messages"): ext_messages.snapshot,
            ("DELETE", "messages"): ext_messages.clear,
            ("GET", "lambda/invocations"): ext_lambda_exec.invocations_snapshot,
            ("POST", "lambda/settle"): ext_lambda_exec.settle_from_request,
            ("GET", "lambda/mappings"): ext_lambda_esm.mappings_snapshot,
            ("POST", "sqs/visible"): ext_lambda_esm.visible_from_request,
            ("POST", "events/fire"): ext_events.fire_from_request,
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(CONTROL_PREFIX):
            return self.moto(environ, start_response)
        name = path[len(CONTROL_PREFIX):].strip("/")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        handler = self.routes.get((method, name))
        if handler is None:
            if any(route_name == name for _, route_name in self.routes):
                return _json_response(
                    start_response, 405, {"error": f"{method} not allowed on {path}"}
                )
            return _json_response(start_response, 404, {"error": f"no such endpoint {path}"})
        try:
            # POST/PUT: the JSON body; GET/DELETE: the query parameters.
            body = _read_json(environ) if method in ("POST", "PUT") else _read_query(environ)
            return _json_response(start_response, 200, handler(body))
        except ControlError as exc:
            return _json_response(start_response, exc.status, {"error": exc.message, **exc.body})
        except Exception as exc:  # answer JSON, and keep the details on stderr
            logging.getLogger("keyfleet.control").exception("%s %s failed", method, path)
            return _json_response(start_response, 500, {"error": f"{type(exc).__name__}: {exc}"})


# Every extension module (ext_*.py), in the order install_extensions installs
# them (test_harness.py::test_every_extension_module_is_in_the_install_order
# keeps this list and the ext_*.py files in step). An extension that wraps a
# moto method wraps whatever is there when it is installed, so of two that
# wrap the same method the later one runs first (outermost). Each such pair
# carries the reason for its order below.
EXTENSIONS: tuple[str, ...] = (
    "ext_sqs",
    "ext_iam_paging",
    "ext_ses",
    # ext_ses_quota after ext_ses: both wrap SESV2Response.send_email and
    # EmailResponse.send_email/.send_raw_email. The quota check is outermost,
    # so a send refused for the quota or the rate never reaches moto nor
    # ext_ses's outbox; the send is logged only once moto (and the outbox)
    # accepted it.
    "ext_ses_quota",
    "ext_messages",
    "ext_clock",
    "ext_stacksets",
    "ext_cfn",
    # ext_cfn_checks after ext_stacksets: both wrap
    # CloudFormationResponse.create_stack_set and .update_stack_set. The
    # capability check (InsufficientCapabilitiesException) is outermost, so
    # a refused CreateStackSet/UpdateStackSet is refused, as AWS validates a
    # request, before any of ext_stacksets' work (its per-request values,
    # AutoDeployment); ext_stacksets only ever sees accepted requests.
    # ext_cfn_checks after ext_cfn: both wrap
    # moto.cloudformation.parsing.parse_and_update_resource. The failure mark
    # (the resource's logical id and type, for a failed stack set instance's
    # StatusReason) is outermost, so it covers the whole resource update,
    # ext_cfn's keep-what-exists fallback included.
    "ext_cfn_checks",
    "ext_organizations",
    "ext_s3_bucket_policy",
    "ext_secretsmanager",
    # ext_dynamodb wraps no method another extension wraps (ext_cfn's
    # keep-what-exists fallback simply no longer applies to
    # AWS::DynamoDB::Table, which it gives an update); ext_iam_enforce reads
    # its CROSS_ACCOUNT_ACTIONS.
    "ext_dynamodb",
    # ext_iam_enforce and ext_faults wrap different methods, so their order
    # here changes nothing: on a request ext_faults (moto's WSGI app,
    # DomainDispatcherApplication.__call__) always acts before ext_iam_enforce
    # (ActionAuthenticatorMixin._authenticate_and_authorize_action, inside the
    # service's handler): a fault that answers instead of moto (throttle,
    # internal_error, unavailable, drop, conflict) comes without an access
    # decision, while delay and do_then_* requests are decided (and may be
    # denied) when moto runs them.
    "ext_iam_enforce",
    "ext_faults",
    # ext_user_keys after ext_faults: both wrap
    # DomainDispatcherApplication.__call__ (moto's WSGI app). The IAM user
    # key check is outer: a request signed with an inactive or deleted IAM
    # user key, or with the wrong secret, or with an expired STS session's
    # credentials, is refused before any fault rule sees it (AWS
    # authenticates a request before it throttles or fails it; a throttle
    # is per account), and fault rules' attempt numbers never count it.
    # ext_iam_enforce (inside the service's handler) asks it whose active
    # key signed a request (active_user).
    "ext_user_keys",
    # ext_calls after ext_user_keys and ext_faults: all three wrap
    # DomainDispatcherApplication.__call__ (moto's WSGI app). The request
    # counter is outermost, so it counts every attempt once, including those
    # ext_user_keys refuses (an invalid IAM user key, an expired STS
    # session) and those ext_faults answers itself without moto (throttle,
    # internal_error, unavailable, conflict), drops (the connection closed)
    # and delays; do_then_* run moto through the method ext_faults wrapped,
    # not through this wrapper, so they are counted once too. A request IAM
    # enforcement refuses is refused further in (inside the service's
    # handler), so it is counted as well.
    # ext_user_keys and ext_faults reuse the request's resolved service,
    # account and action (environ "keyfleet.call") instead of resolving it
    # again.
    "ext_calls",
    # ext_cloudtrail after ext_calls: it wraps no moto method another
    # extension wraps (it adds CloudTrailResponse.lookup_events, which moto
    # lacks) and records events as an observer of ext_calls' counting
    # (ext_calls.add_observer), so each request is resolved once for both.
    "ext_cloudtrail",
    "ext_lambda_exec",
    # ext_lambda_async after ext_lambda_exec: both wrap LambdaBackend.invoke and
    # LambdaSimpleBackend.invoke. ext_lambda_async is outermost: an Event
    # invocation of a provided.* function is answered 202 and queued before
    # the synchronous path (reserved-concurrency admission, 429) sees it; its
    # attempts wait for a process slot in ext_lambda_exec.run, as AWS throttles
    # an asynchronous invocation when it runs, not when it is accepted. Every
    # other invocation passes through to ext_lambda_exec unchanged.
    "ext_lambda_async",
    # ext_lambda_limits after ext_lambda_async: both wrap
    # LambdaFunction.update_configuration. The 4 KB Environment check is
    # outermost, so an UpdateFunctionConfiguration it refuses changes nothing;
    # inside ext_lambda_async it would come after the new DeadLetterConfig was
    # stored.
    "ext_lambda_limits",
    "ext_lambda_esm",
    "ext_lambda",
    # No install(): patches nothing, serves POST /_keyfleet/events/fire only.
    "ext_events",
)


def install_extensions(moto_lambda_delivery: bool, lambda_max_processes: int | None = None) -> None:
    """Install every extension of EXTENSIONS, in that order."""
    import importlib

    options: dict[str, dict[str, Any]] = {
        "ext_lambda_exec": {"max_processes": lambda_max_processes},
        "ext_lambda": {"moto_delivery": moto_lambda_delivery},
    }
    for name in EXTENSIONS:
        install = getattr(importlib.import_module(name), "install", None)
        if install is not None:
            install(**options.get(name, {}))


def _write_ready_file(path: str, port: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"{port}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A dead but not yet reaped child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _watch_parent(parent_pid: int | None, stop: threading.Event) -> None:
    original_ppid = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != original_ppid:
            stop.set()
        elif parent_pid is not None and not _pid_alive(parent_pid):
            stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 picks a free one (default 0)")
    parser.add_argument("--ready-file", help="file to receive the port once the server is ready")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    parser.add_argument("--log-requests", action="store_true", help="log every request on stderr")
    parser.add_argument(
        "--moto-lambda-delivery",
        action="store_true",
        help="let moto invoke (in Docker) the functions of SQS event source "
        "mappings the harness does not run itself (see ext_lambda.py)",
    )
    parser.add_argument(
        "--lambda-max-processes",
        type=int,
        default=None,
        help="Lambda bootstraps running at once in the whole harness (default "
        "KEYFLEET_LAMBDA_MAX_PROCESSES or 8)",
    )
    args = parser.parse_args(argv)

    if args.ready_file and os.path.exists(args.ready_file):
        os.remove(args.ready_file)  # never let a reader pick up a stale port

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.log_requests else logging.ERROR)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    watcher = threading.Thread(
        target=_watch_parent, args=(args.parent_pid, stop), name="parent-watch", daemon=True
    )
    watcher.start()

    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import MotoRequestHandler

    if args.lambda_max_processes is not None and args.lambda_max_processes < 1:
        parser.error("--lambda-max-processes must be at least 1")
    install_extensions(args.moto_lambda_delivery, args.lambda_max_processes)
    server = make_server(
        args.host, args.port, App(), threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_port
    # moto hands its own port to the things it starts (Lambda containers,
    # custom resources); make it the real one, as moto's own server does.
    os.environ["MOTO_PORT"] = str(port)

    serving = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serving.start()

    if args.ready_file:
        _write_ready_file(args.ready_file, port)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    # stdout carries only the READY line: whatever moto prints later goes to
    # stderr, so a caller may read one line and then close or ignore the pipe.
    os.dup2(2, 1)

    while not stop.wait(0.5):
        if not serving.is_alive():
            print("keyfleet emulator: server thread died", file=sys.stderr)
            os._exit(1)

    server.shutdown()
    server.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Request threads and moto's helper threads must not keep us alive.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

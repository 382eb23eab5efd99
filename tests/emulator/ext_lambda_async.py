"""Lambda: asynchronous invocation of ``provided.*`` functions, retries, DLQ.

AWS: ``Invoke`` with ``InvocationType: Event`` answers 202 at once and queues
the event; Lambda runs the function, and on a function error or timeout runs
it again up to the function's EventInvokeConfig ``MaximumRetryAttempts``
(0..2, default 2; about 1 minute before the first retry and 2 before the
second), with the same request id. When the last attempt fails and the
function has a ``DeadLetterConfig`` with an SQS ``TargetArn``, Lambda sends
the event (the original payload) to that queue with the execution role
(``sqs:SendMessage``), adding the message attributes ``RequestID`` (String),
``ErrorCode`` (Number, the Invoke status code: 200 for a function error) and
``ErrorMessage`` (String, the first 1 KB of the error message). Without the
permission the event is lost. ``PutFunctionEventInvokeConfig`` replaces the
function's config, ``UpdateFunctionEventInvokeConfig`` changes the fields
given.

moto 5.2.5: an Event invocation runs in Docker like a synchronous one (so it
fails here); ``DeadLetterConfig`` is accepted by CreateFunction and
UpdateFunctionConfiguration but dropped (GetFunctionConfiguration never
shows it); Put/UpdateFunctionEventInvokeConfig append a config while Get
returns the first one, so a second Put has no effect.

Patch: for ``provided.*`` functions an Event invocation registers a job
(counted by settle until its last attempt and its dead-letter delivery are
done), answers 202 with an empty body and runs the attempts in a background
thread with ``ext_lambda_exec.run`` (source ``event``, attempt 1..N, one
request id for all attempts, waiting for a free process slot like every
invocation). Retries follow at once: no 1-2 minute waits, and
``MaximumEventAgeInSeconds`` is not applied. After the last failure the
event goes to the DeadLetterConfig's SQS queue through moto's SQS backend,
after ``sqs:SendMessage`` on the queue ARN was checked under the execution
role when IAM enforcement applies (ext_iam_enforce.check_role_action,
recorded in the decisions log); the outcome is the ``dead_letter`` field of
the last attempt's invocation log entry (``{"target_arn", "status": "sent" |
"denied" | "failed" | "unsupported", "message_id", "reason"}``).
DeadLetterConfig is stored and shown by GetFunction(Configuration); Put
replaces and Update merges the EventInvokeConfig as in AWS.

Not done: EventInvokeConfig ``DestinationConfig`` (OnSuccess/OnFailure
destinations), SNS dead-letter targets (recorded as ``unsupported``).
``submit`` is also how EventBridge targets are invoked (ext_events.py).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import ext_lambda_exec as lx

DEFAULT_MAXIMUM_RETRY_ATTEMPTS = 2
ERROR_MESSAGE_LIMIT = 1024

_log = logging.getLogger("keyfleet.lambda.async")
_jobs: dict[str, dict[str, Any]] = {}  # request id -> {"account", "function_arn", "state", "attempt"}


def _max_retries(fn: Any) -> int:
    configs = getattr(fn, "event_invoke_config", None) or []
    if configs:
        value = configs[-1].config.get("MaximumRetryAttempts")
        if value is not None:
            return max(0, int(value))
    return DEFAULT_MAXIMUM_RETRY_ATTEMPTS


def submit(fn: Any, payload: Any, **fields: Any) -> str:
    """Queue an asynchronous invocation; returns its request id at once."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    request_id = str(uuid.uuid4())
    with lx.CV:
        _jobs[request_id] = {
            "account": fn.account_id,
            "function_arn": fn.function_arn,
            "state": "queued",
            "attempt": 0,
        }
        lx.CV.notify_all()
    threading.Thread(
        target=_work, args=(fn, payload or b"{}", request_id, fields), name="lambda-async", daemon=True
    ).start()
    return request_id


def _work(fn: Any, payload: bytes, request_id: str, fields: dict[str, Any]) -> None:
    try:
        attempts = _max_retries(fn) + 1
        result = None
        for attempt in range(1, attempts + 1):
            with lx.CV:
                _jobs[request_id].update(state="running", attempt=attempt)
            result = lx.run(fn, payload, source="event", attempt=attempt, request_id=request_id, **fields)
            if not result.failed:
                return
            with lx.CV:
                _jobs[request_id]["state"] = "waiting to retry" if attempt < attempts else "dead-letter"
        if result is not None:
            lx.update_entry(result.entry, dead_letter=_dead_letter(fn, payload, result))
    except Exception:
        _log.exception("asynchronous invocation %s of %s failed", request_id, fn.function_arn)
    finally:
        with lx.CV:
            _jobs.pop(request_id, None)
            lx.CV.notify_all()


def _dead_letter(fn: Any, payload: bytes, result: lx.Result) -> dict[str, Any] | None:
    import ext_iam_enforce
    from moto.sqs.models import sqs_backends

    target = (getattr(fn, "dead_letter_config", None) or {}).get("TargetArn")
    if not target:
        return None
    outcome: dict[str, Any] = {"target_arn": target, "status": "failed", "message_id": None, "reason": None}
    parts = target.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        outcome.update(status="unsupported", reason="only SQS dead-letter queues are delivered by the harness")
        return outcome
    decided = ext_iam_enforce.check_role_action(fn.role, fn.function_name, "sqs:SendMessage", target)
    if decided is not None and decided["decision"] != "ALLOWED":
        outcome.update(status="denied", reason=decided["message"])
        return outcome
    region, account, name = parts[3], parts[4], parts[5]
    message = result.error_message or result.error_type or "Unhandled"
    try:
        sent = sqs_backends[account][region].send_message(
            name,
            payload.decode("utf-8", "replace"),
            message_attributes={
                "RequestID": {"DataType": "String", "StringValue": result.request_id},
                "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                "ErrorMessage": {
                    "DataType": "String",
                    "StringValue": message.encode("utf-8")[:ERROR_MESSAGE_LIMIT].decode("utf-8", "ignore"),
                },
            },
        )
    except Exception as exc:  # e.g. the queue does not exist
        outcome["reason"] = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.update(status="sent", message_id=sent.id)
    return outcome


def _busy(accounts: set[str] | None) -> list[str]:
    return [
        f"asynchronous invocation {rid} of {job['function_arn']}: {job['state']} (attempt {job['attempt']})"
        for rid, job in _jobs.items()
        if accounts is None or job["account"] in accounts
    ]


def _wrap(original: Any) -> Any:
    def invoke(
        self: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> Any:
        inv_type = headers.get("x-amz-invocation-type", "RequestResponse") or "RequestResponse"
        if inv_type != "Event":
            return original(self, function_name, qualifier, body, headers, response_headers)
        fn = self.get_function(function_name, qualifier)
        if not lx.is_provided(fn):
            return original(self, function_name, qualifier, body, headers, response_headers)
        request_id = submit(fn, body)
        response_headers["x-amzn-RequestId"] = request_id
        response_headers["Content-Length"] = "0"
        return b""

    return invoke


def install() -> None:
    from moto.awslambda.models import EventInvokeConfig, LambdaBackend, LambdaFunction
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original_init = LambdaFunction.__init__
    original_update = LambdaFunction.update_configuration
    original_config = LambdaFunction.get_configuration

    def __init__(self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.dead_letter_config = spec.get("DeadLetterConfig") or None

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "DeadLetterConfig" in config_updates:
            self.dead_letter_config = config_updates["DeadLetterConfig"] or None
        return original_update(self, config_updates)

    def get_configuration(self: Any, on_create: bool = False) -> dict[str, Any]:
        config = original_config(self, on_create)
        dlc = getattr(self, "dead_letter_config", None)
        if dlc and dlc.get("TargetArn"):
            config["DeadLetterConfig"] = {"TargetArn": dlc["TargetArn"]}
        return config

    def put_function_event_invoke_config(self: Any, function_name: str, config: dict[str, Any]) -> dict[str, Any]:
        fn = self.get_function(function_name)
        event_config = EventInvokeConfig(fn.function_arn, fn.last_modified, config)
        fn.event_invoke_config = [event_config]
        return event_config.response()

    def update_function_event_invoke_config(self: Any, function_name: str, config: dict[str, Any]) -> dict[str, Any]:
        fn = self.get_function(function_name)
        merged = dict(fn.event_invoke_config[-1].config) if fn.event_invoke_config else {}
        merged.update(config)
        return put_function_event_invoke_config(self, function_name, merged)

    LambdaFunction.__init__ = __init__  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
    LambdaBackend.put_function_event_invoke_config = put_function_event_invoke_config  # type: ignore[method-assign]
    LambdaBackend.update_function_event_invoke_config = update_function_event_invoke_config  # type: ignore[method-assign]
    LambdaBackend.invoke = _wrap(LambdaBackend.invoke)  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = _wrap(LambdaSimpleBackend.invoke)  # type: ignore[method-assign]
    lx.register_busy(_busy)

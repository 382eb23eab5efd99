"""EventBridge: fire a rule's schedule now (Lambda targets invoked asynchronously).

AWS: when a scheduled rule (``ScheduleExpression``) fires, EventBridge
invokes each target; a Lambda target is invoked asynchronously
(``InvocationType: Event``) with the target's ``Input`` when set, otherwise
with the scheduled event::

    {"version": "0", "id": "<uuid>", "detail-type": "Scheduled Event",
     "source": "aws.events", "account": "<rule account>",
     "time": "2026-01-02T03:04:05Z", "region": "<region>",
     "resources": ["<rule ARN>"], "detail": {}}

When EventBridge cannot deliver (the function does not exist), it retries per
the target's RetryPolicy and then sends the event to the target's
``DeadLetterConfig.Arn`` queue, with the message attributes ``RULE_ARN``,
``TARGET_ARN``, ``ERROR_CODE`` and ``ERROR_MESSAGE``. A disabled rule does
not fire.

moto 5.2.5: never fires schedules; its PutEvents delivery raises
NotImplementedError for Lambda targets.

Control: ``POST /_keyfleet/events/fire`` ``{"rule": "keyfleet-start",
"account": "123456789012", "region": "us-east-1", "event_bus": "default"}``
(all but ``rule`` optional, these are the defaults) fires the rule now: each
Lambda target whose function has a ``provided.*`` runtime gets an
asynchronous invocation (ext_lambda_async.submit: retries and the function's
dead-letter queue as for any Event invocation). Answer::

    {"ok": true, "rule_arn": "...",
     "invocations": [{"function_arn": "...", "request_id": "..."}],
     "skipped": [{"target_id": "...", "target_arn": "...", "reason": "..."}]}

404 when the rule (or event bus) does not exist. A DISABLED rule invokes
nothing (``skipped`` says why). Skipped, with a reason: non-Lambda targets,
targets with ``InputPath``/``InputTransformer`` (not applied), functions of
other runtimes, and functions that do not exist (their event goes to the
target's DeadLetterConfig queue when it has one, without retries). Lambda's
resource policy (AddPermission for events.amazonaws.com) is not evaluated.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from control import ControlError

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"


def scheduled_event(rule: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": rule.account_id,
        "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": rule.region_name,
        "resources": [rule.arn],
        "detail": {},
    }


def _target_dead_letter(rule: Any, target: dict[str, Any], payload: str, code: str, message: str) -> str | None:
    """Send an undeliverable event to the target's DLQ; the message id or None."""
    from moto.sqs.models import sqs_backends

    arn = (target.get("DeadLetterConfig") or {}).get("Arn")
    parts = (arn or "").split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    try:
        sent = sqs_backends[parts[4]][parts[3]].send_message(
            parts[5],
            payload,
            message_attributes={
                "RULE_ARN": {"DataType": "String", "StringValue": rule.arn},
                "TARGET_ARN": {"DataType": "String", "StringValue": target["Arn"]},
                "ERROR_CODE": {"DataType": "String", "StringValue": code},
                "ERROR_MESSAGE": {"DataType": "String", "StringValue": message},
            },
        )
    except Exception:
        return None
    return sent.id


def fire_from_request(body: dict[str, Any]) -> dict[str, Any]:
    import ext_lambda_async
    import ext_lambda_exec
    from moto.awslambda.utils import get_backend
    from moto.events.models import events_backends

    unknown = set(body) - {"rule", "account", "region", "event_bus"}
    if unknown:
        raise ControlError(400, f"unknown fields: {sorted(unknown)}")
    name = body.get("rule")
    if not isinstance(name, str) or not name:
        raise ControlError(400, 'body must be {"rule": "<rule name>", ...}')
    account = body.get("account") or DEFAULT_ACCOUNT
    region = body.get("region") or DEFAULT_REGION
    bus = body.get("event_bus") or None
    for field, value in (("account", account), ("region", region), ("event_bus", bus)):
        if value is not None and not isinstance(value, str):
            raise ControlError(400, f"{field} must be a string")
    try:
        rule = events_backends[account][region].describe_rule(name, bus)
    except Exception as exc:
        raise ControlError(404, f"no rule {name} in account {account}, region {region}: {exc}") from exc

    invocations: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    if rule.state != "ENABLED":
        return {
            "ok": True,
            "rule_arn": rule.arn,
            "invocations": [],
            "skipped": [{"target_id": None, "target_arn": None, "reason": f"the rule is {rule.state}"}],
        }
    for target in list(rule.targets):
        arn = target.get("Arn", "")
        skip = {"target_id": target.get("Id"), "target_arn": arn}
        parts = arn.split(":")
        if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
            skipped.append(dict(skip, reason="not a Lambda function target (not delivered by the harness)"))
            continue
        if "InputPath" in target or "InputTransformer" in target:
            skipped.append(dict(skip, reason="InputPath/InputTransformer are not applied by the harness"))
            continue
        payload = target["Input"] if "Input" in target else json.dumps(scheduled_event(rule))
        try:
            fn = get_backend(parts[4], parts[3]).get_function(arn)
        except Exception as exc:
            message = f"Function not found: {arn}"
            dlq_message = _target_dead_letter(rule, target, payload, "ResourceNotFoundException", message)
            skipped.append(dict(skip, reason=f"{message} ({type(exc).__name__})", dead_letter_message_id=dlq_message))
            continue
        if not ext_lambda_exec.is_provided(fn):
            skipped.append(dict(skip, reason=f"runtime {fn.run_time} is not run by the harness"))
            continue
        request_id = ext_lambda_async.submit(fn, payload, rule=rule.arn)
        invocations.append({"function_arn": fn.function_arn, "request_id": request_id})
    return {"ok": True, "rule_arn": rule.arn, "invocations": invocations, "skipped": skipped}

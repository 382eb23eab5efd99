"""Lambda: SQS event source mappings deliver to ``provided.*`` functions.

AWS: for an enabled SQS event source mapping, Lambda's pollers receive
visible messages (in batches of up to ``BatchSize``, with the queue's
visibility timeout) with the function's execution role
(``sqs:ReceiveMessage``, ``sqs:DeleteMessage``, ``sqs:GetQueueAttributes``
on the queue), invoke the function synchronously with the SQS event
(``{"Records": [{"messageId", "receiptHandle", "body", "attributes",
"messageAttributes", "md5OfBody", "eventSource": "aws:sqs",
"eventSourceARN", "awsRegion"}, ...]}``) and then:

- function error or timeout: every message of the batch stays in flight and
  comes back when its visibility timeout ends (after ``maxReceiveCount``
  receives the queue's RedrivePolicy moves it to the DLQ);
- success: the batch is deleted, unless ``FunctionResponseTypes`` has
  ``ReportBatchItemFailures``: then the messages named in
  ``{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}`` stay and the
  others are deleted. An empty or null list, ``{}``, an empty or null
  response = all processed; a response that is not JSON or not an object, a
  ``batchItemFailures`` that is not a list, or an entry without a non-empty
  ``itemIdentifier`` of a message in the batch fails the whole batch.

At most ``ScalingConfig.MaximumConcurrency`` batches of one mapping run at
once. A disabled mapping delivers nothing. Without the permissions Lambda
refuses to poll (``The provided execution role does not have permissions to
call ReceiveMessage on SQS``).

moto 5.2.5: delivers synchronously inside SendMessage, in Docker (see
ext_lambda.py, which hides every mapping from that loop).

Patch: a poller thread in the harness. ``CreateEventSourceMapping`` (also
from CloudFormation/StackSets) registers SQS mappings;
``Queue.add_message`` of a queue with a mapping wakes the poller (so does
``POST /_keyfleet/sqs/visible``, a finished batch, a freed process slot, and
Update/DeleteEventSourceMapping); otherwise it looks again when the next
in-flight message's visibility timeout or delay ends, at least once a
second. For each enabled mapping whose function has a ``provided.*`` runtime
(one whose code zip has no ``bootstrap`` is delivered too, and fails with
``Runtime.InvalidEntrypoint`` as in Lambda), while the queue has deliverable
messages and the mapping runs fewer than its maximum concurrency (default
``DEFAULT_MAXIMUM_CONCURRENCY`` = 5 when ScalingConfig is unset) and a
harness-wide process slot is free (ext_lambda_exec.py, default 8), it
receives a batch with moto's own ``receive_message(queue, BatchSize, 0,
queue.VisibilityTimeout)`` (so receive counts and DLQ redrive are moto's),
runs the function (``ext_lambda_exec.run``, source ``sqs``, attempt = the
highest ApproximateReceiveCount of the batch) in a thread of its own and
deletes what Lambda deletes. Mappings of other functions stay parked.

IAM: with enforcement on and an enforced execution role
(ext_iam_enforce.py), before each batch the poller checks
``sqs:ReceiveMessage``, ``sqs:DeleteMessage`` and ``sqs:GetQueueAttributes``
on the queue ARN for the session ``assumed-role/<role>/<function>`` and
records them in the decisions log. When one is denied the mapping delivers
nothing: ``LastProcessingResult`` (GetEventSourceMapping,
ListEventSourceMappings) becomes ``PROBLEM: The provided execution role does
not have permissions to call <Action> on SQS``, the invocation log gets an
entry with status ``denied`` and the AccessDenied message in ``problem``, and
the mapping is checked again only once the role's policies or the
enforcement settings change. ``LastProcessingResult`` is otherwise ``OK``
after a processed batch and ``PROBLEM: Function call failed`` after a
failed one.

Control: ``GET /_keyfleet/lambda/mappings`` (per-mapping counters: running
and peak concurrency, batches, messages received/deleted, why a mapping does
not deliver), ``POST /_keyfleet/sqs/visible`` ``{"queue_url": ...}`` or
``{"queue_arn": ...}``: every in-flight message of the queue is visible now
(receive counts untouched).

Reserved concurrency: a batch received while the function already runs as
many invocations as its reserved concurrency (from any source) is
throttled, as Lambda does when ``MaximumConcurrency`` is above the reserved
concurrency: nothing runs, its messages are not deleted and come back after
the queue's visibility timeout with their receive count up (so they can
reach the DLQ), the invocation log gets a ``throttled`` entry (its
``message_ids``/``failed_items`` are the batch) and the mapping's
``throttled`` counter goes up; the mapping then waits ``THROTTLE_BACKOFF``
(0.5 s) before it polls again. Reserved concurrency 0: every batch is
throttled. Settle does not wait for throttled messages (they are in flight,
as after a failed batch), and a mapping whose function has reserved
concurrency 0 never counts as busy.

Differences from Lambda: no batching window (``MaximumBatchingWindowInSeconds``
is ignored: a batch is whatever is visible, up to BatchSize), no
``FilterCriteria``, no scaling beyond the two limits above, FIFO ordering is
moto's receive order, the queue-visibility-vs-function-timeout validation of
CreateEventSourceMapping is not done. The poller's SQS calls are made inside
the harness, so fault rules (ext_faults.py) never apply to them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import ext_lambda_exec as lx
from control import ControlError

DEFAULT_MAXIMUM_CONCURRENCY = 5
TICK_MAX = 1.0
THROTTLE_BACKOFF = 0.5  # seconds a mapping waits after a throttled batch
SQS_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
FUNCTION_FAILED = "PROBLEM: Function call failed"

_log = logging.getLogger("keyfleet.lambda.esm")
_QUEUE_PATH = re.compile(r"^/(\d{12})/([A-Za-z0-9_.\-]+)/?$")


class _Mapping:
    def __init__(self, account: str, region: str, mapping_uuid: str) -> None:
        self.account = account
        self.region = region
        self.uuid = mapping_uuid
        self.function_arn = ""
        self.event_source_arn = ""
        self.running = 0
        self.peak = 0
        self.batches = 0
        self.received = 0
        self.deleted = 0
        self.reason: str | None = None  # why it does not deliver, None = delivering
        self.problem: str | None = None  # permission problem (blocked)
        self.problem_fingerprint: str | None = None
        self.last_result: str | None = None
        self.throttled = 0  # batches throttled by the function's reserved concurrency
        self.throttle_until = 0.0  # time.monotonic() before which it does not poll again


_mappings: dict[str, _Mapping] = {}
_poke = [False]
_turn = [0]


def _wake() -> None:
    with lx.CV:
        _poke[0] = True
        lx.CV.notify_all()


# -- what a mapping is -----------------------------------------------------------


def _resolve(m: _Mapping) -> tuple[Any, Any, Any, str | None]:
    """(esm, function, queue, reason it does not deliver or None)."""
    from moto.awslambda.utils import get_backend
    from moto.sqs.models import sqs_backends

    backend = get_backend(m.account, m.region)
    esm = backend.get_event_source_mapping(m.uuid)
    if esm is None:
        return None, None, None, "deleted"
    m.function_arn = esm.function_arn
    m.event_source_arn = esm.event_source_arn
    if not esm.enabled:
        return esm, None, None, "disabled"
    try:
        fn = backend.get_function(esm.function_arn)
    except Exception:
        return esm, None, None, "function not found"
    if not lx.is_provided(fn):
        return esm, fn, None, f"runtime {fn.run_time} is not run by the harness (parked)"
    parts = esm.event_source_arn.split(":")
    queue = sqs_backends[parts[4]][parts[3]].queues.get(parts[5]) if len(parts) == 6 else None
    if queue is None:
        return esm, fn, None, "queue not found"
    return esm, fn, queue, None


def _deliverable(queue: Any) -> int:
    """Visible, not delayed messages (FIFO: of groups with nothing in flight)."""
    messages = list(queue._messages)
    busy_groups = (
        {m.group_id for m in messages if m.group_id and not m.visible} if queue.fifo_queue else set()
    )
    return sum(
        1
        for m in messages
        if m.visible and not m.delayed and not (busy_groups and m.group_id in busy_groups)
    )


def _next_change(queue: Any) -> float:
    """Seconds until an in-flight message becomes visible or a delay ends."""
    now = time.time() * 1000
    times = [t for m in list(queue._messages) for t in (m.visible_at, m.delayed_until) if t > now]
    return (min(times) - now) / 1000 + 0.01 if times else TICK_MAX


def _max_concurrency(esm: Any) -> int:
    value = (esm.scaling_config or {}).get("MaximumConcurrency")
    try:
        return max(1, int(value)) if value is not None else DEFAULT_MAXIMUM_CONCURRENCY
    except (TypeError, ValueError):
        return DEFAULT_MAXIMUM_CONCURRENCY


# -- permissions -------------------------------------------------------------------


def _fingerprint(fn: Any) -> str:
    import ext_iam_enforce

    return ext_iam_enforce.policy_fingerprint(fn.role)


def _still_blocked(m: _Mapping, fn: Any) -> bool:
    return m.problem is not None and _fingerprint(fn) == m.problem_fingerprint


def _permission_problem(fn: Any, queue: Any) -> tuple[str, str] | None:
    """(LastProcessingResult, AccessDenied message) when the role may not poll."""
    import ext_iam_enforce

    denied: tuple[str, str] | None = None
    for action in SQS_ACTIONS:
        decided = ext_iam_enforce.check_role_action(fn.role, fn.function_name, action, queue.queue_arn)
        if decided is None:
            return None  # not enforced
        if decided["decision"] != "ALLOWED" and denied is None:
            name = action.split(":", 1)[1]
            denied = (
                f"PROBLEM: The provided execution role does not have permissions to call {name} on SQS",
                decided["message"],
            )
    return denied


# -- the SQS event -------------------------------------------------------------------


def _message_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in (attrs or {}).items():
        entry: dict[str, Any] = {}
        if value.get("StringValue") is not None:
            entry["stringValue"] = value["StringValue"]
        if value.get("BinaryValue") is not None:
            binary = value["BinaryValue"]
            entry["binaryValue"] = (
                base64.b64encode(binary).decode() if isinstance(binary, bytes) else str(binary)
            )
        entry["stringListValues"] = []
        entry["binaryListValues"] = []
        entry["dataType"] = value.get("DataType")
        out[name] = entry
    return out


def sqs_record(message: Any, queue: Any) -> dict[str, Any]:
    attributes = {
        "ApproximateReceiveCount": str(message.approximate_receive_count),
        "SentTimestamp": str(message.sent_timestamp),
        "SenderId": message.sender_id,
        "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
    }
    if queue.fifo_queue:
        if message.sequence_number:
            attributes["SequenceNumber"] = message.sequence_number
        if message.group_id:
            attributes["MessageGroupId"] = message.group_id
        if message.deduplication_id:
            attributes["MessageDeduplicationId"] = message.deduplication_id
    trace = (message.system_attributes or {}).get("AWSTraceHeader")
    if isinstance(trace, dict) and trace.get("StringValue"):
        attributes["AWSTraceHeader"] = trace["StringValue"]
    record = {
        "messageId": message.id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": _message_attributes(message.message_attributes),
        "md5OfBody": message.body_md5,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.queue_arn,
        "awsRegion": queue.region,
    }
    if message.message_attributes:
        record["md5OfMessageAttributes"] = message.attribute_md5
    return record


def batch_item_failures(payload: bytes, ids: list[str]) -> tuple[list[str], str | None]:
    """(ids that failed, why the whole batch failed or None) for ReportBatchItemFailures."""
    text = (payload or b"").strip()
    if not text:
        return [], None
    try:
        doc = json.loads(text)
    except ValueError:
        return list(ids), "the function's response is not valid JSON"
    if doc is None:
        return [], None
    if not isinstance(doc, dict):
        return list(ids), "the function's response is not a JSON object"
    items = doc.get("batchItemFailures")
    if items is None:
        return [], None
    if not isinstance(items, list):
        return list(ids), "batchItemFailures is not a list"
    failed: list[str] = []
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or not ident:
            return list(ids), "a batchItemFailures entry has no itemIdentifier (missing, null or empty)"
        if ident not in ids:
            return list(ids), f"itemIdentifier {ident!r} is not a message of the batch"
        if ident not in failed:
            failed.append(ident)
    return failed, None


def _deliver(m: _Mapping, esm: Any, fn: Any, queue: Any, messages: list[Any]) -> None:
    from moto.sqs.models import sqs_backends

    deleted = 0
    handed_over = False  # lx.run releases the function's admission from then on
    try:
        records = [sqs_record(msg, queue) for msg in messages]
        ids = [r["messageId"] for r in records]
        handed_over = True
        result = lx.run(
            fn,
            json.dumps({"Records": records}).encode(),
            source="sqs",
            attempt=max(msg.approximate_receive_count for msg in messages),
            slot_held=True,
            admitted=True,
            batch_size=len(messages),
            message_ids=ids,
            mapping=m.uuid,
        )
        problem = None
        if result.failed:
            failed = list(ids)
        elif "ReportBatchItemFailures" in (esm.function_response_types or []):
            failed, problem = batch_item_failures(result.payload, ids)
        else:
            failed = []
        backend = sqs_backends[queue.account_id][queue.region]
        for msg in messages:
            if msg.id in failed:
                continue
            try:
                backend.delete_message(queue.name, msg.receipt_handle)
                deleted += 1
            except Exception as exc:  # deleted or purged meanwhile
                _log.info("deleting %s from %s: %s", msg.id, queue.name, exc)
        outcome = "OK" if not result.failed and problem is None else FUNCTION_FAILED
        fields: dict[str, Any] = {"failed_items": failed}
        if problem is not None:
            fields["problem"] = f"batch failed: {problem}"
        lx.update_entry(result.entry, **fields)
        esm._keyfleet_last_result = outcome
        with lx.CV:
            m.last_result = outcome
    except Exception:
        _log.exception("delivering to %s failed", fn.function_arn)
    finally:
        if not handed_over:
            lx.release_admission(fn)
        with lx.CV:
            m.running -= 1
            m.batches += 1
            m.deleted += deleted
            lx.release_slot()  # wakes the poller


# -- the poller ----------------------------------------------------------------------


def _poll_mapping(m: _Mapping) -> float:
    """Start what can start for one mapping; seconds until it should be looked at again."""
    from moto.sqs.models import sqs_backends

    esm, fn, queue, reason = _resolve(m)
    with lx.CV:
        m.reason = reason
        if reason == "deleted":
            if m.running == 0:
                _mappings.pop(m.uuid, None)
            return TICK_MAX
    if reason is not None:
        return TICK_MAX
    next_wait = _next_change(queue)
    backoff = m.throttle_until - time.monotonic()
    if backoff > 0:
        return min(next_wait, backoff)
    while _deliverable(queue):
        if _still_blocked(m, fn):
            break
        with lx.CV:
            if m.running >= _max_concurrency(esm) or not lx.try_acquire_slot():
                break
            m.running += 1
            m.peak = max(m.peak, m.running)
        fingerprint = _fingerprint(fn)
        problem = _permission_problem(fn, queue)
        if problem is not None:
            with lx.CV:
                m.running -= 1
                lx.release_slot(notify_listeners=False)
                m.problem, m.problem_fingerprint = problem[0], fingerprint
                m.last_result = problem[0]
            esm._keyfleet_last_result = problem[0]
            lx.log_entry(
                request_id=str(uuid.uuid4()),
                function_arn=fn.function_arn,
                account=fn.account_id,
                region=fn.region,
                source="sqs",
                attempt=0,
                status="denied",
                error_type="AccessDenied",
                mapping=m.uuid,
                problem=f"{problem[0]}: {problem[1]}",
                ended=lx.now_iso(),
            )
            break
        with lx.CV:
            m.problem = m.problem_fingerprint = None
        try:
            messages = sqs_backends[queue.account_id][queue.region].receive_message(
                queue.name,
                esm.batch_size,
                0,
                queue.visibility_timeout,
                message_attribute_names=["All"],
            )
        except Exception:
            _log.exception("receiving from %s failed", queue.queue_arn)
            messages = []
        if not messages:
            with lx.CV:
                m.running -= 1
                lx.release_slot(notify_listeners=False)
            break
        with lx.CV:
            m.received += len(messages)
        if not lx.try_admit(fn):
            # The function's reserved concurrency is used up: Lambda throttles
            # the batch. Its messages stay in flight (their receive count went
            # up) and come back after the visibility timeout, as in AWS.
            with lx.CV:
                m.running -= 1
                m.throttled += 1
                m.throttle_until = time.monotonic() + THROTTLE_BACKOFF
                lx.release_slot(notify_listeners=False)
            lx.throttled(
                fn,
                source="sqs",
                attempt=max(msg.approximate_receive_count for msg in messages),
                batch_size=len(messages),
                message_ids=[msg.id for msg in messages],
                failed_items=[msg.id for msg in messages],
                mapping=m.uuid,
            )
            return min(next_wait, THROTTLE_BACKOFF)
        threading.Thread(
            target=_deliver, args=(m, esm, fn, queue, messages), name="lambda-sqs-batch", daemon=True
        ).start()
    return next_wait


def _round() -> float:
    with lx.CV:
        items = list(_mappings.values())
        _turn[0] += 1
    if items:  # rotate, so no mapping always gets the free slots first
        k = _turn[0] % len(items)
        items = items[k:] + items[:k]
    next_wait = TICK_MAX
    for m in items:
        try:
            next_wait = min(next_wait, _poll_mapping(m))
        except Exception:
            _log.exception("polling mapping %s failed", m.uuid)
    return max(next_wait, 0.01)


def _loop() -> None:
    wait = TICK_MAX
    while True:
        with lx.CV:
            lx.CV.wait_for(lambda: _poke[0], timeout=wait)
            _poke[0] = False
        try:
            wait = _round()
        except Exception:
            _log.exception("SQS poller round failed")
            wait = TICK_MAX


# -- settle, stats, control ------------------------------------------------------------


def _busy(accounts: set[str] | None) -> list[str]:
    busy = []
    for m in list(_mappings.values()):
        if accounts is not None and m.account not in accounts:
            continue
        if m.running:
            busy.append(f"event source mapping {m.uuid} ({m.function_arn}): {m.running} batch(es) running")
        esm, fn, queue, reason = _resolve(m)
        if reason is not None or _still_blocked(m, fn):
            continue
        if lx.reserved_concurrency(fn) == 0:
            continue  # never runs: every batch is throttled back to the queue
        if m.problem is not None:  # its permissions changed: have it checked now
            _poke[0] = True
            lx.CV.notify_all()
        n = _deliverable(queue)
        if n:
            busy.append(
                f"{queue.queue_arn}: {n} visible message(s) for event source mapping {m.uuid} ({fn.function_arn})"
            )
    return busy


def mappings_snapshot(body: Any = None) -> dict[str, Any]:
    rows = []
    for m in list(_mappings.values()):
        esm, fn, queue, reason = _resolve(m)
        if reason is None and _still_blocked(m, fn):
            reason = m.problem
        with lx.CV:
            rows.append(
                {
                    "uuid": m.uuid,
                    "function_arn": m.function_arn,
                    "event_source_arn": m.event_source_arn,
                    "account": m.account,
                    "region": m.region,
                    "state": "Deleted" if esm is None else ("Enabled" if esm.enabled else "Disabled"),
                    "delivering": reason is None,
                    "reason": reason,
                    "maximum_concurrency": _max_concurrency(esm) if esm is not None else None,
                    "batch_size": esm.batch_size if esm is not None else None,
                    "running": m.running,
                    "peak_concurrency": m.peak,
                    "batches": m.batches,
                    "messages_received": m.received,
                    "messages_deleted": m.deleted,
                    "throttled": m.throttled,
                    "last_processing_result": m.last_result,
                }
            )
    return {**lx.slots(), "default_maximum_concurrency": DEFAULT_MAXIMUM_CONCURRENCY, "mappings": rows}


def _find_queue(body: dict[str, Any]) -> Any:
    from moto.sqs.models import sqs_backends

    unknown = set(body) - {"queue_url", "queue_arn", "region"}
    if unknown:
        raise ControlError(400, f"unknown fields: {sorted(unknown)}")
    arn, url, region = body.get("queue_arn"), body.get("queue_url"), body.get("region")
    if region is not None and not isinstance(region, str):
        raise ControlError(400, "region must be a string")
    if isinstance(arn, str) and arn:
        parts = arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ControlError(400, f"not an SQS queue ARN: {arn}")
        account, region, name = parts[4], parts[3], parts[5]
    elif isinstance(url, str) and url:
        parsed = urlparse(url)
        match = _QUEUE_PATH.match(parsed.path)
        if not match:
            raise ControlError(400, f"not a queue URL: {url}")
        account, name = match.group(1), match.group(2)
        host = re.match(r"^sqs\.([a-z0-9-]+)\.amazonaws\.com", parsed.hostname or "")
        region = region or (host.group(1) if host else "us-east-1")
    else:
        raise ControlError(400, 'body must name the queue: {"queue_url": ...} or {"queue_arn": ...}')
    queue = sqs_backends[account][region].queues.get(name)
    if queue is None:
        raise ControlError(404, f"no queue {name} in account {account}, region {region}")
    return queue


def visible_from_request(body: dict[str, Any]) -> dict[str, Any]:
    queue = _find_queue(body)
    count = 0
    for message in list(queue._messages):
        if not message.visible:
            message.visible_at = 0
            count += 1
    with queue._messages_lock:
        queue._messages_lock.notify_all()  # long-polling receivers
    _wake()
    return {"ok": True, "made_visible": count}


# -- install ---------------------------------------------------------------------------


def install() -> None:
    from moto.awslambda.models import EventSourceMapping, LambdaBackend
    from moto.sqs.models import Queue

    original_create = LambdaBackend.create_event_source_mapping
    original_update = LambdaBackend.update_event_source_mapping
    original_delete = LambdaBackend.delete_event_source_mapping
    original_config = EventSourceMapping.get_configuration
    original_add = Queue.add_message

    def create_event_source_mapping(self: Any, spec: dict[str, Any]) -> Any:
        esm = original_create(self, spec)
        if esm.event_source_arn.split(":")[2] == "sqs":
            with lx.CV:
                _mappings[esm.uuid] = _Mapping(self.account_id, self.region_name, esm.uuid)
            _wake()
        return esm

    def update_event_source_mapping(self: Any, mapping_uuid: str, spec: dict[str, Any]) -> Any:
        esm = original_update(self, mapping_uuid, spec)
        _wake()
        return esm

    def delete_event_source_mapping(self: Any, mapping_uuid: str) -> Any:
        esm = original_delete(self, mapping_uuid)
        _wake()
        return esm

    def get_configuration(self: Any) -> dict[str, Any]:
        config = original_config(self)
        result = getattr(self, "_keyfleet_last_result", None)
        if result:
            config["LastProcessingResult"] = result
        return config

    def add_message(self: Any, message: Any) -> None:
        original_add(self, message)
        if dict.__len__(self.lambda_event_source_mappings):
            _wake()

    LambdaBackend.create_event_source_mapping = create_event_source_mapping  # type: ignore[method-assign]
    LambdaBackend.update_event_source_mapping = update_event_source_mapping  # type: ignore[method-assign]
    LambdaBackend.delete_event_source_mapping = delete_event_source_mapping  # type: ignore[method-assign]
    EventSourceMapping.get_configuration = get_configuration  # type: ignore[method-assign]
    Queue.add_message = add_message  # type: ignore[method-assign]
    lx.register_busy(_busy)
    lx.on_slot_free(lambda: _poke.__setitem__(0, True))
    threading.Thread(target=_loop, name="lambda-sqs-poller", daemon=True).start()

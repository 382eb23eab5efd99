"""Message log: every SQS message and every SNS message that was accepted.

AWS: a message exists until a consumer deletes it (or its retention ends);
afterwards nothing shows what it carried. A test that wants to be sure no
secret ever travelled in clear through SQS or SNS has to see every message,
including those the agents and the coordinator have long consumed.

moto 5.2.5: keeps an SQS message only while it is in its queue; SNS keeps
what was published inside each topic (``sent_notifications``, gone with the
topic), and no HTTP API shows either.

Patch: ``SQSBackend.send_message`` and ``SNSBackend.publish`` are wrapped.
moto runs first, unchanged (so a refused message, e.g. too large, a missing
queue or topic, a denied action, is never recorded), and only what it
accepted is appended, in acceptance order:

    {"sqs": [{"queue": "/<account>/<name>", "body": "...", "account": "..."}],
     "sns": [{"topic": "arn:aws:sns:...", "subject": "..." | null, "message": "..."}]}

SQS: SendMessage and every accepted entry of SendMessageBatch (both call the
backend's ``send_message`` once per message; a batch entry moto fails, e.g.
an invalid DelaySeconds, is not there), whatever the protocol (JSON or query)
and whoever sends: a test's client, a Lambda function run by the harness
(ext_lambda_exec.py: its calls come to this server like any other), what
the harness sends itself (a Lambda or EventBridge target's dead-letter queue,
ext_lambda_async.py, ext_events.py) and what moto delivers itself
(EventBridge PutEvents to an SQS target, S3 event notifications). ``queue``
is the path of the queue URL, ``/<queue account>/<queue name>``; ``account``
is the account that sent it: the caller's (the account of the request's
credentials, moto's ``current_account``) for SendMessage/SendMessageBatch
requests, the queue's own account for the other sends.
SNS: every Publish (and each accepted PublishBatch entry), ``topic`` being the
TopicArn, or the TargetArn or PhoneNumber a Publish names instead; ``message``
exactly as published (with ``MessageStructure=json``, the JSON document). The
copies SNS delivers to subscribed SQS queues are the Publish already logged
and are not logged again. SQS's redrive to a dead-letter queue moves a logged
message; it is not a new one.

Kept until cleared (no limit). Control: ``GET /_keyfleet/messages`` answers
the log, ``DELETE /_keyfleet/messages`` clears it
(``{"ok": true, "cleared": N}``, N = SQS + SNS entries).
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_sqs: list[dict[str, Any]] = []
_sns: list[dict[str, Any]] = []
# Per request thread: the account sending through SendMessage(Batch), and how
# deep inside an SNS publish we are (its deliveries to SQS are not logged).
_local = threading.local()


def snapshot(body: Any = None) -> dict[str, Any]:
    with _lock:
        return {"sqs": [dict(m) for m in _sqs], "sns": [dict(m) for m in _sns]}


def clear(body: Any = None) -> dict[str, Any]:
    with _lock:
        count = len(_sqs) + len(_sns)
        _sqs.clear()
        _sns.clear()
    return {"ok": True, "cleared": count}


def _sending_as(method: Any) -> Any:
    """Wrap an SQSResponse action: its backend sends are the caller's."""

    def wrapped(self: Any) -> Any:
        previous = getattr(_local, "sender", None)
        _local.sender = self.current_account
        try:
            return method(self)
        finally:
            _local.sender = previous

    wrapped.__name__ = method.__name__
    wrapped.__doc__ = method.__doc__
    return wrapped


def install() -> None:
    from moto.sns.models import SNSBackend
    from moto.sqs.models import SQSBackend
    from moto.sqs.responses import SQSResponse

    if getattr(SQSBackend, "_keyfleet_messages", False):
        return
    original_send = SQSBackend.send_message
    original_publish = SNSBackend.publish

    def send_message(self: Any, queue_name: str, message_body: str, *args: Any, **kwargs: Any) -> Any:
        message = original_send(self, queue_name, message_body, *args, **kwargs)
        if getattr(_local, "sns_depth", 0) == 0:
            entry = {
                "queue": f"/{self.account_id}/{queue_name}",
                "body": message_body,
                "account": getattr(_local, "sender", None) or self.account_id,
            }
            with _lock:
                _sqs.append(entry)
        return message

    def publish(self: Any, message: str, arn: str | None, phone_number: str | None = None,
                subject: str | None = None, *args: Any, **kwargs: Any) -> Any:
        _local.sns_depth = getattr(_local, "sns_depth", 0) + 1
        try:
            message_id = original_publish(self, message, arn, phone_number, subject, *args, **kwargs)
        finally:
            _local.sns_depth -= 1
        entry = {"topic": arn or phone_number, "subject": subject, "message": message}
        with _lock:
            _sns.append(entry)
        return message_id

    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    SNSBackend.publish = publish  # type: ignore[method-assign]
    SQSResponse.send_message = _sending_as(SQSResponse.send_message)  # type: ignore[method-assign]
    SQSResponse.send_message_batch = _sending_as(SQSResponse.send_message_batch)  # type: ignore[method-assign]
    SQSBackend._keyfleet_messages = True  # type: ignore[attr-defined]

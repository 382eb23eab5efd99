"""SQS: the queue's account comes from the QueueUrl.

AWS: a queue URL names its owner, ``https://sqs.<region>.amazonaws.com/<account-id>/<queue-name>``.
Every action that takes a QueueUrl (SendMessage, SendMessageBatch,
ReceiveMessage, DeleteMessage, DeleteMessageBatch, ChangeMessageVisibility,
GetQueueAttributes, SetQueueAttributes, PurgeQueue, tagging, ...) acts on the
queue of that account, whoever the caller is (the queue policy decides whether
the caller may). GetQueueUrl with ``QueueOwnerAWSAccountId`` looks the name up
in that account. This is how keyfleet's coordinator sends jobs to the agents'
queues and how agents send results back.

moto 5.2.5: the backend is chosen from the *caller's* credentials only
(``SQSResponse.sqs_backend`` uses ``self.current_account``), so a queue of
account A used with account B's credentials is "NonExistentQueue".

Patch: ``SQSResponse.sqs_backend`` picks the account from, in order,
  1. the ``QueueUrl`` parameter when it is a URL (JSON protocol body — the Rust
     SDK and current boto3 send ``x-amz-target: AmazonSQS.<Action>`` — or a
     query-protocol form/query string),
  2. the request path when a query-protocol client posts to the queue URL
     itself (``POST /<account-id>/<queue-name>``),
  3. ``QueueOwnerAWSAccountId`` (GetQueueUrl),
and falls back to the caller's account (CreateQueue, ListQueues, or a bare
queue name). The region stays the one the request is signed for, as moto
does; the host part of the URL is ignored. Queue policies are not evaluated
(moto does not evaluate IAM or resource policies at all).
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

_ACCOUNT_PATH = re.compile(r"^/(\d{12})/([A-Za-z0-9_.\-]+)/?$")


def _account_from_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    if not value.startswith(("http://", "https://")):
        return None
    match = _ACCOUNT_PATH.match(urlparse(value).path)
    return match.group(1) if match else None


def queue_account(response: object) -> str | None:
    """The account a request addresses through its QueueUrl, if any."""
    get_param = getattr(response, "_get_param")
    try:
        account = _account_from_url(get_param("QueueUrl"))
    except Exception:  # parameters that do not parse are moto's to report
        account = None
    if account:
        return account
    path = getattr(response, "path", "") or ""
    match = _ACCOUNT_PATH.match(path)
    if match:
        return match.group(1)
    try:
        owner = get_param("QueueOwnerAWSAccountId")
    except Exception:
        owner = None
    if isinstance(owner, str) and re.fullmatch(r"\d{12}", owner):
        return owner
    return None


def install() -> None:
    from moto.sqs import responses
    from moto.sqs.models import sqs_backends

    def sqs_backend(self):  # type: ignore[no-untyped-def]
        account = queue_account(self) or self.current_account
        return sqs_backends[account][self.region]

    responses.SQSResponse.sqs_backend = property(sqs_backend)  # type: ignore[assignment]

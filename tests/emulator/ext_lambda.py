"""Lambda: SQS event source mappings leave messages for the local agent.

AWS: an SQS event source mapping polls the queue and runs the function; a
message goes back to the queue (and, after maxReceiveCount, to the DLQ) only
when the function fails.

moto 5.2.5: SendMessage to a queue with an enabled event source mapping
synchronously receives the queue's visible messages and invokes the function
in a Docker container. Without Docker (this project's machines and CI have
none) every invocation fails, so each SendMessage bumps the receive count of
every waiting message, makes them visible again, and with a redrive policy
moves them to the DLQ — messages of a function that never ran. keyfleet's
local fleet runs the agent in-process instead and reads ``keyfleet-jobs``
itself, so those messages must stay in the queue.

Patch: queues keep their mappings (CreateEventSourceMapping,
ListEventSourceMappings and the StackSet template's
AWS::Lambda::EventSourceMapping behave as before), but the per-message
delivery loop in ``Queue.add_message`` sees no mapping, so messages wait in
the queue for whoever receives them. Start the harness with
``--moto-lambda-delivery`` to keep moto's behaviour (e.g. with Docker).
"""

from __future__ import annotations

from typing import Any


class ParkedMappings(dict):
    """Event source mappings of one queue, hidden from moto's delivery loop.

    moto stores a queue's mappings in ``queue.lambda_event_source_mappings``
    and reads them in exactly one place that matters here: ``add_message``
    iterates ``.items()`` to invoke each function. Lookups and assignment
    (used when a mapping is created or checked) work as on a plain dict.
    """

    def items(self) -> Any:  # type: ignore[override]
        return iter(())


def install() -> None:
    from moto.sqs.models import Queue

    original_init = Queue.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.lambda_event_source_mappings = ParkedMappings(self.lambda_event_source_mappings)

    Queue.__init__ = __init__  # type: ignore[method-assign]

"""Lambda: moto's own SQS event source delivery never runs for what it cannot run.

AWS: an SQS event source mapping polls the queue and runs the function; a
message goes back to the queue (and, after maxReceiveCount, to the DLQ) only
when the function fails.

moto 5.2.5: SendMessage to a queue with an enabled event source mapping
synchronously receives the queue's visible messages and invokes the function
in a Docker container. Without Docker (this project's machines and CI have
none) every invocation fails, so each SendMessage bumps the receive count of
every waiting message, makes them visible again, and with a redrive policy
moves them to the DLQ — messages of a function that never ran.

Patch: queues keep their mappings (CreateEventSourceMapping,
ListEventSourceMappings and the StackSet template's
AWS::Lambda::EventSourceMapping behave as before), but the per-message
delivery loop in ``Queue.add_message`` sees no mapping. The mappings of
functions the harness runs (``provided.*`` runtimes) are delivered by
ext_lambda_esm.py as Lambda does; the mappings of other runtimes are
parked: their messages wait in the queue for whoever receives them. Start
the harness with
``--moto-lambda-delivery`` to let moto deliver the mappings of the other
functions its own way (e.g. with Docker); harness-run functions are never
handed to moto.
"""

from __future__ import annotations

from typing import Any


def harness_delivers(esm: Any, account: str, region: str) -> bool:
    """Whether ext_lambda_esm.py delivers this mapping (its function can run here)."""
    import ext_lambda_exec
    from moto.awslambda.utils import get_backend

    try:
        fn = get_backend(account, region).get_function(esm.function_arn)
    except Exception:
        return False
    return ext_lambda_exec.is_provided(fn)


class ParkedMappings(dict):
    """Event source mappings of one queue, hidden from moto's delivery loop.

    moto stores a queue's mappings in ``queue.lambda_event_source_mappings``
    and reads them in exactly one place that matters here: ``add_message``
    iterates ``.items()`` to invoke each function. Lookups and assignment
    (used when a mapping is created or checked) work as on a plain dict.
    ``moto_delivers`` (``--moto-lambda-delivery``): ``items()`` yields the
    mappings of functions the harness does not run, for moto to deliver.
    """

    moto_delivers = False
    queue_account = ""
    queue_region = ""

    def items(self) -> Any:  # type: ignore[override]
        if not self.moto_delivers:
            return iter(())
        return iter(
            [
                (arn, esm)
                for arn, esm in list(dict.items(self))
                if not harness_delivers(esm, self.queue_account, self.queue_region)
            ]
        )


def install(moto_delivery: bool = False) -> None:
    from moto.sqs.models import Queue

    original_init = Queue.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        parked = ParkedMappings(self.lambda_event_source_mappings)
        parked.moto_delivers = moto_delivery
        parked.queue_account = self.account_id
        parked.queue_region = self.region
        self.lambda_event_source_mappings = parked

    Queue.__init__ = __init__  # type: ignore[method-assign]

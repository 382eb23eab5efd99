"""S3 bucket policies: a statement with a condition applies only when its
condition holds.

AWS: a bucket policy's statement applies to a request only when its
``Condition`` holds for it; the usual TLS guard (``Deny`` ``s3:*`` to
``"*"`` when ``aws:SecureTransport`` is ``false``) refuses plain HTTP and
nothing else.

moto 5.2.5: before any object operation (GetObject, PutObject, DeleteObject,
HeadObject, DeleteObjects' keys) it evaluates the bucket's policy itself
(``FakeBucket.get_permission``, moto's ``IAMPolicy``), ignoring every
``Condition``: the TLS guard denies every request, with an empty 403.

Patch: ``FakeBucket.get_permission`` evaluates only the statements without a
``Condition`` (moto's shortcut stays for them: an unconditional ``Deny``
still refuses). A conditional statement is left to the policy engine, which
evaluates bucket policies with their conditions for the principals it
decides (ext_iam_enforce; the test kit's own credentials are not decided,
as for every other policy).
"""

from __future__ import annotations

import json
from typing import Any


def unconditional(policy: bytes | str) -> str | None:
    """The policy without its conditional statements, or None when none is
    left (or it does not parse: moto's answer, NEUTRAL)."""
    try:
        doc = json.loads(policy.decode() if isinstance(policy, bytes) else policy)
    except ValueError:
        return None
    statements = doc.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if isinstance(s, dict) and not s.get("Condition")]
    if not kept:
        return None
    return json.dumps({**doc, "Statement": kept})


def install() -> None:
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    if getattr(FakeBucket, "_keyfleet_policy_conditions", False):
        return

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        kept = unconditional(self.policy)
        if kept is None:
            return PermissionResult.NEUTRAL
        return IAMPolicy(kept).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
    FakeBucket._keyfleet_policy_conditions = True  # type: ignore[attr-defined]

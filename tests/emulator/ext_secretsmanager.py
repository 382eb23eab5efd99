"""Secrets Manager: secret names are validated as AWS validates them.

AWS: a secret name may contain only ASCII letters, digits and ``/_+=.@-``,
1 to 512 characters. CreateSecret with any other name fails with HTTP 400,
``ValidationException``, message::

    Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!

(the trailing ``!`` belongs to the message, not to the allowed characters).
The actions that take a ``SecretId`` answer the same when the SecretId is not
an ARN and is not a valid name (DescribeSecret, GetSecretValue,
PutSecretValue, UpdateSecret, DeleteSecret, TagResource, UntagResource,
ListSecretVersionIds, ValidateResourcePolicy, ...). Code and message as
recorded against AWS in LocalStack's AWS-validated snapshot test
``tests/aws/services/secretsmanager/test_secretsmanager.py::TestSecretsManager::test_invalid_secret_name``.

moto 5.2.5 accepts any name (``keyfleet,alice``, spaces, non-ASCII, 600
characters), so code that builds a secret name from user data works against
the emulator and fails in AWS; a SecretId with such characters is simply
"not found" (ResourceNotFoundException) instead of refused.

Patch: before moto handles CreateSecret, ``Name`` is checked: longer than 512
characters fails with the model's length constraint (``ValidationException``,
``1 validation error detected: Value '...' at 'name' failed to satisfy
constraint: Member must have length less than or equal to 512``: AWS's usual
constraint message; this one is not from a recording), any character outside
the allowed set with the message above. Every other action with a
``SecretId`` (see ``SECRET_ID_ACTIONS``) checks the characters of a SecretId
that does not start with ``arn:``; ARNs (full or partial) are moto's to
resolve, as before. BatchGetSecretValue's ``SecretIdList`` and filters are not
checked.

AWS: GetSecretValue without VersionId or VersionStage returns the version
labelled ``AWSCURRENT``, and UpdateSecretVersionStage moving ``AWSCURRENT``
(``MoveToVersionId``, ``RemoveFromVersionId``) changes which one that is;
it fails with InvalidParameterException when ``RemoveFromVersionId`` does not
hold the label, which makes it a compare-and-swap. moto 5.2.5 moves the
labels but keeps returning the old version as the current value (it reads
``default_version_id``, which only PutSecretValue with ``AWSCURRENT``
updates). Patch: after moto moves ``AWSCURRENT``, the secret's current
version is the one it was moved to.
"""

from __future__ import annotations

import re
from typing import Any, Callable

MAX_NAME_LENGTH = 512
VALID_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]+")
INVALID_NAME_MESSAGE = (
    "Invalid name. Must be a valid name containing alphanumeric characters, "
    "or any of the following: -/_+=.@!"
)

# moto response methods whose request has a SecretId that may be a name.
SECRET_ID_ACTIONS = (
    "cancel_rotate_secret",
    "delete_resource_policy",
    "delete_secret",
    "describe_secret",
    "get_resource_policy",
    "get_secret_value",
    "list_secret_version_ids",
    "put_resource_policy",
    "put_secret_value",
    "remove_regions_from_replication",
    "replicate_secret_to_regions",
    "restore_secret",
    "rotate_secret",
    "stop_replication_to_replica",
    "tag_resource",
    "untag_resource",
    "update_secret",
    "update_secret_version_stage",
    "validate_resource_policy",
)


def is_valid_name(name: str) -> bool:
    return VALID_NAME.fullmatch(name) is not None


def _validation_exception(message: str) -> Exception:
    from moto.secretsmanager.exceptions import ValidationException

    return ValidationException(message)


def check_new_name(name: Any) -> None:
    """CreateSecret's Name: length, then characters."""
    if not isinstance(name, str):
        return  # missing or malformed parameters are moto's to report
    if len(name) > MAX_NAME_LENGTH:
        raise _validation_exception(
            f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
            f"constraint: Member must have length less than or equal to {MAX_NAME_LENGTH}"
        )
    if not is_valid_name(name):
        raise _validation_exception(INVALID_NAME_MESSAGE)


def check_secret_id(secret_id: Any) -> None:
    """A SecretId that is not an ARN must be a valid name."""
    if not isinstance(secret_id, str) or not secret_id or secret_id.startswith("arn:"):
        return
    if not is_valid_name(secret_id):
        raise _validation_exception(INVALID_NAME_MESSAGE)


def _guarded(original: Callable[..., Any], param: str, check: Callable[[Any], None]) -> Callable:
    def action(self: Any) -> Any:
        check(self._get_param(param))
        return original(self)

    action.__name__ = original.__name__
    action.__doc__ = original.__doc__
    return action


def _follow_awscurrent(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_secret_version_stage(
        self: Any,
        secret_id: str,
        version_stage: str,
        remove_from_version_id: str,
        move_to_version_id: str,
    ) -> Any:
        out = original(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].default_version_id = move_to_version_id
        return out

    return update_secret_version_stage


def install() -> None:
    from moto.secretsmanager.models import SecretsManagerBackend
    from moto.secretsmanager.responses import SecretsManagerResponse

    SecretsManagerBackend.update_secret_version_stage = _follow_awscurrent(  # type: ignore[method-assign]
        SecretsManagerBackend.update_secret_version_stage
    )

    SecretsManagerResponse.create_secret = _guarded(  # type: ignore[method-assign]
        SecretsManagerResponse.create_secret, "Name", check_new_name
    )
    for name in SECRET_ID_ACTIONS:
        original = getattr(SecretsManagerResponse, name, None)
        if original is not None:
            setattr(SecretsManagerResponse, name, _guarded(original, "SecretId", check_secret_id))

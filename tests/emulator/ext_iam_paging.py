"""IAM: list operations page like AWS.

AWS: ListUsers, GetAccountAuthorizationDetails, ListAccessKeys and
ListUserTags return at most ``MaxItems`` items (default 100, valid 1..1000).
When more exist the response has ``<IsTruncated>true</IsTruncated>`` and a
``<Marker>``; the caller passes the Marker back to get the next page. Code that
reads only the first page silently misses users in any account with more than
100 of them.

moto 5.2.5: ListUsers ignores MaxItems/Marker and returns every user with
IsTruncated=false; GetAccountAuthorizationDetails returns everything at once;
ListAccessKeys and ListUserTags ignore MaxItems. (ListRoles already pages.)

Patch: the four ``IamResponse`` actions are replaced by versions that take the
same data from moto's backend and slice it. Items keep moto's order (creation
order); the Marker is an opaque token (base64 of the action and the offset of
the next item) that is only valid for the action that issued it.
GetAccountAuthorizationDetails pages over the concatenation of its four lists
(users, groups, roles, policies), as AWS counts MaxItems over all of them. The
XML is still produced by moto's serializer from the botocore model, so the
response shape is AWS's.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Sequence

DEFAULT_MAX_ITEMS = 100
MAX_MAX_ITEMS = 1000


def _validation_error(message: str) -> Exception:
    from moto.iam.exceptions import ValidationError

    return ValidationError(message)


def _max_items(raw: Any) -> int:
    if raw in (None, ""):
        return DEFAULT_MAX_ITEMS
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise _validation_error(f"Invalid value for parameter MaxItems: {raw}")
    if value < 1:
        raise _validation_error(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to "
            "satisfy constraint: Member must have value greater than or equal to 1"
        )
    if value > MAX_MAX_ITEMS:
        raise _validation_error(
            f"1 validation error detected: Value '{value}' at 'maxItems' failed to "
            "satisfy constraint: Member must have value less than or equal to 1000"
        )
    return value


def encode_marker(action: str, offset: int) -> str:
    return base64.b64encode(f"keyfleet-emulator:{action}:{offset}".encode()).decode()


def decode_marker(action: str, marker: Any) -> int:
    if marker in (None, ""):
        return 0
    try:
        prefix, marker_action, offset = (
            base64.b64decode(str(marker), validate=True).decode().split(":")
        )
        if prefix != "keyfleet-emulator" or marker_action != action:
            raise ValueError(marker)
        value = int(offset)
        if value < 0:
            raise ValueError(marker)
        return value
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise _validation_error("Invalid Marker.")


def page(
    action: str, items: Sequence[Any], marker: Any, max_items: Any
) -> tuple[list[Any], str | None]:
    """One page of ``items`` and the Marker of the next page (None when done)."""
    start = decode_marker(action, marker)
    size = _max_items(max_items)
    chunk = list(items[start : start + size])
    following = encode_marker(action, start + size) if start + size < len(items) else None
    return chunk, following


def _result(result: dict[str, Any], next_marker: str | None) -> dict[str, Any]:
    result["IsTruncated"] = next_marker is not None
    if next_marker is not None:
        result["Marker"] = next_marker
    return result


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    def list_users(self: Any) -> ActionResult:
        users = list(self.backend.list_users(self._get_param("PathPrefix"), None, None))
        chunk, nxt = page(
            "ListUsers", users, self._get_param("Marker"), self._get_param("MaxItems")
        )
        return ActionResult(_result({"Users": chunk}, nxt))

    def list_access_keys(self: Any) -> ActionResult:
        user_name = self._get_param("UserName")
        if not user_name:
            # As moto: without UserName, the user that signed the request.
            access_key = self.backend.get_access_key_last_used(self.get_access_key())
            user_name = access_key["user_name"]
        keys = list(self.backend.list_access_keys(user_name))
        chunk, nxt = page(
            "ListAccessKeys", keys, self._get_param("Marker"), self._get_param("MaxItems")
        )
        return ActionResult(_result({"UserName": user_name, "AccessKeyMetadata": chunk}, nxt))

    def list_user_tags(self: Any) -> ActionResult:
        tags = list(self.backend.list_user_tags(self._get_param("UserName")))
        chunk, nxt = page(
            "ListUserTags", tags, self._get_param("Marker"), self._get_param("MaxItems")
        )
        return ActionResult(_result({"Tags": chunk}, nxt))

    def get_account_authorization_details(self: Any) -> ActionResult:
        details = self.backend.get_account_authorization_details(
            self._get_param("Filter", [])
        )
        sections = (
            ("UserDetailList", list(details["users"])),
            ("GroupDetailList", list(details["groups"])),
            ("RoleDetailList", list(details["roles"])),
            ("Policies", list(details["managed_policies"])),
        )
        tagged = [(name, item) for name, items in sections for item in items]
        chunk, nxt = page(
            "GetAccountAuthorizationDetails",
            tagged,
            self._get_param("Marker"),
            self._get_param("MaxItems"),
        )
        result: dict[str, Any] = {name: [] for name, _ in sections}
        for name, item in chunk:
            result[name].append(item)
        return ActionResult(_result(result, nxt))

    IamResponse.list_users = list_users  # type: ignore[method-assign]
    IamResponse.list_access_keys = list_access_keys  # type: ignore[method-assign]
    IamResponse.list_user_tags = list_user_tags  # type: ignore[method-assign]
    IamResponse.get_account_authorization_details = (  # type: ignore[method-assign]
        get_account_authorization_details
    )

"""Organizations: accounts carry ``State``; the retired ``Status`` is gone.

AWS: Organizations retired the ``Status`` field of the ``Account`` object on
2026-09-09. DescribeAccount, ListAccounts and ListAccountsForParent (the
operations that return ``Account`` objects) now carry only ``State``:
``PENDING_ACTIVATION``, ``ACTIVE``, ``SUSPENDED``, ``PENDING_CLOSURE`` or
``CLOSED``. Code that still reads ``Status`` gets nothing (the Rust SDK's
``Account::status()`` returns ``None``).

moto 5.2.5: ``FakeAccount.describe`` returns both ``Status`` and ``State``
(CloseAccount sets both to ``SUSPENDED``), and every response with an account
is built from it, so code reading the retired field still works against the
emulator.

Patch: ``FakeAccount.describe`` leaves ``Status`` out; ``State`` and every
other field are unchanged. This covers every response moto builds from an
account: DescribeAccount, ListAccounts and ListAccountsForParent (with or
without paging). The model keeps its ``status`` attribute, so moto's own logic
(and ext_stacksets.py, which deploys only to ACTIVE accounts) is untouched.
``DelegatedAdministrator`` (ListDelegatedAdministrators) is a different shape
whose ``Status`` AWS has not announced as retired: it keeps both fields, as
moto builds them.

AWS: ListAccounts and ListAccountsForParent can be called only from the
organization's management account or from a member account that is a
delegated administrator (of any service); any other member account gets
``AccessDeniedException`` "You don't have permissions to access this
resource." (DescribeOrganization works from every member.)

moto 5.2.5: answers a member account too (from that account's own, empty,
backend: ListAccounts returned no accounts, ListAccountsForParent failed
with ParentNotFound or answered nothing).

Patch: for a caller that is a member (moto knows it from CreateAccount) but
not the management account, the two handlers answer AccessDeniedException
(HTTP 400, the JSON error AWS sends) unless the account is registered as a
delegated administrator; a delegated administrator gets the organization's
answer, as from the management account. An account in no organization
keeps moto's answer (AWS: AWSOrganizationsNotInUseException).
"""

from __future__ import annotations

from typing import Any

RETIRED_ACCOUNT_FIELDS = ("Status",)


def without_retired_fields(account: dict[str, Any]) -> dict[str, Any]:
    """An account representation as AWS returns it today."""
    return {k: v for k, v in account.items() if k not in RETIRED_ACCOUNT_FIELDS}


def install() -> None:
    from moto.organizations.models import FakeAccount, FakeDelegatedAdministrator

    original_account_describe = FakeAccount.describe
    original_admin_describe = FakeDelegatedAdministrator.describe

    def account_describe(self: Any) -> dict[str, Any]:
        return without_retired_fields(original_account_describe(self))

    def admin_describe(self: Any) -> dict[str, Any]:
        # moto builds this from FakeAccount.describe; keep its Status.
        admin = original_admin_describe(self)
        admin["Status"] = self.account.status
        return admin

    FakeAccount.describe = account_describe  # type: ignore[method-assign]
    FakeDelegatedAdministrator.describe = admin_describe  # type: ignore[method-assign]
    _install_member_access()


def _reader_backend(response: Any) -> Any:
    """The backend that answers ListAccounts(ForParent) for the caller, or
    AccessDeniedException for a member that may not read the organization."""
    from moto.core.exceptions import ServiceException
    from moto.organizations.models import organizations_backends

    backend = response.organizations_backend
    if backend.org is not None:
        return backend  # the management account
    link = organizations_backends.master_accounts.get(backend.account_id)
    if link is None:
        return backend  # in no organization: moto's answer
    management = organizations_backends[link[0]][link[1]]
    if any(admin.account.id == backend.account_id for admin in management.admins):
        return management

    class AccessDeniedException(ServiceException):
        code = "AccessDeniedException"
        message = "You don't have permissions to access this resource."

    raise AccessDeniedException()


def _install_member_access() -> None:
    import json

    from moto.organizations.responses import OrganizationsResponse

    original_list_accounts = OrganizationsResponse.list_accounts
    original_list_for_parent = OrganizationsResponse.list_accounts_for_parent

    def list_accounts(self: Any) -> str:
        backend = _reader_backend(self)
        if backend is self.organizations_backend:
            return original_list_accounts(self)
        # A delegated administrator: moto's handler, on the management account.
        accounts, next_token = backend.list_accounts(
            max_results=self._get_int_param("MaxResults"), next_token=self._get_param("NextToken")
        )
        return json.dumps({"Accounts": accounts, "NextToken": next_token})

    def list_accounts_for_parent(self: Any) -> str:
        backend = _reader_backend(self)
        if backend is self.organizations_backend:
            return original_list_for_parent(self)
        accounts, next_token = backend.list_accounts_for_parent(
            max_results=self._get_int_param("MaxResults"),
            next_token=self._get_param("NextToken"),
            parent_id=self._get_param("ParentId"),
        )
        return json.dumps({"Accounts": [a.describe() for a in accounts], "NextToken": next_token})

    OrganizationsResponse.list_accounts = list_accounts  # type: ignore[method-assign]
    OrganizationsResponse.list_accounts_for_parent = list_accounts_for_parent  # type: ignore[method-assign]

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

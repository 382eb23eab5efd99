"""Tests of ext_organizations.py: accounts carry State, not the retired Status."""

from __future__ import annotations

from typing import Any

from helpers import Emulator


# -- Organizations: accounts carry State, not the retired Status -------------


def test_organizations_accounts_carry_state_not_the_retired_status(emu: Emulator) -> None:
    management = "900000000041"
    org = emu.client("organizations", management)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="members")["OrganizationalUnit"]["Id"]

    def new_account(name: str) -> str:
        account = org.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
        return account

    active = new_account("state-active")
    closed = new_account("state-closed")
    org.close_account(AccountId=closed)
    expected = {active: "ACTIVE", closed: "SUSPENDED"}

    def check(accounts: list[dict[str, Any]], where: str) -> None:
        for account in accounts:
            assert "Status" not in account, (where, account)
            assert account["State"] in ("ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED"), (
                where,
                account,
            )
        states = {a["Id"]: a["State"] for a in accounts if a["Id"] in expected}
        assert states == expected, (where, accounts)

    listed = org.list_accounts()["Accounts"]
    check(listed, "ListAccounts")
    management_entry = [a for a in listed if a["Id"] == management]
    assert [(a["State"], "Status" in a) for a in management_entry] == [("ACTIVE", False)]

    check(org.list_accounts_for_parent(ParentId=ou)["Accounts"], "ListAccountsForParent")
    paged = org.list_accounts_for_parent(ParentId=ou, MaxResults=1)
    assert len(paged["Accounts"]) == 1 and paged.get("NextToken")
    assert "Status" not in paged["Accounts"][0] and "State" in paged["Accounts"][0]

    described = [org.describe_account(AccountId=a)["Account"] for a in (active, closed)]
    check(described, "DescribeAccount")

    # DelegatedAdministrator is a shape of its own whose Status AWS has not
    # retired: it keeps both fields.
    org.register_delegated_administrator(
        AccountId=active, ServicePrincipal="ssm.amazonaws.com"
    )
    admins = org.list_delegated_administrators()["DelegatedAdministrators"]
    assert [(a["Id"], a["State"], a["Status"]) for a in admins] == [(active, "ACTIVE", "ACTIVE")]

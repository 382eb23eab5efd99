"""Tests of ext_clock.py: key age, key last use and the credential report."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from helpers import Emulator, wait_for


# -- clock and key use -------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _close(a: dt.datetime, b: dt.datetime, seconds: float = 120) -> bool:
    return abs((a - b).total_seconds()) <= seconds


def _report(iam: Any) -> tuple[dict[str, dict[str, str]], dt.datetime]:
    wait_for(
        lambda: iam.generate_credential_report()["State"] == "COMPLETE", 10, "the credential report"
    )
    resp = iam.get_credential_report()
    rows = list(csv.DictReader(io.StringIO(resp["Content"].decode())))
    return {r["user"]: r for r in rows}, resp["GeneratedTime"]


def _report_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def test_clock_advance_ages_keys_everywhere_they_show(emu: Emulator) -> None:
    account, other = "700000000001", "700000000002"
    iam = emu.client("iam", account)
    iam.create_user(UserName="carol")
    key_id = iam.create_access_key(UserName="carol")["AccessKey"]["AccessKeyId"]
    emu.client("iam", other).create_user(UserName="dave")
    other_key = emu.client("iam", other).create_access_key(UserName="dave")["AccessKey"]
    status, _ = emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {"account": account, "access_key_id": key_id, "service": "s3", "region": "eu-west-1"},
    )
    assert status == 200

    before = iam.list_access_keys(UserName="carol")["AccessKeyMetadata"][0]["CreateDate"]
    used_before = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]["LastUsedDate"]

    status, body = emu.control("POST", "/_keyfleet/clock/advance", {"days": 80.5, "account": account})
    assert status == 200 and body["keys_aged"] == 1 and body["accounts"] == [account]
    delta = dt.timedelta(days=80.5)

    after = iam.list_access_keys(UserName="carol")["AccessKeyMetadata"][0]["CreateDate"]
    assert after == before - delta
    last = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert last["LastUsedDate"] == used_before - delta
    assert (last["ServiceName"], last["Region"]) == ("s3", "eu-west-1")
    assert iam.get_user(UserName="carol")["User"]["CreateDate"] <= after

    rows, generated = _report(iam)
    assert _close(generated, _utcnow())
    row = rows["carol"]
    assert _report_time(row["access_key_1_last_rotated"]) == after.replace(microsecond=0)
    assert _report_time(row["access_key_1_last_used_date"]) == last["LastUsedDate"].replace(
        microsecond=0
    )
    assert row["access_key_1_last_used_service"] == "s3"
    assert row["access_key_1_last_used_region"] == "eu-west-1"
    assert row["access_key_2_active"] == "false" and row["access_key_2_last_rotated"] == "N/A"
    assert list(rows)[0] == "<root_account>"

    # The other account was not part of this advance.
    other_iam = emu.client("iam", other)
    other_created = other_iam.list_access_keys(UserName="dave")["AccessKeyMetadata"][0]["CreateDate"]
    assert other_created == other_key["CreateDate"]

    # The report is a snapshot: it changes only when generated again.
    emu.control("POST", "/_keyfleet/clock/advance", {"days": 10, "account": account})
    stale = csv.DictReader(io.StringIO(iam.get_credential_report()["Content"].decode()))
    assert {r["user"]: r for r in stale}["carol"] == row
    fresh, _ = _report(iam)
    assert _report_time(fresh["carol"]["access_key_1_last_rotated"]) == (
        after - dt.timedelta(days=10)
    ).replace(microsecond=0)


def test_clock_advance_without_account_ages_all_accounts(emu: Emulator) -> None:
    a, b = "700000000011", "700000000012"
    created = {}
    for account in (a, b):
        iam = emu.client("iam", account)
        iam.create_user(UserName="erin")
        created[account] = iam.create_access_key(UserName="erin")["AccessKey"]["CreateDate"]
    status, body = emu.control("POST", "/_keyfleet/clock/advance", {"days": 3})
    assert status == 200 and {a, b} <= set(body["accounts"])
    for account in (a, b):
        meta = emu.client("iam", account).list_access_keys(UserName="erin")["AccessKeyMetadata"]
        assert meta[0]["CreateDate"] == created[account] - dt.timedelta(days=3)
    assert emu.control("POST", "/_keyfleet/clock/advance", {"days": -1})[0] == 400
    assert emu.control("POST", "/_keyfleet/clock/advance", {})[0] == 400


def test_key_used_sets_time_service_and_region(emu: Emulator) -> None:
    account = "700000000021"
    iam = emu.client("iam", account)
    iam.create_user(UserName="frank")
    key_id = iam.create_access_key(UserName="frank")["AccessKey"]["AccessKeyId"]
    never = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert (never["ServiceName"], never["Region"]) == ("N/A", "N/A") and "LastUsedDate" not in never

    status, body = emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {
            "account": account,
            "access_key_id": key_id,
            "when": "2026-01-02T03:04:05Z",
            "service": "s3",
            "region": "eu-west-1",
        },
    )
    assert status == 200 and body["user"] == "frank"
    last = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert last == {
        "LastUsedDate": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "ServiceName": "s3",
        "Region": "eu-west-1",
    }
    rows, _ = _report(iam)
    assert rows["frank"]["access_key_1_last_used_date"] == "2026-01-02T03:04:05+00:00"
    assert rows["frank"]["access_key_1_last_used_service"] == "s3"
    assert rows["frank"]["access_key_1_last_used_region"] == "eu-west-1"

    # "when" defaults to now.
    emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {"account": account, "access_key_id": key_id, "service": "sts", "region": "us-east-1"},
    )
    last = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert _close(last["LastUsedDate"], _utcnow()) and last["ServiceName"] == "sts"

    missing = emu.control(
        "POST",
        "/_keyfleet/iam/key-used",
        {"account": account, "access_key_id": "AKIANOTAKEY000000000", "service": "s3", "region": "x"},
    )
    assert missing[0] == 404
    no_service = emu.control(
        "POST", "/_keyfleet/iam/key-used", {"account": account, "access_key_id": key_id}
    )
    assert no_service[0] == 400

"""Tests of ext_iam_paging.py: IAM list actions page as in AWS."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from helpers import Emulator


# -- IAM paging --------------------------------------------------------------

PAGED_ACCOUNT = "500000000001"
PAGED_USERS = [f"user-{i:03d}" for i in range(250)]


@pytest.fixture(scope="module")
def iam_250(emu: Emulator) -> Any:
    iam = emu.client("iam", PAGED_ACCOUNT)
    for name in PAGED_USERS:
        iam.create_user(UserName=name)
    return iam


def _raw_body_recorder(client: Any, operation: str) -> list[str]:
    bodies: list[str] = []

    def record(http_response: Any, **_: Any) -> None:
        bodies.append(http_response.text)

    client.meta.events.register(f"after-call.iam.{operation}", record)
    return bodies


def test_list_users_pages_like_aws(iam_250: Any) -> None:
    raw = _raw_body_recorder(iam_250, "ListUsers")
    first = iam_250.list_users()
    assert len(first["Users"]) == 100
    assert first["IsTruncated"] is True and first["Marker"]
    assert "<IsTruncated>true</IsTruncated>" in raw[-1]
    assert f"<Marker>{first['Marker']}</Marker>" in raw[-1]

    second = iam_250.list_users(Marker=first["Marker"])
    assert len(second["Users"]) == 100
    assert second["IsTruncated"] is True and second["Marker"] != first["Marker"]

    third = iam_250.list_users(Marker=second["Marker"])
    assert len(third["Users"]) == 50
    assert third["IsTruncated"] is False and "Marker" not in third
    assert "<IsTruncated>false</IsTruncated>" in raw[-1] and "<Marker>" not in raw[-1]

    names = [u["UserName"] for page in (first, second, third) for u in page["Users"]]
    assert len(names) == len(set(names)) == 250
    assert set(names) == set(PAGED_USERS)

    # MaxItems is honoured, and boto3's paginator walks the markers.
    assert len(iam_250.list_users(MaxItems=7)["Users"]) == 7
    paged = [u["UserName"] for p in iam_250.get_paginator("list_users").paginate() for u in p["Users"]]
    assert sorted(paged) == PAGED_USERS


def test_list_users_rejects_bad_paging_input(iam_250: Any) -> None:
    with pytest.raises(ClientError) as err:
        iam_250.list_users(MaxItems=1001)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as err:
        iam_250.list_users(Marker="not-a-marker")
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_get_account_authorization_details_pages_like_aws(iam_250: Any) -> None:
    first = iam_250.get_account_authorization_details(Filter=["User"])
    assert len(first["UserDetailList"]) == 100 and first["IsTruncated"] is True
    second = iam_250.get_account_authorization_details(Filter=["User"], Marker=first["Marker"])
    assert len(second["UserDetailList"]) == 100 and second["IsTruncated"] is True
    third = iam_250.get_account_authorization_details(Filter=["User"], Marker=second["Marker"])
    assert len(third["UserDetailList"]) == 50 and third["IsTruncated"] is False
    assert "Marker" not in third
    names = [u["UserName"] for p in (first, second, third) for u in p["UserDetailList"]]
    assert sorted(names) == PAGED_USERS
    assert first["RoleDetailList"] == [] and first["GroupDetailList"] == []


def test_list_access_keys_and_user_tags_accept_paging(emu: Emulator) -> None:
    iam = emu.client("iam", "500000000002")
    iam.create_user(UserName="alice", Tags=[{"Key": f"k{i}", "Value": str(i)} for i in range(3)])
    ids = [iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"] for _ in range(2)]
    keys = iam.list_access_keys(UserName="alice")
    assert keys["IsTruncated"] is False and len(keys["AccessKeyMetadata"]) == 2
    one = iam.list_access_keys(UserName="alice", MaxItems=1)
    assert one["IsTruncated"] is True and len(one["AccessKeyMetadata"]) == 1
    two = iam.list_access_keys(UserName="alice", MaxItems=1, Marker=one["Marker"])
    assert two["IsTruncated"] is False
    assert [k["AccessKeyId"] for k in one["AccessKeyMetadata"] + two["AccessKeyMetadata"]] == ids

    tags = iam.list_user_tags(UserName="alice", MaxItems=2)
    assert [t["Key"] for t in tags["Tags"]] == ["k0", "k1"] and tags["IsTruncated"] is True
    rest = iam.list_user_tags(UserName="alice", Marker=tags["Marker"])
    assert [t["Key"] for t in rest["Tags"]] == ["k2"] and rest["IsTruncated"] is False

"""Tests of ext_secretsmanager.py: secret names and the AWSCURRENT label."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

from helpers import Emulator


# -- Secrets Manager: secret names are validated like AWS --------------------

INVALID_SECRET_NAME = (
    "Invalid name. Must be a valid name containing alphanumeric characters, "
    "or any of the following: -/_+=.@!"
)


def _validation_error(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400, response
    return response["Error"]


@pytest.mark.parametrize(
    "name", ["keyfleet,alice", "has space", "star*", "bang!", "colon:x", "caf\u00e9", "tab\tx"]
)
def test_secretsmanager_refuses_an_invalid_secret_name(emu: Emulator, name: str) -> None:
    sm = emu.client("secretsmanager", "900000000051")
    error = _validation_error(lambda: sm.create_secret(Name=name, SecretString="x"))
    assert error == {"Code": "ValidationException", "Message": INVALID_SECRET_NAME}
    assert [s["Name"] for s in sm.list_secrets()["SecretList"] if s["Name"] == name] == []
    # Actions that take a SecretId refuse the same name (it is not an ARN).
    for call in (
        lambda: sm.describe_secret(SecretId=name),
        lambda: sm.get_secret_value(SecretId=name),
        lambda: sm.put_secret_value(SecretId=name, SecretString="y"),
        lambda: sm.update_secret(SecretId=name, Description="d"),
        lambda: sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True),
        lambda: sm.tag_resource(SecretId=name, Tags=[{"Key": "k", "Value": "v"}]),
        lambda: sm.untag_resource(SecretId=name, TagKeys=["k"]),
        lambda: sm.list_secret_version_ids(SecretId=name),
    ):
        assert _validation_error(call) == {
            "Code": "ValidationException",
            "Message": INVALID_SECRET_NAME,
        }


def test_secretsmanager_refuses_a_secret_name_longer_than_512(emu: Emulator) -> None:
    sm = emu.client("secretsmanager", "900000000052")
    error = _validation_error(lambda: sm.create_secret(Name="a" * 513, SecretString="x"))
    assert error["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 512" in error["Message"]
    created = sm.create_secret(Name="b" * 512, SecretString="x")
    assert created["Name"] == "b" * 512


def test_secretsmanager_accepts_every_allowed_character(emu: Emulator) -> None:
    sm = emu.client("secretsmanager", "900000000053")
    names = [f"keyfleet{c}alice" for c in "/_+=.@-"] + ["Keyfleet/Alice_01+x=y.z@example-2"]
    for name in names:
        created = sm.create_secret(Name=name, SecretString="value")
        assert created["Name"] == name
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "value"
        sm.put_secret_value(SecretId=name, SecretString="next")
        assert sm.describe_secret(SecretId=name)["Name"] == name
        # An ARN is not a name: it is looked up, not validated as one.
        assert sm.get_secret_value(SecretId=created["ARN"])["SecretString"] == "next"
    assert {s["Name"] for s in sm.list_secrets()["SecretList"]} == set(names)


def test_secretsmanager_current_value_follows_the_awscurrent_label(emu: Emulator) -> None:
    """AWS: GetSecretValue without a version returns the version labelled
    AWSCURRENT; UpdateSecretVersionStage moving AWSCURRENT changes it, and
    fails when RemoveFromVersionId no longer holds the label (a
    compare-and-swap keyfleet's account lease relies on)."""
    sm = emu.client("secretsmanager", "900000000054")
    first = sm.create_secret(Name="keyfleet-lease", SecretString="one")["VersionId"]
    staged = sm.put_secret_value(
        SecretId="keyfleet-lease", SecretString="two", VersionStages=["keyfleet-next"]
    )["VersionId"]
    assert sm.get_secret_value(SecretId="keyfleet-lease")["SecretString"] == "one"
    sm.update_secret_version_stage(
        SecretId="keyfleet-lease",
        VersionStage="AWSCURRENT",
        MoveToVersionId=staged,
        RemoveFromVersionId=first,
    )
    current = sm.get_secret_value(SecretId="keyfleet-lease")
    assert (current["SecretString"], current["VersionId"]) == ("two", staged)
    previous = sm.get_secret_value(SecretId="keyfleet-lease", VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == "one"
    # A second swap from the version that no longer holds AWSCURRENT fails.
    late = sm.put_secret_value(
        SecretId="keyfleet-lease", SecretString="three", VersionStages=["keyfleet-next"]
    )["VersionId"]
    error = _validation_error(
        lambda: sm.update_secret_version_stage(
            SecretId="keyfleet-lease",
            VersionStage="AWSCURRENT",
            MoveToVersionId=late,
            RemoveFromVersionId=first,
        )
    )
    assert error["Code"] == "InvalidParameterException", error
    assert sm.get_secret_value(SecretId="keyfleet-lease")["SecretString"] == "two"

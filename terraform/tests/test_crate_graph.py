"""The workspace's crate graph: each deployed function links only what its
job needs, checked on what Cargo resolves (`cargo tree`), not on what the
Cargo.toml files say.

The API Lambda reads reports and invokes the coordinator; it holds no mail,
notification or organization credentials in its role, and it must not link
the code that uses them either: a smaller binary, and a change to the run
engine cannot change the API. So:

- `keyfleet-api` links neither `keyfleet-coordinator` nor the SES, SNS or
  Organizations SDKs (nor the agent);
- `keyfleet-reports` links the protocol and the S3 SDK, no other AWS SDK;
- the agent links no SDK of the coordinator's (SES, SNS, Organizations, S3)
  and not the Lambda SDK (the protocol's `invoke` client stays off);
- no crate but the command line depends on the API, and nothing on the
  command line.

Each rule is checked on a synthetic graph too, so a checker that could not
fail would be caught.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SDK_OF_THE_ENGINE = {"aws-sdk-sesv2", "aws-sdk-sns", "aws-sdk-organizations"}

FORBIDDEN = {
    "keyfleet-api": {"keyfleet-coordinator", "keyfleet-agent", "keyfleet"} | SDK_OF_THE_ENGINE,
    "keyfleet-reports": {
        "keyfleet-coordinator",
        "keyfleet-agent",
        "keyfleet-api",
        "aws-sdk-lambda",
        "aws-sdk-sqs",
        "aws-sdk-iam",
        "aws-sdk-secretsmanager",
    }
    | SDK_OF_THE_ENGINE,
    "keyfleet-agent": {
        "keyfleet-coordinator",
        "keyfleet-reports",
        "keyfleet-api",
        "aws-sdk-lambda",
        "aws-sdk-s3",
    }
    | SDK_OF_THE_ENGINE,
}


def linked(tree_output: str) -> set[str]:
    """Package names in `cargo tree --prefix none -e normal` output."""
    names = set()
    for line in tree_output.splitlines():
        m = re.match(r"^([A-Za-z0-9_\-]+) v\S+", line.strip())
        if m:
            names.add(m.group(1))
    return names


def cargo_tree(package: str) -> str:
    out = subprocess.run(
        ["cargo", "tree", "--locked", "-p", package, "-e", "normal", "--prefix", "none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def violations(package: str, tree_output: str) -> set[str]:
    return linked(tree_output) & FORBIDDEN[package]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_function_links_only_what_its_job_needs(package: str) -> None:
    tree = cargo_tree(package)
    assert package in linked(tree), tree[:500]
    assert violations(package, tree) == set(), (
        f"{package} links {sorted(violations(package, tree))}: "
        "see the crate graph in the README's architecture section"
    )


def test_the_checker_sees_an_edge_put_back() -> None:
    # What `cargo tree -p keyfleet-api` printed when the API depended on
    # the coordinator (abridged): the rule must catch it.
    before = """keyfleet-api v0.1.0 (/w/api)
keyfleet-coordinator v0.1.0 (/w/coordinator)
aws-sdk-sesv2 v1.2.3
aws-sdk-s3 v1.2.3
keyfleet-protocol v0.1.0 (/w/protocol)
"""
    assert violations("keyfleet-api", before) == {"keyfleet-coordinator", "aws-sdk-sesv2"}


def reverse_dependents(metadata: dict, name: str) -> set[str]:
    """Workspace packages with a normal dependency on `name`."""
    ids = {p["id"]: p["name"] for p in metadata["packages"]}
    members = set(metadata["workspace_members"])
    out = set()
    for node in metadata["resolve"]["nodes"]:
        if node["id"] not in members:
            continue
        for dep in node["deps"]:
            normal = any(k.get("kind") is None for k in dep["dep_kinds"])
            if normal and ids[dep["pkg"]] == name:
                out.add(ids[node["id"]])
    return out


@pytest.fixture(scope="module")
def metadata() -> dict:
    out = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_only_the_command_line_depends_on_the_api_and_nothing_on_it(metadata: dict) -> None:
    assert reverse_dependents(metadata, "keyfleet-api") == {"keyfleet"}
    assert reverse_dependents(metadata, "keyfleet") == set()
    # Neither the API nor the reports crate reaches into the run engine.
    assert "keyfleet-api" not in reverse_dependents(metadata, "keyfleet-coordinator")
    assert "keyfleet-reports" not in reverse_dependents(metadata, "keyfleet-coordinator")


def test_the_reverse_dependents_check_sees_a_new_dependent() -> None:
    fake = {
        "packages": [
            {"id": "a", "name": "keyfleet-api"},
            {"id": "c", "name": "keyfleet-coordinator"},
            {"id": "k", "name": "keyfleet"},
        ],
        "workspace_members": ["a", "c", "k"],
        "resolve": {
            "nodes": [
                {"id": "k", "deps": [{"pkg": "a", "dep_kinds": [{"kind": None}]}]},
                {"id": "c", "deps": [{"pkg": "a", "dep_kinds": [{"kind": None}]}]},
                {"id": "a", "deps": [{"pkg": "c", "dep_kinds": [{"kind": "dev"}]}]},
            ]
        },
    }
    assert reverse_dependents(fake, "keyfleet-api") == {"keyfleet", "keyfleet-coordinator"}
    # A dev-dependency is not linked into the function.
    assert reverse_dependents(fake, "keyfleet-coordinator") == set()

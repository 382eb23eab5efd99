"""Static checks of terraform/: the agent CloudFormation template and the
Terraform modules, without AWS and without a terraform binary.

Run:  terraform/tests/bootstrap.sh
      terraform/tests/.venv/bin/python -m pytest terraform/tests -q

What is checked
- cfn-lint finds nothing in templates/agent.yaml;
- checkov finds nothing in terraform/ (Terraform and CloudFormation); every
  skip carries a reason, inline in the resource;
- every .tf file parses (python-hcl2); every var.X used in a module is declared
  there, every declared variable is used, and each has a type and a
  description that the module README lists;
- every IAM policy document (the template, including intrinsic functions,
  and Terraform aws_iam_policy_document data or jsonencode(...)) allows no
  wildcard action and allows "*" as a resource only for the actions listed in
  RESOURCE_STAR_ONLY, which take no resource ARN. Deny statements may use
  wildcards: they only take permissions away (e.g. sqs:* without TLS). Key
  policies are exempt from the resource rule: their "*" names the key itself;
- the private-key secret denies GetSecretValue to all but the coordinator role
  and var.private_key_readers; the report bucket denies requests without TLS;
  the results DLQ is encrypted; the SES configuration set requires TLS;
- the queue policies restrict senders as the design says, the agent role has
  exactly the permissions the agent needs, and the wiring (timeouts, DLQs,
  event source mappings, environment, StackSet parameters) matches the design;
- the API (modules/api): its role has exactly the permissions the API needs
  (read the report bucket, invoke the coordinator, read its key hashes, its
  logs: nothing that writes, sends jobs or reads the coordinator's private
  key), every /v1 method is SigV4 (AWS_IAM) and nothing a read-only
  principal reads back from API Gateway (API keys, usage plan keys, stage
  variables) is derived from a secret or grants anything, the stage has
  access logging (never a header) and X-Ray tracing, and the keys secret
  is KMS-encrypted and readable only by the API role.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest

# The tools of terraform/tests/.venv (bootstrap.sh); another interpreter skips.
hcl2 = pytest.importorskip("hcl2")
yaml = pytest.importorskip("yaml")
pytest.importorskip("policy_sentry")
SerializationOptions = hcl2.SerializationOptions

TESTS = Path(__file__).resolve().parent
TF = TESTS.parent
TEMPLATE = TF / "templates" / "agent.yaml"
CHECKOV = TESTS / ".venv" / "checkov" / "bin" / "checkov"
HCL_OPTIONS = SerializationOptions(with_comments=False, strip_string_quotes=True)

# Actions that IAM only accepts with Resource "*": they act on the account or
# the organization as a whole and have no resource type in the IAM service
# authorization reference. Anything else must name its resources.
RESOURCE_STAR_ONLY = {
    "iam:GenerateCredentialReport": "the credential report is one per account, no resource ARN",
    "iam:GetCredentialReport": "the credential report is one per account, no resource ARN",
    "iam:GetAccountAuthorizationDetails": "account-wide snapshot of IAM, no resource ARN",
    "iam:ListUsers": "lists every user of the account; IAM defines no resource for it",
    "iam:ListAccountAliases": "the alias belongs to the account, no resource ARN",
    "organizations:ListAccounts": "every account of the organization, no resource ARN",
    "secretsmanager:ListSecrets": "lists the account's secrets; Secrets Manager defines no resource for it",
    "ses:GetAccount": "the account's sending quota and status; SES defines no resource for it",
    "cloudtrail:LookupEvents": "the account's event history in the Region; CloudTrail defines no resource for it",
}

# What the agent needs, and nothing else (DESIGN.md and the agent's brief).
AGENT_ACTIONS = {
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccountAuthorizationDetails",
    "iam:ListUsers",
    "iam:ListUserTags",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:ListAccountAliases",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:GetResourcePolicy",
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:TagResource",
    "secretsmanager:PutResourcePolicy",
    "secretsmanager:GetResourcePolicy",
    "secretsmanager:DeleteSecret",
    "secretsmanager:ListSecrets",
    "cloudtrail:LookupEvents",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
}

AGENT_ENV = {
    "KEYFLEET_RESULTS_QUEUE_URL",
    "KEYFLEET_COORDINATOR_PUBLIC_KEY",
    "KEYFLEET_COORDINATOR_KEY_ID",
    "KEYFLEET_COORDINATOR_ROLE_ARN",
    "RUST_LOG",
}

COORDINATOR_ENV = {
    "KEYFLEET_REPORT_BUCKET",
    "KEYFLEET_RESULTS_QUEUE_URL",
    "KEYFLEET_ALERTS_TOPIC_ARN",
    "KEYFLEET_ORG_READER_ROLE_ARN",
    "KEYFLEET_ORG_READER_EXTERNAL_ID",
    "KEYFLEET_SENDER",
    "KEYFLEET_SECURITY_TEAM",
    "KEYFLEET_PRIVATE_KEY_SECRET_ARN",
    "KEYFLEET_SES_CONFIGURATION_SET",
    "KEYFLEET_EXCLUDE_ACCOUNTS",
    "KEYFLEET_EXCLUDE_OUS",
    "KEYFLEET_POLICY",
    "KEYFLEET_DEADLINE",
    "KEYFLEET_SUMMARY_ATTACH_MAX_BYTES",
    "KEYFLEET_MAIL_SENDERS",
    "RUST_LOG",
}

API_ENV = {
    "KEYFLEET_REPORT_BUCKET",
    "KEYFLEET_COORDINATOR_FUNCTION",
    "KEYFLEET_API_KEYS_SECRET",
    "KEYFLEET_CORS_ORIGINS",
    "RUST_LOG",
}

# What the API role may do, and on what (the template's variables as
# Terraform renders them): read runs and reports, invoke the coordinator,
# read its key hashes, write its logs. Nothing else.
API_BUCKET = "${var.report_bucket_arn}"
API_GRANTS = {
    "s3:ListBucket": {API_BUCKET},
    "s3:GetObject": {
        f"{API_BUCKET}/runs/*/manifest.json",
        f"{API_BUCKET}/runs/*/report.json",
        f"{API_BUCKET}/runs/*/final/*",
        f"{API_BUCKET}/reports/*",
    },
    "kms:Decrypt": {"${var.report_kms_key_arn}", "${aws_kms_key.this.arn}"},
    "lambda:InvokeFunction": {"${var.coordinator_function_arn}"},
    "secretsmanager:GetSecretValue": {"${aws_secretsmanager_secret.api_keys.arn}"},
    "logs:CreateLogStream": {"${local.log_group_arn}:*"},
    "logs:PutLogEvents": {"${local.log_group_arn}:*"},
}

MODULES = ["coordinator", "org-reader", "agent-stackset", "api"]


# --------------------------------------------------------------------------
# Loading: CloudFormation YAML with short-form intrinsics, and HCL.
# --------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns !Ref, !Sub, ... into their long JSON forms."""


def _intrinsic(tag: str):
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _tag in (
    "Ref", "Sub", "GetAtt", "Select", "Split", "Join", "If", "Not", "Equals", "And", "Or",
    "FindInMap", "Base64", "Cidr", "ImportValue", "GetAZs", "Condition", "Length", "ToJsonString",
):
    CfnLoader.add_constructor(f"!{_tag}", _intrinsic(_tag))


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def tf_files() -> list[Path]:
    return sorted(
        p for p in TF.rglob("*.tf")
        if not any(part.startswith(".") for part in p.relative_to(TF).parts)
    )


def parse_tf(path: Path) -> dict:
    with path.open() as f:
        return hcl2.load(f, serialization_options=HCL_OPTIONS)


def tf_dirs() -> list[Path]:
    return sorted({p.parent for p in tf_files()})


def blocks(doc: dict, kind: str) -> Iterable[tuple[str, str, dict]]:
    """(type, name, body) of every resource or data block of a parsed file."""
    for entry in doc.get(kind, []):
        for typ, instances in entry.items():
            for name, body in instances.items():
                yield typ, name, body


def module_blocks(module: str, kind: str) -> dict[tuple[str, str], dict]:
    out = {}
    for path in sorted((TF / "modules" / module).glob("*.tf")):
        for typ, name, body in blocks(parse_tf(path), kind):
            out[(typ, name)] = body
    return out


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------
# A common model of policy statements.
# --------------------------------------------------------------------------


@dataclass
class Statement:
    where: str
    kind: str  # identity | resource | trust | key
    effect: str
    actions: list[str]
    not_actions: list[str]
    resources: list[Any]
    not_resources: list[Any]
    principals: dict[str, list[Any]]  # type -> identifiers; {"*": ["*"]} for Principal "*"
    conditions: dict[str, dict[str, list[Any]]]  # operator -> key -> values
    sid: str | None = None
    extra: dict = field(default_factory=dict)


def _json_statements(doc: dict, where: str, kind: str) -> list[Statement]:
    out = []
    for i, st in enumerate(as_list(doc.get("Statement"))):
        principal = st.get("Principal")
        if principal == "*":
            principals = {"*": ["*"]}
        elif isinstance(principal, dict):
            principals = {k: as_list(v) for k, v in principal.items()}
        else:
            principals = {}
        conditions = {
            op: {k: as_list(v) for k, v in kv.items()}
            for op, kv in (st.get("Condition") or {}).items()
        }
        out.append(Statement(
            where=f"{where}[{st.get('Sid', i)}]",
            kind=kind,
            effect=st.get("Effect", ""),
            actions=as_list(st.get("Action")),
            not_actions=as_list(st.get("NotAction")),
            resources=as_list(st.get("Resource")),
            not_resources=as_list(st.get("NotResource")),
            principals=principals,
            conditions=conditions,
            sid=st.get("Sid"),
        ))
    return out


CFN_POLICY_PROPERTIES = {
    # resource type -> {property path -> kind}
    "AWS::IAM::Role": {"AssumeRolePolicyDocument": "trust", "Policies[].PolicyDocument": "identity"},
    "AWS::IAM::Policy": {"PolicyDocument": "identity"},
    "AWS::IAM::ManagedPolicy": {"PolicyDocument": "identity"},
    "AWS::SQS::QueuePolicy": {"PolicyDocument": "resource"},
    "AWS::S3::BucketPolicy": {"PolicyDocument": "resource"},
    "AWS::SNS::TopicPolicy": {"PolicyDocument": "resource"},
    "AWS::SecretsManager::ResourcePolicy": {"ResourcePolicy": "resource"},
    "AWS::KMS::Key": {"KeyPolicy": "key"},
    "AWS::DynamoDB::Table": {"ResourcePolicy.PolicyDocument": "resource"},
}


def _count_documents(node: Any) -> int:
    """Policy-shaped dicts (with a Statement) anywhere under node."""
    if isinstance(node, dict):
        return int("Statement" in node) + sum(_count_documents(v) for v in node.values())
    if isinstance(node, list):
        return sum(_count_documents(v) for v in node)
    return 0


def template_statements(template: dict) -> tuple[list[Statement], int, int]:
    """Statements of every policy in the template, with the number of policy
    documents found by type and the number present anywhere (they must match:
    no policy may escape the checks)."""
    statements: list[Statement] = []
    found = 0
    present = 0
    for logical_id, res in template["Resources"].items():
        props = res.get("Properties", {})
        present += _count_documents(props)
        for path, kind in CFN_POLICY_PROPERTIES.get(res["Type"], {}).items():
            if "[]" in path:
                list_key, doc_key = path.split("[].")
                docs = [(f"{list_key}.{p.get('PolicyName')}", p.get(doc_key)) for p in props.get(list_key, [])]
            elif "." in path:
                outer, inner = path.split(".", 1)
                docs = [(path, (props.get(outer) or {}).get(inner))]
            else:
                docs = [(path, props.get(path))]
            for label, doc in docs:
                if doc is None:
                    continue
                found += 1
                statements += _json_statements(doc, f"agent.yaml:{logical_id}.{label}", kind)
    return statements, found, present


def _tf_policy_document_statements(body: dict, where: str, kind: str) -> list[Statement]:
    for unsupported in ("source_policy_documents", "override_policy_documents", "source_json", "override_json"):
        assert unsupported not in body, f"{where}: {unsupported} cannot be checked statically"
    out = []
    for i, st in enumerate(as_list(body.get("statement"))):
        principals: dict[str, list[Any]] = {}
        for p in as_list(st.get("principals")):
            principals.setdefault(p["type"], []).extend(as_list(p["identifiers"]))
        assert "not_principals" not in st, f"{where}: not_principals is not allowed"
        conditions: dict[str, dict[str, list[Any]]] = {}
        cond_blocks = list(as_list(st.get("condition")))
        for dyn in as_list(st.get("dynamic")):
            for dyn_name, dyn_body in dyn.items():
                assert dyn_name == "condition", f"{where}: only dynamic condition blocks are supported"
                cond_blocks += as_list(dyn_body.get("content"))
        for c in cond_blocks:
            conditions.setdefault(c["test"], {}).setdefault(c["variable"], []).extend(as_list(c["values"]))
        out.append(Statement(
            where=f"{where}[{st.get('sid', i)}]",
            kind=kind,
            effect=st.get("effect", "Allow"),
            actions=as_list(st.get("actions")),
            not_actions=as_list(st.get("not_actions")),
            resources=as_list(st.get("resources")),
            not_resources=as_list(st.get("not_resources")),
            principals=principals,
            conditions=conditions,
            sid=st.get("sid"),
        ))
    return out


# Attributes that hold an IAM policy JSON, by resource type; "*" for any type.
TF_POLICY_ATTRIBUTES = {
    ("aws_kms_key", "policy"): "key",
    ("aws_iam_role", "assume_role_policy"): "trust",
    ("aws_iam_role_policy", "policy"): "identity",
    ("aws_iam_policy", "policy"): "identity",
    ("*", "policy"): "resource",
}

JSONENCODE = re.compile(r"^\$\{jsonencode\((?P<body>.*)\)\}$", re.S)
LOCAL_REF = re.compile(r"^\$\{local\.(?P<name>[A-Za-z0-9_]+)\}$")
TEMPLATEFILE = re.compile(
    r'^\$\{templatefile\("\$\{path\.module\}/(?P<path>[^"]+)",\s*local\.(?P<vars>[A-Za-z0-9_]+)\)\}$')
PLACEHOLDER = re.compile(r"\$\{(?:jsonencode\((?P<list>[a-z0-9_]+)\)|(?P<name>[a-z0-9_]+))\}")


def render_policy_template(text: str, values: dict[str, Any], where: str) -> dict:
    """A policy template (policies/*.json.tftpl) rendered the way Terraform's
    templatefile() renders it, each variable standing for its Terraform
    expression: "${name}" inside a JSON string, ${jsonencode(name)} for a list.
    `keyfleet bootstrap` renders the same files with the emulator's values."""
    used = set()

    def sub(m: re.Match) -> str:
        name = m.group("list") or m.group("name")
        assert name in values, f"{where}: template variable {name} is not passed"
        used.add(name)
        value = values[name]
        if m.group("list"):
            return json.dumps(value if isinstance(value, list) else [value])
        assert isinstance(value, str), f"{where}: {name} must be a string"
        return json.dumps(value)[1:-1]

    rendered = PLACEHOLDER.sub(sub, text)
    unused = set(values) - used - {"__is_block__"}
    assert not unused, f"{where}: variables passed but not used by the template: {sorted(unused)}"
    return json.loads(rendered)


def dir_locals(directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse_tf(path).get("locals", []):
            out.update(entry)
    return out


def template_policy(directory: Path, local_name: str) -> tuple[Path, dict]:
    """The policy a local renders with templatefile(): its file and document."""
    locals_ = dir_locals(directory)
    m = TEMPLATEFILE.match(str(locals_.get(local_name, "")))
    assert m, f"local.{local_name} is not templatefile(\"${{path.module}}/...\", local.<vars>)"
    file = directory / m.group("path")
    return file, render_policy_template(file.read_text(), locals_[m.group("vars")], str(file.relative_to(TF)))
DOC_REF = re.compile(r"^\$\{data\.aws_iam_policy_document\.(?P<name>[A-Za-z0-9_-]+)\.json\}$")


def decode_policy_expression(value: Any, where: str, directory: Path | None = None) -> dict | str:
    """A policy attribute value: the name of the aws_iam_policy_document it
    references, or the document itself for jsonencode(...), JSON strings and
    a local rendered from a policy template with templatefile()."""
    if isinstance(value, dict):
        return value
    assert isinstance(value, str), f"{where}: unexpected policy value {value!r}"
    m = DOC_REF.match(value)
    if m:
        return m.group("name")
    m = LOCAL_REF.match(value)
    if m and directory is not None:
        return template_policy(directory, m.group("name"))[1]
    m = JSONENCODE.match(value)
    if m:
        return hcl2.loads(f"x = {m.group('body')}", serialization_options=HCL_OPTIONS)["x"]
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pytest.fail(f"{where}: policy is neither an aws_iam_policy_document, jsonencode(...) nor JSON: {value[:80]}")


def tf_statements_of_dir(directory: Path) -> list[Statement]:
    """Statements of every policy in the .tf files of one directory."""
    documents: dict[str, dict] = {}
    uses: dict[str, set[str]] = {}
    inline: list[Statement] = []
    for path in sorted(directory.glob("*.tf")):
        doc = parse_tf(path)
        rel = path.relative_to(TF)
        for typ, name, body in blocks(doc, "data"):
            if typ == "aws_iam_policy_document":
                documents[name] = body
        for typ, name, body in blocks(doc, "resource"):
            for attr, value in body.items():
                kind = TF_POLICY_ATTRIBUTES.get((typ, attr)) or TF_POLICY_ATTRIBUTES.get(("*", attr))
                if kind is None:
                    continue
                where = f"{rel}:{typ}.{name}.{attr}"
                decoded = decode_policy_expression(value, where, directory)
                if isinstance(decoded, str):
                    uses.setdefault(decoded, set()).add(kind)
                else:
                    inline += _json_statements(decoded, where, kind)
    statements = list(inline)
    for name, body in documents.items():
        kinds = uses.get(name)
        assert kinds, f"{directory.relative_to(TF)}: aws_iam_policy_document.{name} is not used by any policy attribute"
        assert len(kinds) == 1, f"aws_iam_policy_document.{name} is used as {kinds}"
        statements += _tf_policy_document_statements(
            body, f"{directory.relative_to(TF)}:data.aws_iam_policy_document.{name}", kinds.pop())
    return statements


def all_statements() -> list[Statement]:
    statements, _, _ = template_statements(load_template())
    for directory in tf_dirs():
        statements += tf_statements_of_dir(directory)
    return statements


# --------------------------------------------------------------------------
# The policy rules.
# --------------------------------------------------------------------------


def policy_violations(statements: Iterable[Statement]) -> list[str]:
    problems = []
    for st in statements:
        if st.effect not in ("Allow", "Deny"):
            problems.append(f"{st.where}: Effect must be Allow or Deny, not {st.effect!r}")
            continue
        if st.effect == "Deny":
            continue
        if st.not_actions:
            problems.append(f"{st.where}: Allow with NotAction grants everything else")
        if st.not_resources:
            problems.append(f"{st.where}: Allow with NotResource grants everything else")
        for action in st.actions:
            if not isinstance(action, str) or "*" in action or "?" in action:
                problems.append(f"{st.where}: wildcard action {action!r}")
        if st.kind in ("key", "trust"):
            continue
        if "*" in st.resources:
            for action in st.actions:
                if action not in RESOURCE_STAR_ONLY:
                    problems.append(
                        f"{st.where}: {action} supports resource-level permissions but is allowed on Resource \"*\"")
        if st.kind == "resource" and "*" in st.principals.get("AWS", []) + st.principals.get("*", []):
            if "aws:PrincipalOrgID" not in st.conditions.get("StringEquals", {}):
                problems.append(f"{st.where}: Allow to any principal without an aws:PrincipalOrgID condition")
    return problems


def test_policy_checker_flags_bad_policies():
    """The rules catch what they are meant to, in every input form."""
    bad_json = {
        "Statement": [
            {"Effect": "Allow", "Action": "sqs:*", "Resource": {"Fn::GetAtt": ["Q", "Arn"]}},
            {"Effect": "Allow", "Action": ["iam:CreateAccessKey"], "Resource": "*"},
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Allow", "NotAction": "iam:DeleteUser", "Resource": "*"},
            {"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:eu-west-1:1:q"},
        ]
    }
    problems = policy_violations(_json_statements(bad_json, "fixture", "identity")[:4])
    assert any("wildcard action 'sqs:*'" in p for p in problems)
    assert any("iam:CreateAccessKey supports resource-level" in p for p in problems)
    assert any("wildcard action '*'" in p for p in problems)
    assert any("NotAction" in p for p in problems)
    problems = policy_violations(_json_statements(bad_json, "fixture", "resource")[4:])
    assert any("aws:PrincipalOrgID" in p for p in problems)

    hcl = hcl2.loads(
        'data "aws_iam_policy_document" "d" {\n'
        '  statement {\n    actions = ["iam:*"]\n    resources = ["*"]\n  }\n}\n',
        serialization_options=HCL_OPTIONS)
    body = next(b for _, _, b in blocks(hcl, "data"))
    problems = policy_violations(_tf_policy_document_statements(body, "fixture", "identity"))
    assert any("wildcard action 'iam:*'" in p for p in problems)

    resource = hcl2.loads(
        'resource "aws_iam_role_policy" "p" {\n'
        '  policy = jsonencode({\n    Version = "2012-10-17"\n'
        '    Statement = [{ Effect = "Allow", Action = ["iam:UpdateAccessKey"], Resource = "*" }]\n  })\n}\n',
        serialization_options=HCL_OPTIONS)
    _, _, body = next(blocks(resource, "resource"))
    decoded = decode_policy_expression(body["policy"], "fixture")
    problems = policy_violations(_json_statements(decoded, "fixture", "identity"))
    assert problems == ['fixture[0]: iam:UpdateAccessKey supports resource-level permissions but is allowed on Resource "*"']

    # The allowed forms pass.
    good = {"Statement": [
        {"Effect": "Allow", "Action": ["iam:ListUsers", "iam:GetCredentialReport"], "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*"},
    ]}
    assert policy_violations(_json_statements(good, "fixture", "identity")) == []


def test_every_template_policy_is_checked():
    statements, found, present = template_statements(load_template())
    assert found == present, "a policy document in agent.yaml sits where the checks do not look"
    assert found >= 4 and statements


def test_no_wildcard_actions_or_needless_star_resources():
    statements = all_statements()
    assert len(statements) > 30, "policy extraction found suspiciously few statements"
    assert policy_violations(statements) == []


def test_resource_star_allow_list_matches_the_iam_reference():
    """Every action in RESOURCE_STAR_ONLY really has no resource type, and
    every allowed action exists (catches typos)."""
    from policy_sentry.querying.actions import get_action_data

    def arn_formats(action: str) -> list[str] | None:
        service, name = action.split(":")
        data = get_action_data(service, name)
        if not data or not data.get(service):
            return None
        return [row["resource_arn_format"] for row in data[service]]

    for action, reason in RESOURCE_STAR_ONLY.items():
        formats = arn_formats(action)
        assert formats is not None, f"{action} is unknown to the IAM reference"
        assert set(formats) == {"*"}, f"{action} supports resources {formats}; drop it from RESOURCE_STAR_ONLY ({reason})"

    unknown = sorted({
        a for st in all_statements() if st.effect == "Allow" for a in st.actions
        if isinstance(a, str) and arn_formats(a) is None
    })
    assert unknown == [], f"actions unknown to the IAM reference: {unknown}"


# --------------------------------------------------------------------------
# cfn-lint and checkov.
# --------------------------------------------------------------------------


def test_cfn_lint_is_clean():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def checkov_reports() -> dict[str, dict]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run terraform/tests/bootstrap.sh")
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(TF), "--framework", "terraform", "cloudformation",
         "--skip-path", r"\.venv", "--skip-download", "--output", "json"],
        capture_output=True, text=True, cwd=TF)
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not produce JSON (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    reports = reports if isinstance(reports, list) else [reports]
    return {r["check_type"]: r for r in reports}


@pytest.mark.parametrize("framework", ["terraform", "cloudformation"])
def test_checkov_is_clean(checkov_reports, framework):
    report = checkov_reports.get(framework)
    assert report is not None, f"checkov scanned no {framework} files"
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert failed == [] and summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 10


@pytest.mark.parametrize("framework", ["terraform", "cloudformation"])
def test_checkov_skips_are_justified(checkov_reports, framework):
    for check in checkov_reports[framework]["results"].get("skipped_checks", []):
        comment = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(comment) >= 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"


def test_checkov_scanned_the_template(checkov_reports):
    results = checkov_reports["cloudformation"]["results"]
    files = {c["file_path"] for key in ("passed_checks", "skipped_checks") for c in results.get(key, [])}
    assert "/templates/agent.yaml" in files


# --------------------------------------------------------------------------
# Terraform structure.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(TF)))
def test_tf_file_parses(path):
    assert isinstance(parse_tf(path), dict)


VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")


@pytest.mark.parametrize("directory", tf_dirs(), ids=lambda p: str(p.relative_to(TF)))
def test_variables_declared_and_used(directory):
    declared: dict[str, dict] = {}
    used: set[str] = set()
    for path in sorted(directory.glob("*.tf")):
        doc = parse_tf(path)
        for entry in doc.get("variable", []):
            for name, body in entry.items():
                assert name not in declared, f"variable {name} declared twice"
                declared[name] = body
        used |= set(VAR_REF.findall(json.dumps(doc)))
    undeclared = sorted(used - set(declared))
    unused = sorted(set(declared) - used)
    assert undeclared == [], f"used but not declared: {undeclared}"
    assert unused == [], f"declared but never used: {unused}"
    for name, body in declared.items():
        assert len(str(body.get("description", ""))) >= 10, f"variable {name} needs a description"
        assert "type" in body, f"variable {name} needs a type"


@pytest.mark.parametrize("module", MODULES)
def test_module_layout(module):
    directory = TF / "modules" / module
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (directory / name).is_file(), f"{module}/{name} is missing"
    versions = parse_tf(directory / "versions.tf")
    aws = versions["terraform"][0]["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert re.match(r">=\s*5(\.|$)", aws["version"])
    readme = (directory / "README.md").read_text()
    doc = parse_tf(directory / "variables.tf")
    for entry in doc.get("variable", []):
        for name in entry:
            assert f"`{name}`" in readme, f"{module}/README.md does not document variable {name}"
    outputs = parse_tf(directory / "outputs.tf")
    for entry in outputs.get("output", []):
        for name, body in entry.items():
            assert body.get("description"), f"output {name} needs a description"
            assert f"`{name}`" in readme, f"{module}/README.md does not document output {name}"


def test_variables_with_fixed_shapes_are_validated():
    """Every module variable that carries an identifier (ARN, ID, name, email,
    duration, region, ...) has a validation block."""
    shapes = re.compile(r"(arn|_id$|_ids$|organization|bucket|key$|region|sender|email|team|recipients|subscriptions"
                        r"|identity$|expression|architecture|call_as|name$|level|days$|timeout|size|concurrency|policy"
                        r"|percentage|accounts|ous|url)")
    for module in MODULES:
        doc = parse_tf(TF / "modules" / module / "variables.tf")
        for entry in doc["variable"]:
            for name, body in entry.items():
                if str(body.get("type")) in ("bool", "${bool}", "${map(string)}"):
                    continue  # nothing to validate beyond the type
                if shapes.search(name) and name not in ("code_s3_object_version",):
                    assert body.get("validation"), f"{module}: variable {name} has no validation"


# --------------------------------------------------------------------------
# The agent template.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def resources_of_type(template: dict, typ: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == typ}


def test_template_agent_function(template):
    fn = template["Resources"]["AgentFunction"]["Properties"]
    assert fn["FunctionName"] == "keyfleet-agent"
    assert fn["Runtime"] == "provided.al2023"
    assert fn["Handler"] == "bootstrap"
    assert fn["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "x86_64"
    assert set(template["Parameters"]["Architecture"]["AllowedValues"]) == {"x86_64", "arm64"}
    assert set(fn["Environment"]["Variables"]) == AGENT_ENV
    assert fn["Code"]["S3Bucket"] == {"Ref": "CodeS3Bucket"}
    assert fn["Code"]["S3Key"] == {"Ref": "CodeS3Key"}


def test_template_queues(template):
    queues = resources_of_type(template, "AWS::SQS::Queue")
    by_name = {q["Properties"]["QueueName"]: q["Properties"] for q in queues.values()}
    assert set(by_name) == {"keyfleet-jobs", "keyfleet-jobs-dlq"}
    for props in by_name.values():
        assert props["SqsManagedSseEnabled"] is True
    jobs = by_name["keyfleet-jobs"]
    assert jobs["RedrivePolicy"]["maxReceiveCount"] == 3
    assert jobs["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
    # Visibility timeout = 6 x function timeout, for every timeout allowed.
    assert jobs["VisibilityTimeout"] == {
        "Fn::FindInMap": ["TimeoutToVisibility", {"Ref": "FunctionTimeout"}, "VisibilityTimeout"]}
    mapping = template["Mappings"]["TimeoutToVisibility"]
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    assert sorted(int(k) for k in mapping) == sorted(int(v) for v in allowed)
    for timeout, row in mapping.items():
        assert row["VisibilityTimeout"] >= 6 * int(timeout)
        assert row["VisibilityTimeout"] <= 43200


def test_template_event_source_mapping(template):
    (esm,) = resources_of_type(template, "AWS::Lambda::EventSourceMapping").values()
    props = esm["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= props["BatchSize"] <= 10


def test_template_log_group(template):
    (group,) = resources_of_type(template, "AWS::Logs::LogGroup").values()
    assert group["Properties"]["LogGroupName"] == "/aws/lambda/keyfleet-agent"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_template_outputs(template):
    assert {"JobsQueueUrl", "JobsQueueArn", "AgentRoleArn", "AgentFunctionArn"} <= set(template["Outputs"])


def test_agent_role_has_exactly_what_the_agent_needs(template):
    role = template["Resources"]["AgentRole"]["Properties"]
    assert role["RoleName"] == "keyfleet-agent"
    trust = _json_statements(role["AssumeRolePolicyDocument"], "trust", "trust")
    assert [(s.effect, s.principals, s.actions) for s in trust] == [
        ("Allow", {"Service": ["lambda.amazonaws.com"]}, ["sts:AssumeRole"])]
    assert not role.get("ManagedPolicyArns"), "the agent role must not carry managed policies"
    statements = [
        s for p in role["Policies"] for s in _json_statements(p["PolicyDocument"], p["PolicyName"], "identity")]
    granted = {a for s in statements if s.effect == "Allow" for a in s.actions}
    assert granted == AGENT_ACTIONS
    own_users = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*"}
    own_secrets = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:keyfleet/*"}
    lease = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
                        ":secret:keyfleet-lease-??????"}
    lease_actions = {a for s in statements if s.sid == "EarlierReleaseLease" for a in s.actions}
    assert lease_actions == {"secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"}
    table_actions = {a for s in statements if s.sid == "RecordsTable" for a in s.actions}
    assert table_actions == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:GetResourcePolicy"}
    for s in statements:
        for action in s.actions:
            if action in RESOURCE_STAR_ONLY:
                assert s.resources == ["*"]
            elif action.startswith("iam:"):
                assert s.resources == [own_users], f"{action} must be limited to the account's users"
            elif s.sid == "EarlierReleaseLease":
                assert s.resources == [lease], f"{action}: the earlier release's lease secret only"
            elif action.startswith("dynamodb:"):
                assert s.resources == [{"Fn::GetAtt": ["RecordsTable", "Arn"]}], f"{action}: the records table only"
            elif action.startswith("secretsmanager:"):
                assert s.resources == [own_secrets], f"{action} must be limited to keyfleet/* secrets"
            elif action == "sqs:SendMessage":
                assert s.resources == [{"Ref": "ResultsQueueArn"}]
            elif action.startswith("sqs:"):
                assert s.resources == [{"Fn::GetAtt": ["JobsQueue", "Arn"]}]
            elif action.startswith("logs:"):
                assert s.resources == [{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
                                                   ":log-group:/aws/lambda/keyfleet-agent:*"}]


def test_records_table_lets_only_the_agent_write_and_only_the_stack_change_it(template):
    table = template["Resources"]["RecordsTable"]
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["TableName"] == "keyfleet-records"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    statements = _json_statements(props["ResourcePolicy"]["PolicyDocument"], "RecordsTable", "resource")
    assert all(s.effect == "Deny" and s.principals == {"*": ["*"]} or s.principals == {"AWS": ["*"]}
               for s in statements), "the table policy only denies"
    by_sid = {s.sid: s for s in statements}
    items = by_sid["OnlyTheAgentWritesItems"]
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"} <= set(items.actions)
    assert items.conditions == {"StringNotLike": {"aws:PrincipalArn": [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/keyfleet-agent*"}]}}
    table_changes = by_sid["OnlyTheStackChangesTheTable"]
    assert {"dynamodb:DeleteTable", "dynamodb:UpdateTable", "dynamodb:PutResourcePolicy",
            "dynamodb:DeleteResourcePolicy"} <= set(table_changes.actions)
    assert not set(items.actions) & set(table_changes.actions)


def _queue_policy(template: dict, queue_logical_id: str) -> list[Statement]:
    for logical_id, res in resources_of_type(template, "AWS::SQS::QueuePolicy").items():
        if res["Properties"]["Queues"] == [{"Ref": queue_logical_id}]:
            return _json_statements(res["Properties"]["PolicyDocument"], logical_id, "resource")
    pytest.fail(f"no queue policy for {queue_logical_id}")


def _denies_insecure_transport(statements: list[Statement]) -> bool:
    return any(
        s.effect == "Deny" and s.conditions.get("Bool", {}).get("aws:SecureTransport") == ["false"]
        for s in statements)


def test_jobs_queue_accepts_only_the_coordinator(template):
    statements = _queue_policy(template, "JobsQueue")
    role = {"Ref": "CoordinatorRoleArn"}
    allows = [s for s in statements if s.effect == "Allow"]
    assert len(allows) == 1, "exactly one Allow: the coordinator's SendMessage"
    (allow,) = allows
    assert allow.actions == ["sqs:SendMessage"]
    assert allow.resources == [{"Fn::GetAtt": ["JobsQueue", "Arn"]}]
    assert list(allow.principals) == ["AWS"] and len(allow.principals["AWS"]) == 1
    assert "Fn::Sub" in allow.principals["AWS"][0], "principal is the coordinator's account"
    assert allow.conditions == {"ArnEquals": {"aws:PrincipalArn": [role]}}
    assert any(
        s.effect == "Deny" and s.principals == {"*": ["*"]} and "sqs:SendMessage" in s.actions
        and s.conditions == {"ArnNotEquals": {"aws:PrincipalArn": [role]}}
        for s in statements), "every other principal must be denied SendMessage"
    assert _denies_insecure_transport(statements)
    assert _denies_insecure_transport(_queue_policy(template, "JobsDeadLetterQueue"))


# --------------------------------------------------------------------------
# The Terraform modules.
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coordinator() -> dict[tuple[str, str], dict]:
    return module_blocks("coordinator", "resource")


@pytest.fixture(scope="module")
def coordinator_documents() -> dict[str, list[Statement]]:
    docs = module_blocks("coordinator", "data")
    out = {
        name: _tf_policy_document_statements(body, name, "resource")
        for (typ, name), body in docs.items() if typ == "aws_iam_policy_document"
    }
    _, role = template_policy(TF / "modules" / "coordinator", "coordinator_policy")
    out["coordinator"] = _json_statements(role, "coordinator", "identity")
    _, queue = template_policy(TF / "modules" / "coordinator", "results_queue_policy")
    out["results_queue"] = _json_statements(queue, "results_queue", "resource")
    _, key = template_policy(TF / "modules" / "coordinator", "private_key_policy")
    out["private_key"] = _json_statements(key, "private_key", "resource")
    return out


def test_role_policies_are_the_shared_json_templates():
    """The coordinator's and the org reader's permissions are the JSON
    templates `keyfleet bootstrap` deploys into the emulator (where they are
    enforced): Terraform renders them with templatefile(), and the role
    policy is that rendering, not a second copy."""
    for module, role_policy, local_name in (
        ("coordinator", "this", "coordinator_policy"),
        ("org-reader", "this", "read_policy"),
        ("api", "this", "api_policy"),
    ):
        resources = module_blocks(module, "resource")
        assert resources[("aws_iam_role_policy", role_policy)]["policy"] == f"${{local.{local_name}}}"
        file, doc = template_policy(TF / "modules" / module, local_name)
        assert file.parent.name == "policies" and file.name.endswith(".json.tftpl")
        assert doc["Version"] == "2012-10-17" and doc["Statement"]
        data = {name for (typ, name) in module_blocks(module, "data") if typ == "aws_iam_policy_document"}
        assert not data & {"coordinator", "read", "api"}, "the role policy is kept once, in its template"
    with pytest.raises(AssertionError, match="not passed"):
        render_policy_template('{"a": "${x}"}', {}, "fixture")
    with pytest.raises(AssertionError, match="not used"):
        render_policy_template('{"a": "b"}', {"x": "y"}, "fixture")
    assert render_policy_template('{"a": "${x}/*", "b": ${jsonencode(l)}}', {"x": 'q"', "l": ["1"]}, "f") == \
        {"a": 'q"/*', "b": ["1"]}


def test_results_queue_accepts_only_agents_of_the_organization(coordinator, coordinator_documents):
    # The JSON template `keyfleet bootstrap` applies in the emulator too.
    assert coordinator[("aws_sqs_queue_policy", "results")]["policy"] == "${local.results_queue_policy}"
    statements = coordinator_documents["results_queue"]
    org = {"aws:PrincipalOrgID": ["${var.organization_id}"]}
    agent_arn = "arn:${local.partition}:iam::*:role/keyfleet-agent*"
    queue = ["${aws_sqs_queue.results.arn}"]
    allows = [s for s in statements if s.effect == "Allow"]
    assert len(allows) == 1
    (allow,) = allows
    assert allow.actions == ["sqs:SendMessage"] and allow.resources == queue
    assert allow.conditions == {"StringEquals": org, "ArnLike": {"aws:PrincipalArn": [agent_arn]}}
    denies = [s for s in statements if s.effect == "Deny" and "sqs:SendMessage" in s.actions]
    assert any(s.conditions == {"StringNotEquals": org} for s in denies), "senders outside the org must be denied"
    assert any(s.conditions == {"ArnNotLike": {"aws:PrincipalArn": [agent_arn]}} for s in denies), \
        "principals other than keyfleet-agent* roles must be denied"
    assert _denies_insecure_transport(statements)
    assert _denies_insecure_transport(coordinator_documents["results_dlq"])


def test_coordinator_dispatches_only_to_organization_queues(coordinator_documents):
    (dispatch,) = [s for s in coordinator_documents["coordinator"] if s.sid == "DispatchJobs"]
    assert dispatch.actions == ["sqs:SendMessage"]
    assert dispatch.resources == ["${local.jobs_queue_arns}"]
    assert dispatch.conditions == {"StringEquals": {"aws:ResourceOrgID": ["${var.organization_id}"]}}
    locals_ = parse_tf(TF / "modules" / "coordinator" / "main.tf")["locals"][0]
    assert locals_["jobs_queue_arns"] == "arn:${local.partition}:sqs:${local.agent_region}:*:keyfleet-jobs"


def test_coordinator_wiring(coordinator):
    fn = coordinator[("aws_lambda_function", "this")]
    assert fn["function_name"] == "${local.function_name}"
    assert fn["runtime"] == "provided.al2023" and fn["handler"] == "bootstrap"
    env = fn["environment"][0]["variables"]
    assert set(env) == COORDINATOR_ENV
    esm = coordinator[("aws_lambda_event_source_mapping", "results")]
    assert esm["function_response_types"] == ["ReportBatchItemFailures"]
    assert esm["event_source_arn"] == "${aws_sqs_queue.results.arn}"
    results = coordinator[("aws_sqs_queue", "results")]
    assert results["visibility_timeout_seconds"] == "${6 * var.timeout}"
    assert results["sqs_managed_sse_enabled"] is True
    redrive = hcl2.loads(
        "x = " + JSONENCODE.match(results["redrive_policy"]).group("body"), serialization_options=HCL_OPTIONS)["x"]
    assert redrive == {"deadLetterTargetArn": "${aws_sqs_queue.results_dlq.arn}", "maxReceiveCount": 3}
    variables = {n: b for e in parse_tf(TF / "modules" / "coordinator" / "variables.tf")["variable"] for n, b in e.items()}
    assert variables["schedule_expression"]["default"] == "cron(0 13 * * ? *)"
    assert variables["sweep_schedule_expression"]["default"] == "rate(1 hour)"
    alarms = {name: body for (typ, name), body in coordinator.items() if typ == "aws_cloudwatch_metric_alarm"}
    dims = {json.dumps(a["dimensions"]) for a in alarms.values()}
    assert any("aws_lambda_function.this" in d for d in dims)
    assert any("aws_sqs_queue.results_dlq" in d for d in dims)
    for alarm in alarms.values():
        assert alarm["alarm_actions"] == ["${aws_sns_topic.alerts.arn}"]
    secret_version = coordinator[("aws_secretsmanager_secret_version", "placeholder")]
    assert "secret_string" in secret_version["lifecycle"][0]["ignore_changes"]
    bucket_rules = coordinator[("aws_s3_bucket_lifecycle_configuration", "reports")]["rule"]
    assert any(r.get("expiration") for r in bucket_rules)
    # The owners' queued notices go within a week, whatever happens.
    digest_rules = [r for r in bucket_rules if r["filter"][0].get("prefix") == "digests/"]
    assert [r["expiration"][0]["days"] for r in digest_rules] == [7]
    assert coordinator[("aws_s3_bucket_versioning", "reports")]["versioning_configuration"][0]["status"] == "Enabled"
    assert all(coordinator[("aws_s3_bucket_public_access_block", "reports")][k] is True for k in (
        "block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    assert coordinator[("aws_sns_topic", "alerts")].get("kms_master_key_id")


def _referenced_values(values: list[Any]) -> set[str]:
    """The expressions a condition's values stand for, whether written as a
    list (["${a}", "${b}"]) or as one concat() of lists and references
    ("${concat([a], var.b)}"): {"a", "b"}. Anything else fails."""
    m = re.fullmatch(r"\$\{concat\((?P<args>.*)\)\}", values[0], re.S) if len(values) == 1 else None
    if not m:
        out = set()
        for v in values:
            ref = re.fullmatch(r"\$\{(?P<ref>[^${}]+)\}", v)
            out.add(ref.group("ref").strip() if ref else v)
        return out
    out = set()
    for arg in re.split(r",(?![^\[]*\])", m.group("args")):
        arg = arg.strip()
        if arg.startswith("[") and arg.endswith("]"):
            out |= {a.strip() for a in arg[1:-1].split(",") if a.strip()}
        else:
            assert re.fullmatch(r"[A-Za-z0-9_.]+", arg), f"unsupported concat() argument {arg!r}"
            out.add(arg)
    return out


def _is_everyone(principals: dict[str, list[Any]]) -> bool:
    """Principal "*" or {"AWS": "*"}: the same for IAM."""
    return principals in ({"*": ["*"]}, {"AWS": ["*"]})


def test_private_key_secret_policy_denies_everyone_but_the_coordinator(coordinator, coordinator_documents):
    policy = coordinator[("aws_secretsmanager_secret_policy", "private_key")]
    assert policy["secret_arn"] == "${aws_secretsmanager_secret.private_key.arn}"
    # The JSON template `keyfleet bootstrap` applies in the emulator too.
    assert policy["policy"] == "${local.private_key_policy}"
    assert policy["block_public_policy"] is True
    assert coordinator[("aws_iam_role", "this")]["name"] == "${local.role_name}"
    assert dir_locals(TF / "modules" / "coordinator")["role_name"] == "keyfleet-coordinator"
    statements = coordinator_documents["private_key"]
    assert [s for s in statements if s.effect == "Allow"] == [], "the secret policy grants nothing"
    denies = [
        s for s in statements
        if s.effect == "Deny" and {"secretsmanager:GetSecretValue", "secretsmanager:*", "*"} & set(s.actions)]
    assert len(denies) == 1, "one Deny of GetSecretValue to everyone but the coordinator"
    (deny,) = denies
    assert _is_everyone(deny.principals), f"the Deny must cover every principal, not {deny.principals}"
    assert deny.not_actions == [] and deny.not_resources == []
    # In a secret's resource policy "*" is the secret itself.
    assert deny.resources in (["*"], ["${aws_secretsmanager_secret.private_key.arn}"])
    # Exactly one condition: any other would narrow the Deny (conditions AND).
    assert list(deny.conditions) == ["ArnNotEquals"]
    assert list(deny.conditions["ArnNotEquals"]) == ["aws:PrincipalArn"]
    assert _referenced_values(deny.conditions["ArnNotEquals"]["aws:PrincipalArn"]) == {
        "aws_iam_role.this.arn", "var.private_key_readers"}
    assert _referenced_values(["${concat([a.b, c], d.e)}"]) == {"a.b", "c", "d.e"}
    assert _referenced_values(["${a.b}", "${c}"]) == {"a.b", "c"}


def test_report_bucket_policy_denies_requests_without_tls(coordinator, coordinator_documents):
    policy = coordinator[("aws_s3_bucket_policy", "reports")]
    assert policy["bucket"] == "${aws_s3_bucket.reports.id}"
    assert policy["policy"] == "${data.aws_iam_policy_document.reports_bucket.json}"
    bucket = "${aws_s3_bucket.reports.arn}"
    tls = [
        s for s in coordinator_documents["reports_bucket"]
        if s.effect == "Deny" and s.conditions == {"Bool": {"aws:SecureTransport": ["false"]}}]
    assert len(tls) == 1, "one Deny of requests without TLS"
    (deny,) = tls
    assert deny.actions == ["s3:*"] and deny.not_actions == []
    assert _is_everyone(deny.principals), f"the Deny must cover every principal, not {deny.principals}"
    assert sorted(deny.resources) == sorted([bucket, f"{bucket}/*"]), "the bucket and its objects"


def test_results_dlq_is_encrypted_at_rest(coordinator):
    dlq = coordinator[("aws_sqs_queue", "results_dlq")]
    assert dlq["name"] == "${local.results_dlq}"
    assert dir_locals(TF / "modules" / "coordinator")["results_dlq"] == "keyfleet-results-dlq"
    assert dlq.get("sqs_managed_sse_enabled") is True or dlq.get("kms_master_key_id"), \
        "keyfleet-results-dlq holds agent results: SQS-managed SSE or a KMS key"
    if dlq.get("kms_master_key_id"):
        assert dlq.get("sqs_managed_sse_enabled") is not True, "SSE-SQS and SSE-KMS are exclusive"


def test_ses_configuration_set_requires_tls(coordinator):
    config_sets = {
        (typ, name): body for (typ, name), body in coordinator.items()
        if typ in ("aws_sesv2_configuration_set", "aws_ses_configuration_set")}
    assert list(config_sets) == [("aws_sesv2_configuration_set", "this")]
    (config_set,) = config_sets.values()
    delivery = as_list(config_set.get("delivery_options"))
    assert len(delivery) == 1, "the configuration set needs delivery_options with tls_policy"
    assert delivery[0].get("tls_policy") == "REQUIRE", "mail must not leave SES without TLS"
    # The coordinator sends with this configuration set.
    env = coordinator[("aws_lambda_function", "this")]["environment"][0]["variables"]
    name = "${aws_sesv2_configuration_set.this.configuration_set_name}"
    assert env["KEYFLEET_SES_CONFIGURATION_SET"] == name
    assert coordinator[("aws_sesv2_email_identity", "sender")]["configuration_set_name"] == name


def test_org_reader_trusts_only_the_coordinator():
    docs = module_blocks("org-reader", "data")
    trust = _tf_policy_document_statements(docs[("aws_iam_policy_document", "trust")], "trust", "trust")
    (st,) = trust
    assert st.actions == ["sts:AssumeRole"]
    assert st.conditions["ArnEquals"] == {"aws:PrincipalArn": ["${var.coordinator_role_arn}"]}
    _, read_doc = template_policy(TF / "modules" / "org-reader", "read_policy")
    read = _json_statements(read_doc, "read", "identity")
    assert {a for s in read for a in s.actions} == {
        "organizations:ListAccounts", "organizations:ListAccountsForParent",
        "organizations:ListOrganizationalUnitsForParent",
    }


def test_stackset_deploys_the_template_everywhere():
    resources = module_blocks("agent-stackset", "resource")
    stack_set = resources[("aws_cloudformation_stack_set", "this")]
    assert stack_set["permission_model"] == "SERVICE_MANAGED"
    assert stack_set["auto_deployment"][0] == {
        "enabled": True, "retain_stacks_on_account_removal": False, "__is_block__": True}
    assert stack_set["template_body"] == "${local.template_body}"
    assert stack_set["capabilities"] == ["CAPABILITY_NAMED_IAM"]
    locals_ = parse_tf(TF / "modules" / "agent-stackset" / "main.tf")["locals"][0]
    assert locals_["template_body"] == '${file("${path.module}/../../templates/agent.yaml")}'
    # Parameters: only ones the template declares, and every required one.
    params = load_template()["Parameters"]
    given = set(locals_["parameters"]) - {"__is_block__"}
    assert given <= set(params), f"unknown template parameters: {given - set(params)}"
    required = {n for n, p in params.items() if "Default" not in p}
    assert required <= given, f"required template parameters not passed: {required - given}"
    instance = resources[("aws_cloudformation_stack_set_instance", "this")]
    assert instance["deployment_targets"][0]["organizational_unit_ids"] == "${local.ou_ids}"
    prefs = instance["operation_preferences"][0]
    assert "failure_tolerance_percentage" in prefs and "max_concurrent_percentage" in prefs


def test_example_wires_every_module():
    doc = {}
    for path in (TF / "examples" / "complete").glob("*.tf"):
        for k, v in parse_tf(path).items():
            doc.setdefault(k, []).extend(v)
    modules = {name: body for entry in doc["module"] for name, body in entry.items()}
    assert {m["source"] for m in modules.values()} == {f"../../modules/{m}" for m in MODULES}
    aliases = {p["aws"]["alias"] for p in doc["provider"]}
    assert aliases == {"management", "provisioning", "stacksets"}
    assert "aws.management" in json.dumps(modules["org_reader"]["providers"])
    assert "aws.provisioning" in json.dumps(modules["coordinator"]["providers"])
    assert "aws.stacksets" in json.dumps(modules["agents"]["providers"])
    assert "aws.provisioning" in json.dumps(modules["api"]["providers"])
    # The API gets the coordinator's function, bucket and bucket key, and
    # nothing else of the coordinator (no private key, no queues).
    api = modules["api"]
    assert api["coordinator_function_arn"] == "${module.coordinator.function_arn}"
    assert api["report_bucket_arn"] == "${module.coordinator.report_bucket_arn}"
    assert api["report_kms_key_arn"] == "${module.coordinator.kms_key_arn}"
    assert {v for k, v in api.items() if "module.coordinator" in json.dumps(v)} == {
        "${module.coordinator.function_arn}", "${module.coordinator.report_bucket_arn}",
        "${module.coordinator.kms_key_arn}", "${module.coordinator.alerts_topic_arn}"}
    outputs = {n: b for e in parse_tf(TF / "modules" / "coordinator" / "outputs.tf")["output"] for n, b in e.items()}
    assert outputs["function_arn"]["value"] == "${aws_lambda_function.this.arn}"
    assert outputs["report_bucket_arn"]["value"] == "${aws_s3_bucket.reports.arn}"
    assert outputs["kms_key_arn"]["value"] == "${aws_kms_key.this.arn}"
    assert (TF / "examples" / "complete" / "terraform.tfvars.example").is_file()
    assert (TF / "examples" / "complete" / "README.md").is_file()


def _rotation_policy_attributes(variables_tf: Path) -> set[str]:
    """The top-level attributes of a rotation_policy variable's object type."""
    text = variables_tf.read_text()
    block = re.search(r'variable "rotation_policy" \{(.*?)\n\}', text, re.S)
    assert block, f"{variables_tf}: no rotation_policy variable"
    return set(re.findall(r"^\s*(\w+)\s*=\s*optional\(", block.group(1), re.M))


def test_rotation_policy_attributes_are_policy_fields():
    """The coordinator reads KEYFLEET_POLICY strictly (keyfleet_protocol::Policy
    rejects unknown fields), and local.policy_json passes every attribute the
    operator set under its own name: each attribute of the module's
    rotation_policy must be a field of Policy, and the example's a subset of
    the module's."""
    rust = (TF.parent / "protocol" / "src" / "policy.rs").read_text()
    struct = re.search(r"pub struct Policy \{(.*?)\n\}", rust, re.S)
    assert struct, "protocol/src/policy.rs: no Policy struct"
    fields = set(re.findall(r"^\s*pub (\w+):", struct.group(1), re.M))
    module = _rotation_policy_attributes(TF / "modules" / "coordinator" / "variables.tf")
    assert {"rotate_after", "undelivered_alert_after", "cutover_on_use"} <= module
    assert module <= fields, f"not fields of Policy: {sorted(module - fields)}"
    example = _rotation_policy_attributes(TF / "examples" / "complete" / "variables.tf")
    assert example <= module, f"example attributes the module lacks: {sorted(example - module)}"


def test_org_reader_external_id_is_sent_by_the_coordinator():
    """An ExternalId in the org reader's trust is one the coordinator sends:
    the example passes one variable to both modules, the coordinator module
    hands it to the function as KEYFLEET_ORG_READER_EXTERNAL_ID (read by
    coordinator/src/lambda.rs; empty when unset, and then none is sent). The emulator runs
    the deployed coordinator with it set (cli/tests/it/common.rs)."""
    doc = {}
    for path in (TF / "examples" / "complete").glob("*.tf"):
        for k, v in parse_tf(path).items():
            doc.setdefault(k, []).extend(v)
    modules = {name: body for entry in doc["module"] for name, body in entry.items()}
    assert modules["org_reader"]["external_id"] == "${var.org_reader_external_id}"
    assert modules["coordinator"]["org_reader_external_id"] == "${var.org_reader_external_id}"
    function = module_blocks("coordinator", "resource")[("aws_lambda_function", "this")]
    env = function["environment"][0]["variables"]
    assert env["KEYFLEET_ORG_READER_EXTERNAL_ID"] == '${coalesce(var.org_reader_external_id, "")}', env
    trust = json.dumps(module_blocks("org-reader", "data")[("aws_iam_policy_document", "trust")])
    assert "sts:ExternalId" in trust and "var.external_id" in trust
    lambda_rs = (TF.parent / "coordinator" / "src" / "lambda.rs").read_text()
    assert '"KEYFLEET_ORG_READER_EXTERNAL_ID"' in lambda_rs and ".external_id(external_id)" in lambda_rs


# --------------------------------------------------------------------------
# The API (modules/api).
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> dict[tuple[str, str], dict]:
    return module_blocks("api", "resource")


@pytest.fixture(scope="module")
def api_documents() -> dict[str, list[Statement]]:
    docs = module_blocks("api", "data")
    out = {
        name: _tf_policy_document_statements(body, name, "resource")
        for (typ, name), body in docs.items() if typ == "aws_iam_policy_document"
    }
    _, role = template_policy(TF / "modules" / "api", "api_policy")
    out["api"] = _json_statements(role, "api", "identity")
    return out


def _api_variables() -> dict[str, dict]:
    return {n: b for e in parse_tf(TF / "modules" / "api" / "variables.tf")["variable"] for n, b in e.items()}


def _of_type(resources: dict[tuple[str, str], dict], typ: str) -> dict[str, dict]:
    return {name: body for (t, name), body in resources.items() if t == typ}


def test_api_role_has_exactly_what_the_api_needs(api, api_documents):
    role = api[("aws_iam_role", "this")]
    assert role["name"] == "${var.role_name}" and _api_variables()["role_name"]["default"] == "keyfleet-api"
    assert role["assume_role_policy"] == "${data.aws_iam_policy_document.assume.json}"
    assert [(s.effect, s.principals, s.actions) for s in api_documents["assume"]] == [
        ("Allow", {"Service": ["lambda.amazonaws.com"]}, ["sts:AssumeRole"])]
    assert not {"managed_policy_arns", "inline_policy"} & set(role)
    # One inline policy, the template; no other policy reaches the role.
    attached = [
        (t, n) for (t, n), b in api.items()
        if t in ("aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_iam_policy_attachment")
        and "aws_iam_role.this." in json.dumps(b)]
    assert attached == [("aws_iam_role_policy", "this")]
    assert api[("aws_iam_role_policy", "this")]["role"] == "${aws_iam_role.this.id}"

    statements = api_documents["api"]
    assert all(s.effect == "Allow" and not s.not_actions and not s.not_resources for s in statements)
    granted: dict[str, set] = {}
    for s in statements:
        for action in s.actions:
            assert "*" not in action and "?" not in action, f"{s.where}: wildcard action {action}"
            granted.setdefault(action, set()).update(s.resources)
    assert set(granted) == set(API_GRANTS), f"API actions: {sorted(granted)}"
    for action, resources in granted.items():
        assert resources == API_GRANTS[action], f"{action} on {sorted(resources)}"
    forbidden = [a for a in granted if a.split(":")[0] in ("sqs", "sts", "iam", "ses", "sns")
                 or a in ("s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey", "kms:Encrypt")]
    assert forbidden == []

    assert len({s.sid for s in statements}) == len(statements), "one Sid per statement"
    (listing,) = [s for s in statements if "s3:ListBucket" in s.actions]
    assert listing.conditions == {"StringLike": {"s3:prefix": ["runs/", "runs/*", "reports/*"]}}
    (report_key,) = [s for s in statements if s.resources == ["${var.report_kms_key_arn}"]]
    assert report_key.actions == ["kms:Decrypt"]
    assert report_key.conditions == {"StringLike": {
        "kms:EncryptionContext:aws:s3:arn": [API_BUCKET, f"{API_BUCKET}/*"]}}, \
        "the coordinator's key decrypts report bucket objects only"

    # The variables stand for the API's own resources and the inputs; nothing
    # in the module names the coordinator's private key, queues or topic.
    values = dir_locals(TF / "modules" / "api")["api_policy_vars"]
    assert values["api_keys_secret_arn"] == "${aws_secretsmanager_secret.api_keys.arn}"
    assert values["api_kms_key_arn"] == "${aws_kms_key.this.arn}"
    assert values["log_group_arn"] == "${local.log_group_arn}"
    locals_ = dir_locals(TF / "modules" / "api")
    assert locals_["function_name"] == "keyfleet-api"
    assert locals_["log_group_name"] == "/aws/lambda/${local.function_name}"
    text = "\n".join(p.read_text() for p in (TF / "modules" / "api").rglob("*") if p.is_file() and p.suffix != ".md")
    for word in ("private_key", "private-key", "results_queue", "jobs_queue", "keyfleet-jobs", "org_reader"):
        assert word not in text, f"modules/api mentions {word}"


def test_api_gateway_routes_v1_to_sigv4_and_the_rest_to_the_function(api):
    rest_api = api[("aws_api_gateway_rest_api", "this")]
    assert rest_api["endpoint_configuration"][0]["types"] == ["REGIONAL"]
    root = "${aws_api_gateway_rest_api.this.root_resource_id}"
    v1 = "${aws_api_gateway_resource.v1.id}"
    v1_proxy = "${aws_api_gateway_resource.v1_proxy.id}"
    proxy = "${aws_api_gateway_resource.proxy.id}"
    resources = {n: (b["parent_id"], b["path_part"]) for n, b in _of_type(api, "aws_api_gateway_resource").items()}
    assert resources == {"v1": (root, "v1"), "v1_proxy": (v1, "{proxy+}"), "proxy": (root, "{proxy+}")}

    methods = _of_type(api, "aws_api_gateway_method")
    cors_only = "${local.cors ? 1 : 0}"
    assert dir_locals(TF / "modules" / "api")["cors"] == "${length(var.cors_origins) > 0}"
    routes = {}
    for name, m in methods.items():
        routes.setdefault(m["resource_id"], {})[m["http_method"]] = (name, m)
    assert set(routes) == {root, proxy, v1, v1_proxy}, "methods only on /, /{proxy+}, /v1 and /v1/{proxy+}"
    for resource in (v1, v1_proxy):
        assert set(routes[resource]) <= {"ANY", "OPTIONS"} and "ANY" in routes[resource]
        for http_method, (name, m) in routes[resource].items():
            if http_method == "OPTIONS":
                # Preflights carry no signature; they exist only when CORS is on.
                assert m.get("count") == cors_only, f"{name}: OPTIONS without authorization only with cors_origins"
                assert m["authorization"] == "NONE" and m["api_key_required"] is False
            else:
                assert m["authorization"] == "AWS_IAM", f"{name}: /v1 must be SigV4 at the gateway"
                assert m["api_key_required"] is False
                assert "count" not in m
    # Everything else (the dashboard, the browser's files, /keys/v1 for API
    # keys): no gateway authorization, the function authenticates it (Bearer
    # key against the hashes, login form, session cookie).
    for resource in (root, proxy):
        assert set(routes[resource]) == {"ANY"}
        (name, m) = routes[resource]["ANY"]
        assert m["authorization"] == "NONE" and m["api_key_required"] is False, name

    # Each method is proxied to the function, and a change redeploys.
    integrations = _of_type(api, "aws_api_gateway_integration")
    assert set(integrations) == set(methods)
    triggers = json.dumps(api[("aws_api_gateway_deployment", "this")]["triggers"])
    for name, integration in integrations.items():
        assert integration["type"] == "AWS_PROXY" and integration["integration_http_method"] == "POST"
        assert integration["uri"] == "${aws_lambda_function.this.invoke_arn}"
        ref = f"aws_api_gateway_method.{name}" + ("[0]" if "count" in methods[name] else "")
        assert integration["resource_id"] == f"${{{ref}.resource_id}}"
        assert integration["http_method"] == f"${{{ref}.http_method}}"
        assert integration.get("count") == methods[name].get("count")
        assert f"aws_api_gateway_method.{name}," in triggers or f"aws_api_gateway_method.{name}]" in triggers
        assert f"aws_api_gateway_integration.{name}," in triggers or f"aws_api_gateway_integration.{name}]" in triggers

    # No usage plan: it would only limit methods that require an API Gateway
    # key, and there are none (see the test below).
    assert _of_type(api, "aws_api_gateway_usage_plan") == {}
    # Only this API's stage may invoke the function.
    permission = api[("aws_lambda_permission", "api_gateway")]
    assert permission["principal"] == "apigateway.amazonaws.com"
    assert permission["function_name"] == "${aws_lambda_function.this.function_name}"
    assert permission["source_arn"] == "${aws_api_gateway_rest_api.this.execution_arn}/${var.stage_name}/*"
    assert [n for n, p in _of_type(api, "aws_lambda_permission").items()] == ["api_gateway"]


# What a read-only principal (ReadOnlyAccess, SecurityAudit: apigateway:GET)
# reads back from API Gateway: API key values (get-api-keys --include-values),
# usage plan keys, stage and deployment variables, the whole route setup.
# None of it may be derived from a secret or grant anything.
APIGW_READABLE_VALUES = ("aws_api_gateway_api_key", "aws_api_gateway_usage_plan_key")
SECRET_SOURCES = ("aws_secretsmanager_secret", "random_", "sha256(", "base64sha256(", "var.api_keys",
                  "session_key", "KEYFLEET_API_KEYS_SECRET", "kfk_")


def test_api_gateway_holds_nothing_a_reader_can_use_and_v1_is_sigv4(api):
    """API Gateway returns API key values, usage plan keys and stage variables
    to anyone with apigateway:GET. The module used to ask for the keyfleet
    key itself to be registered as the gateway's API key on /v1, so a
    read-only auditor could read a `rotate` key back. Now no API Gateway
    value stands for a credential: /v1 is SigV4 (AWS_IAM), the keyfleet
    keys travel in `Authorization: Bearer` to routes the gateway does not
    check, and the gateway has no API keys at all."""
    # No API Gateway key of any kind, no key required by any method.
    readable = [(t, n) for (t, n) in api if t in APIGW_READABLE_VALUES]
    assert readable == [], f"API Gateway returns these values to apigateway:GET: {readable}"
    methods = _of_type(api, "aws_api_gateway_method")
    required = [n for n, m in methods.items() if m.get("api_key_required") is not False]
    assert required == [], f"methods that require an API Gateway key (a value read-only principals can read): {required}"
    # Nothing API Gateway stores is derived from a secret: no stage or
    # deployment variables, and no gateway resource refers to the keys
    # secret, a random value, a hash or a session key.
    for (typ, name), body in api.items():
        if not typ.startswith("aws_api_gateway_"):
            continue
        assert "variables" not in body, f"{typ}.{name}: stage/deployment variables are readable with apigateway:GET"
        text = json.dumps(body)
        for source in SECRET_SOURCES:
            assert source not in text, f"{typ}.{name} derives a value from {source}"
    # /v1 is authorized by SigV4: the caller's IAM principal, which the
    # function maps to scopes. CORS preflights (only with cors_origins) and
    # the dashboard are NONE: the function answers them itself.
    v1 = "${aws_api_gateway_resource.v1.id}"
    v1_proxy = "${aws_api_gateway_resource.v1_proxy.id}"
    on_v1 = {n: m for n, m in methods.items() if m["resource_id"] in (v1, v1_proxy)}
    assert {m["http_method"] for m in on_v1.values()} <= {"ANY", "OPTIONS"}
    for name, m in on_v1.items():
        if m["http_method"] == "OPTIONS":
            assert m["authorization"] == "NONE" and m.get("count") == "${local.cors ? 1 : 0}", name
        else:
            assert m["authorization"] == "AWS_IAM", f"{name}: /v1 must be authorized with SigV4 (AWS_IAM)"
            assert "count" not in m
    assert sum(m["http_method"] == "ANY" for m in on_v1.values()) == 2
    # The README no longer tells anyone to register a key in API Gateway.
    readme = (TF / "modules" / "api" / "README.md").read_text()
    for instruction in ("create-api-key", "create-usage-plan-key", "--value"):
        assert instruction not in readme, f"modules/api/README.md still says {instruction}"


def test_api_stage_has_access_logging_and_tracing(api, api_documents):
    stage = api[("aws_api_gateway_stage", "this")]
    assert stage["xray_tracing_enabled"] is True
    (logging,) = stage["access_log_settings"]
    assert logging["destination_arn"] == "${aws_cloudwatch_log_group.access.arn}"
    assert logging["format"] == "${local.access_log_format}"
    fmt = dir_locals(TF / "modules" / "api")["access_log_format"]
    fields = hcl2.loads("x = " + JSONENCODE.match(fmt).group("body"), serialization_options=HCL_OPTIONS)["x"]
    values = {v for k, v in fields.items() if k != "__is_block__"}
    assert {"$context.requestId", "$context.identity.sourceIp", "$context.status",
            "$context.identity.userArn", "$context.xrayTraceId"} <= values
    assert "$context.identity.apiKey" not in values, "the access log must not hold API keys"
    assert not any("$context.authorizer" in v or "header" in v.lower() for v in values), \
        "the access log must not hold a header (a Bearer key travels in Authorization)"

    settings = api[("aws_api_gateway_method_settings", "all")]
    assert settings["stage_name"] == "${aws_api_gateway_stage.this.stage_name}" and settings["method_path"] == "*/*"
    (s,) = settings["settings"]
    assert s["data_trace_enabled"] is False, "data trace logs whole requests, the Authorization header included"
    assert s["metrics_enabled"] is True
    assert s["logging_level"] == "${var.execution_logging_level}"
    assert _api_variables()["execution_logging_level"]["default"] in ("ERROR", "INFO")
    assert s["throttling_rate_limit"] == "${var.stage_throttle_rate_limit}"
    assert s["throttling_burst_limit"] == "${var.stage_throttle_burst_limit}"

    # Every log group of the API is encrypted with the module's key and expires;
    # the execution log group is the one API Gateway writes to.
    locals_ = dir_locals(TF / "modules" / "api")
    assert locals_["execution_log_group_name"] == \
        "API-Gateway-Execution-Logs_${aws_api_gateway_rest_api.this.id}/${var.stage_name}"
    groups = _of_type(api, "aws_cloudwatch_log_group")
    assert set(groups) == {"function", "access", "execution"}
    for name, group in groups.items():
        assert group["kms_key_id"] == "${aws_kms_key.this.arn}", f"log group {name} must be KMS-encrypted"
        assert group["retention_in_days"] == "${var.log_retention_days}"
    assert groups["execution"]["name"] == "${local.execution_log_group_name}"
    assert "${aws_cloudwatch_log_group.execution}" in stage["depends_on"]
    (logs_key,) = [st for st in api_documents["kms"] if st.principals.get("Service") == ["logs.${local.region}.amazonaws.com"]]
    assert logs_key.conditions == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": [
        "${local.log_group_arn}", "${local.access_log_group_arn}", "${local.execution_log_group_arn}"]}}
    # Stages log to CloudWatch only with the region's API Gateway CloudWatch role.
    assert "${aws_api_gateway_account.this}" in stage["depends_on"]
    account = api[("aws_api_gateway_account", "this")]
    assert account["cloudwatch_role_arn"] == "${aws_iam_role.apigateway_cloudwatch[0].arn}"


def test_api_keys_secret_is_kms_encrypted_and_read_only_by_the_api(api, api_documents):
    secret = api[("aws_secretsmanager_secret", "api_keys")]
    assert secret["kms_key_id"] == "${aws_kms_key.this.arn}", "the key hashes are encrypted with the module's key"
    key = api[("aws_kms_key", "this")]
    assert key["enable_key_rotation"] is True and key["policy"] == "${data.aws_iam_policy_document.kms.json}"
    assert secret["name"] == "${var.api_keys_secret_name}"
    default = _api_variables()["api_keys_secret_name"]["default"]
    assert default == "keyfleet-api/api-keys"
    assert not default.startswith("keyfleet/"), "keyfleet/* is the agent's namespace for IAM users' secrets"
    # Terraform writes an empty list once, under its own label, and never again.
    version = api[("aws_secretsmanager_secret_version", "placeholder")]
    assert version["secret_id"] == "${aws_secretsmanager_secret.api_keys.id}"
    assert version["secret_string"] == "${jsonencode([])}"
    assert "AWSCURRENT" not in version["version_stages"]
    assert {"secret_string", "version_stages"} <= set(version["lifecycle"][0]["ignore_changes"])
    # The function reads this secret.
    env = api[("aws_lambda_function", "this")]["environment"][0]["variables"]
    assert env["KEYFLEET_API_KEYS_SECRET"] == "${aws_secretsmanager_secret.api_keys.arn}"
    # Nobody but the API role (and the named readers) may read it.
    policy = api[("aws_secretsmanager_secret_policy", "api_keys")]
    assert policy["secret_arn"] == "${aws_secretsmanager_secret.api_keys.arn}"
    assert policy["policy"] == "${data.aws_iam_policy_document.api_keys.json}"
    assert policy["block_public_policy"] is True
    statements = api_documents["api_keys"]
    assert [s for s in statements if s.effect == "Allow"] == []
    (deny,) = [s for s in statements if s.effect == "Deny"]
    assert deny.actions == ["secretsmanager:GetSecretValue"] and _is_everyone(deny.principals)
    assert deny.resources == ["*"] and deny.not_actions == [] and deny.not_resources == []
    assert list(deny.conditions) == ["ArnNotEquals"]
    assert _referenced_values(deny.conditions["ArnNotEquals"]["aws:PrincipalArn"]) == {
        "aws_iam_role.this.arn", "var.api_keys_readers"}


def test_api_function_wiring(api):
    fn = api[("aws_lambda_function", "this")]
    assert fn["function_name"] == "${local.function_name}"
    assert fn["runtime"] == "provided.al2023" and fn["handler"] == "bootstrap"
    assert fn["architectures"] == ["${var.architecture}"]
    assert fn["role"] == "${aws_iam_role.this.arn}"
    assert fn["reserved_concurrent_executions"] == "${var.reserved_concurrency}"
    assert fn["kms_key_arn"] == "${aws_kms_key.this.arn}"
    env = fn["environment"][0]["variables"]
    assert set(env) - {"__is_block__"} == API_ENV
    assert env["KEYFLEET_REPORT_BUCKET"] == "${local.report_bucket_name}"
    assert env["KEYFLEET_COORDINATOR_FUNCTION"] == "${var.coordinator_function_arn}"
    assert env["KEYFLEET_CORS_ORIGINS"] == '${join(",", var.cors_origins)}'
    assert _api_variables()["cors_origins"]["default"] == []
    variables = _api_variables()
    assert variables["architecture"]["default"] == "x86_64"
    assert variables["timeout"]["default"] <= 29, "API Gateway gives a Lambda proxy 29 s"


def test_reserved_concurrency_never_throttles_the_queue_mappings():
    """Lambda throttles an SQS event source mapping whose maximum concurrency
    exceeds the function's reserved concurrency (the emulator does too:
    tests/emulator/ext_lambda_esm.py). Each module refuses such a pair at
    plan time with a precondition naming both variables."""
    for module, (typ, name), mapping in (
        ("coordinator", ("aws_lambda_function", "this"), "results_max_concurrency"),
        ("agent-stackset", ("aws_cloudformation_stack_set", "this"), "maximum_concurrency"),
    ):
        body = module_blocks(module, "resource")[(typ, name)]
        preconditions = [p for lc in as_list(body.get("lifecycle")) for p in as_list(lc.get("precondition"))]
        conditions = [str(p.get("condition")) for p in preconditions]
        assert any(
            "var.reserved_concurrency == -1" in c and f"var.{mapping}" in c and "var.reserved_concurrency >" in c
            for c in conditions
        ), f"{module}: no precondition ties reserved_concurrency to {mapping}: {conditions}"

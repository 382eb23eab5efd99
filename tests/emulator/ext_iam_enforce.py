"""AWS's access control for the deployed roles, decided by a maintained policy engine.

AWS decides every request from more than the caller's identity policies:
the resource's own policy (SQS queue, Secrets Manager secret, S3 bucket, KMS
key, SNS topic, Lambda function, DynamoDB table) or, for ``sts:AssumeRole``, the role's
trust policy; the organization's SCPs (principal side) and RCPs (resource
side); permission boundaries; and each statement's conditions, evaluated
against the request's context. Within one account either the identity or
the resource policy may allow; across accounts both must; an explicit Deny
anywhere wins. A denied request fails with ``AccessDenied`` (query/XML
services such as IAM, STS; S3's XML; SNS says ``AuthorizationError``) or
``AccessDeniedException`` (JSON services; DynamoDB with HTTP 400, as it
answers every client error), message::

    User: arn:aws:sts::<acct>:assumed-role/<role>/<session> is not authorized to perform: <action> on resource: <arn> because no identity-based policy allows the <action> action

(or ``with an explicit deny in a resource-based policy``, ``... in a service
control policy``, ``because no resource-based policy allows ...``, as AWS
words each case).

moto 5.2.5 evaluates none of that for the sessions keyfleet uses.

Here the harness builds each request's *context* and the engine decides:
``iam_engine.py`` runs ``@cloud-copilot/iam-simulate`` (see the README for
why that engine), so no policy language is evaluated by home-made code. What
stays home-made, and is tested against the engine with a table of cases
(``test_iam_enforce.py``), is the context:

- who: requests whose SigV4 access key is an STS AssumeRole session
  (moto's ``assumed_roles``) of a role whose name matches one of
  ``role_name_patterns`` (shell-style; default the deployed roles
  ``keyfleet-agent*``, ``keyfleet-coordinator*``, ``keyfleet-org-reader*``,
  ``keyfleet-api*``; a test adds its own intruder roles), and requests
  signed with an IAM user's own active access key (every user: AWS checks
  every principal; ext_user_keys.py has already refused inactive, deleted
  and wrongly signed keys). Everything else — the ``testing`` admin keys
  that stand for the operator's own tooling, other roles' sessions — is
  never checked. A session's principal is the session ARN; its context:
  ``aws:PrincipalArn`` (the role ARN), ``aws:PrincipalAccount``,
  ``aws:PrincipalOrgID``, ``aws:PrincipalOrgPaths``, ``aws:PrincipalTag/*``
  (the role's tags), ``aws:PrincipalType`` (``AssumedRole``), ``aws:userid``,
  ``aws:SecureTransport`` (``true``: AWS SDKs only speak TLS to AWS; the
  emulator's plain HTTP stands for it), ``aws:RequestedRegion``,
  ``aws:CurrentTime``, ``aws:EpochTime``. A user's principal is its ARN
  (``arn:aws:iam::<acct>:user<path><name>``), its context the same keys
  with ``aws:PrincipalArn`` the user's ARN, ``aws:PrincipalTag/*`` its tags,
  ``aws:PrincipalType`` ``User``, ``aws:userid`` its user id and
  ``aws:username``; its identity policies are its inline and attached
  managed policies and those of its groups (``UserCaller``); the IAM
  actions that without ``UserName`` act on the caller (``IAM_SELF_ACTIONS``)
  are decided on the user's own ARN;
- what: ``<signing service>:<Action>`` or the IAM action's own name where it
  differs (``IAM_ACTION_NAMES``), plus the second action AWS authorizes for
  some requests (``IMPLIED``);
- on what: the resource ARN per service (``resources_for``), its account
  (``aws:ResourceAccount``, ``aws:ResourceOrgID``, ``aws:ResourceOrgPaths``),
  its tags (``aws:ResourceTag/*``, and ``iam:ResourceTag/*`` for IAM users and
  roles);
- service keys taken from the request: ``s3:prefix``, ``ses:FromAddress``,
  ``sts:ExternalId``, ``sts:RoleSessionName``, ``kms:EncryptionContext:*``,
  ``dynamodb:LeadingKeys`` (the partition key values of the items named:
  Key, Item, a Query's key condition, each batch or transaction item) and
  ``dynamodb:EnclosingOperation`` (a transaction's items);
- DynamoDB (``dynamodb_checks``): a request may need several decisions: the
  table of ``TableName`` (a name, or an ARN: also another account's),
  ``<table>/index/<name>`` for a Query or Scan of an index (the table's
  policy applies), ``ResourceArn`` for the policy and tagging actions, the
  batch action on each table of BatchGetItem/BatchWriteItem, and for
  TransactWriteItems/TransactGetItems (no IAM actions of their own) each
  item's PutItem, UpdateItem, DeleteItem, ConditionCheckItem or GetItem;
  CreateTable with ``ResourcePolicy`` also needs PutResourcePolicy. A table
  that does not exist (and another account's table, for the operations AWS
  serves in the caller's own account only) gets no decision: moto answers
  ResourceNotFoundException, as AWS does whoever asks;
- the resource's policy from moto's state (``resource_policy``), the SCPs of
  the root, each OU down to the account and the account itself, and the RCPs
  likewise, when the organization has that policy type enabled (a level with
  no SCP of its own counts as ``FullAWSAccess``, which AWS attaches to every
  new OU and account); neither applies to the management account;
- implicit KMS calls (``implicit_kms``): a request on a resource encrypted
  with a customer key also needs ``kms:Decrypt`` / ``kms:GenerateDataKey`` on
  that key, with ``kms:ViaService`` and the service's encryption context,
  decided by the same engine with the key's policy: S3 objects (SSE-KMS, or
  the bucket's default), Secrets Manager secrets with a ``KmsKeyId``, SNS
  topics and SQS queues with a ``KmsMasterKeyId``.

``sts:AssumeRole`` by an enforced session is decided with the target role's
trust policy as the resource policy; a role that does not exist is refused
as AWS refuses it. An S3 read of a missing object answers 403 AccessDenied,
not 404, when the caller may not ``s3:ListBucket`` the bucket (AWS hides
whether the key exists).

What the harness does itself under a function's execution role (the SQS
event source poller, an async invocation's dead-letter queue, CloudWatch Logs
for a function's output; see ext_lambda_esm.py, ext_lambda_async.py and
ext_lambda_exec.py) is checked with ``check_role_action`` (same engine, same
context, same decisions log, session name = the function's name).

NOT evaluated: session policies passed to AssumeRole, VPC endpoint policies,
grants, ``aws:SourceIp``/``aws:SourceVpc``, users' permission boundaries
(moto 5.2.5 keeps none), and the callers that are not enforced (above).

Control: ``POST /_keyfleet/iam/enforce`` ``{"enabled": true,
"role_name_patterns": [...]}`` (both optional), ``GET`` reads the settings;
``GET /_keyfleet/iam/decisions`` lists every check of a role session in
order (``{"decision": "ALLOWED"|"DENIED", "account", "role", "session",
"action", "resource", "reason", "decided_by", "context"}``: ``reason`` is
``allow``, ``implicit-deny`` or ``explicit-deny``; ``decided_by`` names the
policy type that denied, ``identity``, ``resource``, ``trust``, ``scp``,
``rcp``, ``boundary``, ``kms`` or ``engine``, and is null when allowed;
``context`` is the request context the engine was given);
``?principal_type=User`` lists the IAM users' checks instead, each with
``"principal_type": "User"``, ``"user"`` and ``"principal"`` (the user's
ARN) in place of ``role`` and ``session``. The users' checks are kept
apart so that what reads the roles' decisions (the test kit's
``IamDecision``, which needs a ``role``; used-versus-granted per role; the
demo's count of the roles' calls) sees exactly what it saw before.
``DELETE`` clears both.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
from typing import Any
from urllib.parse import unquote, urlparse

import ext_user_keys
import iam_engine
from control import ControlError
from ext_dynamodb import CROSS_ACCOUNT_ACTIONS

DEFAULT_PATTERNS = ["keyfleet-agent*", "keyfleet-coordinator*", "keyfleet-org-reader*", "keyfleet-api*"]

_lock = threading.Lock()
_state: dict[str, Any] = {"enabled": False, "role_name_patterns": list(DEFAULT_PATTERNS)}
_decisions: list[dict[str, Any]] = []
# IAM users' decisions, kept apart: the role decisions' readers (the test
# kit's IamDecision needs a role; used-versus-granted and the demo count the
# roles' calls) never see them.
_user_decisions: list[dict[str, Any]] = []
PRINCIPAL_TYPES = ("AssumedRole", "User")

# IAM actions that, without UserName, act on the IAM user who signed the
# request ("determined implicitly based on the AWS access key ID used to
# sign the request"): AWS authorizes them on that user's ARN.
IAM_SELF_ACTIONS = {
    "GetUser",
    "ListAccessKeys",
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "ListMFADevices",
    "ListSigningCertificates",
    "ListSSHPublicKeys",
    "ListServiceSpecificCredentials",
}

# IAM actions that take no resource ARN.
IAM_ACCOUNT_LEVEL = {
    "GenerateCredentialReport",
    "GetCredentialReport",
    "GetAccountAuthorizationDetails",
    "ListUsers",
    "ListRoles",
    "ListPolicies",
    "ListGroups",
    "ListAccountAliases",
    "GetAccountSummary",
    "GetAccountPasswordPolicy",
    "CreateAccountAlias",
    "DeleteAccountAlias",
}

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")
_QUEUE_PATH = re.compile(r"^/(\d{12})/([A-Za-z0-9_.\-]+)/?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:.*/)?([^/]+)$")


# -- control endpoints -------------------------------------------------------


def settings() -> dict[str, Any]:
    with _lock:
        return {"enabled": _state["enabled"], "role_name_patterns": list(_state["role_name_patterns"])}


def enforce_from_request(body: dict[str, Any]) -> dict[str, Any]:
    enabled = body.get("enabled", None)
    patterns = body.get("role_name_patterns", None)
    if enabled is not None and not isinstance(enabled, bool):
        raise ControlError(400, "enabled must be true or false")
    if patterns is not None and (
        not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns)
    ):
        raise ControlError(400, "role_name_patterns must be a list of non-empty strings")
    unknown = set(body) - {"enabled", "role_name_patterns"}
    if unknown:
        raise ControlError(400, f"unknown fields: {sorted(unknown)}")
    with _lock:
        if enabled is not None:
            _state["enabled"] = enabled
        if patterns is not None:
            _state["role_name_patterns"] = list(patterns)
    return {"ok": True, **settings()}


def decisions_snapshot(query: dict[str, str] | None = None) -> dict[str, Any]:
    """The role sessions' decisions, or with ``?principal_type=User`` the IAM
    users' (``AssumedRole``, the default, names the former)."""
    query = query or {}
    unknown = sorted(set(query) - {"principal_type"})
    if unknown:
        raise ControlError(400, f"unknown query parameter(s) {unknown}; only principal_type=AssumedRole|User")
    kind = query.get("principal_type", "AssumedRole")
    if kind not in PRINCIPAL_TYPES:
        raise ControlError(400, f"principal_type must be one of {list(PRINCIPAL_TYPES)}, not {kind!r}")
    with _lock:
        return {"decisions": [dict(d) for d in (_user_decisions if kind == "User" else _decisions)]}


def decisions_clear(query: dict[str, str] | None = None) -> dict[str, Any]:
    """Forgets every decision, the roles' and the users'."""
    with _lock:
        n = len(_decisions) + len(_user_decisions)
        _decisions.clear()
        _user_decisions.clear()
    return {"ok": True, "cleared": n}


# -- the policies moto holds ---------------------------------------------------


def _load_document(doc: Any) -> dict[str, Any] | None:
    if isinstance(doc, dict):
        return doc
    if isinstance(doc, bytes):
        doc = doc.decode("utf-8", "replace")
    if not isinstance(doc, str):
        return None
    for text in (doc, unquote(doc)):
        try:
            loaded = json.loads(text)
        except ValueError:
            continue
        if isinstance(loaded, dict):
            return loaded
    return None


def _role(account: str, role_name: str) -> Any:
    from moto.iam.models import iam_backends

    try:
        return iam_backends[account]["aws"].get_role(role_name)
    except Exception:
        return None


def _default_version(policy: Any) -> Any:
    """A managed policy's document: its default version's."""
    versions = getattr(policy, "versions", [])
    default = next((v for v in versions if getattr(v, "is_default", False)), None)
    return default.document if default is not None else getattr(policy, "document", None)


def _managed_document(account: str, arn: str) -> dict[str, Any] | None:
    from moto.iam.models import iam_backends

    try:
        policy = iam_backends[account]["aws"].get_policy(arn)
    except Exception:
        return None
    return _load_document(_default_version(policy))


def _own_documents(holder: Any) -> list[Any]:
    """A role's, user's or group's inline and attached managed policies, raw."""
    raw: list[Any] = list(getattr(holder, "policies", {}).values())
    raw += [_default_version(p) for p in getattr(holder, "managed_policies", {}).values()]
    return raw


def role_documents(account: str, role_name: str) -> list[dict[str, Any]]:
    """The role's inline and attached managed policy documents."""
    role = _role(account, role_name)
    if role is None:
        return []  # a session of a role that does not exist has no permissions
    return [d for d in (_load_document(r) for r in _own_documents(role)) if d is not None]


def user_documents(user: Any) -> list[dict[str, Any]]:
    """An IAM user's identity policies as AWS gathers them: its inline and
    attached managed policies, and those of every group it belongs to."""
    from moto.iam.models import iam_backends

    raw = _own_documents(user)
    try:
        groups = iam_backends[user.account_id]["aws"].get_groups_for_user(user.name)
    except Exception:
        groups = []
    for group in groups:
        raw += _own_documents(group)
    return [d for d in (_load_document(r) for r in raw) if d is not None]


def _tags(obj: Any) -> dict[str, str]:
    """A moto object's tags as {key: value}, whichever shape moto keeps."""
    tags = getattr(obj, "tags", None) or {}
    out: dict[str, str] = {}
    if isinstance(tags, dict):
        for key, value in tags.items():
            if isinstance(value, dict) and "Key" in value:
                out[str(value["Key"])] = str(value.get("Value", ""))
            else:
                out[str(key)] = str(value)
    elif isinstance(tags, list):
        for item in tags:
            if isinstance(item, dict) and "Key" in item:
                out[str(item["Key"])] = str(item.get("Value", ""))
    return out


# -- the organization ------------------------------------------------------------


def _organization_of(account: str) -> tuple[Any, Any] | None:
    """(moto's organization backend, org) that ``account`` belongs to."""
    from moto.organizations.models import organizations_backends

    owner = organizations_backends.master_accounts.get(account)
    management = owner[0] if owner else account
    try:
        backend = organizations_backends[management]["aws"]
    except Exception:
        return None
    if backend.org is None:
        return None
    if account != backend.org.master_account_id and not any(a.id == account for a in backend.accounts):
        return None
    return backend, backend.org


def _path(backend: Any, account: str) -> list[Any]:
    """Root, OUs down to the account, the account: moto's objects in that order."""
    by_id = {ou.id: ou for ou in backend.ou}
    acct = next((a for a in backend.accounts if a.id == account), None)
    if acct is None:
        return []
    chain = [acct]
    parent = getattr(acct, "parent_id", None)
    while parent and parent in by_id:
        node = by_id[parent]
        chain.append(node)
        parent = getattr(node, "parent_id", None)
    return list(reversed(chain))


def org_context(account: str, side: str) -> dict[str, Any]:
    """aws:{Principal|Resource}OrgID and ...OrgPaths for an account, if in an org."""
    found = _organization_of(account)
    if found is None:
        return {}
    backend, org = found
    path = [n.id for n in _path(backend, account)[:-1]]
    return {
        f"aws:{side}OrgID": org.id,
        f"aws:{side}OrgPaths": [f"{org.id}/" + "/".join(path) + "/"] if path else [],
    }


# What AWS attaches to every new OU and account (FullAWSAccess).
_FULL_ACCESS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def org_policies(account: str, kind: str) -> list[dict[str, Any]]:
    """The SCPs (``SERVICE_CONTROL_POLICY``) or RCPs (``RESOURCE_CONTROL_POLICY``)
    that apply to ``account``, one entry per level from the root down, in the
    engine's shape; empty when the type is not enabled, or for the management
    account (neither applies to it)."""
    found = _organization_of(account)
    if found is None:
        return []
    backend, org = found
    if account == org.master_account_id:
        return []
    root = next((ou for ou in backend.ou if ou.id == org.root_id), None)
    enabled = any(
        t.get("Type") == kind and t.get("Status") == "ENABLED" for t in getattr(root, "policy_types", []) or []
    )
    if not enabled:
        return []
    levels = []
    for node in _path(backend, account):
        attached = [p for p in getattr(node, "attached_policies", []) if getattr(p, "type", None) == kind]
        if kind == "RESOURCE_CONTROL_POLICY":
            # The engine applies RCPFullAWSAccess itself (and refuses a copy).
            attached = [p for p in attached if not getattr(p, "aws_managed", False)]
            if attached:
                levels.append({"orgIdentifier": node.id, "policies": [{"name": p.id, "policy": _load_document(p.content) or {}} for p in attached]})
            continue
        policies = [
            {"name": p.id, "policy": _load_document(p.content) or {}} for p in attached
        ] or [{"name": "implicit-full-access", "policy": _FULL_ACCESS}]
        levels.append({"orgIdentifier": node.id, "policies": policies})
    return levels


# -- who is calling ------------------------------------------------------------


def _session_for(access_key: str) -> tuple[str, Any] | None:
    from moto.iam.models import get_account_id_from
    from moto.sts.models import sts_backends

    if not access_key.startswith("ASIA"):
        return None
    account = get_account_id_from(access_key)
    for partition in ("aws",):
        try:
            roles = list(sts_backends[account][partition].assumed_roles)
        except Exception:
            continue
        for assumed in roles:
            if assumed.access_key_id == access_key:
                return account, assumed
    return None


# -- resources -----------------------------------------------------------------


def _param(response: Any, name: str) -> Any:
    try:
        value = response._get_param(name)
    except Exception:
        value = None
    if value is None:
        try:
            body = json.loads(response.body or b"{}")
            if isinstance(body, dict):
                value = body.get(name)
        except Exception:
            pass
    return value


def _iam_resources(response: Any, action: str, account: str) -> list[str]:
    from moto.iam.models import iam_backends

    if action in IAM_ACCOUNT_LEVEL:
        return ["*"]
    backend = iam_backends[account]["aws"]
    user = _param(response, "UserName")
    if isinstance(user, str) and user:
        path = "/"
        try:
            path = backend.get_user(user).path or "/"
        except Exception:
            path = _param(response, "Path") or "/" if action == "CreateUser" else "/"
        return [f"arn:aws:iam::{account}:user{path}{user}"]
    key_id = _param(response, "AccessKeyId")
    if isinstance(key_id, str) and key_id:
        # GetAccessKeyLastUsed names only the key: the resource is its user.
        for owner in list(getattr(backend, "users", {}).values()):
            if any(k.access_key_id == key_id for k in owner.access_keys):
                return [f"arn:aws:iam::{account}:user{owner.path or '/'}{owner.name}"]
    role = _param(response, "RoleName")
    if isinstance(role, str) and role:
        try:
            return [backend.get_role(role).arn]
        except Exception:
            return [f"arn:aws:iam::{account}:role/{role}"]
    policy_arn = _param(response, "PolicyArn")
    if isinstance(policy_arn, str) and policy_arn:
        return [policy_arn]
    return ["*"]


def _secret_resources(response: Any, region: str, account: str) -> list[str]:
    from moto.secretsmanager.models import secretsmanager_backends

    secret_id = _param(response, "SecretId") or _param(response, "Name")
    if not isinstance(secret_id, str) or not secret_id:
        return ["*"]
    if secret_id.startswith("arn:"):
        return [secret_id]
    try:
        backend = secretsmanager_backends[account][region]
        secret = backend.secrets.get(secret_id)
        if secret is not None and getattr(secret, "arn", None):
            return [secret.arn]
    except Exception:
        pass
    return [f"arn:aws:secretsmanager:{region}:{account}:secret:{secret_id}-??????"]


def _sqs_resources(response: Any, region: str, account: str) -> list[str]:
    url = _param(response, "QueueUrl")
    if isinstance(url, str) and url:
        match = _QUEUE_PATH.match(urlparse(url).path)
        if match:
            return [f"arn:aws:sqs:{region}:{match.group(1)}:{match.group(2)}"]
    match = _QUEUE_PATH.match(getattr(response, "path", "") or "")
    if match:
        return [f"arn:aws:sqs:{region}:{match.group(1)}:{match.group(2)}"]
    name = _param(response, "QueueName")
    if isinstance(name, str) and name:
        owner = _param(response, "QueueOwnerAWSAccountId") or account
        return [f"arn:aws:sqs:{region}:{owner}:{name}"]
    return ["*"]


def _sender(response: Any) -> str | None:
    """The sender of an SES send: FromEmailAddress/Source, or a raw message's From."""
    sender = _param(response, "FromEmailAddress") or _param(response, "Source")
    if not sender:
        raw = _param(response, "Content")
        data = raw.get("Raw", {}).get("Data") if isinstance(raw, dict) else None
        if isinstance(data, str):
            import base64
            import email

            try:
                sender = email.message_from_bytes(base64.b64decode(data)).get("From")
            except Exception:
                sender = None
    return sender if isinstance(sender, str) and sender else None


def _ses_resources(response: Any, region: str, account: str) -> list[str]:
    from moto.ses.models import ses_backends

    resources = []
    sender = _sender(response)
    if isinstance(sender, str) and sender:
        address = email_address(sender)
        identity = address
        try:
            identities = ses_backends[account][region].email_identities
            if address not in identities and "@" in address:
                identity = address.split("@", 1)[1]
        except Exception:
            pass
        resources.append(f"arn:aws:ses:{region}:{account}:identity/{identity}")
    config = _param(response, "ConfigurationSetName")
    if isinstance(config, str) and config:
        resources.append(f"arn:aws:ses:{region}:{account}:configuration-set/{config}")
    return resources or ["*"]


def email_address(value: str) -> str:
    from email.utils import parseaddr

    return parseaddr(value)[1] or value


def _kms_resources(response: Any, region: str, account: str) -> list[str]:
    key = _param(response, "KeyId")
    if not isinstance(key, str) or not key:
        return ["*"]
    if key.startswith("arn:"):
        return [key]
    if key.startswith("alias/"):
        try:
            from moto.kms.models import kms_backends

            key_id = kms_backends[account][region].get_key_id_from_alias(key)
            if key_id:
                return [f"arn:aws:kms:{region}:{account}:key/{key_id}"]
        except Exception:
            pass
        return [f"arn:aws:kms:{region}:{account}:{key}"]
    return [f"arn:aws:kms:{region}:{account}:key/{key}"]


# Organizations actions that name a root, OU, account or policy, and the
# parameter that names it; every other action takes no resource ("*").
ORGANIZATIONS_TARGETS = {
    "ListAccountsForParent": "ParentId",
    "ListOrganizationalUnitsForParent": "ParentId",
    "ListChildren": "ParentId",
    "ListParents": "ChildId",
    "DescribeAccount": "AccountId",
    "DescribeOrganizationalUnit": "OrganizationalUnitId",
    "ListTagsForResource": "ResourceId",
}


def _organizations_resources(response: Any, action: str, account: str) -> list[str]:
    """arn:aws:organizations::<management>:{root|ou|account}/<org id>/<id>
    for the actions that name one (AWS's service authorization reference)."""
    param = ORGANIZATIONS_TARGETS.get(action)
    target = _param(response, param) if param else None
    if not isinstance(target, str) or not target:
        return ["*"]
    try:
        from moto.organizations.models import organizations_backends

        org = organizations_backends[account]["aws"].org
    except Exception:
        org = None
    if org is None:
        return ["*"]
    prefix = f"arn:aws:organizations::{org.master_account_id}"
    if target.startswith("r-"):
        return [f"{prefix}:root/{org.id}/{target}"]
    if target.startswith("ou-"):
        return [f"{prefix}:ou/{org.id}/{target}"]
    if re.fullmatch(r"\d{12}", target):
        return [f"{prefix}:account/{org.id}/{target}"]
    return ["*"]


_LAMBDA_FUNCTION = re.compile(r"/functions/([^/]+)")


def _lambda_resources(response: Any, region: str, account: str) -> list[str]:
    """A function named in the request path (``/2015-03-31/functions/<name|arn>/...``),
    as its ARN without a qualifier (AWS authorizes ``lambda:InvokeFunction`` on
    the function's ARN); anything else ``*``."""
    path = unquote(str(getattr(response, "path", "") or ""))
    match = _LAMBDA_FUNCTION.search(path)
    if not match:
        return ["*"]
    name = match.group(1)
    if name.startswith("arn:"):
        parts = name.split(":")
        return [":".join(parts[:7])]
    name = name.split(":")[0]
    return [f"arn:aws:lambda:{region}:{account}:function:{name}"]


def resources_for(
    response: Any, service: str, action: str, region: str, account: str, moto_resource: str
) -> list[str]:
    if service == "organizations":
        return _organizations_resources(response, action, account)
    if service == "s3":
        return [moto_resource or "*"]
    if service == "iam":
        return _iam_resources(response, action, account)
    if service == "secretsmanager":
        if action in ("ListSecrets", "BatchGetSecretValue", "GetRandomPassword"):
            return ["*"]
        return _secret_resources(response, region, account)
    if service == "sqs":
        return _sqs_resources(response, region, account)
    if service == "ses":
        if action in ("SendEmail", "SendRawEmail"):
            return _ses_resources(response, region, account)
        identity = _param(response, "EmailIdentity") or _param(response, "Identity")
        if isinstance(identity, str) and identity:
            return [f"arn:aws:ses:{region}:{account}:identity/{identity}"]
        return ["*"]
    if service == "sns":
        topic = _param(response, "TopicArn")
        if isinstance(topic, str) and topic:
            return [topic]
        name = _param(response, "Name")
        if action == "CreateTopic" and isinstance(name, str):
            return [f"arn:aws:sns:{region}:{account}:{name}"]
        return ["*"]
    if service == "kms":
        return _kms_resources(response, region, account)
    if service == "logs":
        group = _param(response, "logGroupName")
        if isinstance(group, str) and group:
            arn = f"arn:aws:logs:{region}:{account}:log-group:{group}"
            stream = _param(response, "logStreamName")
            return [f"{arn}:log-stream:{stream}" if isinstance(stream, str) and stream else f"{arn}:*"]
        return ["*"]
    if service == "lambda":
        return _lambda_resources(response, region, account)
    if service == "dynamodb":
        return list(dict.fromkeys(resource for _, resource, _ in dynamodb_checks(response, action, region, account)))
    if service == "sts":
        role_arn = _param(response, "RoleArn")
        if isinstance(role_arn, str) and role_arn:
            return [role_arn]
        return ["*"]
    return ["*"]


# -- DynamoDB --------------------------------------------------------------------

# TransactWriteItems and TransactGetItems are not IAM actions: AWS authorizes
# each item with its own action, on its own table, with
# dynamodb:EnclosingOperation naming the transaction.
DYNAMODB_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
# Actions whose table the request creates: it need not exist.
DYNAMODB_CREATES = {"CreateTable"}


def _table_arn(name: str, region: str, account: str) -> str:
    """A TableName (a name, or the table's ARN) as the table's ARN."""
    if name.startswith("arn:"):
        return name
    return f"arn:aws:dynamodb:{region}:{account}:table/{name}"


def _dynamodb_table(resource: str) -> Any:
    """moto's table of a table (or index) ARN; None when it does not exist."""
    if resource == "*":
        return None
    found = _resource_object(resource)
    return found[1] if found is not None and found[0] == "dynamodb" else None


def _key_value(value: Any) -> str | None:
    """A key attribute value (``{"S": "x"}``) as the string a condition compares."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    kind, raw = next(iter(value.items()))
    if kind in ("S", "N"):
        return str(raw)
    if kind == "B":
        import base64

        return base64.b64encode(raw).decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
    return None


def _leading_keys(table: Any, keys: list[Any]) -> list[str]:
    """dynamodb:LeadingKeys: the partition key values of the items named."""
    out: list[str] = []
    if table is None:
        return out
    for key in keys:
        value = _key_value(key.get(table.hash_key_attr)) if isinstance(key, dict) else None
        if value is not None and value not in out:
            out.append(value)
    return out


def _query_leading_keys(table: Any, response: Any) -> list[str]:
    """The partition key value a Query's key condition names (on the index queried)."""
    if table is None:
        return []
    schema = table.schema
    index = _param(response, "IndexName")
    if isinstance(index, str) and index:
        found = next((i for i in table.indexes + table.global_indexes if i.name == index), None)
        if found is None:
            return []
        schema = found.schema
    expression = _param(response, "KeyConditionExpression")
    if isinstance(expression, str) and expression:
        try:
            from moto.dynamodb.parsing.key_condition_expression import parse_expression

            hash_conditions, _, _ = parse_expression(
                key_condition_expression=expression,
                expression_attribute_values=_param(response, "ExpressionAttributeValues") or {},
                expression_attribute_names=_param(response, "ExpressionAttributeNames") or {},
                schema=schema,
            )
        except Exception:
            return []  # moto answers the bad expression
        values = [_key_value(value) for _, value in hash_conditions]
        return [v for v in values if v is not None]
    hash_name = next((k["AttributeName"] for k in schema if k.get("KeyType") == "HASH"), None)
    condition = (_param(response, "KeyConditions") or {}).get(hash_name)
    if isinstance(condition, dict) and condition.get("ComparisonOperator") == "EQ":
        values = [_key_value(v) for v in condition.get("AttributeValueList") or []]
        return [v for v in values if v is not None]
    return []


def dynamodb_checks(response: Any, action: str, region: str, account: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(IAM action, resource ARN, context keys) for each permission a DynamoDB
    request needs, as AWS authorizes it: the table of ``TableName`` (a name
    or an ARN, also another account's), ``<table>/index/<name>`` for a Query
    or Scan of an index, ``ResourceArn`` for the policy and tagging actions,
    each table of a BatchGetItem/BatchWriteItem, each item of a transaction
    with its own action; ``dynamodb:LeadingKeys`` from the keys and items."""
    if action in ("TransactWriteItems", "TransactGetItems"):
        planned: dict[tuple[str, str], list[str]] = {}
        for entry in _param(response, "TransactItems") or []:
            for op, body in (entry.items() if isinstance(entry, dict) else []):
                iam_action = DYNAMODB_TRANSACT_ACTIONS.get(op)
                name = body.get("TableName") if isinstance(body, dict) else None
                if iam_action is None or not isinstance(name, str) or not name:
                    continue
                arn = _table_arn(name, region, account)
                keys = planned.setdefault((f"dynamodb:{iam_action}", arn), [])
                item = body.get("Item") if op == "Put" else body.get("Key")
                keys.extend(k for k in _leading_keys(_dynamodb_table(arn), [item]) if k not in keys)
        return [
            (checked, arn, {"dynamodb:EnclosingOperation": action, **({"dynamodb:LeadingKeys": keys} if keys else {})})
            for (checked, arn), keys in planned.items()
        ]
    if action in ("BatchGetItem", "BatchWriteItem"):
        checks: list[tuple[str, str, dict[str, Any]]] = []
        request_items = _param(response, "RequestItems")
        for name, body in (request_items.items() if isinstance(request_items, dict) else []):
            arn = _table_arn(str(name), region, account)
            if action == "BatchGetItem":
                keys = (body or {}).get("Keys") or [] if isinstance(body, dict) else []
            else:
                keys = [
                    (w.get("PutRequest") or {}).get("Item") or (w.get("DeleteRequest") or {}).get("Key")
                    for w in (body if isinstance(body, list) else [])
                    if isinstance(w, dict)
                ]
            leading = _leading_keys(_dynamodb_table(arn), keys)
            checks.append((f"dynamodb:{action}", arn, {"dynamodb:LeadingKeys": leading} if leading else {}))
        return checks
    resource_arn = _param(response, "ResourceArn")
    if isinstance(resource_arn, str) and resource_arn:
        return [(f"dynamodb:{action}", resource_arn, {})]
    name = _param(response, "TableName")
    if not isinstance(name, str) or not name:
        return [(f"dynamodb:{action}", "*", {})]
    arn = _table_arn(name, region, account)
    table = _dynamodb_table(arn)
    if action in ("GetItem", "DeleteItem", "UpdateItem"):
        leading = _leading_keys(table, [_param(response, "Key")])
    elif action == "PutItem":
        leading = _leading_keys(table, [_param(response, "Item")])
    elif action == "Query":
        leading = _query_leading_keys(table, response)
    else:
        leading = []
    index = _param(response, "IndexName")
    resource = f"{arn}/index/{index}" if action in ("Query", "Scan") and isinstance(index, str) and index else arn
    planned_checks = [(f"dynamodb:{action}", resource, {"dynamodb:LeadingKeys": leading} if leading else {})]
    planned_checks += [(implied, arn, {}) for implied in implied_actions(response, "dynamodb", action)]
    return planned_checks


# -- the check -------------------------------------------------------------------


def _record(entry: dict[str, Any]) -> None:
    with _lock:
        (_user_decisions if entry.get("principal_type") == "User" else _decisions).append(entry)


def _denied(response: Any, service: str, message: str) -> Exception:
    from werkzeug.exceptions import HTTPException

    headers = getattr(response, "headers", {}) or {}
    content_type = str(headers.get("Content-Type") or headers.get("content-type") or "")
    is_json = bool(headers.get("X-Amz-Target") or headers.get("x-amz-target")) or "json" in content_type
    if service == "ses" and "/v2/" in (getattr(response, "path", "") or ""):
        is_json = True  # SES v2 is REST-JSON; SES v1 is query
    if service == "lambda":
        is_json = True  # Lambda is REST-JSON (x-amzn-ErrorType: AccessDeniedException)
    status = 403
    if service == "s3":
        from moto.s3.exceptions import S3ClientError

        return S3ClientError("AccessDenied", message)  # moto serializes it as S3 does
    if service == "dynamodb":
        # DynamoDB answers every client error with HTTP 400, AccessDenied too,
        # its __type in Coral's long form.
        is_json, status, ctype = True, 400, "application/x-amz-json-1.0"
        body = json.dumps(
            {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message, "Message": message}
        )
        try:
            response.response_headers["Content-Type"] = ctype  # moto's handler answers with these
        except Exception:
            pass
    elif is_json:
        body = json.dumps({"__type": "AccessDeniedException", "message": message, "Message": message})
        ctype = "application/x-amz-json-1.1"
    else:
        code = "AuthorizationError" if service == "sns" else "AccessDenied"
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{_xml(message)}</Message></Error>"
            "<RequestId>keyfleet-iam-enforce</RequestId></ErrorResponse>"
        )
        ctype = "text/xml"

    class AccessDenied(HTTPException):
        code = status

        def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
            extra = [("Content-Type", ctype)]
            if is_json:
                extra.append(("x-amzn-ErrorType", "AccessDeniedException"))
                if service == "sqs":
                    extra.append(("x-amzn-query-error", "AccessDenied;Sender"))
            return extra

    if is_json and service == "sqs":
        # SQS's JSON protocol is query-compatible: AWS adds this header, and
        # SDKs report its code (AccessDenied) instead of __type.
        try:
            response.response_headers["x-amzn-query-error"] = "AccessDenied;Sender"
        except Exception:
            pass
    error = AccessDenied(description=body)
    error.content_type = ctype  # type: ignore[attr-defined]
    return error


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _enforced_role(role_name: str) -> bool:
    with _lock:
        if not _state["enabled"]:
            return False
        patterns = list(_state["role_name_patterns"])
    return any(fnmatch.fnmatchcase(role_name, p) for p in patterns)


# -- the request context ------------------------------------------------------------


def _principal_context(region: str, account: str, principal_arn: str, kind: str, userid: str, holder: Any) -> dict[str, Any]:
    """The global condition keys of a request by an IAM principal (a role
    session or a user): who, from which account and organization, its tags,
    when, where."""
    now = time.time()
    ctx: dict[str, Any] = {
        "aws:PrincipalArn": principal_arn,
        "aws:PrincipalAccount": account,
        "aws:PrincipalType": kind,
        "aws:userid": userid,
        "aws:SecureTransport": "true",
        "aws:RequestedRegion": region,
        "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "aws:EpochTime": str(int(now)),
        "aws:PrincipalIsAWSService": "false",
        "aws:ViaAWSService": "false",
    }
    ctx.update(org_context(account, "Principal"))
    for key, value in _tags(holder).items():
        ctx[f"aws:PrincipalTag/{key}"] = value
    return ctx


def _boundary(account: str, holder: Any) -> list[dict[str, Any]]:
    """A role's or user's permissions boundary, in the engine's shape."""
    arn = getattr(holder, "permissions_boundary_arn", None)
    if not arn:
        return []
    doc = _managed_document(account, arn)
    return [{"name": arn, "policy": doc or {"Version": "2012-10-17", "Statement": []}}]


class Caller:
    """An enforced role session: whose identity policies, which context."""

    def __init__(self, account: str, role_name: str, session: str) -> None:
        self.account = account
        self.role_name = role_name
        self.session = session
        self.role = _role(account, role_name)
        self.role_arn = getattr(self.role, "arn", None) or f"arn:aws:iam::{account}:role/{role_name}"

    @property
    def session_arn(self) -> str:
        return f"arn:aws:sts::{self.account}:assumed-role/{self.role_name}/{self.session}"

    @property
    def principal_arn(self) -> str:
        """The principal AWS names in its answers and matches policies with."""
        return self.session_arn

    def who(self) -> dict[str, Any]:
        """The decision log's fields naming the caller."""
        return {"role": self.role_name, "session": self.session}

    def documents(self) -> list[dict[str, Any]]:
        return role_documents(self.account, self.role_name)

    def context(self, region: str) -> dict[str, Any]:
        userid = f"{getattr(self.role, 'id', 'AROA')}:{self.session}"
        return _principal_context(region, self.account, self.role_arn, "AssumedRole", userid, self.role)

    def boundary(self) -> list[dict[str, Any]]:
        return _boundary(self.account, self.role)


class UserCaller:
    """An IAM user calling with its own active access key (every user is
    enforced while enforcement is on, as AWS checks every principal): the
    principal is the user's ARN (with its path), its identity policies its
    own and its groups'."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.account = str(user.account_id)
        self.user_name = str(user.name)
        self.principal_arn = f"arn:aws:iam::{self.account}:user{user.path or '/'}{user.name}"

    def who(self) -> dict[str, Any]:
        return {"principal_type": "User", "user": self.user_name, "principal": self.principal_arn}

    def documents(self) -> list[dict[str, Any]]:
        return user_documents(self.user)

    def context(self, region: str) -> dict[str, Any]:
        ctx = _principal_context(region, self.account, self.principal_arn, "User", str(self.user.id), self.user)
        ctx["aws:username"] = self.user_name
        return ctx

    def boundary(self) -> list[dict[str, Any]]:
        # moto 5.2.5 keeps no user boundary (PutUserPermissionsBoundary is
        # not implemented): read one if it ever does.
        return _boundary(self.account, self.user)


def resource_account(resource: str, fallback: str) -> str:
    """The account that owns ``resource`` (S3 buckets: from moto's registry)."""
    if resource.startswith("arn:aws:s3:::"):
        from moto.s3.models import s3_backends

        bucket = resource[len("arn:aws:s3:::"):].split("/", 1)[0]
        owner = s3_backends.bucket_accounts.get(bucket)
        return owner[1] if owner else fallback
    parts = resource.split(":")
    if len(parts) > 4 and re.fullmatch(r"\d{12}", parts[4]):
        return parts[4]
    return fallback


def _resource_object(resource: str) -> tuple[str, Any] | None:
    """(kind, moto's object) for the resources that carry a policy or tags."""
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return None
    _, _, service, region, account, rest = parts
    try:
        if service == "sqs":
            from moto.sqs.models import sqs_backends

            return "sqs", sqs_backends[account][region].queues.get(rest)
        if service == "secretsmanager" and rest.startswith("secret:"):
            from moto.secretsmanager.models import secretsmanager_backends

            for secret in list(secretsmanager_backends[account][region].secrets.values()):
                if getattr(secret, "arn", None) == resource:
                    return "secretsmanager", secret
            return None
        if service == "s3":
            from moto.s3.models import s3_backends

            bucket = rest.split("/", 1)[0]
            owner = s3_backends.bucket_accounts.get(bucket)
            if owner is None:
                return None
            return "s3", s3_backends[owner[1]][owner[0]].buckets.get(bucket)
        if service == "kms" and rest.startswith("key/"):
            from moto.kms.models import kms_backends

            return "kms", kms_backends[account][region].keys.get(rest[len("key/"):])
        if service == "sns":
            from moto.sns.models import sns_backends

            return "sns", sns_backends[account][region].topics.get(resource)
        if service == "dynamodb" and rest.startswith("table/"):
            from moto.dynamodb.models import dynamodb_backends

            # A table, or one of its indexes (table/<name>/index/<index>).
            return "dynamodb", dynamodb_backends[account][region].tables.get(rest.split("/")[1])
        if service == "lambda" and rest.startswith("function:"):
            from moto.awslambda.models import lambda_backends

            return "lambda", lambda_backends[account][region].get_function(rest.split(":")[1])
        if service == "iam" and rest.startswith(("role/", "user/")):
            from moto.iam.models import iam_backends

            backend = iam_backends[account]["aws"]
            name = rest.rsplit("/", 1)[-1]
            if rest.startswith("role/"):
                return "iam-role", backend.get_role(name)
            return "iam-user", backend.get_user(name)
    except Exception:
        return None
    return None


def resource_policy(resource: str) -> dict[str, Any] | None:
    """The resource's own policy as moto holds it (None: it has none)."""
    found = _resource_object(resource)
    if found is None or found[1] is None:
        return None
    kind, obj = found
    if kind == "lambda":
        try:
            return obj.policy.get_policy()["Policy"]
        except Exception:
            return None
    if kind == "dynamodb":
        from moto.dynamodb.models import dynamodb_backends

        # An index has no policy of its own: its table's applies.
        stored = dynamodb_backends[obj.account_id][obj.region_name].resource_policies.get(obj.table_arn)
        return _load_document(stored.policy_doc) if stored is not None else None
    if kind == "iam-user":
        return None
    if kind == "iam-role":
        return _load_document(getattr(obj, "assume_role_policy_document", None))
    return _load_document(getattr(obj, "policy", None))


def resource_context(resource: str, account: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {"aws:ResourceAccount": account}
    ctx.update(org_context(account, "Resource"))
    found = _resource_object(resource)
    if found is not None and found[1] is not None:
        kind, obj = found
        tags = _tags(obj)
        for key, value in tags.items():
            ctx[f"aws:ResourceTag/{key}"] = value
            if kind in ("iam-user", "iam-role"):
                ctx[f"iam:ResourceTag/{key}"] = value
    return ctx


def request_context(response: Any, service: str, action: str) -> dict[str, Any]:
    """The service's condition keys that come from the request itself."""
    ctx: dict[str, Any] = {}
    if service == "s3" and action in ("ListBucket", "ListObjects", "ListObjectsV2", "ListBucketVersions"):
        prefix = _query(response, "prefix")
        if prefix is not None:
            ctx["s3:prefix"] = prefix
    elif service == "ses" and action in ("SendEmail", "SendRawEmail"):
        sender = _sender(response)
        if sender:
            ctx["ses:FromAddress"] = email_address(sender)
    elif service == "sts" and action == "AssumeRole":
        external = _param(response, "ExternalId")
        if isinstance(external, str) and external:
            ctx["sts:ExternalId"] = external
        name = _param(response, "RoleSessionName")
        if isinstance(name, str) and name:
            ctx["sts:RoleSessionName"] = name
    elif service == "kms":
        encryption = _param(response, "EncryptionContext")
        if isinstance(encryption, dict):
            for key, value in encryption.items():
                ctx[f"kms:EncryptionContext:{key}"] = str(value)
    return ctx


def _query(response: Any, name: str) -> str | None:
    try:
        values = response.querystring.get(name)
    except Exception:
        values = None
    if values:
        return str(values[0])
    return None


# -- implicit KMS calls ---------------------------------------------------------------


def _key_arn(key: str, account: str, region: str) -> str | None:
    """A KMS key id, alias or ARN as the key's ARN; None for AWS managed keys."""
    if not key:
        return None
    if key.startswith("arn:") and ":alias/" not in key:
        return key
    if key.startswith("arn:"):
        parts = key.split(":")
        account, region, key = parts[4], parts[3], parts[5]
    if key.startswith("alias/aws/"):
        return None  # AWS managed keys: their policies admit every principal of the account
    if key.startswith("alias/"):
        try:
            from moto.kms.models import kms_backends

            key_id = kms_backends[account][region].get_key_id_from_alias(key)
        except Exception:
            key_id = None
        return f"arn:aws:kms:{region}:{account}:key/{key_id or key}"
    return f"arn:aws:kms:{region}:{account}:key/{key}"


def implicit_kms(response: Any, service: str, action: str, resource: str, region: str) -> list[tuple[str, str, dict[str, str]]]:
    """The KMS calls a service makes for the caller on an encrypted resource:
    [(action, key ARN, encryption context)], as AWS documents each service."""
    account = resource_account(resource, "")
    found = _resource_object(resource)
    obj = found[1] if found else None
    calls: list[tuple[str, str, dict[str, str]]] = []
    if service == "s3" and found is not None and found[0] == "s3" and obj is not None:
        bucket_arn = resource.split("/", 1)[0]
        key_name = resource.split("/", 1)[1] if "/" in resource else None
        context = {"aws:s3:arn": resource}
        if action in ("GetObject", "HeadObject") and key_name:
            stored = obj.keys.get(key_name) if hasattr(obj, "keys") else None
            if stored is not None and getattr(stored, "encryption", None) == "aws:kms":
                arn = _key_arn(getattr(stored, "kms_key_id", None) or "", account, region)
                if getattr(stored, "bucket_key_enabled", None) in (True, "true", "True"):
                    context = {"aws:s3:arn": bucket_arn}
                if arn:
                    calls.append(("kms:Decrypt", arn, context))
        elif action in ("PutObject", "CreateMultipartUpload", "CopyObject") and key_name:
            key = _header(response, "x-amz-server-side-encryption-aws-kms-key-id")
            algorithm = _header(response, "x-amz-server-side-encryption")
            if not key and not algorithm:
                rule = _bucket_default_encryption(obj)
                if rule and rule.get("SSEAlgorithm") == "aws:kms":
                    key = rule.get("KMSMasterKeyID") or "alias/aws/s3"
            elif algorithm == "aws:kms" and not key:
                key = "alias/aws/s3"
            arn = _key_arn(key or "", account, region) if key else None
            if arn:
                calls.append(("kms:GenerateDataKey", arn, context))
    elif service == "secretsmanager" and found is not None and obj is not None:
        arn = _key_arn(getattr(obj, "kms_key_id", None) or "", account, region)
        context = {"SecretARN": resource}
        if arn and action in ("GetSecretValue", "BatchGetSecretValue"):
            calls.append(("kms:Decrypt", arn, context))
        elif arn and action in ("PutSecretValue", "UpdateSecret", "RotateSecret"):
            calls.append(("kms:GenerateDataKey", arn, context))
    elif service == "sns" and found is not None and obj is not None and action in ("Publish", "PublishBatch"):
        arn = _key_arn(getattr(obj, "kms_master_key_id", "") or "", account, region)
        if arn:
            calls.append(("kms:GenerateDataKey", arn, {"aws:sns:topicArn": resource}))
            calls.append(("kms:Decrypt", arn, {"aws:sns:topicArn": resource}))
    elif service == "sqs" and found is not None and obj is not None:
        arn = _key_arn(getattr(obj, "kms_master_key_id", None) or "", account, region)
        if arn and action in ("SendMessage", "SendMessageBatch"):
            calls.append(("kms:GenerateDataKey", arn, {"aws:sqs:arn": resource}))
        elif arn and action == "ReceiveMessage":
            calls.append(("kms:Decrypt", arn, {"aws:sqs:arn": resource}))
    return calls


def _header(response: Any, name: str) -> str | None:
    headers = getattr(response, "headers", {}) or {}
    value = headers.get(name) or headers.get(name.title())
    return str(value) if value else None


def _bucket_default_encryption(bucket: Any) -> dict[str, Any] | None:
    config = getattr(bucket, "encryption", None)
    if not isinstance(config, dict):
        return None
    rules = config.get("Rule") or config.get("Rules") or []
    if isinstance(rules, dict):
        rules = [rules]
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault") if isinstance(rule, dict) else None
        if isinstance(default, dict):
            return default
    return None


# -- the decision ------------------------------------------------------------------------

_POLICY_WORDS = {
    "identity": "an identity-based policy",
    "resource": "a resource-based policy",
    "trust": "a resource-based policy",
    "kms": "a resource-based policy",
    "scp": "a service control policy",
    "rcp": "a resource control policy",
    "boundary": "a permissions boundary",
}


def _why(answer: dict[str, Any], resource_kind: str) -> tuple[str, str]:
    """(reason, decided_by) of an engine answer: the first policy type, in
    AWS's order of evaluation, that denied."""
    if answer["result"] == "Allowed":
        return "allow", ""
    by = answer.get("by") or {}
    order = [("scp", "scp"), ("rcp", "rcp"), ("resource", resource_kind), ("boundary", "boundary"), ("identity", "identity")]
    if answer["result"] == "ExplicitlyDenied":
        return "explicit-deny", next((name for field, name in order if by.get(field) == "ExplicitlyDenied"), "identity")
    for field, name in (("scp", "scp"), ("rcp", "rcp"), ("boundary", "boundary")):
        if by.get(field) == "ImplicitlyDenied":
            return "implicit-deny", name
    identity_allows = by.get("identity") == "Allowed"
    resource_allows = by.get("resource") in ("Allowed", "AllowedForAccount")
    if identity_allows and not resource_allows:
        return "implicit-deny", resource_kind  # across accounts, or a key/trust policy that must allow
    return "implicit-deny", "identity"


def _allowed_by(answer: dict[str, Any], resource_kind: str) -> list[str]:
    """The Allow statements that matched an allowed request, conditions
    included, as ``"identity:<Sid>"`` and ``"<resource kind>:<Sid>"`` (a
    statement without a Sid is ``#<index>``): what used-versus-granted
    compares with the statements a policy holds."""
    statements = answer.get("allowedBy") or {}
    return [f"identity:{sid}" for sid in statements.get("identity") or []] + [
        f"{resource_kind}:{sid}" for sid in statements.get("resource") or []
    ]


def decide(
    caller: Caller | UserCaller,
    action: str,
    resource: str,
    region: str,
    extra: dict[str, Any] | None = None,
    kind: str = "resource",
    policy: Any = "lookup",
    probe: bool = False,
) -> dict[str, Any]:
    """Asks the engine about one action on one resource and records the decision;
    the entry plus ``message`` (the AccessDenied text, empty when allowed)."""
    account = resource_account(resource, caller.account) if resource != "*" else caller.account
    context = caller.context(region)
    if resource != "*":
        context.update(resource_context(resource, account))
    context.update(extra or {})
    document = resource_policy(resource) if policy == "lookup" and resource != "*" else (None if policy == "lookup" else policy)
    simulation: dict[str, Any] = {
        "request": {
            "principal": caller.principal_arn,
            "action": action,
            "resource": {"resource": resource, "accountId": account},
            "contextVariables": context,
        },
        "identityPolicies": [
            {"name": f"policy-{i}", "policy": d} for i, d in enumerate(caller.documents())
        ],
        "serviceControlPolicies": org_policies(caller.account, "SERVICE_CONTROL_POLICY"),
        "resourceControlPolicies": org_policies(account, "RESOURCE_CONTROL_POLICY"),
        "permissionBoundaryPolicies": caller.boundary(),
    }
    if document is not None:
        simulation["resourcePolicy"] = document
    try:
        answer = iam_engine.simulate(simulation)
        reason, decided_by = _why(answer, kind)
        detail = ""
        allowed_by = _allowed_by(answer, kind) if reason == "allow" else []
    except iam_engine.EngineError as exc:
        reason, decided_by, detail = "implicit-deny", "engine", str(exc)
        allowed_by = []
    entry = {
        "decision": "ALLOWED" if reason == "allow" else "DENIED",
        "account": caller.account,
        **caller.who(),
        "action": action,
        "resource": resource,
        "reason": reason,
        "decided_by": decided_by or None,
        "context": context,
        "allowed_by": allowed_by,
        # A question AWS asks itself about the caller (may it list the
        # bucket, to answer 403 or 404?), not a call the caller made.
        "probe": probe,
    }
    _record(entry)
    message = ""
    if reason != "allow":
        if decided_by == "engine":
            why = f"because the policy engine could not decide ({detail})"
        elif reason == "explicit-deny":
            why = f"with an explicit deny in {_POLICY_WORDS[decided_by]}"
        else:
            why = f"because no {_POLICY_WORDS[decided_by].split(' ', 1)[1]} allows the {action} action"
        message = f"User: {caller.principal_arn} is not authorized to perform: {action} on resource: {resource} {why}"
    return dict(entry, message=message)


def check_role_action(role_arn: str, session: str, action: str, resource: str) -> dict[str, Any] | None:
    """Check what a session of ``role_arn`` does without a request, and record it.

    For the calls AWS services make with a role they hold (Lambda's SQS poller,
    its dead-letter delivery, its CloudWatch Logs writes). Same engine and
    context as for a request: ``None`` when it is not checked (enforcement
    off, or the role's name matches no pattern); otherwise the recorded
    decision plus ``"message"``, the AccessDenied message when denied (empty
    when allowed).
    """
    role = _role_of(role_arn)
    if role is None:
        return None
    account, role_name = role
    if not _enforced_role(role_name):
        return None
    parts = resource.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else "us-east-1"
    caller = Caller(account, role_name, session)
    decided = decide(caller, action, resource, region)
    if decided["decision"] != "ALLOWED":
        return decided
    service, _, name = action.partition(":")
    for kms_action, key_arn, encryption in implicit_kms(None, service, name, resource, region):
        kms = _kms_decision(caller, kms_action, key_arn, encryption, service, region)
        if kms["decision"] != "ALLOWED":
            return kms
    return decided


def _kms_decision(caller: Caller | UserCaller, action: str, key_arn: str, encryption: dict[str, str], service: str, region: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"kms:ViaService": f"{service}.{region}.amazonaws.com", "aws:ViaAWSService": "false"}
    for key, value in encryption.items():
        extra[f"kms:EncryptionContext:{key}"] = value
    extra["kms:EncryptionContextKeys"] = sorted(encryption)
    key = _resource_object(key_arn)
    if key is None or key[1] is None:
        entry = {
            "decision": "DENIED",
            "account": caller.account,
            **caller.who(),
            "action": action,
            "resource": key_arn,
            "reason": "implicit-deny",
            "decided_by": "kms",
        }
        _record(entry)
        return dict(entry, message=f"User: {caller.principal_arn} is not authorized to perform: {action} on resource: {key_arn} because the key does not exist")
    return decide(caller, action, key_arn, region, extra, kind="kms")


def _role_of(role_arn: str) -> tuple[str, str] | None:
    """(account, role name) of a role ARN."""
    match = _ROLE_ARN.match(role_arn or "")
    return (match.group(1), match.group(2)) if match else None


def policy_fingerprint(role_arn: str) -> str:
    """Changes whenever a check of ``role_arn`` could decide differently
    because of its own policies or the settings (a mapping refused by IAM is
    checked again then)."""
    role = _role_of(role_arn)
    documents = role_documents(*role) if role else []
    return json.dumps([settings(), documents], sort_keys=True, default=str)


def _missing_object(resource: str) -> bool:
    """An S3 object ARN whose key does not exist in an existing bucket."""
    found = _resource_object(resource)
    if found is None or found[0] != "s3" or found[1] is None or "/" not in resource:
        return False
    key = resource.split("/", 1)[1]
    try:
        return found[1].keys.get(key) is None
    except Exception:
        return False


def _caller_for(access_key: str) -> Caller | UserCaller | None:
    """Who signed the request, when enforced: a session of a role matching
    ``role_name_patterns``, or an IAM user's active key (every user); None
    for everyone else (the test kit's admin keys, other roles' sessions)."""
    found = _session_for(access_key)
    if found is not None:
        account, assumed = found
        role_name = assumed.role_arn.split("/")[-1]
        return Caller(account, role_name, assumed.session_name) if _enforced_role(role_name) else None
    user = ext_user_keys.active_user(access_key)
    return UserCaller(user) if user is not None else None


def check(response: Any, moto_resource: str) -> None:
    with _lock:
        if not _state["enabled"]:
            return
    headers = getattr(response, "headers", {}) or {}
    match = _CREDENTIAL.search(str(headers.get("Authorization") or ""))
    if not match:
        return
    access_key, region, service = match.group(1), match.group(2), match.group(3)
    caller = _caller_for(access_key)
    if caller is None:
        return
    account = caller.account
    action_name = response._get_action()
    if isinstance(action_name, list):
        action_name = action_name[0]
    action_name = IAM_ACTION_NAMES.get((service, str(action_name)), action_name)
    action = f"{service}:{action_name}"
    if action.lower() == "sts:getcalleridentity":
        return
    resources = resources_for(response, service, str(action_name), region, account, moto_resource)
    if isinstance(caller, UserCaller) and service == "iam" and str(action_name) in IAM_SELF_ACTIONS and not _param(response, "UserName"):
        # Without UserName these act on the user whose key signed the request.
        resources = [caller.principal_arn]
    if service == "sqs" and resources != ["*"] and all(_resource_object(r) in (None, ("sqs", None)) for r in resources):
        # AWS answers QueueDoesNotExist for a queue that does not exist,
        # whoever asks: moto says so too.
        return
    extra = request_context(response, service, str(action_name))
    if service == "dynamodb":
        planned = dynamodb_checks(response, str(action_name), region, account)
        if str(action_name) not in DYNAMODB_CREATES:
            # A table that does not exist: AWS answers ResourceNotFoundException
            # whoever asks, and so does moto. Another account's table counts
            # as missing for the operations AWS serves in the caller's own
            # account only (resource policies, PITR, TTL, ...).
            cross_account = str(action_name) in CROSS_ACCOUNT_ACTIONS
            planned = [
                p
                for p in planned
                if p[1] == "*"
                or (_dynamodb_table(p[1]) is not None and (cross_account or resource_account(p[1], account) == account))
            ]
            if not planned:
                return
        for checked, resource, keys in planned:
            decided = decide(caller, checked, resource, region, {**extra, **keys})
            if decided["decision"] != "ALLOWED":
                raise _denied(response, service, decided["message"])
        return
    actions = [action] + implied_actions(response, service, str(action_name))
    for checked in actions:
        for resource in resources:
            if checked == "sts:AssumeRole":
                decided = _assume_role(caller, resource, region, extra)
            else:
                decided = decide(caller, checked, resource, region, extra)
            if decided["decision"] != "ALLOWED":
                raise _denied(response, service, decided["message"])
            if checked == action:
                for kms_action, key_arn, encryption in implicit_kms(response, service, str(action_name), resource, region):
                    kms = _kms_decision(caller, kms_action, key_arn, encryption, service, region)
                    if kms["decision"] != "ALLOWED":
                        raise _denied(response, service, kms["message"])
    if service == "s3" and str(action_name) in ("GetObject", "HeadObject") and resources and _missing_object(resources[0]):
        bucket = resources[0].split("/", 1)[0]
        listing = decide(caller, "s3:ListBucket", bucket, region, probe=True)
        if listing["decision"] != "ALLOWED":
            # AWS answers 403, not 404, so a caller who may not list the
            # bucket learns nothing about which keys exist.
            raise _denied(response, service, "Access Denied")


def _assume_role(caller: Caller | UserCaller, role_arn: str, region: str, extra: dict[str, Any]) -> dict[str, Any]:
    """sts:AssumeRole: the caller's identity policies and the target role's
    trust policy; a role that does not exist is refused as AWS refuses it."""
    target = _role_of(role_arn)
    role = _role(*target) if target else None
    if role is None:
        entry = {
            "decision": "DENIED",
            "account": caller.account,
            **caller.who(),
            "action": "sts:AssumeRole",
            "resource": role_arn,
            "reason": "implicit-deny",
            "decided_by": "trust",
        }
        _record(entry)
        return dict(entry, message=f"User: {caller.principal_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}")
    trust = _load_document(getattr(role, "assume_role_policy_document", None)) or {"Version": "2012-10-17", "Statement": []}
    return decide(caller, "sts:AssumeRole", role.arn, region, extra, kind="trust", policy=trust)


# API operations whose IAM action has another name (AWS's Service
# Authorization Reference): (service, operation as moto names it) -> action.
IAM_ACTION_NAMES = {
    ("lambda", "Invoke"): "InvokeFunction",
}


# Requests that need a second permission on the same resource, as AWS
# documents it: (service, action, request parameter) -> the other action.
# Creating a secret or a user with tags also needs the tagging permission.
IMPLIED = {
    ("secretsmanager", "CreateSecret", "Tags"): "secretsmanager:TagResource",
    ("iam", "CreateUser", "Tags"): "iam:TagUser",
    ("iam", "CreateRole", "Tags"): "iam:TagRole",
    # A table created with a resource policy also needs PutResourcePolicy.
    ("dynamodb", "CreateTable", "ResourcePolicy"): "dynamodb:PutResourcePolicy",
}


def implied_actions(response: Any, service: str, action: str) -> list[str]:
    out = []
    for (svc, act, param), extra in IMPLIED.items():
        if svc == service and act == action and _param(response, param):
            out.append(extra)
    return out


def install() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def _authenticate_and_authorize_action(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        original(self, iam_request_cls, resource)
        check(self, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action  # type: ignore[method-assign]

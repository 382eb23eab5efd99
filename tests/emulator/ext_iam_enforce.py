"""IAM enforced for the deployed roles (identity policies only; off by default).

AWS: every request signed by an assumed-role session is allowed only when one
of the role's identity policies (inline or attached managed) allows the
action on the resource and none denies it. A denied request fails with
``AccessDenied`` (query/XML services such as IAM, STS; S3's XML; SNS says
``AuthorizationError``) or
``AccessDeniedException`` (JSON services: Secrets Manager, SQS, KMS,
Organizations, SES v2), message::

    User: arn:aws:sts::<acct>:assumed-role/<role>/<session> is not authorized to perform: <action> on resource: <arn> because no identity-based policy allows the <action> action

(or ``... with an explicit deny in an identity-based policy``).

moto 5.2.5: its own authorization (``INITIAL_NO_AUTH_ACTION_COUNT``) is
global to the process, would check the test kit's admin credentials too, and
works out resource ARNs for a few services only, so a role that lacks a
permission still works against the emulator.

Patch: ``ActionAuthenticatorMixin._authenticate_and_authorize_action`` (the
hook every moto response class calls before an action; S3 passes the
bucket/object ARN) runs moto's code as before and then, while enforcement is
enabled, checks requests whose SigV4 access key is an STS AssumeRole session
(moto's ``sts_backends[account][partition].assumed_roles``) of a role whose
name matches one of ``role_name_patterns`` (shell-style, default
``keyfleet-agent*``, ``keyfleet-coordinator*``, ``keyfleet-org-reader*`` and
``keyfleet-api*``: the deployed roles). Everything else — the
``testing`` admin keys, IAM user keys, sessions of other roles (e.g.
``OrganizationAccountAccessRole``, ``keyfleet-test``) — is never checked.

The action is ``<signing service>:<Action>``, or the IAM action's own name
where it differs from the operation's (``IAM_ACTION_NAMES``: Lambda ``Invoke``
is authorized as ``lambda:InvokeFunction``); the resource ARN is worked out
per service (``resources_for``): IAM users/roles/policies (account-level reads
-> ``*``), Secrets Manager secrets (the real ARN with its 6-character suffix
when the secret exists, otherwise ``...:secret:<name>-??????``), SQS queues
(account from the QueueUrl), S3 buckets/objects (moto's ARN), SES identities
and configuration sets, SNS topics, KMS keys, CloudWatch Logs groups/streams,
STS roles (AssumeRole), Lambda functions named in the path (the function's
ARN, no qualifier), Organizations roots/OUs/accounts named by
``ParentId``/``ChildId``/``AccountId``/... (``ORGANIZATIONS_TARGETS``);
everything else ``*``. ``sts:GetCallerIdentity`` is
always allowed (as in AWS). Evaluation: Allow/Deny, ``Action``/``NotAction``
(case-insensitive), ``Resource``/``NotResource`` (case-sensitive), ``*`` and
``?`` wildcards; explicit Deny wins. A request that AWS authorizes with a
second action is checked for both (``IMPLIED``: CreateSecret with Tags also
needs ``secretsmanager:TagResource``; CreateUser/CreateRole with Tags,
``iam:TagUser``/``iam:TagRole``). NOT evaluated: conditions (an Allow with a
Condition counts as if it held; a Deny with a Condition is ignored), resource
policies (bucket, queue, secret, key policies), permission boundaries, session
policies, SCPs, policy variables.

What the harness does itself under a function's execution role (the SQS
event source poller, an async invocation's dead-letter queue, CloudWatch Logs
for a function's output; see ext_lambda_esm.py, ext_lambda_async.py and
ext_lambda_exec.py) is checked with
``check_role_action`` (same evaluation, same decisions log, session name =
the function's name), exactly as a request signed by that session would be.

Control: ``POST /_keyfleet/iam/enforce`` ``{"enabled": true,
"role_name_patterns": [...]}`` (both optional), ``GET`` reads the settings;
``GET /_keyfleet/iam/decisions`` lists every check in order
(``{"decision": "ALLOWED"|"DENIED", "account", "role", "session", "action",
"resource", "reason"}``), ``DELETE`` clears it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from typing import Any
from urllib.parse import unquote, urlparse

from control import ControlError

DEFAULT_PATTERNS = ["keyfleet-agent*", "keyfleet-coordinator*", "keyfleet-org-reader*", "keyfleet-api*"]

_lock = threading.Lock()
_state: dict[str, Any] = {"enabled": False, "role_name_patterns": list(DEFAULT_PATTERNS)}
_decisions: list[dict[str, Any]] = []

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


def decisions_snapshot() -> dict[str, Any]:
    with _lock:
        return {"decisions": [dict(d) for d in _decisions]}


def decisions_clear() -> dict[str, Any]:
    with _lock:
        n = len(_decisions)
        _decisions.clear()
    return {"ok": True, "cleared": n}


# -- policy evaluation -------------------------------------------------------


def _wildcard(pattern: str, value: str, case_sensitive: bool) -> bool:
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    flags = re.DOTALL | (0 if case_sensitive else re.IGNORECASE)
    return re.fullmatch(regex, value, flags) is not None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _element_matches(statement: dict[str, Any], key: str, value: str, case_sensitive: bool) -> bool:
    """Action/Resource match, or NotAction/NotResource does not match."""
    if key in statement:
        return any(_wildcard(p, value, case_sensitive) for p in _as_list(statement[key]))
    not_key = "Not" + key
    if not_key in statement:
        return not any(_wildcard(p, value, case_sensitive) for p in _as_list(statement[not_key]))
    return False


def evaluate(documents: list[dict[str, Any]], action: str, resource: str) -> str:
    """'allow', 'explicit-deny' or 'implicit-deny' for one action on one resource."""
    allowed = False
    for doc in documents:
        statements = doc.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        for st in statements:
            if not isinstance(st, dict):
                continue
            if not _element_matches(st, "Action", action, case_sensitive=False):
                continue
            if not _element_matches(st, "Resource", resource, case_sensitive=True):
                continue
            effect = st.get("Effect")
            if effect == "Deny":
                if st.get("Condition"):
                    continue  # conditions are not evaluated: a conditional Deny is ignored
                return "explicit-deny"
            if effect == "Allow":
                allowed = True
    return "allow" if allowed else "implicit-deny"


def _load_document(doc: Any) -> dict[str, Any] | None:
    if isinstance(doc, dict):
        return doc
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


def role_documents(account: str, role_name: str) -> list[dict[str, Any]]:
    """The role's inline and attached managed policy documents."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["aws"]
    try:
        role = backend.get_role(role_name)
    except Exception:
        return []  # a session of a role that does not exist has no permissions
    raw: list[Any] = list(getattr(role, "policies", {}).values())
    for policy in getattr(role, "managed_policies", {}).values():
        versions = getattr(policy, "versions", [])
        default = next((v for v in versions if getattr(v, "is_default", False)), None)
        raw.append(default.document if default is not None else getattr(policy, "document", None))
    return [d for d in (_load_document(r) for r in raw) if d is not None]


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


def _ses_resources(response: Any, region: str, account: str) -> list[str]:
    from moto.ses.models import ses_backends

    resources = []
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
    if service == "sts":
        role_arn = _param(response, "RoleArn")
        if isinstance(role_arn, str) and role_arn:
            return [role_arn]
        return ["*"]
    return ["*"]


# -- the check -------------------------------------------------------------------


def _record(entry: dict[str, Any]) -> None:
    with _lock:
        _decisions.append(entry)


def _denied(response: Any, service: str, message: str) -> Exception:
    from werkzeug.exceptions import HTTPException

    headers = getattr(response, "headers", {}) or {}
    content_type = str(headers.get("Content-Type") or headers.get("content-type") or "")
    is_json = bool(headers.get("X-Amz-Target") or headers.get("x-amz-target")) or "json" in content_type
    if service == "ses" and "/v2/" in (getattr(response, "path", "") or ""):
        is_json = True  # SES v2 is REST-JSON; SES v1 is query
    if service == "lambda":
        is_json = True  # Lambda is REST-JSON (x-amzn-ErrorType: AccessDeniedException)
    if service == "s3":
        from moto.s3.exceptions import S3ClientError

        return S3ClientError("AccessDenied", message)  # moto serializes it as S3 does
    if is_json:
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
        code = 403

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


def _decide(
    account: str,
    role_name: str,
    session: str,
    action: str,
    resource: str,
    documents: list[dict[str, Any]],
) -> dict[str, Any]:
    """Evaluate one action on one resource, record it; the entry plus "message"."""
    result = evaluate(documents, action, resource)
    entry = {
        "decision": "ALLOWED" if result == "allow" else "DENIED",
        "account": account,
        "role": role_name,
        "session": session,
        "action": action,
        "resource": resource,
        "reason": result,
    }
    _record(entry)
    message = ""
    if result != "allow":
        principal = f"arn:aws:sts::{account}:assumed-role/{role_name}/{session}"
        why = (
            "with an explicit deny in an identity-based policy"
            if result == "explicit-deny"
            else f"because no identity-based policy allows the {action} action"
        )
        message = f"User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"
    return dict(entry, message=message)


def check_role_action(role_arn: str, session: str, action: str, resource: str) -> dict[str, Any] | None:
    """Check what a session of ``role_arn`` does without a request, and record it.

    For the calls AWS services make with a role they hold (Lambda's SQS poller,
    its dead-letter delivery, its CloudWatch Logs writes). Same rules as for a
    request: ``None`` when it is not checked (enforcement off, or the role's
    name matches no pattern); otherwise the recorded decision
    (``{"decision", "account", "role", "session", "action", "resource",
    "reason"}``) plus ``"message"``, the AccessDenied message when denied
    (empty when allowed).
    """
    role = _role_of(role_arn)
    if role is None:
        return None
    account, role_name = role
    if not _enforced_role(role_name):
        return None
    return _decide(account, role_name, session, action, resource, role_documents(account, role_name))


def _role_of(role_arn: str) -> tuple[str, str] | None:
    """(account, role name) of a role ARN."""
    match = _ROLE_ARN.match(role_arn or "")
    return (match.group(1), match.group(2)) if match else None


def policy_fingerprint(role_arn: str) -> str:
    """Changes whenever a check of ``role_arn`` could decide differently."""
    role = _role_of(role_arn)
    documents = role_documents(*role) if role else []
    return json.dumps([settings(), documents], sort_keys=True, default=str)


def check(response: Any, moto_resource: str) -> None:
    with _lock:
        if not _state["enabled"]:
            return
    headers = getattr(response, "headers", {}) or {}
    match = _CREDENTIAL.search(str(headers.get("Authorization") or ""))
    if not match:
        return
    access_key, region, service = match.group(1), match.group(2), match.group(3)
    found = _session_for(access_key)
    if found is None:
        return
    account, assumed = found
    role_name = assumed.role_arn.split("/")[-1]
    if not _enforced_role(role_name):
        return
    action_name = response._get_action()
    if isinstance(action_name, list):
        action_name = action_name[0]
    action_name = IAM_ACTION_NAMES.get((service, str(action_name)), action_name)
    action = f"{service}:{action_name}"
    if action.lower() == "sts:getcalleridentity":
        return
    documents = role_documents(account, role_name)
    resources = resources_for(response, service, str(action_name), region, account, moto_resource)
    actions = [action] + implied_actions(response, service, str(action_name))
    for checked in actions:
        for resource in resources:
            decided = _decide(account, role_name, assumed.session_name, checked, resource, documents)
            if decided["decision"] != "ALLOWED":
                raise _denied(response, service, decided["message"])


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

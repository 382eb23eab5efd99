"""DynamoDB: a table's account from its ARN; resource policies at CreateTable,
with the table, and from CloudFormation's ``AWS::DynamoDB::Table``.

AWS: the actions that name a table accept its ARN in ``TableName`` (and
``ResourceArn`` names one for PutResourcePolicy, GetResourcePolicy,
DeleteResourcePolicy, TagResource, UntagResource, ListTagsOfResource); with
an ARN the request acts on the table of the account in it, whoever the
caller is: cross-account access, which the table's resource-based policy
admits or not (enforced by ext_iam_enforce.py).

moto 5.2.5: the backend is the caller's account only
(``DynamoHandler.dynamodb_backend`` uses ``current_account``), so another
account's table ARN answers ResourceNotFoundException. And a
TransactWriteItems whose items name tables by ARN is not rolled back when
one item fails: moto keeps its backup of each table by name only.

AWS serves only some operations across accounts: the item operations
(GetItem, PutItem, UpdateItem, DeleteItem, Query, Scan, BatchGetItem,
BatchWriteItem, TransactGetItems, TransactWriteItems), DescribeTable,
UpdateTable, DeleteTable and the tagging ones; the resource-policy, PITR,
TTL, backup, PartiQL, ... operations work on the caller's own tables.

Patch: for the operations AWS serves across accounts
(``CROSS_ACCOUNT_ACTIONS``), ``DynamoHandler.dynamodb_backend`` picks the
account of the first table ARN the request names (``TableName``,
``ResourceArn``, the keys of ``RequestItems``, each ``TransactItems``
entry's ``TableName``), else the caller's; the region stays the one the
request is signed for, as ext_sqs.py does for queue URLs. The others stay
in the caller's account, where another account's ARN names no table:
moto's own lookup answers ResourceNotFoundException, and the resource-policy
calls (which moto looked up by the table name at the end of the ARN alone)
check the ARN's account and region first. ``DynamoDBBackend.transact_write_items`` turns the ARNs
of its own tables into their names before moto runs the transaction.

AWS: ``CreateTable`` takes a ``ResourcePolicy`` (the table is created with
it), and deleting a table deletes its policy.

moto 5.2.5: CreateTable ignores ``ResourcePolicy``; DeleteTable leaves the
policy behind, and a new table of the same name gets it.

Patch: ``DynamoHandler.create_table`` puts the policy once moto created the
table; ``DynamoDBBackend.delete_table`` drops the table's policy.

AWS: an ``AWS::DynamoDB::Table`` in a template (a stack, or each stack of a
stack set) is created with its ``ResourcePolicy.PolicyDocument`` (a JSON
object, intrinsic functions resolved), ``PointInTimeRecoverySpecification``,
``TimeToLiveSpecification`` and ``SSESpecification`` (``SSEEnabled`` true:
KMS, with ``KMSMasterKeyId`` or else the AWS managed key
``alias/aws/dynamodb``); a stack update changes them in place (the table
and its items stay).

moto 5.2.5: creates the table with its keys, indexes, ``BillingMode``,
``StreamSpecification``, ``Tags`` and ``DeletionProtectionEnabled``, but
ignores ``ResourcePolicy``, ``PointInTimeRecoverySpecification`` and
``TimeToLiveSpecification``, and keeps ``SSESpecification`` in
CloudFormation's shape (``SSEEnabled``), which its DescribeTable does not
read (no ``SSEDescription``). It has no update for the type (ext_cfn.py
then keeps the table unchanged). ``Fn::GetAtt [T, Arn]``, ``Ref`` and
``DeletionPolicy: Retain`` on stack deletion work.

Patch: ``Table.create_from_cloudformation_json`` translates
``SSESpecification`` to the API's shape (a key id or alias resolved to the
key's ARN, as DescribeTable shows it) and then applies PITR, TTL and the
resource policy (as compact JSON) through moto's own backend calls.
``Table.update_from_cloudformation_json`` (new) updates in place:
``BillingMode``, ``DeletionProtectionEnabled``, ``SSESpecification``, PITR
and TTL as the template says (dropped from the template: disabled, the
default), and the resource policy as AWS's CloudFormation does it: put
when the template's document changed since the stack last applied it (so a
policy changed outside the stack stays while the template's does not
change), deleted when the template no longer has one. A new ``TableName``
replaces the table (the old one is deleted unless ``UpdateReplacePolicy``
is ``Retain``). Key schema, index and stream changes are not applied.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TABLE_ARN = re.compile(r"^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:(\d{12}):table/[^/]+")

# The operations AWS serves across accounts (a table ARN of another account
# in TableName or ResourceArn), as "DynamoDB API operations supported by
# resource-based policies" lists them. The others (resource policies, PITR,
# TTL, backups, PartiQL, ...) work on the caller's own tables only.
CROSS_ACCOUNT_ACTIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
        "DescribeTable",
        "UpdateTable",
        "DeleteTable",
        "TagResource",
        "UntagResource",
        "ListTagsOfResource",
    }
)


def _arn_account(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = _TABLE_ARN.match(value)
    return match.group(1) if match else None


def request_table_names(params: Any) -> list[str]:
    """Every table name or ARN a DynamoDB request names, in request order."""
    if not isinstance(params, dict):
        return []
    names: list[str] = []
    for key in ("TableName", "ResourceArn"):
        if isinstance(params.get(key), str):
            names.append(params[key])
    items = params.get("RequestItems")
    if isinstance(items, dict):
        names.extend(str(name) for name in items)
    for entry in params.get("TransactItems") or []:
        if isinstance(entry, dict):
            for body in entry.values():
                if isinstance(body, dict) and isinstance(body.get("TableName"), str):
                    names.append(body["TableName"])
    return names


def table_account(params: Any) -> str | None:
    """The account of the first table ARN a request names, if any."""
    for name in request_table_names(params):
        account = _arn_account(name)
        if account:
            return account
    return None


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _key_arn(key: str, account: str, region: str) -> str:
    """A KMS key id, alias or ARN as the key's ARN (as DescribeTable shows it)."""
    try:
        from moto.kms.models import kms_backends

        return kms_backends[account][region].describe_key(key).arn
    except Exception:
        return key


def _sse(props: dict[str, Any], account: str, region: str) -> dict[str, Any] | None:
    """CloudFormation's SSESpecification in the API's shape (None: AWS owned key)."""
    sse = props.get("SSESpecification")
    if not isinstance(sse, dict) or not _true(sse.get("SSEEnabled")):
        return None
    spec: dict[str, Any] = {"Enabled": True, "SSEType": "KMS"}
    key = sse.get("KMSMasterKeyId")
    if isinstance(key, str) and key:
        spec["KMSMasterKeyId"] = _key_arn(key, account, region)
    return spec


def _policy_text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))


def _same_policy(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return a == b


def _apply(table: Any, props: dict[str, Any]) -> None:
    """PITR, TTL and the resource policy of a template's table, through
    moto's own backend calls; remembers what the stack applied."""
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[table.account_id][table.region_name]
    previous = getattr(table, "keyfleet_cfn", None) or {}
    applied: dict[str, Any] = {}

    pitr = props.get("PointInTimeRecoverySpecification")
    if isinstance(pitr, dict):
        spec: dict[str, Any] = {"PointInTimeRecoveryEnabled": _true(pitr.get("PointInTimeRecoveryEnabled"))}
        if pitr.get("RecoveryPeriodInDays") is not None:
            spec["RecoveryPeriodInDays"] = int(pitr["RecoveryPeriodInDays"])
        backend.update_continuous_backups(table.name, spec)
        applied["pitr"] = spec["PointInTimeRecoveryEnabled"]
    elif previous.get("pitr"):
        backend.update_continuous_backups(table.name, {"PointInTimeRecoveryEnabled": False})

    ttl = props.get("TimeToLiveSpecification")
    if isinstance(ttl, dict) and ttl.get("AttributeName"):
        backend.update_time_to_live(table.name, {"Enabled": _true(ttl.get("Enabled")), "AttributeName": ttl["AttributeName"]})
        applied["ttl"] = ttl["AttributeName"]
    elif previous.get("ttl"):
        backend.update_time_to_live(table.name, {"Enabled": False, "AttributeName": previous["ttl"]})

    resource_policy = props.get("ResourcePolicy")
    document = resource_policy.get("PolicyDocument") if isinstance(resource_policy, dict) else None
    if document is not None:
        text = _policy_text(document)
        if not _same_policy(text, previous.get("policy")):
            backend.put_resource_policy(table.table_arn, text, None)
        applied["policy"] = text
    elif previous.get("policy") is not None:
        backend.resource_policies.pop(table.table_arn, None)

    table.keyfleet_cfn = applied


def _install_cloudformation() -> None:
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.table import Table

    original_create = Table.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        props = dict(cloudformation_json.get("Properties") or {})
        translated = dict(cloudformation_json, Properties=dict(props, SSESpecification=_sse(props, account_id, region_name)))
        table = original_create(cls, resource_name, translated, account_id, region_name, **kwargs)
        _apply(table, props)
        return table

    def update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = dict(cloudformation_json.get("Properties") or {})
        backend = dynamodb_backends[original_resource.account_id][original_resource.region_name]
        # The backend's own object: moto's rollback of a failed transaction
        # puts a copy of the table in its place.
        table = backend.tables.get(original_resource.name, original_resource)
        if "TableName" in props and str(props["TableName"]) != table.name:
            # A new name is a new table (AWS replaces it).
            new = cls.create_from_cloudformation_json(str(props["TableName"]), cloudformation_json, account_id, region_name)
            if cloudformation_json.get("UpdateReplacePolicy") != "Retain":
                table.deletion_protection_enabled = False
                backend.delete_table(table.name)
            return new
        table.billing_mode = "PAY_PER_REQUEST" if props.get("BillingMode") == "PAY_PER_REQUEST" else "PROVISIONED"
        table.deletion_protection_enabled = _true(props.get("DeletionProtectionEnabled", False))
        sse = _sse(props, table.account_id, table.region_name)
        if sse is not None and "KMSMasterKeyId" not in sse:
            sse["KMSMasterKeyId"] = table._get_default_encryption_key(table.account_id, table.region_name)
        table.sse_specification = sse
        _apply(table, props)
        return table

    Table.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign,assignment]
    Table.update_from_cloudformation_json = classmethod(update)  # type: ignore[method-assign,assignment]


def _local_names(backend: Any, transact_items: Any) -> Any:
    """TransactItems with the ARNs of ``backend``'s tables replaced by their names."""
    by_arn = {table.table_arn: name for name, table in list(backend.tables.items())}
    out = []
    for entry in transact_items:
        if not isinstance(entry, dict):
            out.append(entry)
            continue
        new = {}
        for op, body in entry.items():
            if isinstance(body, dict) and body.get("TableName") in by_arn:
                body = dict(body, TableName=by_arn[body["TableName"]])
            new[op] = body
        out.append(new)
    return out


def _guard_resource_arn(cls: Any, method: str) -> None:
    original = getattr(cls, method)

    def guarded(self: Any, resource_arn: str, *args: Any, **kwargs: Any) -> Any:
        parts = str(resource_arn or "").split(":")
        if len(parts) < 6 or parts[3] != self.region_name or parts[4] != self.account_id:
            from moto.dynamodb.exceptions import ResourceNotFoundException

            raise ResourceNotFoundException(table_name=str(resource_arn).split("/")[-1])
        return original(self, resource_arn, *args, **kwargs)

    setattr(cls, method, guarded)


def install() -> None:
    from moto.dynamodb import responses
    from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends

    def dynamodb_backend(self: Any) -> Any:
        account = None
        if self._get_action() in CROSS_ACCOUNT_ACTIONS:
            account = table_account(getattr(self, "params", None) or getattr(self, "body", None))
        return dynamodb_backends[account or self.current_account][self.region]

    responses.DynamoHandler.dynamodb_backend = property(dynamodb_backend)  # type: ignore[assignment]

    original_create_table = responses.DynamoHandler.create_table

    def create_table(self: Any) -> Any:
        result = original_create_table(self)
        policy = self.body.get("ResourcePolicy")
        if policy:
            backend = self.dynamodb_backend
            table = backend.get_table(self.body["TableName"])
            backend.put_resource_policy(table.table_arn, policy, None)
        return result

    responses.DynamoHandler.create_table = create_table  # type: ignore[method-assign]

    original_delete_table = DynamoDBBackend.delete_table

    def delete_table(self: Any, name: str) -> Any:
        table = original_delete_table(self, name)
        self.resource_policies.pop(getattr(table, "table_arn", None), None)
        return table

    DynamoDBBackend.delete_table = delete_table  # type: ignore[method-assign]

    # moto finds the table of a resource-policy call by the last part of the
    # ARN alone; another account's (or region's) ARN names no table here.
    for method in ("put_resource_policy", "get_resource_policy", "delete_resource_policy"):
        _guard_resource_arn(DynamoDBBackend, method)

    original_transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        return original_transact(self, _local_names(self, transact_items))

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    _install_cloudformation()

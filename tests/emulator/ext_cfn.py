"""CloudFormation: Fn::FindInMap with a Number parameter as key; inline
role policies stored as JSON; updates in place; DeletionPolicy Retain on
update; AWS::SQS::QueuePolicy.

AWS: template values are strings to the engine; ``!FindInMap [Map, !Ref
FunctionTimeout, Key]`` with a ``Number`` parameter ``FunctionTimeout`` (300)
finds the mapping entry ``"300"``. keyfleet's agent template
(terraform/templates/agent.yaml) uses this to derive the jobs queue's
visibility timeout from the function timeout.

moto 5.2.5: Number parameters (and YAML numeric defaults) are kept as Python
ints, mapping keys are strings, so the lookup fails with ``KeyError: 300`` and
the stack (or stack set instance) is not created.

Patch: ``ResourceMap.load_mapping`` stores each mapping as a dict that, for a
numeric key it does not hold, also tries the key's string form (``300`` ->
``"300"``, ``1.5`` -> ``"1.5"``). Every other lookup is unchanged.

AWS: an ``AWS::IAM::Role`` with ``Policies`` stores each inline policy as a
JSON document; GetRolePolicy returns it (URL-encoded JSON), as for a policy
put with PutRolePolicy.

moto 5.2.5: the template's mapping is stored as it is, and GetRolePolicy
answers with its Python repr (``{'Version': ...}``), which no JSON reader
takes.

Patch: ``Role.put_policy`` stores a document that is not a string as JSON.

AWS: a stack update (UpdateStack, or a stack set update reaching each
instance, see ext_stacksets.py) changes a resource in place when its
properties change: an ``AWS::IAM::Role`` gets its new trust policy,
description, maximum session duration and inline ``Policies`` (policies
dropped from the template are deleted); an ``AWS::SQS::Queue`` its new
attributes (``RedrivePolicy``, ``MessageRetentionPeriod``, ...); an
``AWS::Logs::LogGroup`` its new ``RetentionInDays``.

moto 5.2.5: a role update sets only the description (and the maximum session
duration from ``RoleDescription``, a typo), a queue update only
``VisibilityTimeout`` and ``ReceiveMessageWaitTimeSeconds``, and a log group
cannot be updated at all: the stack then forgets the resource (it is not
deleted with the stack). A resource of any other type moto cannot update is
forgotten the same way.

Patch: ``Role``, ``Queue`` and ``LogGroup`` update in place as above (a
changed ``RoleName`` or ``QueueName``, which AWS answers by replacing the
resource, is left to moto; a renamed log group is replaced). Inline policies
put outside the stack are left alone. A resource whose type moto cannot
update stays in the stack unchanged. A property removed from the template
keeps its value (AWS resets it to the default). ``AWS::Lambda::Function``
needs nothing: moto updates its configuration (``Environment``, ``Timeout``,
``MemorySize``, ...) and reloads its code from ``Code`` in place, and its
event source mappings stay. ``AWS::DynamoDB::Table`` is updated in place by
ext_dynamodb.py.

AWS: a resource with ``DeletionPolicy: Retain`` is kept when a stack update
removes it from the template, as when the stack is deleted (it is no longer
the stack's).

moto 5.2.5: honours Retain on stack deletion only (``ResourceMap.delete``);
an update that drops the resource deletes it.

Patch: ``ResourceMap._delete_resource`` does nothing for a resource whose
template entry says ``DeletionPolicy: Retain`` (the stack forgets it).

AWS: ``AWS::SQS::QueuePolicy`` sets the ``Policy`` attribute of every queue
in ``Queues`` (queue URLs, usually ``!Ref`` of an ``AWS::SQS::Queue``) to its
``PolicyDocument``; a stack update replaces the document (a queue dropped from
``Queues`` loses it) and deleting the resource (or the stack) removes it.
keyfleet's agent template restricts its jobs queue this way.

moto 5.2.5: has no model for the type: it warns ("No Moto CloudFormation
support for AWS::SQS::QueuePolicy") and skips it, so GetQueueAttributes
shows no Policy. Stacks created by StackSets behave the same (they are
built by the same parser).

Patch: a CloudFormation model for ``AWS::SQS::QueuePolicy`` (``QueuePolicy``
below, registered with moto's parser). Its properties are resolved like any
other resource's (``!Ref``, ``!GetAtt``, ``!Sub``, ``!Select``...). Create
sets each queue's ``Policy`` to the document as JSON; update sets the new
document and clears it from queues no longer listed; delete clears it. A
queue is found from its URL's path (``/<account>/<name>``) in the region of
an ``sqs.<region>.amazonaws.com`` host, else the stack's region; a queue
that does not exist fails the resource (and the stack), as in AWS. ``Ref``
returns the resource's physical id. The policy is stored, not evaluated
(the harness evaluates no queue policy).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse


class NumberKeyMapping(dict):
    """A template mapping that also finds ``"300"`` when asked for ``300``."""

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, bool) and isinstance(key, (int, float)) and key not in self:
            text = str(key)
            if text in self:
                return super().__getitem__(text)
        return super().__getitem__(key)


def install() -> None:
    from moto.cloudformation.parsing import ResourceMap

    def load_mapping(self: Any) -> None:
        mappings = self._template.get("Mappings", {})
        self._parsed_resources.update(
            {
                name: NumberKeyMapping(value) if isinstance(value, dict) else value
                for name, value in mappings.items()
            }
        )

    ResourceMap.load_mapping = load_mapping  # type: ignore[method-assign]

    from moto.iam.models import Role

    original_put_policy = Role.put_policy

    def put_policy(self: Any, policy_name: str, policy_json: Any) -> None:
        if not isinstance(policy_json, str):
            policy_json = json.dumps(policy_json)
        original_put_policy(self, policy_name, policy_json)

    Role.put_policy = put_policy  # type: ignore[method-assign]

    _install_updates()
    _install_queue_policy()


def _document(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _install_updates() -> None:
    import moto.cloudformation.parsing as parsing
    from moto.iam.models import Role
    from moto.logs.models import LogGroup
    from moto.sqs.models import Queue

    original_parse_and_update = parsing.parse_and_update_resource

    def parse_and_update_resource(
        logical_id: str, resource_json: Any, resources_map: Any, account_id: str, region_name: str
    ) -> Any:
        updated = original_parse_and_update(
            logical_id, resource_json, resources_map, account_id, region_name
        )
        if updated is None:  # moto cannot update this type: keep what exists
            return resources_map._parsed_resources.get(logical_id)
        return updated

    parsing.parse_and_update_resource = parse_and_update_resource

    original_delete_resource = parsing.ResourceMap._delete_resource

    def _delete_resource(self: Any, parsed_resource: Any, resource_json: Any) -> None:
        # DeletionPolicy Retain: an update that removes the resource from the
        # template keeps it, as a stack deletion does (moto checks Retain
        # there only, in ResourceMap.delete).
        if isinstance(resource_json, dict) and resource_json.get("DeletionPolicy") == "Retain":
            return
        original_delete_resource(self, parsed_resource, resource_json)

    parsing.ResourceMap._delete_resource = _delete_resource  # type: ignore[method-assign]

    role_create = Role.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    role_update = Role.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_role(cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        role = role_create(cls, resource_name, cloudformation_json, *args, **kwargs)
        policies = cloudformation_json.get("Properties", {}).get("Policies", [])
        role.keyfleet_stack_policies = [p["PolicyName"] for p in policies]
        return role

    def update_role(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = cloudformation_json["Properties"]
        if props.get("RoleName", original_resource.name) != original_resource.name:
            return role_update(
                cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
            )
        role = original_resource
        role.assume_role_policy_document = _document(props["AssumeRolePolicyDocument"])
        role.description = props.get("Description", "")
        role.max_session_duration = props.get("MaxSessionDuration", 3600)
        wanted = {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies", [])}
        for name in getattr(role, "keyfleet_stack_policies", []):
            if name not in wanted and name in role.policies:
                role.delete_policy(name)
        for name, document in wanted.items():
            role.put_policy(name, document)
        role.keyfleet_stack_policies = list(wanted)
        return role

    Role.create_from_cloudformation_json = classmethod(create_role)  # type: ignore[method-assign,assignment]
    Role.update_from_cloudformation_json = classmethod(update_role)  # type: ignore[method-assign,assignment]

    queue_update = Queue.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def update_queue(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = dict(cloudformation_json["Properties"])
        if str(props.get("QueueName", original_resource.name)) != original_resource.name:
            return queue_update(
                cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
            )
        for key in ("QueueName", "Tags", "FifoQueue"):
            props.pop(key, None)
        props.setdefault("Policy", original_resource.policy)  # moto would clear it
        original_resource._set_attributes(props)
        return original_resource

    Queue.update_from_cloudformation_json = classmethod(update_queue)  # type: ignore[method-assign,assignment]

    def update_log_group(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = cloudformation_json.get("Properties", {})
        if props.get("LogGroupName", original_resource.name) != original_resource.name:
            original_resource.delete(account_id, region_name)  # a new name replaces it
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )
        retention = props.get("RetentionInDays")
        original_resource.set_retention_policy(int(retention) if retention is not None else None)
        return original_resource

    LogGroup.update_from_cloudformation_json = classmethod(update_log_group)  # type: ignore[method-assign,assignment]


# -- AWS::SQS::QueuePolicy ---------------------------------------------------------

_QUEUE_PATH = re.compile(r"^/(\d{12})/([A-Za-z0-9_.\-]+)/?$")
_SQS_HOST = re.compile(r"^sqs\.([a-z0-9-]+)\.amazonaws\.com$")


def _queue_from_url(url: Any, account_id: str, region_name: str) -> Any:
    """The moto queue a QueuePolicy's ``Queues`` entry names (its URL)."""
    from moto.sqs.exceptions import QueueDoesNotExist
    from moto.sqs.models import sqs_backends

    parsed = urlparse(str(url))
    match = _QUEUE_PATH.match(parsed.path or "")
    if match is None:
        raise QueueDoesNotExist()
    host = _SQS_HOST.match(parsed.hostname or "")
    region = host.group(1) if host else region_name
    return sqs_backends[match.group(1)][region].get_queue(match.group(2))


def _policy_text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document, separators=(",", ":"))


def _install_queue_policy() -> None:
    import moto.cloudformation.parsing as parsing
    from moto.core.common_models import CloudFormationModel

    def __init__(self: Any, name: str, account_id: str, region_name: str, queues: list[str], policy: str) -> None:
        self.name = name
        self.account_id = account_id
        self.region_name = region_name
        self.queues = list(queues)
        self.policy = policy

    def _apply(self: Any) -> None:
        for url in self.queues:
            _queue_from_url(url, self.account_id, self.region_name).policy = self.policy

    def _clear(self: Any, urls: list[str]) -> None:
        for url in urls:
            try:
                queue = _queue_from_url(url, self.account_id, self.region_name)
            except Exception:
                continue  # deleted already (e.g. with the same stack)
            current = queue.policy  # moto keeps the parsed document
            if current is not None and json.loads(current) == json.loads(self.policy):
                queue.policy = None

    def create(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str,
               region_name: str, **kwargs: Any) -> Any:
        props = cloudformation_json.get("Properties", {})
        queues = props.get("Queues") or []
        if isinstance(queues, str):
            queues = [queues]
        policy = cls(resource_name, account_id, region_name, queues, _policy_text(props["PolicyDocument"]))
        policy._apply()
        return policy

    def update(cls: Any, original_resource: Any, new_resource_name: str, cloudformation_json: Any,
               account_id: str, region_name: str) -> Any:
        props = cloudformation_json.get("Properties", {})
        queues = props.get("Queues") or []
        if isinstance(queues, str):
            queues = [queues]
        dropped = [url for url in original_resource.queues if url not in queues]
        original_resource._clear(dropped)
        original_resource.queues = list(queues)
        original_resource.policy = _policy_text(props["PolicyDocument"])
        original_resource._apply()
        return original_resource

    def delete_from_cfn(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str,
                        region_name: str) -> None:
        props = cloudformation_json.get("Properties", {})
        queues = props.get("Queues") or []
        for url in [queues] if isinstance(queues, str) else queues:
            try:
                _queue_from_url(url, account_id, region_name).policy = None
            except Exception:
                pass

    def delete(self: Any, account_id: str, region_name: str) -> None:
        self._clear(self.queues)

    namespace = {
        # moto's model registry files a class under the service named by its
        # module (moto.<service>.…).
        "__module__": "moto.sqs.keyfleet_queue_policy",
        "__doc__": "AWS::SQS::QueuePolicy (see ext_cfn.py).",
        "__init__": __init__,
        "_apply": _apply,
        "_clear": _clear,
        "cloudformation_name_type": staticmethod(lambda: ""),
        "cloudformation_type": staticmethod(lambda: "AWS::SQS::QueuePolicy"),
        "has_cfn_attr": classmethod(lambda cls, attr: attr == "Id"),
        "get_cfn_attribute": lambda self, attr: self.name,
        "physical_resource_id": property(lambda self: self.name),
        "create_from_cloudformation_json": classmethod(create),
        "update_from_cloudformation_json": classmethod(update),
        "delete_from_cloudformation_json": classmethod(delete_from_cfn),
        "delete": delete,
        "is_created": lambda self: True,
    }
    type(CloudFormationModel)("QueuePolicy", (CloudFormationModel,), namespace)
    # moto caches the list of model classes on first use.
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()

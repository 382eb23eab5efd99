"""CloudFormation StackSets: service-managed targets, auto-deployment, updates.

AWS: a SERVICE_MANAGED stack set deployed to organizational units
(CreateStackInstances with ``DeploymentTargets.OrganizationalUnitIds``) covers
every active account in those OUs *and all their descendant OUs* (the root id
means the whole organization), never the management account. With
``AutoDeployment={"Enabled": true}`` the targets stay live: an account created
in, or moved into, a targeted OU later gets the stack in every region of the
stack set, and an account moved out of all targeted OUs (or removed from the
organization) loses it unless ``RetainStacksOnAccountRemoval`` is true.
DescribeStackSet shows AutoDeployment and OrganizationalUnitIds.

moto 5.2.5 does resolve OUs to accounts and does create the template's
resources (IAM roles, SQS queues, Lambda functions, event source mappings) in
each member account, but only when CreateStackInstances runs, and:
  * only one level of child OUs is included (accounts deeper down are missed),
    and an OU listed together with its child deploys twice (which then fails
    on duplicate resource names);
  * targeting the root also deploys to the management account;
  * AutoDeployment is accepted and dropped, so nothing happens when accounts
    join or leave an OU.

Patch:
  * ``StackInstances.create_instances`` resolves OU targets through all
    descendant OUs, skips the management account and inactive accounts,
    deploys each account/region once, and remembers the OU ids and regions;
  * CreateStackSet/UpdateStackSet keep ``AutoDeployment`` on the stack set;
  * Organizations ``CreateAccount``/``MoveAccount`` deploy to the account when
    it is now under a targeted OU of an auto-deploying stack set, each region
    once (as moto does at CreateStackInstances time, with the stack set's
    parameters); ``MoveAccount`` out of every targeted OU and
    ``RemoveAccountFromOrganization`` delete the account's instances unless
    RetainStacksOnAccountRemoval is true. Each auto-deployment is recorded as
    a stack set operation. A deployment that fails (e.g. the Lambda code
    bucket does not exist) is recorded as a FAILED operation and logged;
    it does not fail the Organizations call, as in AWS.

AWS: an instance whose deployment fails (a resource fails, e.g. the Lambda
code bucket is missing, or a parameter breaks its constraint) does not fail
CreateStackInstances: the operation ends FAILED (that instance's result
FAILED), the stack is rolled back, and the instance stays with Status
OUTDATED, DetailedStatus FAILED and a StatusReason
(``ResourceLogicalId:<id>, ResourceType:<type>, ResourceStatusReason:<why>.``
for a resource). A later update of the stack set deploys it again.

moto 5.2.5: the failure propagated out of CreateStackInstances (HTTP 400),
leaving the resources created before it and no instance.

Patch: instances are built here (``_stack_instance``): a failed deployment
deletes what its stack created (moto's ``Stack.delete``), keeps the
instance without a stack, OUTDATED/FAILED with ``status_reason(exc)``
(ext_cfn_checks.py marks the failing resource on the exception);
``StackSet.create_stack_instances`` records a result per instance and marks
the operation FAILED when one failed; an update of an instance without a
stack creates it; deleting one deletes nothing.

AWS: UpdateStackSet (a new TemplateBody/TemplateURL and/or Parameters)
updates the stack of every instance of the stack set, or only of those named
by ``Accounts``/``DeploymentTargets`` (OUs and their descendants, narrowed by
``Accounts`` with ``AccountFilterType``) and ``Regions``; each stack gets the
stack set's template and parameters with the instance's parameter overrides
on top, so the deployed resources change in every member account (a Lambda
function's environment, a queue's attributes, a role's inline policy). The
instances not updated become OUTDATED; a failed instance is OUTDATED with
DetailedStatus FAILED, and the operation FAILED. UpdateStackInstances
replaces an instance's overrides (``UsePreviousValue`` keeps one; an empty
list drops them all; no ParameterOverrides at all keeps them) and updates its
stack the same way. Instances created later (CreateStackInstances,
auto-deployment) get the current template and parameters.

moto 5.2.5: UpdateStackSet stores the new template and parameters on the
stack set and records an UPDATE operation, but updates no stack: the member
accounts keep the old resources; with ``Accounts`` and ``Regions`` it also
replaces those instances' overrides with the stack set's parameters.
``DeploymentTargets`` is ignored. Later instances (CreateStackInstances,
auto-deployment) are still deployed from the *old* template (moto's
StackInstances keeps its own copy). UpdateStackInstances only stores the
overrides (and an omitted list clears them). CreateStackInstances with
``ParameterOverrides`` deploys with the overrides alone (the stack set's other
parameters are lost; a required one fails the call). Instances are always
CURRENT. ``UsePreviousValue`` for a parameter that was never set (its default
applied) fails with HTTP 500 (KeyError).

Patch:
  * ``StackSet.update`` (UpdateStackSet) stores the template and parameters
    as moto does (also on the copy new instances are deployed from), selects
    the instances (all; or by ``Accounts``, ``DeploymentTargets`` read from
    the request, and ``Regions``), and updates each instance's stack in place
    with moto's stack update (``Stack.update``: resources whose properties
    changed are updated, added ones created, removed ones deleted) using the
    stack set's parameters merged with the instance's overrides. One UPDATE
    operation (the request's OperationId) lists every instance with its own
    result (ListStackSetOperationResults); it is FAILED if any instance
    failed (logged; moto does not roll back, so the stack may be half
    updated). The others are marked OUTDATED when the template or
    parameters changed.
  * ``StackSet.update_instances`` (UpdateStackInstances) applies the AWS
    override rules above and updates the named instances' stacks the same
    way (``DeploymentTargets`` works here too).
  * Every instance keeps its overrides apart from the stack set's
    parameters; CreateStackInstances and auto-deployments deploy with both.
    DescribeStackInstance/ListStackInstances show the overrides, CURRENT or
    OUTDATED, and the DetailedStatus (and StatusReason of a failure).
  * ``UsePreviousValue`` of a parameter never set leaves it out (its default
    applies), for UpdateStack too.
  All instances are updated, one after the other, whatever the
  OperationPreferences (AWS stops at the first failure by default).
  What moto updates in place for each resource type is moto's (see
  ext_cfn.py for roles, queues and log groups); an AWS::Lambda::Function
  keeps its ARN, code (re-read from ``Code``) and event source mappings.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable

log = logging.getLogger("keyfleet.stacksets")
_lock = threading.RLock()
# What moto's UpdateStackSet/UpdateStackInstances handlers do not pass on to the
# model (DeploymentTargets, ...), for the request being served on this thread.
_request = threading.local()


def _request_value(name: str, default: Any = None) -> Any:
    return getattr(_request, "values", {}).get(name, default)


def descendant_ous(org: Any, ou_ids: Iterable[str]) -> set[str]:
    """The given OU/root ids and every OU below them."""
    found = set(ou_ids)
    frontier = set(found)
    while frontier:
        children = {ou.id for ou in org.ou if ou.parent_id in frontier} - found
        found |= children
        frontier = children
    return found


def ancestors(org: Any, account: Any) -> set[str]:
    """Every OU (and the root) above an account."""
    by_id = {ou.id: ou for ou in org.ou}
    chain: set[str] = set()
    parent = account.parent_id
    while parent and parent not in chain:
        chain.add(parent)
        node = by_id.get(parent)
        parent = getattr(node, "parent_id", None) if node is not None else None
    return chain


def _management_account(org: Any) -> str | None:
    return getattr(getattr(org, "org", None), "master_account_id", None)


def _eligible(org: Any, account: Any) -> bool:
    return account.status == "ACTIVE" and account.id != _management_account(org)


def _overrides(instance: Any) -> dict[str, Any]:
    """The instance's parameter overrides (not the stack set's parameters)."""
    explicit = getattr(instance, "keyfleet_overrides", None)
    if explicit is not None:
        return dict(explicit)
    params = instance.parameters
    if isinstance(params, list):
        return {p["ParameterKey"]: p["ParameterValue"] for p in params if "ParameterValue" in p}
    return {}  # moto stores the stack set's parameters when there are no overrides


def _parameter_list(params: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]


def _set_state(instance: Any, status: str, detailed: str, reason: str | None = None) -> None:
    instance.keyfleet_status = status
    instance.keyfleet_detailed_status = detailed
    instance.keyfleet_status_reason = reason


def status_reason(exc: BaseException) -> str:
    """A failed deployment's StatusReason, in AWS's words where it has them:
    ``ResourceLogicalId:<id>, ResourceType:<type>, ResourceStatusReason:<why>.``
    for a resource that failed (ext_cfn_checks.py marks it), the bare
    message for a template or parameter problem."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if not isinstance(message, str):
        message = str(message)
    failed = getattr(exc, "keyfleet_resource", None)
    if failed:
        logical_id, kind = failed
        return f"ResourceLogicalId:{logical_id}, ResourceType:{kind}, ResourceStatusReason:{message.rstrip('.')}."
    return message


def _create_stack(instance: Any, params: dict[str, Any]) -> Any:
    """The instance's stack, as moto's StackInstance builds it; on failure the
    resources created so far are deleted again (AWS rolls a failed stack
    instance back) and the error is raised."""
    from moto.cloudformation.models import Stack, cloudformation_backends
    from moto.cloudformation.utils import generate_stack_id

    if instance.permission_model == "SELF_MANAGED":
        backend = cloudformation_backends[instance.account_id][instance.region_name]
        name = f"StackSet:{instance.name}"
        try:
            return backend.create_stack(name=name, template=instance.template, parameters=params)
        except Exception:
            try:
                backend.delete_stack(name)
            except Exception:
                log.debug("rolling back %s in %s failed", name, instance.account_id, exc_info=True)
            raise
    stack = Stack(
        stack_id=generate_stack_id("hiddenstackfor" + instance.name, instance.region_name, instance.account_id),
        name=instance.name,
        template=instance.template,
        parameters=params,
        account_id=instance.account_id,
        region_name=instance.region_name,
        notification_arns=[],
        tags=None,
        role_arn=None,
        cross_stack_resources={},
        enable_termination_protection=False,
    )
    try:
        stack.create_resources()
    except Exception:
        try:
            stack.delete()
        except Exception:
            log.debug("rolling back stack set instance in %s failed", instance.account_id, exc_info=True)
        raise
    return stack


def _deploy_stack(instance: Any, stackset_parameters: dict[str, Any] | None) -> bool:
    """Create the instance's stack; a failure leaves the instance OUTDATED
    (DetailedStatus FAILED, StatusReason) without a stack. True if created."""
    params = {**(stackset_parameters or {}), **_overrides(instance)}
    try:
        instance.stack = _create_stack(instance, params)
    except Exception as exc:
        log.warning(
            "stack set %s: deploying to %s/%s failed: %s",
            instance.name, instance.account_id, instance.region_name, exc,
        )
        instance.stack = None
        _set_state(instance, "OUTDATED", "FAILED", status_reason(exc))
        return False
    _set_state(instance, "CURRENT", "SUCCEEDED")
    return True


def _stack_instance(
    instances: Any,
    account: str,
    region: str,
    stackset_parameters: dict[str, Any] | None,
    overrides: dict[str, Any],
    model: str,
) -> Any:
    """A new stack instance with its stack deployed (moto's StackInstance,
    built here so a failed deployment still leaves the instance, OUTDATED,
    as in AWS). moto deploys with the overrides alone when there are any
    (the stack set's other parameters are lost); the stack gets both,
    overrides winning."""
    from moto.cloudformation.models import StackInstance

    instance = StackInstance.__new__(StackInstance)
    instance.account_id = account
    instance.region_name = region
    instance.stackset_id = instances.stackset_id
    instance.stack_name = instances.stack_name
    instance.name = instances.stackset_name
    instance.template = instances.template
    instance.permission_model = model
    instance.keyfleet_overrides = dict(overrides)
    instance.parameters = _parameter_list(overrides)
    _deploy_stack(instance, stackset_parameters)
    return instance


def _stacksets_of(management_account: str) -> Iterable[Any]:
    from moto.cloudformation.models import cloudformation_backends

    per_region = cloudformation_backends.get(management_account)
    if per_region is None:
        return []
    return [
        stackset
        for backend in list(per_region.values())
        for stackset in list(backend.stacksets.values())
    ]


def _auto(stackset: Any) -> dict[str, Any]:
    return getattr(stackset, "auto_deployment", None) or {}


def _record(stackset: Any, action: str, status: str, account: str, regions: list[str]) -> None:
    from moto.moto_api._internal import mock_random

    stackset._create_operation(
        operation_id=str(mock_random.uuid4()),
        action=action,
        status=status,
        accounts=[account],
        regions=regions,
    )


def _record_results(
    stackset: Any, action: str, operation_id: str | None, results: dict[tuple[str, str], str]
) -> dict[str, Any]:
    """One operation over the given account/region pairs, each with its own
    result; the operation FAILED if any instance did (failure tolerance 0)."""
    from moto.moto_api._internal import mock_random

    operation = stackset._create_operation(
        operation_id=operation_id or str(mock_random.uuid4()),
        action=action,
        status="FAILED" if "FAILED" in results.values() else "SUCCEEDED",
    )
    operation["Instances"] = [{account: region} for account, region in results]
    # Read by ListStackSetOperationResults (moto's serializer ignores the key).
    operation["KeyfleetResults"] = dict(results)
    return operation


def _selected(
    stackset: Any, accounts: list[str] | None, regions: list[str] | None, targets: dict[str, Any]
) -> list[Any]:
    """The existing instances an update names (all of them when it names none)."""
    ous = list(targets.get("OrganizationalUnitIds") or [])
    listed = set(accounts or []) | set(targets.get("Accounts") or [])
    wanted: set[str] | None
    if ous:
        org = stackset.instances.org_backend
        under = descendant_ous(org, ous)
        in_ous = {a.id for a in org.accounts if a.parent_id in under}
        kind = targets.get("AccountFilterType") or "NONE"
        if kind == "INTERSECTION":
            wanted = in_ous & listed
        elif kind == "DIFFERENCE":
            wanted = in_ous - listed
        elif kind == "UNION":
            wanted = in_ous | listed
        else:
            wanted = in_ous
    elif listed:
        wanted = listed
    else:
        wanted = None
    region_set = set(regions) if regions else None
    return [
        i
        for i in stackset.instances.stack_instances
        if (wanted is None or i.account_id in wanted)
        and (region_set is None or i.region_name in region_set)
    ]


def _update_instance(stackset: Any, instance: Any) -> bool:
    """Update the instance's stack to the stack set's template and parameters
    (with the instance's overrides); False (and logged) if it failed. An
    instance whose stack was never created (its deployment failed) gets it
    created now."""
    if getattr(instance, "stack", None) is None:
        instance.template = stackset.template
        return _deploy_stack(instance, stackset.parameters)
    params = {**(stackset.parameters or {}), **_overrides(instance)}
    try:
        instance.stack.update(
            stackset.template,
            role_arn=getattr(instance.stack, "role_arn", None),
            parameters=params,
        )
    except Exception as exc:
        log.warning(
            "update of stack set %s in %s/%s failed: %s",
            stackset.name, instance.account_id, instance.region_name, exc,
        )
        _set_state(instance, "OUTDATED", "FAILED", status_reason(exc))
        return False
    instance.template = stackset.template
    _set_state(instance, "CURRENT", "SUCCEEDED")
    return True


def _update_instances(stackset: Any, instances: list[Any], operation_id: str | None) -> dict[str, Any]:
    results = {}
    for instance in instances:
        ok = _update_instance(stackset, instance)
        results[(instance.account_id, instance.region_name)] = "SUCCEEDED" if ok else "FAILED"
    return _record_results(stackset, "UPDATE", operation_id, results)


def on_account_placed(org: Any, account_id: str) -> None:
    """Deploy or remove auto-deployed stack instances after an account moved."""
    management = _management_account(org)
    if not management:
        return
    try:
        account = org.get_account_by_id(account_id)
    except Exception:
        return
    above = ancestors(org, account)
    with _lock:
        for stackset in _stacksets_of(management):
            if (
                stackset.status != "ACTIVE"
                or stackset.permission_model != "SERVICE_MANAGED"
                or not _auto(stackset).get("Enabled")
            ):
                continue
            instances = stackset.instances
            targets = set(getattr(instances, "keyfleet_ou_ids", []))
            regions = list(getattr(instances, "keyfleet_regions", []))
            if not targets or not regions:
                continue
            if targets & above and _eligible(org, account):
                missing = [r for r in regions if instances.get_instance(account_id, r) is None]
                if missing:
                    _deploy(stackset, account_id, missing)
            elif not (targets & above):
                _remove(stackset, account_id)


def on_account_removed(management: str, account_id: str) -> None:
    with _lock:
        for stackset in _stacksets_of(management):
            if stackset.permission_model == "SERVICE_MANAGED" and _auto(stackset).get("Enabled"):
                _remove(stackset, account_id)


def _deploy(stackset: Any, account_id: str, regions: list[str]) -> None:
    instances = stackset.instances
    failed = []
    for region in regions:
        instance = _stack_instance(
            instances, account_id, region, stackset.parameters, {}, stackset.permission_model
        )
        # A failed deployment does not fail the Organizations call (as in
        # AWS); the instance stays, OUTDATED with its StatusReason.
        instances.stack_instances.append(instance)
        if getattr(instance, "keyfleet_detailed_status", None) == "FAILED":
            failed.append(region)
    done = [r for r in regions if r not in failed]
    if done:
        _record(stackset, "CREATE", "SUCCEEDED", account_id, done)
    if failed:
        _record(stackset, "CREATE", "FAILED", account_id, failed)


def _remove(stackset: Any, account_id: str) -> None:
    if _auto(stackset).get("RetainStacksOnAccountRemoval"):
        return
    instances = stackset.instances
    regions = [i.region_name for i in instances.stack_instances if i.account_id == account_id]
    if not regions:
        return
    try:
        instances.delete([account_id], regions)
        _record(stackset, "DELETE", "SUCCEEDED", account_id, regions)
    except Exception as exc:
        log.warning(
            "auto-removal of stack set %s from %s failed: %s", stackset.name, account_id, exc
        )
        _record(stackset, "DELETE", "FAILED", account_id, regions)


def install() -> None:
    from moto.cloudformation.exceptions import StackInstanceNotFound
    from moto.cloudformation.models import (
        CloudFormationBackend,
        StackInstance,
        StackInstances,
        StackSet,
    )
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.organizations.models import OrganizationsBackend

    def create_instances(
        self: Any,
        accounts: list[str],
        regions: list[str],
        parameters: Any,
        deployment_targets: dict[str, Any],
        permission_model: str,
    ) -> list[dict[str, Any]]:
        # Replaces moto's version; see the module docstring for what differs.
        requested_ous = list(deployment_targets.get("OrganizationalUnitIds", []) or [])
        targets = list(accounts or [])
        with _lock:
            if requested_ous:
                org = self.org_backend
                ous = descendant_ous(org, requested_ous)
                for account in org.accounts:
                    if account.parent_id in ous and _eligible(org, account):
                        targets.append(account.id)
                known = list(getattr(self, "keyfleet_ou_ids", []))
                self.keyfleet_ou_ids = known + [o for o in requested_ous if o not in known]
                known_regions = list(getattr(self, "keyfleet_regions", []))
                self.keyfleet_regions = known_regions + [r for r in regions if r not in known_regions]
            # moto passes the ParameterOverrides, or the stack set's parameters
            # when there are none.
            overrides = (
                {p["ParameterKey"]: p["ParameterValue"] for p in parameters if "ParameterValue" in p}
                if isinstance(parameters, list)
                else {}
            )
            created = []
            results: dict[tuple[str, str], str] = {}
            for region in regions:
                for account in dict.fromkeys(targets):
                    if self.get_instance(account, region) is not None:
                        continue  # AWS is idempotent here
                    instance = _stack_instance(
                        self, account, region, self.parameters, overrides, permission_model
                    )
                    self.stack_instances.append(instance)
                    created.append(instance)
                    failed = getattr(instance, "keyfleet_detailed_status", None) == "FAILED"
                    results[(account, region)] = "FAILED" if failed else "SUCCEEDED"
            self.keyfleet_last_results = results
            return [i.to_dict() for i in created]

    StackInstances.create_instances = create_instances  # type: ignore[method-assign]

    original_create_stack_instances = StackSet.create_stack_instances

    def create_stack_instances(
        self: Any,
        accounts: list[str],
        regions: list[str],
        deployment_targets: dict[str, Any] | None,
        parameters: list[dict[str, Any]],
    ) -> str:
        # moto's checks and CREATE operation, but with a result per instance:
        # an instance whose deployment failed makes the operation FAILED
        # (and stays, OUTDATED), instead of failing the whole call.
        with _lock:
            self.instances.keyfleet_last_results = {}
            operation_id = original_create_stack_instances(
                self, accounts, regions, deployment_targets, parameters
            )
            results = getattr(self.instances, "keyfleet_last_results", {})
            operation = self.get_operation(operation_id)
            if "FAILED" in results.values():
                operation["Status"] = "FAILED"
            if results:
                operation["Instances"] = [{account: region} for account, region in results]
                operation["KeyfleetResults"] = dict(results)
            return operation_id

    StackSet.create_stack_instances = create_stack_instances  # type: ignore[method-assign]

    original_instance_delete = StackInstance.delete

    def instance_delete(self: Any) -> None:
        if getattr(self, "stack", None) is None:
            return  # its deployment failed and was rolled back: no stack
        original_instance_delete(self)

    StackInstance.delete = instance_delete  # type: ignore[method-assign]

    def update(
        self: Any,
        template: str,
        description: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        admin_role: str,
        execution_role: str,
        accounts: list[str],
        regions: list[str],
        operation_id: str,
    ) -> dict[str, Any]:
        # Replaces moto's StackSet.update, which stores the new template and
        # parameters but deploys nothing (see the module docstring).
        with _lock:
            self.template = template or self.template
            self.description = description if description is not None else self.description
            self.parameters = parameters or self.parameters
            self.tags = tags or self.tags
            self.administration_role_arn = admin_role or self.administration_role_arn
            self.execution_role_name = execution_role or self.execution_role_name
            # moto deploys later instances (CreateStackInstances, and
            # auto-deployments here) from these copies.
            self.instances.template = self.template
            self.instances.parameters = self.parameters
            chosen = _selected(self, accounts, regions, _request_value("DeploymentTargets") or {})
            if template or parameters:  # AWS marks every other instance OUTDATED
                for instance in self.instances.stack_instances:
                    if instance not in chosen:
                        detailed = getattr(instance, "keyfleet_detailed_status", "SUCCEEDED")
                        _set_state(instance, "OUTDATED", detailed)
            return _update_instances(self, chosen, operation_id)

    def update_instances(
        self: Any, accounts: list[str], regions: list[str], parameters: list[dict[str, Any]]
    ) -> dict[str, Any]:
        # Replaces moto's StackSet.update_instances (UpdateStackInstances),
        # which replaces the overrides and deploys nothing.
        with _lock:
            chosen = _selected(self, accounts, regions, _request_value("DeploymentTargets") or {})
            for account in accounts or []:
                for region in regions or []:
                    if self.instances.get_instance(account, region) is None:
                        raise StackInstanceNotFound()
            given = _request_value("ParameterOverridesGiven", bool(parameters))
            for instance in chosen:
                if not given:
                    continue  # omitted: the overrides stay as they are
                previous = _overrides(instance)
                overrides = {}
                for p in parameters or []:
                    if "ParameterValue" in p:
                        overrides[p["ParameterKey"]] = p["ParameterValue"]
                    elif str(p.get("UsePreviousValue")).lower() == "true" and p["ParameterKey"] in previous:
                        overrides[p["ParameterKey"]] = previous[p["ParameterKey"]]
                instance.keyfleet_overrides = overrides
                instance.parameters = _parameter_list(overrides)
            return _update_instances(self, chosen, _request_value("OperationId"))

    StackSet.update = update  # type: ignore[method-assign]
    StackSet.update_instances = update_instances  # type: ignore[method-assign]

    original_to_dict = StackInstance.to_dict

    def to_dict(self: Any) -> dict[str, Any]:
        result = original_to_dict(self)
        result["ParameterOverrides"] = _parameter_list(_overrides(self))
        result["Status"] = getattr(self, "keyfleet_status", "CURRENT")
        result["StackInstanceStatus"] = {
            "DetailedStatus": getattr(self, "keyfleet_detailed_status", "SUCCEEDED")
        }
        reason = getattr(self, "keyfleet_status_reason", None)
        if reason:
            result["StatusReason"] = reason
        return result

    StackInstance.to_dict = to_dict  # type: ignore[method-assign]

    original_resolve = CloudFormationBackend._resolve_update_parameters

    def _resolve_update_parameters(
        self: Any, instance: Any, incoming_params: list[dict[str, str]]
    ) -> dict[str, str]:
        # UsePreviousValue of a parameter that was never set (its default was
        # used) raised KeyError (HTTP 500) in moto; it keeps the default now.
        known = instance.parameters or {}
        kept = [
            p
            for p in incoming_params
            if not (p.get("UsePreviousValue") and "ParameterValue" not in p and p["ParameterKey"] not in known)
        ]
        return original_resolve(self, instance=instance, incoming_params=kept)

    CloudFormationBackend._resolve_update_parameters = _resolve_update_parameters  # type: ignore[method-assign]

    def _find_stackset(response: Any, key: str) -> Any:
        backend = response.cloudformation_backend
        for stackset in backend.stacksets.values():
            if key in (stackset.id, stackset.name) and stackset.status != "DELETED":
                return stackset
        return None

    def _apply_auto_deployment(response: Any, stackset: Any) -> None:
        auto = response._get_param("AutoDeployment")
        if stackset is None or not auto:
            return
        current = dict(_auto(stackset))
        if "Enabled" in auto:
            current["Enabled"] = bool(auto["Enabled"])
        if "RetainStacksOnAccountRemoval" in auto:
            current["RetainStacksOnAccountRemoval"] = bool(auto["RetainStacksOnAccountRemoval"])
        current.setdefault("RetainStacksOnAccountRemoval", False)
        stackset.auto_deployment = current

    original_create_stack_set = CloudFormationResponse.create_stack_set
    original_update_stack_set = CloudFormationResponse.update_stack_set
    original_describe_stack_set = CloudFormationResponse.describe_stack_set
    original_update_stack_instances = CloudFormationResponse.update_stack_instances
    original_operation_results = CloudFormationResponse.list_stack_set_operation_results

    def _with_request_values(response: Any, call: Callable[[], Any]) -> Any:
        querystring = getattr(response, "querystring", None) or {}
        _request.values = {
            "DeploymentTargets": response._get_params().get("DeploymentTargets"),
            "OperationId": response._get_param("OperationId"),
            # An empty list (ParameterOverrides=) clears the overrides; no
            # ParameterOverrides at all keeps them.
            "ParameterOverridesGiven": any(k.startswith("ParameterOverrides") for k in querystring),
        }
        try:
            return call()
        finally:
            _request.values = {}

    def create_stack_set(self: Any) -> Any:
        result = original_create_stack_set(self)
        _apply_auto_deployment(self, _find_stackset(self, result.result["StackSetId"]))
        return result

    def update_stack_set(self: Any) -> Any:
        result = _with_request_values(self, lambda: original_update_stack_set(self))
        _apply_auto_deployment(self, _find_stackset(self, self._get_param("StackSetName")))
        return result

    def update_stack_instances(self: Any) -> Any:
        return _with_request_values(self, lambda: original_update_stack_instances(self))

    def list_stack_set_operation_results(self: Any) -> Any:
        result = original_operation_results(self)
        stackset = _find_stackset(self, self._get_param("StackSetName"))
        if stackset is not None:
            operation = stackset.get_operation(self._get_param("OperationId"))
            per_instance = operation.get("KeyfleetResults") or {}
            for summary in result.result["Summaries"]:
                status = per_instance.get((summary["Account"], summary["Region"]))
                if status:
                    summary["Status"] = status
        return result

    def describe_stack_set(self: Any) -> Any:
        result = original_describe_stack_set(self)
        stackset = result.result["StackSet"]
        # moto's serializer reads these attributes by name (OrganizationalUnitIds).
        stackset.organizational_unit_ids = list(
            getattr(stackset.instances, "keyfleet_ou_ids", [])
        )
        return result

    CloudFormationResponse.create_stack_set = create_stack_set  # type: ignore[method-assign]
    CloudFormationResponse.update_stack_set = update_stack_set  # type: ignore[method-assign]
    CloudFormationResponse.update_stack_instances = update_stack_instances  # type: ignore[method-assign]
    CloudFormationResponse.list_stack_set_operation_results = (  # type: ignore[method-assign]
        list_stack_set_operation_results
    )
    CloudFormationResponse.describe_stack_set = describe_stack_set  # type: ignore[method-assign]

    original_create_account = OrganizationsBackend.create_account
    original_move_account = OrganizationsBackend.move_account
    original_remove_account = OrganizationsBackend.remove_account_from_organization

    def create_account(self: Any, **kwargs: Any) -> dict[str, Any]:
        status = original_create_account(self, **kwargs)
        on_account_placed(self, status["CreateAccountStatus"]["AccountId"])
        return status

    def move_account(self: Any, **kwargs: Any) -> None:
        original_move_account(self, **kwargs)
        on_account_placed(self, kwargs["AccountId"])

    def remove_account_from_organization(self: Any, **kwargs: Any) -> None:
        management = _management_account(self)
        original_remove_account(self, **kwargs)
        if management:
            on_account_removed(management, kwargs["AccountId"])

    OrganizationsBackend.create_account = create_account  # type: ignore[method-assign]
    OrganizationsBackend.move_account = move_account  # type: ignore[method-assign]
    OrganizationsBackend.remove_account_from_organization = (  # type: ignore[method-assign]
        remove_account_from_organization
    )

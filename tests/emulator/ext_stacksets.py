"""CloudFormation StackSets: service-managed targets and auto-deployment.

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
    object is missing from S3) is recorded as a FAILED operation and logged;
    it does not fail the Organizations call, as in AWS.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable

log = logging.getLogger("keyfleet.stacksets")
_lock = threading.RLock()


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


def _stack_instance(instances: Any, account: str, region: str, parameters: Any, model: str) -> Any:
    from moto.cloudformation.models import StackInstance

    return StackInstance(
        account_id=account,
        region_name=region,
        stackset_id=instances.stackset_id,
        stack_name=instances.stack_name,
        name=instances.stackset_name,
        template=instances.template,
        parameters=parameters,
        permission_model=model,
    )


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
        try:
            instance = _stack_instance(
                instances, account_id, region, stackset.parameters, stackset.permission_model
            )
        except Exception as exc:  # keep the Organizations call alive, as AWS does
            log.warning(
                "auto-deployment of stack set %s to %s/%s failed: %s",
                stackset.name, account_id, region, exc,
            )
            failed.append(region)
            continue
        instances.stack_instances.append(instance)
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
    from moto.cloudformation.models import StackInstances
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
            created = []
            for region in regions:
                for account in dict.fromkeys(targets):
                    if self.get_instance(account, region) is not None:
                        continue  # AWS is idempotent here
                    instance = _stack_instance(self, account, region, parameters, permission_model)
                    self.stack_instances.append(instance)
                    created.append(instance)
            return [i.to_dict() for i in created]

    StackInstances.create_instances = create_instances  # type: ignore[method-assign]

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

    def create_stack_set(self: Any) -> Any:
        result = original_create_stack_set(self)
        _apply_auto_deployment(self, _find_stackset(self, result.result["StackSetId"]))
        return result

    def update_stack_set(self: Any) -> Any:
        result = original_update_stack_set(self)
        _apply_auto_deployment(self, _find_stackset(self, self._get_param("StackSetName")))
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

"""CloudFormation: parameter constraints and IAM capabilities are enforced.

AWS: CreateStack and UpdateStack refuse a parameter value that breaks the
template's constraints, with ``ValidationError`` (HTTP 400) and nothing
created or changed:

- ``AllowedValues``: ``Parameter 'X' must be one of AllowedValues``;
- ``AllowedPattern`` (the whole value must match):
  ``Parameter 'X' must match pattern <pattern>``;
- ``MinLength``/``MaxLength`` (String): ``Parameter 'X' must contain at
  least N characters`` / ``at most N characters``;
- ``MinValue``/``MaxValue`` (Number): ``Parameter 'X' must be a number not
  less than N`` / ``not greater than N``; a Number that is no number:
  ``Parameter 'X' must be a number``;
- with a ``ConstraintDescription``, a pattern, length or value failure reads
  ``Parameter 'X' failed to satisfy constraint: <ConstraintDescription>``.

Defaults count like given values; list types (``CommaDelimitedList``,
``List<...>``) are checked element by element (AllowedValues,
AllowedPattern). A stack set instance is a stack too: a stack set's
parameters (or an instance's overrides) that break a constraint fail that
instance (``OUTDATED``, DetailedStatus ``FAILED``, the message as
``StatusReason``, see ext_stacksets.py), not the CreateStackSet call.

AWS: a template with IAM resources (``AWS::IAM::Role``, ``User``, ``Group``,
``Policy``, ``ManagedPolicy``, ``InstanceProfile``, ``AccessKey``,
``UserToGroupAddition``, ``RolePolicy``, ``UserPolicy``, ``GroupPolicy``)
needs ``CAPABILITY_IAM`` or ``CAPABILITY_NAMED_IAM``; one with a custom name
(``RoleName``, ``UserName``, ``GroupName``, ``ManagedPolicyName``,
``InstanceProfileName``) needs ``CAPABILITY_NAMED_IAM``. Otherwise
CreateStack, UpdateStack (also with ``UsePreviousTemplate``),
CreateChangeSet, CreateStackSet and UpdateStackSet answer
``InsufficientCapabilitiesException`` ``Requires capabilities :
[CAPABILITY_NAMED_IAM]`` (or ``[CAPABILITY_IAM]``) and do nothing.

moto 5.2.5: ignores both: any value is taken (a Number that is no number
fails with HTTP 500), and ``Capabilities`` is never looked at.

Patch: ``ResourceMap.load_parameters`` (every stack creation, stack set
instances included) and ``Stack.update`` (before anything is changed) check
the effective values (given, or the default) against the template's
constraints; the CloudFormation handlers of the five actions above check
the capabilities of the template they are given (or the stored one with
``UsePreviousTemplate``) before moto runs. Parameters of type
``AWS::SSM::Parameter::*`` and ``AWS::EC2::*`` are not checked. Conditions
are not evaluated for capabilities (a named role under a false condition
still needs CAPABILITY_NAMED_IAM, as AWS validates the template as a whole).
"""

from __future__ import annotations

import re
from typing import Any

IAM_TYPES = {
    "AWS::IAM::AccessKey",
    "AWS::IAM::Group",
    "AWS::IAM::GroupPolicy",
    "AWS::IAM::InstanceProfile",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::Policy",
    "AWS::IAM::Role",
    "AWS::IAM::RolePolicy",
    "AWS::IAM::User",
    "AWS::IAM::UserPolicy",
    "AWS::IAM::UserToGroupAddition",
}
NAME_PROPERTY = {
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
}


# -- parameters ---------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parameter_problem(name: str, slot: dict[str, Any], value: Any) -> str | None:
    """AWS's ValidationError message for one parameter value, or None."""
    kind = str(slot.get("Type", "String"))
    if kind.startswith(("AWS::SSM::", "AWS::EC2::", "List<AWS::")):
        return None
    described = slot.get("ConstraintDescription")

    def failed(default: str) -> str:
        if described:
            return f"Parameter '{name}' failed to satisfy constraint: {described}"
        return default

    is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
    if is_list:
        items = value if isinstance(value, list) else [v for v in str(value).split(",")]
    else:
        items = [value]
    numeric = kind in ("Number", "List<Number>")
    for item in items:
        text = _text(item)
        if numeric and _number(text) is None:
            return f"Parameter '{name}' must be a number"
        allowed = slot.get("AllowedValues")
        if isinstance(allowed, list) and allowed:
            if numeric:
                ok = any(_number(a) is not None and _number(a) == _number(text) for a in allowed)
            else:
                ok = text in [_text(a) for a in allowed]
            if not ok:
                return f"Parameter '{name}' must be one of AllowedValues"
        pattern = slot.get("AllowedPattern")
        if isinstance(pattern, str):
            try:
                matched = re.fullmatch(pattern, text) is not None
            except re.error:
                matched = True  # a Java-only construct: not checked
            if not matched:
                return failed(f"Parameter '{name}' must match pattern {pattern}")
    if is_list:
        return None
    text = _text(value)
    if not numeric:
        for key, compare, words in (
            ("MinLength", lambda n: len(text) >= n, "at least"),
            ("MaxLength", lambda n: len(text) <= n, "at most"),
        ):
            limit = _number(slot.get(key)) if key in slot else None
            if limit is not None and not compare(int(limit)):
                return failed(f"Parameter '{name}' must contain {words} {int(limit)} characters")
    else:
        number = _number(text)
        for key, compare, words in (
            ("MinValue", lambda n: number >= n, "not less than"),
            ("MaxValue", lambda n: number <= n, "not greater than"),
        ):
            limit = _number(slot.get(key)) if key in slot else None
            if limit is not None and not compare(limit):
                return failed(f"Parameter '{name}' must be a number {words} {_text(slot.get(key))}")
    return None


def check_parameters(template: dict[str, Any], given: dict[str, Any]) -> None:
    """Raise moto's ValidationError for the first value that breaks a constraint."""
    from moto.cloudformation.exceptions import ValidationError

    slots = template.get("Parameters") or {}
    if not isinstance(slots, dict):
        return
    for name, slot in slots.items():
        if not isinstance(slot, dict):
            continue
        value = given[name] if name in given else slot.get("Default")
        if value is None:
            continue  # missing: moto's own error
        problem = parameter_problem(name, slot, value)
        if problem is not None:
            raise ValidationError(message=problem)


# -- capabilities ---------------------------------------------------------------------


def required_capability(template: dict[str, Any]) -> str | None:
    """CAPABILITY_NAMED_IAM, CAPABILITY_IAM or None for a parsed template."""
    resources = template.get("Resources") or {}
    if not isinstance(resources, dict):
        return None
    needed = None
    for resource in resources.values():
        if not isinstance(resource, dict):
            continue
        kind = resource.get("Type")
        if kind not in IAM_TYPES:
            continue
        needed = needed or "CAPABILITY_IAM"
        props = resource.get("Properties") or {}
        if isinstance(props, dict) and NAME_PROPERTY.get(kind) in props:
            return "CAPABILITY_NAMED_IAM"
    return needed


def check_capabilities(template: Any, capabilities: list[str]) -> None:
    from moto.cloudformation.exceptions import CloudFormationError
    from moto.cloudformation.models import Stack

    if not template:
        return
    try:
        parsed = template if isinstance(template, dict) else Stack.parse_template(template)
    except Exception:
        return  # moto reports a broken template itself
    if not isinstance(parsed, dict):
        return
    needed = required_capability(parsed)
    granted = set(capabilities or [])
    if needed is None or "CAPABILITY_NAMED_IAM" in granted:
        return
    if needed == "CAPABILITY_IAM" and "CAPABILITY_IAM" in granted:
        return

    class InsufficientCapabilities(CloudFormationError):
        code = "InsufficientCapabilitiesException"

    raise InsufficientCapabilities(f"Requires capabilities : [{needed}]")


def _capabilities(response: Any) -> list[str]:
    value = response._get_param("Capabilities")
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _template_of(response: Any, stored: Any = None) -> Any:
    if response._get_bool_param("UsePreviousTemplate", False):
        return stored
    body = response._get_param("TemplateBody")
    url = response._get_param("TemplateURL")
    if not body and url:
        try:
            body = response._get_stack_from_s3_url(url)
        except Exception:
            return None  # moto answers for a bad URL
    return body


def _install_failure_marks() -> None:
    """Mark an exception raised while a resource is created or updated with
    the resource (logical id, type), innermost first, for the StatusReason of
    a failed stack set instance (ext_stacksets.status_reason)."""
    import moto.cloudformation.parsing as parsing

    def marking(original: Any) -> Any:
        def wrapper(logical_id: str, resource_json: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(logical_id, resource_json, *args, **kwargs)
            except Exception as exc:
                if getattr(exc, "keyfleet_resource", None) is None:
                    try:
                        exc.keyfleet_resource = (logical_id, resource_json.get("Type"))  # type: ignore[attr-defined]
                    except Exception:
                        pass
                raise

        return wrapper

    parsing.parse_and_create_resource = marking(parsing.parse_and_create_resource)
    parsing.parse_and_update_resource = marking(parsing.parse_and_update_resource)


def install() -> None:
    from moto.cloudformation.models import Stack
    from moto.cloudformation.parsing import ResourceMap
    from moto.cloudformation.responses import CloudFormationResponse

    original_load_parameters = ResourceMap.load_parameters

    def load_parameters(self: Any) -> None:
        check_parameters(self._template or {}, self.input_parameters or {})
        original_load_parameters(self)

    ResourceMap.load_parameters = load_parameters  # type: ignore[method-assign]
    _install_failure_marks()

    original_update = Stack.update

    def update(self: Any, template: str, role_arn: str | None = None,
               parameters: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> None:
        given = parameters if parameters else (self.resource_map.input_parameters or {})
        check_parameters(self.parse_template(template) or {}, given)
        original_update(self, template, role_arn=role_arn, parameters=parameters, tags=tags)

    Stack.update = update  # type: ignore[method-assign]

    def stored_stack_template(response: Any) -> Any:
        try:
            return response.cloudformation_backend.get_stack(response._get_param("StackName")).template
        except Exception:
            return None

    def stored_stackset_template(response: Any) -> Any:
        try:
            return response.cloudformation_backend.describe_stack_set(
                response._get_param("StackSetName")
            ).template
        except Exception:
            return None

    def guarded(original: Any, stored: Any = None) -> Any:
        def handler(self: Any) -> Any:
            template = _template_of(self, stored(self) if stored else None)
            check_capabilities(template, _capabilities(self))
            return original(self)

        return handler

    CloudFormationResponse.create_stack = guarded(CloudFormationResponse.create_stack)  # type: ignore[method-assign]
    CloudFormationResponse.update_stack = guarded(  # type: ignore[method-assign]
        CloudFormationResponse.update_stack, stored_stack_template
    )
    CloudFormationResponse.create_change_set = guarded(  # type: ignore[method-assign]
        CloudFormationResponse.create_change_set, stored_stack_template
    )
    CloudFormationResponse.create_stack_set = guarded(CloudFormationResponse.create_stack_set)  # type: ignore[method-assign]
    CloudFormationResponse.update_stack_set = guarded(  # type: ignore[method-assign]
        CloudFormationResponse.update_stack_set, stored_stackset_template
    )

"""CloudFormation: Fn::FindInMap with a Number parameter as key; inline
role policies stored as JSON.

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
"""

from __future__ import annotations

import json
from typing import Any


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

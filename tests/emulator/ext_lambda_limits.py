"""Lambda: the 4 KB environment limit; reserved concurrency as configuration.

AWS: the environment variables of a function (all keys and values together,
measured as their compact JSON, ``{"KEY":"value",...}``, in UTF-8) may not
exceed 4 KB (4096 bytes). CreateFunction and UpdateFunctionConfiguration
(and CloudFormation, which calls them) refuse more with HTTP 400
``InvalidParameterValueException``: ``Lambda was unable to configure your
environment variables because the environment variables you have provided
exceeded the 4KB limit. String measured: <the JSON>``.

moto 5.2.5: takes any size.

Patch: ``LambdaBackend.create_function`` and
``LambdaFunction.update_configuration`` (UpdateFunctionConfiguration and a
stack update of an ``AWS::Lambda::Function``) check the size first and
raise that error; nothing is created or changed.

AWS: ``ReservedConcurrentExecutions`` of an ``AWS::Lambda::Function`` is the
function's reserved concurrency; a stack update that changes or removes it
changes or removes the reservation. GetFunction shows
``Concurrency.ReservedConcurrentExecutions``, also when it is 0 (a function
that never runs).

moto 5.2.5: a stack update ignores the property (the first value stays);
GetFunction leaves ``Concurrency`` out for 0.

Patch: the stack update sets (or, when the property is gone, removes) the
reservation; GetFunction shows a reservation of 0. The reservation itself is
enforced by ext_lambda_exec.py and ext_lambda_esm.py.
"""

from __future__ import annotations

import json
from typing import Any

ENVIRONMENT_LIMIT = 4096


def check_environment(variables: Any) -> None:
    from moto.awslambda.exceptions import InvalidParameterValueException

    if not isinstance(variables, dict) or not variables:
        return
    measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode("utf-8")) > ENVIRONMENT_LIMIT:
        raise InvalidParameterValueException(
            "Lambda was unable to configure your environment variables because the environment "
            f"variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )


def _variables(environment: Any) -> Any:
    return environment.get("Variables") if isinstance(environment, dict) else None


def install() -> None:
    from moto.awslambda.models import LambdaBackend, LambdaFunction

    original_create = LambdaBackend.create_function
    original_update = LambdaFunction.update_configuration
    original_cfn_update = LambdaFunction.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    original_get_code = LambdaFunction.get_code

    def create_function(self: Any, spec: dict[str, Any]) -> Any:
        check_environment(_variables(spec.get("Environment")))
        return original_create(self, spec)

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "Environment" in config_updates:
            check_environment(_variables(config_updates["Environment"]))
        return original_update(self, config_updates)

    def update_from_cloudformation_json(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        fn = original_cfn_update(
            cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
        )
        fn.reserved_concurrency = cloudformation_json.get("Properties", {}).get("ReservedConcurrentExecutions")
        return fn

    def get_code(self: Any) -> dict[str, Any]:
        resp = original_get_code(self)
        if self.reserved_concurrency is not None and str(self.reserved_concurrency) == "0":
            resp["Concurrency"] = {"ReservedConcurrentExecutions": 0}
        return resp

    LambdaBackend.create_function = create_function  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
    LambdaFunction.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)  # type: ignore[method-assign,assignment]
    LambdaFunction.get_code = get_code  # type: ignore[method-assign]

"""The real schemas the rendered objects must satisfy (vendored in tests/schemas/, and kubernetes-validate).

CRD schemas and the Helm values schema list properties without forbidding others; the API server silently prunes
unknown fields of a structural CRD schema and Helm ignores unknown values, so a typo would vanish without an error.
`strict` closes every object schema that lists properties, so a misspelt field fails the test instead.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import jsonschema

from tests import schemas as vendored

KUBERNETES_VERSION = "1.30"


def strict(schema: Any) -> Any:
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def _crd_schema(filename: str, version: str) -> dict[str, Any]:
    crd = vendored.load_yaml(filename)
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return served["schema"]["openAPIV3Schema"]


@lru_cache
def seldon_deployment_validator() -> jsonschema.Validator:
    return jsonschema.Draft7Validator(strict(_crd_schema("seldon-core-1.17.1-seldondeployments.crd.yaml", "v1")))


@lru_cache
def pachyderm_values_validator() -> jsonschema.Validator:
    schema = vendored.load_json("pachyderm-helm-values.schema.json")
    return jsonschema.Draft7Validator(strict(schema))


@lru_cache
def pipeline_spec_validator() -> jsonschema.Validator:
    schema = vendored.load_json("pachyderm-CreatePipelineRequest.schema.json")
    return jsonschema.validators.validator_for(schema)(schema)


def errors(validator: jsonschema.Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


@lru_cache
def tfjob_validator() -> jsonschema.Validator:
    return jsonschema.Draft7Validator(strict(_crd_schema("kubeflow-training-operator-1.9.0-tfjobs.crd.yaml", "v1")))


@lru_cache
def pod_monitor_validator() -> jsonschema.Validator:
    return jsonschema.Draft7Validator(strict(_crd_schema("prometheus-operator-0.93.0-podmonitors.crd.yaml", "v1")))

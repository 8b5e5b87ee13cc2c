"""The pod template's admission schema (`controller/podschema.py`), converted from the pinned Kubernetes
release's own OpenAPI. Nothing here is hand-written: the schema
comes from `api/openapi-spec/v3/api__v1_openapi.json` in the `k8s.io/kubernetes`
module the sandbox builds from, turned into a structural CRD schema:

- `$ref`s are inlined (PodSpec has no recursive types);
- descriptions, defaults and strategic-merge hints are dropped (the CRD must stay
  small, and list-map keys need defaults the CRD cannot carry);
- `IntOrString` and `Quantity` become `x-kubernetes-int-or-string`;
- `metadata` keeps `labels` and `annotations` (all a pod template's metadata can use).

`python -m devkit.sandbox.podschema` regenerates `controller/schemas/pod-template-spec.json`;
an integration test checks it against the module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from controller.podschema import SCHEMA_PATH
from devkit.sandbox import versions

OPENAPI_FILE = "api/openapi-spec/v3/api__v1_openapi.json"
ROOT = "io.k8s.api.core.v1.PodTemplateSpec"
INT_OR_STRING = ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity")
KEPT = ("type", "items", "properties", "required", "enum", "format", "additionalProperties", "nullable",
        "maxLength", "minLength", "maximum", "minimum", "pattern", "maxItems", "minItems")
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


# Referenced types that the CRD spells its own way.
SPECIAL: dict[str, dict[str, Any]] = {
    **{name: {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
       for name in INT_OR_STRING},
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
        "type": "object", "properties": {"labels": STRING_MAP, "annotations": STRING_MAP}},
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": {"type": "string", "format": "date-time"},
}


def convert(schemas: dict[str, Any]) -> dict[str, Any]:
    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "allOf" in node and len(node["allOf"]) == 1:
            node = {**node, **node["allOf"][0]}
            node.pop("allOf")
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            return SPECIAL.get(name) or resolve(schemas[name])
        out: dict[str, Any] = {}
        for key in KEPT:
            if key not in node:
                continue
            value = node[key]
            if key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
                out[key] = resolve(value)
            elif key == "properties":
                out[key] = {name: resolve(child) for name, child in sorted(value.items())}
            elif key == "format" and value not in ("int32", "int64", "double", "byte", "date-time"):
                continue  # formats the CRD schema does not know
            else:
                out[key] = value
        if node.get("x-kubernetes-preserve-unknown-fields"):
            out["x-kubernetes-preserve-unknown-fields"] = True
        if "type" not in out and "properties" in out:
            out["type"] = "object"
        return out

    return resolve(schemas[ROOT])


def from_module(module_dir: Path) -> dict[str, Any]:
    document = json.loads((module_dir / OPENAPI_FILE).read_text())
    return convert(document["components"]["schemas"])


def render(schema: dict[str, Any]) -> str:
    return json.dumps({"kubernetes": versions.KUBERNETES, "schema": schema}, indent=1, sort_keys=True) + "\n"


def main() -> int:
    from devkit.sandbox import build
    from devkit.sandbox.gotool import find_or_install_go
    from devkit.sandbox.thirdparty_crds import module_dir

    cache = build.cache_root()
    go = find_or_install_go(cache)
    work = cache / "podschema"
    work.mkdir(parents=True, exist_ok=True)
    source = module_dir(go, f"k8s.io/kubernetes@{versions.KUBERNETES}", work)
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(render(from_module(source)))
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

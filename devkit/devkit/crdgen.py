"""Generate the ModelRollout CRD from the pydantic models in api.py.

Pydantic emits JSON Schema 2020-12; a CRD wants a structural OpenAPI v3.0
schema: no $ref, no anyOf-with-null, no titles, no `additionalProperties: false`,
boolean exclusive bounds. `python -m devkit.crdgen` rewrites crds/.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from controller import api, podschema

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / f"{api.PLURAL}.{api.GROUP}.yaml"

# The pod template is the real PodTemplateSpec of the pinned Kubernetes release (see podschema.py),
# with at least one container.
def _template_schema() -> dict[str, Any]:
    schema = podschema.load()
    schema["required"] = ["spec"]
    schema["properties"]["spec"]["properties"]["containers"]["minItems"] = 1
    return schema


# Derived names: `<name>-candidate` must be a DNS-1035 label (Services), `<name>-<10-char revision>`
# a Deployment name, and `<name>` a label value: 53 characters leaves room for the longest suffix.
MAX_NAME = 63 - len("-candidate")
NAME_RULES: list[dict[str, Any]] = [
    # A rule's fieldPath cannot point into the root metadata, so the message names the field.
    {"rule": f"self.metadata.name.size() <= {MAX_NAME}",
     "message": f"metadata.name must be at most {MAX_NAME} characters: the operator names Services "
                "<name>-candidate, which must fit in 63"},
    # Here, not beside the model: the rule needs metadata.name, which only the root sees.
    # Strings are cut from the URL's host and compared with the name, never built from the name: the
    # apiserver costs a rule by its strings' largest size, and the root's metadata.name has none.
    {"rule": "!self.spec.strategy.steps.exists(s, has(s.shadow) && has(s.shadow.compare) && "
             "has(s.shadow.compare.judge) && [url(s.shadow.compare.judge.url).getHostname()].exists(h, "
             "h.size() >= self.metadata.name.size() && "
             "h.substring(0, self.metadata.name.size()) == self.metadata.name && "
             "[h.substring(self.metadata.name.size())].exists(r, r in ['', '-stable', '-candidate'] || "
             "r.startsWith('.') || r.startsWith('-stable.') || r.startsWith('-candidate.'))))",
     "message": "spec.strategy.steps[].shadow.compare.judge.url is one of the rollout's own Services: a model "
                "cannot judge its own answers"},
    {"rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
     "message": "metadata.name must start with a letter and hold only lowercase letters, digits and '-': "
                "it names the rollout's Services (DNS-1035 labels)"},
]


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _drop_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_none(item) for item in value]
    return value


def _structural(node: Any, defs: dict[str, Any]) -> Any:  # noqa: PLR0912 - one flat rewrite table
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        variants = [variant for variant in node["anyOf"] if variant.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(variants) == 1:
            return _structural({**variants[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs") and not isinstance(value, dict):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
            continue
        if key == "default":
            if value is None:
                continue
            out[key] = _drop_none(value)
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
            continue
        if key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
            continue
        out[key] = _structural(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    structural: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    structural.pop("$defs", None)
    return structural


def crd() -> dict[str, Any]:
    spec = _schema(api.ModelRolloutSpec)
    spec["properties"]["template"] = {**_template_schema(),
                                      "description": spec["properties"]["template"]["description"]}
    spec["description"] = "What to roll out, how traffic moves, and how the candidate is judged."
    status = _schema(api.ModelRolloutStatus)
    status["description"] = "Where the rollout stands, as the operator last observed and decided it."
    status["properties"]["conditions"].update(
        {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
    )
    columns = [
        ("Phase", "string", ".status.phase"),
        ("Step", "string", ".status.stepLabel"),
        ("Weight", "integer", ".status.canaryWeight"),
        ("Mirror", "integer", ".status.mirrorPercent"),
        ("Verdict", "string", ".status.verdict"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["all", "mlops"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": api.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": name, "type": kind, "jsonPath": path} for name, kind, path in columns
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "x-kubernetes-validations": NAME_RULES,
                    "properties": {
                        "apiVersion": {"type": "string", "description": f"{api.GROUP}/{api.VERSION}"},
                        "kind": {"type": "string", "description": api.KIND},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status,
                    },
                }},
            }],
        },
    }


def render() -> str:
    header = "# Generated from controller/api.py by `python -m devkit.crdgen`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    CRD_PATH.parent.mkdir(exist_ok=True)
    CRD_PATH.write_text(render())
    print(f"wrote {CRD_PATH}", file=sys.stderr)

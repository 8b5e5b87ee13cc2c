"""The models run the CRD's own admission rules and reject the same specs, and the CRD matches api.py."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from pydantic import ValidationError

from controller.api import ModelRolloutSpec
from devkit import crdgen
from tests.specs import BAD_SPECS, EXAMPLE, VALID_SPEC, BadSpec


def test_the_valid_example_parses() -> None:
    spec = ModelRolloutSpec.model_validate(VALID_SPEC)
    assert spec.traffic_routing.mode == "gatewayAPI"
    assert [step.kind for step in spec.strategy.steps] == ["shadow", "canary", "canary", "abTest", "pause"]
    assert spec.step_seconds(0) == 1800


def _path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location in the apiserver's field-path spelling: spec.a.b[1].c."""
    text = "spec"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


TWINNED = [bad for bad in BAD_SPECS if bad.twin_reason is not None]


@pytest.mark.parametrize("bad", TWINNED, ids=lambda bad: bad.id)
def test_every_bad_spec_is_rejected_by_the_models_at_the_same_field_for_the_same_reason(bad: BadSpec) -> None:
    """Same field: the twin's location is the admission field or the object that holds it (a
    model-level rule). Same reason: the admission message, or the twin's wording of it."""
    with pytest.raises(ValidationError) as raised:
        ModelRolloutSpec.model_validate(bad.spec())
    errors = raised.value.errors()
    reason = bad.twin_reason or bad.reason
    matching = [e for e in errors if bad.field.startswith(_path(e["loc"])) and (
        reason in e["msg"] or (bad.reason == "should match" and e["type"] == "string_pattern_mismatch")
        or (bad.reason == "unknown field" and e["type"] == "extra_forbidden")
        or (bad.reason == "Required value" and e["type"] == "missing")
        or ("than or equal to" in bad.reason and bad.reason.split(" ", 1)[1] in e["msg"]))]
    assert matching, f"{bad.field} / {reason!r} not among {[(_path(e['loc']), e['msg']) for e in errors]}"


def test_the_committed_crd_matches_api_py() -> None:
    committed = crdgen.CRD_PATH.read_text()
    assert committed == crdgen.render(), "crds/ is stale: run `python -m devkit.crdgen`"


def test_every_field_of_the_crd_has_a_description() -> None:
    """kubectl explain documents every field; inside spec.template the schema (and its words) are Kubernetes' own."""
    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in node.get("properties", {}).items():
            where = f"{path}.{name}"
            if "description" not in child:
                undocumented.append(where)
            if where != ".spec.template":
                walk(child, where)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(schema, "")
    # The apiserver forbids a description on the root metadata: it is the standard ObjectMeta.
    assert undocumented == [".metadata"]


def test_the_readmes_example_is_the_example_file_verbatim() -> None:
    """The README shows examples/fraud-scorer.yaml word for word; test_admission applies that file."""
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks
    ModelRolloutSpec.model_validate(VALID_SPEC)


def test_the_models_run_every_admission_rule_the_crd_carries(monkeypatch: pytest.MonkeyPatch) -> None:
    """One source: each CEL rule of the CRD's spec is evaluated by the models too (admission.check),
    on the valid spec and the bad ones, so no rule is enforced by the apiserver alone."""
    from controller import admission

    ran: set[str] = set()
    check = admission.check

    def recording(rules: list[Any], value: Any) -> None:
        ran.update(str(entry["rule"]) for entry in rules)
        check(rules, value)

    monkeypatch.setattr(admission, "check", recording)
    for spec in [VALID_SPEC, *(bad.spec() for bad in BAD_SPECS)]:
        with contextlib.suppress(ValidationError):
            ModelRolloutSpec.model_validate(spec)
    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    in_spec: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            in_spec.update(entry["rule"] for entry in node.get("x-kubernetes-validations", []))
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    collect(schema)
    assert len(in_spec) > 30, "the CRD carries the spec's CEL rules"
    assert in_spec <= ran, f"rules only the apiserver runs: {sorted(in_spec - ran)}"

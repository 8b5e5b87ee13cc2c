"""The pydantic twins of the admission rules reject the same specs, and the CRD matches api.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller import crdgen
from controller.api import ModelRolloutSpec
from tests.specs import BAD_SPECS, VALID_SPEC, BadSpec


def test_the_valid_example_parses() -> None:
    spec = ModelRolloutSpec.model_validate(VALID_SPEC)
    assert spec.traffic_routing.mode == "gatewayAPI"
    assert [step.kind for step in spec.strategy.steps] == ["shadow", "canary", "canary", "abTest", "pause"]
    assert spec.step_seconds(0) == 1800


@pytest.mark.parametrize("bad", BAD_SPECS, ids=lambda bad: bad.id)
def test_every_bad_spec_is_rejected_by_the_models(bad: BadSpec) -> None:
    with pytest.raises(ValidationError):
        ModelRolloutSpec.model_validate(bad.spec())


def test_the_committed_crd_matches_api_py() -> None:
    committed = crdgen.CRD_PATH.read_text()
    assert committed == crdgen.render(), "crds/ is stale: run `python -m controller.crdgen`"

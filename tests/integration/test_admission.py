"""The real apiserver rejects bad ModelRollouts at admission, naming the field and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import kubectl
from kubernetes import client

from controller import api
from tests.specs import BAD_SPECS, EXAMPLE, VALID_SPEC, BadSpec

pytestmark = pytest.mark.cluster


def _create(api_client: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    body = {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "metadata": {"name": name},
            "spec": spec}
    # kubectl sends Strict field validation by default; so does this, so unknown fields fail.
    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, body, field_validation="Strict"
    )


def test_the_valid_example_is_accepted(api_client: client.ApiClient, namespace: str, crd_installed: None) -> None:
    created = _create(api_client, namespace, "good", VALID_SPEC)
    assert created["spec"]["strategy"]["steps"][0]["shadow"]["percent"] == 100


def test_the_readmes_example_applies_verbatim(kubeconfig: Path, namespace: str, crd_installed: None) -> None:
    """`kubectl apply -f examples/fraud-scorer.yaml`, as the README shows it (its text is the README's)."""
    out = kubectl(kubeconfig, "-n", namespace, "apply", "-f", str(EXAMPLE))
    assert "modelrollout.rollouts.mlops.dev/fraud-scorer created" in out


@pytest.mark.parametrize("bad", BAD_SPECS, ids=lambda bad: bad.id)
def test_bad_spec_is_rejected_naming_field_and_reason(
    api_client: client.ApiClient, namespace: str, crd_installed: None, bad: BadSpec
) -> None:
    with pytest.raises(client.ApiException) as error:
        _create(api_client, namespace, f"bad-{bad.id}", bad.spec())
    assert error.value.status in (400, 422), error.value.body
    message = json.loads(error.value.body or "{}")["message"]
    assert bad.field in message, message
    assert bad.reason in message, message


@pytest.mark.parametrize(("name", "reason"), [
    ("a" * 54, "must be at most 53 characters"),
    ("9-lives", "must start with a letter"),
])
def test_names_the_operator_cannot_derive_objects_from_are_rejected(
    api_client: client.ApiClient, namespace: str, crd_installed: None, name: str, reason: str,
) -> None:
    with pytest.raises(client.ApiException) as error:
        _create(api_client, namespace, name, VALID_SPEC)
    message = json.loads(error.value.body or "{}")["message"]
    assert "metadata.name" in message, message
    assert reason in message, message


@pytest.mark.parametrize(("url", "refused"), [
    ("http://scorer-candidate.team-a.svc:8080", True),
    ("https://scorer-stable", True),
    ("http://scorer:8080/v1", True),
    ("http://scorer-judge.team-a.svc:8000", False),
])
def test_a_judge_that_is_one_of_the_rollouts_own_services_is_refused(
    api_client: client.ApiClient, namespace: str, crd_installed: None, url: str, refused: bool,
) -> None:
    spec = json.loads(json.dumps(VALID_SPEC))
    spec["strategy"]["steps"][0]["shadow"]["compare"] = {"format": "openai", "judge": {"url": url,
                                                                                       "model": "judge-7b"}}
    if not refused:
        assert _create(api_client, namespace, "scorer", spec)["spec"]["strategy"]["steps"][0]["shadow"]
        return
    with pytest.raises(client.ApiException) as error:
        _create(api_client, namespace, "scorer", spec)
    message = json.loads(error.value.body or "{}")["message"]
    assert "compare.judge.url is one of the rollout's own Services" in message, message


def test_the_longest_allowed_name_works_for_every_derived_object(
    api_client: client.ApiClient, namespace: str, crd_installed: None,
) -> None:
    created = _create(api_client, namespace, "a" * 53, VALID_SPEC)
    assert created["metadata"]["name"] == "a" * 53


def test_kubectl_explain_shows_the_typed_analysis_status(kubeconfig: Path, crd_installed: None) -> None:
    """status.analysis has a schema now: kubectl explain documents it, down to a guardrail's evidence."""
    analysis = kubectl(kubeconfig, "explain", "modelrollouts.status.analysis")
    assert "The last analysis look of the current step attempt" in analysis
    for field in ("guardrails", "abTest", "sampleRatio", "decidedBy", "counters"):
        assert field in analysis
    guardrail = kubectl(kubeconfig, "explain", "modelrollouts.status.analysis.guardrails.evidence")
    assert "number" in guardrail
    effect = kubectl(kubeconfig, "explain", "modelrollouts.spec.strategy.steps.abTest.effect")
    assert "`absolute` (the default)" in effect

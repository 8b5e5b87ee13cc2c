"""Helpers for rollout tests; they live in e2e.harness so the demo and benchmarks share them."""

from e2e.harness import (
    Rollouts,
    httproute,
    httproute_state,
    kubectl,
    operator_process,
    rollout_body,
    virtualservice,
    virtualservice_state,
    wait_until,
    with_image,
)

__all__ = [
    "Rollouts",
    "httproute",
    "httproute_state",
    "kubectl",
    "operator_process",
    "rollout_body",
    "virtualservice",
    "virtualservice_state",
    "wait_until",
    "with_image",
]

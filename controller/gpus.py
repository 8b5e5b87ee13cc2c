"""GPUs a pod template asks for: the nvidia.com/gpu limits of its containers (requests when no limit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"


def quantity(value: Any) -> int:
    """An extended resource's quantity: a whole number ("2", 2)."""
    return int(str(value))


def pod_gpus(template: Mapping[str, Any]) -> int:
    """GPUs per pod of a pod template ({metadata, spec}); an extended resource is a whole number."""
    total = 0
    for container in (template.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        amount = (resources.get("limits") or {}).get(GPU_RESOURCE, (resources.get("requests") or {}).get(GPU_RESOURCE))
        total += quantity(amount) if amount is not None else 0
    return total

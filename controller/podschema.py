"""The pod template's admission schema: the real `PodTemplateSpec` of the pinned Kubernetes release.

`spec.template` is validated by the apiserver against it, so `containers: [{}]`, a container
without `name` or a typo in a pod field is rejected at admission with the field's path, never
later by a Deployment write. `controller/schemas/pod-template-spec.json` is generated from the
Kubernetes module's own OpenAPI by `python -m devkit.sandbox.podschema` (dev tooling, which
says how); an integration test checks it against the module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent / "schemas" / "pod-template-spec.json"


def load() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())["schema"]
    return schema

"""The committed pod template schema is exactly what the pinned Kubernetes module's OpenAPI gives."""

from __future__ import annotations

from devkit.sandbox import build, versions
from devkit.sandbox import podschema as generator
from devkit.sandbox.gotool import find_or_install_go
from devkit.sandbox.thirdparty_crds import module_dir

from controller import podschema


def test_the_committed_schema_is_generated_from_the_pinned_kubernetes_openapi() -> None:
    cache = build.cache_root()
    work = cache / "podschema"
    work.mkdir(parents=True, exist_ok=True)
    source = module_dir(find_or_install_go(cache), f"k8s.io/kubernetes@{versions.KUBERNETES}", work)
    assert podschema.SCHEMA_PATH.read_text() == generator.render(generator.from_module(source)), \
        "controller/schemas/pod-template-spec.json is stale: run `python -m devkit.sandbox.podschema`"
    containers = podschema.load()["properties"]["spec"]["properties"]["containers"]
    assert "name" in containers["items"]["required"]

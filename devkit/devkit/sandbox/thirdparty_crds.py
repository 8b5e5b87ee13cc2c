"""Gateway API and Istio CRDs, taken from their pinned Go modules and cached.

The YAML is never hand-written: `go mod download` fetches the modules, and the
files are copied out of the read-only module cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from devkit.sandbox import versions
from devkit.sandbox.errors import SandboxError
from devkit.sandbox.gotool import find_or_install_go


def module_dir(go: Path, module: str, workdir: Path) -> Path:
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    result = subprocess.run(
        [str(go), "mod", "download", "-json", module],
        cwd=workdir, env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise SandboxError(f"go mod download {module} failed: {result.stderr.strip()[-500:]}")
    return Path(json.loads(result.stdout)["Dir"])


def ensure_crd_files(cache: Path) -> list[Path]:
    """Return the CRD (and related policy) files to apply, fetching them once."""
    target = cache / "crds" / f"gateway-api-{versions.GATEWAY_API}_istio-{versions.ISTIO_API}"
    done = target / ".complete"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        go = find_or_install_go(cache)
        gateway = module_dir(go, f"sigs.k8s.io/gateway-api@{versions.GATEWAY_API}", target)
        istio = module_dir(go, f"istio.io/api@{versions.ISTIO_API}", target)
        for source in sorted((gateway / "config" / "crd" / "experimental").glob("*.yaml")):
            if source.name != "kustomization.yaml":
                shutil.copyfile(source, target / f"gateway-api_{source.name}")
        shutil.copyfile(
            istio / "kubernetes" / "customresourcedefinitions.gen.yaml", target / "istio_crds.yaml"
        )
        for copied in target.glob("*.yaml"):
            copied.chmod(0o644)
        done.touch()
    return sorted(target.glob("*.yaml"))

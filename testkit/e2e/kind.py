"""`modelrollout demo --cluster kind`: the same demo on a kind cluster, for machines with Docker.

1. create a kind cluster (the user's `kind`, else one built from its Go module);
2. load the image archive of scripts/build-image.sh (`kind load image-archive`);
3. install the CRDs and the chart with that image, and wait until its operator holds the Lease;
4. run the same demo. kwok's controller runs in the cluster and fakes the GPU nodes, as in the
   sandbox; the simulated model servers, Prometheus and the load stay on this machine, where the
   pod cannot reach them, so the chart's operator is scaled to 0 and the demo runs its own.

These machines have no Docker engine: CI never runs this path. The unit tests check the generated
kind config and the command sequence, and that a missing Docker stops it with one clear message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from devkit.sandbox import build, nodes, thirdparty_crds, versions
from devkit.sandbox.envoy_gateway import EnvoyGateway
from devkit.sandbox.errors import SandboxError
from devkit.sandbox.gotool import find_or_install_go

from devkit import crdgen

CLUSTER = "modelrollout-demo"
REPOSITORY = Path(__file__).resolve().parents[2]
IMAGE = "modelrollout:0.1.0"
NO_DOCKER = ("modelrollout demo --cluster kind needs a running Docker engine, and `docker info` {reason}. "
             "Without Docker, `modelrollout demo` runs the same demo on the local sandbox.")


@dataclass(frozen=True)
class Step:
    what: str
    argv: list[str]


def kind_config() -> dict[str, Any]:
    """One node: kind lets its control plane run pods, and the GPU nodes are kwok's fakes."""
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": CLUSTER,
            "nodes": [{"role": "control-plane", "labels": {"node.modelrollout.dev/pool": "system"}}]}


def kwok_kustomization() -> dict[str, Any]:
    """kwok's controller and its fast pod and node stages, from a copy of the module's kustomize/
    beside it in `upstream/` (kustomize takes no absolute paths), at the sandbox's kwok version."""
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["upstream/kwok", "upstream/stage/fast"],
            "images": [{"name": "registry.k8s.io/kwok/kwok", "newTag": versions.KWOK}]}


def write_inputs(workdir: Path, kwok_module: Path) -> None:
    """The kind config, the kwok kustomization and the fake nodes that `steps` apply."""
    (workdir / "kind.yaml").write_text(yaml.safe_dump(kind_config()))
    shutil.copytree(kwok_module / "kustomize", workdir / "kwok" / "upstream")
    (workdir / "kwok" / "kustomization.yaml").write_text(yaml.safe_dump(kwok_kustomization()))
    (workdir / "nodes.json").write_text(json.dumps(fake_nodes()))


def fake_nodes() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List",
            "items": [nodes.node_manifest(shape, index) for index, shape in enumerate(nodes.DEFAULT_NODES)]}


def steps(kind: Path, kubectl: Path, helm: Path, workdir: Path, archive: Path,
          crds: list[Path]) -> list[Step]:
    """Every command, in order; `workdir` holds the kind config, the kwok kustomization and the nodes."""
    kubeconfig = str(workdir / "kubeconfig")
    k = [str(kubectl), "--kubeconfig", kubeconfig]
    return [
        Step("build the operator's image", ["bash", str(REPOSITORY / "scripts" / "build-image.sh")]),
        Step("create the kind cluster", [str(kind), "create", "cluster", "--name", CLUSTER, "--config",
                                         str(workdir / "kind.yaml"), "--kubeconfig", kubeconfig, "--wait", "180s"]),
        Step("load the image into its node", [str(kind), "load", "image-archive", str(archive), "--name", CLUSTER]),
        Step("install the CRDs", [*k, "apply", "--server-side", "-f", str(crdgen.CRD_PATH),
                                  *[arg for crd in crds for arg in ("-f", str(crd))]]),
        Step("create the operator's namespace", [*k, "apply", "-f", str(REPOSITORY / "manifests" / "namespace.yaml")]),
        Step("install the chart", [str(helm), "--kubeconfig", kubeconfig, "install", "modelrollout",
                                   str(REPOSITORY / "charts" / "modelrollout"), "--namespace", "modelrollout-system",
                                   "--skip-crds", "--set", "image.pullPolicy=Never", "--set", "replicas=1",
                                   "--wait", "--timeout", "5m"]),
        Step("wait for the operator's Lease", [*k, "-n", "modelrollout-system", "wait", "--for=create",
                                               "lease/modelrollout", "--timeout=120s"]),
        Step("start kwok in the cluster", [*k, "apply", "-k", str(workdir / "kwok")]),
        Step("add the fake GPU nodes", [*k, "apply", "-f", str(workdir / "nodes.json")]),
        Step("hand the demo to its own operator", [*k, "-n", "modelrollout-system", "scale", "deployment",
                                                   "modelrollout", "--replicas=0"]),
    ]


def require_docker() -> None:
    docker = shutil.which("docker")
    if docker is None:
        raise SandboxError(NO_DOCKER.format(reason="cannot run: there is no `docker` on PATH"))
    result = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise SandboxError(NO_DOCKER.format(reason=f"failed: {result.stderr.strip()[:200]}"))


def run_kind_demo(keep: bool = False) -> int:
    """`modelrollout demo --cluster kind`: the sandbox's errors are told, not raised."""
    try:
        return _run_kind_demo(keep)
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run_kind_demo(keep: bool) -> int:
    from e2e.demo import demo_on

    require_docker()
    kind = Path(shutil.which("kind") or build.ensure_tool(build.KIND))
    helm = build.ensure_tool(build.HELM)
    binaries = build.ensure_binaries()
    go = find_or_install_go(build.cache_root())
    kwok_module = thirdparty_crds.module_dir(go, f"sigs.k8s.io/kwok@{versions.KWOK}", build.cache_root())
    workdir = Path(tempfile.mkdtemp(prefix="modelrollout-kind-"))
    write_inputs(workdir, kwok_module)
    archive = build.cache_root() / "image" / "out" / "modelrollout.tar"
    crds = thirdparty_crds.ensure_crd_files(build.cache_root())
    for step in steps(kind, binaries.kubectl, helm, workdir, archive, crds):
        print(f"==> {step.what}", flush=True)
        if subprocess.run(step.argv, check=False).returncode != 0:
            raise SandboxError(f"{step.what} failed: {' '.join(step.argv)}")
    kubeconfig = workdir / "kubeconfig"

    def kubectl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([str(binaries.kubectl), "--kubeconfig", str(kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise SandboxError(f"kubectl {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    # The demo's routes go through Envoy Gateway, its controller run here against kind's apiserver.
    gateway = EnvoyGateway(workdir / "envoy-gateway", kubeconfig, kubectl)
    try:
        print("==> starting Envoy Gateway's controller", flush=True)
        gateway.start()
        return demo_on(kubeconfig, keep)
    finally:
        gateway.stop()
        if not keep:
            subprocess.run([str(kind), "delete", "cluster", "--name", CLUSTER], check=False)

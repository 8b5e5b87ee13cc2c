"""`modelrollout demo --cluster kind`: its kind config, its command sequence, and its one clear error
without Docker. (These machines have no Docker engine: the path itself never runs in CI.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from devkit.sandbox import versions
from devkit.sandbox.errors import SandboxError
from e2e import kind

from controller.__main__ import main

TOOLS = {"kind": Path("/bin/kind"), "kubectl": Path("/bin/kubectl"), "helm": Path("/bin/helm")}


def test_the_kind_cluster_is_one_node_and_named_for_the_demo() -> None:
    config = kind.kind_config()
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == kind.CLUSTER
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]


def test_the_commands_build_load_install_and_then_hand_over(tmp_path: Path) -> None:
    archive = tmp_path / "modelrollout.tar"
    plan = kind.steps(TOOLS["kind"], TOOLS["kubectl"], TOOLS["helm"], tmp_path, archive, [tmp_path / "gw.yaml"])
    assert [step.what for step in plan] == [
        "build the operator's image", "create the kind cluster", "load the image into its node", "install the CRDs",
        "create the operator's namespace", "install the chart", "wait for the operator's Lease",
        "start kwok in the cluster", "add the fake GPU nodes", "hand the demo to its own operator",
    ]
    by_name = {step.what: step.argv for step in plan}
    assert by_name["build the operator's image"][-1].endswith("scripts/build-image.sh")
    assert by_name["create the kind cluster"][:4] == ["/bin/kind", "create", "cluster", "--name"]
    assert str(tmp_path / "kind.yaml") in by_name["create the kind cluster"]
    assert by_name["load the image into its node"] == ["/bin/kind", "load", "image-archive", str(archive),
                                                        "--name", kind.CLUSTER]
    install = by_name["install the chart"]
    assert install[0] == "/bin/helm" and "image.pullPolicy=Never" in install and "--wait" in install
    assert install[install.index("--namespace") + 1] == "modelrollout-system"
    assert str(tmp_path / "gw.yaml") in by_name["install the CRDs"]
    # Every kubectl and helm command talks to the kind cluster, never the user's current context.
    kubeconfig = str(tmp_path / "kubeconfig")
    for step in plan[3:]:
        assert step.argv[step.argv.index("--kubeconfig") + 1] == kubeconfig


def test_kwok_is_pinned_to_the_sandboxes_version() -> None:
    kustomization = kind.kwok_kustomization()
    assert kustomization["images"] == [{"name": "registry.k8s.io/kwok/kwok", "newTag": versions.KWOK}]
    assert all(not resource.startswith("/") for resource in kustomization["resources"])


def test_without_docker_the_demo_stops_with_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker here
    with pytest.raises(SandboxError, match="needs a running Docker engine"):
        kind.require_docker()
    assert main(["demo", "--cluster", "kind"]) == 1
    error = capsys.readouterr().err
    assert "needs a running Docker engine" in error and "`modelrollout demo` runs the same demo" in error
    assert "Traceback" not in error

"""The Helm chart and the image, as a platform team installs them.

`helm lint`/`helm template` over the chart's options; manifests/ is the chart rendered; and on the
sandbox: `helm install`, then the operator runs from the built OCI image (its own entrypoint, a
read-only root, the chart's ServiceAccount token at the in-cluster path), completes rollouts, and
calls exactly what the chart's RBAC grants: the apiserver's audit log shows no denied call and no
unused grant.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from devkit.sandbox.build import HELM, cache_root, ensure_binaries, ensure_tool
from devkit.sandbox.cluster import Sandbox, SandboxState
from e2e.image_root import ImageProcess, resident_mib, run_image, unpack
from kubernetes import client

from tests.integration.rbac_audit import calls, granted, scenarios
from tests.integration.rollout_helpers import kubectl, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelrollout"
ALL_OPTIONS = ["--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true",
               "--set", "commonLabels.team=ml,commonAnnotations.owner=platform"]


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {}))
    result = subprocess.run([str(ensure_tool(HELM)), *args], capture_output=True, text=True,
                            timeout=300, env=env, check=False)
    assert result.returncode == 0 or not check, f"helm {' '.join(args)}:\n{result.stderr}"
    return result


def rendered(*args: str) -> list[dict[str, Any]]:
    output = helm("template", "modelrollout", str(CHART), "--namespace", "modelrollout-system", *args).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def test_helm_lint_passes_with_every_option() -> None:
    result = helm("lint", "--strict", str(CHART), *ALL_OPTIONS)
    assert "0 chart(s) failed" in result.stdout


def test_the_packaged_chart_carries_the_generated_crd(tmp_path: Path) -> None:
    helm("package", str(CHART), "--destination", str(tmp_path))
    with tarfile.open(tmp_path / "modelrollout-0.1.0.tgz") as archive:
        member = archive.extractfile("modelrollout/crds/modelrollouts.rollouts.mlops.dev.yaml")
        assert member is not None
        assert member.read().decode() == (ROOT / "crds" / "modelrollouts.rollouts.mlops.dev.yaml").read_text()


def test_template_renders_the_toggles_labels_and_scopes() -> None:
    objects = rendered(*ALL_OPTIONS)
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                            "Deployment", "Service", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap",
                            *["ClusterRole"] * 3])  # aggregated to view, edit and admin
    comparators = next(obj for obj in objects if obj["kind"] == "PodMonitor")["spec"]
    assert comparators["selector"]["matchLabels"] == {"rollouts.mlops.dev/component": "comparator"}
    assert comparators["podMetricsEndpoints"][0]["port"] == "admin"
    assert all(obj["metadata"]["labels"]["team"] == "ml" for obj in objects)
    assert all(obj["metadata"]["annotations"]["owner"] == "platform" for obj in objects)
    dashboard = next(obj for obj in objects if obj["kind"] == "ConfigMap")
    assert json.loads(dashboard["data"]["modelrollout.json"])["panels"]
    assert rendered("--include-crds")[0]["kind"] == "CustomResourceDefinition"

    scoped = rendered("--set", "rbac.scope=namespaced", "--set", "rbac.namespaces={ml-a,ml-b}")
    assert not [obj for obj in scoped if obj["kind"].startswith("Cluster")], \
        "namespaced mode grants nothing cluster-wide: no Secret reads outside its namespaces"
    roles = [obj for obj in scoped if obj["kind"] == "Role" and "secrets" in json.dumps(obj["rules"])]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["ml-a", "ml-b"]
    monitored = rendered("--set", "rbac.scope=namespaced", "--set", "rbac.namespaces={ml-a,ml-b}", *ALL_OPTIONS)
    assert next(obj for obj in monitored if obj["kind"] == "PodMonitor")["spec"]["namespaceSelector"] == \
        {"matchNames": ["ml-a", "ml-b"]}, "the comparators are looked for where rollouts may live"
    pod = next(obj for obj in scoped if obj["kind"] == "Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--namespace=ml-a" in args and "--namespace=ml-b" in args

    refused = helm("template", "x", str(CHART), "--set", "rbac.scope=namespaced", check=False)
    assert refused.returncode != 0 and "rbac.namespaces" in refused.stderr


def test_static_shards_are_a_deployment_each_watching_its_own_shard() -> None:
    objects = rendered("--set", "shards=3", "--set", "staticShards=true")
    deployments = [obj for obj in objects if obj["kind"] == "Deployment"]
    assert [obj["metadata"]["name"] for obj in deployments] == [f"modelrollout-shard-{i}" for i in range(3)]
    for index, deployment in enumerate(deployments):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--shards=3" in args and f"--shard={index}" in args
        # Each Deployment's selector is its own: three ReplicaSets never fight over one pod.
        assert deployment["spec"]["selector"]["matchLabels"]["rollouts.mlops.dev/operator-shard"] == str(index)
    assert len([obj for obj in rendered("--set", "shards=3") if obj["kind"] == "Deployment"]) == 1, \
        "without staticShards the replicas share the shards' Leases"


def _secret_grants(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((obj["kind"], obj["metadata"].get("namespace", "")) for obj in objects
                  if obj["kind"] in ("Role", "ClusterRole") and "secrets" in json.dumps(obj["rules"]))


def test_secrets_are_readable_only_where_rollouts_live_unless_widened() -> None:
    assert _secret_grants(rendered()) == [], "by default no Secret anywhere, kube-system least of all"
    assert _secret_grants(rendered("--set", "rbac.namespaces={ml-a,ml-b}")) == [("Role", "ml-a"), ("Role", "ml-b")]
    assert _secret_grants(rendered("--set", "rbac.secretsClusterWide=true")) == [("ClusterRole", "")]
    aggregated = {obj["metadata"]["name"]: obj for obj in rendered() if "aggregate" in obj["metadata"]["name"]}
    assert sorted(aggregated) == [f"modelrollout-aggregate-to-{role}" for role in ("admin", "edit", "view")]
    assert aggregated["modelrollout-aggregate-to-view"]["rules"][0]["verbs"] == ["get", "list", "watch"]
    assert not [obj for obj in rendered("--set", "rbac.scope=namespaced", "--set", "rbac.namespaces={ml-a}")
                if "aggregate" in obj["metadata"]["name"]], "a namespaced install creates no ClusterRole"


@pytest.mark.cluster
def test_the_built_in_edit_role_may_create_modelrollouts_and_view_may_read_them(
    api_client: client.ApiClient, namespace: str, crd_installed: None,
) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    aggregated = [obj for obj in rendered() if "aggregate" in obj["metadata"]["name"]]
    for obj in aggregated:
        obj["metadata"]["name"] = f"{namespace}-{obj['metadata']['name']}"
        rbac.create_cluster_role(obj)  # type: ignore[arg-type]
    try:
        for user, role in (("erin", "edit"), ("vic", "view")):
            rbac.create_namespaced_role_binding(namespace, {  # type: ignore[arg-type]
                "metadata": {"name": user}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                        "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]})

        def allowed(user: str, verb: str) -> bool:
            review = client.AuthorizationV1Api(api_client).create_subject_access_review({  # type: ignore[arg-type]
                "spec": {"user": user, "resourceAttributes": {
                    "namespace": namespace, "verb": verb, "group": "rollouts.mlops.dev",
                    "resource": "modelrollouts"}}})
            return bool(review.status and review.status.allowed)

        # The clusterrole-aggregation controller folds our rules into edit and view.
        wait_until(lambda: allowed("erin", "create") and allowed("vic", "list"), what="aggregated into edit and view")
        assert not allowed("vic", "create"), "view only reads"
    finally:
        for obj in aggregated:
            rbac.delete_cluster_role(obj["metadata"]["name"])


def test_the_pod_meets_the_restricted_pod_security_standard() -> None:
    deployment = next(obj for obj in rendered() if obj["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert "volumes" not in pod, "no writable volume: the operator writes no files"


def test_the_operators_prometheus_is_a_flag_and_its_secret_a_read_only_mount() -> None:
    objects = rendered("--set", "prometheus.address=https://prometheus.monitoring:9090",
                       "--set", "prometheus.secretRef.name=prom")
    pod = next(obj for obj in objects if obj["kind"] == "Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--prometheus-address=https://prometheus.monitoring:9090" in args
    assert "--prometheus-credentials=/etc/modelrollout/prometheus" in args
    secret = {"secretName": "prom", "defaultMode": 0o440}
    assert pod["volumes"] == [{"name": "prometheus-credentials", "secret": secret}]
    assert pod["containers"][0]["volumeMounts"][0]["readOnly"] is True
    assert "secrets" not in json.dumps([obj for obj in objects if obj["kind"] == "Role"]), \
        "the Leases Role grants no Secret: the mount is the only way in"
    refused = helm("template", "x", str(CHART), "--set", "prometheus.secretRef.name=prom", check=False)
    assert refused.returncode != 0 and "prometheus.address" in refused.stderr


def test_the_kustomize_manifests_are_the_chart_rendered() -> None:
    committed = (ROOT / "manifests" / "modelrollout.yaml").read_text()
    fresh = helm("template", "modelrollout", str(CHART), "--namespace", "modelrollout-system", "--skip-crds").stdout
    assert committed.split("\n", 1)[1] == fresh, "manifests/ is stale: run scripts/render-manifests.sh"


# --- on the sandbox --------------------------------------------------------------------------

def _built_image(tmp_path: Path) -> ImageProcess:
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh")], capture_output=True,
                           text=True, timeout=1800, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(build.stdout.strip().splitlines()[-5:])
    return unpack(f"{cache_root() / 'image' / 'out' / 'oci'}:0.1.0", tmp_path / "bundle")


def _service_account_dir(kubeconfig: Path, namespace: str, account: str, target: Path) -> Path:
    target.mkdir()
    (target / "token").write_text(kubectl(kubeconfig, "-n", namespace, "create", "token", account).strip())
    cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
    (target / "ca.crt").write_bytes(Path(cluster["certificate-authority"]).read_bytes())
    (target / "namespace").write_text(namespace)
    return target


def _lease_held(coordination: client.CoordinationV1Api, namespace: str, holder: str) -> Callable[[], bool]:
    return lambda: any(lease.spec is not None and lease.spec.holder_identity == holder
                       for lease in coordination.list_namespaced_lease(namespace).items)


@pytest.mark.cluster
def test_helm_install_then_the_image_runs_rollouts_with_exactly_the_granted_calls(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, sandbox: SandboxState,
    sandbox_instance: Sandbox, tmp_path: Path, crd_installed: None,
) -> None:
    if os.geteuid() != 0:
        pytest.fail("running the image in its own root (mounts, chroot) needs root, as CI has")
    image = _built_image(tmp_path)
    # The config is the Containerfile's last stage; the root has no package manager, compiler or pip.
    assert image.args == ["/opt/modelrollout/bin/modelrollout", "run"]
    assert image.user == "65532:65532"
    tools = [path for name in ("apt", "apt-get", "dpkg", "pip", "pip3", "gcc", "cc", "perl")
             for path in (image.rootfs / "usr" / "bin" / name, image.rootfs / "opt" / "modelrollout" / "bin" / name)
             if path.exists() or path.is_symlink()]
    assert tools == []
    assert not list((image.rootfs / "opt" / "modelrollout" / "lib" / "python3.11" / "site-packages").glob("pip")), \
        "pip installed the image and is gone from it"
    system = f"{namespace}-system"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=system, labels={
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})))
    try:
        started = time.monotonic()
        helm("install", "modelrollout", str(CHART), "--namespace", system, "--skip-crds",
             "--set", "rbac.scope=namespaced", "--set", f"rbac.namespaces={{{namespace}}}",
             "--set", "replicas=1", "--set", "shards=2", kubeconfig=kubeconfig)
        # The restricted namespace admitted the chart's pod (kwok runs it as a fake).
        wait_until(lambda: core.list_namespaced_pod(system).items, what="the operator's pod admitted")
        deployment = json.loads(kubectl(kubeconfig, "-n", system, "get", "deployment", "modelrollout", "-o", "json"))
        # The Deployment's own args; its liveness port is left out, as the host's may be taken.
        args = [arg for arg in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
                if not arg.startswith("--liveness")]
        account = _service_account_dir(kubeconfig, system, "modelrollout", tmp_path / "sa")
        pod_name = "modelrollout-image-0"
        coordination = client.CoordinationV1Api(api_client)
        with run_image(image, account, sandbox.apiserver_port, tmp_path / "operator.log", args,
                       {"POD_NAME": pod_name, "POD_NAMESPACE": system}) as process:
            wait_until(_lease_held(coordination, system, pod_name), timeout=120, what="the Lease held")
            lease_seconds = time.monotonic() - started
            rss = resident_mib(process)
            print(f"helm install -> Lease held: {lease_seconds:.1f} s; operator RSS at start: {rss:.0f} MiB")
            stuck: AssertionError | None = None
            try:
                scenarios(api_client, namespace)
            except AssertionError as error:
                stuck = error  # a denied call explains it best: reported first, below
            assert process.poll() is None, "the operator from the image is still running"
        log = (tmp_path / "operator.log").read_text(errors="replace")
        used, denied = calls(sandbox_instance.audit_log, f"system:serviceaccount:{system}:modelrollout")
        assert "Traceback" not in log, log[-3000:]
        assert "Read-only file system" not in log
    finally:
        helm("uninstall", "modelrollout", "--namespace", system, kubeconfig=kubeconfig, check=False)
        core.delete_namespace(system)

    objects = rendered("--set", "rbac.scope=namespaced", "--set", f"rbac.namespaces={{{namespace}}}")
    assert not denied, f"calls the chart's RBAC does not grant: {sorted(set(denied))[:20]}"
    if stuck is not None:
        raise stuck
    unused = granted(objects) - used
    assert not unused, f"granted but never called: {sorted(unused)}"


def _quickstart() -> list[list[str]]:
    """The README's quickstart block, one argv a command (continuation lines joined, comments dropped)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- quickstart -->\n```bash\n(.*?)```", readme, flags=re.DOTALL)
    assert block is not None, "the README lost its quickstart block"
    return [shlex.split(line, comments=True) for line in block.group(1).replace("\\\n", " ").splitlines()]


@pytest.mark.cluster
def test_the_readmes_quickstart_runs_verbatim_on_the_sandbox(
    kubeconfig: Path, crd_installed: None, tmp_path: Path,
) -> None:
    commands = _quickstart()
    assert [argv[0] for argv in commands] == ["kubectl", "helm", "kubectl", "kubectl", "kubectl"]
    tools = {"kubectl": [str(ensure_binaries(lambda _: None).kubectl), "--kubeconfig", str(kubeconfig)],
             "helm": [str(ensure_tool(HELM)), "--kubeconfig", str(kubeconfig)]}
    try:
        for argv in commands[:-1]:
            result = subprocess.run([*tools[argv[0]], *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                                    timeout=300, check=False)
            assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr}"
        # The last one watches: it must list the rollout, then it is stopped.
        watch = commands[-1]
        with (tmp_path / "watch.out").open("w+") as output:
            process = subprocess.Popen([*tools[watch[0]], *watch[1:]], cwd=ROOT, stdout=output,
                                       stderr=subprocess.STDOUT)
            try:
                wait_until(lambda: "fraud-scorer" in (tmp_path / "watch.out").read_text(), what="the watch's row")
            finally:
                process.terminate()
                process.wait(10)
        header = (tmp_path / "watch.out").read_text().splitlines()[0].split()
        assert header[:4] == ["NAME", "PHASE", "STEP", "WEIGHT"]
    finally:
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", str(ROOT / "examples" / "fraud-scorer.yaml"))
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", str(ROOT / "examples" / "fraud-scorer-route.yaml"))
        helm("uninstall", "modelrollout", "--namespace", "modelrollout-system", kubeconfig=kubeconfig, check=False)
        kubectl(kubeconfig, "delete", "--ignore-not-found", "namespace", "modelrollout-system")

"""Start and stop a local control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok.

kwokctl's `binary` runtime does the process management: given local binary
paths it downloads nothing, generates the PKI, service-account keys and a
kubeconfig, and starts each component with flags that match its version.
We add what it lacks: a unique name and data directory per instance, a
pre-check of the port, a guarantee that a failed start leaves no process
behind, GPU nodes, and the Gateway API and Istio CRDs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devkit import crdgen
from devkit.sandbox import build, nodes, thirdparty_crds
from devkit.sandbox.envoy_gateway import EnvoyGateway
from devkit.sandbox.errors import SandboxError
from devkit.sandbox.processes import (
    free_port,
    pid_alive,
    port_is_listening,
    read_pids,
    require_free_port,
    terminate,
)
from devkit.sandbox.prometheus import PrometheusServer, running_prometheus, start_prometheus

# Service IPs for 10,000 rollouts (two Services each), with room to spare.
SERVICE_CIDR = "10.96.0.0/16"
# Requests made with ServiceAccount tokens, at Metadata level: what an operator under its chart's
# RBAC actually calls (the tests compare it with the Role). The admin's own requests are not logged.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


def instances_root() -> Path:
    root = build.cache_root() / "sandboxes"
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class SandboxState:
    """What `up` persisted, so that `status` and `down` work from another process."""

    name: str
    directory: str
    kubeconfig: str
    apiserver_port: int
    prometheus_port: int | None = None
    gateway: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> SandboxState:
        return cls(**json.loads((directory / "sandbox.json").read_text()))

    def save(self) -> None:
        (Path(self.directory) / "sandbox.json").write_text(json.dumps(asdict(self), indent=2))


class Sandbox:
    """One local cluster instance, named and isolated by its own directory and ports."""

    def __init__(self, name: str | None = None, apiserver_port: int | None = None) -> None:
        self.name = name or f"mr-{os.getpid()}-{secrets.token_hex(3)}"
        self.directory = instances_root() / self.name
        self.requested_port = apiserver_port

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def audit_policy(self) -> Path:
        return self.directory / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """One JSON event a line: every request made with a ServiceAccount's token."""
        return self.kwok_workdir / "clusters" / self.name / "logs" / "audit.log"

    @property
    def kwok_workdir(self) -> Path:
        return self.directory / "kwok"

    def _kwokctl(self, binaries: build.Binaries, *args: str, timeout: float = 300) -> str:
        env = dict(os.environ, KWOK_WORKDIR=str(self.kwok_workdir))
        result = subprocess.run(
            [str(binaries.kwokctl), "--name", self.name, *args],
            env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if result.returncode != 0:
            raise SandboxError(
                f"kwokctl {args[0]} {args[1] if len(args) > 1 else ''} failed "
                f"(exit {result.returncode}):\n{(result.stdout + result.stderr).strip()[-1500:]}"
            )
        return result.stdout

    def up(
        self,
        install_crds: bool = True,
        install_modelrollout_crd: bool = True,
        node_shapes: tuple[nodes.NodeShape, ...] = nodes.DEFAULT_NODES,
        ready_timeout: float = 120.0,
        gateway: str | None = None,
    ) -> SandboxState:
        """Build (once) and start the cluster; return when all nodes are Ready. `gateway="envoy"` also
        starts Envoy Gateway's controller (`envoy_gateway.py`), with the Gateway API CRDs it needs."""
        binaries = build.ensure_binaries()
        crd_files = thirdparty_crds.ensure_crd_files(build.cache_root()) if install_crds else []
        if (self.directory / "sandbox.json").exists():
            raise SandboxError(
                f"sandbox {self.name!r} already exists at {self.directory}; "
                f"run `modelrollout sandbox down --name {self.name}` first"
            )
        port = self.requested_port or free_port()
        require_free_port(port, "kube-apiserver")
        self.directory.mkdir(parents=True, exist_ok=True)
        state = SandboxState(
            name=self.name, directory=str(self.directory),
            kubeconfig=str(self.kubeconfig), apiserver_port=port,
        )
        started = time.monotonic()
        self.audit_policy.write_text(AUDIT_POLICY)
        try:
            self._kwokctl(
                binaries, "create", "cluster", "--runtime", "binary",
                "--kubeconfig", str(self.kubeconfig),
                "--kube-apiserver-port", str(port),
                "--kube-apiserver-binary", str(binaries.kube_apiserver),
                "--kube-controller-manager-binary", str(binaries.kube_controller_manager),
                "--kube-scheduler-binary", str(binaries.kube_scheduler),
                "--kwok-controller-binary", str(binaries.kwok),
                "--etcd-binary", str(binaries.etcd),
                "--kube-audit-policy", str(self.audit_policy),
                # Test data is disposable: skipping fsync makes etcd writes far cheaper.
                "--extra-args", "etcd=unsafe-no-fsync=true",
                # Room for 10,000 rollouts: two Services each, far past the default /24.
                "--extra-args", f"kube-apiserver=service-cluster-ip-range={SERVICE_CIDR}",
                # The built-in controllers' default 20 requests/s would pace a large benchmark.
                # (One extra arg per component: kwokctl v0.8.0 indexes repeated ones wrongly.)
                "--extra-args", "kube-controller-manager=kube-api-qps=500",
                "--extra-args", "kube-scheduler=kube-api-qps=500",
                "--wait", f"{int(ready_timeout)}s",
                timeout=ready_timeout + 60,
            )
            state.timings["control_plane_s"] = time.monotonic() - started
            state.save()
            self._create_nodes(binaries, node_shapes)
            if crd_files:
                self.kubectl(binaries, "apply", "--server-side", "--force-conflicts",
                             *[arg for crd in crd_files for arg in ("-f", str(crd))])
            if install_modelrollout_crd:
                self.kubectl(binaries, "apply", "--server-side", "--force-conflicts", "-f", str(crdgen.CRD_PATH))
            self._wait_nodes_ready(binaries, len(node_shapes), ready_timeout)
            if install_modelrollout_crd:
                self._wait_established(binaries, [crdgen.CRD_PATH.stem])
            if crd_files:
                self._wait_established(binaries, ["httproutes.gateway.networking.k8s.io",
                                                  "virtualservices.networking.istio.io",
                                                  "destinationrules.networking.istio.io"])
            if gateway == "envoy":
                if not crd_files:
                    raise SandboxError("Envoy Gateway needs the Gateway API CRDs: leave out --no-crds")
                started_gateway = time.monotonic()
                self.envoy_gateway(binaries).start()
                state.gateway = gateway
                state.timings["gateway_s"] = time.monotonic() - started_gateway
        except BaseException:
            self._teardown(binaries)
            raise
        state.timings["ready_s"] = time.monotonic() - started
        state.save()
        return state

    def envoy_gateway(self, binaries: build.Binaries) -> EnvoyGateway:
        return EnvoyGateway(self.directory / "envoy-gateway", self.kubeconfig,
                            lambda *args, stdin=None: self.kubectl(binaries, *args, stdin=stdin))

    def kubectl(self, binaries: build.Binaries, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise SandboxError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()[-1500:]}")
        return result.stdout

    def _wait_established(self, binaries: build.Binaries, crds: list[str], timeout: float = 60.0) -> None:
        """Until every CRD is Established. Not `kubectl wait`: it fails outright on a CRD whose
        status has no conditions yet ("accessor error"), which a busy apiserver shows for a moment."""
        deadline = time.monotonic() + timeout
        pending = list(crds)
        while pending:
            pending = [crd for crd in pending if not self._established(binaries, crd)]
            if pending and time.monotonic() > deadline:
                raise SandboxError(f"CRDs not Established within {timeout:.0f}s: {', '.join(pending)}")
            if pending:
                time.sleep(0.2)

    def _established(self, binaries: build.Binaries, crd: str) -> bool:
        # JSON, not a jsonpath filter: a filter over conditions that are still null is an error too.
        status = json.loads(self.kubectl(binaries, "get", f"crd/{crd}", "-o", "json")).get("status") or {}
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in status.get("conditions") or [])

    def _create_nodes(self, binaries: build.Binaries, shapes: tuple[nodes.NodeShape, ...]) -> None:
        manifest = {"apiVersion": "v1", "kind": "List",
                    "items": [nodes.node_manifest(shape, index) for index, shape in enumerate(shapes)]}
        self.kubectl(binaries, "apply", "-f", "-", stdin=json.dumps(manifest))

    def _wait_nodes_ready(self, binaries: build.Binaries, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ready = 0
        while time.monotonic() < deadline:
            listing: dict[str, Any] = json.loads(self.kubectl(binaries, "get", "nodes", "-o", "json"))
            ready = sum(
                1 for node in listing["items"]
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in node.get("status", {}).get("conditions", []))
            )
            if ready >= expected:
                return
            time.sleep(0.2)
        raise SandboxError(f"only {ready} of {expected} nodes became Ready within {timeout:.0f}s")

    def start_prometheus(
        self, scrape_configs: list[dict[str, Any]], port: int | None = None, scrape_interval: str = "1s"
    ) -> PrometheusServer:
        state = SandboxState.load(self.directory)
        server = start_prometheus(self.directory / "prometheus", scrape_configs, port, scrape_interval)
        state.prometheus_port = server.port
        state.save()
        return server

    def components(self) -> dict[str, bool]:
        """Each control-plane component (from kwokctl's pid files) and whether its process is alive."""
        health = {}
        for pid_file in sorted(self.kwok_workdir.rglob("pids/*.pid")):
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                pid = 0
            health[pid_file.stem] = pid > 0 and pid_alive(pid)
        return health

    def heal(self, settle_timeout: float = 180.0) -> list[str]:
        """Start again every component whose process died, and return only once the control plane is whole
        again: every process alive, and the controller-manager and the scheduler leading on Leases they
        renewed after the apiserver was back. After an apiserver restart they lose their Leases and exit
        seconds later ("leaderelection lost"): one look at the processes would miss that. Returns the
        names of everything restarted, in order; SandboxError when it is not whole within the timeout."""
        binaries = build.ensure_binaries()
        restarted: list[str] = []
        deadline = time.monotonic() + settle_timeout
        since = time.time()
        while True:
            dead = [name for name, alive in self.components().items() if not alive]
            if dead:
                for pid_file in self.kwok_workdir.rglob("pids/*.pid"):
                    if pid_file.stem in dead:
                        # kwokctl trusts a pid file whose process is a zombie: drop it so it starts again.
                        pid_file.unlink()
                self._kwokctl(binaries, "start", "cluster", timeout=180)
                restarted += [name for name in dead if name not in restarted]
                since = time.time()
            elif not restarted or self._leaders_renewed_since(binaries, since):
                return restarted
            if time.monotonic() > deadline:
                raise SandboxError(f"the control plane is not whole {settle_timeout:.0f}s after restarting "
                                   f"{', '.join(restarted)}: {self.components()}")
            time.sleep(0.5)

    def _leaders_renewed_since(self, binaries: build.Binaries, since: float) -> bool:
        """Whether the controller-manager's and the scheduler's Leases were renewed after `since` (epoch s)."""
        for lease in ("kube-controller-manager", "kube-scheduler"):
            try:
                renewed = self.kubectl(binaries, "-n", "kube-system", "get", "lease", lease, "-o",
                                       "jsonpath={.spec.renewTime}").strip()
            except SandboxError:
                return False  # the apiserver is not answering yet
            try:
                stamp = datetime.strptime(renewed, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
            except ValueError:
                return False
            if stamp <= since:
                return False
        return True

    def status(self) -> dict[str, Any]:
        if not (self.directory / "sandbox.json").exists():
            return {"name": self.name, "running": False}
        state = SandboxState.load(self.directory)
        components = self.components()
        prometheus = (
            running_prometheus(self.directory / "prometheus", state.prometheus_port)
            if state.prometheus_port else None
        )
        return {
            "name": self.name,
            "running": bool(components) and all(components.values()) and port_is_listening(state.apiserver_port),
            "kubeconfig": state.kubeconfig,
            "apiserver": f"https://127.0.0.1:{state.apiserver_port}",
            "components": {name: "running" if alive else "dead" for name, alive in components.items()},
            "prometheus": prometheus.url if prometheus else None,
            "gateway": None if state.gateway is None else {
                "kind": state.gateway,
                "controller": "running" if self.envoy_gateway(build.ensure_binaries()).running() else "dead"},
        }

    def down(self) -> None:
        """Stop every process of this instance and delete its directory."""
        if not self.directory.exists():
            return
        self._teardown(build.ensure_binaries())

    def _teardown(self, binaries: build.Binaries) -> None:
        self.envoy_gateway(binaries).stop()
        pids = read_pids(self.kwok_workdir) + read_pids(self.directory / "prometheus")
        # If kwokctl cannot delete, fall through: the PIDs below are ended directly.
        with contextlib.suppress(SandboxError, subprocess.TimeoutExpired):
            self._kwokctl(binaries, "delete", "cluster", "--kubeconfig", str(self.kubeconfig), timeout=60)
        survivors = terminate([pid for pid in pids if pid_alive(pid)])
        if survivors:
            raise SandboxError(f"could not stop sandbox processes {survivors}")
        shutil.rmtree(self.directory, ignore_errors=True)


def list_instances() -> list[str]:
    return sorted(path.name for path in instances_root().iterdir() if (path / "sandbox.json").exists())

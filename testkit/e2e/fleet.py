"""The kubelet of the e2e world: one real model-server process per running pod.

kwok's pods are fake: no container ever runs. `ModelFleet` watches (by polling) the pods of one
ModelRollout and, for every one that is Running with an address, keeps one `python -m
e2e.model_server` process listening on that pod's address and container port, inside the pods'
network namespace (`e2e.netns`), with the knobs that `knobs_for_image(image)` gives for the pod's
first container image. So the EndpointSlices the controller-manager writes point at real servers,
and a gateway that reads them reaches them. A pod that goes away loses its process (SIGTERM, then
SIGKILL after a grace, by PID).

Prometheus finds the servers through a file_sd file (`workdir/targets.json`, replaced
atomically, with the pod's `revision`, `pod` and `namespace` as target labels, as pod relabelling
gives them): pass `fleet.scrape_config()` to `start_prometheus`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from kubernetes import client

from e2e.harness import wait_until
from e2e.model_server import Knobs
from e2e.netns import PodNetwork

log = logging.getLogger(__name__)

KnobsForImage = Callable[[str], Knobs]


class Recipe(Protocol):
    """How to run a model server we did not write for a pod (see `e2e.real_servers`)."""

    def command(self, want: WantedServer, workdir: Path) -> tuple[list[str], dict[str, str]]:
        """The argv and extra environment of the pod's server, listening on want.address:want.port."""

    def health_path(self) -> str: ...

    def metrics_port(self, want: WantedServer) -> int: ...


RecipeForImage = Callable[[str], "Recipe | None"]
# The labels the operator puts on its pods: the rollout they belong to and their template revision.
ROLLOUT_LABEL, REVISION_LABEL = "rollouts.mlops.dev/rollout", "rollouts.mlops.dev/revision"


@dataclass(frozen=True)
class WantedServer:
    """What one running pod asks for."""

    pod: str
    revision: str
    address: str
    port: int
    model: str
    version: str
    image: str


@dataclass
class ServerProcess:
    wanted: WantedServer
    knobs: Knobs
    process: subprocess.Popen[bytes]
    port_file: Path
    log_path: Path
    recipe: Recipe | None = None
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    # The last time its start was seen moving (CPU used, log written): a cold start on a busy machine
    # may take minutes, and only one that stands still has failed.
    moved_at: float = field(default_factory=time.monotonic)
    moved: tuple[int, int] = (0, 0)

    def progress(self) -> tuple[int, int]:
        """(CPU ticks, log bytes): both grow while the server is starting, loading or serving."""
        return cpu_ticks(self.process.pid), self.log_path.stat().st_size if self.log_path.exists() else 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{self.wanted.address}:{self.wanted.port}"


class FleetError(RuntimeError):
    pass


def cpu_ticks(pid: int) -> int:
    """CPU time (clock ticks) a process and its waited-for children have used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime


class ModelFleet:
    """One model-server process per running pod of `rollout_name`.

    Use as a context manager (or `start()` / `stop()`). `urls()` gives a server of each revision
    that answers, `set_knobs()` changes every pod of a revision at run time (and remembers it, for
    pods that start later), `served()` says what the servers were sent.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        rollout_name: str,
        knobs_for_image: KnobsForImage,
        workdir: Path,
        network: PodNetwork,
        poll_interval: float = 0.5,
        seed: int | None = None,
        grace_seconds: float = 5.0,
        start_timeout: float = 30.0,
        default_port: int = 8080,
        recipe_for_image: RecipeForImage = lambda _: None,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.rollout_name = namespace, rollout_name
        self.knobs_for_image, self.network = knobs_for_image, network
        self.recipe_for_image = recipe_for_image  # images served by a real server; the rest by the simulator
        self.workdir = workdir
        self.poll_interval, self.seed = poll_interval, seed
        self.grace_seconds, self.start_timeout, self.default_port = grace_seconds, start_timeout, default_port
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets_path = self.workdir / "targets.json"
        self._servers: dict[str, ServerProcess] = {}  # by pod name
        self._overrides: dict[str, dict[str, float]] = {}  # by revision
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=2.0)
        self._written_targets: str | None = None
        self.polls = 0
        self.restarts = 0
        self.last_error: str | None = None
        self._write_targets()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> ModelFleet:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"fleet-{self.rollout_name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the poller and every process this fleet started."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(max(30.0, self.grace_seconds * 2))
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            self._terminate(server)
        self._write_targets()
        self._http.close()

    def __enter__(self) -> ModelFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what callers use ------------------------------------------------------------------
    def pod_urls(self) -> dict[str, str]:
        """pod -> base URL of its server, for the servers that answer."""
        with self._lock:
            return {pod: s.url for pod, s in self._servers.items() if s.ready}

    def urls(self) -> dict[str, str]:
        """revision -> base URL of one of its servers that answers."""
        with self._lock:
            return {s.wanted.revision: s.url for s in sorted(self._servers.values(), key=lambda s: s.wanted.pod)
                    if s.ready}

    def pids(self) -> dict[str, int]:
        """pod -> PID, for every process running or starting."""
        with self._lock:
            return {pod: s.pid for pod, s in self._servers.items()}

    def wait_until(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 60.0,
                   what: str = "fleet state") -> dict[str, str]:
        """`urls()` once `predicate` holds for them."""
        def probe() -> tuple[dict[str, str]] | None:
            urls = self.urls()
            return (urls,) if predicate(urls) else None

        return wait_until(probe, timeout, f"{what} (last server error: {self.last_error})")[0]

    def wait_for_revisions(self, *revisions: str, timeout: float = 60.0) -> dict[str, str]:
        return self.wait_until(lambda urls: all(r in urls for r in revisions), timeout,
                               f"servers for {', '.join(revisions)}")

    def _revision_urls(self, revision: str) -> list[str]:
        with self._lock:
            return [s.url for s in self._servers.values() if s.wanted.revision == revision and s.ready]

    def knobs(self, revision: str) -> Knobs:
        """The knobs a running server of `revision` reports."""
        urls = self._revision_urls(revision)
        if not urls:
            raise FleetError(f"no running model server for revision {revision!r}")
        answer = self._http.get(f"{urls[0]}/knobs")
        answer.raise_for_status()
        return Knobs(**answer.json())

    def set_knobs(self, revision: str, **changes: float) -> Knobs:
        """Change the knobs of every running server of `revision` (fault injection); kept for its
        pods that start later. For a revision with no running server the change is only remembered."""
        Knobs().updated(**changes)  # unknown names fail here, before anything changes
        # A server still starting took its knobs at launch: wait until the revision's servers answer.
        deadline = time.monotonic() + self.start_timeout
        while self._starting(revision) and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            self._overrides.setdefault(revision, {}).update(changes)
        result = Knobs().updated(**self._overrides[revision])
        for url in self._revision_urls(revision):
            answer = self._http.post(f"{url}/knobs", json=changes)
            if answer.status_code != 200:
                raise FleetError(f"POST /knobs to {revision}: {answer.status_code} {answer.text}")
            result = Knobs(**answer.json())
        return result

    def activity(self) -> int:
        """CPU ticks of every server process: it moves while any of them starts, loads or serves."""
        with self._lock:
            pids = [s.process.pid for s in self._servers.values()]
        return sum(cpu_ticks(pid) for pid in pids)

    def _starting(self, revision: str) -> bool:
        with self._lock:
            return any(s.wanted.revision == revision and not s.ready for s in self._servers.values())

    def served(self) -> dict[str, dict[str, int]]:
        """revision -> {"live": n, "mirrored": m, ...}: the requests its servers were sent, as they counted
        them (a restarted server starts from 0), and whatever else their /stats count."""
        totals: dict[str, dict[str, int]] = {}
        with self._lock:
            servers = [(s.wanted.revision, s.url) for s in self._servers.values() if s.ready]
        for revision, url in servers:
            with contextlib.suppress(httpx.HTTPError):
                counts = self._http.get(f"{url}/stats").json()
                total = totals.setdefault(revision, {"live": 0, "mirrored": 0})
                for key, count in counts.items():
                    total[key] = total.get(key, 0) + int(count)
        return totals

    def scrape_config(self, job_name: str = "model-servers") -> dict[str, Any]:
        """A scrape config for `start_prometheus`: Prometheus re-reads the file_sd file on change."""
        return {
            "job_name": job_name,
            "scrape_interval": "1s",
            "file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "1s"}],
        }

    def log_path(self, pod: str) -> Path:
        return self.workdir / f"{pod}.log"

    # ---- the poller ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sync_once()
            except Exception as error:  # the poller must outlive one bad poll
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("fleet poll failed: %s", self.last_error)
            self._stopping.wait(self.poll_interval)

    def sync_once(self) -> None:
        """One reconcile: read the pods, start and stop processes, publish the targets."""
        wanted = self._wanted()
        with self._lock:
            current = dict(self._servers)
        for pod, server in current.items():
            if pod not in wanted or server.wanted != wanted[pod]:
                self._forget(pod)
                self._terminate(server)
            elif server.process.poll() is not None:
                log.warning("model server %s exited with %s; restarting", pod, server.process.returncode)
                self._forget(pod)
                self.restarts += 1
        for pod, want in wanted.items():
            if self._stopping.is_set():
                break
            with self._lock:
                running = pod in self._servers
            if not running:
                self._launch(want)
        self._check_starting()
        self._write_targets()
        self.polls += 1

    def _wanted(self) -> dict[str, WantedServer]:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{ROLLOUT_LABEL}={self.rollout_name}", _request_timeout=(3, 5),
        ).items
        wanted: dict[str, WantedServer] = {}
        for pod in pods:
            metadata, spec, status = pod.metadata, pod.spec, pod.status
            if metadata is None or spec is None or status is None or metadata.deletion_timestamp is not None:
                continue
            labels = metadata.labels or {}
            revision = labels.get(REVISION_LABEL)
            if not revision or status.phase != "Running" or not status.pod_ip:
                continue
            container = spec.containers[0]
            ports = [p.container_port for p in container.ports or []]
            wanted[str(metadata.name)] = WantedServer(
                pod=str(metadata.name), revision=revision, address=status.pod_ip,
                port=ports[0] if ports else self.default_port, model=labels.get("model", self.rollout_name),
                version=labels.get("version", revision), image=container.image or "")
        return wanted

    def _launch(self, want: WantedServer) -> None:
        recipe = self.recipe_for_image(want.image)
        knobs = self.knobs_for_image(want.image) if recipe is None else Knobs()
        with self._lock:
            overrides = dict(self._overrides.get(want.revision, {}))
        if overrides and recipe is None:
            knobs = knobs.updated(**overrides)
        self.network.add_address(want.address)
        port_file = self.workdir / f"{want.pod}.port"
        port_file.unlink(missing_ok=True)
        log_path = self.log_path(want.pod)
        env = dict(os.environ)
        if recipe is not None:
            command, extra = recipe.command(want, self.workdir)
            env.update(extra)
        else:
            command = [sys.executable, "-m", "e2e.model_server", "--host", want.address, "--port", str(want.port),
                       "--port-file", str(port_file), "--model", want.model, "--version", want.version,
                       *knobs.cli_args()]
            if self.seed is not None:
                digest = hashlib.sha256(f"{self.seed}/{want.pod}".encode()).digest()
                command += ["--seed", str(int.from_bytes(digest[:8], "big"))]
        # The test kit is installed (scripts/setup.sh): `-m e2e.model_server` needs no path of ours.
        with log_path.open("ab") as output:
            process = subprocess.Popen(self.network.command(command), cwd=self.workdir, stdout=output, env=env,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.info("started model server for pod %s (image %s) on %s:%d as PID %d", want.pod, want.image,
                 want.address, want.port, process.pid)
        server = ServerProcess(want, knobs, process, port_file, log_path, recipe)
        with self._lock:
            if not self._stopping.is_set():
                self._servers[want.pod] = server
                return
        self._terminate(server)  # stop() came while this one was starting: it must not outlive the fleet

    def _check_starting(self) -> None:
        with self._lock:
            starting = [s for s in self._servers.values() if not s.ready]
        for server in starting:
            if server.recipe is not None:
                up = self._healthy(server.url + server.recipe.health_path())
            else:
                up = _read_port(server.port_file) is not None and self._healthy(f"{server.url}/healthz")
            now = time.monotonic()
            progress = server.progress()
            if progress != server.moved:
                server.moved, server.moved_at = progress, now
            if up:
                with self._lock:
                    server.ready = True
            elif server.process.poll() is not None or now - server.moved_at > self.start_timeout:
                self.last_error = (f"model server of pod {server.wanted.pod} did not start (exited, or stood still "
                                   f"for {self.start_timeout:.0f}s); see {server.log_path}")
                log.warning("%s", self.last_error)
                self._forget(server.wanted.pod)
                self._terminate(server)

    def _healthy(self, url: str) -> bool:
        try:
            return self._http.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _forget(self, pod: str) -> None:
        with self._lock:
            self._servers.pop(pod, None)

    def _terminate(self, server: ServerProcess) -> None:
        process = server.process
        if process.poll() is None:
            process.terminate()  # `ip netns exec` execs the server: this PID is the server's
            try:
                process.wait(self.grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.info("stopped model server of pod %s (PID %d)", server.wanted.pod, server.pid)
        server.port_file.unlink(missing_ok=True)
        with self._lock:
            still_used = any(s.wanted.address == server.wanted.address for s in self._servers.values())
        if not still_used:
            self.network.remove_address(server.wanted.address)

    def _write_targets(self) -> None:
        with self._lock:
            ready = sorted((s.wanted.pod, s.wanted.revision, s.wanted.address,
                            s.recipe.metrics_port(s.wanted) if s.recipe else s.wanted.port)
                           for s in self._servers.values() if s.ready)
        # `version` as pod relabelling copies it from the pod's label (the README's scrape config).
        groups = [{"targets": [f"{address}:{port}"],
                   "labels": {"revision": revision, "version": revision, "pod": pod, "namespace": self.namespace}}
                  for pod, revision, address, port in ready]
        text = json.dumps(groups, indent=2)
        if text == self._written_targets:
            return
        tmp = self.targets_path.with_name(self.targets_path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.targets_path)  # Prometheus never reads half a file
        self._written_targets = text


def _read_port(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None

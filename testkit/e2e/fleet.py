"""The kubelet of the e2e world: one real model-server process per live model revision.

kwok's pods are fake: no container ever runs. `ModelFleet` watches (by polling) the Deployments
the operator makes for one ModelRollout and, for every one with `spec.replicas > 0`, keeps one
`python -m e2e.model_server` process running on a free loopback port, with the knobs that
`knobs_for_image(image)` gives for the Deployment's first container image. A Deployment that is
deleted or scaled to 0 loses its process (SIGTERM, then SIGKILL after a grace, by PID).

Prometheus finds the servers through a file_sd file (`workdir/targets.json`, replaced
atomically): pass `fleet.scrape_config()` to `start_prometheus`.
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
from typing import Any

import httpx
from kubernetes import client

from controller.runtime.cache import REVISION_LABEL, ROLLOUT_LABEL
from e2e.model_server import Knobs

log = logging.getLogger(__name__)

KnobsForImage = Callable[[str], Knobs]


@dataclass(frozen=True)
class WantedServer:
    """What one Deployment asks for."""

    revision: str
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
    started_at: float = field(default_factory=time.monotonic)
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port is not None else None


class FleetError(RuntimeError):
    pass


class ModelFleet:
    """One model-server process per revision of `rollout_name` that has replicas.

    Use as a context manager (or `start()` / `stop()`). `urls()` lists the servers that answer,
    `set_knobs()` changes one at run time (and remembers it, should the process be restarted).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        rollout_name: str,
        knobs_for_image: KnobsForImage,
        workdir: Path,
        poll_interval: float = 0.5,
        seed: int | None = None,
        grace_seconds: float = 5.0,
        start_timeout: float = 30.0,
    ) -> None:
        self.apps = client.AppsV1Api(api_client)
        self.namespace, self.rollout_name = namespace, rollout_name
        self.knobs_for_image = knobs_for_image
        self.workdir = workdir
        self.poll_interval, self.seed = poll_interval, seed
        self.grace_seconds, self.start_timeout = grace_seconds, start_timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets_path = self.workdir / "targets.json"
        self._servers: dict[str, ServerProcess] = {}
        self._overrides: dict[str, dict[str, float]] = {}
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
    def urls(self) -> dict[str, str]:
        """revision -> base URL of its server, for the servers that answer."""
        with self._lock:
            return {rev: s.url for rev, s in self._servers.items() if s.url is not None}

    def pids(self) -> dict[str, int]:
        """revision -> PID, for every process running or starting."""
        with self._lock:
            return {rev: s.pid for rev, s in self._servers.items()}

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 60.0,
                 what: str = "fleet state") -> dict[str, str]:
        """Poll `urls()` until `predicate` holds; raise FleetError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            urls = self.urls()
            if predicate(urls):
                return urls
            if time.monotonic() >= deadline:
                raise FleetError(f"{what} not reached within {timeout}s (urls: {urls}, last error: {self.last_error})")
            time.sleep(0.1)

    def wait_for_revisions(self, *revisions: str, timeout: float = 60.0) -> dict[str, str]:
        return self.wait_for(lambda urls: all(r in urls for r in revisions), timeout,
                             f"servers for {', '.join(revisions)}")

    def knobs(self, revision: str) -> Knobs:
        """The knobs the running server of `revision` reports."""
        answer = self._http.get(f"{self._url_of(revision)}/knobs")
        answer.raise_for_status()
        return Knobs(**answer.json())

    def set_knobs(self, revision: str, **changes: float) -> Knobs:
        """Change the running server's knobs (fault injection); kept if the process restarts.

        For a revision with no running server (scaled to 0) the change is only remembered,
        and applies when the fleet next starts it.
        """
        Knobs().updated(**changes)  # unknown names fail here, before anything changes
        # A server still starting took its knobs at launch: wait until it answers, then change them.
        deadline = time.monotonic() + self.start_timeout
        while revision in self.pids() and revision not in self.urls() and time.monotonic() < deadline:
            time.sleep(0.05)
        if revision not in self.urls():
            with self._lock:
                self._overrides.setdefault(revision, {}).update(changes)
            return Knobs().updated(**self._overrides[revision])
        answer = self._http.post(f"{self._url_of(revision)}/knobs", json=changes)
        if answer.status_code != 200:
            raise FleetError(f"POST /knobs to {revision}: {answer.status_code} {answer.text}")
        with self._lock:
            self._overrides.setdefault(revision, {}).update(changes)
        return Knobs(**answer.json())

    def scrape_config(self, job_name: str = "model-servers") -> dict[str, Any]:
        """A scrape config for `start_prometheus`: Prometheus re-reads the file_sd file on change."""
        return {
            "job_name": job_name,
            "scrape_interval": "1s",
            "file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "1s"}],
        }

    def _url_of(self, revision: str) -> str:
        url = self.urls().get(revision)
        if url is None:
            raise FleetError(f"no running model server for revision {revision!r} (running: {sorted(self.urls())})")
        return url

    def log_path(self, revision: str) -> Path:
        return self.workdir / f"{revision}.log"

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
        """One reconcile: read the Deployments, start and stop processes, publish the targets."""
        wanted = self._wanted()
        with self._lock:
            current = dict(self._servers)
        for revision, server in current.items():
            if revision not in wanted or server.wanted != wanted[revision]:
                self._forget(revision)
                self._terminate(server)
            elif server.process.poll() is not None:
                log.warning("model server %s exited with %s; restarting", revision, server.process.returncode)
                self._forget(revision)
                self.restarts += 1
        for revision, want in wanted.items():
            if self._stopping.is_set():
                break
            with self._lock:
                running = revision in self._servers
            if not running:
                self._launch(want)
        self._check_starting()
        self._write_targets()
        self.polls += 1

    def _wanted(self) -> dict[str, WantedServer]:
        deployments = self.apps.list_namespaced_deployment(
            self.namespace, label_selector=f"{ROLLOUT_LABEL}={self.rollout_name}", _request_timeout=(3, 5),
        ).items
        wanted: dict[str, WantedServer] = {}
        for deployment in deployments:
            metadata = deployment.metadata
            if metadata is None or deployment.spec is None or metadata.deletion_timestamp is not None:
                continue
            revision = (metadata.labels or {}).get(REVISION_LABEL)
            if not revision or (deployment.spec.replicas or 0) <= 0:
                continue
            template = deployment.spec.template
            pod_labels = (template.metadata.labels if template.metadata else None) or {}
            containers = template.spec.containers if template.spec else []
            image = (containers[0].image if containers else None) or ""
            wanted[revision] = WantedServer(revision=revision, model=pod_labels.get("model", self.rollout_name),
                                            version=pod_labels.get("version", revision), image=image)
        return wanted

    def _launch(self, want: WantedServer) -> None:
        knobs = self.knobs_for_image(want.image)
        with self._lock:
            overrides = dict(self._overrides.get(want.revision, {}))
        if overrides:
            knobs = knobs.updated(**overrides)
        port_file = self.workdir / f"{want.revision}.port"
        port_file.unlink(missing_ok=True)
        log_path = self.log_path(want.revision)
        command = [sys.executable, "-m", "e2e.model_server", "--port", "0", "--port-file", str(port_file),
                   "--model", want.model, "--version", want.version, *knobs.cli_args()]
        if self.seed is not None:
            digest = hashlib.sha256(f"{self.seed}/{want.revision}".encode()).digest()
            command += ["--seed", str(int.from_bytes(digest[:8], "big"))]
        # The test kit is installed (scripts/setup.sh): `-m e2e.model_server` needs no path of ours.
        with log_path.open("ab") as output:
            process = subprocess.Popen(command, cwd=self.workdir, stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        log.info("started model server %s (image %s) as PID %d", want.revision, want.image, process.pid)
        server = ServerProcess(want, knobs, process, port_file, log_path)
        with self._lock:
            if not self._stopping.is_set():
                self._servers[want.revision] = server
                return
        self._terminate(server)  # stop() came while this one was starting: it must not outlive the fleet

    def _check_starting(self) -> None:
        with self._lock:
            starting = [s for s in self._servers.values() if s.port is None]
        for server in starting:
            port = _read_port(server.port_file)
            if port is not None and self._healthy(port):
                with self._lock:
                    server.port = port
            elif time.monotonic() - server.started_at > self.start_timeout:
                self.last_error = f"model server {server.wanted.revision} did not start; see {server.log_path}"
                log.warning("%s", self.last_error)
                self._forget(server.wanted.revision)
                self._terminate(server)

    def _healthy(self, port: int) -> bool:
        try:
            return self._http.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _forget(self, revision: str) -> None:
        with self._lock:
            self._servers.pop(revision, None)

    def _terminate(self, server: ServerProcess) -> None:
        process = server.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(self.grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.info("stopped model server %s (PID %d)", server.wanted.revision, server.pid)
        server.port_file.unlink(missing_ok=True)

    def _write_targets(self) -> None:
        with self._lock:
            ready = sorted((rev, s.port) for rev, s in self._servers.items() if s.port is not None)
        groups = [{"targets": [f"127.0.0.1:{port}"], "labels": {"revision": rev}} for rev, port in ready]
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

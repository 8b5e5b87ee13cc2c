"""Run a real Prometheus server (Debian's `prometheus` package) with a caller's scrape config."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devkit.sandbox.errors import SandboxError
from devkit.sandbox.processes import free_port, pid_alive, require_free_port, terminate

INSTALL_HINT = (
    "Prometheus is not installed. Install Debian's package with "
    "`sudo apt-get install -y --no-install-recommends prometheus` "
    "(scripts/setup.sh does this for you), or set MODELROLLOUT_PROMETHEUS to a prometheus binary."
)


def find_prometheus() -> Path:
    override = os.environ.get("MODELROLLOUT_PROMETHEUS")
    candidate = override or shutil.which("prometheus") or "/usr/bin/prometheus"
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SandboxError(INSTALL_HINT)
    return path


@dataclass(frozen=True)
class PrometheusServer:
    pid: int
    port: int
    directory: Path
    rule_files: tuple[Path, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        terminate([self.pid])

    def reload(self, scrape_configs: list[dict[str, Any]], scrape_interval: str = "1s") -> None:
        """Replace the scrape config of the running server."""
        _write_config(self.directory / "prometheus.yml", scrape_configs, scrape_interval, self.rule_files)
        httpx.post(f"{self.url}/-/reload", timeout=10).raise_for_status()


def _write_config(path: Path, scrape_configs: list[dict[str, Any]], scrape_interval: str,
                  rule_files: tuple[Path, ...] = ()) -> None:
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": scrape_configs,
    }
    if rule_files:
        config["rule_files"] = [str(rule_file) for rule_file in rule_files]
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def start_prometheus(
    directory: Path,
    scrape_configs: list[dict[str, Any]],
    port: int | None = None,
    scrape_interval: str = "1s",
    ready_timeout: float = 60.0,
    rule_files: tuple[Path, ...] = (),
) -> PrometheusServer:
    """Start Prometheus on 127.0.0.1 and wait until /-/ready answers; `rule_files` are alerting or
    recording rules, evaluated every scrape interval."""
    binary = find_prometheus()
    directory.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = free_port()
    else:
        require_free_port(port, "Prometheus")
    config = directory / "prometheus.yml"
    _write_config(config, scrape_configs, scrape_interval, rule_files)
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2h",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    (directory / "prometheus.pid").write_text(str(process.pid))
    server = PrometheusServer(pid=process.pid, port=port, directory=directory, rule_files=rule_files)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (directory / "prometheus.log").read_text()[-800:]
            raise SandboxError(f"Prometheus exited with code {process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SandboxError(f"Prometheus did not become ready within {ready_timeout:.0f}s")


def running_prometheus(directory: Path, port: int) -> PrometheusServer | None:
    pid_file = directory / "prometheus.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    return PrometheusServer(pid=pid, port=port, directory=directory) if pid_alive(pid) else None

"""Small process and port helpers shared by the cluster and Prometheus managers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from devkit.sandbox.errors import SandboxError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_free_port(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so only a live listener (not TIME_WAIT) blocks them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise SandboxError(
                f"port {port} for {what} is already taken on 127.0.0.1 ({error.strerror}); "
                "choose another port or leave it unset to pick a free one"
            ) from None


def port_is_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    # A Go process's leader thread can be a zombie while its other threads still
    # hold the listening sockets, so every thread must have exited.
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
    return False


def read_pids(directory: Path) -> list[int]:
    pids = []
    for pid_file in directory.rglob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pid_file.read_text().strip()))
    return pids


def terminate(pids: list[int], grace_seconds: float = 10.0) -> list[int]:
    """SIGTERM the given PIDs, SIGKILL survivors after the grace period; return any still alive."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if pid_alive(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if alive:
        time.sleep(0.2)
    return [pid for pid in alive if pid_alive(pid)]

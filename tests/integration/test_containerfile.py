"""The Containerfile, for people with Docker, gives the image scripts/build-image.sh gives.

Built here with buildah (chroot isolation: no Docker engine, and crun cannot run containers on these
machines) on a bookworm base made by mmdebstrap, since no registry is reachable. The two images
must share their config and every file the operator's install put under /opt.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from devkit.sandbox.build import cache_root
from e2e.image_root import unpack

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str, timeout: float = 1800) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_the_containerfile_and_the_script_build_the_same_operator(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("buildah and mmdebstrap need root, as CI has")
    run("bash", "scripts/build-image.sh")
    scripted = unpack(f"{cache_root() / 'image' / 'out' / 'oci'}:0.1.0", tmp_path / "scripted")

    base = f"localhost/modelrollout-test-base:{os.getpid()}"
    tag = f"localhost/modelrollout-test:{os.getpid()}"
    run("mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", "bookworm", str(tmp_path / "base.tar"),
        "http://deb.debian.org/debian")
    container = run("buildah", "from", "scratch").strip()
    try:
        run("buildah", "add", container, str(tmp_path / "base.tar"), "/")
        run("buildah", "commit", "-q", container, base)
    finally:
        run("buildah", "rm", container)
    # Behind a TLS-intercepting proxy, pip needs its CA: the Containerfile takes PIP_CERT for that.
    proxy_ca = os.environ.get("PIP_CERT")
    extra = ["-v", f"{proxy_ca}:/etc/proxy-ca.crt:ro", "--build-arg", "PIP_CERT=/etc/proxy-ca.crt"] if proxy_ca else []
    try:
        run("buildah", "bud", "--isolation", "chroot", "--build-arg", f"BASE={base}", *extra,
            "-f", "Containerfile", "-t", tag, ".")
        run("buildah", "push", "-q", tag, f"oci:{tmp_path / 'oci'}:0.1.0")
    finally:
        subprocess.run(["buildah", "rmi", "-f", tag, base], capture_output=True, check=False)
    built = unpack(f"{tmp_path / 'oci'}:0.1.0", tmp_path / "containerfile")

    assert built.args == scripted.args == ["/opt/modelrollout/bin/modelrollout", "run"]
    assert built.user == scripted.user == "65532:65532"
    assert {k: v for k, v in built.env.items() if k.startswith(("PATH", "PYTHON"))} == {
        k: v for k, v in scripted.env.items() if k.startswith(("PATH", "PYTHON"))}
    assert files(built.rootfs / "opt") == files(scripted.rootfs / "opt")
    for gone in ("usr/bin/apt-get", "usr/bin/dpkg", "usr/bin/perl"):
        assert not (built.rootfs / gone).exists(), gone

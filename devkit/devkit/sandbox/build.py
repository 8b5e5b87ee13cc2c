"""Build the control-plane binaries from Go modules, once, into a versioned cache.

Each component is built in a small generated Go module under `<cache>/build/`
and installed into `<cache>/bin/<component>-<version>/` together with a
MANIFEST.json of sha256 sums. A component whose files are missing or whose
sums do not match is rebuilt, so a corrupt cache heals itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_dir

from devkit.sandbox import versions
from devkit.sandbox.errors import SandboxError
from devkit.sandbox.gotool import find_or_install_go

Progress = Callable[[str], None]


def cache_root() -> Path:
    """The cache directory; MODELROLLOUT_CACHE overrides the platform default."""
    override = os.environ.get("MODELROLLOUT_CACHE")
    root = Path(override) if override else Path(user_cache_dir("modelrollout"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path
    kwokctl: Path


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    binaries: tuple[str, ...]
    write_module: Callable[[Path], None]
    packages: tuple[str, ...]
    ldflags: str = "-s -w"

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


def _kubernetes_ldflags() -> str:
    version = versions.KUBERNETES
    major, minor = version.removeprefix("v").split(".")[:2]
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    # Without these stamps the binaries report v0.0.0 and kwokctl picks flags
    # for the wrong Kubernetes version.
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


def _write_kubernetes_module(workdir: Path) -> None:
    replaces = "\n".join(
        f"\t{module} => {module} {versions.KUBERNETES_STAGING}"
        for module in versions.KUBERNETES_STAGING_MODULES
    )
    (workdir / "go.mod").write_text(
        "module modelrollout.local/kubernetes\n\n"
        "go 1.26.0\n\n"
        # Copied from upstream's go.mod: the release is tested with these defaults.
        "godebug default=go1.26\n\n"
        f"require k8s.io/kubernetes {versions.KUBERNETES}\n\n"
        f"replace (\n{replaces}\n)\n"
    )


def _write_etcd_module(workdir: Path) -> None:
    # `go install` refuses etcd because its go.mod has replace directives;
    # a wrapper module that imports etcdmain builds the same server.
    (workdir / "go.mod").write_text(
        "module modelrollout.local/etcd\n\n"
        "go 1.26.0\n\n"
        f"require go.etcd.io/etcd/server/v3 {versions.ETCD}\n"
    )
    cmd = workdir / "cmd" / "etcd"
    cmd.mkdir(parents=True, exist_ok=True)
    (cmd / "main.go").write_text(
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )


def _write_kwok_module(workdir: Path) -> None:
    (workdir / "go.mod").write_text(
        "module modelrollout.local/kwok\n\n"
        "go 1.26.0\n\n"
        f"require sigs.k8s.io/kwok {versions.KWOK}\n"
    )


COMPONENTS = (
    Component(
        name="kwok",
        version=versions.KWOK,
        binaries=("kwok", "kwokctl"),
        write_module=_write_kwok_module,
        packages=("sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"),
    ),
    Component(
        name="etcd",
        version=versions.ETCD,
        binaries=("etcd",),
        write_module=_write_etcd_module,
        packages=("./cmd/etcd",),
    ),
    Component(
        name="kubernetes",
        version=versions.KUBERNETES,
        binaries=("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
        write_module=_write_kubernetes_module,
        packages=(
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
        ),
        ldflags=_kubernetes_ldflags(),
    ),
)


def _go_tool(name: str, module: str, version: str, package: str, ldflags: str = "-s -w",
             go: str = "1.26.0") -> Component:
    """A one-binary tool, built from its module in a wrapper module that requires it (and its `go` line)."""
    def write(workdir: Path) -> None:
        (workdir / "go.mod").write_text(
            f"module modelrollout.local/{name}\n\ngo {go}\n\nrequire {module} {version}\n"
        )
    return Component(name=name, version=version, binaries=(name,), write_module=write,
                     packages=(package,), ldflags=ldflags)


# The chart's tools: built like the control plane, but only when a verb needs them.
HELM = _go_tool("helm", "helm.sh/helm/v3", versions.HELM, "helm.sh/helm/v3/cmd/helm",
                # Unstamped, helm reports v3.x-dev, and charts that pin a kubeVersion fail.
                ldflags=f"-s -w -X helm.sh/helm/v3/internal/version.version={versions.HELM}")
KIND = _go_tool("kind", "sigs.k8s.io/kind", versions.KIND, "sigs.k8s.io/kind")
ENVOY_GATEWAY = _go_tool(
    "envoy-gateway", "github.com/envoyproxy/gateway", versions.ENVOY_GATEWAY,
    "github.com/envoyproxy/gateway/cmd/envoy-gateway", go="1.26.7",
    ldflags=f"-s -w -X github.com/envoyproxy/gateway/internal/cmd/version.envoyGatewayVersion={versions.ENVOY_GATEWAY}")


def ensure_tool(component: Component, progress: Progress | None = None) -> Path:
    """The cached binary of a one-binary tool (helm, kind), built from its Go module if missing."""
    return ensure_components((component,), cache_root(), progress)[component.binaries[0]]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _installed_ok(bindir: Path, component: Component) -> bool:
    manifest = bindir / "MANIFEST.json"
    try:
        sums = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    for name in component.binaries:
        binary = bindir / name
        if not binary.is_file() or sums.get(name) != _sha256(binary):
            return False
    return True


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    # Two test runs starting at once must not build into the same directory.
    with (root / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _go_env(go: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{go.parent}{os.pathsep}{env.get('PATH', '')}"
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    return env


def _run_go(args: list[str], cwd: Path, env: dict[str, str], label: str, progress: Progress) -> None:
    """Run go, streaming one progress line every few seconds; keep the tail for errors."""
    started = time.monotonic()
    last_report = 0.0
    tail: list[str] = []
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    for lines, line in enumerate(process.stdout, start=1):
        tail = [*tail[-40:], line.rstrip()]
        now = time.monotonic()
        if now - last_report >= 5:
            last_report = now
            progress(f"[{label}] {now - started:5.0f}s  {lines:5d} steps  {line.strip()[:90]}")
    if process.wait() != 0:
        raise SandboxError(f"building {label} failed:\n" + "\n".join(tail))


def _build(component: Component, go: Path, root: Path, progress: Progress) -> None:
    workdir = root / "build" / component.key
    workdir.mkdir(parents=True, exist_ok=True)
    component.write_module(workdir)
    env = _go_env(go)
    staging = root / "bin" / f".{component.key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    progress(f"[{component.key}] building {', '.join(component.binaries)} (cold builds take minutes)")
    started = time.monotonic()
    _run_go(
        [str(go), "build", "-v", "-trimpath", "-ldflags", component.ldflags,
         "-o", str(staging) + os.sep, *component.packages],
        workdir, env, component.key, progress,
    )
    sums = {name: _sha256(staging / name) for name in component.binaries}
    (staging / "MANIFEST.json").write_text(json.dumps(sums, indent=2))
    # ru_maxrss of children is the largest single process (a compile or link step), in KiB.
    record = {"seconds": round(time.monotonic() - started, 1),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
    (staging / "BUILD.json").write_text(json.dumps(record))
    final = root / "bin" / component.key
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def build_records(root: Path | None = None) -> dict[str, dict[str, float]]:
    """What each cached component's build cost, as recorded when it was built."""
    records = {}
    for component in COMPONENTS:
        path = (root or cache_root()) / "bin" / component.key / "BUILD.json"
        if path.exists():
            records[component.key] = json.loads(path.read_text())
    return records


def ensure_components(
    components: tuple[Component, ...], root: Path, progress: Progress | None = None
) -> dict[str, Path]:
    """Build whatever of `components` is missing or corrupt; return binary name -> path."""
    report = progress or (lambda message: print(message, file=sys.stderr, flush=True))
    found: dict[str, Path] = {}
    with _build_lock(root):
        go: Path | None = None
        for component in components:
            bindir = root / "bin" / component.key
            if not _installed_ok(bindir, component):
                if bindir.exists():
                    report(f"[{component.key}] cache is incomplete or corrupt; rebuilding")
                go = go or find_or_install_go(root)
                started = time.monotonic()
                _build(component, go, root, report)
                report(f"[{component.key}] built in {time.monotonic() - started:.0f}s")
            for name in component.binaries:
                found[name] = bindir / name
    return found


def ensure_binaries(progress: Progress | None = None) -> Binaries:
    """Return the cached control-plane binaries, building whatever is missing or corrupt."""
    found = ensure_components(COMPONENTS, cache_root(), progress)
    return Binaries(**{name.replace("-", "_"): path for name, path in found.items()})


if __name__ == "__main__":
    print(ensure_binaries())

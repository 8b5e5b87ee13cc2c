"""The install path's figures: the image's build time (cold and warm), its size and whether two builds
give one digest; then, on a fresh sandbox, the time from `helm install` until the operator, run from
the image in its own read-only root with the chart's ServiceAccount, holds its Lease, and its
resident memory then.

Cold means empty download caches (a fresh MODELROLLOUT_CACHE for the image: no Debian packages, no
wheels, and pip's HTTP cache off); warm means both cached and everything rebuilt (`--force`).
Needs root (mmdebstrap, chroot).

    python -m benchmarks.install [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from devkit.sandbox.build import HELM, ensure_binaries, ensure_tool
from devkit.sandbox.cluster import Sandbox
from e2e.image_root import resident_mib, run_image, unpack
from kubernetes import client

from controller.kube.client import api_client_from_kubeconfig

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "modelrollout-system"


def build(cache: Path, *args: str, cold: bool = False) -> dict[str, str]:
    """Run scripts/build-image.sh with `cache` as MODELROLLOUT_CACHE; its summary lines, by key."""
    env = dict(os.environ, MODELROLLOUT_CACHE=str(cache), **({"PIP_NO_CACHE_DIR": "1"} if cold else {}))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh"), *args], env=env,
                            capture_output=True, text=True, timeout=3600, check=True)
    return dict(re.findall(r"^(image|size|built in):\s+(.*)$", result.stdout, flags=re.MULTILINE))


def lease_held(coordination: client.CoordinationV1Api, holder: str) -> bool:
    return any(lease.spec is not None and lease.spec.holder_identity == holder
               for lease in coordination.list_namespaced_lease(SYSTEM).items)


def start_round(sandbox_kubeconfig: Path, port: int, oci: str, workdir: Path, index: int) -> tuple[float, float]:
    """helm install, then the image's operator; seconds until its Lease is held, and its RSS then."""
    kubectl = [str(ensure_binaries(lambda _: None).kubectl), "--kubeconfig", str(sandbox_kubeconfig)]
    helm = [str(ensure_tool(HELM)), "--kubeconfig", str(sandbox_kubeconfig)]
    api_client = api_client_from_kubeconfig(sandbox_kubeconfig)
    coordination = client.CoordinationV1Api(api_client)
    subprocess.run([*kubectl, "apply", "-f", str(ROOT / "manifests" / "namespace.yaml")], check=True,
                   capture_output=True)
    image = unpack(oci, workdir / f"bundle-{index}")
    account = workdir / f"sa-{index}"
    account.mkdir()
    cluster = yaml.safe_load(sandbox_kubeconfig.read_text())["clusters"][0]["cluster"]
    (account / "ca.crt").write_bytes(Path(cluster["certificate-authority"]).read_bytes())
    (account / "namespace").write_text(SYSTEM)
    started = time.monotonic()
    subprocess.run([*helm, "install", "modelrollout", str(ROOT / "charts" / "modelrollout"), "--namespace", SYSTEM,
                    "--skip-crds", "--set", "replicas=1"], check=True, capture_output=True)
    token = subprocess.run([*kubectl, "-n", SYSTEM, "create", "token", "modelrollout"], check=True,
                           capture_output=True, text=True).stdout.strip()
    (account / "token").write_text(token)
    holder = f"bench-{index}"
    try:
        with run_image(image, account, port, workdir / f"operator-{index}.log", [],
                       {"POD_NAME": holder, "POD_NAMESPACE": SYSTEM}) as process:
            deadline = started + 120
            while not lease_held(coordination, holder):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise TimeoutError(f"no Lease: see {workdir / f'operator-{index}.log'}")
                time.sleep(0.05)
            seconds = time.monotonic() - started
            return seconds, resident_mib(process)
    finally:
        for cleanup in ([*helm, "uninstall", "modelrollout", "--namespace", SYSTEM, "--wait"],
                        [*kubectl, "delete", "--ignore-not-found", "namespace", SYSTEM]):
            subprocess.run(cleanup, capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="helm install -> Lease rounds")
    parser.add_argument("--skip-cold", action="store_true", help="measure the warm build only")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: mmdebstrap and the image's own root (chroot)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="install-bench-"))
    builds = []
    if not args.skip_cold:
        builds.append(("cold", build(workdir / "cold-cache", "--force", cold=True)))
    warm_cache = Path(os.environ.get("MODELROLLOUT_CACHE", Path.home() / ".cache" / "modelrollout"))
    build(warm_cache)  # fill the caches, if this machine never built the image
    builds.append(("warm", build(warm_cache, "--force")))
    for label, figures in builds:
        print(f"build {label}: {figures['built in']}; {figures['size']}; {figures['image']}")
    digests = {figures["image"] for _, figures in builds}
    print(f"reproducible: {'yes, one digest' if len(digests) == 1 else f'no, {len(digests)} digests'}")

    sandbox = Sandbox(name=f"install-{os.getpid()}")
    state = sandbox.up()
    try:
        oci = f"{warm_cache / 'image' / 'out' / 'oci'}:0.1.0"
        rounds = [start_round(Path(state.kubeconfig), state.apiserver_port, oci, workdir, index)
                  for index in range(args.rounds)]
    finally:
        sandbox.down()
    for index, (seconds, rss) in enumerate(rounds):
        print(f"round {index}: helm install -> Lease held {seconds:.2f} s; operator RSS then {rss:.0f} MiB")
    print(json.dumps({"lease_p50_s": round(statistics.median(s for s, _ in rounds), 2),
                      "rss_p50_mib": round(statistics.median(r for _, r in rounds))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

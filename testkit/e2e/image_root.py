"""Run an OCI image's own entrypoint in a root of its own, as a kubelet would.

The image's rootfs is mounted read-only, a ServiceAccount token and CA sit at the in-cluster
paths, and KUBERNETES_SERVICE_HOST/PORT point at the sandbox. crun cannot run containers on these
machines ("cgroups in hybrid mode not supported"), so a mount and PID namespace (unshare) and
chroot stand in for it. Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVICE_ACCOUNT_DIR = "run/secrets/kubernetes.io/serviceaccount"  # /var/run is a link to /run

# Runs outside the image, in the new namespaces: mounts, then becomes the image's process.
# The host's tools by absolute path: PATH is already the image's.
_ENTER = """set -e
mount=$1; chroot=$2; root=$3; sa=$4; user=$5; shift 5
"$mount" --bind "$root" "$root"
"$mount" --bind "$sa" "$root/run/secrets/kubernetes.io/serviceaccount"
"$mount" -o remount,bind,ro "$root/run/secrets/kubernetes.io/serviceaccount"
"$mount" -t proc proc "$root/proc"
"$mount" --rbind /dev "$root/dev"
"$mount" -o remount,bind,ro "$root"
exec "$chroot" --userspec="$user" "$root" "$@"
"""


@dataclass(frozen=True)
class ImageProcess:
    """What the image's config says to run: its entrypoint and cmd, environment and user."""

    args: list[str]
    env: dict[str, str]
    user: str
    rootfs: Path


def unpack(oci_ref: str, bundle: Path) -> ImageProcess:
    """`umoci unpack` the image (`<layout>:<tag>`); its runtime config names the process."""
    subprocess.run(["umoci", "unpack", "--image", oci_ref, str(bundle)],
                   check=True, capture_output=True, timeout=300)
    process = json.loads((bundle / "config.json").read_text())["process"]
    env = dict(item.split("=", 1) for item in process["env"])
    user = f"{process['user']['uid']}:{process['user']['gid']}"
    return ImageProcess(list(process["args"]), env, user, bundle / "rootfs")


def _host_tool(name: str) -> str:
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise FileNotFoundError(f"{name} (util-linux/coreutils) is needed to run an image here")
    return found


@contextmanager
def run_image(image: ImageProcess, service_account: Path, apiserver_port: int, log: Path,
              args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The image's process with `args` appended (as a Deployment's args), until the block ends."""
    (image.rootfs / SERVICE_ACCOUNT_DIR).mkdir(parents=True, exist_ok=True)
    environment = {**image.env, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                   "KUBERNETES_SERVICE_PORT": str(apiserver_port), **env}
    with log.open("ab") as output:
        process = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private",
             "sh", "-c", _ENTER, "enter", _host_tool("mount"), _host_tool("chroot"),
             str(image.rootfs), str(service_account), image.user, *image.args, *args],
            env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield process
    finally:
        # The whole session: unshare, and the image's process inside its PID namespace.
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            if process.poll() is not None:
                break
            os.killpg(process.pid, sig)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                continue


def resident_mib(process: subprocess.Popen[bytes]) -> float:
    """VmRSS of the image's process: the only child of unshare."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    for line in Path(f"/proc/{children[0]}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no VmRSS")

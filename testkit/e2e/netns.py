"""The pods' network: a network namespace of our own that holds the kwok pods' addresses.

kwok gives each pod an address from its node's pod range (10.64.0.0/16, 10.65.0.0/16, ...: the
sandbox's nodes). The controller-manager writes those addresses into EndpointSlices, which is what
a gateway reads. Loopback addresses would have been simpler, but the apiserver rejects them in an
EndpointSlice ("may not be in the loopback range"). So the pods' addresses live here instead:

    host (root namespace)                          mrdp-<pid> (created and deleted by the test kit)
    mrh<pid> 10.63.255.1/30  <---- veth ---->  mrn<pid> 10.63.255.2/30
    route 10.64.0.0/14 via 10.63.255.2             lo: 10.64.0.5/32, 10.65.0.3/32, ... (one a pod)

A model-server process runs inside the namespace (`ip netns exec`), bound to its pod's address.
Everything else (nginx, Prometheus, the load generator) stays on the host and reaches the pods over
the veth pair, so no packet to a pod address ever leaves this machine. Needs root (CAP_NET_ADMIN).
One data plane at a time per machine: the route to the pod range is machine-wide.
"""

from __future__ import annotations

import os
import re
import subprocess

from devkit.sandbox.processes import pid_alive

POD_RANGE = "10.64.0.0/14"  # the sandbox's node pod ranges, 10.64-10.67
HOST_ADDRESS, NAMESPACE_ADDRESS = "10.63.255.1", "10.63.255.2"
_PREFIX = "mrdp-"


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def remove_stale() -> None:
    """Delete the namespaces (and with them their veth pairs and route) of test runs that died."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{_PREFIX}(\d+)", name)
        if match and not pid_alive(int(match.group(1))):
            _ip("link", "del", f"mrh{match.group(1)}", check=False)
            _ip("netns", "del", name, check=False)


class PodNetwork:
    def __init__(self) -> None:
        pid = os.getpid()
        self.name, self.host_link, self.pod_link = f"{_PREFIX}{pid}", f"mrh{pid}", f"mrn{pid}"
        self.addresses: set[str] = set()
        self.up = False

    def start(self) -> PodNetwork:
        if os.geteuid() != 0:
            raise NetworkError("the e2e data plane needs root (CAP_NET_ADMIN) for its network namespace")
        remove_stale()
        if _ip("route", "show", POD_RANGE).stdout.strip():
            raise NetworkError(f"a route to {POD_RANGE} exists already: another e2e data plane is up on this machine")
        _ip("netns", "add", self.name)
        self.up = True
        try:
            _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.pod_link, "netns", self.name)
            _ip("addr", "add", f"{HOST_ADDRESS}/30", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            _ip("-n", self.name, "addr", "add", f"{NAMESPACE_ADDRESS}/30", "dev", self.pod_link)
            _ip("-n", self.name, "link", "set", self.pod_link, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
            _ip("route", "add", POD_RANGE, "via", NAMESPACE_ADDRESS, "dev", self.host_link)
        except NetworkError:
            self.stop()
            raise
        return self

    def add_address(self, address: str) -> None:
        if address not in self.addresses:
            result = _ip("-n", self.name, "addr", "add", f"{address}/32", "dev", "lo", check=False)
            if result.returncode != 0 and "File exists" not in result.stderr:
                raise NetworkError(f"pod address {address}: {result.stderr.strip()}")
            self.addresses.add(address)

    def remove_address(self, address: str) -> None:
        if address in self.addresses:
            _ip("-n", self.name, "addr", "del", f"{address}/32", "dev", "lo", check=False)
            self.addresses.discard(address)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def stop(self) -> None:
        """Delete the veth pair (its route goes with it) and the namespace. Processes inside must
        have been stopped by their owner first."""
        if self.up:
            _ip("link", "del", self.host_link, check=False)
            _ip("netns", "del", self.name, check=False)
            self.up = False
        self.addresses.clear()

    def __enter__(self) -> PodNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


"""Where an analysis may send queries: the installer's allow-list, and never the cloud's metadata.

Anyone who may create a ModelRollout names `analysis.prometheus.address`, and the outcome of each
query lands in status: without a policy the operator would probe hosts and ports for them. The
installer sets the policy (the chart's `analysis.allowedAddresses` and `analysis.deniedAddresses`):
an address is refused when its host, or any address it resolves to, is denied, or, with an
allow-list, when neither its host nor an address it resolves to is allowed. A refused address
sends no request.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from controller.measure.credentials import CredentialsUnavailable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Link-local (where clouds serve instance metadata and credentials) and the metadata addresses
# and names of the large clouds.
DEFAULT_DENIED = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32",
                  "metadata.google.internal", "metadata.azure.com")
RESOLVED_TTL_SECONDS = 60.0


class AddressRefused(CredentialsUnavailable):
    """The installer's policy does not let the analysis query this address."""


@dataclass(frozen=True)
class _Entries:
    """A list of hosts and CIDRs, parsed once."""

    networks: tuple[IPNetwork, ...]
    names: frozenset[str]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> _Entries:
        networks: list[IPNetwork] = []
        names: set[str] = set()
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.add(entry.strip().lower().rstrip("."))
        return cls(tuple(networks), frozenset(names))

    def match(self, host: str, ips: Sequence[IPAddress]) -> bool:
        return host in self.names or any(ip in net for ip in ips for net in self.networks)


def _system_resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


@dataclass
class AddressPolicy:
    """Hosts and CIDRs the analysis may (allowed; empty: any) and may never (denied) query."""

    allowed: Sequence[str] = ()
    denied: Sequence[str] = DEFAULT_DENIED
    resolve: Callable[[str], list[str]] = _system_resolve
    _resolved: dict[str, tuple[float, list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Parsed once: the check runs at every analysis look.
        self._allowed, self._denied = _Entries.parse(self.allowed), _Entries.parse(self.denied)

    def _addresses(self, host: str) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        cached = self._resolved.get(host)
        if cached is not None and time.monotonic() - cached[0] < RESOLVED_TTL_SECONDS:
            return cached[1]
        try:
            found = self.resolve(host)
        except OSError:
            found = []  # Unresolvable: the query fails on its own, and says so.
        self._resolved[host] = (time.monotonic(), found)
        return found

    def check(self, address: str) -> None:
        """Raise AddressRefused, naming the rule, unless the policy lets the analysis query `address`."""
        host = (urlsplit(address).hostname or "").lower().rstrip(".")
        ips = [ipaddress.ip_address(ip.split("%")[0]) for ip in self._addresses(host)]
        if self._denied.match(host, ips):
            raise AddressRefused(f"analysis address {address} is denied by the operator's policy (link-local and "
                                 "cloud metadata addresses, and the chart's analysis.deniedAddresses): no query sent")
        if not self.allowed:
            return
        if self._allowed.match(host, ips):
            return
        raise AddressRefused(f"analysis address {address} is not in the operator's allow-list (the chart's "
                             f"analysis.allowedAddresses: {', '.join(self.allowed)}): no query sent")

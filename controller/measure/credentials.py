"""Prometheus credentials go only where the Secret's owner allowed.

Anyone who may create a ModelRollout may name any address and any Secret of their namespace; the
operator reads the Secret with its own rights. So the Secret itself says where its credentials may
go: its annotation `rollouts.mlops.dev/prometheus-addresses` lists the allowed base URLs (comma or
space separated), and plain http:// needs `rollouts.mlops.dev/allow-plain-http: "true"` too.
Anything else is refused before a single request is sent.

The operator's own Prometheus (`modelrollout run --prometheus-address`) is the installer's choice,
and so are its credentials, a Secret mounted into the operator's pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from controller.api import ALLOW_PLAIN_HTTP_ANNOTATION, PROMETHEUS_ADDRESSES_ANNOTATION
from controller.measure.prometheus import Credentials


class CredentialsUnavailable(LookupError):
    """The Secret is missing or unreadable, or does not allow its credentials to go to this address; or the
    operator's policy refuses the address (addresses.AddressRefused)."""


@dataclass(frozen=True)
class SecretView:
    """What the analysis needs of a Secret: its decoded data and its annotations."""

    data: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)


def _normalised(address: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(address.strip())
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default, parts.path.rstrip("/")


def check_one_kind(data: dict[str, str], where: str) -> None:
    """Bearer or basic, never both: sent both, a server takes one, and which one is not ours to guess."""
    if "token" in data and ("username" in data or "password" in data):
        raise CredentialsUnavailable(f"{where} holds both token and username/password: keep one of them")
    if ("username" in data) != ("password" in data):
        raise CredentialsUnavailable(f"{where} holds {'username' if 'username' in data else 'password'} "
                                     "without the other: basic auth needs both")


def check_binding(address: str, secret: SecretView, where: str) -> None:
    """Raise CredentialsUnavailable unless `secret` allows its credentials to go to `address`, and
    holds one kind of them."""
    check_one_kind(secret.data, f"Secret {where}")
    allowed = secret.annotations.get(PROMETHEUS_ADDRESSES_ANNOTATION, "").replace(",", " ").split()
    if _normalised(address) not in {_normalised(entry) for entry in allowed}:
        listed = ", ".join(allowed) if allowed else "none"
        raise CredentialsUnavailable(
            f"Secret {where} does not allow its credentials to be sent to {address}: its annotation "
            f"{PROMETHEUS_ADDRESSES_ANNOTATION} lists {listed}")
    plain = urlsplit(address).scheme.lower() == "http"
    if plain and secret.annotations.get(ALLOW_PLAIN_HTTP_ANNOTATION, "").lower() != "true":
        raise CredentialsUnavailable(
            f"Secret {where} would send its credentials in plain text to {address}: use https, or annotate the "
            f'Secret {ALLOW_PLAIN_HTTP_ANNOTATION}: "true"')


def operator_credentials(address: str, directory: Path | None, allow_plain_http: bool) -> Credentials:
    """The operator's own Prometheus credentials: the files token, username, password and ca.crt of
    `directory` (a mounted Secret), read once into memory. Raises CredentialsUnavailable for plain
    http:// with credentials unless `allow_plain_http`."""
    if directory is None:
        return Credentials()
    if not directory.is_dir():
        raise CredentialsUnavailable(f"--prometheus-credentials {directory} is not a directory")
    files = {name: (directory / name).read_text().strip() if name != "ca.crt" else (directory / name).read_text()
             for name in ("token", "username", "password", "ca.crt") if (directory / name).is_file()}
    check_one_kind(files, f"--prometheus-credentials {directory}")
    credentials = Credentials.from_secret(files)
    if credentials != Credentials() and urlsplit(address).scheme.lower() == "http" and not allow_plain_http:
        raise CredentialsUnavailable(
            f"--prometheus-credentials would go in plain text to {address}: use https, or pass "
            "--prometheus-allow-plain-http (the chart's prometheus.allowPlainHttp)")
    return credentials

"""The Secret's owner binds its credentials to addresses; everything else is refused before any request."""

from __future__ import annotations

import pytest

from controller.analysis.credentials import CredentialsUnavailable, SecretView, check_binding
from controller.api import ALLOW_PLAIN_HTTP_ANNOTATION, PROMETHEUS_ADDRESSES_ANNOTATION


def _secret(addresses: str, plain: bool = False) -> SecretView:
    annotations = {PROMETHEUS_ADDRESSES_ANNOTATION: addresses}
    if plain:
        annotations[ALLOW_PLAIN_HTTP_ANNOTATION] = "true"
    return SecretView({"token": "t"}, annotations)


@pytest.mark.parametrize("address", [
    "https://prometheus.monitoring:9090", "https://Prometheus.Monitoring:9090/", "https://thanos.example",
    "https://thanos.example:443",
])
def test_a_listed_address_is_allowed_as_written_or_normalised(address: str) -> None:
    check_binding(address, _secret("https://prometheus.monitoring:9090, https://thanos.example/"), "ns/creds")


@pytest.mark.parametrize(("address", "secret", "words"), [
    ("https://evil.example", _secret("https://prometheus.monitoring:9090"), "does not allow"),
    ("https://prometheus.monitoring:9091", _secret("https://prometheus.monitoring:9090"), "does not allow"),
    ("https://prometheus.monitoring:9090/api", _secret("https://prometheus.monitoring:9090"), "does not allow"),
    ("https://prometheus.monitoring:9090", SecretView({"token": "t"}), "lists none"),
    ("http://prometheus.monitoring:9090", _secret("http://prometheus.monitoring:9090"), "plain text"),
    ("http://prometheus.monitoring:9090", _secret("https://prometheus.monitoring:9090", plain=True),
     "does not allow"),
])
def test_anything_else_is_refused_with_the_reason(address: str, secret: SecretView, words: str) -> None:
    with pytest.raises(CredentialsUnavailable, match=words) as refused:
        check_binding(address, secret, "ns/creds")
    assert "ns/creds" in str(refused.value)


def test_plain_http_needs_the_owners_explicit_yes() -> None:
    check_binding("http://prometheus.monitoring:9090", _secret("http://prometheus.monitoring:9090", plain=True), "x")

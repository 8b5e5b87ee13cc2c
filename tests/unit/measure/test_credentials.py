"""The Secret's owner binds its credentials to addresses; everything else is refused before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.__main__ import main
from controller.api import ALLOW_PLAIN_HTTP_ANNOTATION, PROMETHEUS_ADDRESSES_ANNOTATION
from controller.measure.credentials import CredentialsUnavailable, SecretView, check_binding, operator_credentials
from controller.measure.prometheus import Credentials


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
    ("https://prometheus.monitoring:9090", SecretView({"token": "t", "username": "a", "password": "p"}, {
        PROMETHEUS_ADDRESSES_ANNOTATION: "https://prometheus.monitoring:9090"}), "both token and username/password"),
    ("https://prometheus.monitoring:9090", SecretView({"username": "a"}, {
        PROMETHEUS_ADDRESSES_ANNOTATION: "https://prometheus.monitoring:9090"}), "username without the other"),
])
def test_anything_else_is_refused_with_the_reason(address: str, secret: SecretView, words: str) -> None:
    with pytest.raises(CredentialsUnavailable, match=words) as refused:
        check_binding(address, secret, "ns/creds")
    assert "ns/creds" in str(refused.value)


def test_plain_http_needs_the_owners_explicit_yes() -> None:
    check_binding("http://prometheus.monitoring:9090", _secret("http://prometheus.monitoring:9090", plain=True), "x")


def test_the_operators_own_credentials_are_read_from_a_mounted_secret(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    credentials = operator_credentials("https://prometheus.monitoring:9090", tmp_path, allow_plain_http=False)
    assert credentials == Credentials(token="abc", ca_pem="-----BEGIN CERTIFICATE-----\n")
    assert operator_credentials("http://p:9090", None, allow_plain_http=False) == Credentials()


def test_the_operators_own_credentials_need_leave_for_plain_http(tmp_path: Path) -> None:
    (tmp_path / "username").write_text("alice")
    (tmp_path / "password").write_text("s3cret")
    with pytest.raises(CredentialsUnavailable, match="--prometheus-allow-plain-http"):
        operator_credentials("http://prometheus.monitoring:9090", tmp_path, allow_plain_http=False)
    allowed = operator_credentials("http://prometheus.monitoring:9090", tmp_path, allow_plain_http=True)
    assert (allowed.username, allowed.password) == ("alice", "s3cret")


def test_run_refuses_to_start_with_plain_http_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "token").write_text("abc")
    code = main(["run", "--prometheus-address", "http://prometheus:9090", "--prometheus-credentials", str(tmp_path)])
    assert code == 2
    assert "plain text" in capsys.readouterr().err

"""MetricProvider over Prometheus' HTTP API, built on prometheus-api-client."""

from __future__ import annotations

import math
import tempfile
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from controller.analysis.provider import MetricError

QUERY_TIMEOUT_SECONDS = 5


class PrometheusProvider:
    def __init__(self, client: PrometheusConnect) -> None:
        self.client = client

    def _query(self, query: str) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = self.client.custom_query(query, timeout=QUERY_TIMEOUT_SECONDS)
        except (PrometheusApiClientException, requests.RequestException, ValueError) as error:
            raise MetricError(f"prometheus query failed: {error}") from error
        return result

    def scalar(self, query: str) -> float | None:
        result = self._query(query)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def by_label(self, query: str, label: str) -> dict[str, float]:
        values = {}
        for series in self._query(query):
            value = float(series["value"][1])
            if not math.isnan(value):
                values[series["metric"].get(label, "")] = value
        return values


def connect(address: str, secret: dict[str, str] | None = None) -> PrometheusProvider:
    """A provider for `address`; a Secret's token, username/password and ca.crt configure auth and TLS."""
    secret = secret or {}
    headers = {"Authorization": f"Bearer {secret['token']}"} if secret.get("token") else None
    session = requests.Session()
    if secret.get("ca.crt"):
        # requests wants a file path for a private CA.
        with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as bundle:
            bundle.write(secret["ca.crt"])
        session.verify = bundle.name
    if secret.get("username"):
        session.auth = (secret["username"], secret.get("password", ""))
    client = PrometheusConnect(url=address, headers=headers, disable_ssl=False, session=session)
    return PrometheusProvider(client)

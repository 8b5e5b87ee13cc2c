"""Typed entry points into the `kubernetes` client, whose config loaders are untyped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient


def api_client_from_kubeconfig(kubeconfig: Path | str) -> client.ApiClient:
    return cast(client.ApiClient, config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]


def dynamic_client(api: client.ApiClient) -> Any:
    """A DynamicClient: dict in, dict out, for any kind (built-in or custom)."""
    return DynamicClient(api)  # type: ignore[no-untyped-call]

"""Every e2e world routes through Envoy Gateway: its controller runs beside the session's sandbox."""

from __future__ import annotations

import pytest
from devkit.sandbox.cluster import SandboxState


@pytest.fixture(autouse=True)
def _envoy_gateway(envoy_gateway: SandboxState) -> SandboxState:
    return envoy_gateway

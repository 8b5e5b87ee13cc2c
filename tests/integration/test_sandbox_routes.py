"""The real Gateway API and Istio CRDs are installed: routes can be created and patched."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster


def _backend(name: str, weight: int) -> dict[str, Any]:
    return {"name": name, "port": 8080, "weight": weight}


def test_httproute_create_and_patch_weights_and_mirror(api_client: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    group, version, plural = "gateway.networking.k8s.io", "v1", "httproutes"
    route = {
        "apiVersion": f"{group}/{version}",
        "kind": "HTTPRoute",
        "metadata": {"name": "scorer"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [_backend("scorer-stable", 100), _backend("scorer-candidate", 0)]}],
        },
    }
    custom.create_namespaced_custom_object(group, version, namespace, plural, route)
    patch = {
        "spec": {
            "rules": [{
                "backendRefs": [_backend("scorer-stable", 90), _backend("scorer-candidate", 10)],
                "filters": [{
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": {"name": "scorer-candidate", "port": 8080}, "percent": 50},
                }],
            }]
        }
    }
    custom.patch_namespaced_custom_object(group, version, namespace, plural, "scorer", patch)
    stored: dict[str, Any] = custom.get_namespaced_custom_object(group, version, namespace, plural, "scorer")  # type: ignore[assignment]
    rule = stored["spec"]["rules"][0]
    assert [ref["weight"] for ref in rule["backendRefs"]] == [90, 10]
    assert rule["filters"][0]["requestMirror"]["percent"] == 50


def test_httproute_schema_rejects_a_bad_mirror_percent(api_client: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "bad"},
        "spec": {"rules": [{
            "backendRefs": [_backend("scorer-stable", 100)],
            "filters": [{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "scorer-candidate", "port": 8080}, "percent": 150}}],
        }]},
    }
    with pytest.raises(client.ApiException) as error:
        custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    assert error.value.status == 422
    assert "percent" in str(error.value.body)


def test_virtualservice_create_and_patch(api_client: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    group, version, plural = "networking.istio.io", "v1", "virtualservices"
    service = {
        "apiVersion": f"{group}/{version}",
        "kind": "VirtualService",
        "metadata": {"name": "scorer"},
        "spec": {
            "hosts": ["scorer"],
            "http": [{"name": "primary", "route": [
                {"destination": {"host": "scorer-stable"}, "weight": 100},
                {"destination": {"host": "scorer-candidate"}, "weight": 0},
            ]}],
        },
    }
    custom.create_namespaced_custom_object(group, version, namespace, plural, service)
    patch = {"spec": {"http": [{
        "name": "primary",
        "route": [
            {"destination": {"host": "scorer-stable"}, "weight": 75},
            {"destination": {"host": "scorer-candidate"}, "weight": 25},
        ],
        "mirror": {"host": "scorer-candidate"},
        "mirrorPercentage": {"value": 100.0},
    }]}}
    custom.patch_namespaced_custom_object(group, version, namespace, plural, "scorer", patch)
    stored: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
        group, version, namespace, plural, "scorer"
    )
    http = stored["spec"]["http"][0]
    assert [route["weight"] for route in http["route"]] == [75, 25]
    assert http["mirrorPercentage"]["value"] == 100.0
    destination_rules: dict[str, Any] = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        group, version, namespace, "destinationrules"
    )  # type: ignore[assignment]
    assert destination_rules["items"] == []

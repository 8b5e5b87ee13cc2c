"""The pieces of an end-to-end world: the operator as a real process, rollouts, routes and waiting.

Shared by the scenario tests, `modelrollout demo` and the benchmarks."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from devkit.sandbox.build import ensure_binaries
from kubernetes import client

from controller import api

T = TypeVar("T")


def start_operator(kubeconfig: Path | str, namespace: str | None, log: Path, *args: str,
                   env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`modelrollout run` in its own process, watching one namespace (None: all), its output appended
    to `log`: the one way the tests and benchmarks start an operator."""
    environment = dict(os.environ, KUBECONFIG=str(kubeconfig), **(env or {}))
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "controller", "run", *(["--namespace", namespace] if namespace else []), *args],
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )


@contextmanager
def operator_process(kubeconfig: Path, namespace: str | None, log: Path, *args: str,
                     env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`start_operator`, ended by its PID when the block ends."""
    process = start_operator(kubeconfig, namespace, log, *args, env=env)
    try:
        yield process
    finally:
        stop_process(process, 15)


def stop_process(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM a child we started, SIGKILL it after the grace period, and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(ensure_binaries(lambda _: None).kubectl), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0 or not check, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def wait_until(probe: Callable[[], T | None], timeout: float = 60.0, what: str = "condition",
               progress: Callable[[], Any] | None = None, stall: float = 120.0, every: float = 0.2) -> T:
    """The probe's first truthy answer, polled `every` seconds: the one wait of the tests and benchmarks
    (a benchmark that times the wait polls faster).

    Without `progress` it fails after `timeout`. With it, it fails only when `progress()` stays the
    same for `stall` seconds (a busy machine is slow, not stuck), and past `timeout` all the same,
    so the loop always ends."""
    started = moved_at = time.monotonic()
    seen = progress() if progress else None
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        now = time.monotonic()
        if progress is not None:
            moved = progress()
            if moved != seen:
                seen, moved_at = moved, now
            if now - moved_at > stall:
                raise AssertionError(f"{what}: nothing moved for {now - moved_at:.0f}s ({now - started:.0f}s in all; "
                                     f"last progress {seen!r})")
        if now - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")
        time.sleep(every)


def rollout_body(name: str, steps: list[dict[str, Any]], routing: dict[str, Any], image: str = "scorer:v1",
                 gpus: int = 1, replicas: int = 2, delay: int = 600) -> dict[str, Any]:
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": api.KIND,
        "metadata": {"name": name},
        "spec": {
            "model": name,
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "model", "image": image, "resources": resources}]}},
            "trafficRouting": routing,
            "strategy": {"steps": steps, "scaleDownDelaySeconds": delay},
        },
    }


def with_image(body: dict[str, Any], image: str, gpus: int = 1) -> dict[str, Any]:
    spec = copy.deepcopy(body["spec"])
    spec["template"]["spec"]["containers"][0]["image"] = image
    spec["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {"spec": {"template": spec["template"]}}


class Rollouts:
    """Read and change ModelRollouts and routes in one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL, body)

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL, name, patch)

    def status(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, name
        )
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def wait_status(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0,
                    what: str = "status", progress: Callable[[], Any] | None = None) -> dict[str, Any]:
        """With `progress`, `timeout` is only a cap: the wait fails when progress stalls (see `wait_until`)."""
        seen: list[dict[str, Any]] = []

        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            seen[:] = [status]
            return status if predicate(status) else None
        try:
            return wait_until(probe, timeout, f"{name}: {what}", progress=progress)
        except AssertionError as error:
            raise AssertionError(f"{error}; last status: {seen[-1] if seen else None}") from None

    def act(self, name: str, action: str) -> None:
        """A manual action, as `kubectl annotate` writes it."""
        self.patch(name, {"metadata": {"annotations": {api.ACTION_ANNOTATION: action}}})

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(api.GROUP, api.VERSION, self.namespace, api.PLURAL, name,
                                                          {"status": status})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL, name)

    def names(self) -> list[str]:
        listing: dict[str, Any] = self.custom.list_namespaced_custom_object(  # type: ignore[assignment]
            api.GROUP, api.VERSION, self.namespace, api.PLURAL)
        return [item["metadata"]["name"] for item in listing["items"]]

    def ping(self, name: str, timeout: float = 60.0) -> None:
        """A positive sign of life: an action the operator does not know is taken off the object (and
        answered with a Warning Event) only by an operator that is running and reconciling this rollout."""
        self.act(name, "ping")

        def answered() -> bool:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
                api.GROUP, api.VERSION, self.namespace, api.PLURAL, name)
            return api.ACTION_ANNOTATION not in (obj["metadata"].get("annotations") or {})

        wait_until(answered, timeout, f"{name}: the operator answers a ping")

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == type_), None)

    def create_object(self, group: str, version: str, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(group, version, self.namespace, plural, body)

    def get_object(self, group: str, version: str, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            group, version, self.namespace, plural, name
        )
        return obj


def httproute(name: str) -> dict[str, Any]:
    """A route with a user rule we must leave alone, and the rule we manage."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {"name": "user-health", "matches": [{"path": {"type": "PathPrefix", "value": "/healthz"}}],
                 "backendRefs": [{"name": "health", "port": 80}]},
                {"backendRefs": [{"name": f"{name}-stable", "port": 8080, "weight": 100}]},
            ],
        },
    }


def httproute_weights(route: dict[str, Any], name: str) -> tuple[int, int]:
    """(percent to `<name>-candidate`, mirror percent) of a stored HTTPRoute.

    Written here, not taken from the operator's routers: a check must not share code with what it checks.
    """
    for rule in route["spec"]["rules"]:
        refs = {ref["name"]: int(ref.get("weight", 1)) for ref in rule.get("backendRefs", [])}
        if f"{name}-stable" in refs and not str(rule.get("name", "")).endswith("-header"):
            total = sum(refs.values())
            mirror = next((int(f["requestMirror"].get("percent", 100)) for f in rule.get("filters", [])
                           if f["type"] == "RequestMirror"), 0)
            return (round(100 * refs.get(f"{name}-candidate", 0) / total) if total else 0), mirror
    raise AssertionError(f"HTTPRoute {name} has no rule for {name}-stable")


def httproute_state(rollouts: Rollouts, name: str) -> tuple[int, int]:
    return httproute_weights(rollouts.get_object("gateway.networking.k8s.io", "v1", "httproutes", name), name)


def virtualservice(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": [name],
            "http": [
                {"name": "user-static", "match": [{"uri": {"prefix": "/static"}}],
                 "route": [{"destination": {"host": "static"}}]},
                {"name": "primary", "route": [{"destination": {"host": f"{name}-stable"}, "weight": 100}]},
            ],
        },
    }


def virtualservice_state(rollouts: Rollouts, name: str) -> tuple[int, int]:
    """(weight of `<name>-candidate`, mirror percent), read straight from the stored VirtualService."""
    vs = rollouts.get_object("networking.istio.io", "v1", "virtualservices", name)
    for http in vs["spec"]["http"]:
        hosts = {str(d["destination"]["host"]).split(".")[0]: int(d.get("weight", 0)) for d in http.get("route", [])}
        if f"{name}-stable" in hosts and not str(http.get("name", "")).endswith("-header"):
            mirrored = str(http.get("mirror", {}).get("host", "")).split(".")[0] == f"{name}-candidate"
            mirror = round(http.get("mirrorPercentage", {}).get("value", 100.0)) if mirrored else 0
            return hosts.get(f"{name}-candidate", 0), mirror
    raise AssertionError(f"VirtualService {name} has no route for {name}-stable")

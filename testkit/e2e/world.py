"""An end-to-end world on the sandbox: the operator, a model-server process per pod (in the pods'
network namespace), a real Prometheus, Envoy Gateway serving the live HTTPRoute (a real Envoy, fed
by Envoy Gateway's controller, which the sandbox must run: `sandbox up --gateway envoy`), and load
sent to that Envoy only.

Used by the scenario tests, `modelrollout demo` and the e2e rollback benchmark."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.sandbox.prometheus import PrometheusServer, start_prometheus
from kubernetes import client

from e2e.comparators import ComparatorKubelet
from e2e.envoy import EnvoyRoute
from e2e.fleet import ModelFleet, RecipeForImage
from e2e.harness import Rollouts, httproute, operator_process, rollout_body, wait_until
from e2e.loadgen import LoadGenerator
from e2e.model_server import Knobs
from e2e.netns import PodNetwork

# Image tags stand for model versions with known behaviour (the fleet plays the kubelet).
MODELS = {
    "good": Knobs(latency_ms=60, latency_jitter=0.1, error_rate=0.002, prediction_mean=0.3, conversion_rate=0.10),
    "better": Knobs(latency_ms=60, latency_jitter=0.1, error_rate=0.002, prediction_mean=0.32,
                    conversion_rate=0.22),
    # A new build that behaves like the old one: a different template, the same model.
    "good-rebuild": Knobs(latency_ms=60, latency_jitter=0.1, error_rate=0.002, prediction_mean=0.3,
                          conversion_rate=0.10),
    "slow": Knobs(latency_ms=84, latency_jitter=0.1, error_rate=0.002, prediction_mean=0.3, conversion_rate=0.10),
    # Loads lazily: its first 60 requests take 1.5 s each, then it is the good model.
    "cold": Knobs(latency_ms=60, latency_jitter=0.1, error_rate=0.002, prediction_mean=0.3, conversion_rate=0.10,
                  cold_requests=60, cold_latency_ms=1500),
    # Never fast enough: 900 ms a request.
    "sluggish": Knobs(latency_ms=900, latency_jitter=0.1, error_rate=0.002, prediction_mean=0.3,
                      conversion_rate=0.10),
}


STABLE_HISTORY = 300  # requests the stable answers before a test rolls anything out


def knobs_for_image(image: str) -> Knobs:
    return MODELS[image.rsplit(":", 1)[-1]]


def analysis(prometheus: PrometheusServer, **extra: Any) -> dict[str, Any]:
    return {
        "prometheus": {"address": prometheus.url},
        "interval": "2s",
        "window": "10s",
        "errorLimit": 3,
        "guardrails": [
            {"name": "error-rate", "template": "errorRate", "ignoreBelow": 0.05, "failureLimit": 1},
            {"name": "p99-latency", "template": "latencyP99", "relativeToStable": 1.2, "failureLimit": 2,
             "during": ["canary", "abTest"]},
        ],
        **extra,
    }


@dataclass
class World:
    rollouts: Rollouts
    fleet: ModelFleet
    prometheus: PrometheusServer
    gateway: EnvoyRoute
    load: LoadGenerator
    body: dict[str, Any]
    comparators: ComparatorKubelet | None = None

    def deploy(self, steps: list[dict[str, Any]], spec_extra: dict[str, Any] | None = None,
               image: str = "scorer:good", **analysis_extra: Any) -> dict[str, Any]:
        self.body = rollout_body("scorer", steps, {"gatewayAPI": {"httpRoute": "scorer"}}, image=image,
                                 gpus=1, replicas=1)
        self.body["spec"]["analysis"] = analysis(self.prometheus, **analysis_extra)
        self.body["spec"].update(spec_extra or {})
        self.rollouts.create(self.body)
        first = self.rollouts.wait_status("scorer", lambda s: s.get("phase") == "Completed", what="first deploy")
        # A stable has a past: the analysis reads the stable's recent latency tail to place its bounds.
        # Its server may be cold on a busy machine: the wait fails only when neither its answers nor its
        # servers' work move for two minutes.
        def answered() -> int:
            return int(self.load.stats().total(first["stableRevision"], "ok"))

        wait_until(lambda: answered() >= STABLE_HISTORY, 1800, "the stable answering through Envoy",
                   progress=lambda: (answered(), self.fleet.activity()), stall=120)
        return first

    def roll_out(self, image: str) -> None:
        spec = self.body["spec"]
        spec["template"]["spec"]["containers"][0]["image"] = f"scorer:{image}"
        self.rollouts.patch("scorer", {"spec": {"template": spec["template"]}})

    def status(self) -> dict[str, Any]:
        return self.rollouts.status("scorer")


@contextmanager
def e2e_world(api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path,
              rps: float = 60, operator_metrics_port: int | None = None,
              rule_files: tuple[Path, ...] = (), recipe_for_image: RecipeForImage = lambda _: None,
              load_path: str = "/predict",
              payload: Callable[[random.Random], dict[str, Any]] | None = None,
              version_of: Callable[[dict[str, Any]], str] | None = None) -> Iterator[World]:
    """With `operator_metrics_port`, the operator serves /metrics there and Prometheus scrapes it too
    (job `modelrollout`), evaluating `rule_files`. `recipe_for_image` serves some images with a real
    model server (e.g. `real_servers.MLServerRecipe`); the load then posts `payload` to `load_path`,
    and `version_of` reads which revision answered (see `loadgen.LoadGenerator`)."""
    rollouts = Rollouts(api_client, namespace)
    rollouts.create_object("gateway.networking.k8s.io", "v1", "httproutes", httproute("scorer"))
    with ExitStack() as stack:
        network = stack.enter_context(PodNetwork())
        fleet = stack.enter_context(ModelFleet(api_client, namespace, "scorer", knobs_for_image,
                                               tmp_path / "fleet", network, seed=7,
                                               recipe_for_image=recipe_for_image))
        gateway = stack.enter_context(EnvoyRoute(api_client, namespace, tmp_path / "envoy"))
        comparators = stack.enter_context(ComparatorKubelet(api_client, namespace, network, tmp_path / "compare"))
        jobs = [fleet.scrape_config(), gateway.scrape_config(), comparators.scrape_config()]
        if operator_metrics_port is not None:
            jobs.append({"job_name": "modelrollout",
                         "static_configs": [{"targets": [f"127.0.0.1:{operator_metrics_port}"]}]})
        prometheus = start_prometheus(tmp_path / "prometheus", jobs, scrape_interval="1s", rule_files=rule_files)
        def stop_prometheus() -> None:
            world.prometheus.stop()  # the one running now: a test may have restarted it

        stack.callback(stop_prometheus)
        # Shadow steps' comparators run from the operator's image; here the kubelet above runs their arguments.
        env = {"MODELROLLOUT_COMPARATOR_IMAGE": "modelrollout:e2e",
               **({"MODELROLLOUT_METRICS_PORT": str(operator_metrics_port)} if operator_metrics_port else {})}
        stack.enter_context(operator_process(kubeconfig, namespace, tmp_path / "operator.log", env=env))
        load = LoadGenerator(gateway.url, rps=rps, seed=11, max_duration_s=900, path=load_path, payload=payload,
                             version_of=version_of)
        world = World(rollouts, fleet, prometheus, gateway, load, {}, comparators)
        stack.callback(load.stop)
        load.start()
        yield world

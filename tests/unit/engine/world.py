"""A tiny in-memory world that applies engine actions, so tests can watch traffic over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.analysis.readings import AnalysisSignal, WarmupReading
from controller.api import Action as ManualAction
from controller.api import ModelRolloutSpec, ModelRolloutStatus
from controller.engine import (
    Action,
    EmitEvent,
    Observations,
    RouteRefusal,
    RouteServing,
    Transition,
    reconcile,
)
from controller.engine.execute import execute

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def make_spec(steps: list[dict[str, Any]], routing: str = "gatewayAPI", replicas: int = 2,
              **extra: Any) -> ModelRolloutSpec:
    modes: dict[str, dict[str, Any]] = {
        "gatewayAPI": {"gatewayAPI": {"httpRoute": "scorer"}},
        "istio": {"istio": {"virtualService": "scorer"}},
        "replicas": {"replicas": {}},
    }
    routing_spec = modes[routing]
    body: dict[str, Any] = {
        "model": "scorer",
        "replicas": replicas,
        "template": {"spec": {"containers": [{"name": "model", "image": "scorer:v1"}]}},
        "trafficRouting": routing_spec,
        "strategy": {"steps": steps, **extra},
    }
    if any(step.get("abTest", {}).get("metric") or step.get("shadow", {}).get("compare") for step in steps):
        # An abTest metric or a comparison is measured: the engine only sees the verdicts the tests hand it.
        body["analysis"] = {"prometheus": {"address": "http://prometheus.test:9090"}}
    return ModelRolloutSpec.model_validate(body)


@dataclass
class World:
    spec: ModelRolloutSpec
    revision: str = "rev1"
    now: datetime = T0
    status: ModelRolloutStatus = field(default_factory=ModelRolloutStatus)
    generation: int = 1
    candidate_ready: bool = True
    # Ready candidate pods, when fewer than its Deployment asks for (a resize under way).
    candidate_ready_pods: int | None = None
    unschedulable: str | None = None
    capacity_shortfall: str | None = None
    analysis: AnalysisSignal | None = None
    warmup: WarmupReading | None = None
    deployments: dict[str, int] = field(default_factory=dict)
    services: tuple[str, str] | None = None
    route: tuple[int, int] = (0, 0)
    header: tuple[str, str] | None = None
    events: list[EmitEvent] = field(default_factory=list)
    history: list[Action] = field(default_factory=list)
    orphaned: set[str] = field(default_factory=set)
    route_refusal: RouteRefusal | None = None
    route_serving: RouteServing | None = None
    candidate_endpoints: int | None = None
    released: bool = False
    # The step whose comparator runs (None: none), and whether the route mirrors to it.
    comparator: int | None = None
    mirrors_to_comparator: bool = False

    def step(self, seconds: float = 0.0) -> Transition:
        """Advance the clock and reconcile; like the runtime, reconcile again while a wake is due now."""
        self.now += timedelta(seconds=seconds)
        transition = self.reconcile_once()
        for _ in range(10):
            if transition.wake_at is None or transition.wake_at > self.now:
                return transition
            transition = self.reconcile_once()
        raise AssertionError("the engine keeps asking for an immediate reconcile")

    def reconcile_once(self) -> Transition:
        observations = Observations(
            template_revision=self.revision,
            candidate_ready=self.candidate_ready,
            candidate_any_ready=self.candidate_ready,
            candidate_ready_replicas=self._candidate_ready_pods(),
            candidate_unschedulable=self.unschedulable,
            capacity_shortfall=self.capacity_shortfall if self.revision not in self.deployments else None,
            analysis=self.analysis,
            warmup=self.warmup,
            route_refusal=self.route_refusal,
            route_serving=self.route_serving,
            candidate_endpoints=self.candidate_endpoints,
        )
        transition = reconcile(self.spec, self.generation, self.status, observations, self.now)
        for action in transition.actions:
            self.apply(action)
        self.status = transition.status
        return transition

    def _candidate_ready_pods(self) -> int:
        candidate = self.status.candidate_revision
        if not self.candidate_ready or candidate is None:
            return 0
        size = self.deployments.get(candidate, 0)
        return size if self.candidate_ready_pods is None else min(size, self.candidate_ready_pods)

    def apply(self, action: Action) -> None:
        """Carry out one action through the operator's own dispatch (`engine.execute`)."""
        self.history.append(action)
        if isinstance(action, EmitEvent):
            self.events.append(action)
        else:
            execute([action], self)

    # --- the in-memory cluster: the same Target the reconciler's ClusterTarget is -------------

    def revision_exists(self, revision: str) -> bool:
        return revision in self.deployments

    def ensure_revision(self, revision: str, replicas: int) -> None:
        self.deployments[revision] = replicas

    def scale_revision(self, revision: str, replicas: int) -> None:
        if revision in self.deployments:
            self.deployments[revision] = replicas

    def delete_revision(self, revision: str) -> None:
        self.deployments.pop(revision, None)

    def orphan_revision(self, revision: str) -> None:
        self.orphaned.add(revision)

    def select_services(self, stable: str, candidate: str) -> None:
        self.services = (stable, candidate)

    def set_route(self, weight: int, mirror: int, header: tuple[str, str] | None, compare: bool = False) -> None:
        self.route = (weight, mirror)
        self.header = header
        self.mirrors_to_comparator = compare

    def ensure_comparator(self, step: int) -> None:
        self.comparator = step

    def remove_comparator(self) -> None:
        self.comparator = None

    def release_route(self) -> None:
        self.released = True

    def act(self, action: str) -> Transition:
        self.status = self.status.model_copy(update={"pending_action": ManualAction(action)})
        return self.step()

    def new_template(self, revision: str) -> None:
        self.revision = revision
        self.generation += 1

    def reasons(self) -> list[str]:
        return [event.reason for event in self.events]


def deployed(world: World) -> World:
    """A world whose first revision is deployed and stable."""
    world.step()
    assert world.status.stable_revision == world.revision
    return world



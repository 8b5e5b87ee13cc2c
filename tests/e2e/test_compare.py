"""A shadow step that compares answers, end to end through Envoy Gateway: its fire-and-forget mirror
sends copies to the rollout's comparator (`modelrollout compare`, run as its pod by the test kit),
which asks both models the same request and counts where they disagree; a real Prometheus scrapes
it; the operator judges the counts. The models are MLServer serving real scikit-learn models, and
llama.cpp's OpenAI-compatible server sampling text from tiny random-weight language models.

- A worse model (trained on 30% flipped labels: it disagrees with the stable on about 6% of inputs)
  holds for a human, naming the output, and the rate the comparator measured covers the rate
  computed offline on the same input distribution.
- A retrained twin (another seed: about 0.6%, under maxExcess 2%) passes and is promoted.
- Sampled text (temperature 0.8): the stable answers the same chat request differently about a
  fifth of the time; a rebuild of the same model passes, a degraded one (its output layer
  perturbed) is held, naming the text.
- A judge (the test kit's, preferring the answer with more distinct words, and saying A on 30% of
  its calls whatever it is shown) passes a rebuild and holds a model that repeats itself, its
  position bias measured; its token goes only where its Secret allows.
- A hanging candidate and a crashed comparator hold the step, saying why; users see nothing.
"""

from __future__ import annotations

import base64
import itertools
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.harness import wait_until
from e2e.netns import HOST_ADDRESS
from e2e.real_servers import LlamaRecipe, MLServerRecipe, ModelVersion, TinyLM, disagreement
from e2e.world import e2e_world
from kubernetes import client

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

MODELS = {
    "scorer:mls-good": ModelVersion("scorer"),
    "scorer:mls-retrained": ModelVersion("scorer", seed=2),
    "scorer:mls-worse": ModelVersion("scorer", flip=0.3),
    "scorer:mls-flipped": ModelVersion("scorer", seed=3, flip=0.3),  # another as bad, to start from
}
COMPARE = {"format": "v2", "maxRequestsPerSecond": 100, "samples": 5}
LANGUAGE_MODELS = {"scorer:lm": TinyLM(), "scorer:lm-rebuild": TinyLM(), "scorer:lm-degraded": TinyLM(perturb=0.5),
                   # Offline (30 chats at temperature 0.8): 1.0 distinct words in 8 tokens, the stable 2.2.
                   "scorer:lm-repetitive": TinyLM(favour="slow", favour_logit=6.0)}
WORDS = ("the", "a", "model", "answers", "cat", "dog", "runs", "fast", "slow", "red", "blue", "green", "sky", "sea",
         "tree")


def row(rng: random.Random) -> list[float]:
    return [round(rng.gauss(0, 1), 4) for _ in range(3)] + [round(abs(rng.gauss(0, 1)), 4)]


def payload(rng: random.Random) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": row(rng)}]}


def chat(rng: random.Random) -> dict[str, Any]:
    """A chat request sampled at temperature 0.8; no model named (see `LlamaRecipe`)."""
    return {"messages": [{"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(6))}],
            "max_tokens": 8, "temperature": 0.8}


def promoted_without_breach(world: Any, first: dict[str, Any], what: str, timeout: float = 600) -> dict[str, Any]:
    """The status once a new revision is the stable, no test of the rollout having breached on the way."""
    done: dict[str, Any] = world.rollouts.wait_status(
        "scorer", lambda s: s.get("phase") == "Completed" and s.get("stableRevision") != first["stableRevision"],
        timeout, what, progress=world.fleet.activity)
    assert not [d for d in done["decisions"] if d["verdict"].startswith("breach")], done["decisions"]
    return done


def comparison_of(status: dict[str, Any]) -> dict[str, Any]:
    return dict((status.get("analysis") or {}).get("comparison") or {})


def mirrored_to(world: Any) -> list[str]:
    route = world.rollouts.get_object("gateway.networking.k8s.io", "v1", "httproutes", "scorer")
    return [f["requestMirror"]["backendRef"]["name"] for rule in route["spec"]["rules"]
            for f in rule.get("filters", []) if f.get("type") == "RequestMirror"]


def test_a_worse_model_holds_for_a_human_on_what_the_comparator_counted(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    recipe = MLServerRecipe(MODELS, "scorer").prepare(tmp_path / "trained")
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=40, recipe_for_image=recipe.for_image,
                   load_path="/v2/models/scorer/infer", payload=payload) as world:
        steps = [{"shadow": {"percent": 100, "duration": "30m", "compare": COMPARE}},
                 {"canary": {"weight": 20, "duration": "1m"}}]
        first = world.deploy(steps, image="scorer:mls-good", profile="mlserver", guardrails=[])
        errors_before = world.load.stats().total(outcome="error")  # the world's start, before the stable answered
        world.roll_out("mls-worse")
        held = world.rollouts.wait_status(
            "scorer", lambda s: "disagreement" in comparison_of(s).get("breached", []), 600,
            "the disagreement test breached", progress=world.fleet.activity)
        assert mirrored_to(world) == ["scorer-compare"], "the mirror goes to the comparator, not the candidate"
        comparison = held["analysis"]["comparison"]
        assert held["phase"] == "Progressing" and held["stableRevision"] == first["stableRevision"]
        assert "predict" in comparison["differsMost"], comparison
        assert [d["test"] for d in held["decisions"] if d["verdict"] == "breach: hold"] == ["compare disagreement"]
        # What the comparator measured on live mirrored traffic is what the two models do offline.
        rng = random.Random(99)
        offline = disagreement(recipe.trained["scorer:mls-good"], recipe.trained["scorer:mls-worse"],
                               [row(rng) for _ in range(20_000)])
        low, high = comparison["candidateInterval"]
        assert low <= offline <= high, (offline, comparison)
        assert world.comparators is not None and world.comparators.admin_url() is not None
        kept = httpx.get(f"{world.comparators.admin_url()}/samples", timeout=5).json()["samples"]
        assert kept and all(sample["differsAt"] == ["predict"] for sample in kept)
        # What an ML engineer looks at first, through the apiserver's service proxy.
        shown = subprocess.run([str(Path(sys.executable).parent / "kubectl-modelrollout"), "--kubeconfig",
                                str(kubeconfig), "-n", namespace, "diff", "scorer"],
                               capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0, shown.stderr
        assert "differs at predict" in " ".join(shown.stdout.split()), shown.stdout
        # Users were answered by the stable alone meanwhile, and never failed.
        assert world.load.stats().total(outcome="error") == errors_before

        world.rollouts.act("scorer", "abort")
        world.rollouts.wait_status("scorer", lambda s: s.get("phase") == "RolledBack", 120, "aborted")
        apps = client.AppsV1Api(api_client)

        def comparator_gone(_: dict[str, Any]) -> bool:
            listed = api_client.sanitize_for_serialization(  # type: ignore[no-untyped-call]
                apps.list_namespaced_deployment(namespace))
            return all(item["metadata"]["name"] != "scorer-compare" for item in listed["items"])

        world.rollouts.wait_status("scorer", comparator_gone, 120, "the comparator removed")


def test_a_retrained_twin_passes_the_compared_shadow_step_and_is_promoted(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    recipe = MLServerRecipe(MODELS, "scorer").prepare(tmp_path / "trained")
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=40, recipe_for_image=recipe.for_image,
                   load_path="/v2/models/scorer/infer", payload=payload) as world:
        steps = [{"shadow": {"percent": 100, "duration": "90s", "compare": COMPARE}},
                 {"canary": {"weight": 20, "duration": "20s"}}]
        first = world.deploy(steps, image="scorer:mls-good", profile="mlserver", guardrails=[])
        world.roll_out("mls-retrained")
        compared = world.rollouts.wait_status(
            "scorer", lambda s: comparison_of(s).get("pairs", 0) >= 500, 600, "500 requests compared",
            progress=world.fleet.activity)
        assert compared["analysis"]["comparison"]["breached"] == []
        promoted_without_breach(world, first, "promoted")


def test_a_hanging_candidate_is_counted_the_step_holds_and_live_users_see_nothing(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    """The simulator's `sluggish` model answers in 900 ms; the comparator cuts it at 300 ms."""
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=30) as world:
        compare = {"format": "json", "paths": ["$.prediction"], "absoluteTolerance": 1, "allowSideEffects": True,
                   "timeout": "300ms", "maxRequestsPerSecond": 50}
        steps = [{"shadow": {"percent": 100, "duration": "30m", "compare": compare}},
                 {"canary": {"weight": 20, "duration": "1m"}}]
        first = world.deploy(steps, guardrails=[])
        # Requests no model answered (the simulated stable also fails 0.2% of its own answers).
        unanswered_before = world.load.stats().total(version="-")
        world.roll_out("sluggish")
        held = world.rollouts.wait_status(
            "scorer", lambda s: any(c["type"] == "ComparisonBlocked" and c["status"] == "True"
                                    for c in s.get("conditions", [])), 300, "the comparison blocked",
            progress=world.fleet.activity)
        comparison = comparison_of(held)
        assert comparison["pairs"] == 0 and comparison["failures"].get("candidate/timeout", 0) > 0, comparison
        assert "candidate/timeout" in held["message"], held["message"]
        assert held["phase"] == "Progressing" and held["currentStep"] == 0
        assert held["stableRevision"] == first["stableRevision"]
        answered = world.load.stats()
        assert answered.total(version="-") == unanswered_before, "every live request was answered"
        assert set(answered.by_version(outcome=None)) <= {"-", first["stableRevision"]}, "and by the stable"


def test_a_crashed_comparator_holds_the_step_and_its_counts_survive_the_restart(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    """The comparator's pod dies mid-step (its Deployment restarts it later): the step holds, saying
    why, and never passes on counts it cannot see; the restarted comparator counts from zero, and the
    operator goes on from what it had (Prometheus's counter-reset handling), then passes early."""
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=30) as world:
        compare = {"format": "json", "paths": ["$.prediction"], "absoluteTolerance": 1, "allowSideEffects": True,
                   "maxRequestsPerSecond": 50, "passWhen": "noWorse",
                   "disagreement": {"maxExcess": 0.01}}
        steps = [{"shadow": {"percent": 100, "duration": "30m", "compare": compare}},
                 {"canary": {"weight": 20, "duration": "10s"}}]
        first = world.deploy(steps, guardrails=[])
        world.roll_out("good-rebuild")
        counted = world.rollouts.wait_status("scorer", lambda s: comparison_of(s).get("pairs", 0) >= 20, 300,
                                             "20 requests compared", progress=world.fleet.activity)
        seen: list[int] = [int(comparison_of(counted)["pairs"])]
        assert world.comparators is not None
        with world.comparators.outage():
            held = world.rollouts.wait_status(
                "scorer", lambda s: "comparator's counts are missing" in (s.get("analysis") or {}).get("reason", ""),
                120, "the step holds on the missing comparator", progress=world.fleet.activity)
            assert held["currentStep"] == 0 and held["stableRevision"] == first["stableRevision"], held
            seen.append(int(comparison_of(held)["pairs"]))

        def counting_again(status: dict[str, Any]) -> bool:
            seen.append(int(comparison_of(status).get("pairs", 0)))
            return seen[-1] > seen[1] + 20

        after = world.rollouts.wait_status("scorer", counting_again, 300, "the restarted comparator counted",
                                           progress=world.fleet.activity)
        assert seen == sorted(seen), f"the compared pairs never went back: {seen}"
        # The restarted comparator's own totals (the newest process's), as this look read them, count
        # from zero: the pairs compared before the crash are still in the step's count.
        totals = {key: value for key, value in after["analysis"]["counters"].items()
                  if key.startswith("compare/requests/")}
        newest = max(key.rsplit("@", 1)[1] for key in totals)
        restarted = sum(value for key, value in totals.items() if key.endswith(f"@{newest}"))
        assert len({key.rsplit("@", 1)[1] for key in totals}) == 2, totals
        assert restarted > 0 and comparison_of(after)["pairs"] >= restarted + seen[0], (restarted, seen)
        promoted_without_breach(world, first, "passed early and promoted")



def test_sampled_text_a_rebuild_passes_and_a_degraded_model_is_held_naming_the_text(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    recipe = LlamaRecipe(LANGUAGE_MODELS, "scorer").prepare(tmp_path / "lms")
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=8, recipe_for_image=recipe.for_image,
                   load_path="/v1/chat/completions", payload=chat, version_of=LlamaRecipe.revision_of) as world:
        compare = {"format": "openai", "minSimilarity": 0.8, "maxRequestsPerSecond": 8, "samples": 5}
        steps = [{"shadow": {"percent": 100, "duration": "90s", "compare": compare}},
                 {"canary": {"weight": 20, "duration": "20s"}}]
        first = world.deploy(steps, image="scorer:lm", profile="vllm", gatewayProfile="envoy", guardrails=[])
        world.roll_out("lm-rebuild")
        rebuilt = promoted_without_breach(world, first, "the rebuild promoted", timeout=900)

        world.roll_out("lm-degraded")
        held = world.rollouts.wait_status(
            "scorer", lambda s: "disagreement" in comparison_of(s).get("breached", []), 600,
            "the disagreement test breached", progress=world.fleet.activity)
        comparison = held["analysis"]["comparison"]
        # The stable's own sampling noise was measured, and the degraded model is well above it.
        assert comparison["twice"] > 0 and 0 < comparison["stableRate"] < comparison["candidateRate"], comparison
        assert "text" in comparison["differsMost"], comparison
        assert held["phase"] == "Progressing" and held["stableRevision"] == rebuilt["stableRevision"]
        assert world.comparators is not None and world.comparators.admin_url() is not None
        kept = httpx.get(f"{world.comparators.admin_url()}/samples", timeout=5).json()["samples"]
        assert kept and all(sample["tokens"]["candidate"] == 8 for sample in kept), kept


class Labelled:
    """The load's v2 requests, each named by its `id`, and each one's true label: the generated
    dataset's own rule (`real_servers._TRAIN`), which the models learned with or without flipped labels."""

    WEIGHTS = (1.0, -0.5, 0.25, 0.0)

    def __init__(self) -> None:
        self.truth: dict[str, int] = {}
        self.ids = itertools.count()
        self.lock = threading.Lock()

    def payload(self, rng: random.Random) -> dict[str, Any]:
        x = row(rng)
        with self.lock:
            key = f"r-{next(self.ids)}"
            self.truth[key] = int(sum(w * v for w, v in zip(self.WEIGHTS, x, strict=True)) > 0)
        return {"id": key, **payload_of(x)}

    def taken(self, already: set[str]) -> list[dict[str, Any]]:
        with self.lock:
            fresh = [(key, label) for key, label in self.truth.items() if key not in already]
        already.update(key for key, _ in fresh)
        return [{"key": key, "label": label} for key, label in fresh]


def payload_of(x: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": x}]}


@contextmanager
def posting_labels(world: Any, labelled: Labelled, token: str) -> Iterator[dict[str, int]]:
    """Every 2 s, the labels of the requests sent since, posted to the running comparator's /feedback:
    labels that arrive a few seconds after their requests. Yields what became of them, summed."""
    stop, posted, outcomes = threading.Event(), set[str](), dict[str, int]()

    def post() -> None:
        while not stop.wait(2.0):
            admin = world.comparators.admin_url()
            if admin is None:
                continue  # no comparator now: the labels wait for the next one
            fresh = labelled.taken(posted)
            if not fresh:
                continue
            try:
                answered = httpx.post(f"{admin}/feedback", json={"labels": fresh}, timeout=10,
                                      headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError:
                continue
            for outcome, count in answered.json().items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count

    thread = threading.Thread(target=post, name="labels", daemon=True)
    thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        thread.join(30)


def test_labels_posted_later_pass_a_better_and_an_equal_model_and_hold_a_less_accurate_one(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    """MLServer, real scikit-learn models; the test posts the true labels of the generated inputs a
    few seconds after their requests. Over a stable trained on 30% flipped labels, the model trained
    on clean ones is more accurate: it passes and is promoted. A retrained twin is as accurate: it
    passes and is promoted. The flipped-label model again is less accurate: the paired test holds it,
    with both accuracies. The disagreement test is loosened (maxExcess 0.5): here the labels decide."""
    recipe = MLServerRecipe(MODELS, "scorer").prepare(tmp_path / "trained")
    labelled, token = Labelled(), "feedback-token-for-this-test"
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="scorer-feedback"),
        data={"token": base64.b64encode(token.encode()).decode()}))
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=40, recipe_for_image=recipe.for_image,
                   load_path="/v2/models/scorer/infer", payload=labelled.payload) as world:
        compare = {"format": "v2", "maxRequestsPerSecond": 100, "disagreement": {"maxExcess": 0.5},
                   "requestKeyPath": "$.id", "feedback": {"tokenSecretRef": {"name": "scorer-feedback"}},
                   "labels": {}}
        steps = [{"shadow": {"percent": 100, "duration": "60s", "compare": compare}},
                 {"canary": {"weight": 20, "duration": "10s"}}]
        worse = world.deploy(steps, image="scorer:mls-flipped", profile="mlserver", guardrails=[])
        with posting_labels(world, labelled, token) as outcomes:
            world.roll_out("mls-good")
            better = promoted_without_breach(world, worse, "the more accurate model promoted")
            assert [d["verdict"] for d in better["decisions"]] == [], better["decisions"]
            first = better
            world.roll_out("mls-retrained")
            scored = world.rollouts.wait_status(
                "scorer", lambda s: (comparison_of(s).get("labels") or {}).get("labelled", 0) >= 500, 600,
                "500 requests scored against their labels", progress=world.fleet.activity)
            assert comparison_of(scored)["breached"] == [], comparison_of(scored)
            promoted = promoted_without_breach(world, first, "the equally accurate twin promoted")

            world.roll_out("mls-worse")
            held = world.rollouts.wait_status(
                "scorer", lambda s: "labels" in comparison_of(s).get("breached", []), 600,
                "the labels test breached", progress=world.fleet.activity)
            labels = comparison_of(held)["labels"]
            assert held["phase"] == "Progressing" and held["stableRevision"] == promoted["stableRevision"]
            assert labels["candidateAccuracy"] < labels["stableAccuracy"], labels
            assert labels["stableOnly"] > labels["candidateOnly"], labels
            assert "less accurate by more than maxDrop" in held["message"], held["message"]
            assert outcomes.get("stored", 0) >= labels["labelled"] and "wrong-type" not in outcomes, outcomes


@contextmanager
def judge_process(tmp_path: Path, token: str, bias: float) -> Iterator[str]:
    """The test kit's judge, a process of this test's own outside the cluster, on the host's end of the
    pods' network (where the comparator's pod reaches it, as it would an external endpoint): its base URL."""
    port_file = tmp_path / "judge.port"
    process = subprocess.Popen([sys.executable, "-m", "e2e.judge", "--port-file", str(port_file), "--token", token,
                                "--bias", str(bias), "--host", HOST_ADDRESS],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: process.poll() is None and port_file.exists() and bool(port_file.read_text()), 60,
                   "the judge serving")
        yield f"http://{HOST_ADDRESS}:{port_file.read_text()}"
    finally:
        process.terminate()
        process.wait(10)


def test_a_judge_passes_a_rebuild_and_holds_a_model_that_repeats_itself_its_position_bias_measured(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    """llama.cpp serves both models; the judge compares their answers blind, in a random order. The
    disagreement test is loosened (maxExcess 0.9): here the judge decides."""
    recipe = LlamaRecipe(LANGUAGE_MODELS, "scorer").prepare(tmp_path / "lms")
    token = "judge-token-for-this-test"
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=8, recipe_for_image=recipe.for_image,
                   load_path="/v1/chat/completions", payload=chat, version_of=LlamaRecipe.revision_of) as world, \
            judge_process(tmp_path, token, bias=0.3) as judge_url:
        client.CoreV1Api(api_client).create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="judge-token", annotations={
                "rollouts.mlops.dev/judge-addresses": judge_url, "rollouts.mlops.dev/allow-plain-http": "true"}),
            data={"token": base64.b64encode(token.encode()).decode()}))
        compare = {"format": "openai", "minSimilarity": 0.8, "maxRequestsPerSecond": 8, "samples": 3,
                   "disagreement": {"maxExcess": 0.9},
                   "judge": {"url": judge_url, "model": "judge-7b", "secretRef": {"name": "judge-token"},
                             "maxRequestsPerSecond": 6, "swapPercent": 30, "margin": 0.1}}
        steps = [{"shadow": {"percent": 100, "duration": "60s", "compare": compare}},
                 {"canary": {"weight": 20, "duration": "10s"}}]
        first = world.deploy(steps, image="scorer:lm", profile="vllm", gatewayProfile="envoy", guardrails=[])
        world.roll_out("lm-rebuild")
        judged = world.rollouts.wait_status(
            "scorer", lambda s: (comparison_of(s).get("judge") or {}).get("judged", 0) >= 60, 600,
            "60 pairs judged", progress=world.fleet.activity)
        assert comparison_of(judged)["breached"] == [], comparison_of(judged)
        rebuilt = promoted_without_breach(world, first, "the rebuild promoted", timeout=900)

        world.roll_out("lm-repetitive")
        held = world.rollouts.wait_status(
            "scorer", lambda s: "judge" in comparison_of(s).get("breached", []), 600,
            "the judge test breached", progress=world.fleet.activity)
        judge = comparison_of(held)["judge"]
        assert held["phase"] == "Progressing" and held["stableRevision"] == rebuilt["stableRevision"]
        assert judge["preferred"]["stable"] > judge["preferred"]["candidate"], judge
        # Saying A on 30% of calls whatever it is shown, it picks the first answer on about 65%.
        assert judge["positionBias"] > 0.03, judge
        assert [d["test"] for d in held["decisions"] if d["verdict"] == "breach: hold"] == ["compare judge"]
        assert "the judge preferred the stable on" in held["message"], held["message"]
        stats = httpx.get(f"{judge_url}/stats", timeout=5).json()
        assert stats["calls"] > 0 and stats["unauthorized"] == 0 and stats["unreadable"] == 0, stats
        shown = subprocess.run([str(Path(sys.executable).parent / "kubectl-modelrollout"), "--kubeconfig",
                                str(kubeconfig), "-n", namespace, "diff", "scorer", "--judged"],
                               capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0, shown.stderr
        assert "the judge preferred the stable:" in " ".join(shown.stdout.split()), shown.stdout


def test_a_comparator_killed_between_predictions_and_labels_still_scores_them(
    api_client: client.ApiClient, namespace: str, kubeconfig: Path, tmp_path: Path, crd_installed: None
) -> None:
    """The comparator files predictions, then is killed (SIGKILL) before any label is posted; its pod's
    volume outlives the process, as an emptyDir outlives its container. The labels posted to the
    restarted comparator for requests compared before the kill are stored and scored."""
    recipe = MLServerRecipe(MODELS, "scorer").prepare(tmp_path / "trained")
    labelled, token = Labelled(), "feedback-token-for-this-test"
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="scorer-feedback"),
        data={"token": base64.b64encode(token.encode()).decode()}))
    with e2e_world(api_client, namespace, kubeconfig, tmp_path, rps=40, recipe_for_image=recipe.for_image,
                   load_path="/v2/models/scorer/infer", payload=labelled.payload) as world:
        compare = {"format": "v2", "maxRequestsPerSecond": 100, "disagreement": {"maxExcess": 0.5},
                   "requestKeyPath": "$.id", "feedback": {"tokenSecretRef": {"name": "scorer-feedback"}},
                   "labels": {}}
        world.deploy([{"shadow": {"percent": 100, "duration": "30m", "compare": compare}}], image="scorer:mls-good",
                     profile="mlserver", guardrails=[])
        world.roll_out("mls-retrained")
        assert world.comparators is not None

        def filed() -> float:
            admin = world.comparators.admin_url() if world.comparators else None
            if admin is None:
                return 0.0
            try:
                text = httpx.get(f"{admin}/metrics", timeout=5).text
            except httpx.HTTPError:
                return 0.0
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("modelrollout_compare_predictions_filed_total{"))

        wait_until(lambda: filed() >= 300, 300, "300 predictions filed", progress=world.fleet.activity)
        with world.comparators.outage(kill=True):
            before_kill = labelled.taken(set())  # every request sent so far, compared or not
        def serving() -> str | None:
            admin = world.comparators.admin_url() if world.comparators else None
            try:
                return admin if admin and httpx.get(f"{admin}/healthz", timeout=2).status_code == 200 else None
            except httpx.HTTPError:
                return None

        admin = wait_until(serving, 120, "the comparator restarted and serving")
        outcomes: dict[str, int] = {}
        for start in range(0, len(before_kill), 500):
            answered = httpx.post(f"{admin}/feedback", timeout=10,
                                  json={"labels": before_kill[start:start + 500]},
                                  headers={"Authorization": f"Bearer {token}"})
            assert answered.status_code == 200, answered.text
            for outcome, count in answered.json().items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        # Requests not compared (sent before the rollout, or dropped) are unknown keys; at most the last
        # quarter second's predictions before the kill were not yet filed.
        assert outcomes.get("stored", 0) >= 290, outcomes
        scored = world.rollouts.wait_status(
            "scorer", lambda s: (comparison_of(s).get("labels") or {}).get("labelled", 0) >= outcomes["stored"],
            300, "every stored label scored", progress=world.fleet.activity)
        assert comparison_of(scored)["labels"]["feedback"]["stored"] >= outcomes["stored"], comparison_of(scored)

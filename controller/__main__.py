"""The `modelrollout` command: `run` the operator, drive the local `sandbox`, run the `demo`, `plan` an A/B test,
print the rollout's `states`, or run a shadow step's comparator (`compare`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

from controller.comparator import FEEDBACK_TOKEN_ENV, JUDGE_TOKEN_ENV, STORE_DIR

SANDBOX_ENTRY_POINTS = "modelrollout.sandbox"


def _sandbox(args: argparse.Namespace) -> int:
    """The local control plane is dev tooling (the dev kit): found through its entry point, so the
    product neither ships nor imports it."""
    found = entry_points(group=SANDBOX_ENTRY_POINTS, name="cli")
    if not found:
        print("error: `modelrollout sandbox` needs the dev kit, which is not installed: `pip install -e devkit/` "
              "from the repository (scripts/setup.sh does it)", file=sys.stderr)
        return 1
    return int(next(iter(found)).load()(args))


def _run(args: argparse.Namespace) -> int:
    """Run the operator (Kopf) in this process against the current kubeconfig."""
    import kopf

    from controller import operator  # importing registers the handlers

    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        # Kopf logs every handler call at INFO: thousands of lines a second at scale, saying nothing.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    namespaces = args.namespace or []
    if args.shard is not None and (args.no_leader_election or not 0 <= args.shard < args.shards):
        print(f"modelrollout run: --shard {args.shard} needs leader election and 0 <= shard < --shards "
              f"({args.shards})", file=sys.stderr)
        return 2
    default_prometheus = None
    if args.prometheus_address:
        from controller.measure.credentials import CredentialsUnavailable, operator_credentials
        from controller.measure.measure import DefaultPrometheus

        try:
            default_prometheus = DefaultPrometheus(args.prometheus_address, operator_credentials(
                args.prometheus_address, args.prometheus_credentials, args.prometheus_allow_plain_http),
                custom_queries=args.prometheus_allow_custom_queries)
        except (CredentialsUnavailable, OSError) as error:
            print(f"modelrollout run: {error}", file=sys.stderr)
            return 2
    elif args.prometheus_credentials:
        print("modelrollout run: --prometheus-credentials needs --prometheus-address", file=sys.stderr)
        return 2
    # Named namespaces only: Kopf need not list namespaces or watch CRDs, so its RBAC can be Roles alone.
    exact = bool(namespaces) and not any("*" in namespace for namespace in namespaces)
    if args.check_capacity or (args.check_capacity is None and not exact):
        operator.watch_capacity()
    from controller.measure.addresses import DEFAULT_DENIED, AddressPolicy

    addresses = AddressPolicy(allowed=tuple(args.analysis_allow or ()),
                              denied=tuple(args.analysis_deny) if args.analysis_deny is not None else DEFAULT_DENIED)
    memo = kopf.Memo(workers=args.workers, default_prometheus=default_prometheus, namespaced=exact,
                     addresses=addresses, namespaces=namespaces if exact else [],
                     comparator_image=args.comparator_image)
    if not args.no_leader_election:
        # In a pod, POD_NAME and POD_NAMESPACE come from the downward API (see manifests/).
        memo["election"] = operator.Election(
            identity=args.identity or os.environ.get("POD_NAME") or socket.gethostname(),
            namespace=args.lease_namespace or os.environ.get("POD_NAMESPACE")
            or (namespaces[0] if namespaces else "default"),
            shards=args.shards, shard=args.shard,
        )
    # Kopf's own peering is not leader election: our Leases decide who reconciles.
    kopf.run(clusterwide=not namespaces, namespaces=namespaces, standalone=True,
             liveness_endpoint=args.liveness, memo=memo)
    return 0


DEMO_ENTRY_POINTS = "modelrollout.demo"


def _demo(args: argparse.Namespace) -> int:
    """The demo runs on the test kit (simulated model servers, load): found through its entry point,
    so the product neither ships nor imports it."""
    found = entry_points(group=DEMO_ENTRY_POINTS, name=args.cluster)
    if not found:
        print("error: the demo needs the test kit, which is not installed: `pip install -e testkit/` from the "
              "repository (scripts/setup.sh does it)", file=sys.stderr)
        return 1
    return int(next(iter(found)).load()(keep=args.keep))


def _fraction(text: str) -> float:
    """0.01 or 1%."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction between 0 and 1 (0.01 or 1%)")
    return value


def _plan(args: argparse.Namespace) -> int:
    """What an abTest step with these settings needs, in the operator's own design."""
    from controller.analysis.step_tests import design_at, plan

    effect: Literal["absolute", "relative"] = "relative" if args.relative else "absolute"
    design = design_at(args.alpha, args.mde, effect, True, args.baseline)
    figures = plan(design, args.weight)
    smaller = min(args.weight, 1 - args.weight)
    difference = args.mde * args.baseline if args.relative else args.mde
    print(f"A/B plan: baseline {args.baseline:.4g}, detect {args.baseline:.4g} -> {args.baseline + difference:.4g} "
          f"({effect} MDE {args.mde:.4g}), alpha {args.alpha}, 80% power, candidate weight {args.weight:.0%}")
    law = ("their exact conditional law (Fisher's noncentral hypergeometric)" if design.conditional
           else "the binomial split of rare events")
    print(f"  the test counts the {design.counted}, on {law}")
    rows = [("fixed horizon (two-sided)", figures.fixed_horizon),
            ("sequential, median (50% power)", figures.sequential_median),
            ("sequential, 80th percentile (80% power)", figures.sequential_p80)]
    print(f"  {'design':<40}{'trials in the smaller arm':>26}{'at ' + format(args.rate, 'g') + ' trials/s':>22}")
    for name, trials in rows:
        if trials is None:
            print(f"  {name:<40}{'(effect too small to solve)':>26}")
            continue
        print(f"  {name:<40}{trials:>26,}{_duration(trials / (args.rate * smaller)):>22}")
    print("  The sequential figures are upper bounds: the test stops at the first look whose evidence crosses.")
    return 0


def _cost(args: argparse.Namespace) -> int:
    """The seeds' cost-per-request calculator for any inputs."""
    from controller.cost import cost_per_request

    try:
        cost = cost_per_request(args.gpu_hourly_cost, args.gpus, args.rps, args.utilization)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"cost: {args.gpus} GPU(s) at ${args.gpu_hourly_cost:g}/h, {args.rps:g} requests/s, "
          f"{args.utilization:.0%} average utilization")
    for name, value in cost.lines().items():
        print(f"  {name:<32}{value:>16}")
    return 0


def _states(args: argparse.Namespace) -> int:
    """The rollout state machine: every (state, event) and where it leads, from the engine's own table."""
    from controller.engine.states import diagram, table

    if args.mermaid:
        print(diagram(), end="")
        return 0
    rows = table()
    widths = [max(len(row[i]) for row in [("STATE", "EVENT", "NEXT"), *rows]) for i in range(3)]
    for row in [("STATE", "EVENT", "NEXT"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _sandbox_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser("sandbox", help="the local control plane built from Go modules")
    actions = sandbox.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="build once, then start etcd, apiserver, scheduler, kwok and nodes")
    up.add_argument("--name", default="default")
    up.add_argument("--port", type=int, default=None, help="kube-apiserver port (default: a free one)")
    up.add_argument("--no-crds", action="store_true", help="skip the Gateway API and Istio CRDs")
    up.add_argument("--no-modelrollout-crd", action="store_true", help="skip installing the ModelRollout CRD")
    up.add_argument("--gateway", choices=["envoy"], default=None,
                    help="also run a real Gateway API implementation: Envoy Gateway's controller, built from "
                         "its Go module (its GatewayClass is `envoy`)")
    heal = actions.add_parser("heal", help="start again every sandbox component whose process died")
    heal.add_argument("--name", default="default")
    down = actions.add_parser("down", help="stop every process of the sandbox and delete its data")
    down.add_argument("--name", default="default")
    status = actions.add_parser("status", help="show whether the sandbox runs; exit 1 if not")
    status.add_argument("--name", default=None)
    actions.add_parser("build", help="only build and cache the binaries")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelrollout", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    _sandbox_parser(commands)

    demo = commands.add_parser("demo", help="a live rollout and an automatic rollback on the local sandbox")
    demo.add_argument("--keep", action="store_true", help="keep everything running for 30 minutes afterwards")
    demo.add_argument("--cluster", choices=["local", "kind"], default="local",
                      help="local: the sandbox (default); kind: a kind cluster with the chart and the image "
                           "(needs Docker)")

    plan = commands.add_parser("plan", help="samples and time an abTest step needs (fixed horizon and sequential)")
    plan.add_argument("--baseline", type=_fraction, required=True, help="the stable's rate of the metric, e.g. 0.10")
    plan.add_argument("--mde", type=_fraction, required=True, help="minimumDetectableEffect, e.g. 0.01 or 1%%")
    plan.add_argument("--relative", action="store_true", help="read the MDE as a share of the baseline")
    plan.add_argument("--alpha", type=_fraction, default=0.05)
    plan.add_argument("--weight", type=_fraction, default=0.5, help="the candidate's share of traffic (default 50%%)")
    plan.add_argument("--rate", type=float, default=10.0, help="trials per second, both arms (default 10)")

    cost = commands.add_parser("cost", help="cost per request of a model server: the seeds' calculator")
    cost.add_argument("--gpu-hourly-cost", type=float, required=True, help="$ per hour of one GPU, e.g. 1.01")
    cost.add_argument("--gpus", type=int, required=True, help="GPUs serving the model")
    cost.add_argument("--rps", type=float, required=True, help="average requests per second")
    cost.add_argument("--utilization", type=float, default=0.7, help="average GPU utilization (default 0.7)")

    states = commands.add_parser("states", help="the rollout state machine: every state, event and next state")
    states.add_argument("--mermaid", action="store_true", help="as a Mermaid state diagram (the README's)")

    run = commands.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("--namespace", action="append", help="watch only this namespace (repeatable)")
    run.add_argument("--liveness", default=None, help="serve /healthz, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--workers", type=int, default=None,
                     help="concurrent reconciles (default: MODELROLLOUT_WORKERS, else 8)")
    run.add_argument("--shards", type=int, default=1,
                     help="split rollouts into this many Leases; replicas share them (default 1: leader election)")
    run.add_argument("--shard", type=int, default=None,
                     help="serve only this one of the --shards (0 to shards-1), watching only its rollouts, labelled "
                          "rollouts.mlops.dev/shard; the replicas started with one --shard are its leader and standbys")
    run.add_argument("--identity", default=None, help="this replica's Lease holder name (default: POD_NAME, hostname)")
    run.add_argument("--lease-namespace", default=None,
                     help="where the Leases live (default: POD_NAMESPACE, else the first --namespace, else default)")
    run.add_argument("--check-capacity", action=argparse.BooleanOptionalAction, default=None,
                     help="watch nodes and every pod's GPUs to check a candidate's capacity before creating it "
                          "(default: on cluster-wide, off with --namespace, whose RBAC cannot list nodes)")
    run.add_argument("--no-leader-election", action="store_true",
                     help="reconcile every rollout without a Lease (one replica only)")
    run.add_argument("--prometheus-address", default=os.environ.get("MODELROLLOUT_PROMETHEUS_ADDRESS") or None,
                     help="the Prometheus of rollouts whose analysis names none (default: "
                          "MODELROLLOUT_PROMETHEUS_ADDRESS)")
    run.add_argument("--prometheus-credentials", type=Path, default=None,
                     help="a directory with its token, or username and password, and ca.crt (a mounted Secret)")
    run.add_argument("--prometheus-allow-plain-http", action="store_true",
                     help="allow those credentials over plain http://")
    run.add_argument("--prometheus-allow-custom-queries", action="store_true",
                     help="let rollouts run their own PromQL (query guardrails, metrics) on that Prometheus")
    run.add_argument("--comparator-image", default=os.environ.get("MODELROLLOUT_COMPARATOR_IMAGE") or None,
                     help="the image shadow steps' comparators run from: the operator's own (default: "
                          "MODELROLLOUT_COMPARATOR_IMAGE; without it a step with compare fails with the reason)")
    run.add_argument("--analysis-allow", action="append", metavar="HOST|CIDR",
                     help="an address rollouts' analysis.prometheus may name (repeatable; none: any not denied)")
    run.add_argument("--analysis-deny", action="append", metavar="HOST|CIDR",
                     help="an address it may never name (repeatable; default: link-local and cloud metadata)")
    _compare_parser(commands)
    return parser


def _compare_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = commands.add_parser("compare", help="the shadow step's comparator (the operator runs it per rollout)")
    compare.add_argument("--stable", required=True, help="the stable's base URL, e.g. http://scorer-stable:8080")
    compare.add_argument("--candidate", required=True, help="the candidate's base URL")
    compare.add_argument("--format", choices=["json", "v2", "openai", "bytes"], required=True)
    compare.add_argument("--path", action="append", default=[], help="a JSONPath of the fields to compare")
    compare.add_argument("--ignore", action="append", default=[], help="a JSONPath of fields never compared")
    compare.add_argument("--absolute", type=float, default=0.0, help="numbers within this absolute tolerance")
    compare.add_argument("--relative", type=float, default=0.0, help="numbers within this relative tolerance")
    compare.add_argument("--argmax", action="store_true", help="v2: class scores agree when their argmax does")
    compare.add_argument("--min-similarity", type=float, default=0.9, help="openai: texts at least this alike")
    compare.add_argument("--noise-percent", type=float, default=20.0,
                         help="share of requests the stable answers twice")
    compare.add_argument("--max-requests-per-second", type=float, default=10.0)
    compare.add_argument("--max-in-flight", type=int, default=64)
    compare.add_argument("--timeout", type=float, default=5.0, help="seconds an answer may take")
    compare.add_argument("--max-body-bytes", type=int, default=1 << 20)
    compare.add_argument("--slower-than", type=float, default=1.2,
                         help="pairedLatency's factor: the candidate slower than this many times the stable")
    compare.add_argument("--allow-side-effects", action="store_true",
                         help="replay every method, not only safe ones and the format's inference POSTs")
    compare.add_argument("--samples", type=int, default=0, help="keep the last N disagreements in memory")
    compare.add_argument("--redact", action="append", default=[], help="a JSONPath a sample never shows")
    compare.add_argument("--rollout", default="", help="<namespace>/<name>: the label every series carries")
    compare.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a pod's server listens on its address)
    compare.add_argument("--port", type=int, default=8080, help="where the gateway mirrors to")
    compare.add_argument("--admin-port", type=int, default=9090,
                         help="/metrics, /samples, /judged, /feedback and /healthz")
    compare.add_argument("--key-header", help="the request header that names a request, for /feedback")
    compare.add_argument("--key-path", help="or a JSONPath into the request body")
    feedback = compare.add_argument_group("feedback", "labels and preferences posted to /feedback "
                                          f"(bearer token: ${FEEDBACK_TOKEN_ENV}); on with --key-header or --key-path")
    feedback.add_argument("--feedback-retention", type=float, default=7 * 86400.0,
                          help="seconds a compared request waits for its feedback")
    feedback.add_argument("--feedback-max-entries", type=int, default=1_000_000)
    feedback.add_argument("--feedback-max-per-second", type=float, default=1000.0, help="entries taken a second")
    feedback.add_argument("--feedback-db", default=f"{STORE_DIR}/feedback.sqlite", help="the store's file")
    labels = compare.add_argument_group("labels", "score both models against labels posted to /feedback")
    labels.add_argument("--labels-task", choices=["classification", "regression", "ranking"],
                        help="takes labels, scored for this task")
    labels.add_argument("--labels-prediction", help="a JSONPath to an answer's prediction (v2: the first output)")
    labels.add_argument("--labels-k", type=int, default=10, help="ranking: a hit at k")
    labels.add_argument("--labels-tolerance", type=float, default=0.0, help="regression: an error this small is right")
    labels.add_argument("--labels-max-error", type=float, default=None,
                        help="regression: the error difference's clip bound, for the paired absolute-error test")
    labels.add_argument("--labels-window", type=float, default=None,
                        help="seconds after a request it is scored (default: when its label comes)")
    judge = compare.add_argument_group("judge", f"a judge model prefers one of two texts (bearer token: "
                                       f"${JUDGE_TOKEN_ENV}, if set)")
    judge.add_argument("--judge-url", help="the judge's base URL (OpenAI-compatible)")
    judge.add_argument("--judge-model", default="", help="the judge's model name")
    judge.add_argument("--judge-prompt", default=None, help="instructions with {question}, {answer_a}, {answer_b}")
    judge.add_argument("--judge-max-per-second", type=float, default=2.0)
    judge.add_argument("--judge-budget", type=int, default=5000, help="judge calls at most")
    judge.add_argument("--judge-swap-percent", type=float, default=10.0, help="pairs asked again, swapped")
    judge.add_argument("--judge-timeout", type=float, default=30.0, help="seconds a judge call may take")
    judge.add_argument("--judge-calibration", action="store_true",
                       help="file verdicts for human preferences posted to /feedback")


def _compare(args: argparse.Namespace) -> int:
    import asyncio

    from controller.comparator.formats import Format, Rules
    from controller.comparator.server import Config, serve

    try:
        rules = Rules(tuple(args.path), tuple(args.ignore), args.absolute, args.relative, args.argmax,
                      args.min_similarity)
    except ValueError as error:
        print(f"modelrollout compare: {error}", file=sys.stderr)
        return 2
    from controller.comparator.feedback import FeedbackConfig
    from controller.comparator.judge import JudgeConfig
    from controller.comparator.judging import DEFAULT_PROMPT
    from controller.comparator.labels import LabelRules, RequestKey, Task

    feedback = None
    if args.key_header or args.key_path:
        try:
            key = RequestKey(args.key_header, args.key_path)
        except ValueError as error:
            print(f"modelrollout compare: {error}", file=sys.stderr)
            return 2
        label_rules = None if args.labels_task is None else LabelRules(
            args.labels_prediction, Task(args.labels_task), args.labels_k, args.labels_tolerance, args.labels_max_error)
        feedback = FeedbackConfig(key, args.feedback_db, os.environ.get(FEEDBACK_TOKEN_ENV, ""), label_rules,
                                  args.judge_calibration, args.labels_window, args.feedback_retention,
                                  args.feedback_max_entries, args.feedback_max_per_second)
    judge = None if args.judge_url is None else JudgeConfig(
        args.judge_url, args.judge_model, args.judge_prompt or DEFAULT_PROMPT, os.environ.get(JUDGE_TOKEN_ENV, ""),
        args.judge_max_per_second, args.judge_budget, args.judge_swap_percent, args.judge_timeout, args.samples)
    config = Config(args.stable, args.candidate, Format(args.format), rules, args.noise_percent,
                    args.max_requests_per_second, args.max_in_flight, args.timeout, args.max_body_bytes,
                    args.slower_than, args.allow_side_effects, args.samples, tuple(args.redact), args.rollout,
                    feedback, judge)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, args.host, args.port, args.admin_port))
    return 0


VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sandbox": _sandbox, "run": _run, "plan": _plan, "cost": _cost, "demo": _demo, "states": _states,
    "compare": _compare,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return VERBS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

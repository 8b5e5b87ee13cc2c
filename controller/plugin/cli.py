"""`kubectl modelrollout`: see a rollout, and drive it with the documented actions.

Installed as `kubectl-modelrollout`, so kubectl finds it as a plugin. An action writes the
`rollouts.mlops.dev/action` annotation, waits until the operator has taken it (the annotation gone,
nothing pending), and reports the operator's own refusal (an `ActionIgnored` Event) as an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.watch import Watch
from rich.console import Console
from rich.live import Live
from rich.table import Table

from controller import api
from controller.kube.cache import ROLLOUT_LABEL
from controller.kube.client import api_client_from_kubeconfig
from controller.plugin.view import decisions_view, diff_view, judged_view, list_view, rollout_view

EVENT_WAIT_SECONDS = 5.0
ACTION_VERBS = {"promote": api.Action.PROMOTE, "abort": api.Action.ABORT, "pause": api.Action.PAUSE,
                "resume": api.Action.RESUME, "retry": api.Action.RETRY, "undo": api.Action.UNDO}


class PluginError(RuntimeError):
    """Said to the user in one line; the exit code is 1."""


class Cluster:
    """The few reads and one write the plugin makes, in one namespace (or all)."""

    def __init__(self, kubeconfig: str | None, namespace: str | None) -> None:
        # As kubectl: --kubeconfig, else the first KUBECONFIG entry, else ~/.kube/config, else in-cluster.
        path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser(
            "~/.kube/config")
        try:
            if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(path):
                self.api = api_client_from_kubeconfig(path)
                _, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
                default = active.get("context", {}).get("namespace", "default")
            else:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                self.api = client.ApiClient()
                default = "default"
        except (config.ConfigException, OSError) as error:
            raise PluginError(f"no cluster access: {error}") from None
        self.namespace: str = namespace or default
        self.custom = client.CustomObjectsApi(self.api)

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs, _request_timeout=15)
        except urllib3.exceptions.HTTPError as error:
            raise PluginError(f"no cluster access: {error}") from None
        except client.ApiException as error:
            if error.status in (401, 403):
                raise PluginError(f"no cluster access: {error.status} {error.reason}") from None
            raise

    def rollout(self, name: str) -> dict[str, Any]:
        try:
            body: dict[str, Any] = self.call(self.custom.get_namespaced_custom_object,
                                             api.GROUP, api.VERSION, self.namespace, api.PLURAL, name)
        except client.ApiException as error:
            if error.status == 404:
                raise PluginError(f"no ModelRollout {name!r} in namespace {self.namespace!r}") from None
            raise
        return body

    def rollouts(self, every_namespace: bool) -> list[dict[str, Any]]:
        if every_namespace:
            listing = self.call(self.custom.list_cluster_custom_object, api.GROUP, api.VERSION, api.PLURAL)
        else:
            listing = self.call(self.custom.list_namespaced_custom_object, api.GROUP, api.VERSION,
                                self.namespace, api.PLURAL)
        items: list[dict[str, Any]] = listing["items"]
        return sorted(items, key=lambda item: (item["metadata"]["namespace"], item["metadata"]["name"]))

    def owned(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rollout's Deployments and Pods, as dicts."""
        selector = f"{ROLLOUT_LABEL}={name}"
        deployments = self.call(client.AppsV1Api(self.api).list_namespaced_deployment, self.namespace,
                                label_selector=selector)
        pods = self.call(client.CoreV1Api(self.api).list_namespaced_pod, self.namespace, label_selector=selector)
        return ([self.api.sanitize_for_serialization(item) for item in deployments.items],  # type: ignore[no-untyped-call]
                [self.api.sanitize_for_serialization(item) for item in pods.items])  # type: ignore[no-untyped-call]

    def events(self, name: str) -> list[dict[str, Any]]:
        listing = self.call(client.CoreV1Api(self.api).list_namespaced_event, self.namespace,
                            field_selector=f"involvedObject.name={name},involvedObject.kind={api.KIND}")
        events = [self.api.sanitize_for_serialization(item) for item in listing.items]  # type: ignore[no-untyped-call]
        return sorted(events, key=_event_time)

    def samples(self, name: str) -> list[dict[str, Any]]:
        """The comparator's kept disagreements."""
        samples: list[dict[str, Any]] = self.comparator(name, "samples").get("samples", [])
        return samples

    def comparator(self, name: str, path: str) -> dict[str, Any]:
        """A page of the comparator's admin port, through the apiserver's service proxy: RBAC on
        services/proxy decides who may read it."""
        try:
            # The raw answer: the client would turn a JSON body it was told is a str into a Python repr.
            response = self.call(client.CoreV1Api(self.api).connect_get_namespaced_service_proxy_with_path,
                                 f"{name}-compare:admin", self.namespace, path, _preload_content=False)
        except client.ApiException as error:
            if error.status == 404 and "compare.judge is not set" in str(error.body):
                raise PluginError(f"{name!r} compares without a judge (compare.judge is not set)") from None
            if error.status in (404, 503):
                raise PluginError(f"no comparator runs for {name!r}: only a shadow step with compare has one") \
                    from None
            raise
        found: dict[str, Any] = json.loads(response.data)
        return found

    def annotate(self, name: str, value: str) -> None:
        self.call(self.custom.patch_namespaced_custom_object, api.GROUP, api.VERSION, self.namespace, api.PLURAL,
                  name, {"metadata": {"annotations": {api.ACTION_ANNOTATION: value}}})


def _event_key(event: dict[str, Any]) -> tuple[str, int, str]:
    """Changes when an Event is posted again (a repeat may only raise its count)."""
    return event["metadata"]["uid"], int(event.get("count") or 1), _event_time(event)


def _event_time(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event["metadata"]["creationTimestamp"])


def act(cluster: Cluster, name: str, action: api.Action, timeout: float) -> str:
    """Write `action`, wait until the operator took it; its refusal is a PluginError."""
    cluster.rollout(name)  # a clear "no such rollout" before anything is written
    before = {_event_key(event) for event in cluster.events(name)}
    cluster.annotate(name, f"{action.value}@{uuid.uuid4().hex[:8]}")
    deadline = time.monotonic() + timeout
    while True:
        body = cluster.rollout(name)
        annotations = body["metadata"].get("annotations") or {}
        if api.ACTION_ANNOTATION not in annotations and not body.get("status", {}).get("pendingAction"):
            break
        if time.monotonic() > deadline:
            raise PluginError(f"the operator has not taken {action.value!r} within {timeout:.0f}s: is it running? "
                              f"(the annotation stays, and is applied once it is)")
        time.sleep(0.2)
    # The operator posts the action's Event (its transition, or ActionIgnored) once the status
    # recording it is stored: wait a moment for it.
    settle = time.monotonic() + EVENT_WAIT_SECONDS
    while True:
        recent = [event for event in cluster.events(name) if _event_key(event) not in before]
        for event in recent:
            if event.get("reason") == "ActionIgnored" and f"'{action.value}'" in event.get("message", ""):
                raise PluginError(f"{action.value} not allowed now: {event['message']}")
        if recent or time.monotonic() > settle:
            break
        time.sleep(0.2)
    status = body.get("status", {})
    return f"{action.value}: taken; {status.get('phase', '')} {status.get('stepLabel', '')} {status.get('message', '')}"


ENDED = ("Completed", "RolledBack")


def watch(cluster: Cluster, name: str, console: Console, timeout: float) -> None:
    """Redraw on every watch event of the rollout; stop once it has ended (or after `timeout`)."""
    rollout = cluster.rollout(name)
    deadline = time.monotonic() + timeout
    with Live(rollout_view(rollout, *cluster.owned(name)), console=console, auto_refresh=False) as live:
        version = rollout["metadata"]["resourceVersion"]
        while not _ended(rollout) and time.monotonic() < deadline:
            seconds = max(1, int(min(60, deadline - time.monotonic())))
            stream = Watch().stream(  # type: ignore[no-untyped-call]
                cluster.custom.list_namespaced_custom_object, api.GROUP, api.VERSION, cluster.namespace, api.PLURAL,
                field_selector=f"metadata.name={name}", resource_version=version, timeout_seconds=seconds)
            try:
                for event in stream:
                    if event["type"] == "DELETED":
                        raise PluginError(f"ModelRollout {name!r} was deleted")
                    rollout = event["object"]
                    version = rollout["metadata"]["resourceVersion"]
                    live.update(rollout_view(rollout, *cluster.owned(name)), refresh=True)
                    if _ended(rollout):
                        break
            except client.ApiException as error:
                if error.status != 410:
                    raise PluginError(f"watching {name!r} failed: {error.status} {error.reason}") from None
                rollout = cluster.rollout(name)  # the version expired: start again from now
                version = rollout["metadata"]["resourceVersion"]
            except urllib3.exceptions.HTTPError as error:
                raise PluginError(f"no cluster access: {error}") from None


def _ended(rollout: dict[str, Any]) -> bool:
    status = rollout.get("status", {})
    return status.get("phase") in ENDED and status.get("observedGeneration") == rollout["metadata"].get("generation")


def _history(cluster: Cluster, name: str, console: Console) -> None:
    rollout = cluster.rollout(name)
    console.print(decisions_view(rollout.get("status", {}).get("decisions", []), last=1000))
    table = Table(title="Transitions (Events)", title_justify="left")
    for column in ("at", "type", "reason", "message"):
        table.add_column(column)
    for event in cluster.events(name):
        table.add_row(_event_time(event), event.get("type", ""), event.get("reason", ""), event.get("message", ""))
    console.print(table)


# Verbs that need no cluster: the product CLI answers them.
PRODUCT_VERBS = ("plan", "cost", "states")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl modelrollout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("-n", "--namespace", default=None)
    verbs = parser.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="rollouts in the namespace (-A: every namespace)")
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    get = verbs.add_parser("get", help="a rollout: steps, traffic, revisions, analysis, decisions")
    get.add_argument("name")
    get.add_argument("-w", "--watch", action="store_true", help="redraw on every change until the rollout ends")
    get.add_argument("--timeout", type=float, default=86400.0, help="stop watching after this many seconds")
    verbs.add_parser("history", help="a rollout's decisions and transitions").add_argument("name")
    diff = verbs.add_parser("diff", help="where the two models' answers differ: the comparator's kept "
                            "disagreements, side by side")
    diff.add_argument("name")
    diff.add_argument("--judged", action="store_true",
                      help="the pairs the judge (compare.judge) was surest about, each way")
    for verb in ACTION_VERBS:
        action = verbs.add_parser(verb, help=f"write the {verb} action and wait until the operator took it")
        action.add_argument("name")
        action.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
        if verb == "promote":
            action.add_argument("--full", action="store_true", help="skip the remaining steps")
    for verb in PRODUCT_VERBS:
        verbs.add_parser(verb, help=f"as `modelrollout {verb}`", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # plan, cost and states take the product CLI's own flags.
    verb_at = next((i for i, arg in enumerate(arguments) if not arg.startswith("-")), None)
    if verb_at is not None and arguments[verb_at] in PRODUCT_VERBS:
        from controller.__main__ import main as product_main

        return product_main(arguments[verb_at:])
    args = _parser().parse_args(arguments)
    console = Console()
    try:
        cluster = Cluster(args.kubeconfig, args.namespace)
        if args.verb == "list":
            console.print(list_view(cluster.rollouts(args.all_namespaces)))
        elif args.verb == "get" and args.watch:
            watch(cluster, args.name, console, args.timeout)
        elif args.verb == "get":
            rollout = cluster.rollout(args.name)
            console.print(rollout_view(rollout, *cluster.owned(args.name)))
        elif args.verb == "history":
            _history(cluster, args.name, console)
        elif args.verb == "diff" and args.judged:
            console.print(judged_view(cluster.comparator(args.name, "judged")))
        elif args.verb == "diff":
            console.print(diff_view(cluster.samples(args.name)))
        else:
            action = api.Action.PROMOTE_FULL if args.verb == "promote" and args.full else ACTION_VERBS[args.verb]
            console.print(act(cluster, args.name, action, args.timeout))
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except client.ApiException as error:
        print(f"error: the API server answered {error.status} {error.reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The stand-in for the control plane and Prometheus that `benchmarks/replay.py` replays into the operator.

Run as its own process (`python -m benchmarks.replay_plane PORT`), so its CPU and memory are not
the operator's. One loopback HTTP server answers:

- the few Kubernetes REST calls the operator makes (ModelRollouts and their status, Deployments and
  their scale, Services, HTTPRoutes, Events), keeping every object in memory with a resourceVersion
  that grows, refusing a stale one with 409 as the apiserver does;
- `GET /watch`: every change as a line of JSON, `{"type", "object"}`, the way a watch streams it;
- `GET|POST /api/v1/query`: Prometheus's instant queries, answered for every arm that has a
  Deployment (model = the rollout, version = the revision), in the shapes a Prometheus gives for the
  seeds profile's counters and histogram.

A Deployment is ready as soon as it is written (kwok's behaviour). Nothing here imports the
operator: the check must not share code with what it checks.
"""

from __future__ import annotations

import itertools
import json
import math
import queue
import re
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

GROUP = "rollouts.mlops.dev"
ROLLOUT_LABEL, REVISION_LABEL = f"{GROUP}/rollout", f"{GROUP}/revision"
# Each arm: requests per second, its error share, and how its latencies fall in the buckets.
RATE, ERRORS, SCRAPE = 10.0, 0.005, 2.0
BOUNDS = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")
SHARES = (0.5, 0.8, 0.95, 0.99, 0.999, 1.0)
KINDS = {"modelrollouts": "ModelRollout", "deployments": "Deployment", "services": "Service",
         "httproutes": "HTTPRoute"}
PATH = re.compile(r"^/(?:api/v1|apis/[^/]+/[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<kind>[^/]+)"
                  r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|scale))?$")


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (strategic merge is treated as one: the operator's patches carry no lists to merge)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


class Plane(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.versions = itertools.count(1)
        self.watchers: list[queue.SimpleQueue[bytes | None]] = []
        # (model, version) -> when its Deployment was written, and its scrape phase.
        self.arms: dict[tuple[str, str], tuple[float, float]] = {}
        self.events = 0
        self.queries = 0
        # Rendered answers, by query: (the second they were rendered in, the body).
        self.answering = threading.Lock()
        self.answers: dict[str, tuple[int, bytes]] = {}

    def _publish(self, kind: str, obj: dict[str, Any]) -> None:
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
        for watcher in self.watchers:
            watcher.put(line)

    def store(self, key: tuple[str, str, str], obj: dict[str, Any], created: bool) -> dict[str, Any]:
        """Under the lock: stamp, keep and publish an object."""
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self.versions))
        meta["namespace"], meta["name"] = key[1], key[2]
        obj.setdefault("kind", KINDS.get(key[0], ""))
        if created:
            meta["uid"] = f"uid-{meta['resourceVersion']}"
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta.setdefault("generation", 1)
        if key[0] == "deployments":
            replicas = int((obj.get("spec") or {}).get("replicas", 1))
            obj["status"] = {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
                             "availableReplicas": replicas, "observedGeneration": meta.get("generation", 1)}
            labels = meta.get("labels") or {}
            if REVISION_LABEL in labels:
                arm = (labels.get(ROLLOUT_LABEL, ""), labels[REVISION_LABEL])
                self.arms.setdefault(arm, (time.time(), (hash(arm) % 1000) / 1000 * SCRAPE))
        self.objects[key] = obj
        self._publish("ADDED" if created else "MODIFIED", obj)
        return obj

    # --- Prometheus -----------------------------------------------------------------------

    def answer(self, promql: str) -> bytes:
        """The encoded answer; the same text within a second, as the same query on a Prometheus with
        no new scrape gives (rendering 20,000 arms for every reader would starve the control plane)."""
        now = time.time()
        with self.answering:
            self.queries += 1
            kept = self.answers.get(promql)
            if kept is not None and kept[0] == int(now):
                return kept[1]
            body = self._render(promql, now)
            self.answers = {query: answer for query, answer in self.answers.items() if answer[0] >= int(now) - 5}
            self.answers[promql] = (int(now), body)
            return body

    def _render(self, promql: str, now: float) -> bytes:
        by = re.search(r"by \(([^)]*)\)", promql)
        labels = [label.strip() for label in by.group(1).split(",")] if by else []
        wanted = dict(re.findall(r'(model|version)="([^"]*)"', promql))
        window = re.search(r"\[(\d+)([sm])\]", promql)
        seconds = (int(window.group(1)) * (60 if window.group(2) == "m" else 1)) if window else math.inf
        with self.lock:
            arms = [(arm, since, phase) for arm, (since, phase) in self.arms.items()
                    if wanted.get("model", arm[0]) == arm[0] and wanted.get("version", arm[1]) == arm[1]]
        parts = re.findall(r'"part", "(\w+)"', promql)
        samples = []
        for (model, version), since, phase in arms:
            scraped = now - ((now + phase) % SCRAPE)
            if scraped <= since:
                continue
            requests = RATE * min(scraped - since, seconds)
            names = {"model": model, "version": version}
            arm = ",".join(f'"{label}":{json.dumps(names[label])}' for label in labels if label in names)

            def sample(metric: str, value: float, arm: str = arm) -> str:
                return f'{{"metric":{{{arm}{"," if arm and metric else ""}{metric}}},"value":[{now!r},"{value!r}"]}}'

            if parts:
                values = {"total": requests, "errors": requests * ERRORS, "successes": requests * (1 - ERRORS),
                          "time": scraped}
                samples += [sample(f'"part":"{part}"', values[part]) for part in parts]
            elif "histogram_quantile" in promql:
                samples.append(sample("", 0.3))
            elif "_bucket" in promql:
                samples += [sample(f'"le":"{le}"', requests * share) for le, share in zip(BOUNDS, SHARES, strict=True)]
            elif "increase(" in promql:
                samples.append(sample("", ERRORS))
        return ('{"status":"success","data":{"resultType":"vector","result":[' + ",".join(samples) + "]}}").encode()


class Handler(BaseHTTPRequestHandler):
    server: Plane
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a response is two writes: without this, each waits for a delayed ACK

    def log_message(self, *_: Any) -> None:
        return

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                          "reason": reason, "message": reason})

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null") if length else None

    def _route(self) -> tuple[tuple[str, str, str], str | None, dict[str, list[str]]] | None:
        url = urlsplit(self.path)
        match = PATH.match(url.path)
        if match is None:
            return None
        return (match["kind"], match["ns"], match["name"] or ""), match["sub"], parse_qs(url.query)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/watch":
            self._watch()
            return
        if url.path == "/api/v1/query":
            self._query(parse_qs(url.query))
            return
        if url.path == "/stats":
            self._send(200, {"objects": len(self.server.objects), "events": self.server.events,
                             "queries": self.server.queries})
            return
        route = self._route()
        if route is None:
            self._status(404, "NotFound")
            return
        key, _, query = route
        with self.server.lock:
            if key[2]:
                obj = self.server.objects.get(key)
                if obj is None:
                    self._status(404, "NotFound")
                else:
                    self._send(200, obj)
                return
            name = (query.get("fieldSelector") or [""])[0].removeprefix("metadata.name=")
            items = [obj for (kind, ns, found), obj in self.server.objects.items()
                     if kind == key[0] and ns == key[1] and (not name or found == name)]
        self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/api/v1/query":
            length = int(self.headers.get("Content-Length") or 0)
            self._query(parse_qs(self.rfile.read(length).decode()))
            return
        route = self._route()
        body = self._body()
        if route is None or not isinstance(body, dict):
            self._status(404, "NotFound")
            return
        key = (route[0][0], route[0][1], str(body.get("metadata", {}).get("name", "")))
        if key[0] == "events":
            self.server.events += 1
            self._send(201, body)
            return
        with self.server.lock:
            if key in self.server.objects:
                self._status(409, "AlreadyExists")
                return
            self._send(201, self.server.store(key, body, created=True))

    def _write(self, change: Any) -> None:
        """PUT and PATCH: `change(current)` is the new object, or a code to refuse with."""
        route = self._route()
        body = self._body()
        if route is None or not route[0][2]:
            self._status(404, "NotFound")
            return
        key, sub, _ = route
        with self.server.lock:
            current = self.server.objects.get(key)
            if current is None:
                self._status(404, "NotFound")
                return
            wanted = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                self._status(409, "Conflict")
                return
            if sub == "scale":
                updated = merge(current, {"spec": {"replicas": body["spec"]["replicas"]}})
            else:
                updated = change(current, body, sub)
            stored = self.server.store(key, updated, created=False)
            if sub == "scale":
                stored = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": stored["metadata"],
                          "spec": {"replicas": stored["spec"]["replicas"]},
                          "status": {"replicas": stored["spec"]["replicas"]}}
            self._send(200, stored)

    def do_PUT(self) -> None:
        def replace(current: dict[str, Any], body: dict[str, Any], sub: str | None) -> dict[str, Any]:
            kept = {"status": current.get("status")} if sub is None and "status" in current else {}
            if sub == "status":
                return {**current, "status": body.get("status")}
            return {**body, **kept, "metadata": {**body.get("metadata", {}), "uid": current["metadata"]["uid"]}}
        self._write(replace)

    def do_PATCH(self) -> None:
        def patch(current: dict[str, Any], body: dict[str, Any], sub: str | None) -> dict[str, Any]:
            if sub == "status":
                return {**current, "status": merge(current.get("status"), body.get("status"))}
            patched: dict[str, Any] = merge(current, {k: v for k, v in body.items() if k != "status"})
            if "spec" in body and patched.get("spec") != current.get("spec"):
                patched["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
            return patched
        self._write(patch)

    def do_DELETE(self) -> None:
        route = self._route()
        if route is None:
            self._status(404, "NotFound")
            return
        with self.server.lock:
            obj = self.server.objects.pop(route[0], None)
            if obj is None:
                self._status(404, "NotFound")
                return
            self.server._publish("DELETED", obj)
        self._send(200, {"kind": "Status", "status": "Success"})

    def _query(self, form: dict[str, list[str]]) -> None:
        body = self.server.answer((form.get("query") or [""])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _watch(self) -> None:
        """Every object now, then every change, until the client goes."""
        stream: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        with self.server.lock:
            for obj in self.server.objects.values():
                stream.put(json.dumps({"type": "ADDED", "object": obj}, separators=(",", ":")).encode() + b"\n")
            self.server.watchers.append(stream)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            while (line := stream.get()) is not None:
                self.wfile.write(line)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.server.lock:
                self.server.watchers.remove(stream)


def main() -> int:
    plane = Plane(int(sys.argv[1]))
    print("serving", flush=True)
    plane.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

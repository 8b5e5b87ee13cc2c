"""A gateway for the sandbox: the live HTTPRoute or VirtualService, served by a real nginx.

TEST TOOLING, written from the Gateway API and Istio specs, never from the operator's code (nothing
here imports `controller`): if the operator writes a route the data plane reads differently, the
tests see it. `Gateway` watches one route object and the EndpointSlices of the Services it names
(as a gateway does), renders nginx.conf, checks it with `nginx -t` and reloads the nginx it started
(SIGHUP to the master, by PID) whenever either changes.

What is translated:
- HTTPRoute rules (gateway.networking.k8s.io/v1): path matches (PathPrefix by path element, Exact),
  header matches (Exact), backendRefs with weights (`split_clients`), the RequestMirror filter with
  `percent` or `fraction` (nginx `mirror`, gated by a second `split_clients`). Rules are ranked as
  the spec says: an exact path before a prefix, a longer prefix first, then more header matches,
  then the order of the rules. No rule matches: 404. Every weight 0: 500.
- VirtualService http routes (networking.istio.io): `match` (uri prefix/exact, headers exact), `route`
  destinations with weights, `mirror` with `mirrorPercentage`; the first route that matches wins.
A mirrored copy carries `X-Mirrored: true`, as Envoy marks a shadow request (it suffixes the Host).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

log = logging.getLogger(__name__)

NGINX = "/usr/sbin/nginx"
MIRROR_HEADER = "X-Mirrored"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SEPARATOR = r"\|"  # between the map key's columns, in a regex (header values must not contain "|")


@dataclass(frozen=True)
class Backend:
    service: str
    port: int
    weight: int = 1


@dataclass(frozen=True)
class Rule:
    """One match of one route rule, with what it sends where."""

    path: tuple[str, str] = ("prefix", "/")  # (prefix | exact, value)
    headers: tuple[tuple[str, str], ...] = ()  # exact matches, (name, value)
    backends: tuple[Backend, ...] = ()
    mirror: Backend | None = None
    mirror_percent: float = 0.0
    order: int = 0  # the rule's position: the last tie-break


# --- reading the route objects -----------------------------------------------------------------


def _percent(filter_: dict[str, Any]) -> float:
    mirror = filter_.get("requestMirror") or {}
    if "percent" in mirror:
        return float(mirror["percent"])
    fraction = mirror.get("fraction")
    if fraction:
        return 100.0 * float(fraction["numerator"]) / float(fraction.get("denominator", 100))
    return 100.0


def httproute_rules(route: dict[str, Any]) -> list[Rule]:
    rules: list[Rule] = []
    for position, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        backends = tuple(Backend(ref["name"], int(ref.get("port", 80)), int(ref.get("weight", 1)))
                         for ref in rule.get("backendRefs") or [] if ref.get("kind", "Service") == "Service")
        mirror, percent = None, 0.0
        for filter_ in rule.get("filters") or []:
            if filter_.get("type") == "RequestMirror":
                ref = filter_["requestMirror"]["backendRef"]
                mirror, percent = Backend(ref["name"], int(ref.get("port", 80))), _percent(filter_)
        for match in rule.get("matches") or [{}]:
            path = match.get("path") or {"type": "PathPrefix", "value": "/"}
            kind = "exact" if path.get("type") == "Exact" else "prefix"
            headers = tuple((h["name"].lower(), h["value"]) for h in match.get("headers") or []
                            if h.get("type", "Exact") == "Exact")
            rules.append(Rule((kind, path.get("value", "/")), headers, backends, mirror, percent, position))
    return rules


def _destination(destination: dict[str, Any]) -> tuple[str, int]:
    host = str(destination["host"]).split(".")[0]  # the short Service name of a namespace-local host
    return host, int((destination.get("port") or {}).get("number", 80))


def virtualservice_rules(service: dict[str, Any]) -> list[Rule]:
    rules: list[Rule] = []
    for position, http in enumerate((service.get("spec") or {}).get("http") or []):
        backends = tuple(Backend(*_destination(d["destination"]), int(d.get("weight", 100)))
                         for d in http.get("route") or [])
        mirror = Backend(*_destination(http["mirror"])) if http.get("mirror") else None
        percent = float((http.get("mirrorPercentage") or {}).get("value", 100.0)) if mirror else 0.0
        for match in http.get("match") or [{}]:
            uri = match.get("uri") or {"prefix": "/"}
            path = ("exact", uri["exact"]) if "exact" in uri else ("prefix", uri.get("prefix", "/"))
            headers = tuple((name.lower(), value["exact"]) for name, value in (match.get("headers") or {}).items()
                            if "exact" in value)
            rules.append(Rule(path, headers, backends, mirror, percent, position))
    return rules


# --- rendering nginx.conf ------------------------------------------------------------------------


def upstream_name(backend: Backend) -> str:
    return f"{backend.service}__{backend.port}"


def _ranked(rules: list[Rule], first_match: bool) -> list[Rule]:
    if first_match:  # Istio: the order of the routes
        return sorted(rules, key=lambda r: r.order)
    # Gateway API: exact path, then the longest prefix, then the most header matches, then order.
    return sorted(rules, key=lambda r: (r.path[0] != "exact", -len(r.path[1]), -len(r.headers), r.order))


def _path_regex(kind: str, value: str) -> str:
    escaped = re.escape(value.rstrip("/") if kind == "prefix" else value)
    if kind == "exact":
        return escaped
    return f"{escaped}(/[^|]*)?" if escaped else "/[^|]*"


def _nginx_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(rules: list[Rule], endpoints: dict[tuple[str, int], list[str]], listen: str, prefix: Path,
           first_match: bool = False) -> str:
    """nginx.conf for `rules`, with `endpoints[(service, port)]` the ready `ip:port`s behind each backend."""
    ranked = _ranked(rules, first_match)
    header_names = sorted({name for rule in ranked for name, _ in rule.headers})
    key = "|".join(["$uri", *(f"$http_{name.replace('-', '_')}" for name in header_names)])
    lines = [
        "worker_processes 1;", "user root;", f"pid {prefix / 'nginx.pid'};", f"error_log {prefix / 'error.log'} warn;",
        "events { worker_connections 1024; }",
        "http {",
        f"  access_log {prefix / 'access.log'};",
        *(f"  {name} {prefix / 'tmp' / name};" for name in (
            "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")),
        f"  map {_nginx_string(key)} $rule {{",
    ]
    for index, rule in enumerate(ranked):
        columns = [_path_regex(*rule.path)]
        wanted = dict(rule.headers)
        columns += [re.escape(wanted[name]) if name in wanted else "[^|]*" for name in header_names]
        pattern = "~^" + SEPARATOR.join(columns) + "$"
        lines.append(f"    {_nginx_string(pattern)} r{index};")
    lines += ['    default "";', "  }"]
    targets, mirrors = [], []
    for index, rule in enumerate(ranked):
        live = [b for b in rule.backends if b.weight > 0]
        total = sum(b.weight for b in live)
        if live:
            lines.append(f'  split_clients "${{request_id}}" $r{index}_backend {{')
            for backend in live[:-1]:
                # split_clients takes hundredths of a percent
                lines.append(f"    {100.0 * backend.weight / total:.2f}% {upstream_name(backend)};")
            lines += [f"    * {upstream_name(live[-1])};", "  }"]
            targets.append(f"    r{index} $r{index}_backend;")
        if rule.mirror is not None and rule.mirror_percent > 0:
            lines.append(f'  split_clients "${{request_id}}m" $r{index}_mirror {{')
            if rule.mirror_percent < 100:
                lines += [f"    {rule.mirror_percent:.2f}% {upstream_name(rule.mirror)};", '    * "";']
            else:
                lines.append(f"    * {upstream_name(rule.mirror)};")
            lines.append("  }")
            mirrors.append(f"    r{index} $r{index}_mirror;")
    lines += ["  map $rule $target {", *targets, '    default "";', "  }",
              "  map $rule $mirror_target {", *mirrors, '    default "";', "  }"]
    backends = {upstream_name(b): b for rule in ranked
                for b in (*rule.backends, *((rule.mirror,) if rule.mirror else ()))}
    for _, backend in sorted(backends.items()):
        lines.append(f"  upstream {upstream_name(backend)} {{")
        addresses = endpoints.get((backend.service, backend.port)) or []
        # No ready endpoint: a server that is never tried, so nginx answers 502 as a gateway would 503.
        lines += [f"    server {address};" for address in sorted(addresses)] or ["    server 127.0.0.1:9 down;"]
        lines += ["    keepalive 16;", "  }"]
    lines += [
        "  server {",
        f"    listen {listen};",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    location / {",
        '      if ($rule = "") { return 404; }',
        '      if ($target = "") { return 500; }',
        "      mirror /__mirror;",
        "      proxy_pass http://$target;",
        "    }",
        "    location = /__mirror {",
        "      internal;",
        '      if ($mirror_target = "") { return 204; }',
        f"      proxy_set_header {MIRROR_HEADER} true;",
        "      proxy_pass http://$mirror_target$request_uri;",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


# --- the running gateway -------------------------------------------------------------------------

ROUTE_KINDS = {
    "gatewayAPI": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "istio": ("networking.istio.io", "v1", "virtualservices"),
}


@dataclass
class Gateway:
    """nginx in front of one route's backends, on 127.0.0.1:`port`, following the route and the
    EndpointSlices every `poll_interval` seconds."""

    api_client: client.ApiClient
    namespace: str
    route: tuple[str, str]  # ("gatewayAPI" | "istio", name)
    workdir: Path
    port: int
    poll_interval: float = 0.2
    reloads: int = 0
    last_error: str | None = None
    _process: subprocess.Popen[bytes] | None = None
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _rendered: str | None = None
    _applied: threading.Condition = field(default_factory=threading.Condition)
    _generation: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "nginx.conf"

    def start(self) -> Gateway:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self._write(self._render())
        self._check()
        log_file = (self.workdir / "nginx.out").open("ab")
        self._process = subprocess.Popen(
            [NGINX, "-p", str(self.workdir), "-c", str(self.config_path), "-e", str(self.workdir / "error.log"),
             "-g", "daemon off;"], stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_listening()
        self._thread = threading.Thread(target=self._loop, name="gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_applied(self, timeout: float = 10.0) -> None:
        """Until the route and endpoints as they are now have been rendered and nginx reloaded."""
        with self._applied:
            wanted = self._generation + 2  # a sync that started after this call has finished
            if not self._applied.wait_for(lambda: self._generation >= wanted, timeout):
                raise TimeoutError(f"the gateway did not sync in {timeout}s (last error: {self.last_error})")

    # ---- one sync ----------------------------------------------------------------------------
    def _read_route(self) -> dict[str, Any]:
        group, version, plural = ROUTE_KINDS[self.route[0]]
        obj: dict[str, Any] = client.CustomObjectsApi(self.api_client).get_namespaced_custom_object(  # type: ignore[assignment]
            group, version, self.namespace, plural, self.route[1], _request_timeout=(3, 5))
        return obj

    def _endpoints(self, backends: set[Backend]) -> dict[tuple[str, int], list[str]]:
        """Ready addresses behind each Service port, from its EndpointSlices (the Service's port
        names the slice's port, as kube-proxy and gateways resolve it)."""
        core, discovery = client.CoreV1Api(self.api_client), client.DiscoveryV1Api(self.api_client)
        found: dict[tuple[str, int], list[str]] = {}
        for backend in backends:
            try:
                service = core.read_namespaced_service(backend.service, self.namespace, _request_timeout=(3, 5))
            except client.ApiException as error:
                if error.status == 404:
                    continue
                raise
            ports = [p for p in (service.spec.ports or []) if p.port == backend.port] if service.spec else []
            if not ports:
                continue
            slices = discovery.list_namespaced_endpoint_slice(
                self.namespace, label_selector=f"{SERVICE_NAME_LABEL}={backend.service}", _request_timeout=(3, 5))
            addresses = []
            for piece in slices.items:
                port = next((p.port for p in piece.ports or [] if p.name == ports[0].name or
                             (p.name in (None, "") and not ports[0].name)), None)
                if port is None:
                    continue
                for endpoint in piece.endpoints or []:
                    ready = endpoint.conditions is None or endpoint.conditions.ready is not False
                    if ready:
                        addresses += [f"{address}:{port}" for address in endpoint.addresses]
            found[(backend.service, backend.port)] = addresses
        return found

    def _render(self) -> str:
        try:
            route = self._read_route()
        except client.ApiException as error:
            if error.status != 404:
                raise
            route = {}
        rules = httproute_rules(route) if self.route[0] == "gatewayAPI" else virtualservice_rules(route)
        backends = {b for rule in rules for b in (*rule.backends, *((rule.mirror,) if rule.mirror else ()))}
        return render(rules, self._endpoints(backends), f"127.0.0.1:{self.port}", self.workdir,
                      first_match=self.route[0] == "istio")

    def _write(self, text: str) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)
        self._rendered = text

    def _check(self) -> None:
        command = [NGINX, "-t", "-q", "-p", str(self.workdir), "-c", str(self.config_path),
                   "-e", str(self.workdir / "error.log")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"nginx rejected the rendered config: {result.stderr.strip()}")

    def sync_once(self) -> None:
        text = self._render()
        if text != self._rendered:
            previous = self._rendered
            self._write(text)
            try:
                self._check()
            except RuntimeError:
                if previous is not None:
                    self._write(previous)  # keep serving the last good config
                raise
            assert self._process is not None
            self._process.send_signal(signal.SIGHUP)
            self.reloads += 1
            log.info("gateway reloaded (%d)", self.reloads)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sync_once()
                self.last_error = None
            except Exception as error:  # a failed sync keeps the last config; the next one retries
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("gateway sync failed: %s", self.last_error)
            with self._applied:
                self._generation += 1
                self._applied.notify_all()
            self._stopping.wait(self.poll_interval)

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.workdir / 'nginx.out').read_text()[-2000:]}")
            with socket.socket() as sock:  # not the sandbox's helper: nothing here imports controller/
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("nginx did not listen in time")


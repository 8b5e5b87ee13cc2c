"""`modelrollout compare` as its own process on loopback, between two backends this test writes.

The mirror is answered 202 at once whatever the backends do; identical answers land in the `same`
cells, different ones in `differs` with their fields named; a hanging candidate is a timeout and a
dead one unreachable, never agreement; the extra load is bounded by the rate limit; only safe
methods and the format's inference POSTs are replayed; kept disagreements are redacted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from devkit.sandbox.processes import free_port
from e2e.harness import wait_until

Handler = Callable[[dict[str, Any]], tuple[int, bytes, float]]


@contextmanager
def backend(answer: Handler) -> Iterator[tuple[str, list[str]]]:
    """A model server: `answer(request JSON) -> (status, body, seconds to wait)`; yields (URL, seen methods)."""
    seen: list[str] = []

    class Serve(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(self.command)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            status, body, wait = answer(json.loads(raw or b"{}"))
            time.sleep(wait)  # a slow model, played by the test's own backend
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET = do_PUT = _answer

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def v2(label: float, request_id: str = "s3cret") -> bytes:
    return json.dumps({"model_name": "m", "id": request_id, "outputs": [
        {"name": "label", "shape": [1], "datatype": "FP64", "data": [label]}]}).encode()


@contextmanager
def running_comparator(stable: str, candidate: str, tmp_path: Path, *extra: str,
                       env: dict[str, str] | None = None) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """`modelrollout compare` between two backends: (its mirror URL, its admin URL, its process)."""
    port, admin = free_port(), free_port()
    log = (tmp_path / "comparator.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "controller", "compare", "--stable", stable, "--candidate",
                                candidate, "--format", "v2", "--host", "127.0.0.1", "--port", str(port),
                                "--admin-port", str(admin), "--rollout", "t/scorer", *extra],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        base, admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        wait_until(lambda: _up(admin_url), 60, "the comparator serving")
        yield base, admin_url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
        log.close()


@contextmanager
def comparator(stable: str, candidate: str, tmp_path: Path, *extra: str,
               env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    with running_comparator(stable, candidate, tmp_path, *extra, env=env) as (base, admin, _):
        yield base, admin


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def counters(admin: str) -> dict[str, float]:
    """The comparator's series, without the `process` label every one carries (one process here)."""
    found: dict[str, float] = {}
    processes: set[str] = set()
    for line in httpx.get(f"{admin}/metrics", timeout=5).text.splitlines():
        if line.startswith("modelrollout_compare_") and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            processes.update(re.findall(r',process="(\d+)"', name))
            found[re.sub(r',process="\d+"', "", name)] = float(value)
    assert len(processes) == 1, processes
    return found


def cell(admin: str, name: str) -> float:
    return counters(admin).get(f'modelrollout_compare_requests_total{{cell="{name}",modelrollout="t/scorer"}}', 0.0)


def failures(admin: str, side: str, reason: str) -> float:
    key = f'modelrollout_compare_failures_total{{modelrollout="t/scorer",reason="{reason}",side="{side}"}}'
    return counters(admin).get(key, 0.0)


def skipped(admin: str, reason: str) -> float:
    return counters(admin).get(f'modelrollout_compare_skipped_total{{modelrollout="t/scorer",reason="{reason}"}}', 0.0)


def mirror(base: str, n: int, path: str = "/v2/models/m/infer", method: str = "POST", first: int = 0) -> list[float]:
    """Send n mirrored requests (inputs first, first + 1, ..., each named r-<input>); the seconds each
    took to be answered."""
    took = []
    with httpx.Client(timeout=10) as client:
        for i in range(first, first + n):
            started = time.monotonic()
            answered = client.request(method, base + path, json={"inputs": [{"name": "x", "data": [i]}]},
                                      headers={"x-request-id": f"r-{i}"})
            took.append(time.monotonic() - started)
            assert answered.status_code == 202
    return took


def test_same_and_different_answers_land_in_their_cells_with_the_fields_named(tmp_path: Path) -> None:
    def stable(request: dict[str, Any]) -> tuple[int, bytes, float]:
        return 200, v2(request["inputs"][0]["data"][0] % 2), 0.0

    def candidate(request: dict[str, Any]) -> tuple[int, bytes, float]:
        x = request["inputs"][0]["data"][0]
        return 200, v2((x + (x % 5 == 0)) % 2), 0.0  # differs on every fifth input

    with backend(stable) as (stable_url, _), backend(candidate) as (candidate_url, _), comparator(
            stable_url, candidate_url, tmp_path, "--noise-percent", "50", "--max-requests-per-second", "1000",
            "--ignore", "$.id", "--samples", "5", "--redact", "$.id") as (base, admin):
        mirror(base, 50)
        wait_until(lambda: sum(cell(admin, c) for c in ("once/same", "once/differs", "twice/same/same",
                                                        "twice/differs/same")) == 50, 30, "50 compared")
        found = counters(admin)
        differs = cell(admin, "once/differs") + cell(admin, "twice/differs/same")
        assert differs == 10, found
        assert cell(admin, "twice/same/same") + cell(admin, "twice/differs/same") > 0, "some answered twice"
        assert found['modelrollout_compare_differences_total{field="label",modelrollout="t/scorer"}'] == 10
        kept = httpx.get(f"{admin}/samples", timeout=5).json()["samples"]
        assert len(kept) == 5 and kept[-1]["differsAt"] == ["label"]
        assert "s3cret" not in json.dumps(kept) and "[redacted]" in kept[-1]["stable"]
        assert kept[-1]["status"]["candidate"] == 200 and kept[-1]["seconds"]["candidate"] > 0, kept[-1]
        assert found['modelrollout_compare_answers_total{code="2xx",modelrollout="t/scorer",side="candidate"}'] == 50
        assert found['modelrollout_compare_seconds_count{modelrollout="t/scorer",side="stable"}'] == 50


def test_streamed_completions_are_assembled_and_each_sides_tokens_and_first_token_recorded(tmp_path: Path) -> None:
    def completion(text: str, tokens: int) -> Handler:
        def answer(_: dict[str, Any]) -> tuple[int, bytes, float]:
            words = text.split(" ")
            chunks: list[dict[str, Any]] = [
                {"choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}]} for w in words]
            chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                           "usage": {"completion_tokens": tokens}})
            return 200, "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n", 0.0
        return answer

    with backend(completion("the cat sat on the mat", 6)) as (stable_url, _), backend(
            completion("the cat sat on a mat", 7)) as (candidate_url, _), comparator(
            stable_url, candidate_url, tmp_path, "--format", "openai", "--min-similarity", "0.9",
            "--max-requests-per-second", "1000", "--samples", "3") as (base, admin):
        mirror(base, 10, path="/v1/chat/completions")
        wait_until(lambda: counters(admin).get(
            'modelrollout_compare_completion_tokens_count{modelrollout="t/scorer",side="candidate"}', 0) == 10,
            30, "10 compared")
        found = counters(admin)
        assert found['modelrollout_compare_completion_tokens_sum{modelrollout="t/scorer",side="stable"}'] == 60
        assert found['modelrollout_compare_completion_tokens_sum{modelrollout="t/scorer",side="candidate"}'] == 70
        assert found['modelrollout_compare_first_byte_seconds_count{modelrollout="t/scorer",side="candidate"}'] == 10
        assert cell(admin, "once/same") + cell(admin, "twice/same/same") == 10, found  # similarity 0.93


def test_a_hanging_or_dead_candidate_is_counted_never_agreement_and_the_mirror_never_waits(tmp_path: Path) -> None:
    def stable(_: dict[str, Any]) -> tuple[int, bytes, float]:
        return 200, v2(1), 0.0

    def hanging(_: dict[str, Any]) -> tuple[int, bytes, float]:
        return 200, v2(1), 3.0

    dead = f"http://127.0.0.1:{free_port()}"
    with backend(stable) as (stable_url, _), backend(hanging) as (hanging_url, _):
        with comparator(stable_url, hanging_url, tmp_path, "--timeout", "0.5", "--max-requests-per-second",
                        "1000") as (base, admin):
            took = mirror(base, 10)
            assert max(took) < 0.5, f"the mirror was answered at once, not after the candidate: {took}"
            wait_until(lambda: failures(admin, "candidate", "timeout") == 10, 30, "timeouts")
            assert sum(cell(admin, c) for c in ("once/same", "twice/same/same")) == 0
        with comparator(stable_url, dead, tmp_path) as (base, admin):
            mirror(base, 3)
            wait_until(lambda: failures(admin, "candidate", "unreachable") == 3, 30, "unreachable")


def test_the_load_is_bounded_and_only_safe_or_inference_requests_are_replayed(tmp_path: Path) -> None:
    def answer(_: dict[str, Any]) -> tuple[int, bytes, float]:
        return 200, v2(1), 0.0

    with backend(answer) as (stable_url, stable_seen), backend(answer) as (candidate_url, _), comparator(
            stable_url, candidate_url, tmp_path, "--max-requests-per-second", "2", "--noise-percent", "0") as (
            base, admin):
        mirror(base, 3, "/v2/models/m/infer", "PUT")
        mirror(base, 2, "/admin/reload", "POST")
        mirror(base, 40)
        wait_until(lambda: skipped(admin, "rate-limited") > 0, 30, "requests over the rate dropped")
        assert skipped(admin, "side-effects") == 5
        compared = cell(admin, "once/same")
        assert compared + skipped(admin, "rate-limited") == 40
        assert compared < 40 and "PUT" not in stable_seen

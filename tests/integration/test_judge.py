"""A judge model (`compare.judge`), through `modelrollout compare` as its own process.

Two backends answer chat completions, the stable well and the candidate badly; a third, written
here, is the judge: it finds the better answer in what it is shown, and picks position A on a share
of asks whatever it is shown (its position bias). The comparator asks it blind, in a random order,
counts its preferences, the positions it chose, and the pairs asked both ways; a judge that errs
or gives no verdict is counted, never guessed; its budget and its token are kept; human
preferences posted to /feedback meet the judge's verdicts as calibration pairs.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from e2e.harness import wait_until

from tests.integration.test_comparator import backend, comparator, counters

FEEDBACK_TOKEN, JUDGE_TOKEN = "feedback-s3cret", "judge-s3cret"


def chat(text: str) -> bytes:
    return json.dumps({"id": "c", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode()


def stable(request: dict[str, Any]) -> tuple[int, bytes, float]:
    return 200, chat(f"A careful, correct answer to {request['messages'][-1]['content']}."), 0.0


def candidate(request: dict[str, Any]) -> tuple[int, bytes, float]:
    return 200, chat(f"wrong: {request['messages'][-1]['content']}"), 0.0


class Judge:
    """Prefers the answer that is not `wrong:`, except on a share `bias` of asks, where it says A."""

    def __init__(self, bias: float) -> None:
        self.bias, self.random, self.lock = bias, random.Random(7), threading.Lock()
        self.unauthorized = 0

    def __call__(self, request: dict[str, Any]) -> tuple[int, bytes, float]:
        content = request["messages"][0]["content"]
        if "q-fail" in content:
            return 500, b"{}", 0.0
        if "q-mute" in content:
            return 200, chat("Both answers have merit."), 0.0
        with self.lock:
            biased = self.random.random() < self.bias
        a_start = content.index("[The Start of Assistant A's Answer]")
        b_start = content.index("[The Start of Assistant B's Answer]")
        a_is_wrong = "wrong:" in content[a_start:b_start]
        return 200, chat("Explanation. [[A]]" if biased or not a_is_wrong else "Explanation. [[B]]"), 0.0


@contextmanager
def judge_server(judge: Judge) -> Iterator[str]:
    """The judge behind its bearer token: a call without it is answered 401 and counted."""
    class Serve(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/chat/completions" or self.headers.get("Authorization") != f"Bearer {JUDGE_TOKEN}":
                judge.unauthorized += 1
                status, body = 401, b"{}"
            else:
                status, body, _ = judge(json.loads(raw))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def send(base: str, names: list[str]) -> None:
    with httpx.Client(timeout=10) as client:
        for name in names:
            answered = client.post(f"{base}/v1/chat/completions", headers={"x-request-id": name},
                                   json={"model": "m", "messages": [{"role": "user", "content": name}]})
            assert answered.status_code == 202


def by(admin: str, metric: str, label: str) -> dict[str, float]:
    return {key.split(f'{label}="')[1].split('"')[0]: value for key, value in counters(admin).items()
            if key.startswith(f"modelrollout_compare_{metric}_total{{")}


def test_a_blind_judge_prefers_the_better_model_its_bias_and_failures_counted(tmp_path: Path) -> None:
    judge = Judge(bias=0.3)
    with backend(stable) as (stable_url, _), backend(candidate) as (candidate_url, _), \
            judge_server(judge) as judge_url, comparator(
                stable_url, candidate_url, tmp_path, "--format", "openai", "--max-requests-per-second", "1000",
                "--samples", "3", "--judge-url", judge_url, "--judge-model", "judge-7b",
                "--judge-max-per-second", "1000", "--judge-swap-percent", "50", "--judge-budget", "250",
                "--key-header", "x-request-id", "--feedback-db", str(tmp_path / "feedback.sqlite"),
                "--judge-calibration",
                env={"MODELROLLOUT_FEEDBACK_TOKEN": FEEDBACK_TOKEN, "MODELROLLOUT_JUDGE_TOKEN": JUDGE_TOKEN},
            ) as (base, admin):
        send(base, ["q-fail-1", "q-fail-2", "q-mute-1"] + [f"q-{i}" for i in range(200)])
        wait_until(lambda: sum(by(admin, "judged", "cell").values()) + sum(
            by(admin, "judge_failures", "reason").values()) + sum(by(admin, "judge_skipped", "reason").values())
                   >= 203, 60, "every pair judged, failed or skipped")
        judged, positions = by(admin, "judged", "cell"), by(admin, "judge_positions", "cell")
        failures, skipped = by(admin, "judge_failures", "reason"), by(admin, "judge_skipped", "reason")
        assert failures == {"status": 2, "no-verdict": 1}, failures
        assert judge.unauthorized == 0, "every call carried the judge's token"
        assert skipped.get("budget", 0) > 0, "250 calls; about 300 wanted"
        decided = judged["stable"] + judged["candidate"]
        assert judged["tie"] == 0 and judged["stable"] > 0.75 * decided, judged
        # With the order random, a judge saying A on 30% of asks whatever it sees chooses the first
        # position on about 0.3 + 0.7 / 2 = 65% of them.
        first_share = positions["first"] / (positions["first"] + positions["second"])
        assert 0.55 < first_share < 0.75, positions
        swaps = by(admin, "judge_swaps", "cell")
        assert swaps.get("inconsistent", 0) > 0 and swaps.get("consistent", 0) > swaps["inconsistent"], swaps

        shown = httpx.get(f"{admin}/judged", timeout=5).json()
        assert shown["calls"] <= 250 and shown["budget"] == 250
        assert len(shown["stable"]) == 3 and all(p["preferred"] == "stable" for p in shown["stable"])
        assert shown["stable"][0]["consistent"] is True, "the surest first: the same verdict both ways"
        assert shown["stable"][0]["candidate"].startswith("wrong:"), shown["stable"][0]

        keys = [f"q-{i}" for i in range(20)]
        posted = httpx.post(f"{admin}/feedback", headers={"Authorization": f"Bearer {FEEDBACK_TOKEN}"}, timeout=10,
                            json={"labels": [{"key": key, "kind": "preference", "label": "stable"} for key in keys]
                                  + [{"key": "never-asked", "kind": "preference", "label": "stable"},
                                     {"key": "q-30", "kind": "preference", "label": "better"},
                                     {"key": "q-31", "label": 1}]})
        outcomes = posted.json()
        assert outcomes == {"stored": outcomes.get("stored", 0), "unknown-key": 20 - outcomes.get("stored", 0) + 1,
                            "wrong-type": 1, "not-taken": 1}, outcomes
        assert outcomes["stored"] >= 15, "pairs the budget skipped or the judge failed are unknown"
        wait_until(lambda: sum(by(admin, "calibration", "cell").values()) == outcomes["stored"], 30,
                   "the calibration pairs counted")
        calibration = by(admin, "calibration", "cell")
        assert calibration["stable/stable"] + calibration["candidate/stable"] + calibration["tie/stable"] \
            == outcomes["stored"], calibration

"""`modelrollout compare`: the shadow step's comparator, in the mirror's path and never in the live one.

The gateway mirrors `percent` of live traffic here instead of straight to the candidate, and drops
whatever we answer: the comparator answers 202 at once, then sends the same request to the stable
and to the candidate (and, for a share `noisePercent` drawn first, to the stable a second time),
compares the answers (`formats`), and counts where the request landed (`outcomes`). Users are
answered by the stable through the gateway, as before; a slow, dead or overloaded comparator only
loses comparisons, and counts what it lost.

The load it adds is bounded: at most `maxRequestsPerSecond` compared requests a second (a token
bucket) and `maxInFlight` at once; the rest is counted and dropped. Only GET, HEAD and OPTIONS, and
POST to the format's own inference paths, are replayed unless `allowSideEffects` is set.

aiohttp serves and sends: Kopf already brings it into the operator's image, so the comparator adds
no HTTP library; `benchmarks/comparator.py` measures what it carries on one core (see the README).

No body is logged or kept, unless `samples` asks for the last N disagreements, which are kept in
memory only, truncated, with the `redact` fields replaced, and served at /samples on the admin port.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from jsonpath_ng.ext.parser import parse as parse_path
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controller.comparator.feedback import MAX_FEEDBACK_BYTES, Feedback, FeedbackConfig, FeedbackMetrics
from controller.comparator.formats import Format, Rules
from controller.comparator.judge import Judge, JudgeConfig, JudgeMetrics
from controller.comparator.limits import TokenBucket
from controller.comparator.outcomes import Answer, Failure, Outcome, Side, field_label, outcome
from controller.stats.paired import DISAGREEMENT_CELLS, SLOWER_CELLS

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The inference paths a format is POSTed to: replayed without allowSideEffects.
INFERENCE_PATHS = {
    Format.V2: re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$|^/v1/models/[^/]+:predict$"),
    Format.OPENAI: re.compile(r"^/v1/(chat/)?completions$"),
}
# Hop-by-hop headers, and those the client library sets itself.
_DROPPED_HEADERS = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
                              "trailer", "upgrade", "proxy-authorization", "proxy-connection", "accept-encoding"})
LATENCY_RATIO_BUCKETS = (0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0, 3.0, 5.0)
DELTA_BUCKETS = (1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 10.0)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096)
SAMPLE_CHARS = 2000
# Differing fields counted by name; beyond these, as "other", so the metric's labels stay few.
MAX_FIELDS = 50


@dataclass(frozen=True)
class Config:
    stable: str  # base URLs of the stable's and the candidate's Services
    candidate: str
    format: Format
    rules: Rules = field(default_factory=Rules)
    noise_percent: float = 20.0
    max_requests_per_second: float = 10.0
    max_in_flight: int = 64
    timeout_seconds: float = 5.0
    max_body_bytes: int = 1 << 20
    slower_than: float = 1.2  # pairedLatency's relativeToStable: the factor the slower cell counts at
    allow_side_effects: bool = False
    samples: int = 0
    redact: tuple[str, ...] = ()
    # `<namespace>/<name>` of the rollout: every series carries it as `modelrollout`, so the operator's one
    # query per look finds each rollout's counts whatever the scrape's own labels.
    rollout: str = ""
    feedback: FeedbackConfig | None = None  # compare.feedback: labels and preferences at /feedback
    judge: JudgeConfig | None = None  # compare.judge: a judge model prefers one of the two texts


ROLLOUT_LABEL = "modelrollout"
# Every series also names the process that counted it (its start, in milliseconds): the operator
# follows each process's totals apart, as Prometheus follows each series, so a restarted or replaced
# comparator, or two overlapping in a rollout of its Deployment, is never counted twice or lost.
PROCESS_LABEL = "process"


class Metrics:
    """What the comparator counts, for Prometheus; the operator reads the totals at each look."""

    def __init__(self, rollout: str = "", process: str | None = None) -> None:
        self.registry = CollectorRegistry()
        r, by = self.registry, [ROLLOUT_LABEL, PROCESS_LABEL]
        self.own = (rollout, process or str(time.time_ns() // 1_000_000))
        self.requests = Counter("modelrollout_compare_requests", "Compared requests by cell: the candidate's answer "
                                "against the stable's, then the stable's second answer against its first",
                                [*by, "cell"], registry=r)
        self.slower = Counter("modelrollout_compare_slower", "Compared requests by whether the candidate took more "
                              "than slowerThan times the stable's time on it", [*by, "cell"], registry=r)
        self.failures = Counter("modelrollout_compare_failures", "Answers not compared, by side and reason",
                                [*by, "side", "reason"], registry=r)
        self.skipped = Counter("modelrollout_compare_skipped", "Mirrored requests not compared, by reason",
                               [*by, "reason"], registry=r)
        self.differences = Counter("modelrollout_compare_differences", "Fields where the candidate's answer "
                                   "differed from the stable's", [*by, "field"], registry=r)
        self.latency_ratio = Histogram("modelrollout_compare_latency_ratio", "Candidate seconds / stable seconds "
                                       "on the same request", by, buckets=LATENCY_RATIO_BUCKETS, registry=r)
        self.delta = Histogram("modelrollout_compare_output_delta", "Largest absolute numeric difference between "
                               "the two answers", by, buckets=DELTA_BUCKETS, registry=r)
        # Each side's own answer: its status class, its time, its first byte (a streamed completion's
        # time to first token) and, where an openai answer says, its completion tokens.
        self.answers = Counter("modelrollout_compare_answers", "Answers by side and HTTP status class",
                               [*by, "side", "code"], registry=r)
        self.seconds = Histogram("modelrollout_compare_seconds", "Each side's seconds to its whole answer",
                                 [*by, "side"], buckets=SECONDS_BUCKETS, registry=r)
        self.first_byte = Histogram("modelrollout_compare_first_byte_seconds", "Each side's seconds to the first "
                                    "byte of its answer (of a streamed completion: its first token)",
                                    [*by, "side"], buckets=SECONDS_BUCKETS, registry=r)
        self.tokens = Histogram("modelrollout_compare_completion_tokens", "Completion tokens of each side's answer, "
                                "where it says (openai)", [*by, "side"], buckets=TOKEN_BUCKETS, registry=r)
        own = self.own
        for cell in DISAGREEMENT_CELLS:  # every cell from zero: a rate() of a series born late misses its start
            self.requests.labels(*own, cell)
        for cell in SLOWER_CELLS:
            self.slower.labels(*own, cell)
        self.latency_ratio.labels(*own)
        self.delta.labels(*own)
        self._fields: set[str] = set()

    def count(self, found: Outcome, slower_than: float) -> None:
        own = self.own
        for side, failure in found.failures:
            self.failures.labels(*own, side.value, failure.value).inc()
        if found.cell is None:
            return
        self.requests.labels(*own, found.cell).inc()
        if found.latency_ratio is not None:
            self.latency_ratio.labels(*own).observe(found.latency_ratio)
            self.slower.labels(*own, "slower" if found.latency_ratio > slower_than else "within").inc()
        if found.delta is not None:
            self.delta.labels(*own).observe(found.delta)
        for where in found.differs_at:
            label = field_label(where)
            if label not in self._fields and len(self._fields) >= MAX_FIELDS:
                label = "other"
            self._fields.add(label)
            self.differences.labels(*own, label).inc()

    def answered(self, answers: list[Answer], found: Outcome) -> None:
        own = self.own
        for side, answer in zip(Side, answers, strict=False):
            self.answers.labels(*own, side.value, f"{answer.status // 100}xx" if answer.status else "none").inc()
            if answer.failure is None:
                self.seconds.labels(*own, side.value).observe(answer.seconds)
            if answer.first_byte_seconds is not None:
                self.first_byte.labels(*own, side.value).observe(answer.first_byte_seconds)
        tokens = found.candidate.tokens if found.candidate is not None else (None, None)
        for side, count in zip((Side.STABLE, Side.CANDIDATE), tokens, strict=True):
            if count is not None:
                self.tokens.labels(*own, side.value).observe(count)

    def skip(self, reason: str) -> None:
        self.skipped.labels(*self.own, reason).inc()


@dataclass(frozen=True)
class Mirrored:
    method: str
    path: str  # with its query
    headers: tuple[tuple[str, str], ...]
    body: bytes


class Comparator:
    def __init__(self, config: Config, seed: int | None = None) -> None:
        self.config = config
        self.metrics = Metrics(config.rollout)
        self.bucket = TokenBucket(config.max_requests_per_second)
        self.random = random.Random(seed)
        self.samples: deque[dict[str, Any]] = deque(maxlen=max(config.samples, 1))
        self.in_flight: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        self._redact = [parse_path(path) for path in config.redact]
        by = [ROLLOUT_LABEL, PROCESS_LABEL]
        self.feedback = None if config.feedback is None else Feedback(
            config.feedback, FeedbackMetrics(self.metrics.registry, by, self.metrics.own))
        self.judge = None if config.judge is None else Judge(
            config.judge, JudgeMetrics(self.metrics.registry, by, self.metrics.own), seed,
            None if self.feedback is None else self.feedback.judged)
        self._feedback_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.max_in_flight * 3),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds), auto_decompress=True)
        if self.feedback is not None:
            self._feedback_task = asyncio.create_task(self.feedback.run())
        if self.judge is not None:
            await self.judge.start()

    async def close(self) -> None:
        for task in list(self.in_flight):
            task.cancel()
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        if self.judge is not None:
            await self.judge.close()
        if self._feedback_task is not None:
            self._feedback_task.cancel()
            await asyncio.gather(self._feedback_task, return_exceptions=True)
        if self.feedback is not None:
            await self.feedback.close()

    def replayable(self, method: str, path: str) -> bool:
        if method in SAFE_METHODS or self.config.allow_side_effects:
            return True
        pattern = INFERENCE_PATHS.get(self.config.format)
        return method == "POST" and pattern is not None and bool(pattern.match(path.split("?", 1)[0]))

    def admit(self, request: Mirrored) -> None:
        """Take a mirrored request: compare it in the background, or count why not."""
        reason = None
        if not self.replayable(request.method, request.path):
            reason = "side-effects"
        elif len(request.body) > self.config.max_body_bytes:
            reason = "too-large"
        elif len(self.in_flight) >= self.config.max_in_flight:
            reason = "overloaded"
        elif not self.bucket.take():
            reason = "rate-limited"
        if reason is not None:
            self.metrics.skip(reason)
            return
        task = asyncio.create_task(self.compare(request))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def compare(self, request: Mirrored) -> None:
        twice = self.random.random() * 100 < self.config.noise_percent
        sends = [self.send(self.config.stable, request), self.send(self.config.candidate, request)]
        if twice:
            sends.append(self.send(self.config.stable, request))
        answers = await asyncio.gather(*sends)
        found = outcome(self.config.format, self.config.rules, answers[0], answers[1],
                        answers[2] if twice else None)
        self.metrics.count(found, self.config.slower_than)
        self.metrics.answered(answers, found)
        stable, candidate = answers[0], answers[1]
        if found.cell is not None and stable.status == candidate.status == 200:
            key = None if self.feedback is None else self.feedback.key(dict(request.headers), request.body)
            if self.feedback is not None:
                self.feedback.file(key, stable.body, candidate.body)
            texts = found.candidate.texts if found.candidate is not None else None
            if self.judge is not None and texts is not None:
                self.judge.offer(key, request.body, *texts)
        if self.config.samples and found.cell is not None and "/differs" in found.cell:
            self.samples.append(self.sample(request, answers, found))

    async def send(self, base: str, request: Mirrored) -> Answer:
        assert self.session is not None
        started = time.monotonic()
        first_byte: float | None = None
        try:
            async with self.session.request(request.method, base.rstrip("/") + request.path,
                                            headers=list(request.headers), data=request.body or None) as response:
                chunks, size = [], 0
                async for chunk in response.content.iter_any():
                    first_byte = first_byte or time.monotonic() - started
                    size += len(chunk)
                    if size > self.config.max_body_bytes:
                        return Answer(response.status, b"", time.monotonic() - started, Failure.TOO_LARGE, first_byte)
                    chunks.append(chunk)
                return Answer(response.status, b"".join(chunks), time.monotonic() - started, None, first_byte)
        except TimeoutError:
            return Answer(0, b"", time.monotonic() - started, Failure.TIMEOUT)
        except (aiohttp.ClientError, OSError):
            return Answer(0, b"", time.monotonic() - started, Failure.UNREACHABLE)

    def sample(self, request: Mirrored, answers: list[Answer], found: Outcome) -> dict[str, Any]:
        shown = {side.value: self.shown(answer.body) for side, answer in zip(Side, answers, strict=False)}
        return {"at": time.time(), "method": request.method, "path": request.path.split("?", 1)[0],
                "request": self.shown(request.body), "differsAt": list(found.differs_at),
                **shown, "status": {side.value: a.status for side, a in zip(Side, answers, strict=False)},
                "seconds": {side.value: round(a.seconds, 4) for side, a in zip(Side, answers, strict=False)},
                "firstByteSeconds": {side.value: round(a.first_byte_seconds, 4)
                                     for side, a in zip(Side, answers, strict=False)
                                     if a.first_byte_seconds is not None},
                **({"tokens": dict(zip(("stable", "candidate"), found.candidate.tokens, strict=True))}
                   if found.candidate is not None and found.candidate.tokens != (None, None) else {})}

    def shown(self, body: bytes) -> str:
        """A body as a sample shows it: named fields redacted (JSON bodies), truncated."""
        text = body.decode("utf-8", errors="replace")
        if self._redact:
            try:
                document = json.loads(text)
            except json.JSONDecodeError:
                return "[not JSON: redacted]"
            document = copy.deepcopy(document)
            for path in self._redact:
                document = path.update(document, "[redacted]")
            text = json.dumps(document)
        return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + f"… ({len(text)} chars)"


def application(comparator: Comparator) -> web.Application:
    """The mirror's side: any method, any path, answered 202 at once."""
    async def mirrored(request: web.Request) -> web.Response:
        body = await request.read()
        headers = tuple((k, v) for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS)
        comparator.admit(Mirrored(request.method, request.path_qs, headers, body))
        return web.Response(status=202)

    app = web.Application(client_max_size=comparator.config.max_body_bytes + 1)
    app.router.add_route("*", "/{tail:.*}", mirrored)
    return app


def admin(comparator: Comparator) -> web.Application:
    """Metrics, the kept disagreements and judged pairs, labels and preferences (POST /feedback), and
    liveness."""
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(comparator.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def samples(_: web.Request) -> web.Response:
        kept = list(comparator.samples) if comparator.config.samples else []
        return web.json_response({"samples": kept, "kept": comparator.config.samples})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def feedback(request: web.Request) -> web.Response:
        if comparator.feedback is None:
            return web.json_response({"error": "this comparison takes no feedback (compare.feedback is not set)"},
                                     status=404)
        return await comparator.feedback.feedback(request)

    async def judged(_: web.Request) -> web.Response:
        if comparator.judge is None:
            return web.json_response({"error": "this comparison has no judge (compare.judge is not set)"},
                                     status=404)
        return web.json_response(comparator.judge.shown())

    app = web.Application(client_max_size=MAX_FEEDBACK_BYTES)
    app.router.add_post("/feedback", feedback)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/samples", samples)
    app.router.add_get("/judged", judged)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(config: Config, host: str, port: int, admin_port: int,
                ready: Callable[[], None] | None = None) -> None:
    """Run until cancelled."""
    comparator = Comparator(config)
    await comparator.start()
    runners = [web.AppRunner(application(comparator), access_log=None), web.AppRunner(admin(comparator),
                                                                                      access_log=None)]
    try:
        for runner, bound in zip(runners, (port, admin_port), strict=True):
            await runner.setup()
            await web.TCPSite(runner, host, bound).start()
        if ready is not None:
            ready()
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await comparator.close()

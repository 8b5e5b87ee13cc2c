"""Labels and preferences posted later (`compare.feedback`): for `compare.labels`, the comparator
files each compared request's two predictions under its key, takes labels at POST /feedback on its
admin port, and scores each request once, counting it in its cell of `stats.paired.LABELLED_CELLS`;
for `compare.judge.calibration`, it files the judge's verdict under the key, and a human's
preference posted for it counts the pair in its cell of `stats.paired.CALIBRATION_CELLS`.

POST /feedback (`Authorization: Bearer <the Secret's token>`), a JSON body of one entry or a batch:

    {"key": "r-1", "label": 1}
    {"labels": [{"key": "r-1", "label": 1}, {"key": "r-2", "kind": "preference", "label": "stable"}]}

`kind` is `label` (the default) or `preference` (`stable`, `candidate` or `tie`: the model a human
preferred; humans should be asked about a random sample of the judged requests, which the
correction assumes).

answers 200 with what became of each (`stored`, `unknown-key`, `expired`, `duplicate`, `late`,
`wrong-type`, `not-taken`): a label the comparator cannot use is counted and said, never an error to its
sender. A body that is not one of the two shapes is 400, naming the field; no or another token is
401; more labels a second than `maxFeedbackPerSecond` is 429, and one post of more than that 400.
Nothing is stored unless the answer is 200, and everything answered 200 is committed first.

The store is SQLite (`store.PredictionStore`); its calls run on one thread of their own, so the
event loop that takes mirrored requests never waits on a disk. Predictions are filed in batches
every quarter second (a crash loses at most that much of them, never an acknowledged label).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.comparator.judging import Preference
from controller.comparator.labels import (
    LabelRules,
    Received,
    RequestKey,
    absolute_errors,
    cell,
    prediction,
    request_key,
    right,
    valid_label,
)
from controller.comparator.limits import TokenBucket
from controller.comparator.store import PredictionStore
from controller.stats.paired import CALIBRATION_CELLS, ERROR_BUCKETS, LABELLED_CELLS, error_cell

MAX_BATCH = 10_000
MAX_FEEDBACK_BYTES = 8 << 20
FILE_EVERY, SCORE_EVERY, PRUNE_EVERY = 0.25, 1.0, 60.0
DUE_BATCH, SCORE_BATCHES = 10_000, 20  # at most 200,000 requests scored a second


KINDS = ("label", "preference")


@dataclass(frozen=True)
class FeedbackConfig:
    key: RequestKey
    db: str  # the SQLite file, on the comparator's volume
    token: str  # the bearer token /feedback requires; empty: every post is refused
    labels: LabelRules | None = None  # compare.labels: predictions filed and scored
    calibration: bool = False  # compare.judge.calibration: verdicts filed, preferences taken
    window_seconds: float | None = None
    retention_seconds: float = 7 * 86400.0
    max_entries: int = 1_000_000
    per_second: float = 1000.0


class Malformed(ValueError):
    """A feedback body that is not one label or a batch; its message names the field."""


def parse_feedback(body: bytes) -> list[tuple[str, str, Any]]:
    """(key, kind, label) from a feedback body, or Malformed naming what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the body is not JSON") from None
    if isinstance(document, dict) and "labels" in document:
        items, where = document["labels"], "labels"
        if not isinstance(items, list):
            raise Malformed("labels: must be a list of {key, label}")
        if len(items) > MAX_BATCH:
            raise Malformed(f"labels: at most {MAX_BATCH} in one post, not {len(items)}")
        named = [(f"labels[{i}]", item) for i, item in enumerate(items)]
    else:
        named, where = [("", document)], ""
    found = []
    for prefix, item in named:
        at = f"{prefix}." if prefix else ""
        if not isinstance(item, dict):
            raise Malformed(f"{prefix or where or 'the body'}: must be an object {{key, label}}")
        key = item.get("key")
        if not isinstance(key, str) or not key or len(key) > 256:
            raise Malformed(f"{at}key: required, a string of 1-256 characters")
        if "label" not in item:
            raise Malformed(f"{at}label: required")
        kind = item.get("kind", "label")
        if kind not in KINDS:
            raise Malformed(f"{at}kind: label (the default) or preference")
        found.append((key, kind, item["label"]))
    return found


class FeedbackMetrics:
    def __init__(self, registry: CollectorRegistry, by: list[str], own: tuple[str, ...]) -> None:
        self.own = own
        self.labelled = Counter("modelrollout_compare_labelled", "Labelled requests scored, by cell: which of the "
                                "two models was right", [*by, "cell"], registry=registry)
        self.unlabelled = Counter("modelrollout_compare_unlabelled", "Requests whose label window closed without "
                                  "a label (left out of the test)", by, registry=registry)
        self.feedback = Counter("modelrollout_compare_feedback", "Posted labels by what became of them, and posts "
                                "refused (malformed, unauthorized, limited)", [*by, "reason"], registry=registry)
        self.filed = Counter("modelrollout_compare_predictions_filed", "Compared requests whose predictions were "
                             "filed for their labels", by, registry=registry)
        self.unfiled = Counter("modelrollout_compare_predictions_unfiled", "Compared requests not filed, by reason "
                               "(no key, no prediction, a key seen before)", [*by, "reason"], registry=registry)
        self.kept = Gauge("modelrollout_compare_predictions_kept", "Predictions waiting for a label or kept after",
                          by, registry=registry)
        self.error_difference = Counter("modelrollout_compare_error_difference", "Labelled regression requests by "
                                        "bucket of the candidate's absolute error minus the stable's (clipped to "
                                        "maxError, in 40 equal buckets from -maxError)", [*by, "cell"],
                                        registry=registry)
        self.absolute_error = Counter("modelrollout_compare_absolute_error", "Each side's absolute errors on "
                                      "labelled regression requests, summed (each clipped to maxError)",
                                      [*by, "side"], registry=registry)
        self.calibration = Counter("modelrollout_compare_calibration", "Judged requests a human preference was "
                                   "posted for, by cell: the judge's preference/the human's", [*by, "cell"],
                                   registry=registry)

    def zeroed(self, config: FeedbackConfig) -> None:
        """Every cell from zero: a rate() of a series born late misses its start."""
        if config.labels is not None:
            for name in LABELLED_CELLS:
                self.labelled.labels(*self.own, name)
            self.unlabelled.labels(*self.own)
            if config.labels.max_error is not None:
                for k in range(ERROR_BUCKETS):
                    self.error_difference.labels(*self.own, str(k))
        if config.calibration:
            for name in CALIBRATION_CELLS:
                self.calibration.labels(*self.own, name)


class Feedback:
    """The comparator's /feedback: filing predictions and verdicts, taking labels and preferences,
    scoring; `run` until cancelled."""

    def __init__(self, config: FeedbackConfig, metrics: FeedbackMetrics, clock: Any = time.time) -> None:
        self.config, self.metrics, self.clock = config, metrics, clock
        self.bucket = TokenBucket(config.per_second)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="feedback")
        self.store = PredictionStore(config.db, config.retention_seconds, config.max_entries)
        self.pending: list[tuple[str, float, Any, Any]] = []
        self.verdicts: list[tuple[str, float, str]] = []
        metrics.zeroed(config)

    def key(self, headers: dict[str, str], body: bytes) -> str | None:
        return request_key(self.config.key, headers, body)

    def file(self, key: str | None, stable: bytes, candidate: bytes) -> None:
        """A compared request both models answered: its predictions, filed at the next flush."""
        rules = self.config.labels
        if rules is None:
            return
        if key is None:
            self.metrics.unfiled.labels(*self.metrics.own, "no-key").inc()
            return
        predicted = prediction(rules, stable), prediction(rules, candidate)
        if predicted[0] is None or predicted[1] is None:
            self.metrics.unfiled.labels(*self.metrics.own, "no-prediction").inc()
            return
        self.pending.append((key, self.clock(), *predicted))

    def judged(self, key: str, preferred: Preference) -> None:
        """A judge's verdict on a keyed request: filed at the next flush, for a human's preference."""
        if self.config.calibration:
            self.verdicts.append((key, self.clock(), preferred.value))

    async def _on_store(self, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call, *args)

    def _taken(self) -> tuple[list[tuple[str, float, Any, Any]], list[tuple[str, float, str]]]:
        """The predictions and verdicts waiting to be filed, taken on the event loop (which alone
        appends to them)."""
        batch, self.pending = (self.pending, self.verdicts), []
        self.verdicts = []
        return batch

    def _flush(self, batch: tuple[list[tuple[str, float, Any, Any]], list[tuple[str, float, str]]]) -> None:
        predictions, verdicts = batch
        if verdicts:
            self.store.file_verdicts(verdicts)
        if not predictions:
            return
        new = self.store.file(predictions)
        self.metrics.filed.labels(*self.metrics.own).inc(new)
        if new < len(predictions):
            self.metrics.unfiled.labels(*self.metrics.own, "key-seen-before").inc(len(predictions) - new)

    def _usable(self, kind: str, label: Any) -> Received | None:
        """Why an entry cannot be taken, or None."""
        if kind == "preference":
            if not self.config.calibration:
                return Received.NOT_TAKEN
            return None if label in tuple(Preference) else Received.WRONG_TYPE
        if self.config.labels is None:
            return Received.NOT_TAKEN
        return None if valid_label(self.config.labels.task, label) else Received.WRONG_TYPE

    def _receive(self, batch: tuple[list[tuple[str, float, Any, Any]], list[tuple[str, float, str]]],
                 entries: list[tuple[str, str, Any]]) -> list[Received]:
        self._flush(batch)  # an entry may follow its request closely
        refused = [self._usable(kind, label) for _, kind, label in entries]
        labels = [(key, label) for (key, kind, label), no in zip(entries, refused, strict=True)
                  if no is None and kind == "label"]
        preferences = [(key, label) for (key, kind, label), no in zip(entries, refused, strict=True)
                       if no is None and kind == "preference"]
        stored_labels = iter(self.store.label(labels, self.clock()))
        stored_preferences = iter(self.store.prefer(preferences, self.clock()))
        received = []
        for (_, kind, human), no in zip(entries, refused, strict=True):
            if no is not None:
                received.append(no)
            elif kind == "label":
                received.append(next(stored_labels))
            else:
                outcome, judge = next(stored_preferences)
                received.append(outcome)
                if judge is not None:
                    self.metrics.calibration.labels(*self.metrics.own, f"{judge}/{human}").inc()
        return received

    def _score(self, batch: tuple[list[tuple[str, float, Any, Any]], list[tuple[str, float, str]]]) -> None:
        self._flush(batch)
        rules, own = self.config.labels, self.metrics.own
        if rules is None:
            return
        for _ in range(SCORE_BATCHES):  # bounded: the next pass scores the rest
            due = self.store.due(self.clock(), self.config.window_seconds, DUE_BATCH)
            for request in due:
                if request.label is None:
                    self.metrics.unlabelled.labels(*own).inc()
                else:
                    self.metrics.labelled.labels(*own, cell(right(rules, request.stable, request.label),
                                                            right(rules, request.candidate, request.label))).inc()
                    self._errors(rules, request.stable, request.candidate, request.label)
            self.store.scored([request.key for request in due])
            if len(due) < DUE_BATCH:
                return

    def _errors(self, rules: LabelRules, stable: Any, candidate: Any, label: Any) -> None:
        errors = absolute_errors(rules, stable, candidate, label)
        if errors is None or rules.max_error is None:
            return
        own = self.metrics.own
        self.metrics.absolute_error.labels(*own, "stable").inc(errors[0])
        self.metrics.absolute_error.labels(*own, "candidate").inc(errors[1])
        self.metrics.error_difference.labels(*own, str(error_cell(errors[1] - errors[0], rules.max_error))).inc()

    def _prune(self) -> None:
        self.store.prune(self.clock())
        self.metrics.kept.labels(*self.metrics.own).set(self.store.count())

    async def run(self) -> None:
        last_score = last_prune = 0.0
        while True:
            await asyncio.sleep(FILE_EVERY)
            now = time.monotonic()
            if now - last_prune >= PRUNE_EVERY:
                last_prune = now
                await self._on_store(self._prune)
            if now - last_score >= SCORE_EVERY:
                last_score = now
                await self._on_store(self._score, self._taken())
            elif self.pending or self.verdicts:
                await self._on_store(self._flush, self._taken())

    async def feedback(self, request: web.Request) -> web.Response:
        own = self.metrics.own
        token = self.config.token
        offered = request.headers.get("Authorization", "")
        if not token or not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
            self.metrics.feedback.labels(*own, "unauthorized").inc()
            return web.json_response({"error": "a bearer token is required (the Secret of feedback.tokenSecretRef)"},
                                     status=401)
        try:
            entries = parse_feedback(await request.read())
        except Malformed as error:
            self.metrics.feedback.labels(*own, "malformed").inc()
            return web.json_response({"error": str(error)}, status=400)
        if len(entries) > self.bucket.capacity:
            self.metrics.feedback.labels(*own, "malformed").inc()
            why = (f"labels: {len(entries)} in one post is more than feedback.maxPerSecond "
                   f"({self.config.per_second:g}): split it")
            return web.json_response({"error": why}, status=400)
        if not self.bucket.take(len(entries)):
            self.metrics.feedback.labels(*own, "limited").inc(len(entries))
            return web.json_response({"error": f"more than {self.config.per_second:g} labels a second "
                                      "(feedback.maxPerSecond); retry later"}, status=429,
                                     headers={"Retry-After": "1"})
        received = await self._on_store(self._receive, self._taken(), entries)
        counts: dict[str, int] = {}
        for outcome in received:
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
            self.metrics.feedback.labels(*own, outcome.value).inc()
        return web.json_response(counts)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._on_store(self._flush, self._taken())
        await self._on_store(self.store.close)
        self.executor.shutdown(wait=True)

"""Which new statuses are worth a write, and which may wait in memory for the next checkpoint.

A look changes the status every interval: its time, its counter totals, the evidence of every test.
Writing each look costs the apiserver one write per rollout per interval (at 1,000 rollouts every
10 s, 100 writes a second). So the status is written when something a reader acts on changes (the
phase, the step, a verdict, an outcome, a condition, a decision, a reason), when a shown figure moves
by half or more from what is stored, and otherwise every CHECKPOINT_LOOKS looks or CHECKPOINT_SECONDS.

What waits is only evidence. A restart (or a new leader) reads the last checkpoint and its next look
counts from the checkpoint's counter totals: the looks in between are merged into one longer interval,
which delays a decision and never invalidates it (each test's increment stays a valid likelihood
ratio over whatever interval it spans).
"""

from __future__ import annotations

import math
import re
from typing import Any

CHECKPOINT_LOOKS = 6
CHECKPOINT_SECONDS = 60.0
# A shown figure that moves by this share of the larger of its stored and new values is news,
# unless it moved by less than FIGURE_FLOOR (an error rate from 0 to 0.05%).
FIGURE_CHANGE = 0.5
FIGURE_FLOOR = 1e-3
# A test's running evidence is news when it moves towards its threshold by this share of it: near
# zero, a share of its own value would be every look's noise. Evidence falling away from the
# threshold (a healthy candidate's, look after look) waits for the checkpoint: it alarms nobody.
EVIDENCE_CHANGE = 0.25
_THRESHOLDS = {"evidence": ("evidenceThreshold", "threshold"), "detector": ("detectorThreshold",)}
# Written at checkpoints only: totals and running test state, which move at every look.
_EVIDENCE = frozenset({
    "lastRun", "looks", "durationMs", "counters", "oldestScrapeSeconds", "cumulative", "detectorState",
    "events", "trials", "successes", "requests", "tests", "samples", "designLooks", "measuredAt",
})
# Whole numbers that are estimates, not states: compared as figures.
_ESTIMATES = frozenset({"samplesNeeded", "samplesNeededP80", "fixedHorizonSamples"})
# Text that carries the look's figures: compared with its numbers masked.
_TEXT = frozenset({"reason", "message", "detail"})
_NUMBER = re.compile(r"\d[\d.]*(?:e[+-]?\d+)?")


def worth_writing(stored: dict[str, Any] | None, new: dict[str, Any], behind_seconds: float) -> bool:
    """Whether `new` must be written now, over `stored` (what the apiserver holds, `behind_seconds` old
    in looks the operator has kept in memory since). Both are statuses as written (JSON, by alias):
    the look has them so already, and a second dump of each would cost more than the comparison."""
    if not stored:
        return True
    old_looks, new_looks = _looks(stored), _looks(new)
    if behind_seconds >= CHECKPOINT_SECONDS or new_looks - old_looks >= CHECKPOINT_LOOKS or new_looks < old_looks:
        return True
    return _differs(stored, new, "")


def _looks(status: dict[str, Any]) -> int:
    return int((status.get("analysis") or {}).get("looks") or 0)


def _differs(old: Any, new: Any, key: str) -> bool:
    if key in _EVIDENCE:
        return False
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() != new.keys() or any(_differs_in(old, new, k) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) != len(new) or any(_differs(a, b, key) for a, b in zip(old, new, strict=True))
    if _figure(old, key) and _figure(new, key):
        return bool(abs(new - old) >= max(FIGURE_CHANGE * max(abs(old), abs(new)), FIGURE_FLOOR))
    if key in _TEXT and isinstance(old, str) and isinstance(new, str):
        return _NUMBER.sub("#", old) != _NUMBER.sub("#", new)
    return bool(old != new)


def _figure(value: Any, key: str) -> bool:
    return isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and key in _ESTIMATES)


def _differs_in(old: dict[str, Any], new: dict[str, Any], key: str) -> bool:
    """One field of a dict; a test's evidence against its threshold, beside it."""
    threshold = next((new[name] for name in _THRESHOLDS.get(key, ()) if isinstance(new.get(name), float)), None)
    if threshold and isinstance(old[key], float) and isinstance(new[key], float):
        return bool((new[key] - old[key]) * math.copysign(1.0, threshold) >= EVIDENCE_CHANGE * abs(threshold))
    return _differs(old[key], new[key], key)

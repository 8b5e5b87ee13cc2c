"""Labels that arrive later, scored for both models on the same request (pure).

A compared request's key (a header, or a JSONPath into its body) files both models' predictions;
a label posted later for that key says which of them was right. The request then lands in one of
`stats.paired.LABELLED_CELLS`, and the operator's paired test (McNemar's design, betting e-values:
`analysis.compare_tests.accuracy_worse`) reads the cells' counters.

- classification: right when the prediction equals the label (numbers as numbers: 1 == 1.0).
- regression: right when the absolute error is at most `tolerance`; and with `maxError`, each
  request's two absolute errors (clipped to it) and their difference, counted in
  `stats.paired.ERROR_BUCKETS` buckets, for a paired test on the mean absolute error.
- ranking: right when the label is among the prediction's first `k` items (a hit at k).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controller.comparator.formats import compiled_path
from controller.stats.paired import LABELLED_CELLS


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    RANKING = "ranking"


class Received(StrEnum):
    """What became of one posted label; each is counted."""

    STORED = "stored"
    UNKNOWN = "unknown-key"  # no prediction was filed under it (never compared, or pruned)
    EXPIRED = "expired"  # filed longer ago than labels.retention
    DUPLICATE = "duplicate"  # the key has a label already: the first one stands
    LATE = "late"  # its request was scored already (its window closed without a label)
    WRONG_TYPE = "wrong-type"  # not a label of the task, or a preference not stable, candidate or tie
    NOT_TAKEN = "not-taken"  # a label without compare.labels, or a preference without judge.calibration


@dataclass(frozen=True)
class RequestKey:
    """`compare.requestKey` or `requestKeyPath`: what names a compared request for /feedback."""

    header: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if (self.header is None) == (self.path is None):
            raise ValueError("a request is named by a header or by a JSONPath into its body, one of them")


@dataclass(frozen=True)
class LabelRules:
    """`compare.labels` of the spec, as the comparator applies it."""

    prediction: str | None = None  # a JSONPath into each answer; None: v2's first output's first element
    task: Task = Task.CLASSIFICATION
    k: int = 10
    tolerance: float = 0.0
    max_error: float | None = None  # regression: the error difference's clip bound (labels.maxError)


def request_key(key: RequestKey, headers: dict[str, str], body: bytes) -> str | None:
    """The key a request's predictions and verdict are filed under; None when it has none."""
    if key.header is not None:
        found = next((value for name, value in headers.items() if name.lower() == key.header.lower()), None)
        return found[:256] if found else None
    value = _first(key.path, body)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)[:256] or None


def prediction(rules: LabelRules, body: bytes) -> Any:
    """An answer's prediction: at `rules.prediction`, or the first element of v2's first output."""
    if rules.prediction is not None:
        return _first(rules.prediction, body)
    document = _document(body)
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        data = outputs[0].get("data")
        while isinstance(data, list) and data and rules.task != Task.RANKING:
            data = data[0]
        return data
    predictions = document.get("predictions") if isinstance(document, dict) else None  # KServe v1
    if isinstance(predictions, list) and predictions:
        return predictions[0]
    return None


def valid_label(task: Task, label: Any) -> bool:
    if task == Task.REGRESSION:
        return _number(label) is not None
    return isinstance(label, str | int | float) and not isinstance(label, bool) and _finite(label)


def right(rules: LabelRules, predicted: Any, label: Any) -> bool:
    """Whether a prediction is right for its label (a label already valid for the task)."""
    if rules.task == Task.REGRESSION:
        value, truth = _number(predicted), _number(label)
        return value is not None and truth is not None and abs(value - truth) <= rules.tolerance
    if rules.task == Task.RANKING:
        return isinstance(predicted, list) and any(_same(item, label) for item in predicted[:rules.k])
    return _same(predicted, label)


def absolute_errors(rules: LabelRules, stable: Any, candidate: Any, label: Any) -> tuple[float, float] | None:
    """A regression's two absolute errors, each clipped to maxError (a prediction that is not a number
    errs by maxError); None unless the task is a regression with maxError."""
    truth = _number(label)
    if rules.task != Task.REGRESSION or rules.max_error is None or truth is None:
        return None
    bound = rules.max_error

    def error(predicted: Any) -> float:
        value = _number(predicted)
        return bound if value is None else min(abs(value - truth), bound)

    return error(stable), error(candidate)


def cell(stable_right: bool, candidate_right: bool) -> str:
    """The request's cell of `LABELLED_CELLS`."""
    return LABELLED_CELLS[{(True, True): 0, (True, False): 1, (False, True): 2, (False, False): 3}[
        (stable_right, candidate_right)]]


def _same(first: Any, second: Any) -> bool:
    a, b = _number(first), _number(second)
    if a is not None and b is not None:
        return a == b
    return isinstance(first, str) and isinstance(second, str) and first == second


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _document(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _first(path: str | None, body: bytes) -> Any:
    document = _document(body)
    if path is None or document is None:
        return None
    found = compiled_path(path).find(document)
    return found[0].value if found else None

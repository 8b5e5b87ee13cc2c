"""Labels for both models: how a request is named, where a prediction is, when it is right, and what
the store does with late, repeated, unknown and expired labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.comparator.feedback import Malformed, parse_feedback
from controller.comparator.labels import (
    LabelRules,
    Received,
    RequestKey,
    Task,
    absolute_errors,
    cell,
    prediction,
    request_key,
    right,
    valid_label,
)
from controller.comparator.store import PredictionStore
from controller.stats.paired import error_ceilings, error_cell, error_floors


def v2(*data: float) -> bytes:
    return json.dumps({"outputs": [{"name": "predict", "shape": [1, len(data)], "data": list(data)}]}).encode()


def test_a_request_is_named_by_its_header_or_a_path_into_its_body() -> None:
    by_header = RequestKey(header="X-Request-Id")
    assert request_key(by_header, {"x-request-id": "r-1"}, b"{}") == "r-1"
    assert request_key(by_header, {}, b"{}") is None
    by_path = RequestKey(path="$.id")
    assert request_key(by_path, {}, b'{"id": 7, "inputs": []}') == "7"
    assert request_key(by_path, {}, b'{"id": true}') is None and request_key(by_path, {}, b"not json") is None
    with pytest.raises(ValueError, match="one of them"):
        RequestKey()


def test_predictions_are_read_where_the_rules_say_or_from_v2s_first_output() -> None:
    assert prediction(LabelRules(), v2(1.0)) == 1.0
    assert prediction(LabelRules(), b'{"predictions": [0, 1]}') == 0
    assert prediction(LabelRules(task=Task.RANKING), v2(3, 1, 2)) == [3, 1, 2]
    assert prediction(LabelRules(prediction="$.label"), b'{"label": "fraud"}') == "fraud"
    assert prediction(LabelRules(), b"<html>") is None


def test_right_by_task() -> None:
    classes = LabelRules()
    assert right(classes, 1.0, 1) and not right(classes, 0, 1) and right(classes, "cat", "cat")
    regression = LabelRules(task=Task.REGRESSION, tolerance=0.5)
    assert right(regression, 10.4, 10) and not right(regression, 10.6, 10)
    ranking = LabelRules(task=Task.RANKING, k=2)
    assert right(ranking, [5, 3, 9], 3) and not right(ranking, [5, 3, 9], 9) and not right(ranking, 3, 3)
    assert valid_label(Task.CLASSIFICATION, "cat") and not valid_label(Task.CLASSIFICATION, {"a": 1})
    assert not valid_label(Task.REGRESSION, "1.5") and not valid_label(Task.CLASSIFICATION, True)
    assert [cell(True, True), cell(True, False), cell(False, True), cell(False, False)] == [
        "both-right", "stable-only", "candidate-only", "both-wrong"]


def test_the_store_takes_each_label_once_and_says_what_became_of_the_others(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "labels.sqlite", retention_seconds=100, max_entries=3)
    assert store.file([("a", 0.0, 1, 0), ("b", 50.0, 1, 1), ("a", 60.0, 0, 0)]) == 2, "a key keeps its first"
    assert store.label([("a", 1), ("a", 0), ("zzz", 1)], now=90.0) == [
        Received.STORED, Received.DUPLICATE, Received.UNKNOWN]
    assert store.label([("b", 1)], now=151.0) == [Received.EXPIRED]
    due = store.due(now=90.0, window_seconds=None)
    assert [(d.key, d.stable, d.candidate, d.label) for d in due] == [("a", 1, 0, 1)]
    store.scored(["a"])
    assert store.due(now=90.0, window_seconds=None) == []


def test_a_window_scores_every_request_when_it_closes_and_a_label_after_it_is_late(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "labels.sqlite", retention_seconds=1000, max_entries=10)
    store.file([("early", 0.0, 1, 1), ("late", 5.0, 0, 1), ("open", 50.0, 1, 1)])
    store.label([("early", 1)], now=3.0)
    due = store.due(now=30.0, window_seconds=20.0)
    assert [(d.key, d.label) for d in due] == [("early", 1), ("late", None)], "in request order"
    store.scored([d.key for d in due])
    assert store.label([("late", 1), ("open", 1)], now=31.0) == [Received.LATE, Received.STORED]


def test_the_store_keeps_at_most_its_entries_and_its_retention(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "labels.sqlite", retention_seconds=100, max_entries=2)
    store.file([(f"k{i}", float(i), 1, 1) for i in range(5)])
    assert store.prune(now=50.0) == 3 and store.count() == 2
    assert store.prune(now=1000.0) == 2 and store.count() == 0
    store.close()
    reopened = PredictionStore(tmp_path / "labels.sqlite", retention_seconds=100, max_entries=2)
    assert reopened.count() == 0


@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["key", "label", "labels", "kind"]), inner, max_size=3), max_leaves=8).map(
    lambda document: json.dumps(document).encode()))
def test_any_feedback_body_is_labels_or_a_400_naming_what_is_wrong(body: bytes) -> None:
    try:
        found = parse_feedback(body)
    except Malformed as error:
        assert str(error)
        return
    assert all(isinstance(key, str) and key and kind in ("label", "preference") for key, kind, _ in found)


def test_a_malformed_batch_names_the_item_and_the_field() -> None:
    with pytest.raises(Malformed, match=r"labels\[1\]\.label: required"):
        parse_feedback(b'{"labels": [{"key": "a", "label": 1}, {"key": "b"}]}')
    with pytest.raises(Malformed, match="labels: must be a list"):
        parse_feedback(b'{"labels": {"key": "a"}}')
    assert parse_feedback(b'{"key": "a", "label": null}') == [("a", "label", None)]
    assert parse_feedback(b'{"key": "a", "kind": "preference", "label": "stable"}') == [("a", "preference", "stable")]
    with pytest.raises(Malformed, match="kind: label"):
        parse_feedback(b'{"key": "a", "kind": "vote", "label": "stable"}')


def test_a_human_preference_finds_the_judges_verdict_once(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "feedback.sqlite", retention_seconds=100, max_entries=10)
    store.file_verdicts([("a", 0.0, "stable"), ("b", 10.0, "candidate"), ("a", 20.0, "candidate")])
    assert store.prefer([("a", "tie"), ("a", "stable"), ("zzz", "stable")], now=50.0) == [
        (Received.STORED, "stable"), (Received.DUPLICATE, None), (Received.UNKNOWN, None)], "a key keeps its first"
    assert store.prefer([("b", "stable")], now=200.0) == [(Received.EXPIRED, None)]
    assert store.prune(now=200.0) == 2 and store.count("verdicts") == 0


def test_a_regression_counts_both_absolute_errors_clipped_and_the_bucket_of_their_difference() -> None:
    rules = LabelRules(task=Task.REGRESSION, max_error=2.0)
    assert absolute_errors(rules, 10.5, 9.0, 10) == (0.5, 1.0)
    assert absolute_errors(rules, 10.0, 25.0, 10) == (0.0, 2.0), "clipped to maxError"
    assert absolute_errors(rules, 10.0, "n/a", 10) == (0.0, 2.0), "no number: the largest error"
    assert absolute_errors(LabelRules(task=Task.REGRESSION), 1.0, 2.0, 1) is None, "no maxError: accuracy only"
    assert absolute_errors(LabelRules(), 1, 0, 1) is None
    # 40 buckets of 0.1 over [-2, 2]: a difference of 0 opens bucket 20, the ends are clipped into the last ones.
    assert [error_cell(d, 2.0) for d in (-5.0, -2.0, -0.05, 0.0, 0.5, 1.99, 2.0, 9.0)] == [0, 0, 19, 20, 25, 39, 39, 39]
    floors, ceilings = error_floors(2.0), error_ceilings(2.0)
    assert floors.values[20] == 0.0 and ceilings.values[20] == pytest.approx(0.1) and ceilings.values[-1] == 2.0

"""Labels posted later (`compare.labels`), through `modelrollout compare` as its own process.

Two backends answer v2 predictions; mirrored requests carry x-request-id; the test posts labels to
/feedback and reads which model was right from the comparator's counters. Bad feedback is refused
with the reason and stores nothing; a comparator killed between predictions and labels still
scores them after its restart; a flood is answered 429.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from e2e.harness import wait_until

from tests.integration.test_comparator import backend, comparator, counters, mirror, running_comparator, v2

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def truth(x: int) -> int:
    return x % 2


def stable(request: dict[str, Any]) -> tuple[int, bytes, float]:
    x = request["inputs"][0]["data"][0]
    return 200, v2(truth(x) if x % 10 else 1 - truth(x)), 0.0  # wrong on every tenth input


def candidate(request: dict[str, Any]) -> tuple[int, bytes, float]:
    x = request["inputs"][0]["data"][0]
    return 200, v2(truth(x) if x % 5 else 1 - truth(x)), 0.0  # wrong on every fifth input


def cells(admin: str) -> dict[str, float]:
    return {key.split('cell="')[1].split('"')[0]: value for key, value in counters(admin).items()
            if key.startswith("modelrollout_compare_labelled_total")}


def feedback(admin: str) -> dict[str, float]:
    return {key.split('reason="')[1].split('"')[0]: value for key, value in counters(admin).items()
            if key.startswith("modelrollout_compare_feedback_total")}


def labelling(tmp_path: Path, *extra: str) -> tuple[str, ...]:
    return ("--max-requests-per-second", "1000", "--key-header", "x-request-id", "--labels-task", "classification",
            "--feedback-db", str(tmp_path / "feedback.sqlite"), *extra)


def test_labels_score_both_models_and_bad_feedback_is_refused_with_the_reason(tmp_path: Path) -> None:
    with backend(stable) as (stable_url, _), backend(candidate) as (candidate_url, _), comparator(
            stable_url, candidate_url, tmp_path, *labelling(tmp_path, "--feedback-max-per-second", "500"),
            env={"MODELROLLOUT_FEEDBACK_TOKEN": TOKEN}) as (base, admin):
        mirror(base, 100)
        wait_until(lambda: counters(admin).get(
            'modelrollout_compare_predictions_filed_total{modelrollout="t/scorer"}', 0) == 100, 30, "100 filed")
        batch = {"labels": [{"key": f"r-{x}", "label": truth(x)} for x in range(100)]}
        refused = httpx.post(f"{admin}/feedback", json=batch, timeout=10)
        assert refused.status_code == 401 and cells(admin)["both-right"] == 0, "no token: nothing stored"
        wrong = httpx.post(f"{admin}/feedback", json=batch, headers={"Authorization": "Bearer guess"}, timeout=10)
        assert wrong.status_code == 401
        malformed = httpx.post(f"{admin}/feedback", json={"labels": [{"key": "r-1", "label": 1}, {"label": 0}]},
                               headers=AUTH, timeout=10)
        assert malformed.status_code == 400 and "labels[1].key" in malformed.json()["error"], malformed.text

        answered = httpx.post(f"{admin}/feedback", json=batch, headers=AUTH, timeout=10)
        assert answered.status_code == 200 and answered.json() == {"stored": 100}, answered.text
        odd = httpx.post(f"{admin}/feedback", headers=AUTH, timeout=10, json={"labels": [
            {"key": "r-1", "label": 1}, {"key": "never-seen", "label": 0}, {"key": "r-2", "label": {"a": 1}}]})
        assert odd.json() == {"duplicate": 1, "unknown-key": 1, "wrong-type": 1}, odd.text
        wait_until(lambda: sum(cells(admin).values()) == 100, 30, "100 scored")
        # Inputs 0..99: the stable is wrong on multiples of 10, the candidate on multiples of 5.
        assert cells(admin) == {"both-right": 80, "stable-only": 10, "candidate-only": 0, "both-wrong": 10}

        flood = [httpx.post(f"{admin}/feedback", headers=AUTH, timeout=10,
                            json={"labels": [{"key": f"x-{i}-{j}", "label": 1} for j in range(200)]})
                 for i in range(5)]
        too_big = httpx.post(f"{admin}/feedback", headers=AUTH, timeout=10,
                             json={"labels": [{"key": f"y-{j}", "label": 1} for j in range(501)]})
        assert too_big.status_code == 400 and "split it" in too_big.json()["error"], "never a 429 forever"
        limited = [r for r in flood if r.status_code == 429]
        assert limited and all(r.headers["Retry-After"] == "1" for r in limited), "500 a second: 1,000 at once wait"
        assert feedback(admin)["unauthorized"] == 2 and feedback(admin)["malformed"] == 2


def test_a_comparator_killed_between_predictions_and_labels_still_scores_them(tmp_path: Path) -> None:
    """SIGKILL after filing: predictions filed before it are on the volume; labels posted to the
    restarted comparator score them."""
    with backend(stable) as (stable_url, _), backend(candidate) as (candidate_url, _):
        with running_comparator(stable_url, candidate_url, tmp_path, *labelling(tmp_path),
                                env={"MODELROLLOUT_FEEDBACK_TOKEN": TOKEN}) as (base, admin, process):
            mirror(base, 40)
            wait_until(lambda: counters(admin).get(
                'modelrollout_compare_predictions_filed_total{modelrollout="t/scorer"}', 0) == 40, 30, "40 filed")
            process.kill()  # the comparator this test started: no chance to flush or close anything
            process.wait(10)
        with comparator(stable_url, candidate_url, tmp_path, *labelling(tmp_path),
                        env={"MODELROLLOUT_FEEDBACK_TOKEN": TOKEN}) as (_, admin):
            answered = httpx.post(f"{admin}/feedback", headers=AUTH, timeout=10,
                                  json={"labels": [{"key": f"r-{x}", "label": truth(x)} for x in range(40)]})
            assert answered.json() == {"stored": 40}, answered.text
            wait_until(lambda: sum(cells(admin).values()) == 40, 30, "40 scored after the restart")
            assert cells(admin) == {"both-right": 32, "stable-only": 4, "candidate-only": 0, "both-wrong": 4}


def test_a_regression_counts_both_absolute_errors_and_their_paired_difference(tmp_path: Path) -> None:
    """The stable predicts x exactly, the candidate x + 0.5 on odd inputs: half the requests gain 0.5 of error."""
    def exact(request: dict[str, Any]) -> tuple[int, bytes, float]:
        return 200, v2(float(request["inputs"][0]["data"][0])), 0.0

    def off(request: dict[str, Any]) -> tuple[int, bytes, float]:
        x = request["inputs"][0]["data"][0]
        return 200, v2(x + 0.5 * (x % 2)), 0.0

    with backend(exact) as (stable_url, _), backend(off) as (candidate_url, _), comparator(
            stable_url, candidate_url, tmp_path, "--max-requests-per-second", "1000", "--key-header", "x-request-id",
            "--labels-task", "regression", "--labels-max-error", "2", "--labels-tolerance", "0.1",
            "--feedback-db", str(tmp_path / "feedback.sqlite"), env={"MODELROLLOUT_FEEDBACK_TOKEN": TOKEN},
    ) as (base, admin):
        mirror(base, 40)
        wait_until(lambda: counters(admin).get(
            'modelrollout_compare_predictions_filed_total{modelrollout="t/scorer"}', 0) == 40, 30, "40 filed")
        answered = httpx.post(f"{admin}/feedback", headers=AUTH, timeout=10,
                              json={"labels": [{"key": f"r-{x}", "label": float(x)} for x in range(40)]})
        assert answered.json() == {"stored": 40}, answered.text
        wait_until(lambda: sum(by_cell(admin, "error_difference").values()) == 40, 30, "40 scored")
        # 40 buckets of 0.1 over [-2, 2]: no difference opens bucket 20, +0.5 bucket 25.
        assert {k: v for k, v in by_cell(admin, "error_difference").items() if v} == {"20": 20, "25": 20}
        sums = {key.split('side="')[1].split('"')[0]: value for key, value in counters(admin).items()
                if key.startswith("modelrollout_compare_absolute_error_total")}
        assert sums == {"stable": 0.0, "candidate": 10.0}, sums
        assert cells(admin) == {"both-right": 20, "stable-only": 20, "candidate-only": 0, "both-wrong": 0}


def by_cell(admin: str, metric: str) -> dict[str, float]:
    return {key.split('cell="')[1].split('"')[0]: value for key, value in counters(admin).items()
            if key.startswith(f"modelrollout_compare_{metric}_total")}

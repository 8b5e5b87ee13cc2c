"""The decision-quality benchmark at a tiny size, with fixed seeds: well-formed figures, not the figures themselves."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import decision_quality
from benchmarks.decision_quality import (
    NEVER,
    Parameters,
    Results,
    RollbackRate,
    first_true,
    interval_by_which_share_rolled_back,
    main,
    run,
)

TINY = Parameters(runs=300, seed=7, aa_intervals=12, regression_intervals=40, verify_runs=3,
                  sensitivity_requests=(100, 400))


@pytest.fixture(scope="module")
def tiny() -> Results:
    return run(TINY)


def _is_proportion(rate: RollbackRate) -> bool:
    return rate.runs == TINY.runs and 0.0 <= rate.low <= rate.rate <= rate.high <= 1.0


def test_rates_are_proportions_within_their_wilson_intervals(tiny: Results) -> None:
    results = tiny
    rates = [results.aa.sequential, results.aa.naive, results.aa.flagger, results.aa_naive_last_look]
    for by_traffic in results.aa_by_traffic.values():
        rates += [by_traffic.sequential, by_traffic.naive, by_traffic.flagger]
    regression = results.regression
    rates += [regression.sequential.rate, regression.naive.rate, regression.flagger.rate]
    assert all(_is_proportion(rate) for rate in rates)
    assert 0.0 <= regression.sequential_by_fixed_horizon <= 1.0
    assert results.naive_max_deviation <= decision_quality.VERIFY_TOLERANCE


def test_the_sequential_judge_rolls_back_falsely_no_more_often_than_the_naive_repeated_test(tiny: Results) -> None:
    results = tiny
    assert results.aa.sequential.rate <= results.aa.naive.rate
    # The main traffic level is reused in the sensitivity table, not drawn again.
    assert results.aa_by_traffic[TINY.requests_per_interval] is results.aa


def test_a_regression_is_caught_and_the_percentiles_are_ordered_within_the_horizon(tiny: Results) -> None:
    regression = tiny.regression
    assert regression.sequential.rate.rate > 0.5
    for found in (regression.sequential, regression.naive, regression.flagger):
        if found.median_interval is not None and found.p90_interval is not None:
            assert 1 <= found.median_interval <= found.p90_interval <= TINY.regression_intervals
    assert regression.fixed_horizon_one_sided < regression.fixed_horizon_two_sided


def test_the_same_seed_gives_the_same_figures(tiny: Results) -> None:
    again = run(TINY)
    assert again.aa == tiny.aa
    assert again.regression == tiny.regression


def test_first_true_and_shares_count_runs_that_never_rolled_back() -> None:
    rollbacks = np.array([[False, True, True], [False, False, False], [True, False, False]])
    looks = first_true(rollbacks)
    assert looks.tolist() == [2, NEVER, 1]
    assert interval_by_which_share_rolled_back(looks, 0.5) == 2
    # Two of three runs rolled back: 90% of them never did within the horizon.
    assert interval_by_which_share_rolled_back(looks, 0.9) is None


def test_a_naive_test_that_departs_from_the_library_stops_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    exact = decision_quality.naive_pvalues
    monkeypatch.setattr(decision_quality, "naive_pvalues", lambda rollouts: exact(rollouts) + 1e-6)
    with pytest.raises(RuntimeError, match="departs from two_proportion_test"):
        run(TINY)


def test_main_prints_the_parameters_and_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--runs", "20", "--seed", "3"])
    report = capsys.readouterr().out
    assert report.startswith("Decision quality of rollback rules")
    assert "runtime:" in report.splitlines()[1]
    for heading in ("Parameters", "Checks", "1. A/A", "2. Regression", "3. A/A false rollback rate by traffic"):
        assert heading in report

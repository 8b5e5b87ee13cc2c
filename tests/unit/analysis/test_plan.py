"""`modelrollout plan`: the fixed horizon is the textbook figure, and the sequential figures hold up in simulation."""

from __future__ import annotations

import numpy as np
import pytest

from controller.__main__ import main
from controller.analysis import step_tests


def test_plan_prints_the_fixed_horizon_and_the_sequential_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--baseline", "0.10", "--mde", "1%", "--relative", "--rate", "100"]) == 0
    out = capsys.readouterr().out
    # The Kohavi et al. example: 10% -> 10.1% needs ~1.42 million per arm at a fixed horizon.
    assert "1,419,062" in out
    assert "sequential, median (50% power)" in out and "sequential, 80th percentile (80% power)" in out
    assert "7.9 h" in out, "1,419,062 trials in one arm at 50 trials/s each"


def test_a_bad_fraction_is_refused_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--baseline", "2", "--mde", "0.01"])
    assert "not a fraction between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize(("base", "mde"), [(0.02, 0.01), (0.10, 0.03), (0.5, 0.05)])
def test_the_planned_median_bounds_the_simulated_one(base: float, mde: float) -> None:
    """Below a 5% base the binomial split; from it on the conditional law and its large-sample plan."""
    design = step_tests.design_at(0.05, mde, "absolute", True, base)
    assert design.conditional == (base >= step_tests.CONDITIONAL_RATE)
    planned = step_tests.plan(design, 0.5)
    rng = np.random.default_rng(11)
    runs, per_arm = 300, 100
    state, decided = step_tests.ABState.start(runs), np.zeros(runs, dtype=np.int64)
    for look in range(1, 4 * planned.sequential_p80 // per_arm):
        interval = step_tests.Interval(rng.binomial(per_arm, base, runs).astype(float), np.full(runs, per_arm, float),
                                       rng.binomial(per_arm, base + mde, runs).astype(float),
                                       np.full(runs, per_arm, float))
        result = step_tests.ab_look(design, state, interval)
        state = result.state
        decided = np.where((decided == 0) & (result.verdict == step_tests.BETTER), look * per_arm, decided)
    median = float(np.median(np.where(decided > 0, decided, np.iinfo(np.int64).max)))
    assert 0.5 * planned.sequential_median <= median <= planned.sequential_median * 1.05
    assert planned.fixed_horizon is not None and planned.fixed_horizon < planned.sequential_median

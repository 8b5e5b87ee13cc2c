"""The decision-quality benchmark at a tiny size: it drives the operator's own tests and reports every section."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import decision_quality
from benchmarks.decision_quality import NEVER, SECTIONS, Settings, quantile_look, report
from controller.analysis import compare_tests, step_tests

TINY = Settings(aa_runs=40, power_runs=20, srm_runs=40, looks=30, srm_looks=30, late_onset_looks=60,
                splits=(0.05, 0.5), base_rates=(0.01,), traffic=(10,))


def test_every_section_runs_through_the_operators_step_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {"guardrail": 0, "ab": 0, "srm": 0, "compare": 0}
    real = (step_tests.guardrail_look, step_tests.ab_look, step_tests.sample_ratio_look,
            compare_tests.ComparisonTest.look)

    def counting(name: str, function: object) -> object:
        def wrapped(*args: object) -> object:
            calls[name] += 1
            return function(*args)  # type: ignore[operator]
        return wrapped

    monkeypatch.setattr(step_tests, "guardrail_look", counting("guardrail", real[0]))
    monkeypatch.setattr(step_tests, "ab_look", counting("ab", real[1]))
    monkeypatch.setattr(step_tests, "sample_ratio_look", counting("srm", real[2]))
    monkeypatch.setattr(compare_tests.ComparisonTest, "look", counting("compare", real[3]))
    text, verdicts = report(TINY, SECTIONS)
    assert min(calls.values()) > 0, calls
    for heading in ("1. errorRate", "2. latencyP99", "3. Both guardrails", "4. abTest", "5. Sample-ratio",
                    "6. errorRate guardrail, 0.5% -> 1%", "7. latencyP99", "8. abTest at a true effect",
                    "9. shadow comparisons", "10. shadow comparisons", "11. labels", "11b. labelled regressions",
                    "12. labels", "13. a judge"):
        assert heading in text
    assert len(verdicts) == 15, "one per section, and for the abTest at its MDE one per base rate and the 50% goal"
    assert all(line.startswith("   [") for line in text.split("Goals:\n")[1].split("\n\n")[0].splitlines())


def test_the_same_seed_gives_the_same_figures() -> None:
    first, _ = report(TINY, ("guardrail",))
    second, _ = report(TINY, ("guardrail",))
    assert first.splitlines()[2:] == second.splitlines()[2:]


def test_quantiles_count_runs_that_never_decided_as_later_than_any_look() -> None:
    looks = np.array([2, NEVER, 1])
    assert quantile_look(looks, 0.5) == 2
    assert quantile_look(looks, 0.9) is None


def test_main_prints_the_goals(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decision_quality, "settings_for", lambda stress, seed: TINY)
    decision_quality.main(["--only", "srm"])
    out = capsys.readouterr().out
    assert out.startswith("Decision quality of the operator's sequential tests")
    assert "every sample-ratio A/A cell <= 0.1%" in out

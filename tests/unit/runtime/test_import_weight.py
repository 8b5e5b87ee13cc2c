"""The idle operator stays light: the statistics stack loads with the first analysis, not at start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller import __main__ as cli


def test_importing_the_operator_loads_no_scipy_statsmodels_or_pandas() -> None:
    probe = ("import sys, controller.operator; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'statsmodels', 'pandas'}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_the_analysis_itself_needs_neither_statsmodels_nor_pandas() -> None:
    """statsmodels (and pandas under it) are test and benchmark dependencies only: the image leaves them out."""
    probe = ("import sys; from controller.analysis import judge, step_tests; "
             "step_tests.plan(step_tests.ab_design(0.05, 0.01, 'absolute', True, 100, 1000), 0.5); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'statsmodels', 'pandas'}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_the_demo_without_the_test_kit_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda **_: [])
    assert cli.main(["demo"]) == 1
    assert "the demo needs the test kit" in capsys.readouterr().err

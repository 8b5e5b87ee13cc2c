"""Holm's correction against statsmodels' multipletests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from controller.stats import holm


@pytest.mark.parametrize(
    "pvalues",
    [
        [0.01, 0.04, 0.03, 0.2],
        [0.001, 0.001, 0.5, 0.012, 0.049, 0.9],
        [0.3],
        [0.0, 1.0, 0.02],
    ],
)
def test_matches_statsmodels(pvalues: list[float]) -> None:
    result = holm(pvalues, alpha=0.05)
    rejected, adjusted, _, _ = multipletests(pvalues, alpha=0.05, method="holm")
    assert result.adjusted == pytest.approx(adjusted.tolist(), rel=1e-12)
    assert result.rejected == tuple(bool(r) for r in rejected)
    assert result.pvalues == tuple(pvalues)


def test_a_hand_computed_case() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.2 → 4·0.01, 3·0.03, max(2·0.04, 0.09), 0.2.
    result = holm([0.01, 0.04, 0.03, 0.2])
    assert result.adjusted == pytest.approx((0.04, 0.09, 0.09, 0.2))
    assert result.rejected == (True, False, False, False)


def test_no_pvalues_is_no_rejection() -> None:
    assert holm([]).adjusted == ()


@pytest.mark.parametrize("pvalues", [[0.1, 1.5], [-0.1], [[0.1, 0.2]]])
def test_pvalues_outside_the_unit_interval_are_refused(pvalues: list[float]) -> None:
    with pytest.raises(ValueError):
        holm(pvalues)


@settings(derandomize=True, max_examples=100)
@given(pvalues=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=15), alpha=st.floats(0.001, 0.2))
def test_adjusted_pvalues_dominate_the_raw_ones_and_keep_their_order(pvalues: list[float], alpha: float) -> None:
    result = holm(pvalues, alpha=alpha)
    raw, adjusted = np.array(pvalues), np.array(result.adjusted)
    assert np.all(adjusted >= raw)
    assert np.all(adjusted <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert result.rejected == tuple(bool(p <= alpha) for p in result.adjusted)
    # Holm's procedure as he stated it: step down the sorted p-values against alpha / (m - i),
    # rejecting until the first that fails. Exact ties with the threshold may round either way.
    thresholds = alpha / (raw.size - np.arange(raw.size))
    if not np.any(np.isclose(raw[order], thresholds, rtol=1e-9, atol=0.0)):
        passing = raw[order] <= thresholds
        stop = int(np.argmin(passing)) if not passing.all() else raw.size
        expected = np.zeros(raw.size, dtype=bool)
        expected[order[:stop]] = True
        assert result.rejected == tuple(expected.tolist())

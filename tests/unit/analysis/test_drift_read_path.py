"""The predictionPSI guardrail on the read path real clusters have: `benchmarks.read_path`'s per-pod
scrapes at their own phases, windows cut at a young shadow step, and the operator's own `judge`.

The full cells, at more runs and every scrape interval: `python -m benchmarks.read_path --match predictionPSI`.
"""

from __future__ import annotations

import numpy as np

from benchmarks.read_path import Cell, run


def test_no_drift_at_one_prediction_a_second_never_breaches() -> None:
    # Before the significance gate every one of these runs breached within its first looks.
    cell = Cell("A/A", "drift", 15.0, 0, 1.0, 0.0, 0.0, pods=(2, 1))
    rng = np.random.default_rng(20261207)
    breached = [looked for looked, _ in (run(cell, 30, rng) for _ in range(60)) if looked is not None]
    assert breached == []


def test_a_shifted_model_is_caught_within_a_few_looks() -> None:
    cell = Cell("power", "drift", 15.0, 0, 1.0, 0.0, 0.0, shifted=0.2)
    rng = np.random.default_rng(7)
    caught = [looked for looked, _ in (run(cell, 30, rng) for _ in range(20))]
    assert all(looked is not None and looked <= 10 for looked in caught), caught

"""The seeds' three worked examples, to the cent."""

from __future__ import annotations

from typing import Any

import pytest

from controller.__main__ import main
from controller.capacity import pod_gpus
from controller.cost import cost_per_request, version_cost


@pytest.mark.parametrize(("price", "gpus", "rps", "per_request", "per_million", "monthly"), [
    (1.01, 2, 500, "$0.000001", "$1.12", "$1,475"),      # small model on 2 A10G
    (3.67, 4, 10, "$0.000408", "$407.78", "$10,716"),    # 70B LLM on 4 A100
    (1.10, 4, 10, "$0.000122", "$122.22", "$3,212"),     # the same on spot
])
def test_the_seeds_examples(price: float, gpus: int, rps: float, per_request: str, per_million: str,
                            monthly: str) -> None:
    lines = cost_per_request(price, gpus, rps).lines()
    assert (lines["cost_per_request"], lines["cost_per_1M_requests"], lines["monthly_gpu_cost"]) == (
        per_request, per_million, monthly)


def test_utilization_raises_the_effective_cost() -> None:
    cost = cost_per_request(3.67, 4, 10, utilization=0.5)
    assert cost.effective_per_request == pytest.approx(2 * cost.per_request)
    assert cost.requests_per_dollar == pytest.approx(1 / cost.per_request)


@pytest.mark.parametrize(("args", "words"), [
    ((1.0, 1, 0), "requests per second must be positive"),
    ((-1.0, 1, 5), "cannot be negative"),
    ((1.0, 1, 5, 1.5), "utilization"),
])
def test_bad_inputs_say_which(args: tuple[float, ...], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        cost_per_request(*args)  # type: ignore[arg-type]


def test_the_cost_command_prints_the_calculator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--gpu-hourly-cost", "1.01", "--gpus", "2", "--rps", "500"]) == 0
    out = capsys.readouterr().out
    assert "$1.12" in out and "$1,475" in out
    assert main(["cost", "--gpu-hourly-cost", "1.01", "--gpus", "2", "--rps", "0"]) == 2
    assert "requests per second must be positive" in capsys.readouterr().err


def test_a_versions_status_cost_is_the_calculator_at_the_rate_between_two_readings() -> None:
    first = version_cost("rev1", 2, 10_000, None, 0, 1.01, 0.7)
    assert first.requests_per_second is None and first.per_million is None and first.monthly == 1474.6
    serving = version_cost("rev1", 2, 40_000, first, 60, 1.01, 0.7)
    assert (serving.requests_per_second, serving.per_million) == (500, 1.12)
    assert serving.effective_per_million == pytest.approx(1.12 / 0.7, abs=0.01)
    restarted = version_cost("rev1", 2, 300, serving, 60, 1.01, 0.7)
    assert restarted.requests_per_second is None, "a counter reset gives no rate"
    other = version_cost("rev2", 2, 50_000, serving, 60, 1.01, 0.7)
    assert other.requests_per_second is None, "another revision's reading is no baseline"
    idle = version_cost("rev1", 4, 40_000, serving, 60, 3.67, 0.7)
    assert idle.requests_per_second == 0 and idle.per_million is None and idle.monthly == 10716.4


@pytest.mark.parametrize(("template", "gpus"), [
    ({"spec": {"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
                              {"name": "sidecar"}]}}, 2),
    ({"spec": {"containers": [{"name": "m", "resources": {"requests": {"nvidia.com/gpu": 1}}}]}}, 1),
    ({"spec": {"containers": [{"name": "m", "resources": {"limits": {"cpu": "2"}}}]}}, 0),
])
def test_gpus_per_pod_come_from_the_template(template: dict[str, Any], gpus: int) -> None:
    assert pod_gpus(template) == gpus

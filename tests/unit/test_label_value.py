"""The model's name as a pod label value: served model names may hold what labels may not."""

from __future__ import annotations

import pytest

from controller.workloads import label_value


@pytest.mark.parametrize(("model", "label"), [
    ("fraud-scorer", "fraud-scorer"),
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama-Llama-3.1-8B-Instruct"),
    ("/weird name/", "weird-name"),
    ("x" * 70, "x" * 63),
    ("///", "model"),
])
def test_label_value(model: str, label: str) -> None:
    assert label_value(model) == label

"""The MetricProvider Protocol: PromQL in, numbers out. A provider takes its client in its constructor."""

from __future__ import annotations

from typing import Protocol


class MetricError(RuntimeError):
    """The provider could not answer (unreachable, bad query): an Error outcome, never a pass."""


class MetricProvider(Protocol):
    def scalar(self, query: str) -> float | None:
        """The single value of an instant query; None when it returns no data."""

    def by_label(self, query: str, label: str) -> dict[str, float]:
        """An instant vector keyed by one label's value (e.g. `le` for histogram buckets)."""

"""Status timestamps: RFC 3339 in UTC to the second, as Kubernetes writes them."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)

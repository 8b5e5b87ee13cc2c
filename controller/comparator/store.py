"""Where the comparator keeps compared requests' predictions until their labels come, and a judge's
verdicts until a human's preference comes: SQLite
(Python's own sqlite3), in a file on the comparator's volume.

Every write commits before it is acknowledged (WAL, synchronous=FULL), so a comparator that
crashes loses no label it answered 200 for, and no prediction it filed. Predictions older than the
retention, and the oldest beyond `max_entries`, are deleted. A request is scored once: when its
label comes (no window), or when its window closes, labelled or not.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.comparator.labels import Received

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL,
    stable TEXT NOT NULL,
    candidate TEXT NOT NULL,
    label TEXT,
    scored INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS predictions_at ON predictions (at);
CREATE INDEX IF NOT EXISTS predictions_waiting ON predictions (scored, at);
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL,
    judge TEXT NOT NULL,
    human TEXT
);
CREATE INDEX IF NOT EXISTS verdicts_at ON verdicts (at);
"""


@dataclass(frozen=True)
class Due:
    """A request ready to be scored: both predictions, and its label (None: its window closed without one)."""

    key: str
    stable: Any
    candidate: Any
    label: Any


class PredictionStore:
    def __init__(self, path: Path | str, retention_seconds: float, max_entries: int) -> None:
        self.retention_seconds, self.max_entries = retention_seconds, max_entries
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def file(self, filed: list[tuple[str, float, Any, Any]]) -> int:
        """File compared requests' predictions (key, at, stable, candidate) in one transaction; how many
        were new (a key filed already keeps its first predictions)."""
        new = 0
        with self.db:
            self.db.execute("BEGIN")
            for key, at, stable, candidate in filed:
                new += self.db.execute("INSERT OR IGNORE INTO predictions (key, at, stable, candidate) "
                                       "VALUES (?, ?, ?, ?)", (key, at, json.dumps(stable),
                                                               json.dumps(candidate))).rowcount
        return new

    def label(self, labels: list[tuple[str, Any]], now: float) -> list[Received]:
        """Store a batch of (key, label), in one transaction; what became of each."""
        received: list[Received] = []
        with self.db:
            self.db.execute("BEGIN")
            for key, label in labels:
                row = self.db.execute("SELECT label, scored, at FROM predictions WHERE key = ?", (key,)).fetchone()
                if row is None:
                    received.append(Received.UNKNOWN)
                elif row[2] < now - self.retention_seconds:
                    received.append(Received.EXPIRED)
                elif row[1]:
                    received.append(Received.LATE if row[0] is None else Received.DUPLICATE)
                elif row[0] is not None:
                    received.append(Received.DUPLICATE)
                else:
                    self.db.execute("UPDATE predictions SET label = ? WHERE key = ?", (json.dumps(label), key))
                    received.append(Received.STORED)
        return received

    def file_verdicts(self, filed: list[tuple[str, float, str]]) -> None:
        """File a judge's verdicts (key, at, preferred model) in one transaction; a key's first stands."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO verdicts (key, at, judge) VALUES (?, ?, ?)", filed)

    def prefer(self, preferences: list[tuple[str, str]], now: float) -> list[tuple[Received, str | None]]:
        """Store a batch of human preferences (key, preferred model), in one transaction; what became of
        each, and the judge's verdict on its request when stored (a calibration pair)."""
        received: list[tuple[Received, str | None]] = []
        with self.db:
            self.db.execute("BEGIN")
            for key, human in preferences:
                row = self.db.execute("SELECT judge, human, at FROM verdicts WHERE key = ?", (key,)).fetchone()
                if row is None:
                    received.append((Received.UNKNOWN, None))
                elif row[2] < now - self.retention_seconds:
                    received.append((Received.EXPIRED, None))
                elif row[1] is not None:
                    received.append((Received.DUPLICATE, None))
                else:
                    self.db.execute("UPDATE verdicts SET human = ? WHERE key = ?", (human, key))
                    received.append((Received.STORED, str(row[0])))
        return received

    def due(self, now: float, window_seconds: float | None, limit: int = 10_000) -> list[Due]:
        """Requests to score now: labelled ones (no window), or those whose window has closed."""
        if window_seconds is None:
            rows = self.db.execute("SELECT key, stable, candidate, label FROM predictions WHERE scored = 0 AND "
                                   "label IS NOT NULL LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.db.execute("SELECT key, stable, candidate, label FROM predictions WHERE scored = 0 AND "
                                   "at <= ? ORDER BY at LIMIT ?", (now - window_seconds, limit)).fetchall()
        return [Due(key, json.loads(stable), json.loads(candidate), None if label is None else json.loads(label))
                for key, stable, candidate, label in rows]

    def scored(self, keys: list[str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE predictions SET scored = 1 WHERE key = ?", [(key,) for key in keys])

    def prune(self, now: float) -> int:
        """Delete predictions past their retention, then the oldest beyond max_entries; how many went."""
        with self.db:
            self.db.execute("BEGIN")
            gone = 0
            for table in ("predictions", "verdicts"):
                gone += self.db.execute(f"DELETE FROM {table} WHERE at < ?",  # noqa: S608 (our own names)
                                        (now - self.retention_seconds,)).rowcount
                over = self.count(table) - self.max_entries
                if over > 0:
                    gone += self.db.execute(f"DELETE FROM {table} WHERE key IN (SELECT key FROM {table} "  # noqa: S608
                                            "ORDER BY at LIMIT ?)", (over,)).rowcount
        return int(gone)

    def count(self, table: str = "predictions") -> int:
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 (our own names)

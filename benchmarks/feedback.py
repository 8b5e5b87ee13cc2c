"""Labels (`compare.labels`): how fast the comparator takes them, and what its store weighs.

- Ingestion: `modelrollout compare` pinned to one core, its store holding `--filed` predictions
  (filed beforehand through its own `store.PredictionStore`), takes labels for them at POST /feedback
  in batches of `--batch` from a driver on loopback, as fast as it answers. Figures: labels stored a
  second, the comparator's CPU per label, and the time to score them all.
- Size: the store's file per 1M filed predictions (v2-style scalar predictions, 36-character keys),
  before and after their labels.

    python -m benchmarks.feedback [--filed 200000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from devkit.sandbox.processes import free_port
from e2e.harness import stop_process, wait_until

from controller.comparator.store import PredictionStore

TOKEN = "benchmark-token"  # noqa: S105 (this benchmark's own)


def file_predictions(path: Path, keys: list[str]) -> float:
    """File one prediction pair per key, as the comparator does (batches of 1,000); seconds taken."""
    store = PredictionStore(path, retention_seconds=7 * 86400.0, max_entries=10_000_000)
    started, now = time.monotonic(), time.time()
    for first in range(0, len(keys), 1000):
        store.file([(key, now, 1, 0) for key in keys[first:first + 1000]])
    store.close()
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--filed", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        db = Path(work) / "labels.sqlite"
        keys = [str(uuid.UUID(int=i)) for i in range(args.filed)]
        filing = file_predictions(db, keys)
        size_before = sum(p.stat().st_size for p in Path(work).glob("labels.sqlite*"))
        port, admin = free_port(), free_port()
        log = (Path(work) / "comparator.log").open("wb")
        process = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "controller", "compare", "--stable", "http://127.0.0.1:9",
             "--candidate", "http://127.0.0.1:9", "--format", "v2", "--host", "127.0.0.1", "--port", str(port),
             "--admin-port", str(admin), "--key-header", "x-request-id", "--feedback-db", str(db),
             "--labels-task", "classification", "--feedback-max-per-second", "1000000"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MODELROLLOUT_FEEDBACK_TOKEN": TOKEN})
        try:
            wait_until(lambda: _up(f"http://127.0.0.1:{admin}"), 60, "the comparator serving")
            cpu_before, started = cpu_seconds(process.pid), time.monotonic()
            stored = 0
            with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                for first in range(0, len(keys), args.batch):
                    batch = [{"key": key, "label": 1} for key in keys[first:first + args.batch]]
                    answered = client.post(f"http://127.0.0.1:{admin}/feedback", json={"labels": batch})
                    answered.raise_for_status()
                    stored += int(answered.json().get("stored", 0))
            took, cpu = time.monotonic() - started, cpu_seconds(process.pid) - cpu_before

            def scored() -> bool:
                text = httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=10).text
                return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("modelrollout_compare_labelled_total{")) >= stored

            wait_until(scored, 600, "every label scored")
            scoring = time.monotonic() - started
        finally:
            stop_process(process, 10)
            log.close()
        size_after = sum(p.stat().st_size for p in Path(work).glob("labels.sqlite*"))
    per_million = 1_000_000 / args.filed
    print(f"labels on one core ({args.filed:,} filed predictions, batches of {args.batch}, loopback)")
    print(f"  filing (the store alone, batches of 1,000): {args.filed / filing:,.0f} predictions/s")
    print(f"  ingestion: {stored / took:,.0f} labels/s stored ({stored:,} in {took:.1f} s), "
          f"{1e6 * cpu / max(stored, 1):.0f} us of the comparator's CPU per label; all scored after {scoring:.1f} s")
    print(f"  store: {size_before * per_million / 2**20:,.0f} MiB per 1M filed predictions, "
          f"{size_after * per_million / 2**20:,.0f} MiB with their labels")


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()

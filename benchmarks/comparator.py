"""The shadow comparator's throughput on one core, per format, and its memory with samples kept.

Loopback only: two model stand-ins (a process each, answering a fixed body of the format, the
candidate's differing on every tenth request) and `modelrollout compare` pinned to one core, fed
mirrored requests by a driver process for a fixed span. Figures: compared requests per second,
CPU per compared request (the comparator's own CPU time over what it compared), and its resident
memory with `--samples 100` after it kept them.

    python -m benchmarks.comparator [--seconds 20] [--formats v2,json,openai,bytes]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
from devkit.sandbox.processes import free_port
from e2e.harness import stop_process, wait_until

# A model stand-in: aiohttp answering every request with the format's answer; every tenth differs.
_BACKEND = textwrap.dedent("""
    import itertools, json, sys
    from aiohttp import web
    port, format_, differs = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    count = itertools.count()
    def answer(n):
        label = int(differs and n % 10 == 0)
        if format_ == "openai":
            text = "the cat sat on the mat" if not label else "a dog ran in the park"
            return {"choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
                    "usage": {"completion_tokens": 6}}
        if format_ == "json":
            return {"label": label, "score": 0.9, "id": n}
        return {"model_name": "m", "outputs": [{"name": "predict", "shape": [1], "datatype": "INT64",
                                                "data": [label]}]}
    async def handle(request):
        await request.read()
        return web.Response(body=json.dumps(answer(next(count))).encode(), content_type="application/json")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
""")
# The mirror: as many concurrent mirrored requests as the comparator takes, for `seconds`.
_DRIVER = textwrap.dedent("""
    import asyncio, sys, time, aiohttp
    url, seconds, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    async def main():
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:
            async def worker():
                while time.monotonic() < end:
                    async with session.post(url + path, json={"inputs": [{"name": "x", "data": [1, 2, 3, 4]}]}) as r:
                        await r.read()
            await asyncio.gather(*(worker() for _ in range(16)))
    asyncio.run(main())
""")
PATHS = {"v2": "/v2/models/m/infer", "openai": "/v1/chat/completions", "json": "/predict", "bytes": "/predict"}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _compared(admin: str) -> float:
    text = httpx.get(f"{admin}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("modelrollout_compare_requests_total{"))


def _up(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.HTTPError:
        return False


def run(format_: str, seconds: float) -> str:
    stable_port, candidate_port, port, admin_port = free_port(), free_port(), free_port(), free_port()
    processes = [subprocess.Popen([sys.executable, "-c", _BACKEND, str(p), format_, differs])
                 for p, differs in ((stable_port, "0"), (candidate_port, "1"))]
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        extra = ["--allow-side-effects"] if format_ in ("json", "bytes") else []
        comparator = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "controller", "compare", "--stable",
             f"http://127.0.0.1:{stable_port}", "--candidate", f"http://127.0.0.1:{candidate_port}", "--format",
             format_, "--max-requests-per-second", "100000", "--max-in-flight", "256", "--samples", "100",
             "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port), *extra])
        processes.append(comparator)
        for url in (f"http://127.0.0.1:{stable_port}/", f"http://127.0.0.1:{candidate_port}/", f"{admin}/healthz"):
            wait_until(functools.partial(_up, url), 60, f"{url} up")
        before, cpu_before, started = _compared(admin), _cpu_seconds(comparator.pid), time.monotonic()
        subprocess.run(["taskset", "-c", "1", sys.executable, "-c", _DRIVER, f"http://127.0.0.1:{port}",
                        str(seconds), PATHS[format_]], check=True, timeout=seconds + 60)
        # Whatever was admitted finishes: count until the total stops moving.
        last = -1.0
        while (now := _compared(admin)) != last:
            last = now
            time.sleep(0.5)
        took = time.monotonic() - started
        compared, cpu = last - before, _cpu_seconds(comparator.pid) - cpu_before
        kept = len(httpx.get(f"{admin}/samples", timeout=5).json()["samples"])
        return (f"{format_:>6}: {compared / took:,.0f} compared requests/s on one core ({compared:,.0f} in "
                f"{took:.1f} s), {1000 * cpu / max(compared, 1):.2f} ms CPU each; {_rss_mb(comparator.pid):.0f} MB "
                f"resident with {kept} samples kept")
    finally:
        for process in processes:
            stop_process(process, 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--formats", default="v2,json,openai,bytes")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for format_ in args.formats.split(","):
        print(run(format_, args.seconds), flush=True)
    print(json.dumps({"cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

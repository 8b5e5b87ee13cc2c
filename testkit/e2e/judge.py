"""A judge model simulator for end-to-end tests: an OpenAI-compatible chat endpoint that compares two
answers the way a rubric-following judge would, with a position bias to set.

    python -m e2e.judge --port-file PATH --token T --bias 0.3 --seed 7 --host 10.63.255.1

``POST /v1/chat/completions`` with a bearer token reads the two answers the asker put between
MT-Bench's markers (``[The Start of Assistant A's Answer]`` ... ``[The End of ...]``) and prefers
the one with more distinct words (its rubric: a model that repeats itself is worse), a tie when
they have as many; on a share ``bias`` of the calls it says ``[[A]]`` whatever it was shown (its
position bias). ``GET /stats`` counts the calls, those answered by bias, and those refused for no
token.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_ANSWER = re.compile(r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)


def verdict(content: str) -> str | None:
    """The rubric's verdict on a judge prompt: [[A]], [[B]] or [[C]]; None without two answers."""
    answers = dict(_ANSWER.findall(content))
    if set(answers) != {"A", "B"}:
        return None
    a, b = (len(set(answers[side].split())) for side in ("A", "B"))
    return "[[A]]" if a > b else "[[B]]" if b > a else "[[C]]"


class Judge:
    def __init__(self, token: str, bias: float, seed: int) -> None:
        self.token, self.bias = token, bias
        self.random, self.lock = random.Random(seed), threading.Lock()
        self.stats = {"calls": 0, "biased": 0, "unauthorized": 0, "unreadable": 0}

    def answer(self, authorization: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if authorization != f"Bearer {self.token}":
                self.stats["unauthorized"] += 1
                return 401, {"error": "unauthorized"}
            self.stats["calls"] += 1
            biased = self.random.random() < self.bias
            self.stats["biased"] += biased
        messages = body.get("messages") or [{}]
        found = verdict(str(messages[-1].get("content", "")))
        if found is None:
            with self.lock:
                self.stats["unreadable"] += 1
            return 400, {"error": "no two answers to compare"}
        said = f"A short explanation. {'[[A]]' if biased else found}"
        return 200, {"id": "judge", "object": "chat.completion", "model": body.get("model", "judge"),
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": said},
                                  "finish_reason": "stop"}]}


def serve(judge: Judge, port_file: Path, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": "not JSON"})
                return
            if self.path != "/v1/chat/completions" or not isinstance(body, dict):
                self._send(404, {"error": "not found"})
                return
            self._send(*judge.answer(self.headers.get("Authorization", ""), body))

        def do_GET(self) -> None:
            self._send(200, dict(judge.stats)) if self.path == "/stats" else self._send(404, {})

        def _send(self, status: int, document: dict[str, Any]) -> None:
            raw = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    port_file.write_text(str(server.server_address[1]))
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e.judge", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--bias", type=float, default=0.0, help="share of calls answered [[A]] whatever was shown")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    args = parser.parse_args(argv)
    server = serve(Judge(args.token, args.bias, args.seed), args.port_file, args.host)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

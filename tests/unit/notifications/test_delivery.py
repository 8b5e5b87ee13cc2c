"""Delivery against real local HTTP receivers: order, retries, final answers, a receiver that is down,
and no URL or token anywhere but on the wire."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
import structlog.testing
from devkit.sandbox.processes import free_port

from controller import api
from controller.notifications.delivery import Notifier
from controller.notifications.messages import Notification

SECRET_TOKEN = "s3cr3t-token"


class Receiver(ThreadingHTTPServer):
    def __init__(self, answers: list[int]) -> None:
        self.answers = answers  # status codes to give, in order; then 200
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook?key=url-secret"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        code = self.server.answers.pop(0) if self.server.answers else 200
        if code == 200:
            self.server.received.append((body, dict(self.headers)))
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def receiver(answers: list[int] | None = None) -> Iterator[Receiver]:
    server = Receiver(answers or [])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()



def _notification(event: str, kind: str = "webhook", to: str = "hooks") -> Notification:
    receiver = api.Receiver.model_validate({"name": "ops", "type": kind, "secretRef": {"name": to}})
    return Notification(api.NotificationEvent(event), "ml", "scorer", "u-1", f"{event} happened",
                        datetime.now(UTC), (receiver,), {"phase": "Progressing", "step": "1/2", "weight": 20,
                                                         "mirror": 0, "verdict": None})


def _deliver(secrets: dict[str, dict[str, str]], notifications: list[Notification],
             done: Any) -> list[tuple[Notification, str]]:
    """Submit from another thread, as a reconcile worker does, and run the loop until `done()`."""
    failures: list[tuple[Notification, str]] = []

    def read_secret(namespace: str, name: str) -> dict[str, str]:
        if name not in secrets:
            raise LookupError(name)
        return secrets[name]

    async def main() -> None:
        notifier = Notifier(asyncio.get_running_loop(), read_secret, lambda n, why: failures.append((n, why)),
                            retry_delays=(0.01, 0.02, 0.04))
        def submit_all() -> None:
            for notification in notifications:
                notifier.submit(notification)

        submitter = threading.Thread(target=submit_all)
        submitter.start()
        submitter.join()
        for _ in range(1000):
            if done(failures):
                break
            await asyncio.sleep(0.01)
        await notifier.close()

    asyncio.run(main())
    return failures


def test_messages_arrive_in_order_with_the_token_as_bearer() -> None:
    with receiver() as hook:
        events = ["Started", "StepCompleted", "Paused", "Completed"]
        _deliver({"hooks": {"url": hook.url, "token": SECRET_TOKEN}}, [_notification(e) for e in events],
                 lambda _: len(hook.received) == 4)
    assert [body["event"] for body, _ in hook.received] == events
    assert hook.received[0][1]["Authorization"] == f"Bearer {SECRET_TOKEN}"
    assert hook.received[0][0]["weight"] == 20


def test_a_failing_answer_is_retried_until_it_succeeds() -> None:
    with receiver([503, 500]) as hook:
        failures = _deliver({"hooks": {"url": hook.url}}, [_notification("RolledBack")],
                            lambda _: len(hook.received) == 1)
    assert failures == [] and hook.received[0][0]["event"] == "RolledBack"


def test_a_4xx_answer_is_final_and_reported() -> None:
    with receiver([404, 404, 404, 404]) as hook:
        failures = _deliver({"hooks": {"url": hook.url}}, [_notification("RolledBack")], lambda f: f)
        assert hook.answers == [404, 404, 404], "one attempt only"
    assert "HTTP 404" in failures[0][1]


def test_a_receiver_that_is_down_is_reported_without_its_url_or_token() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?key=url-secret"
    with receiver() as other, structlog.testing.capture_logs() as logs:
        failures = _deliver({"down": {"url": url, "token": SECRET_TOKEN}, "hooks": {"url": other.url}},
                            [_notification("RolledBack", "slack", "down"), _notification("RolledBack")],
                            lambda f: f and other.received)
    assert len(failures) == 1
    why = failures[0][1]
    assert "RolledBack not delivered to receiver 'ops' (slack): ConnectError" in why
    output = repr(logs)
    assert "notification not delivered" in output
    for secret in ("url-secret", SECRET_TOKEN, url):
        assert secret not in why and secret not in output
    assert other.received, "a dead receiver delays no other"


def test_a_missing_secret_is_reported() -> None:
    failures = _deliver({}, [_notification("Completed")], lambda f: f)
    assert "Secret ml/hooks is missing or not readable" in failures[0][1]


def test_slack_receivers_get_slack_messages() -> None:
    with receiver() as hook:
        _deliver({"hooks": {"url": hook.url, "token": SECRET_TOKEN}}, [_notification("Completed", "slack")],
                 lambda _: hook.received)
    body, headers = hook.received[0]
    assert body["text"].startswith("Completed: ml/scorer") and body["attachments"][0]["blocks"]
    assert "Authorization" not in headers, "a Slack URL is its own secret"

"""Delivery of notifications: async, in order per receiver, with retries, never in a reconcile's way.

A reconcile hands its notifications over with `submit` (any thread, never blocks). Each receiver
(its Secret and type) has its own FIFO and sender task on the event loop, so a slow or dead
receiver delays only its own messages. A message is tried `len(RETRY_DELAYS) + 1` times with
growing pauses; an answer of 4xx other than 408/429 is final. The last failure becomes a Warning
Event on the rollout. The URL and token come from the Secret at send time and appear nowhere else:
not in logs, Events or errors (httpx's errors carry the URL, so only their type is told).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from controller import metrics
from controller.notifications.messages import Notification, slack_body, webhook_body

log = structlog.get_logger()

TIMEOUT_SECONDS = 5.0
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
MAX_QUEUED = 1000  # per receiver; beyond it the oldest messages are dropped (and counted)
_FINAL_STATUSES = range(400, 500)
_RETRIED_STATUSES = (408, 429)

ReceiverKey = tuple[str, str, str]  # (namespace, Secret name, type)


@dataclass(frozen=True)
class _Parcel:
    notification: Notification
    receiver_name: str
    submitted: float  # monotonic


class DeliveryFailed(RuntimeError):
    """One attempt failed; the text names no URL."""

    def __init__(self, detail: str, final: bool = False) -> None:
        super().__init__(detail)
        self.final = final


class Notifier:
    def __init__(self, loop: asyncio.AbstractEventLoop, read_secret: Callable[[str, str], dict[str, str]],
                 report_failure: Callable[[Notification, str], None],
                 retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.loop = loop
        # (namespace, name) -> the Secret's decoded data; LookupError when missing or unreadable.
        # Blocking (the Kubernetes client): run in a thread.
        self.read_secret = read_secret
        self.report_failure = report_failure  # blocking too
        self.retry_delays = retry_delays
        self._queues: dict[ReceiverKey, asyncio.Queue[_Parcel]] = {}
        self._senders: dict[ReceiverKey, asyncio.Task[None]] = {}
        self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False)

    # --- from any thread ------------------------------------------------------

    def submit(self, notification: Notification) -> None:
        self.loop.call_soon_threadsafe(self._enqueue, notification, time.monotonic())

    # --- on the event loop ----------------------------------------------------

    def _enqueue(self, notification: Notification, submitted: float) -> None:
        for receiver in notification.receivers:
            key = (notification.namespace, receiver.secret_ref.name, receiver.type)
            queue = self._queues.setdefault(key, asyncio.Queue())
            if queue.qsize() >= MAX_QUEUED:
                queue.get_nowait()
                metrics.NOTIFICATIONS.labels(receiver.type, "dropped").inc()
                log.warning("notification dropped: receiver backlog full", receiver=receiver.name,
                            namespace=notification.namespace)
            queue.put_nowait(_Parcel(notification, receiver.name, submitted))
            if key not in self._senders or self._senders[key].done():
                self._senders[key] = self.loop.create_task(self._send_all(key), name=f"notify {receiver.name}")

    async def _send_all(self, key: ReceiverKey) -> None:
        """Drain one receiver's queue in order; the task ends when it is empty."""
        queue = self._queues[key]
        while not queue.empty():
            parcel = queue.get_nowait()
            await self._deliver(key, parcel)

    async def _deliver(self, key: ReceiverKey, parcel: _Parcel) -> None:
        namespace, secret_name, kind = key
        notification = parcel.notification
        detail = ""
        for attempt, pause in enumerate((*self.retry_delays, None)):
            try:
                await self._post(namespace, secret_name, kind, notification)
            except DeliveryFailed as error:
                detail = str(error)
                log.info("notification not delivered", receiver=parcel.receiver_name, attempt=attempt + 1,
                         detail=detail, namespace=namespace, name=notification.name)
                if error.final or pause is None:
                    break
                await asyncio.sleep(pause)
                continue
            metrics.NOTIFICATIONS.labels(kind, "sent").inc()
            metrics.NOTIFICATION_SECONDS.observe(time.monotonic() - parcel.submitted)
            return
        metrics.NOTIFICATIONS.labels(kind, "failed").inc()
        why = f"{notification.event.value} not delivered to receiver {parcel.receiver_name!r} ({kind}): {detail}"
        log.warning("notification failed", receiver=parcel.receiver_name, detail=detail, namespace=namespace,
                    name=notification.name)
        try:
            await asyncio.to_thread(self.report_failure, notification, why)
        except Exception as error:  # an Event that cannot be posted must not stop the sender
            log.warning("notification failure not recorded", error=type(error).__name__)

    async def _post(self, namespace: str, secret_name: str, kind: str, notification: Notification) -> None:
        try:
            data = await asyncio.to_thread(self.read_secret, namespace, secret_name)
        except LookupError:
            raise DeliveryFailed(f"Secret {namespace}/{secret_name} is missing or not readable") from None
        except Exception as error:  # the API being down is one more failed attempt
            raise DeliveryFailed(f"Secret {namespace}/{secret_name} not read: {type(error).__name__}") from None
        url = data.get("url", "").strip()
        if not url.startswith(("http://", "https://")):
            raise DeliveryFailed(f"Secret {namespace}/{secret_name} has no http(s) `url` key", final=True)
        headers = {"User-Agent": "modelrollout"}
        token = data.get("token", "").strip()
        if token and kind == "webhook":
            headers["Authorization"] = f"Bearer {token}"
        body: dict[str, Any] = slack_body(notification) if kind == "slack" else webhook_body(notification)
        try:
            response = await self._client.post(url, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryFailed(type(error).__name__) from None
        if response.is_success:
            return
        final = response.status_code in _FINAL_STATUSES and response.status_code not in _RETRIED_STATUSES
        raise DeliveryFailed(f"HTTP {response.status_code}", final=final)

    async def close(self) -> None:
        for task in self._senders.values():
            task.cancel()
        await asyncio.gather(*self._senders.values(), return_exceptions=True)
        await self._client.aclose()

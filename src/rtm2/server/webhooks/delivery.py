"""Delivery: each webhook queue POSTed in order, signed, retried with backoff.

Per webhook and partition one task delivers the queue, while this node holds its claim
(``EventOutbox.claim``; on the embedded engine always). The head event is POSTed until the
receiver answers 2xx within the webhook's timeout, with exponential backoff and jitter between
tries, for at most ``retry_horizon`` seconds after it was queued; then it is dropped, counted
and logged. A receiver that fails slows only its own queues: each webhook has its own HTTP
client and tasks, and the server's own work never waits for any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..._version import __version__
from ...webhooks import sign
from ..engines.base import EngineUnavailable
from .sink import PARTITIONS, Hook, Webhooks

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["Delivery"]

log = logging.getLogger("rtm2.server")


class _Stats:
    __slots__ = ("delivered", "depth", "expired", "failures", "oldest_ms", "retries")

    def __init__(self) -> None:
        self.delivered = 0
        self.retries = 0
        self.expired = 0  # dropped after the retry horizon
        self.failures: Counter[str] = Counter()  # by HTTP status, or "timeout", "error"
        self.depth = [0] * PARTITIONS
        self.oldest_ms = [0] * PARTITIONS


class Delivery:
    """Runs the delivery tasks of every webhook of the node's apps."""

    def __init__(self, webhooks: Webhooks, shared: bool, lease: float) -> None:
        self.webhooks = webhooks
        self.outbox = webhooks.outbox
        self.node = webhooks.node
        # An idle queue is looked at this often when other nodes may fill it too.
        self._poll = 0.5 if shared else 30.0
        self._lease = lease
        self._wakes: dict[tuple[str, int], asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.stats: dict[str, _Stats] = {h.id: _Stats() for h in webhooks.all_hooks}
        webhooks.on_queued = self._queued

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for hook in self.webhooks.all_hooks:
            self._clients[hook.id] = httpx.AsyncClient(
                timeout=hook.config.timeout,
                limits=httpx.Limits(max_connections=PARTITIONS),
                headers={"User-Agent": f"rtm2/{__version__} webhooks"},
                follow_redirects=False,
            )
            for part in range(PARTITIONS):
                self._wakes[(hook.id, part)] = asyncio.Event()
                self._tasks.append(
                    loop.create_task(self._run(hook, part), name=f"rtm2-webhook-{hook.id}-{part}")
                )
        if self.webhooks.all_hooks:
            self._tasks.append(loop.create_task(self._measure(), name="rtm2-webhook-depth"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for client in self._clients.values():
            await client.aclose()
        # Another node may go on with these queues at once, not once the leases run out.
        for hook in self.webhooks.all_hooks:
            for part in range(PARTITIONS):
                with contextlib.suppress(EngineUnavailable):
                    await self.outbox.release(hook.id, part, self.node)

    def _queued(self, hook: str, part: int) -> None:
        wake = self._wakes.get((hook, part))
        if wake is not None:
            wake.set()

    async def _wait(self, hook: Hook, part: int, seconds: float) -> None:
        wake = self._wakes[(hook.id, part)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    async def _run(self, hook: Hook, part: int) -> None:
        failures = 0
        while True:
            try:
                if not await self.outbox.claim(hook.id, part, self.node, self._lease):
                    failures = 0
                    await asyncio.sleep(min(self._poll * 2, self._lease / 2))
                    continue
                entry = await self.outbox.peek(hook.id, part, self.node)
                if entry is None:
                    await self._wait(hook, part, self._poll)
                    continue
                age = time.time() - entry.queued_ms / 1000
                if age > hook.config.retry_horizon:
                    await self.outbox.ack(hook.id, part, entry.id)
                    self.stats[hook.id].expired += 1
                    log.warning(
                        "webhooks: %s gave up an event after %.0f s of retries", hook.label, age
                    )
                    failures = 0
                    continue
                if await self._post(hook, entry.body):
                    await self.outbox.ack(hook.id, part, entry.id)
                    failures = 0
                    continue
                failures += 1
                self.stats[hook.id].retries += 1
                await self._back_off(hook, part, failures)
            except asyncio.CancelledError:
                raise
            except EngineUnavailable as exc:
                log.warning("webhooks: %s: %s", hook.label, exc)
                await asyncio.sleep(1.0)
            except Exception:  # the task must outlive any one bad event
                log.exception("webhooks: %s delivery failed", hook.label)
                await asyncio.sleep(1.0)

    async def _back_off(self, hook: Hook, part: int, failures: int) -> None:
        config = hook.config
        delay = min(config.retry_max, config.retry_min * 2 ** min(failures - 1, 30))
        delay *= random.uniform(0.5, 1.0)  # full jitter would retry too eagerly at first
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self._lease / 3))
            if left > self._lease / 3:  # keep the queue while waiting for its receiver
                await self.outbox.claim(hook.id, part, self.node, self._lease)

    async def _post(self, hook: Hook, body: bytes) -> bool:
        stats = self.stats[hook.id]
        headers = {"Content-Type": "application/json", **sign(body, hook.config.secret)}
        try:
            response = await self._clients[hook.id].post(
                hook.config.url, content=body, headers=headers
            )
        except httpx.TimeoutException:
            stats.failures["timeout"] += 1
            return False
        except httpx.HTTPError as exc:
            stats.failures["error"] += 1
            log.debug("webhooks: %s: %s", hook.label, exc)
            return False
        if 200 <= response.status_code < 300:
            stats.delivered += 1
            return True
        stats.failures[str(response.status_code)] += 1
        return False

    async def _measure(self) -> None:
        """Keep each queue's depth and age for the metrics (scrapes must not wait on Redis)."""
        while True:
            for hook in self.webhooks.all_hooks:
                stats = self.stats[hook.id]
                for part in range(PARTITIONS):
                    with contextlib.suppress(EngineUnavailable):
                        stats.depth[part], stats.oldest_ms[part] = await self.outbox.depth(
                            hook.id, part
                        )
            await asyncio.sleep(1.0)

    # --- metrics (a prometheus_client collector) -------------------------------------------

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        hooks = self.webhooks.all_hooks
        delivered = CounterMetricFamily(
            "rtm2_webhook_deliveries", "Webhook events delivered (2xx)", labels=["webhook"]
        )
        failed = CounterMetricFamily(
            "rtm2_webhook_failures",
            "Webhook requests that failed, by HTTP status (or timeout, error)",
            labels=["webhook", "status"],
        )
        retries = CounterMetricFamily(
            "rtm2_webhook_retries", "Webhook events tried again after a failure", labels=["webhook"]
        )
        dropped = CounterMetricFamily(
            "rtm2_webhook_dropped",
            "Webhook events dropped: over the queue bound, or after the retry horizon",
            labels=["webhook", "reason"],
        )
        depth = GaugeMetricFamily(
            "rtm2_webhook_queue_depth", "Webhook events waiting for delivery", labels=["webhook"]
        )
        age = GaugeMetricFamily(
            "rtm2_webhook_queue_age_seconds",
            "Age of the oldest webhook event waiting for delivery",
            labels=["webhook"],
        )
        now_ms = time.time() * 1000
        for hook in hooks:
            s = self.stats[hook.id]
            delivered.add_metric([hook.label], s.delivered)
            retries.add_metric([hook.label], s.retries)
            for status, n in sorted(s.failures.items()):
                failed.add_metric([hook.label, status], n)
            dropped.add_metric([hook.label, "bound"], self.webhooks.dropped.get(hook.id, 0))
            dropped.add_metric([hook.label, "horizon"], s.expired)
            depth.add_metric([hook.label], sum(s.depth))
            oldest = [ms for ms in s.oldest_ms if ms]
            age.add_metric([hook.label], (now_ms - min(oldest)) / 1000 if oldest else 0.0)
        lost = CounterMetricFamily(
            "rtm2_webhook_events_unqueued",
            "Webhook events the engine could not queue (it was unreachable)",
        )
        lost.add_metric([], self.webhooks.lost)
        yield from (delivered, failed, retries, dropped, depth, age, lost)

"""What ``/metrics`` shows: this replica's counters, gauges and histograms, in Prometheus text.

Each app owns its registry (never prometheus-client's global one): tests run several apps in one
process, and each replica of a deployment exposes its own numbers, which Prometheus scrapes one
by one and adds up. The intake's and publisher's plain counters are read when scraped (a
collector over their state); the histograms and outcome counters are observed where things
happen, through the ``Metrics`` object the app hands to its workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.allocator import MemoryReader

if TYPE_CHECKING:
    from gateway.deps import AppState

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# How a completed broadcast ended, as ``maeul_broadcasts_completed_total`` names it.
COMPLETIONS: Final = ("all_played", "partly_played", "none_played", "cancelled")
# How a delivery of a completed broadcast ended (the terminal delivery states).
DELIVERY_OUTCOMES: Final = ("played", "played_late", "failed", "expired", "cancelled")
# An unmatched path is one label value, so a scan of made-up addresses adds no series.
UNMATCHED_ROUTE: Final = "unmatched"

_REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LAG_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_ALL_PLAYED_BUCKETS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400)


class Metrics:
    """The histograms and outcome counters of one app, and the registry ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "maeul_http_request_duration_seconds",
            "HTTP request latency until the response started, by route template and method.",
            ["method", "route"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.all_played_seconds = Histogram(
            "maeul_broadcast_all_played_seconds",
            "From a broadcast's creation to the last of its speakers playing it, for broadcasts "
            "every speaker played; observed when the broadcast is completed.",
            buckets=_ALL_PLAYED_BUCKETS,
            registry=self.registry,
        )
        self.ack_lag_seconds = Histogram(
            "maeul_ack_intake_lag_seconds",
            "From a speaker's ack (its own clock, never later than ours) to the ack recorded.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.publish_lag_seconds = Histogram(
            "maeul_publish_lag_seconds",
            "From a publication falling due to the broker taking it.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.completed = Counter(
            "maeul_broadcasts_completed",
            "Broadcasts completed (no delivery can change any more), by how they ended.",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "maeul_deliveries",
            "Deliveries of completed broadcasts, by how they ended.",
            ["outcome"],
            registry=self.registry,
        )
        # Every label value shown from the start, zero included, so a rate has a baseline.
        for outcome in COMPLETIONS:
            self.completed.labels(outcome)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)

    def watch(self, state: AppState, drop_reasons: Iterable[str]) -> None:
        """Expose the intake's, bus's and publisher's own counters, read at each scrape."""
        self.registry.register(_StateCollector(state, tuple(drop_reasons)))
        self.registry.register(_MemoryCollector(MemoryReader()))
        # The process's resident memory, CPU time and open files (process_*), to read the
        # C heap and SQLite figures against.
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_ack_lag(self, recorded_at: datetime, acked_at: Iterable[datetime]) -> None:
        for at in acked_at:
            self.ack_lag_seconds.observe(max(0.0, (recorded_at - at).total_seconds()))

    def observe_publish_lag(self, due_at: datetime, published_at: datetime) -> None:
        self.publish_lag_seconds.observe(max(0.0, (published_at - due_at).total_seconds()))

    def observe_completed(
        self,
        *,
        created_at: datetime,
        cancelled: bool,
        outcomes: Mapping[str, int],
        last_played_at: datetime | None,
    ) -> str:
        """Count a completed broadcast and its deliveries; returns how it ended."""
        for outcome, count in outcomes.items():
            if count:
                self.deliveries.labels(outcome).inc(count)
        heard = outcomes.get("played", 0) + outcomes.get("played_late", 0)
        total = sum(outcomes.values())
        if cancelled:
            ending = "cancelled"
        elif total and heard == total:
            ending = "all_played"
        else:
            ending = "partly_played" if heard else "none_played"
        if ending == "all_played" and last_played_at is not None:
            self.all_played_seconds.observe(max(0.0, (last_played_at - created_at).total_seconds()))
        self.completed.labels(ending).inc()
        return ending


class _StateCollector(Collector):
    """The families that existed before the histograms, under the same names, read live."""

    def __init__(self, state: AppState, drop_reasons: tuple[str, ...]) -> None:
        self._state = state
        self._drop_reasons = drop_reasons

    def describe(self) -> list[Metric]:
        # Read at scrape time only: the app's workers exist once its lifespan started.
        return []

    def collect(self) -> Iterator[Metric]:
        state = self._state
        intake = getattr(state, "intake", None)
        bus = getattr(state, "bus", None)
        publisher = getattr(state, "publisher", None)
        if intake is None or bus is None or publisher is None:
            return
        handled = CounterMetricFamily(
            "maeul_intake",
            "Messages and acks the intake handled, by what became of them.",
            labels=["kind"],
        )
        for kind, value in sorted(intake.counts.items()):
            handled.add_metric([kind], value)
        yield handled
        # Dropped on arrival by the bus (queue or the sender's line full) or by the intake's
        # sifting (past a command's or the unmatched allowance): every reason listed, zero too.
        dropped = CounterMetricFamily(
            "maeul_intake_dropped",
            "Speaker messages dropped without being recorded, by reason: queue_full (the "
            "intake queue), sender_full (one speaker's share of it), per_command (acks past a "
            "command's allowance), unmatched (a speaker past its allowance of acks that match "
            "none of its deliveries).",
            labels=["reason"],
        )
        for reason in self._drop_reasons:
            dropped.add_metric([reason], bus.dropped[reason] + intake.dropped[reason])
        yield dropped
        yield GaugeMetricFamily(
            "maeul_intake_queue_messages",
            "Messages received and waiting for the intake.",
            value=bus.incoming.qsize(),
        )
        yield GaugeMetricFamily(
            "maeul_intake_queue_senders",
            "Speakers with messages waiting for the intake (each served in turn).",
            value=bus.incoming.senders(),
        )
        stats = publisher.stats
        yield CounterMetricFamily(
            "maeul_published", "Commands handed to the broker.", value=stats.published
        )
        yield CounterMetricFamily(
            "maeul_publish_failures",
            "Publishes that failed and wait for a retry.",
            value=stats.failed,
        )
        yield CounterMetricFamily(
            "maeul_publications_abandoned",
            "Publications given up (broadcast expired or cancelled first).",
            value=stats.abandoned,
        )
        yield GaugeMetricFamily(
            "maeul_mqtt_connected", "1 while connected to the broker.", value=int(bus.connected)
        )


class _MemoryCollector(Collector):
    """Where this process's memory goes, beside the resident total the process collector of a
    Prometheus client would show: a leak grows the C heap in use, fragmentation the free part,
    a cache filling SQLite's share."""

    def __init__(self, reader: MemoryReader) -> None:
        self._reader = reader

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        figures = self._reader.read()
        if figures.c_heap_in_use is not None and figures.c_heap_free is not None:
            heap = GaugeMetricFamily(
                "maeul_c_heap_bytes",
                "The C heap (glibc malloc, every arena and mapped block): bytes in use, and "
                "bytes freed but kept in the arenas, resident or not (the periodic trim hands "
                "whole free pages back to the system; they stay counted here).",
                labels=["state"],
            )
            heap.add_metric(["in_use"], figures.c_heap_in_use)
            heap.add_metric(["free"], figures.c_heap_free)
            yield heap
        if figures.sqlite is not None:
            yield GaugeMetricFamily(
                "maeul_sqlite_memory_bytes",
                "Memory SQLite holds in this process (page and statement caches of every "
                "connection); 0 on PostgreSQL.",
                value=figures.sqlite,
            )


def route_template(scope: Scope) -> str:
    """The matched route's full template, e.g. ``/api/v1/broadcasts/{broadcast_id}``.

    The router writes the matched route into the request's scope, but a route of an included
    router knows its path without the prefix it was included under: the prefix is the part of
    the requested path before the route's own pattern matches (the shortest, as prefixes here
    hold no parameters).
    """
    route = scope.get("route")
    pattern = getattr(route, "path_regex", None)
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if pattern is None or not isinstance(template, str):
        return UNMATCHED_ROUTE
    path: str = scope.get("path", "")
    for cut, char in enumerate(path):
        if char == "/" and pattern.match(path[cut:]):
            return path[:cut] + template
    return template


class RequestTimer:
    """Times each HTTP request until its response starts, labelled by the matched route's
    template (``/api/v1/broadcasts/{broadcast_id}``), never the raw path."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                route = route_template(scope)
                self.metrics.request_seconds.labels(scope["method"], route).observe(
                    time.perf_counter() - started
                )

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            observe()

"""Prometheus metrics of the daemon, served as text by the admin API.

A private registry (not the process-global one) so two daemons in one test
process, or a library user's own metrics, never collide. Outbox depth is read
from the state DB at scrape time: it changes from other processes too (a CLI
replay, a discard), so a counter kept in memory would drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from syncd.engine import COUNTS

#: run durations span a one-item resync (sub-second) to a full refresh (an hour)
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class _StateCollector(Collector):
    """Outbox depth and dead letters, queried when Prometheus scrapes."""

    def __init__(self, outbox_counts: Callable[[], dict[str, int]]) -> None:
        self.outbox_counts = outbox_counts

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("syncd_state_db_up", "1 when the state DB answered this scrape")
        try:
            counts = self.outbox_counts()
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("syncd_outbox_depth", "Outbox rows by status "
                                  "(pending = will retry, dead = dead letters)", labels=["status"])
        for status in ("pending", "dead"):
            depth.add_metric([status], counts.get(status, 0))
        yield depth


class Metrics:
    """The daemon's metrics; ``observe`` is called once per finished run."""

    def __init__(self, jobs: Iterable[str], outbox_counts: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("syncd_runs", "Finished runs", ["job", "trigger", "outcome"],
                            registry=r)
        self.items = Counter("syncd_items", "Items processed, by outcome", ["job", "outcome"],
                             registry=r)
        self.retries = Counter("syncd_retries", "Transfers that failed and went to the outbox "
                               "for a later retry", ["job"], registry=r)
        self.duration = Histogram("syncd_run_duration_seconds", "Run wall time", ["job"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.last_success = Gauge("syncd_last_success_timestamp_seconds",
                                  "Unix time of the job's last run with outcome ok", ["job"],
                                  registry=r)
        r.register(_StateCollector(outbox_counts))
        for job in jobs:  # every configured job shows up from the first scrape
            self.retries.labels(job)
            self.duration.labels(job)
            for outcome in COUNTS:
                self.items.labels(job, outcome)

    def observe(self, job: str, trigger: str, outcome: str, counts: dict[str, int],
                seconds: float) -> None:
        """Count one finished run (a failed run has no counts)."""
        self.runs.labels(job, trigger, outcome).inc()
        for name, n in counts.items():
            if n:
                self.items.labels(job, name).inc(n)
        if counts.get("retried"):
            self.retries.labels(job).inc(counts["retried"])
        self.duration.labels(job).observe(seconds)
        if outcome == "ok":
            self.last_success.labels(job).set(time.time())

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)

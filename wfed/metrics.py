"""Prometheus metrics of a daemon, served in the text format when `[metrics] listen` is set.

Each daemon has a registry of its own (not the process-global one), so several engines or
daemons in one test process never share counters. Counting workflows by state is done by
the daemon every `STATE_COUNT_INTERVAL` seconds, not on every scrape: on a table of
millions of rows a scrape must stay cheap.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from wfed.errors import ConfigError

STATE_COUNT_INTERVAL = 30.0
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The instruments one daemon updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.workflows = Gauge(
            "wfed_workflows", "Workflows in the database by state", ["state"], registry=r
        )
        self.steps = Counter(
            "wfed_steps",
            "Step attempts by step name and outcome "
            "(started, completed, failed, retried, interrupted, stopped)",
            ["step", "outcome"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "wfed_step_duration_seconds",
            "How long step attempts ran",
            ["step"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.claim_batch = Histogram(
            "wfed_claim_batch_size",
            "Workflows claimed per claim transaction",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.claim_seconds = Histogram(
            "wfed_claim_duration_seconds", "Time of one claim transaction", registry=r
        )
        self.lease_renewals = Counter(
            "wfed_lease_renewals", "Leases renewed by the heartbeat", registry=r
        )
        self.leases_lost = Counter(
            "wfed_leases_lost", "Workflows this daemon lost to another owner", registry=r
        )
        self.database_errors = Counter(
            "wfed_database_errors", "Database errors by kind", ["kind"], registry=r
        )
        self.running = Gauge(
            "wfed_running_workflows", "Workflows this daemon is running", registry=r
        )
        self.free_slots = Gauge("wfed_free_slots", "Free workflow slots of this daemon", registry=r)
        self.waiting_for_keys = Gauge(
            "wfed_waiting_for_keys",
            "Pending workflows this daemon's last claim passed over: a concurrency key they "
            "need is at its limit",
            registry=r,
        )
        self.notifications = Counter(
            "wfed_notifications",
            "Webhook POSTs of this daemon by webhook and outcome "
            "(sent; retried: failed, tried again later; failed: failed for good)",
            ["webhook", "outcome"],
            registry=r,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        # The labelled children of the per-step instruments, kept: `labels()` takes a lock
        # and builds a key on every call, and a daemon counts a few times per step.
        self._step_counts: dict[tuple[str, str], Any] = {}
        self._step_durations: dict[str, Any] = {}

    def count_step(self, step: str, outcome: str, seconds: float | None) -> None:
        """Count one step attempt's outcome, and its duration if given."""
        try:
            counter = self._step_counts[step, outcome]
        except KeyError:
            counter = self._step_counts[step, outcome] = self.steps.labels(step, outcome)
        counter.inc()
        if seconds is None:
            return
        try:
            histogram = self._step_durations[step]
        except KeyError:
            histogram = self._step_durations[step] = self.step_seconds.labels(step)
        histogram.observe(seconds)

    def serve(self, listen: str) -> tuple[str, int]:
        """Serve /metrics on `host:port` (port 0: any free port); returns the address."""
        # The configuration checked the address's form (`wfed.config.listen_port`).
        host, _, port = listen.rpartition(":")
        try:
            number = int(port)
        except ValueError:
            raise ConfigError(
                f"[metrics] listen: {listen!r} is not HOST:PORT (e.g. 127.0.0.1:9464)"
            ) from None
        try:
            self._server, self._thread = start_http_server(
                number, addr=host.strip("[]") or "127.0.0.1", registry=self.registry
            )
        except (OSError, OverflowError, UnicodeError) as exc:
            raise ConfigError(f"[metrics] listen: cannot listen on {listen}: {exc}") from None
        address = self._server.server_address
        return str(address[0]), int(address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def count_step(
    metrics: Metrics | None, step: str, outcome: str, started: float | None = None
) -> None:
    """Count a step attempt's outcome (and, given when it started on the monotonic clock,
    its duration); nothing without metrics (`Engine.run`)."""
    if metrics is None:
        return
    metrics.count_step(step, outcome, None if started is None else time.monotonic() - started)

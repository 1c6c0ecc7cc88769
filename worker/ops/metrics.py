"""The worker's Prometheus metrics (`avatar_worker_*`), in a registry of their own.

Session counters follow the contract events the worker publishes (`observe_event`); gauges are set
from the worker's state (`set_gauges`, which the status server calls on every scrape). Session
processes never touch a registry: a child reports to the parent (over the pool's channel) and the
parent calls these methods, so one process owns every figure and no multiprocess mode is needed.

    avatar_worker_sessions_live{mode}                      gauge
    avatar_worker_sessions_accepted_total{mode}            counter  `accepted` (each attempt)
    avatar_worker_sessions_started_total{mode}             counter  `ready`
    avatar_worker_sessions_ended_total{mode,reason}        counter  `ended`
    avatar_worker_sessions_failed_total{mode,code}         counter  `failed`
    avatar_worker_session_retries_total{code}              counter  `retrying`
    avatar_worker_jobs_expired_total                       counter  `expired`
    avatar_worker_jobs_dead_lettered_total{kind}           counter  invalid_job | exhausted | internal
    avatar_worker_job_to_ready_seconds{mode,cold_start}    histogram
    avatar_worker_session_duration_seconds{mode}           histogram  from `ended.duration_s`
    avatar_worker_provider_request_seconds{provider,endpoint}         histogram  every HTTP attempt
    avatar_worker_provider_errors_total{provider,endpoint,status}     counter  4xx/5xx/"transport"
    avatar_worker_process_spawn_seconds                    histogram  a warm session process
    avatar_worker_warm_processes, avatar_worker_load, avatar_worker_free_slots,
    avatar_worker_max_sessions, avatar_worker_draining, avatar_worker_broker_connected   gauges
    avatar_worker_mode_max_sessions{mode}, avatar_worker_mode_free_slots{mode}          gauges
    avatar_worker_load_gate                                gauge  the gate's CPU threshold (0: off)
    avatar_worker_daily_breaker_state{state}               gauge  1 for the Daily breaker's state
    avatar_worker_daily_breaker_failures                   gauge  Daily failures in a row
    avatar_worker_daily_breaker_transitions_total{to}      counter  open | half_open | closed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from worker.breaker import BreakerSnapshot

log = structlog.get_logger("worker.ops.metrics")

PREFIX = "avatar_worker"
MODES = ("pipecat_daily", "phoenix_rest")
UNKNOWN_MODE = "unknown"  # an event published before the mode was resolved (e.g. mode_unavailable)
TRANSPORT_STATUS = "transport"  # the provider never answered (connect/read failure, timeout)
DEAD_LETTER_KINDS = ("invalid_job", "exhausted", "internal")
DeadLetterKind = Literal["invalid_job", "exhausted", "internal"]
BREAKER_STATES = ("closed", "open", "half_open")  # worker.breaker.STATES
CONTENT_TYPE = CONTENT_TYPE_LATEST

READY_BUCKETS_S = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120)
DURATION_BUCKETS_S = (10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400)
PROVIDER_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30)
SPAWN_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30)


def _mode(value: object) -> str:
    return value if isinstance(value, str) and value else UNKNOWN_MODE


class Metrics:
    """Every metric of one worker process, in its own `CollectorRegistry` (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._session_metrics()
        self._provider_and_process_metrics()
        self._state_gauges()
        self._live_modes: set[str] = set(MODES)
        for mode in MODES:  # series exist at 0 from the start, so rate() works on the first one
            self.sessions_live.labels(mode)
            self.sessions_accepted.labels(mode)
            self.sessions_started.labels(mode)
        for kind in DEAD_LETTER_KINDS:
            self.dead_lettered_total.labels(kind)

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return Histogram(f"{PREFIX}_{name}", doc, labels, registry=self.registry, buckets=buckets)

    def _session_metrics(self) -> None:
        self.sessions_live = self._gauge("sessions_live", "Sessions live on this worker.", ["mode"])
        self.sessions_accepted = self._counter(
            "sessions_accepted", "Sessions accepted (one per attempt).", ["mode"]
        )
        self.sessions_started = self._counter(
            "sessions_started", "Sessions that reached ready.", ["mode"]
        )
        self.sessions_ended = self._counter(
            "sessions_ended", "Sessions that ended, by reason.", ["mode", "reason"]
        )
        self.sessions_failed = self._counter(
            "sessions_failed", "Sessions that failed, by error code.", ["mode", "code"]
        )
        self.retries_total = self._counter(
            "session_retries", "Jobs sent back for a later attempt, by error code.", ["code"]
        )
        self.expired_total = self._counter("jobs_expired", "Jobs that arrived past not_after.")
        self.dead_lettered_total = self._counter(
            "jobs_dead_lettered", "Jobs moved to the dead-letter queue, by kind.", ["kind"]
        )
        self.ready_latency = self._histogram(
            "job_to_ready_seconds",
            "From taking the job to publishing ready.",
            ["mode", "cold_start"],
            READY_BUCKETS_S,
        )
        self.session_duration = self._histogram(
            "session_duration_seconds", "Length of ended sessions.", ["mode"], DURATION_BUCKETS_S
        )

    def _provider_and_process_metrics(self) -> None:
        self.provider_latency = self._histogram(
            "provider_request_seconds",
            "Duration of each HTTP attempt to a provider (Tavus, Daily).",
            ["provider", "endpoint"],
            PROVIDER_BUCKETS_S,
        )
        self.provider_errors = self._counter(
            "provider_errors",
            "Provider HTTP attempts that failed: 4xx/5xx status, or 'transport' (no answer).",
            ["provider", "endpoint", "status"],
        )
        self.spawn_time = self._histogram(
            "process_spawn_seconds",
            "Time for a session process to start and report warm.",
            [],
            SPAWN_BUCKETS_S,
        )

    def _state_gauges(self) -> None:
        self.warm_processes = self._gauge("warm_processes", "Idle warm session processes.")
        self.load = self._gauge("load", "CPU load of the host or container, 0..1 (window average).")
        self.free_slots = self._gauge("free_slots", "Session slots free on this worker.")
        self.max_sessions = self._gauge("max_sessions", "WORKER_MAX_SESSIONS.")
        self.draining = self._gauge("draining", "1 while the worker drains (SIGTERM).")
        self.broker_connected = self._gauge(
            "broker_connected", "1 while the RabbitMQ connection is up."
        )
        self.mode_max_sessions = self._gauge(
            "mode_max_sessions", "Sessions of this mode the worker takes at most.", ["mode"]
        )
        self.mode_free_slots = self._gauge(
            "mode_free_slots",
            "Sessions of this mode the worker could take now (0 while full or load-gated).",
            ["mode"],
        )
        self.load_gate = self._gauge(
            "load_gate", "CPU load at which pipecat_daily intake pauses (0: the gate is off)."
        )
        self.daily_breaker_state = self._gauge(
            "daily_breaker_state",
            "1 for the Daily circuit breaker's state (open: auto jobs skip Daily).",
            ["state"],
        )
        self.daily_breaker_failures = self._gauge(
            "daily_breaker_failures",
            "Daily failures in a row (the breaker opens at its threshold).",
        )
        self.daily_breaker_transitions = self._counter(
            "daily_breaker_transitions",
            "The Daily circuit breaker's changes of state (half_open: a probe tried Daily).",
            ["to"],
        )

    # --- what the app calls ------------------------------------------------------------------
    def observe_event(self, event: Mapping[str, Any]) -> None:
        """Count one published contract event (a dict as published, or `model_dump()`)."""
        status = event.get("status")
        mode = _mode(event.get("mode"))
        error = event.get("error")
        code = str(error.get("code", "unknown")) if isinstance(error, Mapping) else "unknown"
        if status == "accepted":
            self.sessions_accepted.labels(mode).inc()
        elif status == "ready":
            self.sessions_started.labels(mode).inc()
        elif status == "ended":
            self.sessions_ended.labels(mode, str(event.get("reason", "unknown"))).inc()
            duration_s = event.get("duration_s")
            if isinstance(duration_s, int | float):
                self.session_duration.labels(mode).observe(duration_s)
        elif status == "failed":
            self.sessions_failed.labels(mode, code).inc()
        elif status == "retrying":
            self.retries_total.labels(code).inc()
        elif status == "expired":
            self.expired_total.inc()
        else:
            log.warning("metrics.unknown_event", status=status)

    def observe_ready_latency(self, mode: str, seconds: float, cold_start: bool) -> None:
        """A session reached `ready` `seconds` after its job was taken (cold: no warm process)."""
        self.ready_latency.labels(_mode(mode), "true" if cold_start else "false").observe(seconds)

    def observe_provider(
        self, provider: str, endpoint: str, status: int | None, duration_s: float
    ) -> None:
        """One HTTP attempt; the `observer` callback of `TavusClient` and `DailyClient`."""
        self.provider_latency.labels(provider, endpoint).observe(duration_s)
        if status is None or status >= 400:
            label = TRANSPORT_STATUS if status is None else str(status)
            self.provider_errors.labels(provider, endpoint, label).inc()

    def dead_lettered(self, kind: DeadLetterKind) -> None:
        """A job went to the dead-letter queue: invalid_job, exhausted (retries) or internal."""
        self.dead_lettered_total.labels(kind).inc()

    def process_spawned(self, seconds: float) -> None:
        """A session process became warm `seconds` after it was spawned."""
        self.spawn_time.observe(seconds)

    def set_gauges(
        self,
        *,
        sessions_by_mode: Mapping[str, int] | None = None,
        warm_processes: int | None = None,
        load: float | None = None,
        free_slots: int | None = None,
        max_sessions: int | None = None,
        is_draining: bool | None = None,
        is_broker_connected: bool | None = None,
    ) -> None:
        """Set the state gauges; `None` leaves one as it is. A mode absent from
        `sessions_by_mode` is set to 0 (use "unknown" for sessions whose mode is not resolved yet)."""
        if sessions_by_mode is not None:
            self._live_modes.update(sessions_by_mode)
            for mode in self._live_modes:
                self.sessions_live.labels(mode).set(sessions_by_mode.get(mode, 0))
        values: list[tuple[Gauge, float | None]] = [
            (self.warm_processes, warm_processes),
            (self.load, load),
            (self.free_slots, free_slots),
            (self.max_sessions, max_sessions),
            (self.draining, None if is_draining is None else float(is_draining)),
            (
                self.broker_connected,
                None if is_broker_connected is None else float(is_broker_connected),
            ),
        ]
        for gauge, value in values:
            if value is not None:
                gauge.set(value)

    def set_capacity(
        self,
        max_by_mode: Mapping[str, int],
        free_by_mode: Mapping[str, int],
        load_gate: float | None,
    ) -> None:
        """Capacity per mode (`worker.ops.capacity.Capacity`) and the load gate's threshold."""
        for mode, value in max_by_mode.items():
            self.mode_max_sessions.labels(mode).set(value)
        for mode, value in free_by_mode.items():
            self.mode_free_slots.labels(mode).set(value)
        self.load_gate.set(load_gate or 0.0)

    def daily_breaker_changed(self, state: str) -> None:
        """The Daily breaker opened, sent a probe (half_open) or closed."""
        self.daily_breaker_transitions.labels(state).inc()

    def set_daily_breaker(self, snapshot: BreakerSnapshot) -> None:
        """The Daily breaker's state and its failures in a row."""
        for state in BREAKER_STATES:
            self.daily_breaker_state.labels(state).set(1.0 if snapshot.state == state else 0.0)
        self.daily_breaker_failures.set(snapshot.consecutive_failures)

    def render(self) -> bytes:
        """Every series in the Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

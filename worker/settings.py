"""The one place that reads the environment (and `.env`): every setting of the worker, with defaults.

Names from the original backend are kept (shared/CONTRACT.md); secrets are `SecretStr`.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.config import LlmConfig, ProviderConfig, SttConfig, TtsConfig
from worker.amqp_nodes import AmqpNodes

Mode = Literal["auto", "pipecat_daily", "phoenix_rest"]


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Worker configuration; see the README's configuration table for what each one does."""

    # hide_input_in_errors: a rejected value (a URL with its password) never reaches an exception.
    # env_ignore_empty: `VAR=` (a compose pass-through, a .env line, an empty Secret key) is an
    # unset variable, in the environment and in .env alike: its default, never "" as a key or name.
    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    # --- providers (names kept from the original backend) -------------------------------------
    tavus_api_key: SecretStr | None = None
    tavus_base_url: str = "https://tavusapi.com/v2"
    tavus_default_replica_id: str | None = None
    tavus_avatar_mode: Mode = "auto"
    daily_api_key: SecretStr | None = None
    daily_api_url: str = "https://api.daily.co/v1"
    daily_avatar_privacy: Literal["private", "public"] = "private"
    provider_timeout_s: float = Field(10.0, gt=0)
    provider_retry_attempts: int = Field(3, ge=1, le=10)

    # --- pipecat_daily pipeline ---------------------------------------------------------------
    worker_warm_processes: int = Field(2, ge=0, le=64)
    # "module:callable" returning (ServiceFactory, transport factory) in each session process:
    # custom pipelines, and the test suite's fakes. None: Deepgram/OpenAI/Cartesia over Daily.
    worker_pipeline_hook: str | None = None
    pipeline_setup_timeout_s: float = Field(30.0, gt=0)
    pipeline_avatar_timeout_s: float = Field(30.0, gt=0)
    pipeline_idle_timeout_s: float = Field(300.0, gt=0)
    deepgram_api_key: SecretStr | None = None
    deepgram_model: str = "nova-3"
    openai_api_key: SecretStr | None = None
    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    cartesia_api_key: SecretStr | None = None
    cartesia_voice_id: str = "71a7ad14-091c-4e8e-a314-022ece01c121"
    cartesia_model: str | None = None
    # What a job's `pipeline` object may choose besides the defaults above (which are always
    # allowed): comma-separated names. Anything else fails the job as invalid_job (worker.choices).
    pipeline_allowed_tts_voices: Annotated[list[str], NoDecode] = Field(default_factory=list)
    pipeline_allowed_llm_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    pipeline_allowed_stt_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    pipeline_allowed_stt_languages: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- broker (names of the contract; each can be changed) ---------------------------------
    # One URL, or a cluster's nodes comma-separated (worker.amqp_nodes).
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    amqp_jobs_exchange: str = "avatar.jobs"
    amqp_jobs_routing_key: str = "session.start"
    amqp_jobs_queue: str = "avatar.sessions"
    amqp_events_exchange: str = "avatar.events"
    amqp_control_exchange: str = "avatar.control"
    amqp_dead_letter_queue: str = "avatar.sessions.dead"

    # --- worker behaviour --------------------------------------------------------------------
    worker_id: str = Field(default_factory=_default_worker_id)
    worker_max_sessions: int = Field(10, ge=1, le=2000)
    worker_max_attempts: int = Field(5, ge=1, le=50)
    worker_retry_delays_s: Annotated[list[float], NoDecode] = Field(default=[2.0, 10.0, 30.0, 60.0])
    worker_drain_timeout_s: float = Field(1800.0, ge=0)
    worker_poll_interval_s: float = Field(3.0, gt=0)
    worker_session_name_prefix: str = "aw-"
    worker_default_max_duration_s: int = Field(1800, ge=60, le=14400)
    # Pages of 100 *ended* Tavus conversations also searched for a session's name before starting
    # it. 0 (default): finished sessions are recognised by their record on the broker instead.
    worker_dedupe_scan_pages: int = Field(0, ge=0)
    worker_reaper_interval_s: float = Field(30.0, ge=0)  # 0 turns the reaper off on this worker
    worker_reaper_grace_s: float = Field(30.0, ge=0)  # unclaimed this long before it is reaped
    # A session's record is re-checked by a reaper this often; a dead worker's session gets its
    # outcome within about this long even when nothing of it is left at the providers.
    worker_session_lease_s: float = Field(60.0, gt=0)
    # Session record queues: quorum (replicated on 3 nodes) or classic (one node). `auto`: quorum
    # when AMQP_URL lists several nodes. Every worker of a deployment must use the same type.
    worker_record_queues: Literal["auto", "quorum", "classic"] = "auto"
    # A finished session's record stays on the broker this long, so a copy of its job that comes
    # later is dropped as a duplicate; then its queue is deleted (each costs every node of the
    # queue a Raft group and about 4 file handles). A copy coming later starts a new session.
    worker_finished_record_keep_s: float = Field(600.0, ge=0, le=14400)
    # Adopt the live phoenix_rest sessions of a worker that died (their calls go on); false: end
    # them as worker_lost, as a worker without adoption would.
    worker_adopt_sessions: bool = True

    # --- operating it -------------------------------------------------------------------------
    worker_status_enabled: bool = True
    worker_status_host: str = "0.0.0.0"
    worker_status_port: int = Field(8081, ge=0, le=65535)  # 0: any free port
    worker_broker_reconnect_budget_s: float = Field(60.0, gt=0)  # then /healthz says 503
    worker_load_cpu_threshold: float | None = Field(None, gt=0, le=1)  # the gate's; None: 0.7
    worker_load_memory_threshold: float | None = Field(None, gt=0, le=1)
    # --- capacity per mode (worker.ops.capacity; docs/operations.md "Sizing") -----------------
    # The load gate closes pipecat_daily while CPU load is at WORKER_LOAD_CPU_THRESHOLD (0.7 when
    # unset). "auto": on wherever pipecat_daily can run; "on"/"off" force it.
    worker_load_gate: Literal["auto", "on", "off"] = "auto"
    # pipecat_daily sessions per worker (within WORKER_MAX_SESSIONS); None: derived from the CPUs
    # and memory the worker may use at 0.8 CPU and 300 MB per session.
    worker_max_pipecat_sessions: int | None = Field(None, ge=0, le=500)
    # --- the Daily circuit breaker (worker.breaker; docs/operations.md "Daily outages") -------
    # After this many Daily failures in a row (REST calls or the bot's join), auto jobs run as
    # phoenix_rest and explicit pipecat_daily jobs fail fast for the cool-down; then one job tries
    # Daily again. 0 turns the breaker off.
    worker_daily_breaker_threshold: int = Field(3, ge=0, le=100)
    worker_daily_breaker_cooldown_s: float = Field(60.0, gt=0)

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("amqp_url")
    @classmethod
    def _check_amqp_url(cls, value: SecretStr) -> SecretStr:
        AmqpNodes.parse(value.get_secret_value())  # AmqpUrlError names the bad entry
        return value

    @field_validator(
        "pipeline_allowed_tts_voices",
        "pipeline_allowed_llm_models",
        "pipeline_allowed_stt_models",
        "pipeline_allowed_stt_languages",
        mode="before",
    )
    @classmethod
    def _parse_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("worker_retry_delays_s", mode="before")
    @classmethod
    def _parse_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.replace(" ", "").split(",") if part]
        return value

    @field_validator("worker_retry_delays_s")
    @classmethod
    def _check_delays(cls, value: list[float]) -> list[float]:
        if not value or any(d <= 0 for d in value):
            raise ValueError(
                "WORKER_RETRY_DELAYS_S needs one or more positive numbers, e.g. 2,10,30"
            )
        return value

    def provider_config(self) -> ProviderConfig:
        """The pipecat_daily pipeline's STT/LLM/TTS settings."""
        return ProviderConfig(
            stt=SttConfig(api_key=self.deepgram_api_key, model=self.deepgram_model),
            llm=LlmConfig(
                api_key=self.openai_api_key, base_url=self.llm_base_url, model=self.llm_model
            ),
            tts=TtsConfig(
                api_key=self.cartesia_api_key,
                voice_id=self.cartesia_voice_id,
                model=self.cartesia_model,
            ),
        )

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redactor (never logged themselves)."""
        secrets = [
            self.tavus_api_key,
            self.daily_api_key,
            self.deepgram_api_key,
            self.openai_api_key,
            self.cartesia_api_key,
        ]
        values = [s.get_secret_value() for s in secrets if s is not None]
        values.extend(self.amqp_nodes().passwords())
        return [v for v in values if len(v) >= 4]

    def records_replicated(self) -> bool:
        """Whether session records go in quorum queues (WORKER_RECORD_QUEUES)."""
        if self.worker_record_queues == "auto":
            return len(self.amqp_nodes().nodes) > 1
        return self.worker_record_queues == "quorum"

    def amqp_nodes(self) -> AmqpNodes:
        """The broker nodes AMQP_URL names (one, or a cluster's)."""
        return AmqpNodes.parse(self.amqp_url.get_secret_value())

    def amqp_url_for_display(self) -> str:
        """The broker URL (or the list of nodes) with every password hidden."""
        return self.amqp_nodes().display


class StartupError(Exception):
    """The worker cannot start as configured; the message is one line naming the setting."""


def load_settings(env_file: str = ".env") -> Settings:
    """The settings from the environment and `env_file`; an unreadable file is a StartupError."""
    try:
        return Settings(_env_file=env_file)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)[:120]
        raise StartupError(
            f"{env_file} cannot be read ({type(exc).__name__}: {why}); fix it or remove it"
        ) from None


def describe_settings_error(exc: ValidationError, limit: int = 3) -> str:
    """One line naming each bad setting by its environment variable, never its value."""
    parts = []
    for err in exc.errors()[:limit]:
        name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
        message = err["msg"].removeprefix("Value error, ")
        parts.append(message if message.startswith(name) else f"{name}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "invalid setting: " + "; ".join(parts)

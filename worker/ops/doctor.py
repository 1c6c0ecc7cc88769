"""`avatar-worker doctor`: checks the configuration and what it points at (broker, Tavus, the
default replica, Daily, daily-python, the pipeline's keys), one line each with a fix, says which
mode `auto` will pick, and shows the Daily breaker of the worker next to it (its /status). Exit 0
when everything phoenix_rest needs is fine (and, when TAVUS_AVATAR_MODE=pipecat_daily, everything
that needs too). No secret is printed.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import aio_pika
import aiohttp
import aiormq

from pipelines.availability import daily_availability
from tavus._retry import RetryPolicy
from tavus.client import TavusClient
from tavus.daily import DailyClient
from tavus.errors import (
    AuthError,
    OutOfCreditsError,
    ProviderError,
    TransportError,
    UnexpectedResponseError,
)
from tavus.resolve import TTLCache, resolve_replica
from worker.amqp_nodes import AmqpNode
from worker.settings import Settings

DOCTOR_TIMEOUT_S = 5.0
Verdict = Literal["ok", "fail", "skip"]
MARKS: dict[Verdict, str] = {"ok": "✓", "fail": "✗", "skip": "–"}
NAME_WIDTH = 16
SIM_HINT = "the simulator (`avatar-worker sim`) accepts sim-tavus-key / sim-daily-key"


@dataclass(frozen=True)
class Check:
    """One line of the report; a failed `required` check makes the exit code non-zero."""

    name: str
    verdict: Verdict
    detail: str
    hint: str | None = None
    required: bool = False


async def connect_broker(url: str, timeout_s: float) -> None:
    """Open and close one AMQP connection (raises what aio-pika raises, or TimeoutError)."""
    connection = await asyncio.wait_for(aio_pika.connect(url), timeout_s)
    await connection.close()


async def fetch_worker_status(url: str, timeout_s: float) -> dict[str, Any] | None:
    """A running worker's /status document; None when no worker answers at `url`."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.get(url) as response,
        ):
            if response.status != 200:
                return None
            document: dict[str, Any] = await response.json()
            return document
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


@dataclass(frozen=True)
class Probes:
    """What the doctor reaches outside the providers' APIs, replaceable in tests."""

    broker: Callable[[str, float], Awaitable[None]] = connect_broker
    daily_python: Callable[[], tuple[bool, str | None]] = field(default=daily_availability)
    worker_status: Callable[[str, float], Awaitable[dict[str, Any] | None]] = fetch_worker_status


async def run_doctor(
    settings: Settings,
    out: TextIO,
    *,
    probe: Probes | None = None,
    timeout_s: float = DOCTOR_TIMEOUT_S,
) -> int:
    """Print one line per check to `out`; 0 when phoenix_rest (and the default mode) can run."""
    probes = probe or Probes()
    secrets = settings.secret_values()
    checks: list[Check] = []

    def emit(check: Check) -> None:
        checks.append(check)
        print(_redact(_format(check), secrets), file=out, flush=True)

    print("avatar-worker doctor", file=out)
    for check in await _check_brokers(settings, probes, timeout_s):
        emit(check)
    for check in await _check_tavus(settings, timeout_s):
        emit(check)
    pipecat_required = settings.tavus_avatar_mode == "pipecat_daily"
    daily_checks = [
        await _check_daily_key(settings, timeout_s),
        _check_daily_python(probes),
        _check_pipeline_keys(settings),
    ]
    # Without DAILY_API_KEY nobody asked for pipecat_daily: what it lacks is "–", not "✗".
    is_wanted = pipecat_required or settings.daily_api_key is not None
    for check in daily_checks:
        emit(_required(check if is_wanted else _as_skip(check), pipecat_required))
    emit(_mode_check(settings, daily_checks))
    if is_wanted:
        url = _status_url(settings)
        status = None if url is None else await probes.worker_status(url, timeout_s)
        emit(_breaker_check(settings, url, status))
    failed = [c for c in checks if c.required and c.verdict == "fail"]
    print(_redact(_summary(failed, daily_checks), secrets), file=out, flush=True)
    return 1 if failed else 0


def _format(check: Check) -> str:
    line = f"{MARKS[check.verdict]} {check.name:<{NAME_WIDTH}} {check.detail}"
    if check.hint and check.verdict != "ok":
        label = "fix:" if check.verdict == "fail" else "to enable:"
        line += f"\n  {'':<{NAME_WIDTH}} {label} {check.hint}"
    return line


def _redact(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _required(check: Check, required: bool) -> Check:
    return Check(check.name, check.verdict, check.detail, check.hint, required)


def _as_skip(check: Check) -> Check:
    return check if check.verdict == "ok" else Check(check.name, "skip", check.detail, check.hint)


def _summary(failed: list[Check], daily_checks: list[Check]) -> str:
    if failed:
        names = ", ".join(c.name for c in failed)
        return f"doctor: NOT READY: fix the ✗ lines above ({names})"
    pipecat = "available" if all(c.verdict == "ok" for c in daily_checks) else "unavailable"
    return f"doctor: ok: this worker can run phoenix_rest sessions (pipecat_daily: {pipecat})"


async def _check_brokers(settings: Settings, probes: Probes, timeout_s: float) -> list[Check]:
    """One line per node of AMQP_URL ("broker", or "broker 2/3" for a cluster's), each required."""
    nodes = settings.amqp_nodes()
    if len(nodes) == 1:
        return [await _check_broker(nodes[0], "broker", probes, timeout_s)]
    names = [f"broker {i}/{len(nodes)}" for i in range(1, len(nodes) + 1)]
    checks = [
        _check_broker(n, name, probes, timeout_s) for n, name in zip(nodes, names, strict=True)
    ]
    return list(await asyncio.gather(*checks))


async def _check_broker(node: AmqpNode, name: str, probes: Probes, timeout_s: float) -> Check:
    shown = node.display
    try:
        await probes.broker(node.url, timeout_s)
    except aiormq.exceptions.ProbableAuthenticationError:
        return Check(
            name,
            "fail",
            f"{shown} refused the user or password",
            "check the user and password in AMQP_URL",
            required=True,
        )
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        why = type(exc).__name__ if isinstance(exc, TimeoutError) else _one_line(exc)
        return Check(
            name,
            "fail",
            f"cannot connect to {shown} ({why})",
            "start RabbitMQ (`docker compose up -d rabbitmq` or `rabbitmq-server -detached`)"
            " or point AMQP_URL at yours",
            required=True,
        )
    return Check(name, "ok", f"connected to {shown}", required=True)


async def _check_tavus(settings: Settings, timeout_s: float) -> list[Check]:
    """The key (a cheap authenticated call), then the default replica with that key."""
    if settings.tavus_api_key is None:
        missing = Check(
            "tavus key",
            "fail",
            "TAVUS_API_KEY is not set",
            f"set TAVUS_API_KEY (and TAVUS_BASE_URL for the simulator); {SIM_HINT}",
            required=True,
        )
        return [missing, _replica_skipped(settings, "needs a Tavus key")]
    async with TavusClient(
        api_key=settings.tavus_api_key.get_secret_value(),
        base_url=settings.tavus_base_url,
        timeout_s=timeout_s,
        retry=RetryPolicy(attempts=1),
    ) as client:
        try:
            await client.list_replicas(limit=1)
        except ProviderError as exc:
            failed = Check(
                "tavus key", "fail", exc.message, _provider_hint(exc, "TAVUS"), required=True
            )
            return [failed, _replica_skipped(settings, "needs a working Tavus key")]
        accepted = Check(
            "tavus key", "ok", f"TAVUS_API_KEY accepted by {client.base_url}", required=True
        )
        return [accepted, await _check_default_replica(client, settings)]


def _replica_skipped(settings: Settings, why: str) -> Check:
    if settings.tavus_default_replica_id is None:
        return _no_default_replica()
    return Check("default replica", "skip", f"{settings.tavus_default_replica_id}: skipped, {why}")


def _no_default_replica() -> Check:
    return Check(
        "default replica",
        "skip",
        "TAVUS_DEFAULT_REPLICA_ID is not set: every job must name a replica_id (or a persona"
        " with a default replica)",
    )


async def _check_default_replica(client: TavusClient, settings: Settings) -> Check:
    replica_id = settings.tavus_default_replica_id
    if replica_id is None:
        return _no_default_replica()
    try:
        replica = await resolve_replica(
            client,
            job_replica_id=None,
            persona=None,
            default_replica_id=replica_id,
            cache=TTLCache(0.0),
        )
    except ProviderError as exc:
        hint = "set TAVUS_DEFAULT_REPLICA_ID to a trained replica (`avatar-worker replicas list`)"
        return Check("default replica", "fail", exc.message, hint, required=True)
    name = f" ({replica.replica_name})" if replica.replica_name else ""
    return Check("default replica", "ok", f"{replica.replica_id}{name} is ready", required=True)


async def _check_daily_key(settings: Settings, timeout_s: float) -> Check:
    if settings.daily_api_key is None:
        return Check(
            "daily key",
            "skip",
            "DAILY_API_KEY is not set: pipecat_daily is off",
            f"set DAILY_API_KEY to run pipecat_daily; {SIM_HINT}",
        )
    async with DailyClient(
        api_key=settings.daily_api_key.get_secret_value(),
        base_url=settings.daily_api_url,
        timeout_s=timeout_s,
        retry=RetryPolicy(attempts=1),
    ) as client:
        try:
            await client.list_rooms(limit=1)
        except ProviderError as exc:
            return Check("daily key", "fail", exc.message, _provider_hint(exc, "DAILY"))
        return Check("daily key", "ok", f"DAILY_API_KEY accepted by {client.base_url}")


def _check_daily_python(probes: Probes) -> Check:
    ok, reason = probes.daily_python()
    if ok:
        return Check("daily-python", "ok", "importable (DailyTransport can run here)")
    return Check(
        "daily-python",
        "fail",
        reason or "daily-python cannot be imported",
        "install pipecat-ai[daily] on Linux or macOS, or run phoenix_rest only",
    )


def _check_pipeline_keys(settings: Settings) -> Check:
    config = settings.provider_config()
    missing = config.missing_settings()
    if missing:
        return Check(
            "pipeline keys",
            "fail",
            f"not set: {', '.join(missing)}",
            "set them to run pipecat_daily (Deepgram STT, an OpenAI-compatible LLM, Cartesia TTS)",
        )
    models = f"{config.stt.model}, {config.llm.model}, cartesia voice {config.tts.voice_id}"
    return Check("pipeline keys", "ok", f"STT, LLM and TTS keys set ({models})")


def _mode_check(settings: Settings, daily_checks: list[Check]) -> Check:
    """Which mode jobs without a `mode` get, and why (mirrors the app's decision)."""
    blocker = next((c for c in daily_checks if c.verdict != "ok"), None)
    why_not = None if blocker is None else f"{blocker.name}: {blocker.detail}"
    default = settings.tavus_avatar_mode
    if default == "phoenix_rest":
        return Check("mode", "ok", "TAVUS_AVATAR_MODE=phoenix_rest: jobs without a mode run it")
    if default == "pipecat_daily":
        if why_not is None:
            return Check("mode", "ok", "TAVUS_AVATAR_MODE=pipecat_daily, and it can run here")
        return Check(
            "mode",
            "fail",
            f"TAVUS_AVATAR_MODE=pipecat_daily cannot run here ({why_not})",
            "fix the pipecat_daily lines above, or set TAVUS_AVATAR_MODE=auto",
            required=True,
        )
    if why_not is None:
        return Check("mode", "ok", "auto → pipecat_daily (phoenix_rest when Daily is down)")
    return Check("mode", "ok", f"auto → phoenix_rest: pipecat_daily cannot run ({why_not})")


def _status_url(settings: Settings) -> str | None:
    """Where this configuration's worker serves /status (None: off, or a port picked at start)."""
    if not settings.worker_status_enabled or settings.worker_status_port == 0:
        return None
    host = settings.worker_status_host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.worker_status_port}/status"


def _breaker_check(settings: Settings, url: str | None, status: dict[str, Any] | None) -> Check:
    """The Daily breaker (`worker.breaker`) of the worker at `url`, or what the settings say."""
    name, threshold = "daily breaker", settings.worker_daily_breaker_threshold
    cool_down_s = settings.worker_daily_breaker_cooldown_s
    if threshold == 0:
        return Check(name, "skip", "WORKER_DAILY_BREAKER_THRESHOLD=0: no breaker")
    rule = f"opens after {threshold} Daily failures in a row, for {cool_down_s:g} s"
    if url is None or status is None:
        where = (
            "no status server to ask (WORKER_STATUS_*)" if url is None else f"no worker at {url}"
        )
        hint = "run the doctor next to a worker (`kubectl exec`, `docker compose exec`) to see it"
        return Check(name, "skip", f"{rule}; {where}", hint)
    worker, breaker = status.get("worker_id", "?"), status.get("daily_breaker")
    if not isinstance(breaker, dict):
        return Check(name, "skip", f"worker {worker} runs none (no pipecat_daily there)")
    if breaker.get("state") == "closed":
        return Check(name, "ok", f"closed on worker {worker} ({rule})")
    if breaker.get("state") == "half_open":
        return Check(name, "ok", f"half-open on worker {worker}: one session is trying Daily")
    return Check(
        name,
        "fail",
        f"open on worker {worker} after {breaker.get('consecutive_failures')} Daily failures in a"
        f" row (last: {breaker.get('last_failure')}): auto jobs run as phoenix_rest, pipecat_daily"
        f" jobs fail; Daily is tried again in about {breaker.get('retry_in_s')} s",
        "check Daily's status and that this host reaches DAILY_API_URL; the breaker closes by"
        " itself once a probe gets through",
    )


def _provider_hint(exc: ProviderError, prefix: Literal["TAVUS", "DAILY"]) -> str:
    key = f"{prefix}_API_KEY"
    url = "TAVUS_BASE_URL" if prefix == "TAVUS" else "DAILY_API_URL"
    if isinstance(exc, AuthError):
        return f"set {key} to a valid key; {SIM_HINT}"
    if isinstance(exc, OutOfCreditsError):
        return "add credits to the Tavus account"
    if isinstance(exc, TransportError):
        return f"check {url} and that this host can reach it"
    if isinstance(exc, UnexpectedResponseError):
        return f"check {url}: it does not answer like the provider's API"
    return f"check {key} and {url}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def add_doctor_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `doctor` to the `avatar-worker` command (call `run_doctor` for it)."""
    doctor = subparsers.add_parser(
        "doctor", help="check the configuration, the broker and the providers; exit 1 on a problem"
    )
    doctor.add_argument(
        "--timeout-s", type=float, default=DOCTOR_TIMEOUT_S, help="per check (default %(default)s)"
    )

"""`avatar-worker doctor`: its verdict lines, exit code and fixes, against the simulator and a
real broker; never a secret in what it prints."""

from __future__ import annotations

import argparse
import io
import socket
from typing import Any

from pydantic import SecretStr

from tavus.sim import ANNA_REPLICA_ID, TRAINING_REPLICA_ID
from tests.ops.fake_worker import FakeWorkerView
from worker.breaker import DailyBreaker
from worker.ops.doctor import Probes, add_doctor_parser, run_doctor
from worker.ops.metrics import Metrics
from worker.ops.status import StatusServer
from worker.settings import Settings

TAVUS_KEY = "test-tavus-key-0123456789"  # what the `sim` fixture accepts
DAILY_KEY = "test-daily-key-0123456789"
PIPELINE_KEYS = {
    "deepgram_api_key": SecretStr("deepgram-secret-0123456789"),
    "openai_api_key": SecretStr("openai-secret-0123456789"),
    "cartesia_api_key": SecretStr("cartesia-secret-0123456789"),
}
DAILY_PYTHON_OK = Probes(daily_python=lambda: (True, None))


def settings_for(sim: Any, amqp_url: str, **overrides: Any) -> Settings:
    """Settings pointing at the simulator, phoenix_rest only, nothing read from the environment."""
    values: dict[str, Any] = {
        "tavus_api_key": SecretStr(TAVUS_KEY),
        "tavus_base_url": sim.tavus_base_url,
        "tavus_default_replica_id": ANNA_REPLICA_ID,
        "tavus_avatar_mode": "auto",
        "daily_api_key": None,
        "daily_api_url": sim.daily_base_url,
        "deepgram_api_key": None,
        "openai_api_key": None,
        "cartesia_api_key": None,
        "amqp_url": SecretStr(amqp_url),
    }
    return Settings(_env_file=None, **(values | overrides))


async def doctor(settings: Settings, probe: Probes | None = None) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = await run_doctor(settings, out, probe=probe, timeout_s=3)
    text = out.getvalue()
    for secret in settings.secret_values():
        assert secret not in text, "a secret was printed"
    return code, text.splitlines()


def line(lines: list[str], name: str) -> str:
    """The verdict line of check `name`, with the mark and name spacing collapsed."""
    found = [" ".join(ln.split()) for ln in lines if ln[2:].startswith(f"{name} ")]
    assert len(found) == 1, f"no single {name!r} line in {lines}"
    return found[0]


def fix_after(lines: list[str], name: str) -> str:
    index = next(i for i, ln in enumerate(lines) if ln[2:].startswith(f"{name} "))
    return " ".join(lines[index + 1].split())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_good_phoenix_rest_configuration_passes(sim: Any, broker_url: str) -> None:
    """Broker, key and default replica fine, no Daily: exit 0, pipecat_daily lines are "–"."""
    code, lines = await doctor(settings_for(sim, broker_url))
    assert code == 0
    assert line(lines, "broker").startswith("✓ broker connected to amqp://")
    assert line(lines, "tavus key") == f"✓ tavus key TAVUS_API_KEY accepted by {sim.tavus_base_url}"
    assert line(lines, "default replica") == f"✓ default replica {ANNA_REPLICA_ID} (Anna) is ready"
    assert line(lines, "daily key").startswith("– daily key DAILY_API_KEY is not set")
    assert line(lines, "pipeline keys").startswith("– pipeline keys not set: DEEPGRAM_API_KEY")
    assert line(lines, "mode") == (
        "✓ mode auto → phoenix_rest: pipecat_daily cannot run"
        " (daily key: DAILY_API_KEY is not set: pipecat_daily is off)"
    )
    assert lines[-1] == (
        "doctor: ok: this worker can run phoenix_rest sessions (pipecat_daily: unavailable)"
    )


async def test_a_full_configuration_picks_pipecat_daily(sim: Any, broker_url: str) -> None:
    """With Daily, daily-python and the pipeline keys, auto picks pipecat_daily; no key is printed."""
    settings = settings_for(sim, broker_url, daily_api_key=SecretStr(DAILY_KEY), **PIPELINE_KEYS)
    code, lines = await doctor(settings, DAILY_PYTHON_OK)
    assert code == 0
    assert line(lines, "daily key") == f"✓ daily key DAILY_API_KEY accepted by {sim.daily_base_url}"
    assert line(lines, "daily-python").startswith("✓ daily-python importable")
    assert line(lines, "pipeline keys").startswith("✓ pipeline keys STT, LLM and TTS keys set")
    assert line(lines, "mode") == "✓ mode auto → pipecat_daily (phoenix_rest when Daily is down)"
    assert lines[-1].endswith("(pipecat_daily: available)")


async def test_a_wrong_tavus_key_fails_with_a_fix(sim: Any, broker_url: str) -> None:
    """A rejected key: ✗ with the 401 and a fix, the replica check skipped, exit 1, key not shown."""
    settings = settings_for(sim, broker_url, tavus_api_key=SecretStr("not-the-key-0123456789"))
    code, lines = await doctor(settings)
    assert code == 1
    assert line(lines, "tavus key").startswith(
        "✗ tavus key TAVUS_API_KEY was rejected by Tavus (401"
    )
    assert fix_after(lines, "tavus key").startswith("fix: set TAVUS_API_KEY to a valid key")
    assert line(lines, "default replica") == (
        f"– default replica {ANNA_REPLICA_ID}: skipped, needs a working Tavus key"
    )
    assert lines[-1] == "doctor: NOT READY: fix the ✗ lines above (tavus key)"


async def test_a_missing_tavus_key_fails(sim: Any, broker_url: str) -> None:
    """No TAVUS_API_KEY at all: ✗ saying so, exit 1."""
    code, lines = await doctor(settings_for(sim, broker_url, tavus_api_key=None))
    assert code == 1
    assert line(lines, "tavus key") == "✗ tavus key TAVUS_API_KEY is not set"


async def test_an_unknown_default_replica_fails(sim: Any, broker_url: str) -> None:
    """A default replica the account does not have: ✗ naming it and where it came from, exit 1."""
    settings = settings_for(sim, broker_url, tavus_default_replica_id="r0000000dead")
    code, lines = await doctor(settings)
    assert code == 1
    assert line(lines, "default replica").startswith(
        "✗ default replica replica r0000000dead (from TAVUS_DEFAULT_REPLICA_ID) does not exist"
    )
    assert "avatar-worker replicas list" in fix_after(lines, "default replica")


async def test_a_training_default_replica_fails(sim: Any, broker_url: str) -> None:
    """A default replica still training is not ready: ✗ and exit 1."""
    settings = settings_for(sim, broker_url, tavus_default_replica_id=TRAINING_REPLICA_ID)
    code, lines = await doctor(settings)
    assert code == 1
    assert "is still training" in line(lines, "default replica")


async def test_an_unreachable_broker_fails_without_showing_its_password(sim: Any) -> None:
    """A broker that refuses connections: ✗ with the URL (password hidden) and a fix, exit 1."""
    port = closed_port()
    settings = settings_for(sim, f"amqp://avatar:s3cret-pass@127.0.0.1:{port}/")
    code, lines = await doctor(settings)
    assert code == 1
    assert line(lines, "broker").startswith(
        f"✗ broker cannot connect to amqp://avatar:***@127.0.0.1:{port}/"
    )
    assert fix_after(lines, "broker").startswith("fix: start RabbitMQ")
    assert line(lines, "tavus key").startswith("✓ tavus key")
    assert lines[-1] == "doctor: NOT READY: fix the ✗ lines above (broker)"


async def test_an_unreachable_tavus_says_to_check_the_url(broker_url: str, sim: Any) -> None:
    """TAVUS_BASE_URL where nothing listens: ✗ tavus key with a fix naming TAVUS_BASE_URL."""
    url = f"http://127.0.0.1:{closed_port()}/v2"
    code, lines = await doctor(settings_for(sim, broker_url, tavus_base_url=url))
    assert code == 1
    assert line(lines, "tavus key").startswith("✗ tavus key")
    assert fix_after(lines, "tavus key") == (
        "fix: check TAVUS_BASE_URL and that this host can reach it"
    )


async def test_a_wrong_daily_key_does_not_fail_auto(sim: Any, broker_url: str) -> None:
    """In auto a rejected Daily key is ✗ but phoenix_rest still runs: exit 0, and the mode says why."""
    settings = settings_for(
        sim, broker_url, daily_api_key=SecretStr("not-daily-0123456789"), **PIPELINE_KEYS
    )
    code, lines = await doctor(settings, DAILY_PYTHON_OK)
    assert code == 0
    assert line(lines, "daily key").startswith("✗ daily key")
    assert fix_after(lines, "daily key").startswith("fix: set DAILY_API_KEY to a valid key")
    assert line(lines, "mode").startswith("✓ mode auto → phoenix_rest: pipecat_daily cannot run")


async def test_forced_pipecat_daily_without_daily_python_fails(sim: Any, broker_url: str) -> None:
    """TAVUS_AVATAR_MODE=pipecat_daily where daily-python is missing: ✗ and exit 1."""
    settings = settings_for(
        sim,
        broker_url,
        tavus_avatar_mode="pipecat_daily",
        daily_api_key=SecretStr(DAILY_KEY),
        **PIPELINE_KEYS,
    )
    probe = Probes(daily_python=lambda: (False, "daily-python is not installed"))
    code, lines = await doctor(settings, probe)
    assert code == 1
    assert line(lines, "daily-python") == "✗ daily-python daily-python is not installed"
    assert line(lines, "mode").startswith("✗ mode TAVUS_AVATAR_MODE=pipecat_daily cannot run here")
    assert lines[-1] == "doctor: NOT READY: fix the ✗ lines above (daily-python, mode)"


def test_the_doctor_subcommand_parses() -> None:
    """`avatar-worker doctor --timeout-s 2` parses with add_doctor_parser."""
    parser = argparse.ArgumentParser(prog="avatar-worker")
    add_doctor_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", "--timeout-s", "2"])
    assert (args.command, args.timeout_s) == ("doctor", 2.0)


async def test_phoenix_rest_only_says_so(sim: Any, broker_url: str) -> None:
    """TAVUS_AVATAR_MODE=phoenix_rest: the mode line says jobs without a mode run it."""
    code, lines = await doctor(settings_for(sim, broker_url, tavus_avatar_mode="phoenix_rest"))
    assert code == 0
    assert (
        line(lines, "mode") == "✓ mode TAVUS_AVATAR_MODE=phoenix_rest: jobs without a mode run it"
    )


async def test_a_wrong_broker_password_is_named_as_such(sim: Any, broker_url: str) -> None:
    """The broker answers but refuses the credentials: ✗ says so (password hidden), exit 1."""
    host = broker_url.rsplit("@", 1)[1]
    settings = settings_for(sim, f"amqp://guest:wrong-password-0123@{host}")
    code, lines = await doctor(settings)
    assert code == 1
    assert line(lines, "broker") == f"✗ broker amqp://guest:***@{host} refused the user or password"
    assert fix_after(lines, "broker") == "fix: check the user and password in AMQP_URL"


async def test_every_broker_node_is_checked_and_named(sim: Any, broker_url: str) -> None:
    """With AMQP_URL listing a cluster's nodes, each gets its own line (password hidden); one that
    refuses connections is ✗ with a fix and makes the exit 1."""
    port = closed_port()
    refused = f"amqp://avatar:s3cret-pass@127.0.0.1:{port}/"
    code, lines = await doctor(settings_for(sim, f"{broker_url},{refused}"))
    host = broker_url.rsplit("@", 1)[1]
    assert line(lines, "broker 1/2").startswith("✓ broker 1/2 connected to amqp://")
    assert line(lines, "broker 1/2").endswith(f":***@{host}")
    assert line(lines, "broker 2/2").startswith(
        f"✗ broker 2/2 cannot connect to amqp://avatar:***@127.0.0.1:{port}/"
    )
    assert fix_after(lines, "broker 2/2").startswith("fix: start RabbitMQ")
    assert code == 1
    assert lines[-1] == "doctor: NOT READY: fix the ✗ lines above (broker 2/2)"


async def _broker_ok(_url: str, _timeout_s: float) -> None:
    return None


async def doctor_next_to(sim: Any, breaker: DailyBreaker | None) -> tuple[int, list[str]]:
    """The doctor of a pipecat_daily configuration, run next to a worker whose status server
    serves `breaker` (the broker check answered by a stand-in: not what these tests are about)."""
    server = StatusServer(FakeWorkerView(), Metrics(), "127.0.0.1", 0, breaker=breaker)
    await server.start()
    try:
        settings = settings_for(
            sim,
            "amqp://guest:guest@127.0.0.1:5672/",
            daily_api_key=SecretStr(DAILY_KEY),
            worker_status_host="0.0.0.0",
            worker_status_port=server.port,
            **PIPELINE_KEYS,
        )
        probe = Probes(broker=_broker_ok, daily_python=lambda: (True, None))
        return await doctor(settings, probe)
    finally:
        await server.aclose()


def tripped_breaker(threshold: int = 3) -> DailyBreaker:
    breaker = DailyBreaker(threshold=threshold, cool_down_s=60, probe_timeout_s=30)
    for _ in range(threshold):
        breaker.record_failure("Daily answered 503 to POST /rooms")
    return breaker


async def test_an_open_daily_breaker_on_the_worker_is_shown_with_what_to_check(sim: Any) -> None:
    """Next to a worker whose Daily breaker is open, the doctor says so, what it means for jobs
    and what to check; phoenix_rest still runs, so the exit code stays 0."""
    code, lines = await doctor_next_to(sim, tripped_breaker())
    assert code == 0
    shown = line(lines, "daily breaker")
    assert shown.startswith(
        "✗ daily breaker open on worker w-test-1 after 3 Daily failures in a row"
        " (last: Daily answered 503 to POST /rooms): auto jobs run as phoenix_rest"
    )
    assert "tried again in about" in shown
    assert fix_after(lines, "daily breaker").startswith("fix: check Daily's status")


async def test_a_closed_daily_breaker_is_shown_with_its_rule(sim: Any) -> None:
    """Next to a healthy worker the doctor shows the breaker closed and when it would open."""
    breaker = DailyBreaker(threshold=3, cool_down_s=60, probe_timeout_s=30)
    _, lines = await doctor_next_to(sim, breaker)
    assert line(lines, "daily breaker") == (
        "✓ daily breaker closed on worker w-test-1 (opens after 3 Daily failures in a row, for 60 s)"
    )


async def test_without_a_worker_nearby_the_breaker_line_says_where_it_looked(sim: Any) -> None:
    """With no worker answering on WORKER_STATUS_PORT, the line says where it looked, not ✗."""
    port = closed_port()
    settings = settings_for(
        sim,
        "amqp://guest:guest@127.0.0.1:5672/",
        daily_api_key=SecretStr(DAILY_KEY),
        worker_status_port=port,
        **PIPELINE_KEYS,
    )
    probe = Probes(broker=_broker_ok, daily_python=lambda: (True, None))
    _, lines = await doctor(settings, probe)
    assert line(lines, "daily breaker") == (
        "– daily breaker opens after 3 Daily failures in a row, for 60 s;"
        f" no worker at http://127.0.0.1:{port}/status"
    )

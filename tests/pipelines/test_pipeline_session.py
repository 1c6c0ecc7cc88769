"""run_session: each way a session ends or fails becomes the outcome the worker publishes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pipeline_fakes import FakeServices, FakeTransport, make_spec

from pipelines.factory import BuiltPipeline, build_pipeline
from pipelines.session import SessionEnded, SessionFailed, SessionOutcome, run_session

TEST_TIMEOUT_S = 20.0


class ReadyLog:
    """Records on_ready calls, and runs an optional action after each."""

    def __init__(self, then: Any = None) -> None:
        self.conversation_ids: list[str] = []
        self._then = then

    async def __call__(self, conversation_id: str) -> None:
        self.conversation_ids.append(conversation_id)
        if self._then is not None:
            await self._then()


async def build(
    services: FakeServices | None = None, transport: FakeTransport | None = None, **spec: Any
) -> tuple[BuiltPipeline, FakeServices, FakeTransport]:
    services = services or FakeServices()
    transport = transport or FakeTransport()
    built = await build_pipeline(
        make_spec(**spec), services=services, transport_factory=lambda _: transport
    )
    return built, services, transport


async def run(built: BuiltPipeline, on_ready: ReadyLog, **options: Any) -> SessionOutcome:
    settings: dict[str, Any] = {
        "max_duration_s": 10.0,
        "setup_timeout_s": 5.0,
        "avatar_timeout_s": 5.0,
    }
    settings.update(options)
    async with asyncio.timeout(TEST_TIMEOUT_S):
        return await run_session(built, on_ready=on_ready, **settings)


async def test_max_duration_ends_the_session() -> None:
    """A session still running at max_duration_s ends with reason max_duration, after ready."""
    built, _, _ = await build()
    ready = ReadyLog()
    outcome = await run(built, ready, max_duration_s=0.8)
    assert isinstance(outcome, SessionEnded)
    assert outcome.reason == "max_duration"
    assert outcome.ready and outcome.conversation_id == "conv-1"
    assert ready.conversation_ids == ["conv-1"]
    assert 0.8 <= outcome.duration_s < 10
    assert built.http.closed


async def test_stop_ends_the_session_as_stopped() -> None:
    """Setting the stop event (session.stop) ends a ready session with reason stopped."""
    built, _, _ = await build()
    stop = asyncio.Event()

    async def request_stop() -> None:
        stop.set()

    outcome = await run(built, ReadyLog(then=request_stop), stop_event=stop)
    assert isinstance(outcome, SessionEnded)
    assert outcome.reason == "stopped"
    assert outcome.duration_s < 5


async def test_custom_greeting_is_spoken_verbatim_when_the_user_joins() -> None:
    """When the user joins, the custom greeting goes to TTS word for word (no LLM call)."""
    built, services, transport = await build(custom_greeting="Hi, I'm Ada. Ready for algebra?")
    stop = asyncio.Event()

    async def user_joins_then_stop() -> None:
        await transport.user_joins()
        await services.tts.has_spoken.wait()
        stop.set()

    outcome = await run(built, ReadyLog(then=user_joins_then_stop), stop_event=stop)
    assert isinstance(outcome, SessionEnded) and outcome.reason == "stopped"
    assert services.tts.spoken == ["Hi, I'm Ada. Ready for algebra?"]
    assert services.llm.seen_messages == []


async def test_without_custom_greeting_the_llm_greets() -> None:
    """Without a custom greeting, the user joining runs the LLM, whose answer is spoken."""
    built, services, transport = await build()
    stop = asyncio.Event()

    async def user_joins_then_stop() -> None:
        await transport.user_joins()
        await services.tts.has_spoken.wait()
        stop.set()

    await run(built, ReadyLog(then=user_joins_then_stop), stop_event=stop)
    assert services.tts.spoken == ["Hello there."]
    assert "Greet them" in services.llm.seen_messages[0][-1]["content"]


async def test_tavus_refusal_fails_with_its_reason() -> None:
    """A Tavus conversation that was never created fails tavus_conversation_failed, never ready."""
    services = FakeServices(
        avatar_options={
            "conversation_id": None,
            "failure_reason": "TAVUS_API_KEY was rejected by Tavus (401)",
        }
    )
    built, _, _ = await build(services)
    ready = ReadyLog()
    outcome = await run(built, ready)
    assert isinstance(outcome, SessionFailed)
    assert outcome.code == "tavus_conversation_failed"
    assert outcome.message == "TAVUS_API_KEY was rejected by Tavus (401)"
    assert not outcome.ready and ready.conversation_ids == []


async def test_daily_join_error_fails_and_is_never_ready() -> None:
    """A transport error while joining fails daily_join_failed instead of a silent ready."""
    transport = FakeTransport(join_error="Error joining https://x.daily.co/r: RoomLookup")
    built, _, _ = await build(transport=transport)
    ready = ReadyLog()
    outcome = await run(built, ready)
    assert isinstance(outcome, SessionFailed)
    assert outcome.code == "daily_join_failed"
    assert "RoomLookup" in outcome.message
    assert not outcome.ready and ready.conversation_ids == []


async def test_replica_that_never_joins_fails_avatar_timeout() -> None:
    """A replica that sends no media within avatar_timeout_s fails avatar_timeout after ready."""
    built, _, _ = await build(FakeServices(avatar_options={"replica_joins": False}))
    outcome = await run(built, ReadyLog(), avatar_timeout_s=0.5)
    assert isinstance(outcome, SessionFailed)
    assert outcome.code == "avatar_timeout"
    assert "r-1" in outcome.message
    assert outcome.ready


async def test_slow_join_fails_provider_timeout() -> None:
    """A join slower than the setup timeout fails provider_timeout."""
    built, _, _ = await build(transport=FakeTransport(join_delay_s=3.0), setup_timeout_s=0.5)
    outcome = await run(built, ReadyLog(), setup_timeout_s=1.0, shutdown_timeout_s=5.0)
    assert isinstance(outcome, SessionFailed)
    assert outcome.code == "provider_timeout"
    assert not outcome.ready


async def test_fatal_pipeline_error_fails_pipeline_error() -> None:
    """An error that leaves a processor unusable fails the session with pipeline_error."""
    built, _, _ = await build(FakeServices(avatar_options={"fatal_error": "replica crashed"}))
    outcome = await run(built, ReadyLog())
    assert isinstance(outcome, SessionFailed)
    assert outcome.code == "pipeline_error"
    assert "replica crashed" in outcome.message


async def test_user_leaving_ends_after_participant_left_timeout() -> None:
    """The user leaving ends the session participant_left once the timeout has passed."""
    built, _, transport = await build()

    async def user_comes_and_goes() -> None:
        await transport.user_joins()
        await transport.user_leaves()

    outcome = await run(built, ReadyLog(then=user_comes_and_goes), participant_left_timeout_s=0.3)
    assert isinstance(outcome, SessionEnded)
    assert outcome.reason == "participant_left"


async def test_user_rejoining_cancels_the_participant_left_timer() -> None:
    """A user who rejoins within participant_left_timeout_s keeps the session alive."""
    built, _, transport = await build()

    async def user_leaves_and_returns() -> None:
        await transport.user_joins()
        await transport.user_leaves()
        await asyncio.sleep(0.1)
        await transport.user_joins()

    outcome = await run(
        built,
        ReadyLog(then=user_leaves_and_returns),
        participant_left_timeout_s=0.4,
        max_duration_s=1.5,
    )
    assert isinstance(outcome, SessionEnded)
    assert outcome.reason == "max_duration"


async def test_idle_pipeline_ends_as_idle() -> None:
    """A pipeline with no speech for idle_timeout_s ends with reason idle."""
    built, _, _ = await build(idle_timeout_s=0.5)
    outcome = await run(built, ReadyLog())
    assert isinstance(outcome, SessionEnded)
    assert outcome.reason == "idle"


async def test_cancelling_run_session_tears_down_and_propagates() -> None:
    """Cancelling run_session (worker shutdown) cancels the pipeline and re-raises CancelledError."""
    built, _, _ = await build()
    is_ready = asyncio.Event()

    async def mark_ready() -> None:
        is_ready.set()

    task = asyncio.create_task(run(built, ReadyLog(then=mark_ready)))
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await is_ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert built.worker.has_finished()
    assert built.http.closed


async def test_failing_ready_callback_ends_the_session_and_raises() -> None:
    """An on_ready that raises tears the pipeline down and its error reaches the caller."""
    built, _, _ = await build()

    async def broken_publisher() -> None:
        raise RuntimeError("broker is gone")

    with pytest.raises(RuntimeError, match="broker is gone"):
        await run(built, ReadyLog(then=broken_publisher))
    assert built.worker.has_finished()


async def test_stop_during_on_ready_lets_on_ready_finish() -> None:
    """A stop that arrives while on_ready is still publishing does not cut on_ready short."""
    built, _, _ = await build()
    stop = asyncio.Event()
    finished: list[str] = []

    async def slow_publisher() -> None:
        stop.set()
        await asyncio.sleep(0.3)
        finished.append("ready published")

    outcome = await run(built, ReadyLog(then=slow_publisher), stop_event=stop)
    assert isinstance(outcome, SessionEnded) and outcome.reason == "stopped"
    assert finished == ["ready published"]

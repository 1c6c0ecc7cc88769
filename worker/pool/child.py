"""The session process (`python -m worker.pool.child`): preloads Pipecat, then runs one session.

Warm-up also builds that session's VAD and smart-turn analyzers (`TurnAnalyzers`): their ONNX
sessions are most of a pipeline build's CPU, paid here before the start command instead of after.

Speaks `worker.pool.protocol` on stdin/stdout and logs JSON lines to stderr. The parent owns
signals: SIGINT/SIGTERM are ignored here, and EOF on stdin (the parent went away) stops the session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import structlog

from pipelines.errors import PipelineError, describe_error
from pipelines.factory import (
    BuiltPipeline,
    ServiceFactory,
    SessionSpec,
    TransportFactory,
    TurnAnalyzers,
    build_pipeline,
)
from pipelines.session import SessionEnded, SessionOutcome, run_session
from pipelines.transcript import TimedContext
from worker.logs import REDACTOR, configure_logging
from worker.pool.protocol import (
    ChildOutcome,
    Command,
    Ended,
    Failed,
    Heartbeat,
    Ready,
    Start,
    Stop,
    Warm,
    decode,
    encode,
    spec_from_dict,
    spec_secrets,
)
from worker.sessions.transcript import from_entries

log = structlog.get_logger("worker.pool.child")

FactoryHook = Callable[[SessionSpec], tuple[ServiceFactory | None, TransportFactory | None]]


class MessageOut:
    """Writes protocol messages to the parent; a parent that went away is noted, not raised."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.is_broken = False

    def send(self, message: Ready | Warm | Heartbeat | Ended | Failed) -> None:
        if self.is_broken:
            return
        try:
            self._stream.write(encode(message))
            self._stream.flush()
        except OSError:  # BrokenPipeError included: the parent is gone; stdin EOF stops us.
            self.is_broken = True


class CommandReader:
    """Reads commands from stdin in a thread (portable) and hands them to the loop; None is EOF.

    It reads the raw file descriptor: a daemon thread blocked inside ``sys.stdin.buffer`` holds
    its lock, and the interpreter aborts on that lock at exit.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._queue: asyncio.Queue[Command | None] = asyncio.Queue()

    def start(self) -> None:
        threading.Thread(target=self._read, name="child-stdin", daemon=True).start()

    async def get(self) -> Command | None:
        return await self._queue.get()

    def _read(self) -> None:
        pending = b""
        while chunk := _read_some(self._fd):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._accept(line)
        self._accept(pending)
        self._put(None)

    def _accept(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            command = decode(line)
        except ValueError as exc:
            log.error("child.bad_command", error=f"unreadable command: {describe_error(exc)}")
            return
        if isinstance(command, Start | Stop):
            self._put(command)
        else:
            log.error("child.bad_command", error=f"{command.type!r} is not a command")

    def _put(self, command: Command | None) -> None:
        # RuntimeError: the loop has closed, nothing is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, command)


class ChildMain:
    """One process, one session: warm → (start → ready → ended|failed) → exit."""

    def __init__(
        self,
        out: MessageOut,
        *,
        heartbeat_s: float,
        hook: FactoryHook | None,
        analyzers: TurnAnalyzers | None = None,
    ) -> None:
        self._out = out
        self._heartbeat_s = heartbeat_s
        self._hook = hook
        self._analyzers = analyzers  # built during warm-up, for the first session only

    async def run(self, warm_s: float) -> int:
        commands = CommandReader(asyncio.get_running_loop(), sys.stdin.fileno())
        commands.start()
        self._out.send(Warm(pid=os.getpid(), warm_s=round(warm_s, 4)))
        log.info("child.warm", warm_s=round(warm_s, 3))
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            first = await commands.get()
            if not isinstance(first, Start):
                log.info("child.stopped_idle", reason="eof" if first is None else first.reason)
                return 0
            self._out.send(await self._serve(first, commands))
        finally:
            heartbeat.cancel()
        return 0

    async def _heartbeat(self) -> None:
        while True:
            self._out.send(Heartbeat())
            await asyncio.sleep(self._heartbeat_s)

    async def _serve(self, start: Start, commands: CommandReader) -> ChildOutcome:
        stop_event = asyncio.Event()

        async def listen() -> None:
            while True:
                command = await commands.get()
                if command is None:
                    log.warning("child.parent_gone")
                    stop_event.set()
                    return
                if isinstance(command, Stop):
                    log.info("child.stop_received", reason=command.reason)
                    stop_event.set()
                else:
                    log.error("child.second_start_ignored")

        listener = asyncio.create_task(listen())
        try:
            return await self._run_session(start, stop_event)
        finally:
            listener.cancel()

    async def _run_session(self, start: Start, stop_event: asyncio.Event) -> ChildOutcome:
        try:
            spec = spec_from_dict(start.spec)
        except ValueError as exc:
            return Failed(
                "worker_protocol_error",
                f"the session's start command was refused: {describe_error(exc)}",
                retryable=False,
            )
        REDACTOR.add(spec_secrets(spec))
        structlog.contextvars.bind_contextvars(session_id=spec.session_id)

        async def on_ready(conversation_id: str) -> None:
            self._out.send(Ready(conversation_id=conversation_id))

        # Analyzer state is per session: a session after the first builds its own.
        analyzers, self._analyzers = self._analyzers, None
        built: BuiltPipeline | None = None
        try:
            services, transport_factory = self._hook(spec) if self._hook else (None, None)
            built = await build_pipeline(
                spec, services=services, transport_factory=transport_factory, analyzers=analyzers
            )
            outcome = await run_session(
                built,
                on_ready=on_ready,
                max_duration_s=start.max_duration_s,
                setup_timeout_s=start.setup_timeout_s,
                avatar_timeout_s=start.avatar_timeout_s,
                participant_left_timeout_s=start.participant_left_timeout_s,
                stop_event=stop_event,
            )
        except PipelineError as exc:
            return Failed(exc.code, exc.message, exc.retryable)
        except Exception as exc:
            log.exception("child.session_error")
            message = f"the session process hit {type(exc).__name__} (see the worker log)"
            return Failed("pipeline_error", message, retryable=False)
        transcript = pipeline_transcript(built) if start.transcript else None
        return dataclasses.replace(outcome_message(outcome), transcript=transcript)


def pipeline_transcript(built: BuiltPipeline | None) -> dict[str, Any] | None:
    """What was said, from the session's LLM context: scrubbed (the spec's secrets are in
    `REDACTOR` by now) and bounded, as a contract `Transcript`."""
    if built is None or not isinstance(built.context, TimedContext):
        return None
    context = built.context
    transcript = from_entries(context.entries(), "pipeline", started_at=context.created_at)
    return transcript.model_dump(mode="json")


def outcome_message(outcome: SessionOutcome) -> ChildOutcome:
    """The protocol message for a `run_session` outcome (messages redacted)."""
    if isinstance(outcome, SessionEnded):
        return Ended(outcome.reason, round(outcome.duration_s, 3), outcome.conversation_id)
    message = REDACTOR.redact(outcome.message)
    return Failed(outcome.code, message, outcome.retryable, outcome.conversation_id)


def _read_some(fd: int) -> bytes:
    """Up to 64 KiB from ``fd``; b"" at EOF or when the pipe broke."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def preload() -> TurnAnalyzers | None:
    """Import what a session needs beyond this module's imports (Pipecat's pipeline and runner),
    and build the session's VAD and smart-turn analyzers (None if that failed: the session then
    builds its own, and meets the same error there), so a session starts fast."""
    from pipelines.availability import daily_availability

    available, reason = daily_availability()  # imports DailyTransport and TavusVideoService
    if not available:
        log.warning("child.daily_unavailable", reason=reason)
    modules = ("services.deepgram.stt", "services.openai.llm", "services.cartesia.tts")
    for module in (*modules, "audio.turn.smart_turn.local_smart_turn_v3"):
        try:
            importlib.import_module(f"pipecat.{module}")
        except ImportError as exc:
            log.warning("child.preload_failed", module=module, error=describe_error(exc))
    try:
        return TurnAnalyzers.create()  # loads onnxruntime and both models
    except Exception as exc:
        log.warning("child.analyzers_failed", error=describe_error(exc))
        return None


def load_hook(target: str) -> FactoryHook:
    """Import ``module:attribute``: a callable from a spec to (ServiceFactory, transport factory)."""
    module_name, _, attribute = target.partition(":")
    hook = getattr(importlib.import_module(module_name), attribute or "factories")
    if not callable(hook):
        raise TypeError(f"--factories {target} is not callable")
    return hook  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m worker.pool.child``."""
    started = time.time()
    parser = argparse.ArgumentParser(prog="python -m worker.pool.child")
    parser.add_argument("--heartbeat-s", type=float, default=1.0)
    parser.add_argument("--factories", help="module:callable making fake services (tests)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--spawned-at", type=float, help="the parent's time.time() at spawn")
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)
    # The protocol gets a private copy of stdout; stray prints from libraries go to stderr.
    out = MessageOut(os.fdopen(os.dup(sys.stdout.fileno()), "wb"))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    configure_logging(level=args.log_level, fmt="json", stream=sys.stderr)
    analyzers = preload()
    hook = load_hook(args.factories) if args.factories else None
    child = ChildMain(out, heartbeat_s=args.heartbeat_s, hook=hook, analyzers=analyzers)
    spawned_at = args.spawned_at if args.spawned_at is not None else started
    return asyncio.run(child.run(max(0.0, time.time() - spawned_at)))


if __name__ == "__main__":
    sys.exit(main())

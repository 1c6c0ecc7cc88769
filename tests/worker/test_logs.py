"""Logging: one JSON stream for our logs, stdlib and Pipecat's loguru, with secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from worker.logs import configure_logging

SECRET = "tvs-live-abcdef0123456789"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", secrets=[SECRET], stream=out)
    yield out
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_configured_secret_is_redacted_in_every_value(stream: io.StringIO) -> None:
    """A secret in an event's message, nested values or exception text is printed as ***."""
    log = structlog.get_logger("test")
    log.warning("tavus.request_failed", url=f"http://x/?key={SECRET}", nested={"k": [SECRET]})
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError:
        log.exception("session.crashed")
    text = stream.getvalue()
    assert SECRET not in text
    [first, second] = lines(stream)
    assert first["url"] == "http://x/?key=***" and first["nested"] == {"k": ["***"]}
    assert second["event"] == "session.crashed" and "boom ***" in str(second["exception"])


def test_stdlib_and_loguru_lines_join_the_same_json_stream(stream: io.StringIO) -> None:
    """Third-party stdlib logs and Pipecat's loguru logs come out as redacted JSON lines too."""
    from loguru import logger as loguru_logger

    logging.getLogger("aiohttp.client").warning("token %s leaked", SECRET)
    loguru_logger.error(f"Failed to setup TavusTransportClient: 401 key={SECRET}")
    records = lines(stream)
    assert [r["logger"] for r in records] == ["aiohttp.client", "pipecat"]
    assert records[1]["level"] == "error"
    assert SECRET not in stream.getvalue()


def test_session_fields_are_bound_on_every_line(stream: io.StringIO) -> None:
    """Lines logged inside a session carry its session_id and attempt without passing them."""
    structlog.contextvars.bind_contextvars(session_id="s-1", attempt=2)
    try:
        structlog.get_logger("x").info("session.ready")
        logging.getLogger("httpx").warning("slow")
    finally:
        structlog.contextvars.clear_contextvars()
    assert [(r["session_id"], r["attempt"]) for r in lines(stream)] == [("s-1", 2), ("s-1", 2)]


def test_library_records_get_a_static_event_with_their_message_as_a_field(
    stream: io.StringIO,
) -> None:
    """An aiormq or asyncio record is event `lib.aiormq` / `lib.asyncio`, its text in `message`,
    so a log pipeline can count them by event."""
    logging.getLogger("aiormq.connection").warning(
        'Connection attempt to "amqp://guest:%s@h/" failed. Reconnecting after 5 seconds.', SECRET
    )
    logging.getLogger("asyncio").error("Task was destroyed but it is pending!")
    first, second = lines(stream)
    assert first["event"] == "lib.aiormq" and first["logger"] == "aiormq.connection"
    assert first["message"] == (
        'Connection attempt to "amqp://guest:***@h/" failed. Reconnecting after 5 seconds.'
    )
    assert (second["event"], second["message"]) == (
        "lib.asyncio",
        "Task was destroyed but it is pending!",
    )


async def test_a_session_process_line_is_forwarded_as_a_record_with_its_fields(
    stream: io.StringIO,
) -> None:
    """A child's JSON log line comes out as one record with the child's event and fields (not
    JSON inside JSON); a stray print is a `child.output` record; secrets are ***."""
    import asyncio

    from worker.logs import REDACTOR
    from worker.pool.childlog import forward_stderr

    child = asyncio.StreamReader()
    child.feed_data(
        json.dumps(
            {
                "event": "pipeline.started",
                "level": "warning",
                "logger": "pipelines.session",
                "timestamp": "2026-01-01T00:00:00Z",
                "session_id": "s-9",
                "frames": 3,
                "args": f"key={SECRET}",
            }
        ).encode()
        + b"\nstray print from a library\n"
    )
    child.feed_eof()
    await forward_stderr(child, 4242, REDACTOR.redact)
    forwarded, stray = [r for r in lines(stream) if r["logger"] == "worker.child"]
    assert forwarded["event"] == "pipeline.started" and forwarded["level"] == "warning"
    assert forwarded["logger"] == "worker.child"
    assert forwarded["child_logger"] == "pipelines.session"
    assert (forwarded["child_pid"], forwarded["session_id"], forwarded["frames"]) == (
        4242,
        "s-9",
        3,
    )
    assert forwarded["child_args"] == "key=***"
    assert stray["event"] == "child.output" and stray["line"] == "stray print from a library"
    assert SECRET not in stream.getvalue()


def test_a_lost_broker_connection_logged_by_aiormq_is_one_line_without_traceback(
    stream: io.StringIO,
) -> None:
    """aiormq's own record of a dropped connection (a node or link gone, which the worker rides
    out) is one line with the error named, not a traceback block; our own crashes keep theirs."""
    try:
        raise ConnectionResetError("Connection reset by peer")
    except ConnectionResetError:
        logging.getLogger("aiormq.connection").exception("Cancelling cause reader exited")
    try:
        raise ValueError("a bug of ours")
    except ValueError:
        structlog.get_logger("worker.test").exception("session.crashed")
    foreign, ours = lines(stream)
    assert foreign["event"] == "lib.aiormq"
    assert foreign["error"] == "ConnectionResetError: Connection reset by peer"
    assert "Traceback" not in stream.getvalue().splitlines()[0]
    assert "Traceback" in str(ours["exception"])

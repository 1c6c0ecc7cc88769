"""Logging: structlog everywhere (JSON when not a TTY), stdlib and Pipecat's loguru routed into it,
and a processor that redacts every configured secret from every line. A library's record gets a
static event (`lib.aiormq`) with its text as `message`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import structlog

REDACTED = "***"


class SecretRedactor:
    """A structlog processor replacing any configured secret found in a log line's values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Register more secrets (values shorter than 4 characters are ignored)."""
        known = set(self.secrets)
        self.secrets += [s for s in secrets if len(s) >= 4 and s not in known]
        self.secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self.redact(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, _logger: object, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event_dict
        for key, value in list(event_dict.items()):
            event_dict[key] = self._scrub(value)
        return event_dict


REDACTOR = SecretRedactor()
OWN_PACKAGES = ("worker", "tavus", "pipelines", "tests")


def name_foreign_event(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A library's stdlib record gets a static event, `lib.<package>` (`lib.aiormq`), with its
    formatted message as the `message` field: a log pipeline can group and count by event."""
    record = event_dict.get("_record")
    package = record.name.split(".")[0] if isinstance(record, logging.LogRecord) else ""
    if package and package not in OWN_PACKAGES:
        event_dict["message"] = event_dict.get("event")
        event_dict["event"] = f"lib.{package}"
        if package in BROKER_CLIENTS:
            _one_line_error(event_dict)
    return event_dict


# The AMQP client libraries log a lost connection (a node or a link gone, which the worker rides
# out by reconnecting) with the library's own traceback: one `error` line says all there is.
BROKER_CLIENTS = ("aiormq", "aio_pika", "pamqp")


def _one_line_error(event_dict: MutableMapping[str, Any]) -> None:
    exc_info = event_dict.pop("exc_info", None)
    record = event_dict.get("_record")
    if exc_info is True and isinstance(record, logging.LogRecord):
        exc_info = record.exc_info
    if isinstance(record, logging.LogRecord):
        record.exc_info, record.exc_text = None, None
    if isinstance(exc_info, tuple) and exc_info[1] is not None:
        exc = exc_info[1]
        event_dict["error"] = f"{type(exc).__name__}: {exc}".strip()[:300]


def configure_logging(
    *,
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    secrets: Iterable[str] = (),
    stream: Any = None,
) -> None:
    """Set up structlog + stdlib + loguru once for the whole process."""
    REDACTOR.add(secrets)
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.stdlib.ExtraAdder(),  # e.g. child_pid on lines forwarded from session processes
        REDACTOR,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[name_foreign_event, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    route_loguru_to_logging()


def route_loguru_to_logging() -> None:
    """Send Pipecat's loguru output through stdlib logging (logger "pipecat"), if loguru is here."""
    try:
        from loguru import logger as loguru_logger
    except ImportError:
        return
    target = logging.getLogger("pipecat")

    def sink(message: Any) -> None:
        record = message.record
        target.log(
            logging.getLevelName(record["level"].name)
            if isinstance(logging.getLevelName(record["level"].name), int)
            else logging.INFO,
            record["message"],
        )

    loguru_logger.remove()
    loguru_logger.add(sink, level="DEBUG", format="{message}")

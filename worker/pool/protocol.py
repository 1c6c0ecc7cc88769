"""The JSON-lines protocol between the worker and a session process, and SessionSpec as JSON.

Parent → child on stdin: `Start`, `Stop`. Child → parent on stdout: `Warm`, `Heartbeat`, `Ready`,
then exactly one `Ended` or `Failed` (with the transcript, scrubbed and bounded, when `Start` asked
for it). Secrets travel as plain strings in `Start` and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from pydantic import SecretStr

from pipelines.factory import SessionSpec


class ProtocolError(ValueError):
    """A line that is not a known message (says what was expected and what came back)."""


@dataclass(frozen=True)
class Start:
    """Run one session with this spec (a `spec_to_dict` dict) and these limits."""

    type: ClassVar[str] = "start"
    spec: dict[str, Any]
    max_duration_s: float
    setup_timeout_s: float
    avatar_timeout_s: float
    participant_left_timeout_s: float = 0.0
    transcript: bool = False  # send the session's transcript with its outcome


@dataclass(frozen=True)
class Stop:
    """End the running session gracefully (it ends as ``stopped``)."""

    type: ClassVar[str] = "stop"
    reason: str = "stopped"


@dataclass(frozen=True)
class Warm:
    """The child has imported Pipecat, Daily, Tavus and Silero and waits for a `Start`."""

    type: ClassVar[str] = "warm"
    pid: int
    warm_s: float


@dataclass(frozen=True)
class Heartbeat:
    """The child's event loop is alive."""

    type: ClassVar[str] = "heartbeat"


@dataclass(frozen=True)
class Ready:
    """The bot is in the user room and the Tavus conversation exists."""

    type: ClassVar[str] = "ready"
    conversation_id: str


@dataclass(frozen=True)
class Ended:
    """The session ran and is over (a contract ``ended`` reason)."""

    type: ClassVar[str] = "ended"
    reason: str
    duration_s: float
    conversation_id: str | None = None
    transcript: dict[str, Any] | None = None  # a contract `Transcript`, when `Start` asked


@dataclass(frozen=True)
class Failed:
    """The session could not start or broke; ``message`` says what to do next."""

    type: ClassVar[str] = "failed"
    code: str
    message: str
    retryable: bool
    conversation_id: str | None = None
    transcript: dict[str, Any] | None = None  # a contract `Transcript`, when `Start` asked


Command = Start | Stop
Message = Warm | Heartbeat | Ready | Ended | Failed
ChildOutcome = Ended | Failed

_TYPES: dict[str, type[Command | Message]] = {
    cls.type: cls for cls in (Start, Stop, Warm, Heartbeat, Ready, Ended, Failed)
}


def encode(message: Command | Message) -> bytes:
    """One JSON line (UTF-8, newline-terminated)."""
    body = {"type": message.type, **dataclasses.asdict(message)}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes | str) -> Command | Message:
    """Parse one JSON line into its message; raises `ProtocolError`."""
    # Never echo the line: a `Start` carries secrets.
    try:
        body = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(
            f"expected a JSON object, got {len(line)} characters of non-JSON"
        ) from exc
    if not isinstance(body, dict):
        raise ProtocolError(f"expected a JSON object, got a JSON {type(body).__name__}")
    kind = body.pop("type", None)
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"expected a type among {sorted(_TYPES)}, got {kind!r}")
    try:
        return cls(**body)
    except TypeError as exc:
        raise ProtocolError(f"a {kind!r} message with fields {sorted(body)}") from exc


# -- SessionSpec as JSON ---------------------------------------------------------------------


def spec_to_dict(spec: SessionSpec) -> dict[str, Any]:
    """The spec as JSON-ready values; SecretStr fields become plain strings (stdin only)."""
    return typing.cast(dict[str, Any], _dump(spec))


def spec_from_dict(data: dict[str, Any]) -> SessionSpec:
    """Rebuild a SessionSpec from `spec_to_dict` output; raises `ProtocolError` on a bad dict."""
    try:
        spec: SessionSpec = _load(SessionSpec, data)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"a SessionSpec dict: {exc}") from exc
    return spec


def spec_secrets(spec: SessionSpec) -> list[str]:
    """Every secret value in the spec (for redacting log lines)."""
    found: list[str] = []
    _collect_secrets(spec, found)
    return found


def _dump(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _load(cls: Any, data: Any) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} expects an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {unknown}")
    return cls(**{name: _load_value(hints[name], value) for name, value in data.items()})


def _load_value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        if option is SecretStr:
            return SecretStr(value)
        if dataclasses.is_dataclass(option):
            return _load(option, value)
    return value


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _collect_secrets(value: Any, found: list[str]) -> None:
    if isinstance(value, SecretStr):
        if value.get_secret_value():
            found.append(value.get_secret_value())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _collect_secrets(getattr(value, f.name), found)

"""Hostile input: whatever a producer sends (random JSON, near-valid jobs, unicode, huge or deeply
nested bodies, bytes that are not JSON, odd headers and content types) never takes a worker down;
every invalid message lands in the DLQ with an `x-avatar-error` reason, and valid jobs sent among
them all reach `ready`.

The contract's parser (`worker.contract.parse_job`) is the oracle for what is invalid and for the
exact reason; the worker under test is real, on the real broker. One worker serves every example of
a test (hypothesis runs the examples on the test's event loop).
"""

from __future__ import annotations

import asyncio
import json
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.env import ReliabilityHarness, poll_until
from tests.worker.harness import job
from worker.contract import InvalidMessage, parse_job

pytestmark = [
    pytest.mark.broker,
    # hypothesis warns when it prints a falsifying example of 40 kB or more (our huge bodies)
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MARK = "x-fuzz-id"
INT64 = 2**63 - 1


@dataclass
class Hostile:
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"


def rejection(body: bytes) -> str | None:
    """The reason the contract refuses this body, as the DLQ header should carry it (or None)."""
    try:
        parse_job(body)
    except InvalidMessage as exc:
        return exc.reason.replace("\n", " ")[:500]
    return None


def is_invalid(body: bytes) -> bool:
    return rejection(body) is not None


# --- strategies -------------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


random_bodies = st.one_of(
    json_values.map(dumps),
    st.binary(max_size=2000),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(min_value=1, max_value=20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=3_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(min_value=65_000, max_value=200_000).map(
        lambda n: dumps({"session_id": "big", "custom_greeting": "x" * n})
    ),
).filter(is_invalid)

BROKEN_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "session_id": st.sampled_from(["", "a" * 65, "bad id!", "ünï", "a/b", None, 7, ["s"], {}]),
    "version": st.sampled_from([0, 2, -1, "1", "v1", True, None, [1], 10**20]),
    "mode": st.sampled_from(["daily", "AUTO", "", 1, ["auto"], {"m": 1}]),
    "max_duration_s": st.sampled_from([59, 14_401, -1, 0, "sixty", 1e10, 60.5, None, [600]]),
    "participant_left_timeout_s": st.sampled_from([-1, 14_401, "x", 1.5]),
    "metadata": st.sampled_from(["str", [1], 5, {"k": "v" * 9000}]),
    "not_after": st.sampled_from(["yesterday", "2030-01-01T00:00:00", 5, "", []]),
    "persona": st.sampled_from([{}, {"persona_name": ""}, "x", {"persona_name": "a"}, [1]]),
    "replica_id": st.sampled_from(["", "r" * 65, 5, {}]),
    "custom_greeting": st.sampled_from(["x" * 2001, 5, ["hi"]]),
    "language": st.sampled_from(["", "l" * 65, 0]),
    "user_name": st.sampled_from(["", "u" * 201, {}]),
}


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid job with one field broken (or one unknown field added): (the field, the body)."""
    body = job(
        replica_id="r90bbd427f71",
        custom_greeting=draw(st.text(max_size=50)),
        metadata=draw(st.dictionaries(st.text(max_size=8), json_scalars, max_size=3)),
    )
    name = draw(st.sampled_from([*BROKEN_FIELDS, "unknown"]))
    if name == "unknown":
        name = draw(
            st.text(alphabet=string.ascii_letters + "_é", min_size=1, max_size=20).filter(
                lambda k: k not in body and k not in BROKEN_FIELDS and k != "version"
            )
        )
        body[name] = draw(json_scalars)
    else:
        body[name] = draw(BROKEN_FIELDS[name])
    return name, dumps(body)


attempt_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=INT64),
    st.text(max_size=30),
    st.sampled_from(["9" * 5000, "1e3", " 2 ", "-4", "0x10", ""]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),  # AMQP packs floats in 32 bits
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=0, max_value=9), max_size=3),
)
small_headers = st.dictionaries(
    st.text(alphabet=string.ascii_letters + "-_.", min_size=1, max_size=30).filter(
        lambda k: k.lower() not in (MARK, "x-avatar-error", "x-avatar-attempt", "x-avatar-worker")
    ),
    st.one_of(
        st.text(max_size=100),
        st.integers(min_value=-(2**63), max_value=INT64),
        st.booleans(),
    ),
    max_size=3,
)
# One huge header (up to 60 kB: an AMQP header frame must fit the broker's 128 KiB frame_max,
# with room for the worker's own headers when it dead-letters the message).
huge_header = st.integers(min_value=1_000, max_value=60_000).map(
    lambda n: {"x-huge": "é" * (n // 2)}
)
weird_headers = st.one_of(
    small_headers, st.tuples(small_headers, huge_header).map(lambda pair: {**pair[0], **pair[1]})
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "", "application/octet-stream", "application/json; x=y"]
)


def expected_attempt(value: Any) -> int:
    """What the worker should make of an `x-avatar-attempt` header (1 unless a positive int)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return 1
    try:
        return max(int(value), 1)
    except ValueError:
        return 1


# --- running a batch --------------------------------------------------------------------------
async def send_batch(
    h: ReliabilityHarness, hostile: list[Hostile], valid: list[tuple[dict[str, Any], Hostile]]
) -> None:
    """Publish the hostile messages and the valid jobs interleaved; check every outcome."""
    marks: dict[str, Hostile] = {}
    queue: list[Hostile] = []
    for i, message in enumerate(hostile):
        mark = uuid.uuid4().hex
        message.headers = {**message.headers, MARK: mark}
        marks[mark] = message
        queue.append(message)
        if i < len(valid):
            queue.append(valid[i][1])
    queue += [v for _, v in valid[len(hostile) :]]
    h.seen_valid |= {body["session_id"] for body, _ in valid}  # their events may come late
    for message in queue:
        await h.publish(message.body, headers=message.headers, content_type=message.content_type)
    try:
        await check_batch(h, marks, valid)
    finally:  # a failing example must not leave live sessions filling the shared worker's slots
        for body, _ in valid:
            await h.stop_session(body["session_id"])
        await poll_until(
            lambda: all(
                h.terminal(b["session_id"])
                for b, _ in valid
                if "ready" in h.statuses(b["session_id"])
            ),
            10,
        )
        await h.dead_letters(10_000, timeout_s=0.3)  # nothing left over for the next example


async def check_batch(
    h: ReliabilityHarness,
    marks: dict[str, Hostile],
    valid: list[tuple[dict[str, Any], Hostile]],
) -> None:
    for body, message in valid:
        ready = await h.wait_for(body["session_id"], "ready", timeout_s=10)
        attempt = message.headers.get("x-avatar-attempt", 1)
        assert ready["attempt"] == expected_attempt(attempt), (attempt, ready["attempt"])
    dead = await h.dead_letters(len(marks), timeout_s=15)
    by_mark = {str(d.headers.get(MARK)): d for d in dead}
    extra = set(by_mark) - set(marks)
    assert not extra & h.seen_marks, f"dead-lettered twice: {sorted(extra & h.seen_marks)}"
    assert set(by_mark) == set(marks), (
        f"dead-lettered {len(dead)} of {len(marks)}; unexpected {sorted(extra)}, "
        f"missing {sorted(set(marks) - set(by_mark))}"
    )
    h.seen_marks |= set(marks)
    for mark, message in marks.items():
        delivery = by_mark[mark]
        assert delivery.body == message.body
        assert delivery.headers["x-avatar-error"] == rejection(message.body)
    for body, _ in valid:
        await h.stop_session(body["session_id"])
    for body, _ in valid:
        await h.wait_for(body["session_id"], "ended")
    for app, task in h.workers:
        assert not task.done(), f"worker {app.settings.worker_id} exited: {task.exception()!r}"
    strangers = {e["session_id"] for e in h.events} - h.seen_valid
    assert not strangers, f"events for sessions no valid job named: {sorted(strangers)}"


def valid_job() -> tuple[dict[str, Any], Hostile]:
    body = job(metadata={"fuzz": True})
    return body, Hostile(dumps(body))


@pytest.fixture
async def fuzz_worker(h: ReliabilityHarness) -> ReliabilityHarness:
    """One worker (10 slots) for all the examples of a test."""
    await h.start_worker(worker_max_sessions=10)
    return h


@pytest.mark.slow
@FUZZ
@given(bodies=st.lists(random_bodies, min_size=1, max_size=4))
async def test_random_bodies_are_dead_lettered_and_valid_jobs_among_them_run(
    fuzz_worker: ReliabilityHarness, bodies: list[bytes]
) -> None:
    """Random JSON, bytes, unicode text, huge and deeply nested bodies go to the DLQ with the
    parser's one-line reason; a valid job sent among them is ready; the worker stays up."""
    await send_batch(fuzz_worker, [Hostile(b) for b in bodies], [valid_job()])


@pytest.mark.slow
@FUZZ
@given(broken=st.lists(near_valid(), min_size=1, max_size=4))
async def test_near_valid_jobs_are_dead_lettered_naming_the_broken_field(
    fuzz_worker: ReliabilityHarness, broken: list[tuple[str, bytes]]
) -> None:
    """A valid job with one bad or unknown field is dead-lettered with a reason naming that field
    (or the version); valid jobs interleaved with them are ready."""
    for name, body in broken:
        reason = rejection(body)
        assert reason is not None, f"the parser accepted a broken `{name}`: {body[:200]!r}"
        assert f"`{name}" in reason or "version" in reason, (name, reason)
    await send_batch(
        fuzz_worker, [Hostile(body) for _, body in broken], [valid_job() for _ in broken]
    )


@pytest.mark.slow
@FUZZ
@given(
    attempts=st.lists(attempt_values, min_size=1, max_size=3),
    headers=st.lists(weird_headers, min_size=3, max_size=3),
    types=st.lists(content_types, min_size=3, max_size=3),
    bad=random_bodies,
)
async def test_odd_headers_and_content_types_never_stop_a_valid_job(
    fuzz_worker: ReliabilityHarness,
    attempts: list[Any],
    headers: list[dict[str, Any]],
    types: list[str],
    bad: bytes,
) -> None:
    """Valid jobs with odd `x-avatar-attempt` values, huge or strange headers and any content
    type are ready with attempt = the header when it is a positive integer, else 1; an invalid
    body with such headers is dead-lettered with them kept."""
    valid = []
    for i, attempt in enumerate(attempts):
        body = job()
        extra = {**headers[i], "x-avatar-attempt": attempt}
        valid.append((body, Hostile(dumps(body), extra, types[i])))
    hostile = [Hostile(bad, headers[-1], types[-1])]
    await send_batch(fuzz_worker, hostile, valid)


# --- pinned cases -----------------------------------------------------------------------------
async def test_oversized_and_deeply_nested_bodies_are_refused_cheaply(
    h: ReliabilityHarness,
) -> None:
    """Bodies over 64 KiB (up to 2 MiB) and JSON nested 10 000–30 000 deep are dead-lettered by size or
    as invalid JSON within seconds, and a valid job behind them is ready."""
    await h.start_worker()
    big = dumps({"session_id": "big", "custom_greeting": "x" * (2 * 1024 * 1024)})
    nested = b"[" * 30_000 + b"]" * 30_000
    nested_object = b'{"session_id": "n", "metadata": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001
    hostile = [Hostile(body) for body in (big, nested, nested_object) for _ in range(3)]
    started = time.monotonic()
    await send_batch(h, hostile, [valid_job()])
    assert time.monotonic() - started < 15
    reasons = {rejection(m.body) or "" for m in hostile}
    assert any("the limit is 65536" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param("nested", id="metadata-nested-300-deep"),
        pytest.param("surrogate", id="metadata-lone-surrogate"),
    ],
)
async def test_metadata_that_cannot_be_echoed_is_refused_not_crashing_the_session(
    h: ReliabilityHarness, metadata: str
) -> None:
    """A job whose metadata the worker could not echo in its events (nested 300 deep, or a lone
    UTF-16 surrogate escaped in the JSON) is dead-lettered with a reason naming `metadata`; no
    session starts, no conversation is created, and the next job is ready."""
    await h.start_worker()
    sid = f"m-{uuid.uuid4().hex[:8]}"
    if metadata == "nested":
        body = b'{"session_id": "%s", "metadata": ' % sid.encode() + b'{"a":' * 300 + b"1"
        body += b"}" * 301
    else:
        body = b'{"session_id": "%s", "metadata": {"k": "\\ud800"}}' % sid.encode()
    assert len(body) < 8 * 1024
    await h.publish(body)
    good = job()
    await h.publish(good)
    await h.wait_for(good["session_id"], "ready", timeout_s=20)
    await asyncio.sleep(1.0)
    dead = await h.dead_letters(1, timeout_s=5)
    assert [d.body for d in dead] == [body], h.statuses(sid)
    assert "metadata" in dead[0].headers["x-avatar-error"]
    assert h.statuses(sid) == []
    assert h.created_conversations(sid) == []


@pytest.mark.parametrize(
    "fields",
    [{"max_duration_s": "600"}, {"participant_left_timeout_s": "30"}, {"max_duration_s": 600.0}],
    ids=["max_duration_s-string", "participant_left_timeout_s-string", "max_duration_s-float"],
)
def test_numbers_sent_as_strings_or_floats_are_refused(fields: dict[str, Any]) -> None:
    """The contract's integer fields take JSON integers only: "600" or 600.0 is refused, like any
    other wrong type, instead of being coerced."""
    reason = rejection(dumps(job(**fields)))
    assert reason is not None and f"`{next(iter(fields))}`" in reason, reason


async def test_jobs_whose_events_cannot_be_built_never_stall_the_worker(
    h: ReliabilityHarness,
) -> None:
    """More such poison jobs than the worker has slots, then a valid job: the valid job is still
    ready (each poison delivery is settled, so none holds a prefetch slot for ever)."""
    await h.start_worker(worker_max_sessions=3)
    poison = [
        b'{"session_id": "p-%d-%s", "metadata": {"k": "\\ud800"}}'
        % (i, uuid.uuid4().hex[:6].encode())
        for i in range(4)
    ]
    for body in poison:
        await h.publish(body)
    good = job()
    await h.publish(good)
    await h.wait_for(good["session_id"], "ready", timeout_s=20)


async def test_invalid_job_with_headers_near_the_frame_limit_is_dead_lettered_once(
    h: ReliabilityHarness,
) -> None:
    """An invalid job whose headers almost fill an AMQP frame (128 KiB) is dead-lettered once,
    even though the worker's own headers would not fit beside them, and the worker (and its
    live sessions) are not disturbed by it."""
    await h.start_worker()
    live = job()
    await h.publish(live)
    await h.wait_for(live["session_id"], "ready")
    size = 131_072 - 150  # what still fits one frame for the producer
    await h.publish(b"not json", headers={"x-pad": "p" * size})
    dead = await h.dead_letters(1, timeout_s=10)
    assert len(dead) == 1 and dead[0].body == b"not json"
    assert "not valid JSON" in str(dead[0].headers.get("x-avatar-error"))
    await asyncio.sleep(2.0)
    assert await h.queue_depth() == 0  # not redelivered in a loop
    assert await h.queue_depth(h.topo.dead_letter_queue) == 0  # dead-lettered exactly once
    assert h.statuses(live["session_id"]) == ["accepted", "ready"]  # the live session was not hit
    good = job()
    await h.publish(good)
    await h.wait_for(good["session_id"], "ready")


@pytest.mark.parametrize(
    "attempt", [0, -1, "0", 0.7, 2.5], ids=["zero", "negative", "zero-string", "float", "float-2.5"]
)
async def test_valid_job_with_a_non_positive_attempt_header_starts_as_attempt_1(
    h: ReliabilityHarness, attempt: Any
) -> None:
    """A valid job whose `x-avatar-attempt` header is 0 or negative (a producer's off-by-one) is
    started like a first delivery: `accepted` and `ready` with attempt 1."""
    await h.start_worker()
    body = job()
    await h.publish(body, headers={"x-avatar-attempt": attempt})
    ready = await h.wait_for(body["session_id"], "ready", timeout_s=15)
    assert ready["attempt"] == 1

"""What one pipecat_daily session costs a host, and how many fit: CPU per session per second, RSS
per session, where the time goes (py-spy) and how it grows from 1 to N sessions.

    .venv/bin/pip install py-spy   # for --profile-s (dev extra); the rest needs nothing more
    .venv/bin/python bench/pipecat_capacity.py [--max-sessions 6] [--window-s 30]

Each session runs as the worker runs it: `python -m worker.pool.child` (a warm session process,
`worker.pool.ChildProcess`), started with a `Start` and stopped with a `Stop`, running the
project's `build_pipeline` with Pipecat's DailyTransport, TavusVideoService, Silero VAD and
smart-turn v3. `bench/fake_daily_core.py` injects the media where no room can be joined (the
replica's 1280×720 video at 30 fps, 16 kHz user speech, 24 kHz replica audio) in daily-core's
place, `bench/capacity_media.py` stands in for the speech providers (24 kHz TTS), and a fake
Tavus answers the conversation calls. What is not measured: the
WebRTC work inside daily-core (VP8/Opus decode and encode, RGB↔I420 conversion, networking).

Phases (one run; the box is shared, so compare figures from the same run only):
1. variants, one session at a time, interleaved rounds: `full` (production), `no-video` (the
   replica sends no video: the price of relaying it), and any `--variant NAME=ENV=VALUE`;
2. scaling: 1, 2, … `--max-sessions` (or `--counts 10,12`) concurrent sessions: CPU per
   session, host CPU, video frames out per second per session (30 when keeping up) and
   event-loop lateness;
3. profile: py-spy on one session for `--profile-s` seconds (skipped when py-spy is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.speechlike import speechlike  # noqa: E402
from pipelines.config import (  # noqa: E402
    LlmConfig,
    ProviderConfig,
    SttConfig,
    TavusAvatarConfig,
    TtsConfig,
)
from pipelines.spec import SessionSpec  # noqa: E402
from worker.logs import configure_logging  # noqa: E402
from worker.pool import ChildOptions, ChildProcess, child_env  # noqa: E402

HOOK = "bench.capacity_media:hook"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- the fake Tavus -----------------------------------------------------------------------


class FakeTavus:
    """Answers TavusVideoService's create and end calls; counts them."""

    def __init__(self) -> None:
        self.created = 0
        self.ended = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/conversations", self._create)
        app.router.add_post("/v2/conversations/{cid}/end", self._end)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v2"

    async def _create(self, _request: web.Request) -> web.Response:
        self.created += 1
        cid = f"cbench{self.created:04d}"
        return web.json_response(
            {"conversation_id": cid, "conversation_url": f"https://tavus.daily.co/{cid}"}
        )

    async def _end(self, _request: web.Request) -> web.Response:
        self.ended += 1
        return web.json_response({})

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- reading a process --------------------------------------------------------------------


def cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def context_switches(pid: int) -> int:
    """Context switches of all the process's threads so far (each is a wake-up or a preemption)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    return total


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB; PSS shares each page among the processes mapping it."""
    rss = pss = float("nan")
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --- sessions -----------------------------------------------------------------------------


@dataclass
class Session:
    child: ChildProcess
    idle_rss_mb: float
    idle_pss_mb: float


@dataclass
class Window:
    """What N concurrent sessions did over one measuring window."""

    n: int
    seconds: float
    cpu_per_session: list[float]  # CPU-s per wall-s, per session process
    sys_share: list[float]  # of which in the kernel
    switches_per_s: list[float]  # context switches per second, all threads
    rss_mb: list[float]
    pss_mb: list[float]
    idle_rss_mb: list[float]
    idle_pss_mb: list[float]
    host_cpu: float  # fraction of all CPUs busy (everything on the box)
    video_out_fps: list[float]
    video_in_fps: list[float]
    lag_mean_ms: list[float]
    lag_max_ms: list[float]
    replies_per_min: list[float]
    observer_calls_per_s: list[float]
    outcomes: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace, tavus: FakeTavus, media_dir: Path) -> None:
        self.args = args
        self.tavus = tavus
        self.media_dir = media_dir
        self.stats_dir = Path(tempfile.mkdtemp(prefix="capacity-stats-"))
        self._count = 0

    def options(self, extra_env: dict[str, str]) -> ChildOptions:
        env = dict(os.environ)
        env.update(
            CAPACITY_MEDIA_DIR=str(self.media_dir),
            CAPACITY_STATS_DIR=str(self.stats_dir),
            PYTHONPATH=str(REPO),
        )
        env.update(extra_env)
        return ChildOptions(
            args=("--factories", HOOK, "--log-level", "WARNING"),
            env=child_env(env),
            heartbeat_interval_s=1.0,
            heartbeat_timeout_s=120.0,  # a saturated host must not make the pool kill sessions
        )

    def spec(self) -> SessionSpec:
        self._count += 1
        key = SecretStr("bench-provider-key")
        return SessionSpec(
            session_id=f"cap-{self._count:04d}",
            room_url=f"https://bench.daily.co/user-room-{self._count}",
            bot_token=SecretStr("bench-bot-token"),
            system_prompt="You are Ada, a patient maths tutor.",
            tavus=TavusAvatarConfig(
                api_key=SecretStr("bench-tavus-key"),
                base_url=self.tavus.base_url,
                replica_id="rbench",
            ),
            providers=ProviderConfig(
                stt=SttConfig(api_key=key), llm=LlmConfig(api_key=key), tts=TtsConfig(api_key=key)
            ),
            idle_timeout_s=300.0,  # PIPELINE_IDLE_TIMEOUT_S: the worker watches for idle sessions
        )

    async def start(self, n: int, extra_env: dict[str, str]) -> list[Session]:
        """N warm session processes, each given a session and ready."""
        options = self.options(extra_env)
        children = await asyncio.gather(
            *(
                ChildProcess.spawn(options, cold_start=False, on_exit=lambda _c: None)
                for _ in range(n)
            )
        )
        await asyncio.gather(*(c.wait_warm(120) for c in children))
        await asyncio.sleep(1.0)  # let preloading settle before reading idle memory
        sessions = [Session(c, *memory_mb(c.pid)) for c in children]
        for c in children:
            await c.start_session(
                self.spec(),
                max_duration_s=3600,
                setup_timeout_s=60,
                avatar_timeout_s=60,
                participant_left_timeout_s=0,
            )
        await asyncio.gather(*(c.wait_ready() for c in children))
        return sessions

    async def stop(self, sessions: list[Session]) -> list[str]:
        for s in sessions:
            s.child.stop("bench done")
        outcomes = await asyncio.gather(*(s.child.wait_outcome() for s in sessions))
        await asyncio.gather(*(s.child.wait_exited(15) for s in sessions))
        return [
            type(o).__name__ + ":" + getattr(o, "reason", getattr(o, "code", "")) for o in outcomes
        ]

    def counters(self, pid: int) -> dict[str, float]:
        path = self.stats_dir / f"{pid}.json"
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(path.read_text()))
        return {}

    async def measure(self, n: int, extra_env: dict[str, str] | None = None) -> Window:
        sessions = await self.start(n, extra_env or {})
        try:
            await asyncio.sleep(self.args.settle_s)
            pids = [s.child.pid for s in sessions]
            cpu0 = [cpu_s(p) for p in pids]
            sw0 = [context_switches(p) for p in pids]
            c0 = [self.counters(p) for p in pids]
            busy0, total0 = host_busy()
            t0 = time.monotonic()
            await asyncio.sleep(self.args.window_s)
            seconds = time.monotonic() - t0
            cpu1 = [cpu_s(p) for p in pids]
            sw1 = [context_switches(p) for p in pids]
            c1 = [self.counters(p) for p in pids]
            busy1, total1 = host_busy()
            memory = [memory_mb(p) for p in pids]
        except BaseException:
            await self.stop(sessions)
            raise
        outcomes = await self.stop(sessions)

        def rate(key: str, scale: float = 1.0) -> list[float]:
            return [
                (b.get(key, 0) - a.get(key, 0)) / seconds * scale
                for a, b in zip(c0, c1, strict=True)
            ]

        lag_mean = [
            (b.get("lag_sum_ms", 0) - a.get("lag_sum_ms", 0))
            / max(b.get("lag_samples", 0) - a.get("lag_samples", 0), 1)
            for a, b in zip(c0, c1, strict=True)
        ]
        return Window(
            n=n,
            seconds=seconds,
            cpu_per_session=[(sum(b) - sum(a)) / seconds for a, b in zip(cpu0, cpu1, strict=True)],
            sys_share=[
                (b[1] - a[1]) / max(sum(b) - sum(a), 1e-9) for a, b in zip(cpu0, cpu1, strict=True)
            ],
            switches_per_s=[(b - a) / seconds for a, b in zip(sw0, sw1, strict=True)],
            rss_mb=[m[0] for m in memory],
            pss_mb=[m[1] for m in memory],
            idle_rss_mb=[s.idle_rss_mb for s in sessions],
            idle_pss_mb=[s.idle_pss_mb for s in sessions],
            host_cpu=(busy1 - busy0) / max(total1 - total0, 1),
            video_out_fps=rate("video_out"),
            video_in_fps=rate("video_in"),
            lag_mean_ms=lag_mean,
            lag_max_ms=[b.get("lag_max_ms", 0) for b in c1],
            replies_per_min=rate("replies", 60),
            observer_calls_per_s=rate("observer_calls"),
            outcomes=outcomes,
        )

    async def profile(self, seconds: float, out: Path) -> Path | None:
        spy = shutil.which("py-spy") or shutil.which(
            "py-spy", path=str(Path(sys.executable).parent)
        )
        if spy is None:
            print("py-spy is not installed: `.venv/bin/pip install py-spy` for the profile")
            return None
        sessions = await self.start(1, {})
        try:
            await asyncio.sleep(self.args.settle_s)
            argv = [spy, "record", "-p", str(sessions[0].child.pid), "-d", f"{seconds:g}"]
            argv += ["-r", "100", "-f", "raw", "-o", str(out), "--threads", "--nonblocking"]
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            _, err = await proc.communicate()
            if proc.returncode != 0:
                print(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
                return None
        finally:
            await self.stop(sessions)
        return out


# --- the profile, summarised ------------------------------------------------------------------

# Where a sample's CPU goes, by its innermost frame (and, for ONNX, the caller): first match wins.
STAND_IN = ("fake_daily_core.py", "capacity_media.py")
HANDOFF = (
    "_write_to_self", "_read_from_self", "Condition.notify", "ThreadPoolExecutor.submit",
    "run_coroutine_threadsafe", "Future.set_result", "call_soon_threadsafe", "_chain_future",
    "_copy_future_state", "_set_concurrent_future_state", "Future.result",
)  # fmt: skip
PROFILE_BUCKETS = (
    ("smart-turn v3 (ONNX and features, at each end of the user's speech)", ("smart_turn",)),
    ("Silero VAD (ONNX, every 32 ms of user audio)", ("silero", "onnxruntime")),
    ("handing work between threads (daily callbacks, executors → event loop)", HANDOFF),
    ("the event loop's own scheduling", ("asyncio/",)),
)
REST = "the rest of Pipecat: processors' queues and tasks, transports, Tavus echo, observer"


def _bucket(frames: list[str]) -> str:
    leaf = frames[-1]
    if "smart_turn" in ";".join(frames) and ("onnxruntime" in leaf or "smart_turn" in leaf):
        return PROFILE_BUCKETS[0][0]
    for name, marks in PROFILE_BUCKETS[1:]:
        if any(mark in leaf for mark in marks):
            return name
    return REST


WAIT_CALLS = ("sleep(", ".get(", "wait(", ".select(", ".poll(", ".acquire(", "os.read(")


def _source_line(frame: str) -> str:
    """The source line a py-spy frame ("func (path:line)") points at, "" when not found."""
    location = frame.rpartition(" (")[2].rstrip(")")
    path_text, _, line_text = location.rpartition(":")
    roots = [REPO / "bench", REPO, Path(sysconfig.get_paths()["stdlib"])]
    roots.append(Path(sysconfig.get_paths()["purelib"]))
    for root in roots:
        path = root / path_text
        if line_text.isdigit() and path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            number = int(line_text)
            return lines[number - 1] if 0 < number <= len(lines) else ""
    return ""


def summarise_profile(path: Path, top: int = 12) -> list[str]:
    """Where the CPU goes. Samples whose innermost frame is a blocking call (sleep, queue get,
    condition wait, select) are waits py-spy could not tell from work: left out. Samples in the
    daily-core stand-in's own code are counted apart; the rest (production code) are shared out
    by what their innermost frame does, and listed by own frame."""
    buckets: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    waits = stand_in = total = 0
    is_wait: dict[str, bool] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        total += count
        leaf = frames[-1]
        if leaf not in is_wait:
            is_wait[leaf] = any(call in _source_line(leaf) for call in WAIT_CALLS)
        if is_wait[leaf]:
            waits += count
        elif any(name in leaf for name in STAND_IN):
            stand_in += count
        else:
            buckets[_bucket(frames)] += count
            leaves[leaf] += count
    work = max(total - waits - stand_in, 1)
    lines = [
        f"py-spy: {total} samples: {waits} waits, {stand_in} in the daily-core stand-in's own "
        f"code, {work} in production code, shared out:"
    ]
    lines += [f"  {100 * c / work:5.1f}%  {name}" for name, c in buckets.most_common()]
    lines.append(f"top {top} production frames by own time:")
    lines += [f"  {100 * c / work:5.1f}%  {name}" for name, c in leaves.most_common(top)]
    return lines


# --- the run -------------------------------------------------------------------------------


def media(folder: Path) -> None:
    user = np.concatenate([speechlike(3.0, 16000), np.zeros(7 * 16000, dtype=np.int16)])
    np.save(folder / "user16k.npy", user)
    np.save(folder / "replica24k.npy", speechlike(3.0, 24000, seed=2))


def describe(w: Window) -> str:
    med = statistics.median
    return (
        f"n={w.n}: CPU/session {med(w.cpu_per_session):.3f} CPU-s/s "
        f"(min {min(w.cpu_per_session):.3f}, max {max(w.cpu_per_session):.3f}, "
        f"{100 * med(w.sys_share):.0f}% kernel, {med(w.switches_per_s):.0f} switches/s); "
        f"host CPU {w.host_cpu:.2f}; RSS {med(w.rss_mb):.0f} MB (idle {med(w.idle_rss_mb):.0f}), "
        f"PSS {med(w.pss_mb):.0f} MB (idle {med(w.idle_pss_mb):.0f}); "
        f"video out {med(w.video_out_fps):.1f} fps (in {med(w.video_in_fps):.1f}); "
        f"loop late {med(w.lag_mean_ms):.1f} ms mean, {max(w.lag_max_ms):.0f} ms max; "
        f"replies {med(w.replies_per_min):.1f}/min; "
        f"observer calls {med(w.observer_calls_per_s):.0f}/s; {sorted(set(w.outcomes))}"
    )


def parse_variants(values: list[str]) -> dict[str, dict[str, str]]:
    variants: dict[str, dict[str, str]] = {"full": {}, "no-video": {"CAPACITY_VIDEO": "0"}}
    for value in values:
        name, _, assignment = value.partition("=")
        key, _, setting = assignment.partition("=")
        variants.setdefault(name, {})[key] = setting
    return variants


async def run(args: argparse.Namespace) -> None:
    configure_logging(level="WARNING", fmt="console")
    media_dir = Path(tempfile.mkdtemp(prefix="capacity-media-"))
    media(media_dir)
    tavus = FakeTavus()
    await tavus.start()
    bench = Bench(args, tavus, media_dir)
    print(
        f"pipecat_daily capacity: {os.cpu_count()} CPUs, window {args.window_s:g} s, "
        f"settle {args.settle_s:g} s, load average {os.getloadavg()[0]:.2f} at start"
    )
    try:
        variants = parse_variants(args.variant)
        if args.only:
            variants = {name: variants[name] for name in args.only.split(",")}
        results: dict[str, list[Window]] = {name: [] for name in variants}
        for round_no in range(args.rounds):
            for name, env in variants.items():
                window = await bench.measure(1, env)
                results[name].append(window)
                print(f"variant {name} round {round_no + 1}: {describe(window)}")
        if args.rounds:
            print("variants, one session (median of rounds):")
        for name, windows in results.items() if args.rounds else ():
            cpu = statistics.median(statistics.median(w.cpu_per_session) for w in windows)
            rss = statistics.median(statistics.median(w.rss_mb) for w in windows)
            print(f"  {name:12s} {cpu:.3f} CPU-s/s, RSS {rss:.0f} MB")
        if args.max_sessions or args.counts:
            print("scaling:")
        counts = [int(c) for c in args.counts.split(",")] if args.counts else []
        for n in counts or range(1, args.max_sessions + 1):
            print(f"  {describe(await bench.measure(n))}")
        if args.profile_s > 0:
            out = Path(args.profile_out)
            if await bench.profile(args.profile_s, out) is not None:
                print("\n".join(summarise_profile(out)))
                print(f"collapsed stacks: {out}")
        print(f"fake Tavus: {tavus.created} conversations created, {tavus.ended} ended")
    finally:
        await tavus.aclose()
        shutil.rmtree(media_dir, ignore_errors=True)
        shutil.rmtree(bench.stats_dir, ignore_errors=True)


def summarise_only(path: str) -> None:
    """``--summarise FILE``: the profile summary of an earlier run's collapsed stacks."""
    print("\n".join(summarise_profile(Path(path))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-sessions", type=int, default=6)
    parser.add_argument("--counts", help="session counts to measure instead, e.g. 10,12")
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of variants")
    parser.add_argument("--profile-s", type=float, default=20.0, help="0 skips py-spy")
    parser.add_argument("--profile-out", default="/tmp/pipecat_capacity.pyspy.txt")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ENV=VALUE",
        help="an extra one-session variant, given to the session process's environment",
    )
    parser.add_argument("--only", help="measure only these variants, e.g. full,before-cuts")
    parser.add_argument("--summarise", metavar="FILE", help="only summarise a py-spy raw file")
    args = parser.parse_args()
    if args.summarise:
        summarise_only(args.summarise)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

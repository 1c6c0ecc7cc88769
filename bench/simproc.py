"""The provider simulator in its own process for the benchmarks, plus two bench-only endpoints:
``GET /_bench/calls`` (provider calls by endpoint since the last read; it clears the record) and
``POST /_bench/seed-ended`` (``{"n": 1000}`` ended conversations, an account with history).

    python bench/simproc.py            # prints "BASE http://127.0.0.1:PORT" once it serves
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiohttp import web  # noqa: E402

from tavus.sim import Simulator  # noqa: E402
from tavus.sim.context import CONTEXT  # noqa: E402
from tavus.sim.state import Conversation  # noqa: E402
from worker.logs import configure_logging  # noqa: E402

TAVUS_KEY = "sim-tavus-key"
DAILY_KEY = "sim-daily-key"
_ID = re.compile(r"/(c[0-9a-f]{6,}|r[0-9a-f]{6,}|p[0-9a-f]{6,}|aw-[^/]+)(?=/|$)")


def endpoint_of(method: str, path: str) -> str:
    """'GET /v2/conversations/{id}' style: ids folded so calls group by endpoint."""
    return f"{method} {_ID.sub('/{id}', path)}"


async def bench_calls(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    calls, ctx.calls[:] = list(ctx.calls), []
    by_endpoint = Counter(endpoint_of(c.method, c.path) for c in calls)
    by_provider = Counter(c.provider for c in calls)
    return web.json_response({"by_provider": by_provider, "by_endpoint": by_endpoint})


async def seed_ended(request: web.Request) -> web.Response:
    """Ended conversations named like another service's sessions (never ours)."""
    ctx = request.app[CONTEXT]
    n = int((await request.json())["n"])
    now_s = ctx.clock()
    for i in range(n):
        conversation = Conversation(
            conversation_id=f"c{i:012x}",
            conversation_url=f"{ctx.config.public_base_url}/rooms/c{i:012x}",
            replica_id="r90bbd427f71",
            persona_id=None,
            created_at_s=now_s - 86_400 + i,
            request={"conversation_name": f"history-{i}"},
        )
        conversation.status = "ended"
        conversation.ended_at_s = now_s - 86_400 + i + 60
        ctx.state.conversations[conversation.conversation_id] = conversation
    return web.json_response({"seeded": n})


class BenchSimulator(Simulator):
    def _build_app(self) -> web.Application:
        app = super()._build_app()
        app.router.add_get("/_bench/calls", bench_calls)
        app.router.add_post("/_bench/seed-ended", seed_ended)
        return app


async def main() -> None:
    configure_logging(level="WARNING", fmt="json", stream=sys.stderr)
    sim = BenchSimulator(
        tavus_api_keys={TAVUS_KEY},
        daily_api_keys={DAILY_KEY},
        daily_rate_limits=False,
        replica_join_delay_s=0.05,
    )
    async with sim.running(host="127.0.0.1", port=0) as running:
        print(f"BASE {running.base_url}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())

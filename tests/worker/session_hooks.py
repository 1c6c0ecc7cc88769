"""Child-process hooks for worker-level pipecat_daily tests (``--factories
tests.worker.session_hooks:<hook>``): fake speech services and a Daily-like transport, and an
avatar that really creates and ends its conversation at the simulator's Tavus, as Pipecat's
TavusVideoService does, through the HTTP session the pipeline gives it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aiohttp

_PIPELINE_FAKES = str(Path(__file__).resolve().parent.parent / "pipelines")
if _PIPELINE_FAKES not in sys.path:
    sys.path.insert(0, _PIPELINE_FAKES)

from pipecat.processors.frame_processor import FrameProcessor, FrameProcessorSetup  # noqa: E402
from pipeline_fakes import FakeAvatar, FakeServices, FakeTransport  # noqa: E402

from pipelines.avatar import AvatarConnection  # noqa: E402
from pipelines.factory import ServiceFactory, SessionSpec, TransportFactory  # noqa: E402

Factories = tuple[ServiceFactory, TransportFactory]


class SimAvatar(FakeAvatar):
    """Creates the session's conversation at the simulator in setup() and ends it in cleanup()."""

    def __init__(
        self, connection: AvatarConnection, http: aiohttp.ClientSession, spec: SessionSpec
    ) -> None:
        super().__init__(connection, conversation_id=None, replica_joins=True)
        self._http = http
        self._spec = spec
        self._conversation_id: str | None = None

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        tavus = self._spec.tavus
        async with self._http.post(
            f"{tavus.base_url}/conversations",
            json={"replica_id": tavus.replica_id, "persona_id": tavus.persona_id},
            headers={"x-api-key": tavus.api_key.get_secret_value()},
        ) as response:
            if response.status == 200:
                self._conversation_id = (await response.json())["conversation_id"]

    async def cleanup(self) -> None:
        if self._conversation_id is not None:
            tavus = self._spec.tavus
            async with self._http.post(
                f"{tavus.base_url}/conversations/{self._conversation_id}/end",
                headers={"x-api-key": tavus.api_key.get_secret_value()},
            ):
                pass
        await super().cleanup()


class SimServices(FakeServices):
    def create_avatar(
        self, spec: SessionSpec, http: aiohttp.ClientSession, connection: AvatarConnection
    ) -> FrameProcessor:
        self.avatar = SimAvatar(connection, http, spec)
        return self.avatar


def sim_avatar(spec: SessionSpec) -> Factories:
    """Fake speech services, a transport that joins at once, and the simulator-backed avatar."""
    transport = FakeTransport()
    return SimServices(), lambda _spec: transport


def join_fails(spec: SessionSpec) -> Factories:
    """Like `sim_avatar`, but joining the user's Daily room fails (an unreachable room)."""
    transport = FakeTransport(join_error="Failed to join: room lookup failed (unreachable)")
    return SimServices(), lambda _spec: transport


class _UserJoinsAtOnce(FakeTransport):
    """A transport whose user is in the room as soon as the bot joins."""

    async def join(self) -> None:
        await super().join()
        await self.user_joins()


def user_greeted(spec: SessionSpec) -> Factories:
    """Like `sim_avatar`, but the user is there at once: the avatar greets them (the fake LLM's
    reply goes into the pipeline's context, and so into its transcript)."""
    transport = _UserJoinsAtOnce()
    return SimServices(), lambda _spec: transport

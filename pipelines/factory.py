"""Builds one session's pipeline: Tavus over Daily, the canonical Pipecat 1.14 topology.

``transport.input → stt → user aggregator (Silero VAD) → llm → tts → Tavus → transport.output →
assistant aggregator``. The transport and the services come from small factories so tests can
pass fakes; Daily and Tavus classes are imported only inside the default factories. The VAD and
smart-turn analyzers can be built ahead of time (`TurnAnalyzers`): a warm session process does so
while it waits, since their ONNX sessions are most of what building a pipeline costs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog
from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer
from pipecat.frames.frames import LLMRunFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import (
    UserTurnStrategies,
    default_user_turn_start_strategies,
)
from pydantic import SecretStr

from pipelines.availability import daily_availability
from pipelines.avatar import (
    AvatarConnection,
    ReplicaPresenceObserver,
    conversation_middleware,
    point_tavus_at,
)
from pipelines.errors import DailyUnavailableError, ProviderConfigError
from pipelines.spec import SessionSpec, language_codes
from pipelines.transcript import TimedContext

__all__ = [
    "BuiltPipeline",
    "DefaultServiceFactory",
    "ServiceFactory",
    "SessionSpec",
    "TransportFactory",
    "TurnAnalyzers",
    "build_pipeline",
    "daily_transport",
]

log = structlog.get_logger(__name__)

GREETING_INSTRUCTION = (
    "The user has just joined the call. Greet them briefly in one or two sentences "
    "and invite them to talk."
)


class ServiceFactory(Protocol):
    """Makes the STT, LLM, TTS and avatar processors of one session."""

    def create_stt(self, spec: SessionSpec) -> FrameProcessor: ...

    def create_llm(self, spec: SessionSpec) -> FrameProcessor: ...

    def create_tts(self, spec: SessionSpec) -> FrameProcessor: ...

    def create_avatar(
        self, spec: SessionSpec, http: aiohttp.ClientSession, connection: AvatarConnection
    ) -> FrameProcessor:
        """The processor between TTS and the output transport that renders the replica.

        ``http`` already carries the middleware that fills ``connection``; a fake that makes no
        HTTP calls reports to ``connection`` itself.
        """
        ...


TransportFactory = Callable[[SessionSpec], BaseTransport]


class DefaultServiceFactory:
    """Deepgram STT, an OpenAI-compatible LLM, Cartesia TTS and Pipecat's TavusVideoService."""

    def create_stt(self, spec: SessionSpec) -> FrameProcessor:
        """Deepgram streaming STT in the session's language (the job's model/language if chosen)."""
        from pipecat.services.deepgram.stt import DeepgramSTTService

        cfg = spec.resolved_providers().stt
        stt_language = spec.stt_language()
        settings = DeepgramSTTService.Settings(model=cfg.model)
        if stt_language is not None:
            settings.language = stt_language
        stt: FrameProcessor = DeepgramSTTService(api_key=_secret(cfg.api_key), settings=settings)
        return stt

    def create_llm(self, spec: SessionSpec) -> FrameProcessor:
        """An OpenAI-compatible chat LLM at the configured base URL (the job's model if chosen)."""
        from pipecat.services.openai.llm import OpenAILLMService

        cfg = spec.resolved_providers().llm
        llm: FrameProcessor = OpenAILLMService(
            api_key=_secret(cfg.api_key),
            base_url=cfg.base_url,
            settings=OpenAILLMService.Settings(model=cfg.model),
        )
        return llm

    def create_tts(self, spec: SessionSpec) -> FrameProcessor:
        """Cartesia streaming TTS with the configured voice (or the job's chosen one)."""
        from pipecat.services.cartesia.tts import CartesiaTTSService

        cfg = spec.resolved_providers().tts
        tts_language = language_codes(spec.language)[1]
        settings = CartesiaTTSService.Settings(voice=cfg.voice_id)
        if cfg.model is not None:
            settings.model = cfg.model
        if tts_language is not None:
            settings.language = tts_language
        tts: FrameProcessor = CartesiaTTSService(api_key=_secret(cfg.api_key), settings=settings)
        return tts

    def create_avatar(
        self, spec: SessionSpec, http: aiohttp.ClientSession, connection: AvatarConnection
    ) -> FrameProcessor:
        """Pipecat's TavusVideoService, pointed at the configured Tavus base URL."""
        _require_daily()
        from pipecat.services.tavus.video import TavusVideoService

        point_tavus_at(spec.tavus.base_url)
        avatar: FrameProcessor = TavusVideoService(
            api_key=spec.tavus.api_key.get_secret_value(),
            replica_id=spec.tavus.replica_id,
            persona_id=spec.tavus.persona_id,
            session=http,
        )
        return avatar


def daily_transport(spec: SessionSpec) -> BaseTransport:
    """The bot's DailyTransport in the user room: audio in/out and live 1280×720 video out."""
    _require_daily()
    from pipecat.transports.daily.transport import DailyParams, DailyTransport

    params = DailyParams(
        audio_in_enabled=True,
        audio_out_enabled=True,
        video_out_enabled=True,
        video_out_is_live=True,
        video_out_width=1280,
        video_out_height=720,
        # Tavus streams continuously (silence included): no silence of our own.
        audio_out_auto_silence=False,
    )
    token = spec.bot_token.get_secret_value() if spec.bot_token is not None else None
    transport: BaseTransport = DailyTransport(spec.room_url, token, spec.bot_name, params)
    return transport


class TurnAnalyzers:
    """One session's Silero VAD and smart-turn v3 analyzers, built ahead of `build_pipeline`.

    Each holds an onnxruntime InferenceSession, whose creation is most of the CPU a pipeline
    build takes. The analyzers also keep per-stream state (VAD state and model state, the turn's
    audio buffer, the sample rate) that Pipecat never resets between pipelines, so a set serves
    exactly one pipeline: `build_pipeline` claims it and refuses it a second time.
    """

    def __init__(self, vad: VADAnalyzer, turn: BaseTurnAnalyzer) -> None:
        self.vad = vad
        self.turn = turn
        self.claimed = False

    @classmethod
    def create(cls) -> TurnAnalyzers:
        """The analyzers `build_pipeline` makes when given none: Silero VAD and Pipecat's
        default end-of-turn model, LocalSmartTurnAnalyzerV3."""
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

        return cls(SileroVADAnalyzer(), LocalSmartTurnAnalyzerV3())

    def claim(self) -> None:
        """Mark the set as used by a pipeline; raises ValueError if one already used it."""
        if self.claimed:
            raise ValueError(
                "these turn analyzers already served a pipeline (state is per session)"
            )
        self.claimed = True


@dataclass
class BuiltPipeline:
    """One session's pipeline, ready for `pipelines.session.run_session`.

    Owns the HTTP session used for Tavus; `aclose` releases it (idempotent).
    """

    spec: SessionSpec
    pipeline: Pipeline
    worker: PipelineWorker
    transport: BaseTransport
    context: LLMContext
    avatar: AvatarConnection
    http: aiohttp.ClientSession

    async def aclose(self) -> None:
        """Close the HTTP session (after the pipeline has ended its Tavus conversation)."""
        if not self.http.closed:
            await self.http.close()


async def build_pipeline(
    spec: SessionSpec,
    *,
    services: ServiceFactory | None = None,
    transport_factory: TransportFactory | None = None,
    analyzers: TurnAnalyzers | None = None,
) -> BuiltPipeline:
    """Build the pipeline and its PipelineWorker for one session (nothing connects yet).

    ``analyzers``, when given, replace the VAD and smart-turn analyzers built here (see
    `TurnAnalyzers`); without them the pipeline builds its own, as Pipecat's defaults do.
    With the default factories, raises `DailyUnavailableError` where daily-python cannot run
    and `ProviderConfigError` when a provider key is missing.
    """
    services = services or _default_services(spec)
    if analyzers is not None:
        analyzers.claim()
    transport = (transport_factory or daily_transport)(spec)
    context = TimedContext(messages=[{"role": "system", "content": spec.system_message()}])
    user_aggregator, assistant_aggregator = _aggregators(context, analyzers)
    stt, llm, tts = services.create_stt(spec), services.create_llm(spec), services.create_tts(spec)
    connection = AvatarConnection()
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=spec.tavus_http_timeout_s),
        middlewares=(conversation_middleware(connection, spec.tavus.base_url, spec.conversation),),
    )
    try:
        avatar = services.create_avatar(spec, http, connection)
        presence = ReplicaPresenceObserver(connection, avatar)
        pipeline = Pipeline(
            [
                transport.input(),
                stt,
                user_aggregator,
                llm,
                tts,
                avatar,
                transport.output(),
                assistant_aggregator,
            ]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=16000,
                audio_out_sample_rate=24000,
                enable_metrics=True,
                enable_usage_metrics=True,
            ),
            idle_timeout_secs=spec.idle_timeout_s,
            setup_timeout_secs=spec.setup_timeout_s,
            # The user joins with a plain Daily client, not an RTVI client.
            enable_rtvi=False,
            # Turn tracking only feeds tracing and AudioBufferProcessor, neither of which runs
            # here; as an observer it would be handed every frame of the session.
            enable_turn_tracking=False,
            conversation_id=spec.session_id,
            observers=[presence],
        )
        presence.detach_with(worker.remove_observer)
    except BaseException:
        await http.close()
        raise
    built = BuiltPipeline(spec, pipeline, worker, transport, context, connection, http)
    _greet_on_first_participant(built)
    return built


def _aggregators(context: LLMContext, analyzers: TurnAnalyzers | None) -> LLMContextAggregatorPair:
    """The context aggregators; the user one with Silero VAD and Pipecat's default turn strategies."""
    if analyzers is None:
        return LLMContextAggregatorPair(
            context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
        )
    # Pipecat's default strategies, around the prebuilt smart-turn analyzer.
    strategies = UserTurnStrategies(
        start=default_user_turn_start_strategies(),
        stop=[TurnAnalyzerUserTurnStopStrategy(turn_analyzer=analyzers.turn)],
    )
    params = LLMUserAggregatorParams(vad_analyzer=analyzers.vad, user_turn_strategies=strategies)
    pair = LLMContextAggregatorPair(context, user_params=params)
    # The user aggregator took the strategies in its constructor. Pipecat reads a set
    # user_turn_strategies later as "chosen by the user", which overrules strategies a service
    # recommends (e.g. Deepgram Flux); cleared, they stay defaults, as without prebuilt analyzers.
    params.user_turn_strategies = None
    return pair


def _greet_on_first_participant(built: BuiltPipeline) -> None:
    """Speak the custom greeting verbatim, or let the LLM greet, when the user first joins."""
    spec = built.spec

    async def greet(_transport: BaseTransport, _participant: object) -> None:
        log.info("session.user_joined", session_id=spec.session_id)
        if spec.custom_greeting:
            await built.worker.queue_frame(TTSSpeakFrame(spec.custom_greeting))
            return
        built.context.add_message({"role": "system", "content": GREETING_INSTRUCTION})
        await built.worker.queue_frame(LLMRunFrame())

    built.transport.add_event_handler("on_first_participant_joined", greet)


def _default_services(spec: SessionSpec) -> ServiceFactory:
    missing = spec.providers.missing_settings()
    if missing:
        raise ProviderConfigError(f"set {', '.join(missing)} to run pipecat_daily sessions")
    return DefaultServiceFactory()


def _require_daily() -> None:
    available, reason = daily_availability()
    if not available:
        raise DailyUnavailableError(reason or "daily-python is not available")


def _secret(value: SecretStr | None) -> str:
    # Only reached after missing_settings() said the key is there.
    return value.get_secret_value() if value is not None else ""

"""Per-job pipeline choices: the operator's allow-lists, the reasons a job gets, and the choices
reaching the session's services and its WORKER_PIPELINE_HOOK."""

from __future__ import annotations

import asyncio
import json
import warnings

import pytest

from pipelines.config import ServiceChoices
from pipelines.factory import DefaultServiceFactory
from tests.worker.fake_child import make_spec
from tests.worker.test_pool import TEST_TIMEOUT_S, MakePool, make_pool, start
from worker.choices import AllowedChoices, check_choices, disallowed_choice, service_choices
from worker.contract import InvalidMessage, SessionJob, parse_job
from worker.pool import Failed
from worker.settings import Settings

__all__ = ["make_pool"]  # the fixture, shared with test_pool

DEFAULT_VOICE = Settings.model_fields["cartesia_voice_id"].default


def allowed(**env: str) -> AllowedChoices:
    return AllowedChoices.from_settings(Settings(_env_file=None, **env))


def job_with(**pipeline: str) -> SessionJob:
    return parse_job(json.dumps({"session_id": "c-1", "pipeline": pipeline}).encode())


def test_a_job_may_name_the_defaults_and_what_the_operator_allowed() -> None:
    """The configured voice and models, and every allow-listed name, pass the check."""
    rules = allowed(
        pipeline_allowed_llm_models="gpt-4o, gpt-4.1",
        pipeline_allowed_stt_languages="de,fr",
    )
    assert rules.llm_models == {"gpt-4o-mini", "gpt-4o", "gpt-4.1"}
    for picks in (
        {"tts_voice": DEFAULT_VOICE, "llm_model": "gpt-4o-mini", "stt_model": "nova-3"},
        {"llm_model": "gpt-4.1", "stt_language": "fr"},
        {},
    ):
        assert disallowed_choice(job_with(**picks), rules) is None
    assert disallowed_choice(parse_job(b'{"session_id": "c-2"}'), rules) is None


@pytest.mark.parametrize(
    ("picks", "expected"),
    [
        ({"tts_voice": "someone-else"}, "`pipeline.tts_voice`: 'someone-else' is not allowed"),
        (
            {"llm_model": "gpt-5-pro"},
            "allowed: gpt-4o-mini; the operator adds names to PIPELINE_ALLOWED_LLM_MODELS",
        ),
        ({"stt_model": "whisper"}, "`pipeline.stt_model`"),
        (
            {"stt_language": "de"},
            "none is allowed; the operator adds names to PIPELINE_ALLOWED_STT_LANGUAGES",
        ),
    ],
)
def test_a_choice_the_operator_did_not_allow_is_an_invalid_job(
    picks: dict[str, str], expected: str
) -> None:
    """A voice, model or language outside the allow-lists is refused as an invalid job, with a
    one-line reason naming the field, what is allowed and the setting to change."""
    with pytest.raises(InvalidMessage) as caught:
        check_choices(job_with(**picks), allowed())
    assert expected in caught.value.reason
    assert caught.value.reason.startswith("invalid job: ")
    assert caught.value.session_id == "c-1"
    assert "\n" not in caught.value.reason


def test_a_misspelt_choice_or_a_bad_name_breaks_the_contract() -> None:
    """An unknown key inside `pipeline`, or a name with spaces, is refused when the job is parsed."""
    with pytest.raises(InvalidMessage, match=r"unknown field `pipeline\.voice`"):
        job_with(voice="x")
    with pytest.raises(InvalidMessage, match=r"field `pipeline\.llm_model`"):
        job_with(llm_model="gpt 4o; rm -rf")


def test_the_default_services_use_the_jobs_choices() -> None:
    """Deepgram, the LLM and Cartesia are built with the job's model, language and voice."""
    picks = ServiceChoices(
        tts_voice="voice-2", llm_model="gpt-4.1", stt_model="nova-2", stt_language="de"
    )
    spec = make_spec(choices=picks, language="english")
    services = DefaultServiceFactory()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Pipecat's Cartesia module
        stt, llm, tts = (
            services.create_stt(spec),
            services.create_llm(spec),
            services.create_tts(spec),
        )
    assert (stt.settings.model, str(stt.settings.language)) == ("nova-2", "de")
    assert llm.settings.model == "gpt-4.1"
    assert tts.settings.voice == "voice-2"
    plain = services.create_llm(make_spec())
    assert plain.settings.model == "gpt-4o-mini"


async def test_the_pipeline_hook_receives_the_jobs_choices_and_metadata(
    make_pool: MakePool,
) -> None:
    """In a real session process, WORKER_PIPELINE_HOOK's spec carries the job's choices and
    metadata."""
    job = parse_job(
        json.dumps(
            {
                "session_id": "c-3",
                "pipeline": {"llm_model": "gpt-4.1", "stt_language": "de"},
                "metadata": {"tenant": "acme", "n": 1},
            }
        ).encode()
    )
    spec = make_spec(choices=service_choices(job), metadata=dict(job.metadata))
    async with asyncio.timeout(TEST_TIMEOUT_S):
        pool = make_pool(size=0, child_args=["--factories", "tests.worker.choice_hook:echo"])
        await pool.start()
        child = await pool.acquire(timeout_s=TEST_TIMEOUT_S)
        await start(child, spec)
        outcome = await child.wait_outcome()
    assert isinstance(outcome, Failed) and outcome.code == "hook_saw"
    seen = json.loads(outcome.message)
    assert seen["choices"] == {
        "tts_voice": None,
        "llm_model": "gpt-4.1",
        "stt_model": None,
        "stt_language": "de",
    }
    assert seen["metadata"] == {"tenant": "acme", "n": 1}

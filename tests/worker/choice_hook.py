"""A WORKER_PIPELINE_HOOK for tests (``--factories tests.worker.choice_hook:echo``): it fails the
session with what it received, so a test reads the job's choices and metadata in the outcome."""

from __future__ import annotations

import dataclasses
import json

from pipelines.errors import PipelineError
from pipelines.factory import ServiceFactory, SessionSpec, TransportFactory


def echo(spec: SessionSpec) -> tuple[ServiceFactory, TransportFactory]:
    """Raise with the spec's choices and metadata as JSON (the session fails with that message)."""
    seen = {"choices": dataclasses.asdict(spec.choices), "metadata": spec.metadata}
    raise PipelineError(json.dumps(seen, sort_keys=True), code="hook_saw")

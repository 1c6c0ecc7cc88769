"""What the environment means to Settings: an empty variable is an unset one."""

from __future__ import annotations

import pytest

from worker.settings import Settings


def test_every_setting_left_empty_takes_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each variable set to "" (`VAR=` in .env, a compose pass-through, an empty Secret key) gives the
    setting's default: no key counts as given, no name becomes "", no value fails to parse."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    defaults = Settings(_env_file=None)
    for name in Settings.model_fields:
        monkeypatch.setenv(name.upper(), "")
    assert Settings(_env_file=None) == defaults
    assert defaults.tavus_api_key is None and defaults.daily_api_key is None

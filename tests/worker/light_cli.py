"""`python -m tests.worker.light_cli ARGS`: the `avatar-worker` command as a light install (no
`pipecat` extra) runs it. The extra's packages cannot be imported, as if absent; at exit the
process fails (status 3) if one was imported anyway, naming it."""

from __future__ import annotations

import atexit
import importlib.abc
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

# Top-level modules only the `pipecat` extra brings (pip freeze of both installs, compared).
HEAVY = frozenset(
    {
        "pipecat",
        "daily",
        "onnxruntime",
        "numba",
        "llvmlite",
        "numpy",
        "deepgram",
        "openai",
        "loguru",
        "soundfile",
        "soxr",
        "resampy",
        "PIL",
    }
)


class HeavyBlocker(importlib.abc.MetaPathFinder):
    """Refuses every module of the `pipecat` extra, as a light install would not have them."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {fullname!r} (light install)")
        return None


def heavy_modules_loaded() -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)


def _check_at_exit() -> None:
    loaded = heavy_modules_loaded()
    if loaded:
        sys.stderr.write(f"light install imported: {', '.join(loaded[:10])}\n")
        sys.stderr.flush()
        os._exit(3)


if __name__ == "__main__":
    sys.meta_path.insert(0, HeavyBlocker())
    atexit.register(_check_at_exit)
    from worker.cli import main

    sys.exit(main(sys.argv[1:]))

"""requirements.lock (the constraints scripts/lib.sh and the Dockerfile install with) pins every
package the project brings in with its extras, at the version installed here."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "avatar-worker"
EXTRAS = ("dev", "pipecat")


def locked() -> dict[str, str]:
    """Each pin of requirements.lock: {normalised name: version}."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, version = line.partition("#")[0].strip().partition("==")
        if name:
            pins[canonicalize_name(name)] = version
    return pins


def installed_dependencies() -> dict[str, str]:
    """What the project with EXTRAS needs here, followed through the installed packages'
    metadata (markers evaluated for this platform): {normalised name: installed version}."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(PROJECT, frozenset(EXTRAS))]
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        dist = metadata.distribution(name)
        found[canonicalize_name(name)] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                todo.append((req.name, frozenset(req.extras)))
    del found[PROJECT]
    return found


def test_the_lock_pins_every_dependency_at_its_installed_version() -> None:
    """Every package the project's dev and pipecat extras pull in (dependencies of dependencies
    too) is pinned in requirements.lock, at the version this venv has: a fresh clone installs
    the same set."""
    pins = locked()
    needed = installed_dependencies()
    assert sorted(set(needed) - set(pins)) == []
    assert {name: (pins[name], v) for name, v in needed.items() if pins[name] != v} == {}

"""docs/contract.md and the committed JSON Schemas name the same fields: every field of a schema
is in the doc's tables (events: with the statuses that carry it), and every field there exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "contract.md"
SCHEMAS = ROOT / "worker" / "schemas"
FIELD_CELL = re.compile(r"^`([A-Za-z_][A-Za-z0-9_.]*)`$")


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return schema


def field_paths(model: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> set[str]:
    """Every property of a schema object, with nested objects' properties as `outer.inner`."""
    found: set[str] = set()
    for name, prop in model.get("properties", {}).items():
        found.add(prefix + name)
        refs = [prop.get("$ref"), *(option.get("$ref") for option in prop.get("anyOf", []))]
        for ref in filter(None, refs):
            found |= field_paths(defs[ref.rsplit("/", 1)[-1]], defs, f"{prefix}{name}.")
    return found


def event_fields() -> dict[str, set[str]]:
    """Each event field and the statuses whose schema has it."""
    schema = load_schema("event.v1.json")
    defs = schema["$defs"]
    carried: dict[str, set[str]] = {}
    for member in schema["oneOf"]:
        model = defs[member["$ref"].rsplit("/", 1)[-1]]
        status = model["properties"]["status"]["const"]
        for path in field_paths(model, defs):
            carried.setdefault(path, set()).add(status)
    return carried


def doc_section(title: str) -> str:
    """The text under the `## <title>…` heading, up to the next `## ` heading."""
    text = DOC.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def field_rows(section: str) -> dict[str, list[str]]:
    """The rows of the section's tables whose header starts with `field`: name → other cells."""
    rows: dict[str, list[str]] = {}
    in_field_table = False
    for line in section.splitlines():
        if not line.startswith("|"):
            in_field_table = False
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0] == "field":
            in_field_table = True
            continue
        match = FIELD_CELL.match(cells[0]) if cells else None
        if in_field_table and match:
            rows[match.group(1)] = cells[1:]
    return rows


def test_every_job_field_is_documented_and_every_documented_one_exists() -> None:
    """The job table in docs/contract.md lists exactly the fields of job.v1.json, nested ones too."""
    schema = load_schema("job.v1.json")
    in_schema = field_paths(schema, schema.get("$defs", {}))
    in_doc = set(field_rows(doc_section("Job")))
    assert in_schema - in_doc == set(), "fields of job.v1.json missing from docs/contract.md"
    assert in_doc - in_schema == set(), "fields in docs/contract.md that job.v1.json lacks"


def test_every_event_field_is_documented_with_the_statuses_that_carry_it() -> None:
    """The events table lists each field of event.v1.json with exactly the statuses that have it."""
    in_schema = event_fields()
    statuses = set().union(*in_schema.values())
    in_doc = {
        name: statuses if cells[0] == "every" else {s.strip() for s in cells[0].split(",")}
        for name, cells in field_rows(doc_section("Events")).items()
    }
    assert set(in_schema) - set(in_doc) == set(), "event fields missing from docs/contract.md"
    assert set(in_doc) - set(in_schema) == set(), "documented event fields event.v1.json lacks"
    wrong = {name: (in_doc[name], carried) for name, carried in in_schema.items()}
    assert {k: v for k, v in wrong.items() if v[0] != v[1]} == {}, "(doc, schema) statuses differ"


def test_every_stop_field_is_documented_and_every_documented_one_exists() -> None:
    """The stop table lists exactly the fields of stop.v1.json."""
    assert set(field_rows(doc_section("Control"))) == field_paths(load_schema("stop.v1.json"), {})


def test_the_readme_links_the_contract() -> None:
    """A producer reading the README finds docs/contract.md."""
    assert "(docs/contract.md)" in (ROOT / "README.md").read_text()

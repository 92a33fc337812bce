"""The log schema as docs/logging.md writes it down, and checks of captured lines against it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[3] / "docs" / "logging.md"
FIELD_ROW = re.compile(r"^\| `(\w+)` \| ([a-z ]+) \| (always|optional) \|", re.MULTILINE)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
}


@cache
def documented_fields() -> dict[str, tuple[tuple[type, ...], bool, bool]]:
    """field → (accepted types, may be null, always present), read from the doc's table."""
    fields = {}
    for name, kind, presence in FIELD_ROW.findall(DOC.read_text()):
        base, _, null = kind.partition(" or ")
        fields[name] = (TYPES[base], null == "null", presence == "always")
    return fields


def check_line(line: dict[str, Any]) -> None:
    fields = documented_fields()
    assert set(line) <= set(fields), f"undocumented fields {set(line) - set(fields)} in {line}"
    for name, (types, nullable, always) in fields.items():
        if name not in line:
            assert not always, f"{name} missing from {line}"
            continue
        value = line[name]
        if value is None:
            assert nullable, f"{name} is null in {line}"
        else:
            assert isinstance(value, types) and not isinstance(value, bool), (name, line)
    assert TIMESTAMP.fullmatch(line["timestamp"]), line
    assert line["level"] in LEVELS, line


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object in the schema."""
    lines = []
    for raw in text.splitlines():
        assert raw.startswith("{"), f"not a JSON log line: {raw!r}"
        line = json.loads(raw)
        check_line(line)
        lines.append(line)
    return lines


def assert_absent(text: str, secrets: Iterable[str]) -> None:
    for secret in secrets:
        assert secret and secret not in text, f"a secret reached the logs: {secret[:6]}…"


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "minishop.access"]

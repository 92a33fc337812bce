"""Would Elasticsearch index this document under this mapping? A checker for the types we use.

Elasticsearch cannot be installed here, so observability/elasticsearch's index template is
checked against the app's real log lines in Python. Each field type is held to what
Elasticsearch accepts without coercion tricks (a number in a keyword field would be indexed, but
it means the schema drifted), and a field the mapping does not know is an error under
`dynamic: strict`, as Elasticsearch would answer 400 (strict_dynamic_mapping_exception).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

# Elasticsearch's `strict_date_optional_time`, transcribed from its source
# (DateFormatters.STRICT_DATE_OPTIONAL_TIME_FORMATTER): a 4-digit year, then optionally -MM,
# -dd, T, HH, :mm, :ss, a fraction of 1 to 9 digits after "." (or ","), and an offset (Z,
# +HH:MM, +HHMM or +HH). Values are then range-checked (ResolverStyle.STRICT).
STRICT_DATE_OPTIONAL_TIME = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?"
    r"(?:T(?:(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})"
    r"(?:[.,](?P<fraction>\d{1,9}))?)?)?)?(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
INTEGER_RANGES = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}
FLOAT_MAX = {"float": 3.4028235e38, "half_float": 65504.0, "double": math.inf}


def parse_date(value: str, formats: str) -> datetime:
    """`value` read by a date field whose `format` is `formats` (alternatives joined by ||)."""
    for name in formats.split("||"):
        if name != "strict_date_optional_time":
            raise ValueError(f"date format {name} is not implemented in this checker")
        match = STRICT_DATE_OPTIONAL_TIME.fullmatch(value)
        if match is None:
            continue
        numbers = ("year", "month", "day", "hour", "minute", "second")
        parts = {key: int(match[key]) if match[key] else None for key in numbers}
        zone = match["zone"]
        offset: timezone = UTC
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
        fraction = (match["fraction"] or "").ljust(6, "0")[:6]
        return datetime(
            parts["year"] or 0,
            parts["month"] or 1,
            parts["day"] or 1,
            parts["hour"] or 0,
            parts["minute"] or 0,
            parts["second"] or 0,
            int(fraction),
            tzinfo=offset,
        )
    raise ValueError(f"{value!r} does not match {formats}")


def field_problem(mapping: Mapping[str, Any], value: Any) -> str | None:
    """Why a field mapped as `mapping` would not index `value` as that type, or None."""
    kind = mapping.get("type", "object" if "properties" in mapping else None)
    if value is None:
        return None  # null: the field is simply absent from the index
    if kind in ("keyword", "text"):
        if not isinstance(value, str):
            return f"{kind} given {type(value).__name__} {value!r}"
        limit = mapping.get("ignore_above")
        if kind == "keyword" and limit is not None and len(value) > limit:
            return f"{len(value)} characters: over ignore_above {limit}, not indexed"
        return None
    if kind in INTEGER_RANGES:
        low, high = INTEGER_RANGES[kind]
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{kind} given {type(value).__name__} {value!r}"
        return None if low <= value <= high else f"{value} out of {kind} range"
    if kind in FLOAT_MAX:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{kind} given {type(value).__name__} {value!r}"
        if not math.isfinite(value) or abs(value) > FLOAT_MAX[kind]:
            return f"{value} out of {kind} range"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else f"boolean given {value!r}"
    if kind == "date":
        if not isinstance(value, str):
            return f"date given {type(value).__name__} {value!r}"
        try:
            parse_date(value, mapping.get("format", "strict_date_optional_time"))
        except ValueError as exc:
            return str(exc)
        return None
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"{value!r} is not an IP address (ignore_malformed keeps the document only)"
        return None
    if kind == "flattened":
        return None if isinstance(value, dict) else f"flattened given {value!r}"
    if kind == "object":
        if not isinstance(value, dict):
            return f"object given {type(value).__name__} {value!r}"
        problems = document_problems(value, mapping)
        return "; ".join(problems) or None
    return f"type {kind} is not implemented in this checker"


def document_problems(document: Mapping[str, Any], mapping: Mapping[str, Any]) -> list[str]:
    """Every reason Elasticsearch would refuse `document` or leave one of its fields unindexed.

    `mapping` is a `mappings` object (or an object field): its `properties` and `dynamic`.
    """
    properties = mapping.get("properties", {})
    dynamic = str(mapping.get("dynamic", "true")).lower()
    problems = []
    for name, value in document.items():
        if name not in properties:
            if dynamic == "strict":
                problems.append(f"{name}: not mapped (strict: the document is refused)")
            elif dynamic == "true":
                problems.append(f"{name}: not mapped (would be mapped dynamically)")
            continue
        problem = field_problem(properties[name], value)
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def field_paths(
    mapping: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every searchable field as (dotted path, its mapping), multi-fields (message.keyword) and
    object sub-fields included."""
    for name, field in mapping.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path, field
        yield from field_paths(field, f"{path}.")
        for sub_name, sub_field in field.get("fields", {}).items():
            yield f"{path}.{sub_name}", sub_field

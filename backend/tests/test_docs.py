"""The repository's own documentation tells the truth about the code it describes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from minishop.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
API_CONTRACT = ROOT / "docs" / "api.md"
# Read by the processes around the app rather than by Settings: the file that reads each.
PROCESS_VARIABLES = {
    "APP_ENV": "backend/minishop/config.py",
    "HOST": "backend/gunicorn.conf.py",
    "PORT": "backend/gunicorn.conf.py",
    "WEB_CONCURRENCY": "backend/gunicorn.conf.py",
    "GUNICORN_WORKER_CLASS": "backend/gunicorn.conf.py",
    "GUNICORN_THREADS": "backend/gunicorn.conf.py",
    "GUNICORN_TIMEOUT": "backend/gunicorn.conf.py",
    "PROMETHEUS_MULTIPROC_DIR": "backend/gunicorn.conf.py",
    "EMULATOR_PORT": "tools/run-local.sh",
}
PASSED_THROUGH = {"RATELIMIT_PASSTHROUGH"}  # the "other RATELIMIT_*" row


def configuration_table() -> set[str]:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_every_configuration_row_is_a_real_setting() -> None:
    documented = configuration_table()
    assert "other `RATELIMIT_*`" in README.read_text()
    unknown = documented - set(Settings.model_fields) - set(PROCESS_VARIABLES)
    assert not unknown
    for name, reader in PROCESS_VARIABLES.items():
        assert name in documented
        assert name in (ROOT / reader).read_text(), (name, reader)


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = set(Settings.model_fields) - PASSED_THROUGH - configuration_table()
    assert not missing


def test_every_api_route_is_in_the_contract(app: Any) -> None:
    """docs/api.md lists every route under /api/ (path parameters written {name})."""
    contract = re.sub(r"\{[a-z_]+\}", "{}", API_CONTRACT.read_text())
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?\w+>", "{}", rule.rule)
            assert re.search(rf"{re.escape(path)}(?![\w/{{])", contract), rule.rule


def test_make_help_prints_aligned_plain_text() -> None:
    shown = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = shown.splitlines()
    assert len(lines) >= 10
    assert "$" not in shown
    columns = {re.match(r"  \S+\s+", line).end() for line in lines}  # type: ignore[union-attr]
    assert len(columns) == 1

"""clients/miniprogram: the mini-program's JavaScript client, under Node, against the real stack.

gunicorn serves the app (signatures required, as in production) on the session's MariaDB and
Redis, with the real WeChat emulator for wx.login codes, wx.requestPayment's checks and the
payment itself. The access token lives 2 s, so the Node suite sees 40101 and refreshes; the order
limit is tight, so it sees 429 and waits Retry-After. The suite is `node --test`; this test only
starts what it talks to and asserts it passed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from minishop.config import TestingSettings as AppSettings
from tests.ci import binary, require_binaries
from tests.conftest import gunicorn_server
from wechat_emulator.testing import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE = REPO_ROOT / "clients" / "miniprogram" / "test"
# Node 20 takes no globs, and given the folder it would load the helpers as tests too.
TEST_FILES = [str(path) for path in sorted(SUITE.glob("*.test.js"))]
ACCESS_TOKEN_TTL_SECONDS = 2
ORDER_LIMIT = 3


def test_node_suite_passes_against_the_backend(
    settings: AppSettings,
    catalog: dict[str, Any],
    emulator_process: EmulatorProcess,
    tmp_path: Path,
) -> None:
    require_binaries("node")
    emulator_process.control.reset()
    with gunicorn_server(
        settings,
        tmp_path,
        ACCESS_TOKEN_TTL_SECONDS=str(ACCESS_TOKEN_TTL_SECONDS),
        RATELIMIT_ORDERS=f"{ORDER_LIMIT} per 3 seconds",
    ) as base_url:
        result = subprocess.run(
            [binary("node"), "--test", "--test-concurrency=1", *TEST_FILES],
            cwd=REPO_ROOT,
            env=os.environ
            | {
                "BASE_URL": base_url,
                "EMULATOR_URL": emulator_process.base_url,
                "ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TOKEN_TTL_SECONDS),
                "ORDER_LIMIT": str(ORDER_LIMIT),
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Every suite ran against the backend: none skipped for want of BASE_URL.
    assert "# skipped 0" in result.stdout, output
    assert "# fail 0" in result.stdout, output


def test_node_suite_fails_without_a_backend(tmp_path: Path) -> None:
    """Under CI the suite refuses to skip: nothing listening is a failure, not a pass."""
    require_binaries("node")
    result = subprocess.run(
        [binary("node"), "--test", *TEST_FILES],
        cwd=REPO_ROOT,
        env=os.environ | {"CI": "true", "BASE_URL": "", "EMULATOR_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0, result.stdout

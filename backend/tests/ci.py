"""Whether the tests run on a CI runner, and what a test does when a binary it needs is missing.

On a developer machine such a test is skipped with the apt command to run. On a CI runner it
fails: a CI run must never turn green by skipping what it could not start. GitHub Actions and
most others set CI=true; GitLab sets GITLAB_CI, Jenkins sets JENKINS_URL and BUILD_ID but not CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import NoReturn

import pytest

CI_VARIABLES = ("CI", "GITLAB_CI", "JENKINS_URL", "BUILD_ID")
FALSE_VALUES = {"", "0", "false", "no"}

# The Debian package of each binary a test starts.
PACKAGES = {
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadbd-safe": "mariadb-server",
    "mariadb-admin": "mariadb-client",
    "redis-server": "redis-server",
    "node": "nodejs",
    "chromium": "chromium",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "mvn": "maven",
    "git": "git",
    "rsync": "rsync",
    "shellcheck": "shellcheck",
    "docker-compose": "docker-compose",
    "groovy": "groovy",
    "nginx": "nginx",
}

# Server binaries live in /usr/sbin, which is not on every user's PATH.
BINARY_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when any CI system's variable is set to something other than false."""
    environ = os.environ if environ is None else environ
    return any(environ.get(name, "").strip().lower() not in FALSE_VALUES for name in CI_VARIABLES)


def unavailable(message: str) -> NoReturn:
    """Fail the test under CI, skip it elsewhere."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def binary(name: str) -> str:
    """The binary's full path when installed (else its bare name, for the error to mention)."""
    return shutil.which(name, path=BINARY_PATH) or name


def require_binaries(*names: str) -> None:
    """Skip or fail (see `unavailable`) unless every binary is installed."""
    missing = [name for name in names if shutil.which(name, path=BINARY_PATH) is None]
    if not missing:
        return
    packages = " ".join(sorted({PACKAGES[name] for name in missing}))
    unavailable(
        f"missing {', '.join(missing)}: install with "
        f"`apt-get install -y --no-install-recommends {packages}` (make test does this as root)"
    )

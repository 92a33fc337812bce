"""On every CI system we run on, a test whose server or tool is missing fails; on a laptop it skips.

GitLab and Jenkins do not set CI=true the way GitHub does, so the decision reads their own
variables too; a pytest run in a subprocess shows the outcome a runner would report.
"""

from __future__ import annotations

import pytest

from tests.ci import CI_VARIABLES, in_ci
from tests.conftest import BACKEND_DIR

NEEDS_A_MISSING_BINARY = """
from tests import ci

def test_needs_redis(monkeypatch, tmp_path):
    monkeypatch.setattr(ci, "BINARY_PATH", str(tmp_path))  # an empty directory: no servers
    ci.require_binaries("redis-server")
"""

# What GitHub Actions (and most others), GitLab and Jenkins set.
CI_ENVIRONMENTS = [
    {"CI": "true"},
    {"GITLAB_CI": "true"},
    {"JENKINS_URL": "https://jenkins.example.com/"},
    {"BUILD_ID": "42"},
]


@pytest.mark.parametrize("environ", [*CI_ENVIRONMENTS, {"CI": "1"}, {"CI": "woodpecker"}])
def test_each_ci_system_is_recognised(environ: dict[str, str]) -> None:
    assert in_ci(environ)


@pytest.mark.parametrize(
    "environ", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}, {"GITLAB_CI": ""}, {"PATH": "/bin"}]
)
def test_a_developer_machine_is_not_ci(environ: dict[str, str]) -> None:
    assert not in_ci(environ)


@pytest.fixture()
def outside_ci(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment without any CI variable, with the backend importable.

    The inner run needs no installed plugin; not loading them saves seconds per run.
    """
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(BACKEND_DIR))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return monkeypatch


@pytest.mark.parametrize("environ", CI_ENVIRONMENTS)
def test_a_missing_binary_fails_under_ci(
    pytester: pytest.Pytester, outside_ci: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    for name, value in environ.items():
        outside_ci.setenv(name, value)
    pytester.makepyfile(NEEDS_A_MISSING_BINARY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*missing redis-server*apt-get install*redis-server*"])


def test_a_missing_binary_skips_outside_ci(
    pytester: pytest.Pytester, outside_ci: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(NEEDS_A_MISSING_BINARY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*missing redis-server*apt-get install*redis-server*"])

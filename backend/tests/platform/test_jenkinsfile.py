"""The Jenkinsfile, run for real by ci/jenkins-test and checked by npm-groovy-lint.

No Jenkins server is installable here. ci/jenkins-test runs the real Jenkinsfile under
JenkinsPipelineUnit 1.1 (Maven) and asserts the stage order, the pipelines/ script each stage
calls, the credentials, the `input` before production and the branch gating of `when`; these
tests run that Maven project offline (pipelines/build-jenkins-test.sh resolved it into ~/.m2 in
`make test`) and show it fails on a Jenkinsfile with a misspelt step. npm-groovy-lint applies
CodeNarc's Jenkinsfile rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ci import binary, require_binaries, unavailable

REPO_ROOT = Path(__file__).resolve().parents[3]
PROJECT = REPO_ROOT / "ci" / "jenkins-test"
JENKINSFILE = REPO_ROOT / "Jenkinsfile"
# Attributes of surefire's <testsuite> element (tests, failures, errors, skipped).
SUITE_ATTRIBUTE = re.compile(r'\s(\w+)="([^"]*)"')
GROOVY_LINT = REPO_ROOT / "tools" / "ci-lint" / "node_modules" / ".bin" / "npm-groovy-lint"


def run_maven(tmp_path: Path, jenkinsfile_dir: Path) -> subprocess.CompletedProcess[str]:
    """`mvn -o test` on the Jenkinsfile in jenkinsfile_dir, built outside the source tree."""
    require_binaries("mvn")
    return subprocess.run(
        [
            binary("mvn"),
            "-B",
            "-q",
            "-o",
            "-f",
            str(PROJECT / "pom.xml"),
            f"-Djenkinsfile.dir={jenkinsfile_dir}",
            f"-DbuildDirectory={tmp_path / 'target'}",
            "test",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_jenkins_pipeline_unit_passes_on_the_real_jenkinsfile(tmp_path: Path) -> None:
    result = run_maven(tmp_path, REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    report = tmp_path / "target" / "surefire-reports" / "TEST-minishop.JenkinsfileTest.xml"
    suite = dict(
        SUITE_ATTRIBUTE.findall(report.read_text(encoding="utf-8").split("<testcase", 1)[0])
    )
    assert int(suite["tests"]) >= 7
    assert (suite["failures"], suite["errors"], suite["skipped"]) == ("0", "0", "0")


def test_jenkins_pipeline_unit_fails_on_a_misspelt_step(tmp_path: Path) -> None:
    broken = tmp_path / "repo"
    broken.mkdir()
    text = JENKINSFILE.read_text(encoding="utf-8")
    assert "sh 'pipelines/lint.sh'" in text
    (broken / "Jenkinsfile").write_text(
        text.replace("sh 'pipelines/lint.sh'", "shh 'pipelines/lint.sh'")
    )
    result = run_maven(tmp_path, broken)
    assert result.returncode != 0
    assert "MissingMethodException" in result.stdout + result.stderr
    assert "shh" in result.stdout + result.stderr


@pytest.fixture
def groovy_lint() -> Path:
    if not GROOVY_LINT.exists():
        unavailable("npm-groovy-lint is not installed: run pipelines/install-system-deps.sh test")
    if shutil.which("java") is None:
        unavailable("npm-groovy-lint needs Java: apt-get install -y --no-install-recommends maven")
    return GROOVY_LINT


def test_npm_groovy_lint_passes(groovy_lint: Path) -> None:
    result = subprocess.run(
        [str(groovy_lint), "--noserver", "--failon", "warning", "Jenkinsfile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

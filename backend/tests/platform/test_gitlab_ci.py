""".gitlab-ci.yml, read and run by gitlab-ci-local (tools/ci-lint) on a copy of the repository.

- `gitlab-ci-local --list-json` gives the job graph GitLab would build for the default branch,
  for dev and for a feature branch: stages in the delivery order, the deploy job and environment
  of each branch, production manual and on the default branch only, SonarQube only with a server;
- the `lint` job really runs (shell executor) and passes. The copy reuses this checkout's .venv,
  tools/ci-lint/node_modules and mypy/ruff caches, as GitLab's `cache:` would restore them, so the
  job costs what a warm `make lint` costs instead of a cold install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci import binary, require_binaries, unavailable

REPO_ROOT = Path(__file__).resolve().parents[3]
GITLAB_CI_LOCAL = REPO_ROOT / "tools" / "ci-lint" / "node_modules" / ".bin" / "gitlab-ci-local"
STAGES = ["lint", "test", "build", "deploy-staging", "api-test", "loadtest", "deploy-prod"]
# Shared with the checkout rather than copied: installed trees and caches.
SHARED = [".venv", "tools/ci-lint/node_modules"]
CACHES = [".mypy_cache", "backend/.mypy_cache", "backend/.ruff_cache", ".ruff_cache"]
# Files whose modification time decides whether make / install-system-deps reinstall.
STAMPED = [
    "backend/requirements.lock",
    "backend/requirements-dev.lock",
    "backend/pyproject.toml",
    "tools/wechat_emulator/pyproject.toml",
    "tools/ci-lint/package-lock.json",
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [binary("git"), "-c", "user.name=ci", "-c", "user.email=ci@example.test", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The checkout's files as they are on disk, committed on `main` of a fresh repository."""
    require_binaries("git", "rsync")
    if not GITLAB_CI_LOCAL.exists():
        unavailable("gitlab-ci-local is not installed: run pipelines/install-system-deps.sh test")
    copy = tmp_path_factory.mktemp("gitlab-ci")
    files = git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, files.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    git(copy, "init", "-q", "-b", "main")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "copy")
    for name in SHARED:
        (copy / name).symlink_to(REPO_ROOT / name)
    for name in CACHES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, copy / name)
    for name in STAMPED:
        os.utime(copy / name, (0, 0))
    yield copy


def gitlab_ci_local(
    repo: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GITLAB_CI_LOCAL), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def jobs_on(repo: Path, branch: str, *variables: str) -> dict[str, dict[str, Any]]:
    """The jobs GitLab would run for a push to `branch`, by name (rules that say never dropped)."""
    git(repo, "checkout", "-q", "-B", branch)
    args = [arg for variable in variables for arg in ("--variable", variable)]
    result = gitlab_ci_local(repo, "--list-json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return {job["name"]: job for job in json.loads(result.stdout) if job["when"] != "never"}


def environments_on(repo: Path, branch: str) -> dict[str, str]:
    """Job name → environment, from the `--list` table (--list-json leaves environments out)."""
    git(repo, "checkout", "-q", "-B", branch)
    result = gitlab_ci_local(repo, "--list")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("name "))
    start, end = lines[header].index("environment"), lines[header].index("needs")
    return {
        line.split()[0]: line[start:end].strip()
        for line in lines[header + 1 :]
        if line.strip() and line[start:end].strip()
    }


def needs(job: dict[str, Any]) -> list[str]:
    return [need["job"] for need in job["needs"]] if job.get("needs") is not None else []


def test_stages_are_in_delivery_order() -> None:
    config = yaml.safe_load((REPO_ROOT / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    assert config["stages"] == STAGES


def test_coverage_regex_reads_pytest_covs_total() -> None:
    config = yaml.safe_load((REPO_ROOT / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    pattern = re.compile(config["test"]["coverage"].strip("/"), re.MULTILINE)
    output = "Name   Stmts   Miss Branch BrPart  Cover\nTOTAL   4210   101   1022     47  96.87%\n"
    match = pattern.search(output)
    assert match is not None and match.group(1) == "96.87"
    assert pattern.search("minishop/api/orders.py   120   3   40   2   97%\n") is None


def test_default_branch_goes_through_staging_to_a_manual_prod(repo_copy: Path) -> None:
    jobs = jobs_on(repo_copy, "main")
    assert list(jobs) == [
        "lint",
        "test",
        "build-image",
        "deploy-staging",
        "api-test",
        "rollback",
        "loadtest-smoke",
        "deploy-prod",
    ]
    assert {name: job["stage"] for name, job in jobs.items()} == {
        "lint": "lint",
        "test": "test",
        "build-image": "build",
        "deploy-staging": "deploy-staging",
        "api-test": "api-test",
        "rollback": "api-test",
        "loadtest-smoke": "loadtest",
        "deploy-prod": "deploy-prod",
    }
    assert needs(jobs["lint"]) == needs(jobs["test"]) == []
    assert needs(jobs["build-image"]) == ["lint", "test"]
    assert needs(jobs["deploy-staging"]) == ["build-image"]
    assert needs(jobs["loadtest-smoke"]) == ["test"]
    assert needs(jobs["deploy-prod"]) == ["deploy-staging", "api-test", "loadtest-smoke"]
    assert jobs["rollback"]["when"] == "on_failure"
    assert jobs["deploy-prod"]["when"] == "manual"
    assert environments_on(repo_copy, "main") == {
        "deploy-staging": "staging",
        "rollback": "staging",
        "deploy-prod": "prod",
    }


def test_dev_branch_deploys_to_dev_only(repo_copy: Path) -> None:
    jobs = jobs_on(repo_copy, "dev")
    assert "deploy-dev" in jobs
    assert not {"deploy-test", "deploy-staging", "deploy-prod"} & set(jobs)
    assert environments_on(repo_copy, "dev") == {"deploy-dev": "dev", "rollback": "dev"}


def test_feature_branch_stops_before_build(repo_copy: Path) -> None:
    assert list(jobs_on(repo_copy, "feature/cart")) == ["lint", "test", "loadtest-smoke"]


def test_sonarqube_runs_only_with_a_server(repo_copy: Path) -> None:
    assert "sonarqube" not in jobs_on(repo_copy, "main")
    jobs = jobs_on(repo_copy, "main", "SONAR_HOST_URL=https://sonar.example.test")
    assert needs(jobs["sonarqube"]) == ["test"]


def test_the_lint_job_runs_and_passes(repo_copy: Path) -> None:
    """The real `lint` job, as GitLab's shell runner would run it, on the default branch."""
    require_binaries("shellcheck", "docker-compose", "groovy")
    git(repo_copy, "checkout", "-q", "main")
    # The machine's Go and Helm caches stand in for the job's cache: (a cold Helm build is minutes).
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    variables = [f"HELM_DIR={os.environ.get('HELM_DIR', cache_home / 'minishop' / 'helm')}"]
    if shutil.which("go"):
        for name in ("GOCACHE", "GOMODCACHE"):
            value = subprocess.run(
                ["go", "env", name], capture_output=True, text=True, check=True
            ).stdout
            variables.append(f"{name}={value.strip()}")
    args = [arg for variable in variables for arg in ("--variable", variable)]
    result = gitlab_ci_local(repo_copy, "--force-shell-executor", *args, "lint", timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "lint: all checks passed" in output
    assert re.search(r"PASS\s+lint", output), output[-2000:]

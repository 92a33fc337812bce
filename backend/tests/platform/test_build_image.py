"""pipelines/build-image.sh in DRY_RUN mode (no Docker engine here): the commands it would run.

The tags (commit, branch made a valid Docker tag, latest on main), the push only to $REGISTRY,
the login only with credentials, and the password never on a command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "pipelines" / "build-image.sh"
# Docker's tag grammar (distribution/reference): a word character first, at most 128.
TAG = re.compile(r"[\w][\w.-]{0,127}")
COMMIT = "3f2a9c1e0b7d4f6a8c5e2d1b0a9f8e7d6c5b4a39"
CI_VARIABLES = (
    "CI_COMMIT_SHA",
    "GIT_COMMIT",
    "CI_COMMIT_BRANCH",
    "CI_COMMIT_REF_NAME",
    "BRANCH_NAME",
)
REGISTRY_VARIABLES = ("REGISTRY", "REGISTRY_USER", "REGISTRY_PASSWORD", "IMAGE")


def dry_run(branch: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in CI_VARIABLES + REGISTRY_VARIABLES
    }
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env=clean | {"DRY_RUN": "1", "GIT_COMMIT": COMMIT, "BRANCH_NAME": branch} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def commands(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def tags(build: str) -> list[str]:
    return re.findall(r"--tag (\S+)", build)


@pytest.mark.parametrize(
    ("branch", "tag"),
    [
        ("dev", "dev"),
        ("feature/Pay-v3", "feature-pay-v3"),
        ("fix/#12 upload dir", "fix--12-upload-dir"),
        ("-leading.dash", "leading.dash"),
        ("x" * 200, "x" * 128),
    ],
)
def test_tags_by_commit_and_sanitised_branch(branch: str, tag: str) -> None:
    run = commands(dry_run(branch))

    build = next(command for command in run if command.startswith("docker build"))
    assert tags(build) == [f"minishop/backend:{COMMIT}", f"minishop/backend:{tag}"]
    assert all(TAG.fullmatch(name.split(":", 1)[1]) for name in tags(build))
    assert build.endswith(" .")
    assert f"org.opencontainers.image.revision={COMMIT}" in build


def test_main_is_also_latest_and_pushed_to_the_registry_after_a_login() -> None:
    run = commands(
        dry_run(
            "main",
            REGISTRY="harbor.example.com/",
            IMAGE="shop/backend",
            REGISTRY_USER="robot$ci",
            REGISTRY_PASSWORD="s3cret-pw",
        )
    )

    repo = "harbor.example.com/shop/backend"
    assert run[0] == "docker login --username robot$ci --password-stdin harbor.example.com"
    assert tags(run[1]) == [f"{repo}:{COMMIT}", f"{repo}:main", f"{repo}:latest"]
    assert run[2:] == [f"docker push {repo}:{tag}" for tag in (COMMIT, "main", "latest")] + (
        [f"syft scan {repo}:{COMMIT} --output spdx-json=reports/sbom.spdx.json"]
        if shutil.which("syft")
        else []
    )
    assert not any("s3cret-pw" in command for command in run)


def test_without_a_registry_nothing_is_pushed_and_no_login() -> None:
    result = dry_run("dev", REGISTRY_USER="robot", REGISTRY_PASSWORD="pw")
    run = commands(result)

    assert [command.split()[1] for command in run if command.startswith("docker")] == ["build"]
    assert "nothing pushed" in result.stderr


def test_sbom_only_with_syft() -> None:
    result = dry_run("dev")

    if shutil.which("syft"):
        assert any(command.startswith("syft scan") for command in commands(result))
    else:
        assert "no syft on PATH: no SBOM" in result.stderr


def test_unknown_argument() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--push"], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 2
    assert "usage:" in result.stderr

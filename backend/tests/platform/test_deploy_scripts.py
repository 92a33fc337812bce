"""pipelines/deploy.sh and pipelines/rollback.sh, run for real in their DRY_RUN mode.

No cluster runs here: DRY_RUN=1 renders the release with `helm template` (deploy) or prints the
command (rollback). With the chart in the checkout, every environment's values file is rendered
by the real helm and the image the Deployment runs is checked; helm missing then fails under CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci import unavailable

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "helm" / "minishop"
ENVIRONMENTS = ("dev", "test", "staging", "prod")


def helm_binary() -> str | None:
    """Where deploy.sh finds helm: $HELM, PATH, or pipelines/build-helm.sh's cache."""
    cache = Path(
        os.environ.get("HELM_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minishop" / "helm"
    )
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), str(cache / "bin" / "helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO_ROOT / "pipelines" / script), *args],
        env=os.environ | {"DRY_RUN": "1"} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def helm() -> str:
    if not CHART.is_dir():
        pytest.skip("helm/minishop is not in this checkout: only the argument checks run")
    found = helm_binary()
    if found is None:
        unavailable("helm/minishop exists but no helm was found: run pipelines/build-helm.sh")
    return found


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_deploy_renders_each_environment_with_the_commit_image(helm: str, environment: str) -> None:
    result = run(
        "deploy.sh",
        environment,
        HELM=helm,
        IMAGE_TAG="0123abc",
        REGISTRY="registry.example.com",
        IMAGE="minishop/backend",
    )

    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stderr.splitlines() if line.startswith("+ helm "))
    assert command.startswith("+ helm template minishop helm/minishop")
    assert f"--namespace minishop-{environment}" in command
    assert f"-f helm/minishop/values-{environment}.yaml" in command
    assert "--kube-version" not in command
    documents: list[dict[str, Any]] = [
        doc for doc in yaml.safe_load_all(result.stdout) if doc is not None
    ]
    deployments = [doc for doc in documents if doc["kind"] == "Deployment"]
    backend = [
        container["image"]
        for doc in deployments
        for container in doc["spec"]["template"]["spec"]["containers"]
        if "minishop/backend" in container["image"]
    ]
    assert backend and set(backend) == {"registry.example.com/minishop/backend:0123abc"}


def test_deploy_tags_with_the_commit_when_no_tag_is_given(helm: str) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {name: "" for name in ("IMAGE_TAG", "CI_COMMIT_SHA", "GIT_COMMIT")}

    result = run("deploy.sh", "staging", HELM=helm, **env)

    assert result.returncode == 0, result.stderr
    assert f"image.tag={commit}" in result.stderr
    assert f":{commit}" in result.stdout


@pytest.mark.parametrize("script", ["deploy.sh", "rollback.sh"])
@pytest.mark.parametrize("args", [[], ["qa"], ["production"], ["staging; rm -rf /"]])
def test_only_known_environments_are_accepted(script: str, args: list[str]) -> None:
    result = run(script, *args)

    assert result.returncode == 2
    assert "usage: pipelines/" in result.stderr
    assert "<dev|test|staging|prod>" in result.stderr
    assert "+ helm" not in result.stderr


def test_rollback_plan_names_the_release_namespace_and_revision() -> None:
    result = run("rollback.sh", "prod", "7")

    assert result.returncode == 0, result.stderr
    assert "+ helm rollback minishop 7 --namespace minishop-prod --wait --timeout 10m" in (
        result.stderr
    )


def test_rollback_defaults_to_the_previous_revision() -> None:
    result = run("rollback.sh", "staging", NAMESPACE="shop", DEPLOY_TIMEOUT="3m")

    assert result.returncode == 0, result.stderr
    assert "+ helm rollback minishop --namespace shop --wait --timeout 3m" in result.stderr
    assert "the previous revision" in result.stderr


@pytest.mark.parametrize("revision", ["0", "x", "-1", "2; true"])
def test_rollback_refuses_a_bad_revision(revision: str) -> None:
    result = run("rollback.sh", "prod", revision)

    assert result.returncode == 2
    assert "positive number" in result.stderr


def test_deploy_without_the_chart_says_so(tmp_path: Path) -> None:
    """A checkout without helm/minishop (pipelines/ copied alone) stops before calling helm."""
    shutil.copytree(REPO_ROOT / "pipelines", tmp_path / "pipelines")

    result = subprocess.run(
        ["bash", str(tmp_path / "pipelines" / "deploy.sh"), "staging"],
        env=os.environ | {"IMAGE_TAG": "0123abc"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "helm/minishop/values-staging.yaml not found" in result.stderr
    assert "+ helm" not in result.stderr

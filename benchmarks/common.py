"""Helpers every benchmark uses (standard library only: benchmark children import it from the
competitor tools' own virtualenvs too)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ensure_venv(venv: Path, requirements: Path) -> tuple[Path | None, str | None]:
    """The interpreter of a competitor tool's own virtualenv, created from `requirements` on
    first use and re-created when the file changes: (python, None) or (None, why it failed)."""
    py = venv / "bin" / "python"
    stamp = venv / ".requirements-sha256"
    want = sha256_file(requirements)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py, None
    base = getattr(sys, "_base_executable", None) or sys.executable
    try:
        if not py.exists():
            subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(requirements)],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        return None, f"creating {venv} failed: {(e.stderr or e.stdout or '').strip()[-2000:]}"
    stamp.write_text(want)
    return py, None

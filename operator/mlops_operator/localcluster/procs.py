"""Process facts read from /proc, shared by the CLI, the supervisor and the node agent."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the parenthesised comm: state ppid pgrp session ...
    return stat.rsplit(")", 1)[1].split()


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped by its parent) is dead."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def session_processes(sid: int) -> list[int]:
    """Every live process in session `sid` (the supervisor's session: all cluster processes)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields and fields[0] != "Z" and int(fields[3]) == sid:
                pids.append(int(entry))
    return pids

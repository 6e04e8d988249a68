"""The retraining a DriftMonitor drives, as a small state machine kept in its status
(`status.retrain`): Refreshing (the Dataset snapshots new data) -> Training (a TrainingRun)
-> Succeeded | Failed.

Every retraining carries a token: the monitor's uid and a random nonce. The Dataset's refresh
annotation and the TrainingRun's name and annotation are made from it, so
- a monitor deleted and re-applied (its status starts over at #1) still asks for a new
  snapshot: the annotation differs from the last one, so the Dataset's trigger changes;
- a run left by an earlier monitor of the same name is never adopted as this one's;
- an operator killed between two writes leaves nothing that blocks the next retraining.
Progress is judged by what the Dataset did, not by its trigger's value: the refresh is done
once a snapshot finished after the retraining started and the Dataset has no snapshot owed.
A refresh that cannot finish fails the retraining after REFRESH_DEADLINE_S instead of
blocking every later one.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..api.conditions import epoch, iso

REFRESH_ANNOTATION = "mlops.dev/refresh"
TOKEN_ANNOTATION = "mlops.dev/retrain-token"
REFRESH_DEADLINE_S = 3600.0


def new_step(dm: dict[str, Any], number: int, why: str, dataset: str, refresh: bool, now: float,
             nonce: str | None = None) -> dict[str, Any]:
    """The status of retraining #number, just decided."""
    token = f"{dm['metadata']['uid'][:8]}-{number}-{nonce or secrets.token_hex(3)}"
    return {"number": number, "reason": why[:500], "startedAt": iso(now), "dataset": dataset, "token": token,
            "phase": "Refreshing" if refresh else "Training"}


def refresh_value(dm: dict[str, Any], step: dict[str, Any]) -> str:
    """The Dataset's `mlops.dev/refresh` annotation for this retraining (unique per retraining)."""
    return f"{dm['metadata']['name']}/{step['token']}"


def run_suffix(step: dict[str, Any]) -> str:
    """The TrainingRun's name after the monitor's (`<monitor>-retrain-<n>-<nonce>`)."""
    return f"retrain-{step['number']}-{step['token'].rsplit('-', 1)[-1]}"


def refresh_progress(step: dict[str, Any], dataset: dict[str, Any] | None, caught_up: bool,
                     now: float) -> tuple[str, str]:
    """('waiting' | 'done' | 'failed', why) of the Dataset refresh a retraining asked for.

    `caught_up`: the Dataset's last finished snapshot is for its current trigger (no snapshot
    owed, e.g. for the refresh annotation just set)."""
    if dataset is None:
        return "done", "the Dataset is gone; the run will say so"
    st = dataset.get("status") or {}
    started = epoch(step.get("startedAt")) or now
    finished = epoch(st.get("lastSnapshotTime"))
    if not st.get("activeJob") and caught_up and finished is not None and finished >= started:
        return "done", f"snapshot finished at {st.get('lastSnapshotTime')}"
    if now - started > REFRESH_DEADLINE_S:
        return "failed", (f"Dataset {step.get('dataset')} did not finish a snapshot within "
                          f"{REFRESH_DEADLINE_S:.0f}s of the retraining's start")
    return "waiting", "the snapshot has not finished yet"


def is_ours(run: dict[str, Any], step: dict[str, Any]) -> bool:
    """Whether an existing TrainingRun of that name is this retraining's (a 409 on create)."""
    return (run["metadata"].get("annotations") or {}).get(TOKEN_ANNOTATION) == step.get("token")

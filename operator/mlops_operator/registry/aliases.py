"""Aliases in the MLflow sense: a name (`production`, `champion`, ...) pointing at most at one
version of a model. Users move them by editing `spec.aliases` (or `kubectl mlops promote`),
the operator by a TrainingRun's promotion policy; either way the operator keeps each alias
unique per model and records who moved it, when and why in each version's history.

Who: the `mlops.dev/alias-changed-by` annotation when the mover set it (the plugin and the
operator do), else the field manager of the newest write to spec.aliases (kubectl-edit,
argocd-controller, ...). The operator clears the annotations after recording them, so a
later edit never inherits a stale author.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BY_ANNOTATION = "mlops.dev/alias-changed-by"
REASON_ANNOTATION = "mlops.dev/alias-change-reason"
HISTORY_LIMIT = 50


def aliases_of(mv: dict[str, Any]) -> list[str]:
    return list((mv.get("spec") or {}).get("aliases") or [])


def held_of(mv: dict[str, Any]) -> list[str]:
    """Aliases as of the operator's last reconcile (status), to tell what changed since."""
    return list((mv.get("status") or {}).get("heldAliases") or [])


def _mover(mv: dict[str, Any]) -> tuple[str, str]:
    ann = (mv.get("metadata") or {}).get("annotations") or {}
    if ann.get(BY_ANNOTATION):
        return ann[BY_ANNOTATION], ann.get(REASON_ANNOTATION, "")
    newest, who = "", "unknown"
    for mf in (mv.get("metadata") or {}).get("managedFields") or []:
        spec = ((mf.get("fieldsV1") or {}).get("f:spec") or {})
        if "f:aliases" in spec and (mf.get("time") or "") >= newest:
            newest, who = mf.get("time") or "", mf.get("manager") or "unknown"
    return who, ""


def _change_time(mv: dict[str, Any]) -> str:
    times = [mf.get("time") or "" for mf in (mv.get("metadata") or {}).get("managedFields") or []
             if "f:aliases" in ((mf.get("fieldsV1") or {}).get("f:spec") or {})]
    return max(times, default="")


@dataclass
class AliasPlan:
    """What to do so each alias sits on one version: spec patches on the versions that lose
    an alias to a newer claim (name -> (new aliases, by, reason))."""

    removals: dict[str, tuple[list[str], str, str]] = field(default_factory=dict)


def plan_moves(versions: list[dict[str, Any]]) -> AliasPlan:
    """A version that newly claims an alias takes it from every other version of the model.
    Two new claims at once: the newest write wins (then the higher version number)."""
    plan = AliasPlan()
    current = {v["metadata"]["name"]: aliases_of(v) for v in versions}
    claims: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        for a in aliases_of(v):
            if a not in held_of(v):
                claims.setdefault(a, []).append(v)
    for alias, claimers in sorted(claims.items()):
        winner = max(claimers, key=lambda v: (_change_time(v), v["spec"].get("version", 0)))
        wname = winner["metadata"]["name"]
        by, _ = _mover(winner)
        for v in versions:
            name = v["metadata"]["name"]
            if name != wname and alias in current[name]:
                current[name] = [a for a in current[name] if a != alias]
                plan.removals[name] = (current[name], by, f"{alias} moved to {wname}")
    return plan


def history_updates(mv: dict[str, Any], when: str) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(new history, [(alias, assigned|removed)]) from the diff of spec.aliases vs status."""
    spec, held = aliases_of(mv), held_of(mv)
    by, reason = _mover(mv)
    history = list((mv.get("status") or {}).get("aliasHistory") or [])
    changes = [(a, "assigned") for a in spec if a not in held] + [(a, "removed") for a in held if a not in spec]
    for alias, action in changes:
        history.append({"alias": alias, "action": action, "time": when, "by": by, "reason": reason})
    return history[-HISTORY_LIMIT:], changes


def stage_of(mv: dict[str, Any], versions: list[dict[str, Any]], history: list[dict[str, Any]]) -> str:
    """aliased; archived once it lost an alias or a newer version holds one; else candidate."""
    if aliases_of(mv):
        return "aliased"
    if any(h.get("action") == "removed" for h in history):
        return "archived"
    mine = mv["spec"].get("version", 0)
    if any(aliases_of(v) and v["spec"].get("version", 0) > mine for v in versions):
        return "archived"
    return "candidate"


def retention(versions: list[dict[str, Any]], keep: int, protected: set[str]) -> list[str]:
    """Names of archived versions beyond the newest `keep` (never one in `protected`)."""
    archived = sorted((v for v in versions if (v.get("status") or {}).get("stage") == "archived"
                       and v["metadata"]["name"] not in protected and not v["metadata"].get("deletionTimestamp")),
                      key=lambda v: -v["spec"].get("version", 0))
    return [v["metadata"]["name"] for v in archived[keep:]]


def next_version(versions: list[dict[str, Any]]) -> int:
    return max((v["spec"].get("version", 0) for v in versions), default=0) + 1


def holder(versions: list[dict[str, Any]], alias: str) -> dict[str, Any] | None:
    """The version holding `alias` (the newest claim if the operator has not settled it yet)."""
    holders = [v for v in versions if alias in aliases_of(v) and not v["metadata"].get("deletionTimestamp")]
    return max(holders, key=lambda v: (_change_time(v), v["spec"].get("version", 0)), default=None)

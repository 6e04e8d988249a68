"""`kubectl mlops promote|demote`: the merge patches that move an alias (pure functions).

The plugin only edits `spec.aliases` of the chosen ModelVersion and says who did it and why in two
annotations; the operator takes the alias off the version that held it and appends both moves to
`status.aliasHistory` (reading the annotations for `by` and `reason`).
"""

from __future__ import annotations

import re
from typing import Any

from ..api.base import NAME_PATTERN
from .tables import condition

CHANGED_BY = "mlops.dev/alias-changed-by"
CHANGE_REASON = "mlops.dev/alias-change-reason"
DEFAULT_PROMOTE_REASON = "promoted with kubectl mlops"
DEFAULT_DEMOTE_REASON = "demoted with kubectl mlops"
MAX_ALIASES = 20  # ModelVersionSpec.aliases max_length


class RefusedError(RuntimeError):
    """The change is refused (the message says why and what to do)."""


def check_alias(alias: str) -> str:
    if not alias or len(alias) > 63 or not re.match(NAME_PATTERN, alias):
        raise RefusedError(f"invalid alias {alias!r}: lowercase letters, digits, '-' and '.', at most 63 characters")
    return alias


def readiness_problem(mv: dict[str, Any]) -> str | None:
    """Why `mv` should not get an alias (None: it is Ready)."""
    c = condition(mv)
    if c is None:
        return "it has no Ready condition yet (the operator has not verified it)"
    if c.get("status") != "True":
        detail = ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
        return f"it is not Ready (Ready={c.get('status')}{', ' + detail if detail else ''})"
    return None


def _patch(mv: dict[str, Any], aliases: list[str], user: str, reason: str) -> dict[str, Any]:
    meta = mv.get("metadata") or {}
    body: dict[str, Any] = {"metadata": {"annotations": {CHANGED_BY: user, CHANGE_REASON: reason}},
                            "spec": {"aliases": aliases}}
    # optimistic concurrency: a merge patch carrying resourceVersion fails with 409 when the object
    # changed since we read it, so a concurrent alias change is never overwritten (aliases is a list:
    # a merge patch replaces it whole)
    if meta.get("resourceVersion"):
        body["metadata"]["resourceVersion"] = meta["resourceVersion"]
    return body


def promote_patch(mv: dict[str, Any], alias: str, user: str, reason: str | None = None,
                  force: bool = False) -> dict[str, Any] | None:
    """Merge patch adding `alias` to `mv` (keeping its other aliases); None if it holds it already."""
    check_alias(alias)
    name = (mv.get("metadata") or {}).get("name")
    aliases = list((mv.get("spec") or {}).get("aliases") or [])
    if alias in aliases:
        return None
    if not force:
        problem = readiness_problem(mv)
        if problem:
            raise RefusedError(f"refusing to promote {name} to {alias}: {problem}. "
                               f"Use --force to promote it anyway.")
    if len(aliases) >= MAX_ALIASES:
        raise RefusedError(f"{name} holds {len(aliases)} aliases already (at most {MAX_ALIASES})")
    return _patch(mv, [*aliases, alias], user, reason or DEFAULT_PROMOTE_REASON)


def demote_patch(mv: dict[str, Any], alias: str, user: str, reason: str | None = None) -> dict[str, Any]:
    """Merge patch removing `alias` from `mv`."""
    name = (mv.get("metadata") or {}).get("name")
    aliases = list((mv.get("spec") or {}).get("aliases") or [])
    if alias not in aliases:
        held = f" (it holds: {', '.join(aliases)})" if aliases else " (it holds no aliases)"
        raise RefusedError(f"{name} does not hold alias {alias}{held}")
    return _patch(mv, [a for a in aliases if a != alias], user, reason or DEFAULT_DEMOTE_REASON)


def current_holder(versions: list[dict[str, Any]], alias: str, exclude: str | None = None) -> str | None:
    """Name of the version of a model holding `alias` (other than `exclude`)."""
    for v in versions:
        name = (v.get("metadata") or {}).get("name")
        if name != exclude and alias in ((v.get("spec") or {}).get("aliases") or []):
            return name
    return None

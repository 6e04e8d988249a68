"""What a ServiceAccount really did, from the local API server's audit log, against what its
ClusterRoles grant: the least-privilege check of the operator's RBAC (tests/e2e). The operator
holds two (manifests/base/rbac.yaml): one bound cluster-wide, one per managed namespace; the
check measures their union, and where the namespace role's permissions were used."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

Permission = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


def used_where(log_files: Iterable[Path], user: str, since: datetime | None = None) -> dict[Permission, set[str]]:
    """Permissions `user` exercised successfully (responses below 400), each with the namespaces
    it was used in ("" for cluster-scoped requests); only requests received at `since` or later
    when given (an aware datetime: a kept cluster's log holds earlier runs too)."""
    out: dict[Permission, set[str]] = {}
    for path in log_files:
        if not path.exists():
            continue
        with open(path) as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ref = ev.get("objectRef") or {}
                if (ev.get("user") or {}).get("username") != user or not ref.get("resource"):
                    continue
                if since is not None and _received(ev) < since:
                    continue
                if (ev.get("responseStatus") or {}).get("code", 200) >= 400 and \
                        (ev.get("responseStatus") or {}).get("code") not in (404, 409):
                    continue  # refused: not a permission it has (404/409 still needed the verb)
                res = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                out.setdefault((ref.get("apiGroup") or "", res, ev.get("verb", "")), set()).add(
                    ref.get("namespace") or "")
    return out


def _received(ev: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(ev.get("requestReceivedTimestamp") or ev.get("stageTimestamp") or "")
    except ValueError:
        return datetime.max.replace(tzinfo=timezone.utc)  # undated: kept


def used(log_files: Iterable[Path], user: str) -> set[Permission]:
    """Permissions `user` exercised successfully (responses below 400)."""
    return set(used_where(log_files, user))


def granted(*roles: Mapping[str, Any]) -> set[Permission]:
    """Every (group, resource, verb) the roles grant together."""
    out: set[Permission] = set()
    for role in roles:
        for rule in role.get("rules") or []:
            for g in rule.get("apiGroups") or [""]:
                for r in rule.get("resources") or []:
                    for v in rule.get("verbs") or []:
                        out.add((g, r, v))
    return out


def unused(roles: Mapping[str, Any] | Iterable[Mapping[str, Any]], seen: set[Permission]) -> set[Permission]:
    """Granted by the role (or the union of the roles) but never used."""
    return granted(*([roles] if isinstance(roles, Mapping) else roles)) - seen

"""What a ServiceAccount really did, from the local API server's audit log, against what its
ClusterRole grants: the least-privilege check of the operator's RBAC (tests/e2e)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

Permission = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


def used(log_files: Iterable[Path], user: str) -> set[Permission]:
    """Permissions `user` exercised successfully (responses below 400)."""
    out: set[Permission] = set()
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
                if (ev.get("responseStatus") or {}).get("code", 200) >= 400 and \
                        (ev.get("responseStatus") or {}).get("code") not in (404, 409):
                    continue  # refused: not a permission it has (404/409 still needed the verb)
                res = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                out.add((ref.get("apiGroup") or "", res, ev.get("verb", "")))
    return out


def granted(cluster_role: dict[str, Any]) -> set[Permission]:
    out: set[Permission] = set()
    for rule in cluster_role.get("rules") or []:
        for g in rule.get("apiGroups") or [""]:
            for r in rule.get("resources") or []:
                for v in rule.get("verbs") or []:
                    out.add((g, r, v))
    return out


def unused(cluster_role: dict[str, Any], seen: set[Permission]) -> set[Permission]:
    return granted(cluster_role) - seen

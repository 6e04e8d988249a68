"""Names of the objects the operator creates for a parent (Jobs, Deployments, ConfigMaps).

`<parent>-<suffix>` when it fits in a DNS label (63 characters, what Job and pod names need),
else a prefix of the parent's name plus a hash of its full name and uid. Truncating alone made
two parents whose names differ only past the cut (`...-europe-west1` / `...-europe-west2`) share
one Job, and could end a name in `.` or `-`, which the API server refuses. The hash keeps them
apart; `controllers.kube.create_or_adopt` also refuses to adopt an object another owner holds.
"""

from __future__ import annotations

import hashlib
from typing import Any

#: DNS-1123 label: the longest name a Job (its pods get a `job-name` label) or a Service may have
LIMIT = 63


def child_name(parent: dict[str, Any], suffix: str, limit: int = LIMIT) -> str:
    meta = parent["metadata"]
    name = meta["name"]
    plain = f"{name}-{suffix}"
    if len(plain) <= limit:
        return plain
    digest = hashlib.sha256(f"{name}/{meta.get('uid', '')}".encode()).hexdigest()[:8]
    room = limit - len(suffix) - len(digest) - 2
    prefix = name[:max(room, 1)].rstrip("-.") or "x"
    return f"{prefix}-{digest}-{suffix}"

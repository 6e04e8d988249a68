"""Status conditions in the Kubernetes convention, as plain dicts (the wire form).

`set_condition` keeps `lastTransitionTime` when the status does not change, so a reconcile
that re-asserts the same state never looks like a transition (and emits no Event).
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(t: float) -> str:
    """RFC 3339 (as `now()` writes it) of seconds since the epoch."""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(conditions: list[dict[str, Any]] | None, ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)


def is_true(conditions: list[dict[str, Any]] | None, ctype: str) -> bool:
    c = get_condition(conditions, ctype)
    return bool(c and c.get("status") == "True")


def set_condition(conditions: list[dict[str, Any]] | None, ctype: str, status: bool | str, reason: str,
                  message: str = "", generation: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Return (new conditions, whether the status changed)."""
    st = status if isinstance(status, str) else ("True" if status else "False")
    out = [dict(c) for c in conditions or []]
    cur = get_condition(out, ctype)
    changed = cur is None or cur.get("status") != st
    new = {"type": ctype, "status": st, "reason": reason, "message": message[:32768],
           "lastTransitionTime": now() if cur is None or changed else cur.get("lastTransitionTime", now())}
    if generation is not None:
        new["observedGeneration"] = generation
    if cur is None:
        out.append(new)
    else:
        out[out.index(cur)] = new
    order = {"Ready": 0}
    out.sort(key=lambda c: (order.get(c["type"], 1), c["type"]))
    return out, changed


#: kstatus' abnormal-true conditions: present (True) only while they apply, removed otherwise
#: (as Flux's controllers do), so `kubectl describe` shows them only when they say something.
RECONCILING, STALLED = "Reconciling", "Stalled"


def observe(conditions: list[dict[str, Any]] | None, generation: int | None, *,
            reconciling: tuple[str, str] | None = None,
            stalled: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """The conditions as of `generation`, in the Kubernetes and kstatus conventions.

    Every condition is re-stamped with `observedGeneration: generation`: a reconcile that ran on
    this spec vouches for all of them, even the ones it did not change. Without it a spec change
    that does not move a condition (an alias added to a ModelVersion) leaves them on the old
    generation, and `kubectl wait --for=condition=Ready`, Flux (kstatus) and Argo CD wait forever.

    `reconciling=(reason, message)` while work toward the spec is under way (a snapshot, a
    training, a rollout); `stalled=(reason, message)` while it cannot go on without a change by
    the user. Both are removed when they do not apply.
    """
    out = [dict(c) for c in conditions or [] if c.get("type") not in (RECONCILING, STALLED)]
    for ctype, value in ((RECONCILING, reconciling), (STALLED, stalled)):
        if value is not None:
            prev = get_condition(conditions, ctype)
            out, _ = set_condition(([prev] if prev else []) + out, ctype, True, value[0], value[1], generation)
    if generation is not None:
        for c in out:
            c["observedGeneration"] = generation
    order = {"Ready": 0}
    out.sort(key=lambda c: (order.get(c["type"], 1), c["type"]))
    return out


def epoch(ts: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp as written by `now()` (None stays None)."""
    if not ts:
        return None
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def seconds_between(start: str, end: str) -> float:
    """Seconds between two RFC 3339 timestamps as written by `now()`."""
    t0, t1 = epoch(start), epoch(end)
    if t0 is None or t1 is None:
        raise ValueError(f"seconds between {start!r} and {end!r}: both must be timestamps")
    return t1 - t0


def age(ts: str | None) -> float:
    """Seconds since `ts` (0 when there is none)."""
    t = epoch(ts)
    return 0.0 if t is None else dt.datetime.now(dt.timezone.utc).timestamp() - t

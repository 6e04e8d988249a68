"""How a snapshot's result changes a Dataset's status: versions, latest valid, conditions.

Pure: takes the current status (wire form) and the snapshot Job's summary, returns the new
status and the Events to emit. A failed validation never replaces `latestValid`: the last
good version keeps feeding training.
"""

from __future__ import annotations

from typing import Any

from ..api.conditions import now, set_condition
from ..store.store import store_reason

Event = tuple[str, str, str]  # (type Normal|Warning, reason, message)


def describe_failures(failures: list[dict[str, Any]], limit: int = 3) -> str:
    parts = []
    for f in failures[:limit]:
        where = f"({f['column']})" if f.get("column") else ""
        ex = f" e.g. {', '.join(map(str, f.get('examples') or []))[:60]}" if f.get("examples") else ""
        parts.append(f"{f['check']}{where}: {f['message']}{ex}")
    more = f"; and {len(failures) - limit} more" if len(failures) > limit else ""
    return "; ".join(parts) + more


def record_snapshot(status: dict[str, Any], summary: dict[str, Any], generation: int, history_limit: int,
                    trigger: str) -> tuple[dict[str, Any], list[Event]]:
    st = dict(status)
    events: list[Event] = []
    conds = st.get("conditions") or []
    st["activeJob"] = None
    st["lastSnapshotTrigger"] = trigger
    st["lastSnapshotTime"] = now()
    st["observedGeneration"] = generation
    if "error" in summary:
        msg = f"snapshot failed: {summary['error']}"
        failed = store_reason(summary, "SnapshotFailed")  # e.g. StoreAccessDenied: the store, not the data
        conds, _ = set_condition(conds, "Progressing", False, failed, msg, generation)
        has_valid = bool(st.get("latestValid"))
        reason = "PreviousVersionAvailable" if has_valid else failed
        conds, _ = set_condition(conds, "Ready", has_valid, reason,
                                 (f"latest valid version {st['latestValid']['id']} stays in use; " if has_valid else "")
                                 + msg, generation)
        st["conditions"] = conds
        st["phase"] = "Ready" if has_valid else "Failed"
        events.append(("Warning", failed, msg[:1000]))
        return st, events

    digest = summary["digest"]
    entry = {"id": digest[:12], "digest": digest, "rows": summary["rows"], "columns": summary.get("columns", 0),
             "createdAt": now(), "validated": bool(summary["validated"]), "uri": summary.get("uri", "")}
    if not summary["validated"]:
        entry["failedChecks"] = len(summary.get("failures") or [])
    versions = list(st.get("versions") or [])
    known = next((v for v in versions if v["digest"] == digest), None)
    if known is not None:
        entry = known
        events.append(("Normal", "Unchanged", f"source content unchanged: version {digest[:12]}"))
    else:
        versions.insert(0, entry)
        del versions[history_limit:]
        events.append(("Normal", "NewVersion", f"version {digest[:12]}: {entry['rows']} rows"
                                               f"{'' if entry['validated'] else ' (failed validation)'}"))
    st["versions"] = versions
    st["latest"] = entry
    failures = summary.get("failures") or []
    st["validation"] = {"digest": digest, "passed": bool(summary["validated"]), "failures": failures}
    if summary.get("schema") and not st.get("schema"):
        st["schema"] = {"columns": summary["schema"]}
        events.append(("Normal", "SchemaInferred", f"schema inferred from the first snapshot and frozen: "
                                                   f"{len(summary['schema'])} columns"))
    conds, _ = set_condition(conds, "Progressing", False, "SnapshotComplete", f"version {digest[:12]}", generation)
    if entry["validated"]:
        st["latestValid"] = entry
        st["profile"] = {"rows": entry["rows"], "columns": entry["columns"],
                         "labelDistribution": summary.get("labelDistribution"),
                         "nullCounts": summary.get("nullCounts") or None}
        conds, _ = set_condition(conds, "Validated", True, "ValidationPassed",
                                 f"version {digest[:12]} passed every check", generation)
        conds, _ = set_condition(conds, "Ready", True, "VersionReady",
                                 f"version {digest[:12]} with {entry['rows']} rows", generation)
        st["phase"] = "Ready"
    else:
        detail = describe_failures(failures)
        conds, _ = set_condition(conds, "Validated", False, "ValidationFailed",
                                 f"version {digest[:12]} failed {len(failures)} check(s): {detail}", generation)
        has_valid = bool(st.get("latestValid"))
        conds, _ = set_condition(
            conds, "Ready", has_valid, "PreviousVersionAvailable" if has_valid else "NoValidVersion",
            (f"latest snapshot {digest[:12]} failed validation; version {st['latestValid']['id']} stays in use"
             if has_valid else f"no valid version yet: {detail}"), generation)
        st["phase"] = "Ready" if has_valid else "Failed"
        if known is None or not known["validated"]:
            events.append(("Warning", "ValidationFailed", f"version {digest[:12]}: {detail}"[:1000]))
    st["conditions"] = conds
    return st, events

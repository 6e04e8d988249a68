"""Tables for people (aligned columns, kubectl style) and the rows of `kubectl mlops runs|versions`.

Everything here is a pure function of plain dicts (objects in their wire form, camelCase), so it
is tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..registry.promotion import LOWER_IS_BETTER  # one definition (no scikit-learn import)

#: Metrics shown first in the versions table, in this order, when a version has them.
KEY_METRICS = ("roc_auc", "f1_macro", "f1", "accuracy", "log_loss", "rmse", "mae", "r2")

NONE = "-"


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def render(headers: list[str], rows: list[list[Any]], gap: int = 3) -> str:
    """An aligned table: header row, then one row per item. None shows as '-', '' stays blank."""
    cells = [[str(h) for h in headers]] + [[NONE if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for r in cells:
        line = (" " * gap).join(c.ljust(widths[i]) for i, c in enumerate(r))
        out.append(line.rstrip())
    return "\n".join(out)


def fmt_value(v: Any) -> str:
    """A metric or parameter value for people: floats to 4 significant decimals, the rest as is."""
    if v is None:
        return NONE
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        if v == int(v) and abs(v) < 1e15:
            return f"{v:.1f}"
        return f"{v:.4g}" if abs(v) < 1e-3 or abs(v) >= 1e6 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def short_digest(digest: str | None, n: int = 12) -> str:
    if not digest:
        return NONE
    return digest.split(":", 1)[-1][:n]


def parse_time(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (k8s.io/apimachinery duration.HumanDuration)."""
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        y = h // (24 * 365)
        d = (h // 24) % 365
        return f"{y}y{d}d" if d else f"{y}y"
    return f"{h // (24 * 365)}y"


def age(obj: dict[str, Any], now: dt.datetime | None = None) -> str:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return NONE
    now = now or dt.datetime.now(dt.timezone.utc)
    return human_duration((now - created).total_seconds())


def condition(obj: dict[str, Any], ctype: str = "Ready") -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_ready(obj: dict[str, Any]) -> bool:
    c = condition(obj)
    return bool(c and c.get("status") == "True")


def _created_key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("creationTimestamp") or "", meta.get("name") or ""


# ---------------------------------------------------------------------------------------- runs

def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The facts of a TrainingRun people compare, flattened (also the -o json|yaml form of `runs`)."""
    meta, spec, st = run.get("metadata") or {}, run.get("spec") or {}, run.get("status") or {}
    metric = st.get("metric") or spec.get("metric")
    metrics = st.get("metrics") or {}
    ds = spec.get("dataset") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "model": spec.get("modelName"),
        "phase": st.get("phase") or "Pending",
        "estimator": (spec.get("estimator") or {}).get("type"),
        "dataset": ds.get("name"),
        "datasetDigest": st.get("datasetDigest") or ds.get("digest"),
        "trials": len(st.get("trials") or []),
        "metric": metric,
        "metricValue": metrics.get(metric) if metric else None,
        "metrics": metrics,
        "bestParams": st.get("bestParams") or {},
        "modelVersion": st.get("modelVersion"),
        "created": meta.get("creationTimestamp"),
    }


def runs_table(runs: list[dict[str, Any]], model: str | None = None, namespaces: bool = False,
               now: dt.datetime | None = None) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows) of `kubectl mlops runs`, oldest first."""
    headers = (["NAMESPACE"] if namespaces else []) + ["NAME", "MODEL", "PHASE", "ESTIMATOR", "DATASET", "TRIALS",
                                                        "METRIC", "VERSION", "AGE"]
    rows = []
    for run in sorted(runs, key=_created_key):
        s = run_summary(run)
        if model and s["model"] != model:
            continue
        dataset = f"{s['dataset']}@{short_digest(s['datasetDigest'])}" if s["datasetDigest"] else s["dataset"]
        metric = None
        if s["metric"]:
            metric = f"{s['metric']}={fmt_value(s['metricValue'])}" if s["metricValue"] is not None else s["metric"]
        rows.append(([s["namespace"]] if namespaces else []) + [
            s["name"], s["model"], s["phase"], s["estimator"], dataset, s["trials"],
            metric, s["modelVersion"], age(run, now)])
    return headers, rows


# ------------------------------------------------------------------------------------ versions

def key_metrics(metrics: dict[str, Any], wanted: list[str] | None = None, limit: int = 3) -> list[str]:
    """The metric names to show for a version: `wanted` if given, else the first of KEY_METRICS present."""
    if wanted:
        return [m for m in wanted if m in metrics]
    known = [m for m in KEY_METRICS if m in metrics]
    rest = sorted(m for m in metrics if m not in KEY_METRICS)
    return (known + rest)[:limit]


def version_summary(mv: dict[str, Any]) -> dict[str, Any]:
    meta, spec, st = mv.get("metadata") or {}, mv.get("spec") or {}, mv.get("status") or {}
    lin = spec.get("lineage") or {}
    art = spec.get("artifact") or {}
    ready = condition(mv)
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "model": spec.get("model") or (meta.get("labels") or {}).get("mlops.dev/model"),
        "version": spec.get("version"),
        "aliases": list(spec.get("aliases") or []),
        "stage": st.get("stage"),
        "metrics": spec.get("metrics") or {},
        "trainingRun": lin.get("trainingRun"),
        "estimator": lin.get("estimator"),
        "dataset": lin.get("dataset"),
        "datasetDigest": lin.get("datasetDigest"),
        "artifactDigest": art.get("digest"),
        "artifactUri": art.get("uri"),
        "ready": ready.get("status") if ready else "Unknown",
        "servedBy": list(st.get("servedBy") or []),
        "created": meta.get("creationTimestamp"),
    }


def version_sort_key(mv: dict[str, Any]) -> tuple[str, int, str]:
    s = version_summary(mv)
    return s["model"] or "", int(s["version"] or 0), s["name"] or ""


def versions_table(mvs: list[dict[str, Any]], model: str | None = None, metrics: list[str] | None = None,
                   namespaces: bool = False, now: dt.datetime | None = None) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows) of `kubectl mlops versions`: by model, then version number."""
    headers = (["NAMESPACE"] if namespaces else []) + ["NAME", "MODEL", "VERSION", "ALIASES", "STAGE", "METRICS",
                                                        "RUN", "READY", "AGE"]
    rows = []
    for mv in sorted(mvs, key=version_sort_key):
        s = version_summary(mv)
        if model and s["model"] != model:
            continue
        shown = " ".join(f"{k}={fmt_value(s['metrics'][k])}" for k in key_metrics(s["metrics"], metrics))
        rows.append(([s["namespace"]] if namespaces else []) + [
            s["name"], s["model"], s["version"], ",".join(s["aliases"]) or None, s["stage"], shown or None,
            s["trainingRun"], s["ready"], age(mv, now)])
    return headers, rows

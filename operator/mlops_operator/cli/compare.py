"""`kubectl mlops compare`: TrainingRuns and ModelVersions side by side (pure functions of dicts)."""

from __future__ import annotations

from typing import Any

from .tables import NONE, fmt_value, lower_is_better, render, short_digest

#: accepted prefixes of explicit references -> kind
PREFIXES = {
    "mv": "ModelVersion", "modelversion": "ModelVersion", "modelversions": "ModelVersion",
    "modelversion.mlops.dev": "ModelVersion", "modelversions.mlops.dev": "ModelVersion",
    "tr": "TrainingRun", "trainingrun": "TrainingRun", "trainingruns": "TrainingRun",
    "trainingrun.mlops.dev": "TrainingRun", "trainingruns.mlops.dev": "TrainingRun",
}

DIFF = "*"
BEST = "(best)"


def parse_ref(ref: str) -> tuple[str | None, str]:
    """'mv/NAME' -> ('ModelVersion', NAME); 'tr/NAME' -> ('TrainingRun', NAME); 'NAME' -> (None, NAME)."""
    if "/" in ref:
        prefix, _, name = ref.partition("/")
        kind = PREFIXES.get(prefix.lower())
        if kind is None or not name:
            raise ValueError(f"cannot read {ref!r}: use NAME, mv/NAME (ModelVersion) or tr/NAME (TrainingRun)")
        return kind, name
    return None, ref


def item(obj: dict[str, Any]) -> dict[str, Any]:
    """What compare shows of one TrainingRun or ModelVersion."""
    kind, meta = obj.get("kind"), obj.get("metadata") or {}
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "ModelVersion":
        lin = spec.get("lineage") or {}
        return {"kind": kind, "name": meta.get("name"), "ref": f"mv/{meta.get('name')}",
                "model": spec.get("model"), "version": spec.get("version"),
                "estimator": lin.get("estimator"), "dataset": lin.get("dataset"),
                "datasetDigest": lin.get("datasetDigest"), "trainingRun": lin.get("trainingRun"),
                "modelVersion": meta.get("name"), "aliases": list(spec.get("aliases") or []),
                "params": dict(lin.get("params") or {}), "metrics": dict(spec.get("metrics") or {})}
    if kind == "TrainingRun":
        est = spec.get("estimator") or {}
        params = dict(est.get("params") or {})
        params.update(st.get("bestParams") or {})
        ds = spec.get("dataset") or {}
        return {"kind": kind, "name": meta.get("name"), "ref": f"tr/{meta.get('name')}",
                "model": spec.get("modelName"), "phase": st.get("phase"),
                "estimator": est.get("type"), "dataset": ds.get("name"),
                "datasetDigest": st.get("datasetDigest") or ds.get("digest"), "trainingRun": meta.get("name"),
                "modelVersion": st.get("modelVersion"), "metric": st.get("metric") or spec.get("metric"),
                "params": params, "metrics": dict(st.get("metrics") or {})}
    raise ValueError(f"cannot compare a {kind}")


def _same(values: list[Any]) -> bool:
    return all(_norm(v) == _norm(values[0]) for v in values)


def _norm(v: Any) -> Any:
    # 1 and 1.0 are the same parameter value; True is not 1
    if isinstance(v, bool) or v is None:
        return (type(v).__name__, v)
    if isinstance(v, (int, float)):
        return ("num", float(v))
    return ("str", str(v))


def best_indices(metric: str, values: list[Any]) -> list[int]:
    """Indices holding the best value of `metric` (ties all win); none when fewer than two have it."""
    nums = [(i, float(v)) for i, v in enumerate(values)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    if len(nums) < 2:
        return []
    pick = min if lower_is_better(metric) else max
    best = pick(v for _, v in nums)
    if all(v == best for _, v in nums):
        return []  # nothing to choose between
    return [i for i, v in nums if v == best]


def compare(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison of two or more objects: union of parameter and metric keys, differences, bests."""
    items = [item(o) for o in objs]
    params: dict[str, Any] = {}
    for k in sorted({k for it in items for k in it["params"]}):
        values = [it["params"].get(k) for it in items]
        params[k] = {"values": values, "differs": not _same(values)}
    metrics: dict[str, Any] = {}
    for k in sorted({k for it in items for k in it["metrics"]}):
        values = [it["metrics"].get(k) for it in items]
        metrics[k] = {"values": values, "lowerIsBetter": lower_is_better(k), "best": best_indices(k, values)}
    fields: dict[str, Any] = {}
    for k in ("model", "estimator", "dataset", "datasetDigest"):
        values = [it.get(k) for it in items]
        fields[k] = {"values": values, "differs": not _same(values)}
    return {"items": items, "fields": fields, "params": params, "metrics": metrics}


def render_compare(c: dict[str, Any]) -> str:
    items = c["items"]
    headers = ["", *[it["ref"] for it in items]]
    rows: list[list[Any]] = []

    def mark(label: str, differs: bool) -> str:
        return f"{DIFF} {label}" if differs else f"  {label}"

    rows.append(["  kind", *[it["kind"] for it in items]])
    labels = {"model": "model", "estimator": "estimator", "dataset": "dataset", "datasetDigest": "dataset digest"}
    for k, label in labels.items():
        f = c["fields"][k]
        vals = [short_digest(v) if k == "datasetDigest" else v for v in f["values"]]
        rows.append([mark(label, f["differs"]), *[v if v is not None else NONE for v in vals]])
    rows.append(["  version", *[it.get("modelVersion") or NONE for it in items]])
    rows.append(["params", *[""] * len(items)])
    if not c["params"]:
        rows.append(["  (none)", *[""] * len(items)])
    for k, p in c["params"].items():
        rows.append([mark(k, p["differs"]), *[fmt_value(v) for v in p["values"]]])
    rows.append(["metrics", *[""] * len(items)])
    if not c["metrics"]:
        rows.append(["  (none)", *[""] * len(items)])
    for k, m in c["metrics"].items():
        label = f"  {k} ({'lower' if m['lowerIsBetter'] else 'higher'} is better)"
        rows.append([label, *[fmt_value(v) + (f" {BEST}" if i in m["best"] else "")
                              for i, v in enumerate(m["values"])]])
    out = render(headers, rows).splitlines()
    out.append("")
    out.append(f"{DIFF} differs between them; {BEST} best value of the metric")
    return "\n".join(out)

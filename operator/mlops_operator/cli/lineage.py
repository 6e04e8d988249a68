"""`kubectl mlops lineage`: Dataset -> TrainingRun -> ModelVersion -> InferenceServices (pure functions)."""

from __future__ import annotations

from typing import Any

from .tables import condition, fmt_value, short_digest


def _dataset_version(dataset: dict[str, Any] | None, digest: str | None) -> dict[str, Any] | None:
    if not dataset or not digest:
        return None
    st = dataset.get("status") or {}
    for v in [*(st.get("versions") or []), st.get("latestValid"), st.get("latest")]:
        if v and v.get("digest") == digest:
            return v
    return None


def assemble(mv: dict[str, Any], run: dict[str, Any] | None, dataset: dict[str, Any] | None,
             services: list[dict[str, Any]]) -> dict[str, Any]:
    """The lineage of ModelVersion `mv`, from the objects it names (None: not found) and the
    namespace's InferenceServices (only those serving it, now or before, are kept)."""
    meta, spec, st = mv.get("metadata") or {}, mv.get("spec") or {}, mv.get("status") or {}
    lin = spec.get("lineage") or {}
    art = spec.get("artifact") or {}
    name = meta.get("name")

    ds_name = lin.get("dataset") or ((run or {}).get("spec") or {}).get("dataset", {}).get("name")
    ds_digest = lin.get("datasetDigest") or ((run or {}).get("status") or {}).get("datasetDigest")
    version = _dataset_version(dataset, ds_digest)
    ds_out: dict[str, Any] | None = None
    if ds_name or ds_digest:
        ds_out = {"name": ds_name, "found": dataset is not None, "digest": ds_digest,
                  "versionId": (version or {}).get("id") or (ds_digest[:12] if ds_digest else None),
                  "rows": (version or {}).get("rows"), "validated": (version or {}).get("validated"),
                  "createdAt": (version or {}).get("createdAt"), "uri": (version or {}).get("uri")}
        if dataset is not None and ds_digest and version is None:
            ds_out["note"] = "version no longer in the Dataset's history"

    run_name = lin.get("trainingRun")
    run_out: dict[str, Any] | None = None
    if run_name or run is not None:
        rspec, rst = (run or {}).get("spec") or {}, (run or {}).get("status") or {}
        metric = rst.get("metric") or rspec.get("metric")
        params: dict[str, Any] = {}
        if run is not None:
            params.update((rspec.get("estimator") or {}).get("params") or {})
            params.update(rst.get("bestParams") or {})
        if not params:
            params = dict(lin.get("params") or {})
        run_out = {"name": run_name or ((run or {}).get("metadata") or {}).get("name"), "found": run is not None,
                   "phase": rst.get("phase"),
                   "estimator": (rspec.get("estimator") or {}).get("type") or lin.get("estimator"),
                   "bestParams": params, "trials": len(rst.get("trials") or []), "metric": metric,
                   "metricValue": (rst.get("metrics") or spec.get("metrics") or {}).get(metric) if metric else None,
                   "completionTime": rst.get("completionTime")}

    ready = condition(mv)
    mv_out = {"name": name, "model": spec.get("model"), "version": spec.get("version"),
              "digest": art.get("digest"), "uri": art.get("uri"), "aliases": list(spec.get("aliases") or []),
              "stage": st.get("stage"), "ready": ready.get("status") if ready else "Unknown",
              "metrics": dict(spec.get("metrics") or {}), "trainerVersion": lin.get("trainerVersion"),
              "aliasHistory": list(st.get("aliasHistory") or []),
              "created": meta.get("creationTimestamp")}

    served = []
    for isvc in sorted(services, key=lambda o: (o.get("metadata") or {}).get("name") or ""):
        ist, ispec = isvc.get("status") or {}, isvc.get("spec") or {}
        role = None
        if ist.get("modelVersion") == name:
            role = "serving"
        elif ist.get("previousModelVersion") == name:
            role = "previous"
        if role is None:
            continue
        ic = condition(isvc)
        served.append({"name": (isvc.get("metadata") or {}).get("name"), "role": role,
                       "alias": ispec.get("alias"), "pinnedVersion": ispec.get("version"),
                       "ready": ic.get("status") if ic else "Unknown", "url": ist.get("url"),
                       "readyReplicas": ist.get("readyReplicas", 0), "replicas": ist.get("replicas", 0)})
    # status.servedBy names services the operator knows of that the list may have missed (e.g. RBAC)
    known = {s["name"] for s in served}
    for sb in st.get("servedBy") or []:
        if sb not in known:
            served.append({"name": sb, "role": "serving", "ready": "Unknown"})
    return {"dataset": ds_out, "trainingRun": run_out, "modelVersion": mv_out, "inferenceServices": served}


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(p.items())) or "-"


def render_lineage(lin: dict[str, Any]) -> str:
    """A readable tree, upstream at the top."""
    lines: list[str] = []
    depth = 0

    def node(text: str, details: list[str]) -> None:
        nonlocal depth
        pad = "   " * (depth - 1) + "└─ " if depth else ""
        lines.append(pad + text)
        cont = "   " * depth
        for d in details:
            lines.append(f"{cont}│  {d}")
        depth += 1

    ds = lin["dataset"]
    if ds:
        bits = [f"Dataset {ds['name'] or '?'}"]
        bits.append(f"version {ds['versionId'] or '-'}")
        if ds.get("rows") is not None:
            bits.append(f"{ds['rows']} rows")
        if ds.get("validated") is not None:
            bits.append("validated" if ds["validated"] else "NOT validated")
        det = [f"digest {ds['digest']}"] if ds.get("digest") else []
        if not ds["found"]:
            det.append("(Dataset not found in this namespace)")
        elif ds.get("note"):
            det.append(f"({ds['note']})")
        node("  ".join(bits), det)
    tr = lin["trainingRun"]
    if tr:
        bits = [f"TrainingRun {tr['name']}"]
        if tr.get("estimator"):
            bits.append(tr["estimator"])
        if tr.get("metric"):
            bits.append(f"{tr['metric']}={fmt_value(tr.get('metricValue'))}")
        if tr.get("phase"):
            bits.append(tr["phase"])
        det = [f"best params: {_params(tr['bestParams'])}"]
        if tr.get("trials"):
            det.append(f"trials: {tr['trials']}")
        if not tr["found"]:
            det.append("(TrainingRun not found: deleted? params shown from the version's lineage)")
        node("  ".join(bits), det)
    mv = lin["modelVersion"]
    bits = [f"ModelVersion {mv['name']}", f"model {mv['model']} v{mv['version']}",
            f"digest {short_digest(mv['digest'])}"]
    bits.append(f"aliases: {','.join(mv['aliases'])}" if mv["aliases"] else "no aliases")
    bits.append(f"Ready={mv['ready']}")
    det = []
    if mv.get("metrics"):
        det.append("metrics: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(mv["metrics"].items())))
    if mv.get("uri"):
        det.append(f"artifact: {mv['uri']}")
    if mv["aliasHistory"]:
        det.append("alias history:")
        for ev in mv["aliasHistory"]:
            reason = f": {ev['reason']}" if ev.get("reason") else ""
            det.append(f"  {ev.get('time', '?')}  {ev.get('action', '?')} {ev.get('alias', '?')} "
                       f"by {ev.get('by', '?')}{reason}")
    node("  ".join(bits), det)
    if not lin["inferenceServices"]:
        lines.append("   " * (depth - 1) + "└─ (not served by any InferenceService)")
    services = lin["inferenceServices"]
    for i, s in enumerate(services):
        bits = [f"InferenceService {s['name']}",
                "serving it" if s["role"] == "serving" else "served it before (previous version)"]
        if s.get("alias"):
            bits.append(f"follows alias {s['alias']}")
        elif s.get("pinnedVersion"):
            bits.append(f"pinned to v{s['pinnedVersion']}")
        bits.append(f"Ready={s.get('ready', 'Unknown')}")
        lines.append("   " * (depth - 1) + ("└─ " if i == len(services) - 1 else "├─ ") + "  ".join(bits))
    return "\n".join(lines)

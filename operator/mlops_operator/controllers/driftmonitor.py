"""DriftMonitor controller (thin): every `spec.interval`, scrape the ready serving pods' stats
through the API server, add what arrived to the current window, and when the window is full
judge drift and accuracy, write status, Events and metrics, and retrain past the thresholds.

The window and the previous scrape live in a ConfigMap `<monitor>-state` (owned by the
monitor), so an operator restart neither loses nor double-counts a window. A retraining is a
small state machine in status (`retrain.phase`: Refreshing -> Training), with the TrainingRun
named `<monitor>-retrain-<n>`, so a restart at any step creates no second run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.rest import ApiException

from ..api.base import API_VERSION, GROUP, VERSION
from ..api.conditions import epoch, now, observe, set_condition
from ..api.durations import parse_duration
from ..drift.engine import evaluate, references_from_profile
from ..api.driftmonitor import DriftMonitorSpec
from ..monitoring import retrain as rt
from ..monitoring.decisions import WindowVerdict, judge_window, labelled_count, retrain_gate
from ..monitoring.windows import Window, accumulate, stats_path
from ..resources.common import labels, owner_reference
from ..resources.names import child_name
from ..resources.serving import MONITOR_PORT
from . import kube
from .events import emit
from .namespaces import managed
from .dataset import trigger_of
from .metrics import measured
from .monitor_gauges import GAUGES
from ..settings import Settings

log = logging.getLogger("mlops.controllers.driftmonitor")
PLURAL = "driftmonitors"
TICK = 2.0
SCRAPE_CONCURRENCY = 8  # pod stats read at once (each through the API server's pod proxy)
SCRAPE_TIMEOUT_S = 10.0  # per pod: a stalled pod is reported, not waited on
TREND = 20
#: evaluated windows kept in status.history: two days of hourly windows, about 6 kB of status
HISTORY = 48



_event = emit


# ------------------------------------------------------------------------------ state ConfigMap

def _state_name(dm: dict[str, Any]) -> str:
    return child_name(dm, "state")


async def _load_state(dm: dict[str, Any]) -> dict[str, Any]:
    """The window being filled and the previous scrape; {} when there is none, or when the
    ConfigMap of that name belongs to another monitor (one deleted and re-applied)."""
    core = client.CoreV1Api(kube._api())
    try:
        cm = kube._api().sanitize_for_serialization(
            await kube.call(core.read_namespaced_config_map, _state_name(dm), dm["metadata"]["namespace"]))
        if not any(r.get("uid") == dm["metadata"]["uid"] for r in cm["metadata"].get("ownerReferences") or []):
            return {}
        return json.loads((cm.get("data") or {}).get("state.json") or "{}")
        return json.loads((cm.data or {}).get("state.json") or "{}")
    except ApiException as e:
        if e.status == 404:
            return {}
        raise


async def _save_state(dm: dict[str, Any], state: dict[str, Any]) -> None:
    meta = dm["metadata"]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": _state_name(dm), "namespace": meta["namespace"],
                         "labels": labels("drift-monitor", "monitor-state", meta["name"]),
                         "ownerReferences": [owner_reference(dm)]},
            "data": {"state.json": json.dumps(state, separators=(",", ":"))}}
    core = client.CoreV1Api(kube._api())
    try:
        await kube.call(core.replace_namespaced_config_map, body["metadata"]["name"], meta["namespace"], body)
    except ApiException as e:
        if e.status != 404:
            raise
        await kube.call(core.create_namespaced_config_map, meta["namespace"], body)


# ------------------------------------------------------------------------------ scraping

async def _ready_pods(ns: str, isvc: str) -> list[dict[str, Any]]:
    out = []
    for p in await kube.list_pods(ns, f"mlops.dev/inference-service={isvc},mlops.dev/track=stable"):
        st = p.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
        if st.get("phase") == "Running" and ready and not p["metadata"].get("deletionTimestamp"):
            out.append(p)
    return out


async def _scrape(ns: str, pods: list[dict[str, Any]], model: str, version: int,
                  previous: dict[str, Any] | None = None) -> tuple[dict, list[str]]:
    """Every ready pod's stats since the monitor's cursor for it, read concurrently but at most
    SCRAPE_CONCURRENCY at a time, each bounded by SCRAPE_TIMEOUT_S: one stalled pod among a
    hundred costs one timeout, not a hundred serial reads, and a large Deployment does not open a
    hundred proxy connections through the API server at once.

    The reads run on threads of their own (SCRAPE_CONCURRENCY of them), not on the loop's default
    executor, which every other API call of the operator shares (min(32, CPUs + 4) threads: 6 on
    a 2-CPU node, fewer than SCRAPE_CONCURRENCY), and each read's thread ends with its timeout
    (kube.pod_proxy_get: sent once). Before, a stalled pod held a shared thread for 120 s (four
    tries of 30 s) after the scrape had given up on it; benchmarks/drift_scrape.py measured it."""
    sem = asyncio.Semaphore(SCRAPE_CONCURRENCY)
    pool = ThreadPoolExecutor(SCRAPE_CONCURRENCY, thread_name_prefix="mlops-scrape")

    async def one(p: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
        name = p["metadata"]["name"]
        async with sem:
            try:
                raw = await asyncio.wait_for(  # the read's own timeout ends it; this is a backstop
                    kube.pod_proxy_get(ns, name, MONITOR_PORT, stats_path(model, (previous or {}).get(name)),
                                       timeout=SCRAPE_TIMEOUT_S, executor=pool),
                    SCRAPE_TIMEOUT_S + 1.0,
                )
                return name, json.loads(raw), None
            except (asyncio.TimeoutError, kube.PodProxyTimeout):
                return name, None, f"{name}: no stats within {SCRAPE_TIMEOUT_S:g}s"
            except Exception as e:
                return name, None, f"{name}: {e}"[:200]

    try:
        results = await asyncio.gather(*(one(p) for p in pods))
    finally:
        pool.shutdown(wait=False)  # never block the loop; a thread still reading ends at its timeout
    docs, problems = {}, []
    for name, doc, problem in results:
        if doc is None:
            problems.append(problem or name)
            continue
        if str(doc.get("version")) != str(version):
            continue  # a pod of another version (mid-rollout): not this reference's traffic
        docs[doc.get("instance") or name] = doc
    return docs, problems


async def _reference(ns: str, pods: list[dict[str, Any]], model: str,
                     override: dict[str, Any]) -> dict[str, Any] | None:
    """The serving model's training reference, or the Dataset version `spec.reference` names
    (read from the store by a serving pod, which mounts it)."""
    from urllib.parse import urlencode

    query = {k: v for k, v in (("dataset", override.get("dataset")), ("digest", override.get("digest"))) if v}
    path = f"v2/models/{model}/reference" + (f"?{urlencode(query)}" if query else "")
    for p in pods:
        try:
            return json.loads(await kube.pod_proxy_get(ns, p["metadata"]["name"], MONITOR_PORT, path))["reference"]
        except Exception as e:
            log.warning("no reference from %s: %s", p["metadata"]["name"], e)
    return None


# ------------------------------------------------------------------------------ the tick


async def tick(dm: dict[str, Any], settings: Settings) -> None:
    meta, spec = dm["metadata"], DriftMonitorSpec.model_validate(dm["spec"])
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    st = dict(dm.get("status") or {})
    # this replica ticks the monitor: it exports the last judged window's series (again), so a
    # replica that just became leader reports at once (monitor_gauges.py)
    GAUGES.export(ns, name, st, _metric(spec))
    interval = parse_duration(spec.interval) or 60.0
    last = epoch(st.get("lastScrapeTime"))
    if last is not None and time.time() - last < interval - TICK / 2 and st.get("observedGeneration") == gen:
        await _follow_retrain(dm, st)
        return
    conds = st.get("conditions")
    isvc = await kube.get_custom("inferenceservices", ns, spec.inference_service)
    serving = ((isvc or {}).get("status") or {}).get("modelVersion")
    if isvc is None or not serving:
        why = f"InferenceService {spec.inference_service} " + (
            "does not exist" if isvc is None else "serves no model yet"
        )
        conds, changed = set_condition(conds, "Ready", False, "NoServingModel", why, gen)
        await kube.patch_status(
            PLURAL,
            ns,
            name,
            {
                "conditions": observe(conds, gen, reconciling=("NoServingModel", why)),
                "observedGeneration": gen,
                "lastScrapeTime": now(),
                "message": why,
            },
        )
        if changed:
            _event(dm, "Warning", "NoServingModel", why)
        return
    mv = await kube.get_custom("modelversions", ns, serving)
    model, version = isvc["spec"]["model"], (mv or {}).get("spec", {}).get("version")
    pods = await _ready_pods(ns, spec.inference_service)
    state = await _load_state(dm)
    notes: list[str] = []
    reference = spec.reference.to_api()
    ref_key = json.dumps(reference, sort_keys=True)
    if state.get("servingVersion") != serving or state.get("referenceSpec") != ref_key:
        # a new model (or another reference asked for): a new reference, a fresh window
        ref = await _reference(ns, pods, model, reference)
        if ref is None:
            why = f"no reference from the pods of {serving} yet"
            conds, _ = set_condition(conds, "Ready", False, "NoReference", why, gen)
            await kube.patch_status(
                PLURAL,
                ns,
                name,
                {
                    "conditions": observe(conds, gen, reconciling=("NoReference", why)),
                    "observedGeneration": gen,
                    "lastScrapeTime": now(),
                },
            )
            return
        if state.get("servingVersion"):
            _event(
                dm,
                "Normal",
                "NewReference",
                f"{serving} serves now: new reference "
                f"({ref.get('dataset')}@{str(ref.get('datasetDigest'))[:12]}), new window",
            )
        state = {
            "servingVersion": serving,
            "referenceSpec": ref_key,
            "reference": ref,
            "pods": {},
            "window": Window(time.time()).to_json(),
        }
    docs, problems = await _scrape(ns, pods, model, version, state.get("pods"))
    res = accumulate(Window.from_json(state["window"]), state.get("pods") or {}, docs)
    notes += res.notes + problems
    window = res.window
    state["pods"] = res.pods
    duration, min_rows = parse_duration(spec.window.duration) or 600.0, spec.window.min_samples
    patch: dict[str, Any] = {
        "observedGeneration": gen,
        "lastScrapeTime": now(),
        "servingModelVersion": serving,
        "windowRows": window.rows,
        "windowStart": _iso(window.start),
    }
    conds, _ = set_condition(
        conds,
        "Ready",
        True,
        "Monitoring",
        f"{len(docs)} pod(s) of {serving} scraped" + (f"; {'; '.join(notes)}" if notes else ""),
        gen,
    )
    if time.time() - window.start >= duration:
        if window.rows < min_rows:
            patch["message"] = (
                f"insufficient samples: {window.rows} rows since {_iso(window.start)}, {min_rows} "
                "needed; the window grows until there are"
            )
        else:
            conds = await _judge(dm, st, conds, state, window, patch)
            state["window"] = Window(time.time()).to_json()
    if "window" in state and state["window"]["start"] == window.start:
        state["window"] = window.to_json()
    await _save_state(dm, state)
    patch["conditions"] = observe(conds, gen)
    await kube.patch_status(PLURAL, ns, name, patch)
    await _follow_retrain(dm, {**st, **patch})


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def _judge(
    dm: dict[str, Any], st: dict[str, Any], conds: list, state: dict[str, Any], window: Window, patch: dict[str, Any]
) -> list:
    meta, spec = dm["metadata"], DriftMonitorSpec.model_validate(dm["spec"])
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    refs = references_from_profile(state["reference"].get("columns") or {})
    overrides = {k: {"method": v.method, "threshold": v.threshold} for k, v in (spec.features or {}).items()}
    result = evaluate(
        refs, window.features, overrides, drift_share=spec.drift_share, min_samples=spec.window.min_samples
    )
    feats = [
        {
            "name": f.name,
            "method": f.method,
            "score": _num(f.score),
            "threshold": _num(f.threshold),
            "drifted": bool(f.drifted),
            **({"scoreLower": _num(f.lower), "scoreUpper": _num(f.upper)} if f.lower == f.lower else {}),
        }
        for f in result.features
        if f.status == "ok"
    ]
    verdict = judge_window(result, spec.accuracy, window.feedback)
    acc = verdict.accuracy
    trend = list(st.get("accuracyTrend") or [])
    if acc is not None:
        trend = (trend + [round(acc, 4)])[-TREND:]
    evaluated = now()
    record = {"time": evaluated, "samples": window.rows, "driftShare": round(result.share, 4),
              "datasetDrift": result.drifted and not result.insufficient,
              **({} if acc is None else {"accuracy": round(acc, 4)}),
              **({"modelVersion": v} if (v := patch.get("servingModelVersion")) else {})}
    patch.update(
        lastEvaluationTime=evaluated,
        history=(list(st.get("history") or []) + [record])[-HISTORY:],
        samples=window.rows,
        features=feats,
        driftShare=round(result.share, 4),
        datasetDrift=result.drifted and not result.insufficient,
        accuracy=None if acc is None else round(acc, 4),
        accuracyTrend=trend,
        labelledSamples=int(labelled_count(verdict.metric, window.feedback)),
        message=result.message,
    )
    GAUGES.export(ns, name, {**st, **patch}, verdict.metric)
    status, reason, text = verdict.condition
    conds, changed = set_condition(conds, "Drifted", status, reason, text, gen)
    if changed and status != "Unknown":
        _event(dm, "Warning" if verdict.breached else "Normal", reason, text)
    await _maybe_retrain(dm, st, patch, verdict)  # the gate decides, from the verdict's breach
    return conds


def _metric(spec: DriftMonitorSpec) -> str:
    return spec.accuracy.metric if spec.accuracy is not None else "accuracy"


def _num(x: float) -> float:
    return 0.0 if x != x else round(float(x), 6)


# ------------------------------------------------------------------------------ retraining


async def _maybe_retrain(dm: dict[str, Any], st: dict[str, Any], patch: dict[str, Any], verdict: WindowVerdict) -> None:
    retrain = DriftMonitorSpec.model_validate(dm["spec"]).retrain
    in_flight = None
    r = st.get("retrain") or {}
    if r.get("phase") in ("Refreshing", "Training"):
        in_flight = r.get("trainingRun") or "a dataset refresh"
    gate = retrain_gate(
        retrain.enabled,
        verdict.breached,
        in_flight,
        epoch(st.get("lastRetrainTime")),
        parse_duration(retrain.cooldown) or 0.0,
        time.time(),
    )
    if not gate.allowed:
        if retrain.enabled and verdict.breached:
            last = f" (last: {r['result']})" if r.get("result") else ""
            patch["message"] = f"{patch.get('message', '')}; retraining not started: {gate.reason}{last}"
        return
    if retrain.template is None:  # enabled without a template is refused at apply time (CEL)
        return
    n = int(st.get("retrainCount") or 0) + 1
    ds_name = retrain.template.dataset.name
    ds = await kube.get_custom("datasets", dm["metadata"]["namespace"], ds_name)
    step = rt.new_step(dm, n, verdict.condition[2], ds_name, retrain.refresh_dataset and ds is not None, time.time())
    # written with the window's status first; _follow_retrain then asks the Dataset for the
    # refresh, so an operator stopped in between leaves a step that resumes, never a wedge
    patch.update(retrain=step, retrainCount=n, lastRetrainTime=now())


async def _follow_retrain(dm: dict[str, Any], st: dict[str, Any]) -> None:
    """Drive a retraining in progress (monitoring.retrain): ask for the refresh, see it done,
    create the run, report how it ended."""
    meta, spec = dm["metadata"], dm["spec"]
    ns, name = meta["namespace"], meta["name"]
    r = dict(st.get("retrain") or {})
    if r.get("phase") == "Refreshing":
        ds = await kube.get_custom("datasets", ns, r["dataset"])
        if ds is not None and not r.get("refreshRequested"):
            await kube.patch_custom(
                "datasets",
                ns,
                r["dataset"],
                {"metadata": {"annotations": {rt.REFRESH_ANNOTATION: rt.refresh_value(dm, r)}}},
            )
            r["refreshRequested"] = True
            await kube.patch_status(PLURAL, ns, name, {"retrain": r})
            _event(
                dm,
                "Normal",
                "RefreshingDataset",
                f"retraining #{r['number']}: refreshing Dataset {r['dataset']} first ({r.get('reason', '')[:200]})",
            )
            return
        caught_up = ds is not None and (ds.get("status") or {}).get("lastSnapshotTrigger") == trigger_of(ds)
        progress, why = rt.refresh_progress(r, ds, caught_up, time.time())
        if progress == "waiting":
            return
        if progress == "failed":
            text = f"retraining #{r['number']} failed: {why}; the serving model stays"
            _event(dm, "Warning", "RetrainingFailed", text)
            r.update(phase="Failed", finishedAt=now(), result=text[:1000])
            await kube.patch_status(PLURAL, ns, name, {"retrain": r, "message": text})
            return
        r["phase"] = "Training"
    if r.get("phase") == "Training" and not r.get("trainingRun"):
        run_name = child_name(dm, rt.run_suffix(r))
        template = json.loads(json.dumps(spec["retrain"]["template"]))
        ds = await kube.get_custom("datasets", ns, template["dataset"]["name"])
        latest = (((ds or {}).get("status") or {}).get("latestValid") or {}).get("digest")
        if latest:
            template["dataset"]["digest"] = latest  # pin the newest valid version: what was judged on
        body = {
            "apiVersion": API_VERSION,
            "kind": "TrainingRun",
            "metadata": {
                "name": run_name,
                "namespace": ns,
                "labels": labels("retraining", "training-run", name, {"mlops.dev/drift-monitor": name}),
                "annotations": {
                    "mlops.dev/retrain-reason": r.get("reason", "")[:1000],
                    rt.TOKEN_ANNOTATION: r.get("token", ""),
                },
            },
            "spec": template,
        }
        try:
            await kube.create_custom("trainingruns", ns, body)
            _event(
                dm,
                "Normal",
                "RetrainingStarted",
                f"created TrainingRun {run_name} on {template['dataset']['name']}@{str(latest)[:12]}",
            )
        except Exception as e:
            if not kube.is_conflict(e):
                raise
            existing = await kube.get_custom("trainingruns", ns, run_name)
            if existing is not None and not rt.is_ours(existing, r):
                text = (
                    f"retraining #{r['number']} failed: TrainingRun {run_name} exists and is not this "
                    "retraining's; it is not adopted"
                )
                _event(dm, "Warning", "RetrainingFailed", text)
                r.update(phase="Failed", finishedAt=now(), result=text[:1000])
                await kube.patch_status(PLURAL, ns, name, {"retrain": r, "message": text})
                return
        r["trainingRun"] = run_name
        await kube.patch_status(PLURAL, ns, name, {"retrain": r, "lastTrainingRun": run_name})
        return
    if r.get("phase") == "Training" and r.get("trainingRun"):
        run = await kube.get_custom("trainingruns", ns, r["trainingRun"])
        phase = ((run or {}).get("status") or {}).get("phase")
        if run is None or phase in ("Succeeded", "Failed"):
            rst = (run or {}).get("status") or {}
            promo = rst.get("promotion") or {}
            if phase == "Succeeded":
                text = (
                    f"retraining {r['trainingRun']} registered {rst.get('modelVersion')}: "
                    f"{promo.get('decision', 'registered')} ({promo.get('reason', '')})"
                )
                _event(dm, "Normal", "RetrainingSucceeded", text)
            else:
                text = (
                    f"retraining {r['trainingRun']} failed: {rst.get('message') or 'the run disappeared'}; "
                    "the serving model stays"
                )
                _event(dm, "Warning", "RetrainingFailed", text)
            r.update(phase=phase or "Failed", finishedAt=now(), result=text[:1000])
            await kube.patch_status(PLURAL, ns, name, {"retrain": r, "message": text})


def register(settings: Settings) -> None:
    GAUGES.start_sweeping()

    @kopf.timer(GROUP, VERSION, PLURAL, interval=TICK, initial_delay=1, when=managed)
    async def driftmonitor_tick(body: kopf.Body, **_: Any) -> None:
        with measured("DriftMonitor"):
            await tick(dict(body), settings)

"""TrainingRun controller (thin): resolve the Dataset version and the champion, run one trainer
Job, then register the ModelVersion and apply the promotion policy from the Job's result.

Every step is idempotent by name: the Job is `<run>-train`, the ModelVersion is found by its
`mlops.dev/training-run` label before a new number is taken, and a promotion already applied
is recognised. An operator restarted at any point therefore makes no second Job or version.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import kopf

from ..api.base import GROUP, VERSION
from ..api.estimator_params import PARAMS
from ..api.trainingrun import TrainingRunSpec, unknown_params
from ..api.conditions import now, observe, seconds_between, set_condition
from ..data.versions import describe_failures
from ..registry import aliases as reg
from ..registry.promotion import decide
from ..resources.model_version import model_version
from ..resources.store import needs_claim, store_claim
from ..store.store import store_reason
from ..resources.training_job import job_name, spec_configmap, training_job
from . import kube
from .events import emit
from .namespaces import managed
from .conflicts import blocked
from .metrics import TRAINING_RUNS, measured
from ..settings import Settings

log = logging.getLogger("mlops.controllers.trainingrun")
PLURAL = "trainingruns"
MV = "modelversions"
TERMINAL = ("Succeeded", "Failed")
_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
model_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


class Waiting(Exception):
    """Not an error: something the run needs is not there yet (condition says what)."""


_event = emit


def dataset_input(ds: dict[str, Any] | None, ref: dict[str, Any]) -> dict[str, Any]:
    """The dataset version to train on (latest valid, or the pinned digest), as the trainer needs it."""
    if ds is None:
        raise Waiting(f"Dataset {ref['name']} does not exist")
    st = ds.get("status") or {}
    if ref.get("digest"):
        entry = next((v for v in st.get("versions") or [] if v.get("digest") == ref["digest"]), None)
        if entry is None:
            raise Waiting(f"Dataset {ref['name']} has no version {ref['digest'][:12]}")
        if not entry.get("validated"):
            raise kopf.PermanentError(f"Dataset {ref['name']} version {ref['digest'][:12]} failed validation")
    else:
        entry = st.get("latestValid")
        if not entry:
            report = st.get("validation") or {}
            if report.get("passed") is False:
                raise kopf.PermanentError(f"Dataset {ref['name']} has no valid version: its latest snapshot "
                                          f"{str(report.get('digest'))[:12]} failed validation: "
                                          f"{describe_failures(report.get('failures') or [])}")
            raise Waiting(f"Dataset {ref['name']} has no valid version yet")
    schema = ((ds["spec"].get("schema") or {}).get("columns") or (st.get("schema") or {}).get("columns") or [])
    label = ds["spec"].get("labelColumn") or next((c["name"] for c in schema if c.get("role") == "label"), None)
    return {"name": ref["name"], "digest": entry["digest"], "uri": entry["uri"], "schema": schema, "label": label}


async def _champion(namespace: str, run: dict[str, Any]) -> dict[str, Any] | None:
    spec = TrainingRunSpec.model_validate(run["spec"])
    if spec.promotion.policy != "ifBetter":
        return None
    versions = await kube.list_custom(MV, namespace, f"mlops.dev/model={spec.model_name}")
    h = reg.holder(versions, spec.promotion.alias)
    if h is None:
        return None
    art = h["spec"]["artifact"]
    return {"name": h["metadata"]["name"], "uri": art["uri"], "digest": art["digest"]}


async def _start(run: dict[str, Any], status: dict[str, Any], settings: Settings) -> None:
    meta, spec = run["metadata"], run["spec"]
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    unknown = unknown_params(spec)
    if unknown:
        raise kopf.PermanentError(f"{spec['estimator']['type']} has no parameter(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(PARAMS[spec['estimator']['type']])}")
    ds = await kube.get_custom("datasets", ns, spec["dataset"]["name"])
    try:
        dsin = dataset_input(ds, spec["dataset"])
    except Waiting as w:
        conds, changed = set_condition(status.get("conditions"), "Ready", False, "DatasetNotReady", str(w), gen)
        await kube.patch_status(PLURAL, ns, name, {
            "phase": "Pending", "conditions": observe(conds, gen, reconciling=("DatasetNotReady", str(w))),
            "observedGeneration": gen, "message": str(w)})
        if changed:
            _event(run, "Normal", "Waiting", str(w))
        raise kopf.TemporaryError(str(w), delay=10) from None
    doc = {"name": name, "namespace": ns, "modelName": spec["modelName"], "spec": spec, "dataset": dsin,
           "champion": await _champion(ns, run)}
    if needs_claim(settings):
        await kube.create_or_adopt(store_claim(ns, settings))
    await kube.create_or_adopt(spec_configmap(run, doc))
    job, created = await kube.create_or_adopt(training_job(run, settings))
    text = f"Job {job['metadata']['name']} is training on {dsin['name']}@{dsin['digest'][:12]}"
    conds, _ = set_condition(status.get("conditions"), "Ready", False, "Training", text, gen)
    conds, _ = set_condition(conds, "Succeeded", "Unknown", "Training", "", gen)
    conds = observe(conds, gen, reconciling=("Training", text))
    await kube.patch_status(PLURAL, ns, name, {
        "phase": "Running", "jobName": job["metadata"]["name"], "startTime": status.get("startTime") or now(),
        "datasetDigest": dsin["digest"], "conditions": conds, "observedGeneration": gen, "message": None})
    if created:
        _event(run, "Normal", "Started",
               f"training Job {job['metadata']['name']} on {dsin['name']}@{dsin['digest'][:12]}")
    if kube.job_state(job) != "Running":
        await _finish(run, dict(status, jobName=job["metadata"]["name"], conditions=conds), job)


def _json(msg: str | None) -> Any:
    try:
        return json.loads(msg) if msg else None
    except ValueError:
        return None


def _job_failure(job: dict[str, Any] | None, msg: str | None, tail: str) -> str:
    if job is None:
        return "the training Job disappeared before its result was read"
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True" and c.get("reason") == "DeadlineExceeded":
            return (f"the training Job exceeded activeDeadlineSeconds="
                    f"{job['spec'].get('activeDeadlineSeconds')} and was stopped")
    try:
        doc = json.loads(msg) if msg else {}
    except ValueError:
        doc = {}
    if isinstance(doc, dict) and doc.get("error"):
        return str(doc["error"])
    if msg and msg.startswith("OOMKilled"):
        return f"the training Job failed: {msg.strip()[-1500:]}"
    return ("the training Job failed; log tail:\n" + (msg or tail or "(no output)").strip()[-1500:])


async def _register(run: dict[str, Any], summary: dict[str, Any]) -> str:
    """The run's ModelVersion: adopted if it exists, else the next free version number."""
    ns, spec = run["metadata"]["namespace"], run["spec"]
    # by uid: a run deleted and re-applied under the same name (GitOps) must not find, and
    # promote, the version its predecessor registered
    mine = await kube.list_custom(MV, ns, f"mlops.dev/training-run={run['metadata']['name']},"
                                          f"mlops.dev/training-run-uid={run['metadata']['uid']}")
    if mine:
        return mine[0]["metadata"]["name"]
    async with model_locks[(ns, spec["modelName"])]:
        for _ in range(10):
            versions = await kube.list_custom(MV, ns, f"mlops.dev/model={spec['modelName']}")
            obj = model_version(run, summary, reg.next_version(versions))
            try:
                made = await kube.create_custom(MV, ns, obj)
                _event(run, "Normal", "Registered", f"registered ModelVersion {made['metadata']['name']} "
                                                    f"(sha256 {summary['digest'][:12]})")
                return made["metadata"]["name"]
            except Exception as e:
                if not kube.is_conflict(e):
                    raise
    raise kopf.TemporaryError("could not take a free version number", delay=5)


async def _promote(run: dict[str, Any], summary: dict[str, Any], mv_name: str, status: dict[str, Any]) -> dict:
    if status.get("promotion"):
        return status["promotion"]
    ns = run["metadata"]["namespace"]
    promo = TrainingRunSpec.model_validate(run["spec"]).promotion
    alias, policy = promo.alias, promo.policy
    mv = await kube.get_custom(MV, ns, mv_name)
    if mv is not None and alias in reg.aliases_of(mv):
        return {"decision": "promoted", "alias": alias, "candidateScore": summary.get("candidateScore"),
                "reason": f"{mv_name} already holds {alias}"}
    metric = summary.get("promotionMetric") or summary.get("metric")
    candidate, champion = summary.get("candidateScore"), summary.get("champion")
    gate = summary.get("baselineGate")
    if promo.require_baseline is not None and not gate:  # required but not reported: the gate stays shut
        gate = {"metric": promo.require_baseline.metric, "margin": promo.require_baseline.margin}
    result = decide(policy, alias, metric or "", promo.margin, candidate, champion, baseline=gate)
    if result["decision"] == "promoted" and mv is not None:
        await kube.patch_custom(MV, ns, mv_name, {
            "metadata": {"annotations": {reg.BY_ANNOTATION: f"TrainingRun/{run['metadata']['name']}",
                                         reg.REASON_ANNOTATION: result["reason"][:500]}},
            "spec": {"aliases": sorted(set(reg.aliases_of(mv)) | {alias})}})
        _event(run, "Normal", "Promoted", f"{mv_name} now holds {alias}: {result['reason']}")
    elif result["decision"] == "kept":
        _event(run, "Normal", "PromotionRefused", f"{mv_name} stays a candidate: {result['reason']}")
    return result


async def _finish(run: dict[str, Any], status: dict[str, Any], job: dict[str, Any] | None) -> None:
    meta = run["metadata"]
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    msg, tail = (None, "")
    if job is not None:
        msg, tail = await kube.job_termination_message(ns, job["metadata"]["name"])
    ok = job is not None and kube.job_state(job) == "Complete"
    summary: dict[str, Any] = {}
    if ok:
        try:
            summary = json.loads(msg or "")
        except ValueError:
            summary = {}
        ok = bool(summary.get("digest"))
    finished = now()
    if not ok:
        reason = _job_failure(job, msg, tail) if job is None or kube.job_state(job) == "Failed" or not msg else \
            f"the training Job reported no result: {(msg or tail)[-1000:]}"
        why = store_reason(_json(msg), "TrainingFailed")  # StoreUnreachable etc.: the store failed, not the model
        conds, _ = set_condition(status.get("conditions"), "Ready", False, why, reason, gen)
        conds, _ = set_condition(conds, "Succeeded", False, why, reason, gen)
        await kube.patch_status(PLURAL, ns, name, {
            "phase": "Failed", "conditions": observe(conds, gen, stalled=(why, reason)),
            "observedGeneration": gen, "message": reason, "completionTime": finished})
        _event(run, "Warning", "Failed" if why == "TrainingFailed" else why, reason)
        TRAINING_RUNS.labels(ns, run["spec"]["modelName"], "failed").inc()
        return
    mv_name = await _register(run, summary)
    promotion = await _promote(run, summary, mv_name, status)
    metric = summary.get("metric")
    score = (summary.get("metrics") or {}).get(metric)
    text = f"{metric} {score:.4f}" if isinstance(score, (int, float)) else "done"
    conds, _ = set_condition(status.get("conditions"), "Ready", True, "Succeeded",
                             f"registered {mv_name}: {text}", gen)
    conds, _ = set_condition(conds, "Succeeded", True, "Succeeded", f"registered {mv_name}", gen)
    started = status.get("startTime")
    st = {
        "phase": "Succeeded", "conditions": observe(conds, gen), "observedGeneration": gen,
        "completionTime": finished, "message": None,
        "task": summary.get("task"), "metric": metric, "score": score, "metrics": summary.get("metrics"),
        "bestParams": summary.get("bestParams") or None, "trials": summary.get("trials") or [],
        "trialCount": summary.get("trialCount", len(summary.get("trials") or [])),
        "trialsTruncated": bool(summary.get("trialsTruncated")), "stoppedEarly": summary.get("stoppedEarly"),
        "split": dict(summary.get("split") or {}), "evaluation": summary.get("evaluation") or None,
        "parity": summary.get("parity"), "trainerVersion": summary.get("trainerVersion"),
        "modelVersion": mv_name, "artifactDigest": summary["digest"], "promotion": promotion,
        "datasetDigest": summary.get("datasetDigest"), "reproducible": summary.get("reproducible"),
        "reproducibilityNote": summary.get("reproducibilityNote"),
        "baseline": summary.get("baseline"), "ranking": summary.get("ranking"),
    }
    if started:
        st["durationSeconds"] = seconds_between(started, finished)
    await kube.patch_status(PLURAL, ns, name, st)
    _event(run, "Normal", "Succeeded", f"{text}; registered {mv_name}")
    TRAINING_RUNS.labels(ns, run["spec"]["modelName"], "succeeded").inc()


async def reconcile(namespace: str, name: str, settings: Settings) -> None:
    async with _locks[(namespace, name)]:
        with measured("TrainingRun"):
            run = await kube.get_custom(PLURAL, namespace, name)
            if run is None or run["metadata"].get("deletionTimestamp"):
                return
            status = dict(run.get("status") or {})
            gen = run["metadata"].get("generation")
            if status.get("phase") in TERMINAL:
                if status.get("observedGeneration") != gen:  # written before observedGeneration was kept
                    await kube.patch_status(PLURAL, namespace, name, {
                        "observedGeneration": gen, "conditions": observe(status.get("conditions"), gen, stalled=(
                            ("TrainingFailed", status.get("message") or "") if status["phase"] == "Failed" else None))})
                return
            try:
                if status.get("jobName"):
                    job = await kube.read_job(namespace, status["jobName"])
                    if job is not None and kube.job_state(job) == "Running":
                        return
                    await _finish(run, status, job)
                    return
                await _start(run, status, settings)
            except kube.Blocked as e:
                await blocked(PLURAL, run, e)
            except kopf.PermanentError as e:
                conds, _ = set_condition(status.get("conditions"), "Ready", False, "InvalidInput", str(e), gen)
                conds, _ = set_condition(conds, "Succeeded", False, "InvalidInput", str(e), gen)
                await kube.patch_status(PLURAL, namespace, name, {
                    "phase": "Failed", "conditions": observe(conds, gen, stalled=("InvalidInput", str(e))),
                    "observedGeneration": gen, "message": str(e), "completionTime": now()})
                _event(run, "Warning", "Failed", str(e))
                TRAINING_RUNS.labels(namespace, run["spec"]["modelName"], "failed").inc()


def register(settings: Settings) -> None:
    @kopf.on.resume(GROUP, VERSION, PLURAL, when=managed)
    @kopf.on.create(GROUP, VERSION, PLURAL, when=managed)
    async def trainingrun_changed(namespace: str | None, name: str, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        await reconcile(namespace, name, settings)

    @kopf.on.event("batch", "v1", "jobs", labels={"mlops.dev/training-run": kopf.PRESENT}, when=managed)
    async def training_job_changed(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        if kube.job_state(dict(body)) != "Running":
            await reconcile(namespace, labels["mlops.dev/training-run"], settings)

    # a run waiting for its Dataset retries through TemporaryError; when the Dataset becomes
    # ready first, this starts the runs that wait on it without waiting for the retry
    @kopf.on.field(GROUP, VERSION, "datasets", field="status.latestValid", when=managed)
    async def dataset_ready(namespace: str | None, name: str, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        for run in await kube.list_custom(PLURAL, namespace):
            if run["spec"]["dataset"]["name"] == name and (run.get("status") or {}).get("phase") in (None, "Pending"):
                try:
                    await reconcile(namespace, run["metadata"]["name"], settings)
                except kopf.TemporaryError:
                    pass  # still waiting: the run's own handler retries


__all__ = ["register", "reconcile", "dataset_input", "job_name"]

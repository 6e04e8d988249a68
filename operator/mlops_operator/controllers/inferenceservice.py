"""InferenceService controller (thin): resolve the model version (alias or pinned), roll it out
as a Deployment + Service of the model server, and report what serves.

Safety: only a ModelVersion whose digest was verified (Ready) is rolled out; the rolling update
keeps every old pod until a new one is ready (maxUnavailable 0), so a version that cannot load
never takes traffic; when it misses the progress deadline the Deployment is put back on the
version that served, the failed version is recorded, and status and an Event say why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import kopf

from ..api.base import GROUP, VERSION
from ..api.conditions import is_true, now, observe, set_condition
from ..api.inferenceservice import CanaryOptions, InferenceServiceSpec
from ..registry import aliases as reg
from ..resources.serving import (PORT, autoscaler, canary_deployment, canary_name, deployment, service,
                                 url)
from ..rollout import canary as canary_rules
from ..resources.store import needs_claim, store_claim
from . import kube
from .events import emit
from .namespaces import managed
from .conflicts import blocked
from .metrics import measured
from ..settings import Settings

log = logging.getLogger("mlops.controllers.inferenceservice")
PLURAL = "inferenceservices"
_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


_event = emit


async def resolve(isvc: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(ModelVersion to serve, why not) from the alias or the pinned version."""
    ns, spec = isvc["metadata"]["namespace"], isvc["spec"]
    if spec.get("version"):
        name = f"{spec['model']}-v{spec['version']}"
        mv = await kube.get_custom("modelversions", ns, name)
        return (mv, "") if mv else (None, f"ModelVersion {name} does not exist")
    versions = await kube.list_custom("modelversions", ns, f"mlops.dev/model={spec['model']}")
    mv = reg.holder(versions, spec["alias"])
    return (mv, "") if mv else (None, f"no version of model {spec['model']} holds alias {spec['alias']}")


def rollout_state(dep: dict[str, Any]) -> tuple[str, str]:
    """complete | progressing | failed, and a message, from the Deployment's status."""
    st, want = dep.get("status") or {}, dep["spec"].get("replicas", 1)
    if st.get("observedGeneration", 0) < dep["metadata"].get("generation", 0):
        return "progressing", "the Deployment controller has not seen the new spec yet"
    for c in st.get("conditions") or []:
        if (c.get("type"), c.get("status"), c.get("reason")) == ("Progressing", "False", "ProgressDeadlineExceeded"):
            return "failed", c.get("message", "")
    updated, available = st.get("updatedReplicas", 0), st.get("availableReplicas", 0)
    if updated >= want and available >= want and st.get("replicas", 0) == updated:
        return "complete", ""
    return "progressing", f"{updated}/{want} pods on the new version, {available} available"


def why_pods_fail(pods: list[dict[str, Any]], version: str) -> str:
    for p in pods:
        if p["metadata"].get("labels", {}).get("mlops.dev/model-version") != version:
            continue
        st = p.get("status") or {}
        for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
            term = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated")
            if term and term.get("exitCode") == 0 and cs in (st.get("initContainerStatuses") or []):
                continue  # the model was fetched: what went wrong is further on
            if term and term.get("message"):
                return term["message"].strip()[-800:]
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return "the new pods never became ready"


async def reconcile(namespace: str, name: str, settings: Settings) -> None:
    async with _locks[(namespace, name)]:
        with measured("InferenceService"):
            isvc = await kube.get_custom(PLURAL, namespace, name)
            if isvc is None or isvc["metadata"].get("deletionTimestamp"):
                return
            try:
                await _reconcile(isvc, settings)
            except kube.Blocked as e:
                await blocked(PLURAL, isvc, e)


async def _write(isvc: dict[str, Any], patch: dict[str, Any], conds: list[dict[str, Any]] | None, *,
                 reconciling: tuple[str, str] | None = None, stalled: tuple[str, str] | None = None) -> None:
    """The status patch, observed at the spec's generation (see api.conditions.observe)."""
    meta = isvc["metadata"]
    gen = meta.get("generation")
    patch = {**patch, "observedGeneration": gen,
             "conditions": observe(conds, gen, reconciling=reconciling, stalled=stalled)}
    await kube.patch_status(PLURAL, meta["namespace"], meta["name"], patch)


async def _reconcile(isvc: dict[str, Any], settings: Settings) -> None:
    meta = isvc["metadata"]
    spec = InferenceServiceSpec.model_validate(isvc["spec"])
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    st = dict(isvc.get("status") or {})
    conds = st.get("conditions")
    serving_now = st.get("modelVersion")
    mv, why = await resolve(isvc)
    target = mv
    failed_before = False
    if mv is not None and not is_true((mv.get("status") or {}).get("conditions"), "Ready"):
        why = f"{mv['metadata']['name']} is not Ready ({_ready_reason(mv)}); it is not rolled out"
        target = None
    if mv is not None and mv["metadata"]["name"] == st.get("failedModelVersion"):
        why = f"{mv['metadata']['name']} failed to roll out earlier: {st.get('failureMessage', '')}"
        target, failed_before = None, True
    if target is None and serving_now:
        target = await kube.get_custom("modelversions", ns, serving_now)  # keep what serves
    if target is None:
        conds, changed = set_condition(conds, "Ready", False, "NoModel", why, gen)
        conds, _ = set_condition(conds, "Progressing", False, "NoModel", why, gen)
        await _write(isvc, {}, conds, **({"stalled": ("RolloutFailed", why)} if failed_before
                                         else {"reconciling": ("NoModel", why)}))
        if changed:
            _event(isvc, "Warning", "NoModel", why)
        return
    if needs_claim(settings):
        await kube.create_or_adopt(store_claim(ns, settings))
    await kube.create_or_adopt(service(isvc))
    if spec.autoscaling:
        await kube.ensure_hpa(autoscaler(isvc))
    target_name = target["metadata"]["name"]
    last = st.get("lastCanary") or {}
    passed = last.get("version") == target_name and last.get("result") == "promoted"
    if spec.rollout.strategy == "canary" and serving_now and target_name != serving_now and not passed:
        stable = await kube.get_custom("modelversions", ns, serving_now)
        if stable is not None:
            await _canary(isvc, st, stable, target, settings)
            return
    if st.get("canary"):  # a canary left over (strategy changed, or the alias went back)
        await kube.delete_deployment(ns, canary_name(isvc))
        await kube.patch_status(PLURAL, ns, name, {"canary": None})
    dep = await _ensure(isvc, target, settings)
    state, msg = rollout_state(dep)
    patch: dict[str, Any] = {"url": url(isvc, spec.model), "replicas": spec.replicas,
                             "readyReplicas": int((dep.get("status") or {}).get("readyReplicas", 0) or 0)}
    if state == "failed" and target_name != serving_now:
        reason = why_pods_fail(await kube.list_pods(ns, f"mlops.dev/inference-service={name}"), target_name)
        patch.update(failedModelVersion=target_name, failureMessage=reason)
        text = f"{target_name} did not become ready ({reason}); {serving_now or 'nothing'} keeps serving"
        conds, changed = set_condition(conds, "Degraded", True, "RolloutFailed", text, gen)
        conds, _ = set_condition(conds, "Progressing", False, "RolloutFailed", text, gen)
        if changed:
            _event(isvc, "Warning", "RolloutFailed", text)
        await _write(isvc, patch, conds, stalled=("RolloutFailed", text))
        if serving_now:  # put the Deployment back on the version that served
            old = await kube.get_custom("modelversions", ns, serving_now)
            if old is not None:
                await _ensure(isvc, old, settings)
        return
    if state == "complete":
        if target_name != serving_now:
            patch.update(modelVersion=target_name, previousModelVersion=serving_now, lastRolloutTime=now())
            was = f" (was {serving_now})" if serving_now else ""
            _event(isvc, "Normal", "RolledOut", f"serving {target_name}{was}")
        elif st.get("previousModelVersion") and not await _pods_of(ns, name, st["previousModelVersion"]):
            # the rollout is over and no pod serves the old version any more: it is no longer
            # protected from deletion on this service's account (see controllers.modelversion)
            patch["previousModelVersion"] = None
        conds, _ = set_condition(conds, "Ready", True, "Serving", f"{target_name} on {patch['readyReplicas']} pod(s)",
                                 gen)
        conds, _ = set_condition(conds, "Progressing", False, "RolloutComplete", "", gen)
        if why:
            conds, _ = set_condition(conds, "Degraded", True, "NotRolledOut", why, gen)
        else:
            conds, _ = set_condition(conds, "Degraded", False, "Serving", "", gen)
        await _write(isvc, patch, conds, stalled=("NotRolledOut", why) if failed_before else None,
                     reconciling=("NotRolledOut", why) if why and not failed_before else None)
        return
    serving_ok = bool(serving_now) and patch["readyReplicas"] > 0
    conds, _ = set_condition(conds, "Ready", serving_ok, "Serving" if serving_ok else "Starting",
                             f"{serving_now} serves while {target_name} rolls out" if serving_ok else msg, gen)
    conds, changed = set_condition(conds, "Progressing", True, "RollingOut", f"{target_name}: {msg}", gen)
    if changed:
        _event(isvc, "Normal", "RollingOut", f"rolling out {target_name}")
    await _write(isvc, patch, conds, reconciling=("RollingOut", f"{target_name}: {msg}"))


async def _pods_of(namespace: str, isvc: str, version: str) -> list[dict[str, Any]]:
    return await kube.list_pods(namespace, f"mlops.dev/inference-service={isvc},mlops.dev/model-version={version}")


def _hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj["spec"], sort_keys=True).encode()).hexdigest()[:16]


async def _ensure(isvc: dict[str, Any], mv: dict[str, Any], settings: Settings) -> dict[str, Any]:
    want = deployment(isvc, mv, settings)
    return await kube.ensure_deployment(want, _hash(want))


#: follow-up looks in flight: the event loop keeps only weak references to tasks, so a task
#: nobody holds can be garbage-collected before it runs (asyncio.create_task's documentation)
_follow_ups: set[asyncio.Task[None]] = set()


def _later(namespace: str, name: str, settings: Settings, delay: float) -> None:
    """Look again after `delay` (canary steps); a restarted operator resumes through `resume`."""
    async def again() -> None:
        await asyncio.sleep(delay)
        try:
            await reconcile(namespace, name, settings)
        except Exception:  # logged; the next event or resume picks it up
            log.exception("canary follow-up of %s/%s failed", namespace, name)
    task = asyncio.get_running_loop().create_task(again())
    _follow_ups.add(task)
    task.add_done_callback(_follow_ups.discard)


async def _pod_stats(namespace: str, selector: str) -> canary_rules.PerPod:
    """Each running pod's counters, by pod name (a pod that cannot be scraped is left out: no
    data, never success)."""
    out: canary_rules.PerPod = {}
    for p in await kube.list_pods(namespace, selector):
        if (p.get("status") or {}).get("phase") != "Running" or p["metadata"].get("deletionTimestamp"):
            continue
        try:
            out[p["metadata"]["name"]] = canary_rules.parse(
                await kube.pod_proxy_get(namespace, p["metadata"]["name"], PORT, "metrics"))
        except Exception as e:
            log.warning("could not read metrics of %s/%s: %s", namespace, p["metadata"]["name"], e)
    return out


def canary_options(spec: InferenceServiceSpec) -> canary_rules.Options:
    c = spec.rollout.canary or CanaryOptions()
    return canary_rules.Options(steps=tuple(c.steps), pause_seconds=c.pause_seconds, max_error_rate=c.max_error_rate,
                                max_latency_p99_ms=c.max_latency_p99_ms, min_requests=c.min_requests,
                                ready_timeout_seconds=c.ready_timeout_seconds)


async def _canary(isvc: dict[str, Any], st: dict[str, Any], stable: dict[str, Any], target: dict[str, Any],
                  settings: Settings) -> None:
    """One look at the canary: the state machine (rollout.canary) decides, this does the I/O."""
    meta = isvc["metadata"]
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    opts = canary_options(InferenceServiceSpec.model_validate(isvc["spec"]))
    version, stable_name = target["metadata"]["name"], stable["metadata"]["name"]
    c = dict(st.get("canary") or {})
    if c.get("version") != version:
        c = canary_rules.start(version, time.time())
        _event(isvc, "Normal", "CanaryStarted", f"canary {version} at {opts.steps[0]}% next to {stable_name}")
    dep = await _ensure(isvc, stable, settings)  # the stable track stays on the serving version
    replicas = canary_rules.canary_replicas(opts.steps[c["step"]], int(dep["spec"].get("replicas") or 1))
    cdep = canary_deployment(isvc, target, replicas, settings)
    cdep = await kube.ensure_deployment(cdep, _hash(cdep))
    available = int((cdep.get("status") or {}).get("availableReplicas") or 0)
    step = canary_rules.plan(c, opts, time.time(), available, replicas)
    if step.action == "measure":
        sel = f"mlops.dev/inference-service={name}"
        step = canary_rules.judge(step.state, opts, time.time(), await _pod_stats(ns, sel + ",mlops.dev/track=canary"),
                                  await _pod_stats(ns, sel + ",mlops.dev/track=stable"))
    c = step.state
    conds = st.get("conditions")
    if step.action == "rollback":
        if not c.get("verdict"):  # not ready in time: say why the pods did not start
            why = why_pods_fail(await kube.list_pods(ns, f"mlops.dev/inference-service={name},"
                                                         "mlops.dev/track=canary"), version)
            return await _rollback(isvc, st, c, f"{step.message}: {why}")
        return await _rollback(isvc, st, c, step.message)
    if step.action == "promote":
        # every step passed: the stable track rolls to the new version, then the canary goes
        _event(isvc, "Normal", "CanaryPromoted", f"{version} passed every step ({step.message}); rolling it out")
        await _ensure(isvc, target, settings)
        await kube.delete_deployment(ns, canary_name(isvc))
        await kube.patch_status(PLURAL, ns, name, {"canary": None, "lastCanary": {**c, "result": "promoted"}})
        _later(ns, name, settings, step.delay)
        return
    if step.action == "advance":
        _event(isvc, "Normal", "CanaryStep", f"{version}: {step.message}")
    text = f"{version}: {c.get('message') or step.message}"
    conds, _ = set_condition(conds, "Progressing", True, "Canary", text, gen)
    await _write(isvc, {"canary": c}, conds, reconciling=("Canary", text))
    _later(ns, name, settings, step.delay)


async def _rollback(isvc: dict[str, Any], st: dict[str, Any], c: dict[str, Any], why: str) -> None:
    meta = isvc["metadata"]
    ns, gen = meta["namespace"], meta.get("generation")
    await kube.delete_deployment(ns, canary_name(isvc))
    text = f"canary {c['version']} rolled back: {why}; {st.get('modelVersion')} keeps serving"
    conds, _ = set_condition(st.get("conditions"), "Degraded", True, "CanaryRolledBack", text, gen)
    conds, _ = set_condition(conds, "Progressing", False, "CanaryRolledBack", text, gen)
    await _write(isvc, {"canary": None, "failedModelVersion": c["version"], "failureMessage": why,
                        "lastCanary": {**c, "result": "rolledBack"}}, conds, stalled=("CanaryRolledBack", text))
    _event(isvc, "Warning", "CanaryRolledBack", text)


def _ready_reason(mv: dict[str, Any]) -> str:
    c = next((c for c in (mv.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    return f"{c.get('reason')}: {c.get('message')}" if c else "not verified yet"


def register(settings: Settings) -> None:
    @kopf.on.resume(GROUP, VERSION, PLURAL, when=managed)
    @kopf.on.create(GROUP, VERSION, PLURAL, when=managed)
    @kopf.on.update(GROUP, VERSION, PLURAL, when=managed)
    async def isvc_changed(namespace: str | None, name: str, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        await reconcile(namespace, name, settings)

    @kopf.on.event("apps", "v1", "deployments", labels={"mlops.dev/inference-service": kopf.PRESENT},
                   when=managed)
    async def predictor_changed(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        await reconcile(namespace, labels["mlops.dev/inference-service"], settings)

    # an alias moved or a version became Ready: every InferenceService of that model looks again
    @kopf.on.event(GROUP, VERSION, "modelversions", when=managed)
    async def version_changed(namespace: str | None, spec: kopf.Spec, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        for isvc in await kube.list_custom(PLURAL, namespace):
            if isvc["spec"].get("model") == spec.get("model"):
                await reconcile(namespace, isvc["metadata"]["name"], settings)

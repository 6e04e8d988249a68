"""ModelVersion controller (thin): verify the artifact's digest in a Job, keep each alias on one
version per model with its history, derive stages, apply retention, and refuse to delete a
version an InferenceService serves (finalizer).

All alias bookkeeping for a model happens under one lock per model, from fresh reads, so two
versions claiming an alias at once settle on one (the newest claim).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ..api.base import GROUP, VERSION
from ..api.conditions import now, observe, set_condition
from ..registry import aliases as reg
from ..resources.model_version import verify_job
from . import kube
from .events import emit
from .namespaces import managed
from .conflicts import blocked
from .metrics import measured
from ..settings import Settings
from ..store.store import STORE_ACCESS_REASONS, store_reason
from .trainingrun import model_locks

log = logging.getLogger("mlops.controllers.modelversion")
PLURAL = "modelversions"
VERIFY_ANNOTATION = "mlops.dev/verify"


_event = emit


def verify_trigger(mv: dict[str, Any]) -> str:
    token = ((mv["metadata"].get("annotations") or {}).get(VERIFY_ANNOTATION, ""))
    return hashlib.sha256(f"{mv['spec']['artifact']['digest']}/{token}".encode()).hexdigest()[:8]


def served_by(isvcs: list[dict[str, Any]], name: str) -> list[str]:
    """InferenceServices whose pods serve this version: as the serving version, as the canary
    (`status.canary.version`), or as the version a rollout is moving away from."""
    out = []
    for isvc in isvcs:
        st = isvc.get("status") or {}
        canary = (st.get("canary") or {}).get("version")
        if name in (st.get("modelVersion"), st.get("previousModelVersion"), canary):
            out.append(isvc["metadata"]["name"])
    return out


async def serving(namespace: str, name: str) -> list[str]:
    """InferenceServices whose pods serve (or are rolling away from) this version."""
    return served_by(await kube.list_custom("inferenceservices", namespace), name)


def kstatus(st: dict[str, Any]) -> dict[str, tuple[str, str] | None]:
    """Reconciling while the artifact is being verified; Stalled when it failed verification (a
    new version is needed: the artifact is immutable)."""
    ready: dict[str, Any] = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
    if st.get("verifyJob") or not ready or ready.get("reason") == "Verifying":
        return {"reconciling": ("Verifying", "checking the artifact's sha256"), "stalled": None}
    if ready.get("status") == "False":
        return {"reconciling": None, "stalled": (ready.get("reason") or "ArtifactInvalid", ready.get("message", ""))}
    return {"reconciling": None, "stalled": None}


def unobserved(v: dict[str, Any]) -> bool:
    """Whether status (or any condition) is not yet at the object's generation."""
    gen, st = v["metadata"].get("generation"), v.get("status") or {}
    return st.get("observedGeneration") != gen or any(c.get("observedGeneration") != gen
                                                      for c in st.get("conditions") or [])


async def reconcile_model(namespace: str, model: str, settings: Settings) -> None:
    """Aliases unique per model, history, stages, retention: for every version of `model`."""
    async with model_locks[(namespace, model)]:
        versions = [v for v in await kube.list_custom(PLURAL, namespace, f"mlops.dev/model={model}")
                    if not v["metadata"].get("deletionTimestamp")]
        plan = reg.plan_moves(versions)
        for name, (aliases, by, reason) in plan.removals.items():
            await kube.patch_custom(PLURAL, namespace, name, {
                "metadata": {"annotations": {reg.BY_ANNOTATION: by, reg.REASON_ANNOTATION: reason}},
                "spec": {"aliases": aliases}})
        if plan.removals:
            versions = [v for v in await kube.list_custom(PLURAL, namespace, f"mlops.dev/model={model}")
                        if not v["metadata"].get("deletionTimestamp")]
        when = now()
        for v in versions:
            history, changes = reg.history_updates(v, when)
            stage = reg.stage_of(v, versions, history)
            st = v.get("status") or {}
            if changes or stage != st.get("stage") or unobserved(v):
                # an alias change bumps metadata.generation: observing it here is what lets
                # `kubectl wait --for=condition=Ready` return after a promotion
                gen = v["metadata"].get("generation")
                patch = {"aliasHistory": history, "heldAliases": reg.aliases_of(v), "stage": stage,
                         "observedGeneration": gen}
                if st.get("conditions"):
                    patch["conditions"] = observe(st["conditions"], gen, **kstatus(st))
                await kube.patch_status(PLURAL, namespace, v["metadata"]["name"], patch)
                v.setdefault("status", {}).update(stage=stage)
            for alias, action in changes:
                h = history[-1] if history else {}
                verb = "now holds" if action == "assigned" else "no longer holds"
                _event(v, "Normal", "AliasAssigned" if action == "assigned" else "AliasRemoved",
                       f"{v['metadata']['name']} {verb} {alias} "
                       f"(by {h.get('by')}{': ' + h['reason'] if h.get('reason') else ''})")
            if changes and (v["metadata"].get("annotations") or {}).get(reg.BY_ANNOTATION):
                await kube.patch_custom(PLURAL, namespace, v["metadata"]["name"], {"metadata": {"annotations": {
                    reg.BY_ANNOTATION: None, reg.REASON_ANNOTATION: None}}})
        protected = set()
        for v in versions:
            if await serving(namespace, v["metadata"]["name"]):
                protected.add(v["metadata"]["name"])
        for name in reg.retention(versions, settings.model_retention, protected):
            log.info("retention: deleting archived version %s/%s", namespace, name)
            victim = next(v for v in versions if v["metadata"]["name"] == name)
            _event(victim, "Normal", "Retention", f"deleting archived {name}: more than "
                                                  f"{settings.model_retention} archived versions of {model}")
            await kube.delete_custom(PLURAL, namespace, name)


async def reconcile_verification(namespace: str, name: str, settings: Settings) -> None:
    """Under the model's lock: reconcile_model rewrites every version's conditions, and a
    verification result written meanwhile must not be overwritten by a stale copy."""
    mv = await kube.get_custom(PLURAL, namespace, name)
    if mv is None or mv["metadata"].get("deletionTimestamp"):
        return
    async with model_locks[(namespace, mv["spec"]["model"])]:
        try:
            while await _verify(namespace, name, settings):
                pass
        except kube.Blocked as e:
            await blocked(PLURAL, mv, e)


async def _verify(namespace: str, name: str, settings: Settings) -> bool:
    """One step of verification; True when it should be looked at again at once."""
    mv = await kube.get_custom(PLURAL, namespace, name)
    if mv is None or mv["metadata"].get("deletionTimestamp"):
        return False
    st = mv.get("status") or {}
    gen = mv["metadata"].get("generation")
    if st.get("verifyJob"):
        job = await kube.read_job(namespace, st["verifyJob"])
        if job is not None and kube.job_state(job) == "Running":
            return False
        msg, tail = await kube.job_termination_message(namespace, st["verifyJob"]) if job else (None, "")
        try:
            result = json.loads(msg or "")
        except ValueError:
            result = {"ok": False, "error": (msg or tail or "the verification Job failed without output")[-1000:]}
        if job is None:
            result = {"ok": False, "error": "the verification Job disappeared"}
        digest = mv["spec"]["artifact"]["digest"]
        if result.get("ok"):
            conds, changed = set_condition(st.get("conditions"), "Ready", True, "Verified",
                                           f"model.onnx matches sha256 {digest[:12]}", gen)
            conds, _ = set_condition(conds, "Degraded", False, "Verified", "", gen)
            if changed:
                _event(mv, "Normal", "Verified", f"artifact sha256 {digest[:12]} verified")
        else:
            err = str(result.get("error"))
            # the bytes are wrong (digest, manifest): ArtifactInvalid; the store could not be
            # asked (credentials, bucket, endpoint): its own reason, since the artifact may be fine
            why = store_reason(result, "ArtifactInvalid")
            why = why if why in STORE_ACCESS_REASONS else "ArtifactInvalid"
            conds, changed = set_condition(st.get("conditions"), "Ready", False, why, err, gen)
            conds, _ = set_condition(conds, "Degraded", True, why, err, gen)
            if changed:
                _event(mv, "Warning", why, err)
        new = {"conditions": conds, "verifyJob": None}
        await kube.patch_status(PLURAL, namespace, name, {
            **new, "conditions": observe(conds, gen, **kstatus(new)), "verifiedAt": now(), "observedGeneration": gen,
            "message": None if result.get("ok") else result.get("error")})
        return False
    trigger = verify_trigger(mv)
    if st.get("lastVerifyTrigger") == trigger:
        return False
    job, _ = await kube.create_or_adopt(verify_job(mv, trigger, settings))
    conds = st.get("conditions") or []
    if not conds:
        conds, _ = set_condition(conds, "Ready", False, "Verifying", "checking the artifact's sha256", gen)
    await kube.patch_status(PLURAL, namespace, name, {
        "verifyJob": job["metadata"]["name"], "lastVerifyTrigger": trigger, "observedGeneration": gen,
        "conditions": observe(conds, gen, reconciling=("Verifying", f"Job {job['metadata']['name']} checks the "
                                                                    "artifact's sha256"))})
    return kube.job_state(job) != "Running"


def register(settings: Settings) -> None:
    @kopf.on.resume(GROUP, VERSION, PLURAL, when=managed)
    @kopf.on.create(GROUP, VERSION, PLURAL, when=managed)
    @kopf.on.update(GROUP, VERSION, PLURAL, when=managed)
    async def modelversion_changed(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        with measured("ModelVersion"):
            await reconcile_model(namespace, spec["model"], settings)
            await reconcile_verification(namespace, name, settings)

    @kopf.on.event("batch", "v1", "jobs", labels={"mlops.dev/model-version": kopf.PRESENT}, when=managed)
    async def verify_job_changed(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        if kube.job_state(dict(body)) != "Running":
            await reconcile_verification(namespace, labels["mlops.dev/model-version"], settings)

    @kopf.on.delete(GROUP, VERSION, PLURAL, when=managed)
    async def modelversion_deleted(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        users = await serving(namespace, name)
        if users:
            msg = f"{name} is served by InferenceService {', '.join(users)}; deletion waits until it is not"
            _event(dict(body), "Warning", "InUse", msg)
            raise kopf.TemporaryError(msg, delay=15)

    @kopf.on.field(GROUP, VERSION, "inferenceservices", field="status.modelVersion", when=managed)
    async def serving_changed(namespace: str | None, old: Any, new: Any, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        for mv_name in {old, new} - {None}:
            mv = await kube.get_custom(PLURAL, namespace, mv_name)
            if mv is not None:
                await kube.patch_status(PLURAL, namespace, mv_name, {"servedBy": await serving(namespace, mv_name)})

"""Dataset controller (thin): decide whether a snapshot is due, run it as a Job, record the result.

A snapshot is due when its trigger changes: the spec's generation, the `mlops.dev/refresh`
annotation, or the current period of `spec.refreshInterval`. The Job's name carries the
trigger, so a restarted operator adopts the Job it already made instead of starting another.
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
from ..api.conditions import observe, set_condition
from ..api.dataset import DatasetSpec
from ..api.durations import parse_duration
from ..data.versions import record_snapshot
from ..resources.snapshot_job import GENERATION_ANNOTATION, job_name, snapshot_job
from ..resources.store import StoreModeUnsupported, needs_claim, store_claim
from . import kube
from .events import emit
from .namespaces import managed
from .conflicts import blocked
from .metrics import measured
from ..settings import Settings

log = logging.getLogger("mlops.controllers.dataset")
PLURAL = "datasets"
REFRESH_ANNOTATION = "mlops.dev/refresh"
_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


def trigger_of(ds: dict[str, Any], now: float | None = None) -> str:
    meta, spec = ds["metadata"], DatasetSpec.model_validate(ds["spec"])
    token = (meta.get("annotations") or {}).get(REFRESH_ANNOTATION, "")
    interval = parse_duration(spec.refresh_interval)
    bucket = int((now or time.time()) // interval) if interval else 0
    # the uid too: a Dataset deleted and re-applied under the same name starts over
    return hashlib.sha256(f"{meta.get('uid')}/{meta.get('generation')}/{token}/{bucket}".encode()).hexdigest()[:8]


_event = emit


def stalled(status: dict[str, Any]) -> tuple[str, str] | None:
    """kstatus Stalled: the last snapshot failed and no valid version exists (a new spec, source
    content or refresh is needed), else None."""
    if status.get("phase") != "Failed":
        return None
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return ready.get("reason") or "SnapshotFailed", ready.get("message") or "no valid version"


async def _finish(ds: dict[str, Any], status: dict[str, Any], job: dict[str, Any] | None, trigger: str) -> None:
    ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
    # the generation the Job snapshotted: a spec changed meanwhile is not observed by this result
    gen = int(((job or {}).get("metadata", {}).get("annotations") or {}).get(GENERATION_ANNOTATION)
              or ds["metadata"].get("generation") or 0)
    if job is None:
        summary: dict[str, Any] = {"error": "the snapshot Job disappeared before its result was read"}
    else:
        msg, tail = await kube.job_termination_message(ns, job["metadata"]["name"])
        try:
            summary = json.loads(msg) if msg else {}
        except ValueError:
            summary = {}
        from ..resources.snapshot_job import deadline_exceeded  # (kept local: a minimal edit, issue 16)

        if kube.job_state(job) == "Failed" and deadline_exceeded(job):
            summary = {"error": deadline_exceeded(job)}
        elif kube.job_state(job) == "Failed" and "error" not in summary:
            summary = {"error": (msg or tail or "the snapshot Job failed").strip()[-1500:]}
        elif not summary:
            summary = {"error": f"the snapshot Job reported no result; log tail: {tail.strip()[-1000:]}"}
    new, events = record_snapshot(status, summary, gen, DatasetSpec.model_validate(ds["spec"]).version_history_limit,
                                  trigger)
    new["conditions"] = observe(new.get("conditions"), gen, stalled=stalled(new))
    new["observedGeneration"] = gen
    await kube.patch_status(PLURAL, ns, name, new)
    for e in events:
        _event(ds, *e)


async def reconcile(namespace: str, name: str, settings: Settings) -> None:
    async with _locks[(namespace, name)]:
        with measured("Dataset"):
            # twice at most: a snapshot that finishes is recorded, then a spec changed while it
            # ran (or a refresh asked for meanwhile) starts the next one at once
            try:
                for _ in range(2):
                    if not await _step(namespace, name, settings):
                        return
            except kube.Blocked as e:
                ds = await kube.get_custom(PLURAL, namespace, name)
                if ds is not None:
                    await blocked(PLURAL, ds, e)


async def _step(namespace: str, name: str, settings: Settings) -> bool:
    """One step; True when a snapshot finished and the Dataset should be looked at again."""
    ds = await kube.get_custom(PLURAL, namespace, name)
    if ds is None or ds["metadata"].get("deletionTimestamp"):
        return False
    status = dict(ds.get("status") or {})
    gen = ds["metadata"].get("generation")
    active = status.get("activeJob")
    if active:
        job = await kube.read_job(namespace, active)
        if job is not None and kube.job_state(job) == "Running":
            return False
        await _finish(ds, status, job, active.rsplit("-", 1)[-1])
        return True
    trigger = trigger_of(ds)
    if status.get("lastSnapshotTrigger") == trigger:
        if status.get("observedGeneration") != gen:  # e.g. only a label changed: nothing to snapshot
            await kube.patch_status(
                PLURAL,
                namespace,
                name,
                {
                    "observedGeneration": gen,
                    "conditions": observe(status.get("conditions"), gen, stalled=stalled(status)),
                },
            )
        return False
    spec = DatasetSpec.model_validate(ds["spec"])
    if needs_claim(settings):
        await kube.create_or_adopt(store_claim(namespace, settings))
    frozen = None if spec.schema_ is not None and spec.schema_.columns else (status.get("schema") or {}).get("columns")
    try:
        want = snapshot_job(ds, trigger, frozen, settings)
    except StoreModeUnsupported as e:  # the source needs the PVC store: say so, keep the last good version
        new, events = record_snapshot(status, {"error": str(e), "reason": "StoreConfigInvalid"}, gen or 0,
                                      spec.version_history_limit, trigger)
        new["conditions"] = observe(new.get("conditions"), gen, stalled=stalled(new))
        await kube.patch_status(PLURAL, namespace, name, new)
        for ev in events:
            _event(ds, *ev)
        return False
    job, created = await kube.create_or_adopt(want)
    text = f"snapshot Job {job['metadata']['name']} is running"
    conds, _ = set_condition(status.get("conditions"), "Progressing", True, "Snapshotting", text, gen)
    if not status.get("latestValid"):
        conds, _ = set_condition(conds, "Ready", False, "Snapshotting", "no valid version yet", gen)
    await kube.patch_status(
        PLURAL,
        namespace,
        name,
        {
            "activeJob": job["metadata"]["name"],
            "observedGeneration": gen,
            "conditions": observe(conds, gen, reconciling=("Snapshotting", text)),
            "phase": status.get("phase") if status.get("latestValid") else "Snapshotting",
        },
    )
    if created:
        _event(ds, "Normal", "SnapshotStarted", f"started Job {job['metadata']['name']}")
    if kube.job_state(job) != "Running":  # adopted a Job that already finished
        status.update(activeJob=job["metadata"]["name"], conditions=conds)
        await _finish(ds, status, job, trigger)
    return False


def _ticking(spec: kopf.Spec, **kwargs: Any) -> bool:
    """The timer's filter: a refreshInterval, in a managed namespace."""
    return bool(spec.get("refreshInterval")) and managed(**kwargs)


def register(settings: Settings) -> None:
    @kopf.on.resume(GROUP, VERSION, PLURAL, when=managed)
    @kopf.on.create(GROUP, VERSION, PLURAL, when=managed)
    @kopf.on.update(GROUP, VERSION, PLURAL, when=managed)
    async def dataset_changed(namespace: str | None, name: str, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        await reconcile(namespace, name, settings)

    # Only Datasets with a refreshInterval get a timer: kopf puts a finalizer on objects with
    # timers, and a finalizer would block deleting a Dataset while the operator is away.
    # Job completion arrives through the Job events below; restarts go through `resume`.
    @kopf.timer(GROUP, VERSION, PLURAL, interval=15, initial_delay=5, when=_ticking)
    async def dataset_tick(namespace: str | None, name: str, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        await reconcile(namespace, name, settings)

    @kopf.on.event("batch", "v1", "jobs", labels={"mlops.dev/dataset": kopf.PRESENT}, when=managed)
    async def snapshot_job_changed(namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        if kube.job_state(dict(body)) != "Running":
            await reconcile(namespace, labels["mlops.dev/dataset"], settings)


__all__ = ["register", "reconcile", "trigger_of", "job_name"]

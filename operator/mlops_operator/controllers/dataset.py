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
from typing import Any

import kopf

from ..api.conditions import set_condition
from ..api.durations import parse_duration
from ..data.versions import record_snapshot
from ..resources.snapshot_job import job_name, snapshot_job
from ..resources.store import store_claim
from . import kube
from .metrics import measured
from ..settings import Settings

log = logging.getLogger("mlops.controllers.dataset")
PLURAL = "datasets"
REFRESH_ANNOTATION = "mlops.dev/refresh"
_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


def trigger_of(ds: dict[str, Any], now: float | None = None) -> str:
    meta, spec = ds["metadata"], ds["spec"]
    token = (meta.get("annotations") or {}).get(REFRESH_ANNOTATION, "")
    interval = parse_duration(spec.get("refreshInterval"))
    bucket = int((now or time.time()) // interval) if interval else 0
    return hashlib.sha256(f"{meta.get('generation')}/{token}/{bucket}".encode()).hexdigest()[:8]


def _event(ds: dict[str, Any], etype: str, reason: str, message: str) -> None:
    kopf.event(ds, type=etype, reason=reason, message=message)


async def _finish(ds: dict[str, Any], status: dict[str, Any], job: dict[str, Any] | None, trigger: str) -> None:
    ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
    if job is None:
        summary: dict[str, Any] = {"error": "the snapshot Job disappeared before its result was read"}
    else:
        msg, tail = await kube.job_termination_message(ns, job["metadata"]["name"])
        try:
            summary = json.loads(msg) if msg else {}
        except ValueError:
            summary = {}
        if kube.job_state(job) == "Failed" and "error" not in summary:
            summary = {"error": (msg or tail or "the snapshot Job failed").strip()[-1500:]}
        elif not summary:
            summary = {"error": f"the snapshot Job reported no result; log tail: {tail.strip()[-1000:]}"}
    new, events = record_snapshot(status, summary, ds["metadata"].get("generation", 0),
                                  int(ds["spec"].get("versionHistoryLimit", 10)), trigger)
    await kube.patch_status(PLURAL, ns, name, new)
    for e in events:
        _event(ds, *e)


async def reconcile(namespace: str, name: str, settings: Settings) -> None:
    async with _locks[(namespace, name)]:
        with measured("Dataset"):
            ds = await kube.get_custom(PLURAL, namespace, name)
            if ds is None or ds["metadata"].get("deletionTimestamp"):
                return
            status = dict(ds.get("status") or {})
            active = status.get("activeJob")
            if active:
                job = await kube.read_job(namespace, active)
                if job is not None and kube.job_state(job) == "Running":
                    return
                await _finish(ds, status, job, active.rsplit("-", 1)[-1])
                return
            trigger = trigger_of(ds)
            if status.get("lastSnapshotTrigger") == trigger:
                return
            await kube.create_or_adopt(store_claim(namespace, settings))
            frozen = None if (ds["spec"].get("schema") or {}).get("columns") else \
                (status.get("schema") or {}).get("columns")
            job, created = await kube.create_or_adopt(snapshot_job(ds, trigger, frozen, settings))
            gen = ds["metadata"].get("generation")
            conds, _ = set_condition(status.get("conditions"), "Progressing", True, "Snapshotting",
                                     f"snapshot Job {job['metadata']['name']} is running", gen)
            if not status.get("latestValid"):
                conds, _ = set_condition(conds, "Ready", False, "Snapshotting", "no valid version yet", gen)
            await kube.patch_status(PLURAL, namespace, name, {
                "activeJob": job["metadata"]["name"], "conditions": conds,
                "phase": status.get("phase") if status.get("latestValid") else "Snapshotting",
            })
            if created:
                _event(ds, "Normal", "SnapshotStarted", f"started Job {job['metadata']['name']}")
            if kube.job_state(job) != "Running":  # adopted a Job that already finished
                status.update(activeJob=job["metadata"]["name"], conditions=conds)
                await _finish(ds, status, job, trigger)


def register(settings: Settings) -> None:
    @kopf.on.resume("mlops.dev", "v1alpha1", PLURAL)
    @kopf.on.create("mlops.dev", "v1alpha1", PLURAL)
    @kopf.on.update("mlops.dev", "v1alpha1", PLURAL)
    async def dataset_changed(namespace: str, name: str, **_: Any) -> None:
        await reconcile(namespace, name, settings)

    # Only Datasets with a refreshInterval get a timer: kopf puts a finalizer on objects with
    # timers, and a finalizer would block deleting a Dataset while the operator is away.
    # Job completion arrives through the Job events below; restarts go through `resume`.
    @kopf.timer("mlops.dev", "v1alpha1", PLURAL, interval=15, initial_delay=5,
                when=lambda spec, **_: bool(spec.get("refreshInterval")))
    async def dataset_tick(namespace: str, name: str, **_: Any) -> None:
        await reconcile(namespace, name, settings)

    @kopf.on.event("batch", "v1", "jobs", labels={"mlops.dev/dataset": kopf.PRESENT})
    async def snapshot_job_changed(namespace: str, labels: dict[str, str], body: Any, **_: Any) -> None:
        if kube.job_state(dict(body)) != "Running":
            await reconcile(namespace, labels["mlops.dev/dataset"], settings)


__all__ = ["register", "reconcile", "trigger_of", "job_name"]

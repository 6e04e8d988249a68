"""Pods the operator created that cannot start: say so on the resource that owns them.

A Job or Deployment whose pod waits on a missing image (ErrImageNeverPull, ErrImagePull,
ImagePullBackOff, InvalidImageName) or an unusable container config never fails by itself:
the Job stays active and the Deployment progresses until its deadline. Without this, a
Dataset, TrainingRun, ModelVersion or InferenceService would wait silently. The owner gets
`Degraded=True` (reason `PodCannotStart`, the pod's own reason and message) and a Warning
Event; the condition clears once the pod starts. The last good data and model keep serving:
`Ready` is left to each kind's own controller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ..api.conditions import get_condition, set_condition
from ..resources.common import MANAGED_BY
from ..resources.serving import FETCH_CONTAINER
from ..store.store import STORE_REASONS, store_reason
from . import kube
from .events import emit
from .namespaces import managed
from ..settings import Settings

log = logging.getLogger("mlops.pods")

REASON = "PodCannotStart"

#: The label naming a pod's owner, most specific first (a serving pod also carries
#: mlops.dev/model-version, but its owner is the InferenceService).
OWNER_LABELS = (
    ("mlops.dev/inference-service", "inferenceservices"),
    ("mlops.dev/training-run", "trainingruns"),
    ("mlops.dev/dataset", "datasets"),
    ("mlops.dev/model-version", "modelversions"),
)

#: owner (plural, namespace, name) -> the pod whose trouble marked it Degraded: only that pod's
#: start or deletion clears it (another pod of the owner starting, e.g. the old version's while
#: the new one's fetch keeps failing, says nothing about the trouble)
_marked: dict[tuple[str, str, str], str] = {}


#: a pod that needs the store's PVC on a node the volume cannot reach
NOT_SHARED = "StoreNotShared"
#: what the scheduler's volume binding says of a node the pod's volume cannot reach:
#: "node(s) didn't match PersistentVolume's node affinity" (Kubernetes 1.36, seen on the local
#: cluster's real scheduler), "node(s) had volume node affinity conflict" (older releases)
_NODE_CONFLICT = ("didn't match PersistentVolume's node affinity", "volume node affinity conflict")


def store_not_shared(pod: dict[str, Any], claim: str, access_mode: str) -> str | None:
    """Why a pod that mounts the store PVC cannot be scheduled where it must run, else None.

    A ReadWriteOnce volume (a local or zonal disk) lives on one node; a pod pinned elsewhere
    (nodeSelector, affinity), e.g. serving on another node than training, waits forever with the
    scheduler's volume node affinity conflict. Said on the owner, with the way out."""
    if not any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
               for v in (pod.get("spec") or {}).get("volumes") or []):
        return None
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable" \
                and any(text in (c.get("message") or "") for text in _NODE_CONFLICT):
            return (f"the artifact store PVC {claim} ({access_mode}) lives on another node than the one this pod "
                    f"must run on ({c.get('message')}); a PVC store cannot be shared by pods on several nodes: "
                    "run the operator with an s3:// store (MLOPS_STORE), use a ReadWriteMany storage class "
                    "(MLOPS_STORE_ACCESS_MODE), or place these pods on the volume's node")
    return None


def fetch_failure(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when a serving pod's model fetch (the s3-mode init container) failed:
    the store's own reason (DigestMismatch, StoreAccessDenied, StoreUnreachable, ...) from the
    fetch's JSON termination message. The kubelet retries the init container with backoff; until
    it succeeds the pod is never ready, so the serving version keeps serving."""
    st = pod.get("status") or {}
    for cs in st.get("initContainerStatuses") or []:
        if cs.get("name") != FETCH_CONTAINER:
            continue
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if not term or term.get("exitCode") in (0, None):
            return None
        try:
            doc = json.loads(term.get("message") or "")
        except ValueError:
            doc = {}
        error = doc.get("error") if isinstance(doc, dict) else None
        error = error or term.get("reason") or f"exit {term.get('exitCode')}"
        return store_reason(doc, "StoreError"), f"fetching the model failed: {error}"
    return None


def owner_of(labels: dict[str, str]) -> tuple[str, str] | None:
    """(plural, name) of the custom resource a pod works for, from its labels."""
    for label, plural in OWNER_LABELS:
        if labels.get(label):
            return plural, labels[label]
    return None


def register(settings: Settings) -> None:
    @kopf.on.event("", "v1", "pods", labels={"app.kubernetes.io/managed-by": MANAGED_BY}, when=managed)
    async def managed_pod_event(type: str, body: kopf.Body, namespace: str | None, name: str, labels: Mapping[str, str],
                                **_: Any) -> None:
        if not namespace:  # every kind here is namespaced
            return
        owner = owner_of(dict(labels))
        if owner is None:
            return
        plural, oname = owner
        key = (plural, namespace, oname)
        stuck = None if type == "DELETED" else kube.stuck_reason(dict(body))
        reason = REASON
        if stuck is None and type != "DELETED":
            failed = fetch_failure(dict(body))
            if failed is not None:
                reason, stuck = failed
            elif not settings.store_is_s3:
                stuck = store_not_shared(dict(body), settings.store_claim, settings.store_access_mode)
                reason = NOT_SHARED
        if stuck is None and _marked.get(key) != name:
            return
        obj = await kube.get_custom(plural, namespace, oname)
        if obj is None:
            _marked.pop(key, None)
            kube.hold_degraded(*key, None)
            return
        st = obj.get("status") or {}
        gen = obj["metadata"].get("generation")
        if stuck is not None:
            text = f"pod {name}: {stuck}"
            conds, changed = set_condition(st.get("conditions"), "Degraded", True, reason, text, gen)
            _marked[key] = name
            kube.hold_degraded(*key, get_condition(conds, "Degraded"))  # the owner's own writes keep it
            if changed:
                await kube.patch_status(plural, namespace, oname, {"conditions": conds})
                emit(obj, "Warning", reason, text)
            return
        cur = get_condition(st.get("conditions"), "Degraded")
        _marked.pop(key, None)
        kube.hold_degraded(*key, None)
        if cur and cur.get("status") == "True" and (cur.get("reason") in (REASON, NOT_SHARED)
                                                    or cur.get("reason") in STORE_REASONS):
            cleared = set_condition(st.get("conditions"), "Degraded", False, "PodStarted", f"pod {name} started",
                                    gen)[0]
            await kube.patch_status(plural, namespace, oname, {"conditions": cleared})

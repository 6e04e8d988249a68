"""Which namespaces the operator manages: those where it may write (issue 16).

The operator watches its kinds in every namespace, but its ServiceAccount may create and change
workloads only where an admin bound the ClusterRole `mlops-operator-namespace` (a RoleBinding
from manifests/namespace or `mlops enable-namespace`, or the cluster-wide component). Every
handler carries `when=managed`: in any other namespace kopf is blind to the object. It adds no
finalizer and runs no handler, whose every write would be refused (403) and retried for ever
(and a refused patch of kopf's own ends the whole operator: see guard_kopf_patches). Instead
the log says, once per object and per WARN_EVERY, that the object is ignored and how to enable
its namespace. An object kopf is blind to but that still carries its finalizer (the namespace
was managed before, or is being deleted with its RoleBinding) is released: kopf removes the
finalizer, which the cluster-wide role allows (patch of its own kinds, nothing else).

The answer comes from the API server itself (a SelfSubjectAccessReview, which every
authenticated user may create), so it holds in both modes and for any way an admin grants the
role; `create jobs` stands for the whole role. It is cached: a managed namespace is asked about
once a minute, an unmanaged one at most every two seconds, so an object in a namespace enabled
a moment ago is handled on its next event (`mlops enable-namespace` gives the existing ones
that event). kopf calls filters synchronously, hence the blocking call, bounded by a timeout.
Run with an admin's kubeconfig, every namespace is managed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("mlops.namespaces")

#: seconds an answer is kept: a yes for a minute, a no only long enough for the handlers of one
#: event to share it
MANAGED_TTL, UNMANAGED_TTL = 60.0, 2.0
#: seconds between two warnings about the same ignored object
WARN_EVERY = 600.0
#: the permission asked about in the namespace: one only the write role grants
PROBE = {"verb": "create", "group": "batch", "resource": "jobs"}
#: the kinds whose objects are named in the warning (their children are skipped silently)
OWN_KINDS = frozenset({"Dataset", "TrainingRun", "ModelVersion", "InferenceService", "DriftMonitor"})

_answers: dict[str, tuple[float, bool]] = {}
_warned: dict[tuple[str, str, str], float] = {}


def review(namespace: str) -> bool | None:
    """May this process write in `namespace`? None when the API server could not be asked."""
    from kubernetes import client

    body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(namespace=namespace, **PROBE)))
    try:
        got = client.AuthorizationV1Api().create_self_subject_access_review(body, _request_timeout=5)
    except Exception as e:  # noqa: BLE001 - any failure: act as if allowed, kopf reports API errors itself
        log.warning("could not ask whether the operator may write in namespace %s: %s", namespace, e)
        return None
    return bool(got.status and got.status.allowed)


def may_write(namespace: str) -> bool:
    now = time.monotonic()
    hit = _answers.get(namespace)
    if hit is not None and hit[0] > now:
        return hit[1]
    allowed = review(namespace)
    if allowed is None:
        return True
    was = hit[1] if hit is not None else None
    _answers[namespace] = (now + (MANAGED_TTL if allowed else UNMANAGED_TTL), allowed)
    if was is not None and was != allowed:
        log.info("namespace %s is %s", namespace, "now managed: the operator may write there" if allowed else
                 "no longer managed: the operator may not write there; its objects are ignored")
    return allowed


def managed(namespace: str | None = None, body: Mapping[str, Any] | None = None, **_: Any) -> bool:
    """kopf's `when=` filter of every handler: True where the operator may write."""
    if not namespace or may_write(namespace):
        return True
    kind = (body or {}).get("kind") or "?"
    name = ((body or {}).get("metadata") or {}).get("name") or "?"
    if kind in OWN_KINDS:
        key, now = (namespace, kind, name), time.monotonic()
        if _warned.get(key, 0.0) <= now:
            _warned[key] = now + WARN_EVERY
            log.warning(
                "%s %s/%s is ignored: namespace %s is not managed by the operator (it may not write there: no "
                "RoleBinding to the ClusterRole mlops-operator-namespace). An admin enables it with "
                "`mlops enable-namespace %s` or `kubectl apply -k manifests/namespace -n %s`.",
                kind, namespace, name, namespace, namespace, namespace)
    return False


def guard_kopf_patches() -> bool:
    """Keep one refused object from ending the operator.

    kopf patches objects itself (finalizers, progress, the last handled state) and treats a
    refusal of such a patch, after its retries (about a minute), as "an unrecoverable error":
    the operator exits. The cluster-wide role grants those patches on the operator's kinds
    everywhere, so this is defence in depth: a role edited by an admin, or a policy of theirs,
    must cost one object, not a crash loop of the operator. With this guard a 403 on a
    namespaced object is logged as an error and the object is left as it is (as kopf does with
    an object that is gone). Peering (a cluster-scoped object) keeps kopf's behaviour.

    It wraps kopf's internal patch function (kopf is pinned in constraints.txt; a unit test
    fails if the function moves). False when it could not be installed."""
    try:
        from kopf._cogs.clients import errors, patching
    except ImportError:  # pragma: no cover - another kopf
        log.warning("kopf's patching module moved: a namespace losing its RoleBinding may stop the operator")
        return False
    original = patching.patch_obj
    if getattr(original, "mlops_guard", False):
        return True

    async def patch_obj(*, namespace: Any, name: str, **kwargs: Any) -> Any:
        try:
            return await original(namespace=namespace, name=name, **kwargs)
        except errors.APIForbiddenError as e:
            if namespace is None:
                raise
            _answers.pop(namespace, None)  # ask again at the next event
            r = kwargs.get("resource")
            what = f"{r.plural}.{r.group}".rstrip(".") if r is not None else "?"
            log.error("%s %s/%s was not updated: the API server refused kopf's patch (403: %s). The object is "
                      "left as it is, kopf's finalizer included: check the operator's ClusterRoles (`kubectl auth "
                      "can-i patch %s -n %s --as=system:serviceaccount:mlops-system:mlops-operator`), or remove "
                      "the finalizer (`mlops uninstall --help`).", what, namespace, name, e, what, namespace)
            return None, None

    patch_obj.mlops_guard = True  # type: ignore[attr-defined]
    patching.patch_obj = patch_obj
    return True


def forget() -> None:
    """Drop every cached answer (tests)."""
    _answers.clear()
    _warned.clear()

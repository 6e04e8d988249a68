"""`mlops enable-namespace`, `mlops disable-namespace` and `mlops uninstall`: what an admin does
to the operator's access, with the current kubeconfig (or --kubeconfig/--context).

In namespace-scoped mode (the default, manifests/base) the operator may write only in
namespaces holding the RoleBinding of manifests/namespace; `enable-namespace` creates it (and,
with --allow-service-accounts, the annotation the admission policy reads), then gives the
mlops objects that were created there before an event, so the operator handles them at once.

`uninstall` removes everything in the order that leaves nothing stuck: kopf puts a finalizer
(`mlops.dev/finalizer`) on ModelVersions, DriftMonitors and refreshing Datasets, which only the
running operator removes. Deleting the operator or the CRDs first leaves those objects, their
namespaces and the CRDs Terminating for ever. So: the custom objects while the operator still
runs (their Jobs, Deployments and Services go with them, by owner references), then the
operator and its RBAC, then the CRDs. When the operator is already gone, `--strip-finalizers`
removes its finalizer from what is left (without the clean-up the operator would have done: the
ModelVersion delete handler waits until no InferenceService serves the version).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..api.base import GROUP, VERSION
from .kubeapi import PLURALS, CliError, Conflict, Kube, NotFound

OPERATOR_NS = "mlops-system"
OPERATOR = "mlops-operator"
SUBJECT = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR}"
WRITE_ROLE = "mlops-operator-namespace"
FINALIZER = "mlops.dev/finalizer"
ALLOWED_SA_ANNOTATION = "mlops.dev/allowed-service-accounts"
#: the annotation that gives an object the operator ignored so far its first event
ENABLED_ANNOTATION = "mlops.dev/namespace-enabled"
#: kopf's record of the last state it handled (controllers/run.py: prefix kopf.mlops.dev)
HANDLED_ANNOTATION = "kopf.mlops.dev/last-handled-configuration"
#: controllers/namespaces.py keeps a "no" this long: wait it out before the nudge
UNMANAGED_TTL = 2.0

#: deletion order: monitors (which create TrainingRuns) and servers (which hold ModelVersions) first
DELETE_ORDER = ("driftmonitors", "inferenceservices", "trainingruns", "modelversions", "datasets")
CRDS = tuple(f"{p}.{GROUP}" for p in sorted(PLURALS.values())) + \
    ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")

Say = Callable[[str], None]


def role_binding(namespace: str) -> dict[str, Any]:
    """manifests/namespace/rolebinding.yaml in `namespace` (a unit test keeps them equal)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": OPERATOR, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "mlops",
                                "app.kubernetes.io/component": "operator-access"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": WRITE_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": OPERATOR_NS}],
    }


def _apis(k: Kube) -> tuple[Any, Any, Any]:
    from kubernetes import client

    return client.CoreV1Api(k._api), client.RbacAuthorizationV1Api(k._api), client.CustomObjectsApi(k._api)


def _status(e: Exception) -> int | None:
    return getattr(e, "status", None)


def operator_may_write(k: Kube, namespace: str) -> bool | None:
    """Whether the operator's ServiceAccount may write in `namespace` (a SubjectAccessReview;
    None when this user may not ask)."""
    from kubernetes import client

    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=SUBJECT,
        groups=["system:serviceaccounts", f"system:serviceaccounts:{OPERATOR_NS}", "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb="create", group="batch",
                                                        resource="jobs")))
    try:
        got = k._call("SubjectAccessReview", client.AuthorizationV1Api(k._api).create_subject_access_review, review)
    except CliError:
        return None
    return bool(got.status and got.status.allowed)


def enable_namespace(k: Kube, namespace: str, allow_service_accounts: list[str] | None = None,
                     say: Say = print, wait: float = 30.0) -> int:
    core, rbac, custom = _apis(k)
    try:
        k._call(f"namespace {namespace}", core.read_namespace, namespace)
    except NotFound:
        raise CliError(f"namespace {namespace} does not exist: create it first (kubectl create namespace "
                       f"{namespace})") from None
    body = role_binding(namespace)
    try:
        k._call(f"RoleBinding {OPERATOR}", rbac.create_namespaced_role_binding, namespace, body)
        say(f"rolebinding {namespace}/{OPERATOR} created: the operator may write in namespace {namespace}")
    except Conflict:
        k._call(f"RoleBinding {OPERATOR}", rbac.replace_namespaced_role_binding, OPERATOR, namespace, body)
        say(f"rolebinding {namespace}/{OPERATOR} exists (updated)")
    if allow_service_accounts is not None:
        value = ",".join(sa.strip() for sa in allow_service_accounts if sa.strip())
        k._call(f"namespace {namespace}", core.patch_namespace, namespace,
                {"metadata": {"annotations": {ALLOWED_SA_ANNOTATION: value or None}}})
        say(f"namespace {namespace} annotated {ALLOWED_SA_ANNOTATION}={value!r}" if value else
            f"namespace {namespace}: annotation {ALLOWED_SA_ANNOTATION} removed")
    deadline = time.monotonic() + wait
    while operator_may_write(k, namespace) is False and time.monotonic() < deadline:
        time.sleep(0.5)
    # objects created before the namespace was managed have not been handled: an event makes
    # the operator look (after its cached "no" for this namespace has expired)
    waiting = [(plural, o) for plural in DELETE_ORDER[::-1] for o in _list(k, custom, plural, namespace)
               if HANDLED_ANNOTATION not in (o["metadata"].get("annotations") or {})]
    if waiting:
        time.sleep(UNMANAGED_TTL + 1)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for plural, o in waiting:
            name = o["metadata"]["name"]
            try:
                k._call(f"{plural} {name}", custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, plural,
                        name, {"metadata": {"annotations": {ENABLED_ANNOTATION: stamp}}})
            except CliError as e:
                say(f"could not annotate {plural}/{name}: {e}")
        say(f"{len(waiting)} object(s) created before the namespace was enabled are handled now: "
            + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for _, o in waiting))
    return 0


def disable_namespace(k: Kube, namespace: str, force: bool = False, say: Say = print) -> int:
    _, rbac, custom = _apis(k)
    left = [o for plural in DELETE_ORDER for o in _list(k, custom, plural, namespace)]
    if left and not force:
        raise CliError(f"namespace {namespace} still holds {len(left)} mlops object(s) ("
                       + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in left[:5])
                       + "): delete them first, while the operator may still remove its finalizers, "
                       "or pass --force (then `mlops uninstall --strip-finalizers` may be needed to delete them)")
    try:
        k._call(f"RoleBinding {OPERATOR}", rbac.delete_namespaced_role_binding, OPERATOR, namespace)
        say(f"rolebinding {namespace}/{OPERATOR} deleted: the operator may no longer write in namespace {namespace}")
    except NotFound:
        say(f"namespace {namespace} had no RoleBinding {OPERATOR}")
    return 0


def _list(k: Kube, custom: Any, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """Objects of one kind (every namespace when `namespace` is None); [] when its CRD is gone."""
    kind = next(kd for kd, p in PLURALS.items() if p == plural)
    try:
        if namespace is None:
            got = k._call(f"{kind}s", custom.list_cluster_custom_object, GROUP, VERSION, plural)
        else:
            got = k._call(f"{kind}s", custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural)
    except NotFound:  # the CRD is gone
        return []
    items = got.get("items") or []
    for it in items:
        it.setdefault("kind", kind)
    return items


def _operator_running(k: Kube) -> bool:
    from kubernetes import client

    try:
        dep = k._call("Deployment", client.AppsV1Api(k._api).read_namespaced_deployment, OPERATOR, OPERATOR_NS)
    except NotFound:
        return False
    return bool(dep.status and (dep.status.available_replicas or 0) > 0)


def uninstall(k: Kube, timeout: float = 300.0, strip_finalizers: bool = False, keep_crds: bool = False,
              say: Say = print) -> int:
    from kubernetes import client

    core, rbac, custom = _apis(k)
    objects = [(p, o) for p in DELETE_ORDER for o in _list(k, custom, p)]
    if objects:
        running = _operator_running(k)
        say(f"deleting {len(objects)} mlops object(s) in namespace(s) "
            f"{', '.join(sorted({o['metadata']['namespace'] for _, o in objects}))}; the operator releases them"
            + ("" if running else f" (no available Deployment {OPERATOR_NS}/{OPERATOR}: if the operator runs "
               "elsewhere it still does; if it is gone, what keeps its finalizer stays until --strip-finalizers)"))
        for plural, o in objects:
            meta = o["metadata"]
            try:
                k._call(f"{o['kind']} {meta['name']}", custom.delete_namespaced_custom_object, GROUP, VERSION,
                        meta["namespace"], plural, meta["name"])
            except NotFound:
                pass
        # an operator that is gone releases nothing: with --strip-finalizers do not wait for it
        deadline = time.monotonic() + (timeout if running or not strip_finalizers else min(timeout, 5.0))
        left = objects
        while True:
            left = [(p, o) for p in DELETE_ORDER for o in _list(k, custom, p)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(1)
        if left:
            names = ", ".join(f"{o['kind']}/{o['metadata']['namespace']}/{o['metadata']['name']}" for _, o in left[:8])
            if not strip_finalizers:
                raise CliError(f"{len(left)} mlops object(s) are still there ({names}): their finalizer waits for "
                               "the operator. Start it again and rerun, or rerun with --strip-finalizers")
            for plural, o in left:
                meta = o["metadata"]
                fins = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
                k._call(f"{o['kind']} {meta['name']}", custom.patch_namespaced_custom_object, GROUP, VERSION,
                        meta["namespace"], plural, meta["name"], {"metadata": {"finalizers": fins or None}})
            say(f"removed the operator's finalizer from {len(left)} object(s): {names}")
    apps, policy = client.AppsV1Api(k._api), client.PolicyV1Api(k._api)
    admission = client.AdmissionregistrationV1Api(k._api)
    ext = client.ApiextensionsV1Api(k._api)
    steps: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = [
        (f"deployment {OPERATOR_NS}/{OPERATOR}", apps.delete_namespaced_deployment, (OPERATOR, OPERATOR_NS)),
        (f"poddisruptionbudget {OPERATOR_NS}/{OPERATOR}", policy.delete_namespaced_pod_disruption_budget,
         (OPERATOR, OPERATOR_NS)),
        (f"clusterkopfpeering {OPERATOR}", custom.delete_cluster_custom_object,
         ("kopf.dev", "v1", "clusterkopfpeerings", OPERATOR)),
    ]
    bindings = k._call("RoleBindings", rbac.list_role_binding_for_all_namespaces,
                       label_selector="app.kubernetes.io/component=operator-access")
    steps += [(f"rolebinding {b.metadata.namespace}/{b.metadata.name}", rbac.delete_namespaced_role_binding,
               (b.metadata.name, b.metadata.namespace)) for b in bindings.items]
    steps += [
        (f"clusterrolebinding {WRITE_ROLE}", rbac.delete_cluster_role_binding, (WRITE_ROLE,)),
        (f"clusterrolebinding {OPERATOR}", rbac.delete_cluster_role_binding, (OPERATOR,)),
        (f"clusterrole {WRITE_ROLE}", rbac.delete_cluster_role, (WRITE_ROLE,)),
        (f"clusterrole {OPERATOR}", rbac.delete_cluster_role, (OPERATOR,)),
        ("validatingadmissionpolicybinding mlops-operator-workloads",
         admission.delete_validating_admission_policy_binding, ("mlops-operator-workloads",)),
        ("validatingadmissionpolicy mlops-operator-workloads", admission.delete_validating_admission_policy,
         ("mlops-operator-workloads",)),
        (f"serviceaccount {OPERATOR_NS}/{OPERATOR}", core.delete_namespaced_service_account, (OPERATOR, OPERATOR_NS)),
        (f"namespace {OPERATOR_NS}", core.delete_namespace, (OPERATOR_NS,)),
    ]
    if not keep_crds:
        steps += [(f"customresourcedefinition {crd}", ext.delete_custom_resource_definition, (crd,)) for crd in CRDS]
    for what, fn, args in steps:
        try:
            k._call(what, fn, *args)
            say(f"{what} deleted")
        except NotFound:
            pass
    say("done. Each namespace's artifact store (PVC mlops-store) is data and stays: "
        "kubectl delete pvc mlops-store -n NAMESPACE")
    return 0

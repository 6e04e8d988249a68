"""Labels, owner references and the security context every object the operator creates carries."""

from __future__ import annotations

from typing import Any

from .. import __version__

MANAGED_BY = "mlops-operator"


def labels(name: str, component: str, instance: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """app.kubernetes.io/* labels, so `kubectl get -l app.kubernetes.io/instance=<x>` finds children."""
    out = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/part-of": "mlops",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": __version__,
    }
    out.update(extra or {})
    return out


def owner_reference(owner: dict[str, Any], controller: bool = True) -> dict[str, Any]:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": controller, "blockOwnerDeletion": True}


#: Pod Security "restricted": what every workload pod the operator creates runs with.
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}


def pod_options(opts: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod-level fields, container resources) from a spec's PodOptions (wire form)."""
    opts = opts or {}
    pod: dict[str, Any] = {}
    if opts.get("nodeSelector"):
        pod["nodeSelector"] = opts["nodeSelector"]
    if opts.get("tolerations"):
        pod["tolerations"] = opts["tolerations"]
    if opts.get("serviceAccountName"):
        pod["serviceAccountName"] = opts["serviceAccountName"]
    return pod, opts.get("resources") or {}

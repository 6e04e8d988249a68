"""Start kopf with the project's handlers, logging which cluster it talks to.

Connection: in-cluster config when running in a pod, else the current kubeconfig context
(`KUBECONFIG` or ~/.kube/config), both through the official kubernetes client, so the operator
never knows whether it runs on the embedded cluster, kind or a managed cluster.
"""

from __future__ import annotations

import logging
import random
import time

import kopf

log = logging.getLogger("mlops.operator")


class NoClusterCredentials(RuntimeError):
    """Neither in-cluster config nor a usable kubeconfig: retrying cannot help, so exit."""


def load_cluster_config() -> str:
    """Load in-cluster or kubeconfig credentials into the kubernetes client; return the server."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    errors = []
    try:
        config.load_incluster_config()
    except ConfigException as e:
        errors.append(f"in-cluster: {e}")
        try:
            config.load_kube_config()
        except (ConfigException, OSError) as e2:
            errors.append(f"kubeconfig: {e2}")
            raise NoClusterCredentials("no cluster credentials (" + "; ".join(errors) + ")") from e2
    return client.Configuration.get_default_copy().host


@kopf.on.login()
def login(logger: kopf.Logger, **kwargs) -> kopf.ConnectionInfo | None:
    from kubernetes import client

    info = kopf.login_via_client(logger=logger, **kwargs)
    if info is None:
        return None
    try:
        v = client.VersionApi().get_code()
        version = f"Kubernetes {v.git_version} ({v.platform})"
    except Exception as e:  # the line still names the server; kopf reports API errors itself
        version = f"version unknown: {e}"
    log.info("connecting to cluster %s; operator started on %s", info.server, version)
    return info


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_) -> None:
    settings.posting.level = logging.INFO
    settings.persistence.finalizer = "mlops.dev/finalizer"
    # kopf ignores changes to annotations under its own prefix: keep it away from
    # `mlops.dev/...`, or `mlops.dev/refresh` would never reach the update handlers
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.mlops.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.mlops.dev")


def ensure_peering(name: str) -> None:
    """Create the ClusterKopfPeering replicas elect a leader in, so one `kubectl apply -k` is enough."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    deadline = time.monotonic() + 60  # CRDs applied together with the operator take a moment
    while True:
        try:
            client.CustomObjectsApi().create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body)
            return
        except ApiException as e:
            if e.status in (409, 403):  # exists already / not ours to create (then it must exist)
                return
            if e.status != 404:
                raise
            if time.monotonic() > deadline:
                raise NoClusterCredentials(  # same exit path: a set-up problem retries cannot fix
                    "peering needs kopf's CRDs: kubectl apply -f manifests/base/kopf-peering-crds.yaml") from e
            time.sleep(1)


def run_operator(namespaces: list[str], liveness: str, peering: str | None, standalone: bool,
                 metrics_port: int = 8081, priority: int | None = None, log_format: str = "plain") -> None:
    """Run kopf until SIGTERM (kopf drains handlers on the way out)."""
    from prometheus_client import start_http_server

    from .handlers import register_all
    from .namespaces import guard_kopf_patches

    # JSON lines for log collectors in a cluster; plain text for people at a terminal
    kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN)
    load_cluster_config()  # fail fast with a clear message instead of kopf's endless login retries
    register_all()
    guard_kopf_patches()
    if peering and not standalone:
        ensure_peering(peering)
    if metrics_port:
        start_http_server(metrics_port)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=standalone or not peering,
        peering_name=None if standalone else peering,
        # replicas need distinct priorities: the highest runs, the others pause (leader election)
        priority=priority if priority is not None else random.randint(1, 1_000_000),
    )

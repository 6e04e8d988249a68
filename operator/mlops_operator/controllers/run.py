"""Start kopf with the project's handlers, logging which cluster it talks to.

Connection: in-cluster config when running in a pod, else the current kubeconfig context
(`KUBECONFIG` or ~/.kube/config), both through the official kubernetes client, so the operator
never knows whether it runs on the embedded cluster, kind or a managed cluster.
"""

from __future__ import annotations

import asyncio
import logging

import kopf

log = logging.getLogger("mlops.operator")


def describe_connection(info: kopf.ConnectionInfo) -> str:
    """One line naming the cluster: server URL, and the kubeconfig context when there is one."""
    where = info.server
    if info.default_namespace:
        where += f" (default namespace {info.default_namespace})"
    return where


@kopf.on.login()
def login(logger: kopf.Logger, **kwargs) -> kopf.ConnectionInfo | None:
    info = kopf.login_via_client(logger=logger, **kwargs)
    if info is not None:
        log.info("connecting to cluster %s", describe_connection(info))
    return info


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_) -> None:
    from kubernetes import client

    settings.posting.level = logging.INFO
    settings.persistence.finalizer = "mlops.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="mlops.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="mlops.dev")
    try:
        version = await asyncio.to_thread(lambda: client.VersionApi().get_code())
        logger.info("operator started on Kubernetes %s (%s)", version.git_version, version.platform)
    except Exception as e:  # the login handler already named the server; do not block start-up
        logger.warning("could not read the server version: %s", e)


def run_operator(namespaces: list[str], liveness: str, peering: str | None, standalone: bool) -> None:
    """Run kopf until SIGTERM (kopf drains handlers on the way out)."""
    from . import handlers  # noqa: F401  (registers the custom-resource handlers)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kopf.configure(verbose=False)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=standalone or not peering,
        peering_name=None if standalone else peering,
    )

"""The Deployment and Service of an InferenceService (the model server, `mlops_operator.serving`)."""

from __future__ import annotations

from typing import Any

from ..api.inferenceservice import InferenceServiceSpec
from ..settings import Settings
from .names import child_name
from .common import CONTAINER_SECURITY, POD_SECURITY, labels, owner_reference, pod_options
from .store import store_env, store_volumes

PORT = 8080
#: the Open Inference Protocol over gRPC (serving --grpc-port), Service port `grpc` (appProtocol
#: grpc: HTTP/2, so meshes and gateways route it as gRPC); the port KServe's runtimes use
GRPC_PORT = 8081
#: feedback, stats and reference (serving --monitor-port): apart from inference, so a NetworkPolicy
#: can let label pipelines and the API server in while inference clients stay out
MONITOR_PORT = 8082
#: a new version that never becomes ready is reported (and never takes traffic) after this
PROGRESS_DEADLINE = 120
#: s3 mode: the init container copies the served version here (an emptyDir), verified, and the
#: server opens it as a file store (like KServe's storage initializer and /mnt/models)
MODELS_MOUNT = "/models"
FETCH_CONTAINER = "fetch-model"


def model_source(mv: dict[str, Any], s: Settings, namespace: str) -> tuple[str, str, list[dict[str, Any]]]:
    """(store URI, model URI) the server loads from, and the init containers that put the model
    there: the PVC as it is in file mode; in s3 mode a verified copy in the pod's emptyDir, made
    by `mlops_operator.store.fetch` before the server starts (a fetch that fails, e.g. a digest
    mismatch, keeps the pod from ever becoming ready: the old version keeps serving)."""
    art = mv["spec"]["artifact"]
    if not s.store_is_s3:
        return s.store_uri(namespace), art["uri"], []
    digest = art["digest"]
    # the name the artifact is stored under, from the URI the verify Job checked (it need not be
    # spec.model: a version registered from another model's run keeps its path)
    parts = art["uri"].rstrip("/").split("/")
    model = parts[-2] if len(parts) >= 3 and parts[-1] == digest and parts[-3] == "models" else mv["spec"]["model"]
    fetch = {
        "name": FETCH_CONTAINER, "image": s.runtime_image,
        "command": ["python", "-m", "mlops_operator.store.fetch", "--store", s.store_uri(namespace),
                    "--kind", "models", "--name", model, "--digest", digest, "--extra", "model.json",
                    "--dest", MODELS_MOUNT],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, *store_env(s)],
        "volumeMounts": [{"name": "models", "mountPath": MODELS_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    local = f"file://{MODELS_MOUNT}/models/{model}/{digest}/"  # where FileStore(MODELS_MOUNT) puts it
    return f"file://{MODELS_MOUNT}", local, [fetch]


def deployment_name(isvc: dict[str, Any]) -> str:
    return child_name(isvc, "predictor")


def selector(isvc: str) -> dict[str, str]:
    return {"mlops.dev/inference-service": isvc}


def deployment(isvc: dict[str, Any], mv: dict[str, Any], s: Settings) -> dict[str, Any]:
    meta, spec = isvc["metadata"], InferenceServiceSpec.model_validate(isvc["spec"])
    name = meta["name"]
    mvspec = mv["spec"]
    server, roll = spec.server, spec.rollout
    lab = labels("model-server", "predictor", name, {**selector(name), "mlops.dev/model": mvspec["model"]})
    pod_lab = {**lab, "mlops.dev/model-version": mv["metadata"]["name"], "mlops.dev/track": "stable"}
    vols, mounts = store_volumes(s, read_only=spec.capture is None)
    store_uri, model_uri, init = model_source(mv, s, meta["namespace"])
    if init:
        vols = [{"name": "models", "emptyDir": {}}]
        mounts = [{"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True}]
    pod_extra, resources = pod_options(isvc["spec"].get("pod"))
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 2, "failureThreshold": 2}
    container = {
        "name": "server", "image": s.server_image,
        "command": ["python", "-m", "mlops_operator.serving",
                    "--store-uri", store_uri, "--model-uri", model_uri,
                    "--digest", mvspec["artifact"]["digest"], "--name", mvspec["model"],
                    "--version", str(mvspec["version"]), "--port", str(PORT), "--monitor-port", str(MONITOR_PORT),
                    "--grpc-port", str(GRPC_PORT),
                    "--threads", str(server.threads),
                    "--max-batch-size", str(server.max_batch_size),
                    "--max-body-bytes", str(server.max_body_bytes)]
                   # s3 mode: other Dataset versions (a DriftMonitor's reference) from the shared store
                   + (["--reference-store-uri", s.store_uri(meta["namespace"])] if init else []),
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                # s3 mode: the reference lookup and payload capture speak to the bucket
                *(store_env(s) if init else [])],
        "ports": [{"name": "http", "containerPort": PORT}, {"name": "grpc", "containerPort": GRPC_PORT},
                  {"name": "monitor", "containerPort": MONITOR_PORT}],
        "readinessProbe": probe,
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 10,
                          "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 1,
                         "failureThreshold": 120},
        # read-only, unless the pods capture traffic into the store (their own directory there)
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.capture is not None:
        c = spec.capture
        command: list[str] = container["command"]  # type: ignore[assignment]
        command += ["--capture-rate", repr(c.sample_rate),
                    # s3 mode: objects under captures/<name>/ in the bucket; else the PVC's directory
                    *(["--capture-store", s.store_uri(meta["namespace"]), "--capture-service", name] if init
                      else ["--capture-dir", f"{s.store_mount}/captures/{name}"]),
                    "--capture-max-rows", str(c.max_buffer_rows),
                    "--capture-flush-seconds", str(c.flush_seconds)]
        if c.exclude_columns:
            command += ["--capture-exclude", ",".join(c.exclude_columns)]
    if resources:
        container["resources"] = resources
        for ic in init:  # a namespace's ResourceQuota refuses a container without them; the
            ic["resources"] = resources  # scheduler counts max(init, app): nothing extra
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": deployment_name(isvc), "namespace": meta["namespace"], "labels": lab,
                     "ownerReferences": [owner_reference(isvc)]},
        "spec": {
            # with an autoscaler the HPA owns the count (None: keep the Deployment's current one)
            "replicas": None if spec.autoscaling else spec.replicas,
            "selector": {"matchLabels": {**selector(name), "mlops.dev/track": "stable"}},
            "progressDeadlineSeconds": PROGRESS_DEADLINE,
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": roll.max_surge, "maxUnavailable": roll.max_unavailable}},
            "template": {
                "metadata": {"labels": pod_lab,
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {"securityContext": POD_SECURITY, "automountServiceAccountToken": False,
                         "terminationGracePeriodSeconds": 30,
                         "volumes": [*vols, {"name": "tmp", "emptyDir": {}}],
                         **({"initContainers": init} if init else {}), "containers": [container], **pod_extra},
            },
        },
    }


def service(isvc: dict[str, Any]) -> dict[str, Any]:
    meta = isvc["metadata"]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "labels": labels("model-server", "predictor", meta["name"], selector(meta["name"])),
                     "ownerReferences": [owner_reference(isvc)]},
        "spec": {"selector": selector(meta["name"]),
                 "ports": [{"name": "http", "port": 80, "targetPort": PORT, "protocol": "TCP"},
                           {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT, "protocol": "TCP",
                            "appProtocol": "grpc"},
                           {"name": "monitor", "port": MONITOR_PORT, "targetPort": MONITOR_PORT, "protocol": "TCP"}]},
    }


def url(isvc: dict[str, Any], model: str) -> str:
    meta = isvc["metadata"]
    return f"http://{meta['name']}.{meta['namespace']}.svc/v2/models/{model}"


def canary_deployment(isvc: dict[str, Any], mv: dict[str, Any], replicas: int, s: Settings) -> dict[str, Any]:
    """The new version next to the stable one, behind the same Service (same selector label)."""
    d = deployment(isvc, mv, s)
    d["metadata"]["name"] = canary_name(isvc)
    d["metadata"]["labels"] = {**d["metadata"]["labels"], "mlops.dev/track": "canary"}
    d["spec"]["replicas"] = replicas
    d["spec"]["selector"] = {"matchLabels": {**selector(isvc["metadata"]["name"]), "mlops.dev/track": "canary"}}
    d["spec"]["template"]["metadata"]["labels"]["mlops.dev/track"] = "canary"
    return d


def canary_name(isvc: dict[str, Any]) -> str:
    return child_name(isvc, "canary")


def autoscaler(isvc: dict[str, Any]) -> dict[str, Any]:
    meta, auto = isvc["metadata"], InferenceServiceSpec.model_validate(isvc["spec"]).autoscaling
    if auto is None:
        raise ValueError(f"InferenceService {meta['name']} has no spec.autoscaling")
    metrics = auto.metrics or [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    spec: dict[str, Any] = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "name": deployment_name(isvc)},
                            "minReplicas": auto.min_replicas, "maxReplicas": auto.max_replicas,
                            "metrics": metrics}
    if auto.behavior:
        spec["behavior"] = auto.behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": labels("model-server", "autoscaler", meta["name"], selector(meta["name"])),
                         "ownerReferences": [owner_reference(isvc)]},
            "spec": spec}

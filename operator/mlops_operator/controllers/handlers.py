"""Registers every controller's kopf handlers (one module per kind)."""

from __future__ import annotations

from . import dataset, driftmonitor, inferenceservice, modelversion, pods, trainingrun
from ..settings import Settings


def register_all(settings: Settings | None = None) -> Settings:
    settings = settings or Settings.from_env()
    if settings.store_is_s3:
        # refuse rather than half-work: the Jobs would get an s3:// URI but no credentials and
        # still mount the PVC, and the serving pods have no init container to fetch the model
        raise RuntimeError(
            "MLOPS_STORE is an s3:// URI, but the operator's Jobs and serving pods do not use the s3:// "
            "store yet (issue 18: credentials in the Jobs, the model-fetch init container). "
            "Unset MLOPS_STORE to run with the per-namespace PVC store.")
    dataset.register(settings)
    trainingrun.register(settings)
    modelversion.register(settings)
    inferenceservice.register(settings)
    driftmonitor.register(settings)
    pods.register(settings)
    return settings

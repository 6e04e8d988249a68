"""Registers every controller's kopf handlers (one module per kind)."""

from __future__ import annotations

from . import dataset, driftmonitor, inferenceservice, modelversion, pods, trainingrun
from ..settings import Settings


def register_all(settings: Settings | None = None) -> Settings:
    settings = settings or Settings.from_env()
    dataset.register(settings)
    trainingrun.register(settings)
    modelversion.register(settings)
    inferenceservice.register(settings)
    driftmonitor.register(settings)
    pods.register(settings)
    return settings

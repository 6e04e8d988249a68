"""Kubernetes Events on the objects the operator reconciles: one place for the length limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf


def emit(obj: Mapping[str, Any], etype: str, reason: str, message: str) -> None:
    """An Event on `obj` (a custom object as read from the API); the API server refuses
    messages over 1 kB. kopf types the object as its Body; a plain mapping with `apiVersion`,
    `kind` and `metadata` is what it reads."""
    kopf.event(cast(kopf.Body, obj), type=etype, reason=reason, message=message[:1000])

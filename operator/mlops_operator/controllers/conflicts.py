"""A child's name held by another owner (controllers.kube.NameTaken): said where the user
looks, as `Stalled=True` (reason NameTaken) and a Warning Event, then retried: the usual cause
is a predecessor's child still being garbage-collected, which resolves by itself."""

from __future__ import annotations

from typing import Any, NoReturn

import kopf

from ..api.conditions import observe
from . import kube
from .events import emit


async def name_taken(plural: str, obj: dict[str, Any], err: kube.NameTaken) -> NoReturn:
    meta = obj["metadata"]
    gen = meta.get("generation")
    conds = observe((obj.get("status") or {}).get("conditions"), gen, stalled=("NameTaken", str(err)))
    await kube.patch_status(plural, meta["namespace"], meta["name"], {"conditions": conds})
    emit(obj, "Warning", "NameTaken", str(err))
    raise kopf.TemporaryError(str(err), delay=30)

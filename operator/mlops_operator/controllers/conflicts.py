"""A child that cannot be made (controllers.kube.Blocked), said where the user looks, as
`Stalled=True` and a Warning Event with the same reason, then retried:

- NameTaken: the child's name is held by another owner's object; the usual cause is a
  predecessor's child still being garbage-collected, which resolves by itself;
- Forbidden: the API server refused the child (403): the operator may not write in the
  namespace, or the admission policy denied the workload (e.g. a ServiceAccount the
  namespace's annotation `mlops.dev/allowed-service-accounts` does not list). It resolves once
  an admin or the user changes that.
"""

from __future__ import annotations

from typing import Any, NoReturn

import kopf

from ..api.conditions import observe
from . import kube
from .events import emit


async def blocked(plural: str, obj: dict[str, Any], err: kube.Blocked) -> NoReturn:
    meta = obj["metadata"]
    gen = meta.get("generation")
    conds = observe((obj.get("status") or {}).get("conditions"), gen, stalled=(err.reason, str(err)))
    await kube.patch_status(plural, meta["namespace"], meta["name"], {"conditions": conds})
    emit(obj, "Warning", err.reason, str(err))
    raise kopf.TemporaryError(str(err), delay=30)

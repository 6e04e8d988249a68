"""Pure pod-status rules: container states, phase and conditions, as the kubelet reports them.

The real Job, ReplicaSet, Deployment and EndpointSlice controllers act on exactly these
fields (phase, Ready, containerStatuses[].state/restartCount, podIP), so they are derived in
one place from the worker's per-container record and unit-tested against the documented rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    """What the node knows of one container (spec name, current and last state)."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    last_terminated: dict[str, Any] | None = None
    has_readiness_probe: bool = False
    has_startup_probe: bool = False

    def terminated_state(self) -> dict[str, Any]:
        t: dict[str, Any] = {"exitCode": self.exit_code if self.exit_code is not None else 0,
                             "reason": self.reason or ("Completed" if self.exit_code == 0 else "Error"),
                             "startedAt": self.started_at, "finishedAt": self.finished_at,
                             "containerID": self.container_id}
        if self.signal:
            t["signal"] = self.signal
        if self.message:
            t["message"] = self.message
        return t

    def to_status(self) -> dict[str, Any]:
        if self.state == "running":
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated_state()}
        else:
            w: dict[str, Any] = {"reason": self.reason}
            if self.message:
                w["message"] = self.message
            state = {"waiting": w}
        st: dict[str, Any] = {
            "name": self.name, "image": self.image, "imageID": f"local://{self.image}",
            "state": state, "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
            "ready": self.ready, "restartCount": self.restart_count,
            "started": self.state == "running" and self.started,
        }
        if self.container_id:
            st["containerID"] = self.container_id
        return st


@dataclass
class PodRecord:
    restart_policy: str
    init: list[ContainerRecord] = field(default_factory=list)
    containers: list[ContainerRecord] = field(default_factory=list)
    sandbox_ready: bool = False
    init_done: bool = False
    deleting: bool = False
    pod_ip: str = ""
    host_ip: str = ""
    start_time: str | None = None
    start_error: str = ""


def will_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def phase(p: PodRecord) -> str:
    """Pod phase from container states, following the kubelet's getPhase.

    A container waiting without ever having run keeps the pod Pending whatever its siblings
    do; one waiting in restart back-off counts as stopped with its last exit code.
    """
    if not p.init_done:
        failed_init = [c for c in p.init if c.state == "terminated" and c.exit_code != 0]
        if (failed_init and p.restart_policy == "Never") or p.deleting:
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in p.containers:
        if c.state == "running":
            running += 1
        elif c.state == "terminated":
            stopped += 1
            succeeded += c.exit_code == 0
        elif c.last_terminated is not None:
            stopped += 1
            succeeded += c.last_terminated.get("exitCode") == 0
        else:
            waiting += 1
    if p.deleting and running == 0:
        return "Succeeded" if p.containers and succeeded == len(p.containers) else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if p.restart_policy == "Always":
        return "Running"  # being restarted
    if stopped and succeeded == stopped:
        return "Succeeded"
    if p.restart_policy == "OnFailure":
        return "Running"  # failed containers are being restarted
    return "Failed"


def _cond(ctype: str, ok: bool, reason: str | None, transitions: dict[str, tuple[str, str]]) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = transitions.get(ctype)
    when = prev[1] if prev and prev[0] == status else now()
    transitions[ctype] = (status, when)
    c: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": when}
    if reason and not ok:
        c["reason"] = reason
    return c


def conditions(p: PodRecord, transitions: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """PodReadyToStartContainers, Initialized, ContainersReady, Ready (PodScheduled is the scheduler's)."""
    terminal = phase(p) in ("Succeeded", "Failed")
    all_ready = bool(p.containers) and all(c.ready for c in p.containers) and not terminal
    return [
        _cond("PodReadyToStartContainers", p.sandbox_ready, None, transitions),
        _cond("Initialized", p.init_done, "ContainersNotInitialized", transitions),
        _cond("ContainersReady", all_ready,
              "PodCompleted" if terminal else "ContainersNotReady", transitions),
        _cond("Ready", all_ready, "PodCompleted" if terminal else "ContainersNotReady", transitions),
    ]


def pod_status(p: PodRecord, transitions: dict[str, tuple[str, str]]) -> dict[str, Any]:
    st: dict[str, Any] = {
        "phase": phase(p),
        "conditions": conditions(p, transitions),
        "containerStatuses": [c.to_status() for c in p.containers],
    }
    if p.init:
        st["initContainerStatuses"] = [c.to_status() for c in p.init]
    if p.host_ip:
        st["hostIP"] = p.host_ip
        st["hostIPs"] = [{"ip": p.host_ip}]
    if p.pod_ip:
        st["podIP"] = p.pod_ip
        st["podIPs"] = [{"ip": p.pod_ip}]
    if p.start_time:
        st["startTime"] = p.start_time
    return st

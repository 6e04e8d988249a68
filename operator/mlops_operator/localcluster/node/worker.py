"""One PodWorker per pod bound to the node: set up, run, probe, restart, stop, report.

The worker owns a `PodRecord` (see `podstatus`) and patches the pod's status whenever it
changes, so the upstream controllers see exactly what runs. Per-container state is also
kept in `state.json` under the pod's directory, so a restarted agent adopts running
containers (their shims survive it) instead of starting them twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import CLUSTER_DOMAIN
from ..procs import pid_alive as _pid_alive
from . import podnet, podspec, podstatus, probes, volumes
from .apiclient import ApiClient, ApiError
from .podspec import PodSpecError
from .podstatus import ContainerRecord, PodRecord

log = logging.getLogger("mlops.node.worker")

BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET_AFTER = 10.0, 300.0, 600.0
TERMINATION_MESSAGE_LIMIT = 4096


@dataclass
class NodeContext:
    """What every worker needs from the agent."""

    api: ApiClient
    cluster: str
    node_name: str
    node_ip: str
    state_dir: Path
    ipam: podnet.IPAM
    allocatable: dict[str, str]
    on_finished: Callable[[str], None] = lambda uid: None
    #: the kube-dns ClusterIP when the cluster runs CoreDNS (it needs a real node), else None
    cluster_dns: str | None = None


def _package_root() -> str:
    import mlops_operator

    return str(Path(mlops_operator.__file__).resolve().parents[1])


def _runtime_paths() -> list[str]:
    return sorted({sys.base_prefix, sys.prefix, _package_root()})


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def wait_pid_exit(pid: int) -> None:
    """Wait for any process (child or adopted) to exit, via a pidfd; reap it if it is ours."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def exited() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, exited)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
        try:
            os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: reaps the exited child, never blocks)
        except ChildProcessError:
            pass


@dataclass
class Running:
    shim_pid: int
    pid: int
    exit_file: Path
    started_at: float


@dataclass
class ContainerCtl:
    spec: dict[str, Any]
    rec: ContainerRecord
    init: bool = False
    running: Running | None = None
    ready_probe: probes.ProbeSpec | None = None
    live_probe: probes.ProbeSpec | None = None
    start_probe: probes.ProbeSpec | None = None
    env: dict[str, str] = field(default_factory=dict)
    probe_tasks: list[asyncio.Task] = field(default_factory=list)
    killed_by_liveness: bool = False
    last_ran: float = 0.0


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: dict[str, Any]):
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid, self.ns, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.dir = ctx.state_dir / "pods" / self.uid
        spec = pod["spec"]
        self.rec = PodRecord(restart_policy=spec.get("restartPolicy", "Always"), host_ip=ctx.node_ip)
        self.ctls: dict[str, ContainerCtl] = {}
        for c in spec.get("initContainers") or []:
            r = ContainerRecord(c["name"], c.get("image", ""), reason="PodInitializing")
            self.rec.init.append(r)
            self.ctls["init:" + c["name"]] = ContainerCtl(c, r, init=True)
        for c in spec["containers"]:
            r = ContainerRecord(c["name"], c.get("image", ""),
                                reason="PodInitializing" if spec.get("initContainers") else "ContainerCreating")
            ctl = ContainerCtl(c, r, ready_probe=probes.ProbeSpec.from_api(c.get("readinessProbe")),
                               live_probe=probes.ProbeSpec.from_api(c.get("livenessProbe")),
                               start_probe=probes.ProbeSpec.from_api(c.get("startupProbe")))
            r.has_readiness_probe = ctl.ready_probe is not None
            self.rec.containers.append(r)
            self.ctls[c["name"]] = ctl
        self.transitions: dict[str, tuple[str, str]] = {}
        self.dirty = asyncio.Event()
        self.deleted = asyncio.Event()  # deletionTimestamp seen
        self.gone = asyncio.Event()  # object removed from the API
        self.netns = podnet.netns_name(ctx.cluster, self.uid)
        self.veth = podnet.veth_name(self.uid)
        self.vols: volumes.VolumeSet | None = None
        self.tasks: list[asyncio.Task] = []  # every background task, cancelled when the worker ends
        self.container_loops: list[asyncio.Task] = []
        self.main: asyncio.Task | None = None
        self.gone_status = False  # True for a pod that finished before this agent started
        self.saved = self._load_state()
        self.restore_counts()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.main = asyncio.create_task(self._run(), name=f"pod {self.ns}/{self.name}")

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleted.set()

    def vanish(self) -> None:
        """The pod object is gone (force-deleted): stop at once."""
        self.gone.set()
        self.deleted.set()

    def mark(self) -> None:
        self.dirty.set()

    async def _run(self) -> None:
        status_task = asyncio.create_task(self._status_loop())
        try:
            if (self.pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                # finished under an earlier agent: nothing to run, only the final clean-up
                self.gone_status = True
                await self.deleted.wait()
                await self._cleanup()
                return
            self.rec.start_time = self.saved.get("startTime") or podstatus.now()
            self.dir.mkdir(parents=True, exist_ok=True)
            self.mark()
            if not await self._setup():
                return
            self._save_state()
            if not await self._run_init():
                await self._wait_deleted_then_cleanup()
                return
            self.rec.init_done = True
            self.mark()
            for ctl in self.ctls.values():
                if not ctl.init:
                    self.container_loops.append(asyncio.create_task(self._container_loop(ctl)))
            self.tasks.extend(self.container_loops)
            self.tasks.append(asyncio.create_task(self._token_refresher()))
            await self._wait_until_done()
            await self._wait_deleted_then_cleanup()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not take the agent down; report it on the pod
            log.exception("pod %s/%s: worker failed", self.ns, self.name)
            self.rec.start_error = f"node agent error: {e}"
            for r in self.rec.containers:
                if r.state == "waiting":
                    r.reason, r.message = "CreateContainerError", str(e)
            self.mark()
            await self.deleted.wait()
            await self._stop_all()
            await self._cleanup()
        finally:
            await asyncio.sleep(0)
            status_task.cancel()
            for t in self.tasks:
                t.cancel()
            self.ctx.on_finished(self.uid)

    async def _setup(self) -> bool:
        """Network and volumes; a missing ConfigMap/Secret/PVC is retried until it appears."""
        ip = self.ctx.ipam.allocate(self.uid, prefer=(self.pod.get("status") or {}).get("podIP"))
        await asyncio.to_thread(podnet.setup, self.netns, self.veth, ip, self.ctx.ipam.gateway)
        self.rec.pod_ip = ip
        self.rec.sandbox_ready = True
        self.mark()
        delay = 1.0
        while True:
            try:
                self.vols = await volumes.materialize(self.ctx.api, self.pod, self.dir, self.ctx.allocatable)
                self.rec.start_error = ""
                return True
            except (PodSpecError, ApiError) as e:
                msg = e.message if isinstance(e, (PodSpecError, ApiError)) else str(e)
                self.rec.start_error = msg
                for r in self.rec.init + self.rec.containers:
                    if r.state == "waiting":
                        r.reason, r.message = "ContainerCreating", f"MountVolume.SetUp failed: {msg}"
                self.mark()
            try:
                await asyncio.wait_for(self.deleted.wait(), delay)
                await self._cleanup()
                return False
            except asyncio.TimeoutError:
                delay = min(delay * 2, 30)

    async def _run_init(self) -> bool:
        for ctl in self.ctls.values():
            if not ctl.init:
                continue
            while True:
                code = await self._run_once(ctl)
                if self.deleted.is_set():
                    return False
                if code == 0:
                    break
                if self.rec.restart_policy == "Never":
                    self.mark()
                    return False
                await self._backoff(ctl)
        return True

    async def _wait_until_done(self) -> None:
        loops = self.container_loops
        deleted = asyncio.create_task(self.deleted.wait())
        await asyncio.wait([*loops, deleted], return_when=asyncio.FIRST_COMPLETED)
        while not self.deleted.is_set() and not all(t.done() for t in loops):
            await asyncio.wait([*loops, deleted], return_when=asyncio.FIRST_COMPLETED)
        if self.deleted.is_set():
            await self._stop_all()
            for t in loops:
                t.cancel()
        else:
            deleted.cancel()
            # every container finished for good: free the address, keep logs until deletion
            await asyncio.to_thread(podnet.teardown, self.netns, self.veth)
            self.ctx.ipam.release(self.uid)

    async def _wait_deleted_then_cleanup(self) -> None:
        self.mark()
        await self.deleted.wait()
        await self._stop_all()
        await self._cleanup()

    async def _cleanup(self) -> None:
        """Final status, network and files released, then the pod object deleted (grace 0)."""
        self.rec.deleting = True
        for r in self.rec.containers + self.rec.init:
            r.ready = False
        if not self.gone.is_set() and not self.gone_status:
            await self._patch_status()
        await asyncio.to_thread(podnet.teardown, self.netns, self.veth)
        self.ctx.ipam.release(self.uid)
        if not self.gone.is_set():
            try:
                await self.ctx.api.delete(
                    f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                     "preconditions": {"uid": self.uid}},
                )
            except ApiError as e:
                if e.status not in (404, 409):
                    log.warning("pod %s/%s: final delete failed: %s", self.ns, self.name, e)
        volumes.remove_pod_dir(self.dir)
        log.info("pod %s/%s removed", self.ns, self.name)

    # -- containers ------------------------------------------------------------------------------
    async def _container_loop(self, ctl: ContainerCtl) -> None:
        while not self.deleted.is_set():
            code = await self._run_once(ctl)
            if self.deleted.is_set() or code is None:
                return
            if not podstatus.will_restart(self.rec.restart_policy, code) and not ctl.killed_by_liveness:
                return
            await self._backoff(ctl)

    async def _backoff(self, ctl: ContainerCtl) -> None:
        r = ctl.rec
        ran = ctl.last_ran
        n = int(self.saved.get("backoff", {}).get(r.name, 0)) if ran < BACKOFF_RESET_AFTER else 0
        delay = 0.0 if n == 0 else min(BACKOFF_START * 2 ** (n - 1), BACKOFF_MAX)
        self.saved.setdefault("backoff", {})[r.name] = n + 1
        r.last_terminated = r.terminated_state()
        if delay:
            r.state, r.reason = "waiting", "CrashLoopBackOff"
            r.message = (f"back-off {int(delay)}s restarting failed container={r.name} "
                         f"pod={self.name}_{self.ns}({self.uid})")
            r.ready = False
            self.mark()
            try:
                await asyncio.wait_for(self.deleted.wait(), delay)
            except asyncio.TimeoutError:
                pass
        r.restart_count += 1
        ctl.killed_by_liveness = False

    def _container_dir(self, name: str) -> Path:
        d = self.dir / "containers" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log_path(self, name: str, previous: bool = False) -> Path | None:
        r = next((c for c in self.rec.containers + self.rec.init if c.name == name), None)
        if r is None:
            return None
        n = r.restart_count - (1 if previous else 0)
        return self.dir / "containers" / name / f"{n}.log" if n >= 0 else None

    async def _services(self) -> list[dict[str, Any]]:
        out = (await self.ctx.api.get(f"/api/v1/namespaces/{self.ns}/services")).get("items", [])
        if self.ns != "default":
            try:
                out.append(await self.ctx.api.get("/api/v1/namespaces/default/services/kubernetes"))
            except ApiError:
                pass
        return out

    async def _prepare(self, ctl: ContainerCtl) -> dict[str, Any]:
        cms, secrets = podspec.referenced_objects({"spec": {"containers": [ctl.spec], "volumes": []}})
        base = f"/api/v1/namespaces/{self.ns}"
        # a missing object is left out: container_env decides whether it was optional
        cm_objs = {n: o for n in cms if (o := await volumes.get_or_none(self.ctx.api, f"{base}/configmaps/{n}"))}
        sec_objs = {n: o for n in secrets if (o := await volumes.get_or_none(self.ctx.api, f"{base}/secrets/{n}"))}
        pod = dict(self.pod)
        pod["status"] = dict(pod.get("status") or {}, podIP=self.rec.pod_ip, hostIP=self.ctx.node_ip,
                             podIPs=[{"ip": self.rec.pod_ip}], hostIPs=[{"ip": self.ctx.node_ip}])
        env = podspec.container_env(pod, ctl.spec, await self._services(), cm_objs, sec_objs, self.ctx.allocatable)
        # pods import the same package as this agent: a cluster started from another checkout (a
        # git worktree on PYTHONPATH) runs that checkout's code in its pods, not the installed one
        env.setdefault("PYTHONPATH", _package_root())
        argv = podspec.resolve_command(ctl.spec, env)
        ctl.env = env
        assert self.vols is not None
        mounts = volumes.mounts_for(ctl.spec, self.vols)
        d = self._container_dir(ctl.rec.name)
        tpath = ctl.spec.get("terminationMessagePath") or "/dev/termination-log"
        tfile = d / "termination-log"
        tfile.write_bytes(b"")
        tfile.chmod(0o666)  # writable by any container user, as the kubelet makes it
        mounts.append(volumes.Mount(str(tfile), tpath, False))
        resolv = podspec.resolv_conf(self.pod, self.ctx.cluster_dns, CLUSTER_DOMAIN)
        if resolv is not None:
            rfile = d / "resolv.conf"
            rfile.write_text(resolv)
            rfile.chmod(0o644)
            mounts.append(volumes.Mount(str(rfile), "/etc/resolv.conf", True))
        sc = dict(self.pod["spec"].get("securityContext") or {})
        sc.update(ctl.spec.get("securityContext") or {})
        if sc.get("runAsUser") and not any(e["name"] == "HOME" for e in ctl.spec.get("env") or []):
            env["HOME"] = "/"  # a non-root user has no home in the project's environment
        return {
            "argv": argv, "env": env, "workingDir": ctl.spec.get("workingDir") or "",
            "netns": str(Path("/run/netns") / self.netns), "hostname": self.name,
            "mounts": [m.as_dict() for m in mounts],
            "readOnlyRootFilesystem": bool(sc.get("readOnlyRootFilesystem")),
            "runAsUser": sc.get("runAsUser"), "runAsGroup": sc.get("runAsGroup"),
            "supplementalGroups": list(sc.get("supplementalGroups") or []) + (
                [sc["fsGroup"]] if sc.get("fsGroup") is not None else []),
            # what a process of the project's environment must reach (see shim.expose)
            "exposePaths": _runtime_paths(),
            "log": str(d / f"{ctl.rec.restart_count}.log"),
            "pidFile": str(d / "pid"), "exitFile": str(d / "exit.json"),
        }

    async def _start(self, ctl: ContainerCtl) -> Running:
        spec = await self._prepare(ctl)
        d = self._container_dir(ctl.rec.name)
        for f in ("pid", "exit.json"):
            (d / f).unlink(missing_ok=True)
        (d / "spec.json").write_text(json.dumps(spec))
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        if fs_group is not None and self.vols:
            for path in self.vols.paths.values():
                if path.is_relative_to(self.dir):
                    os.chown(path, -1, fs_group)
                    path.chmod(0o2775)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mlops_operator.localcluster.node.shim", str(d / "spec.json"),
            stdin=asyncio.subprocess.DEVNULL, stdout=open(d / "shim.log", "ab"), stderr=asyncio.subprocess.STDOUT,
        )
        pidfile = d / "pid"
        for _ in range(600):
            if pidfile.exists():
                break
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.01)
        pid = int(pidfile.read_text()) if pidfile.exists() else -1
        return Running(proc.pid, pid, d / "exit.json", time.time())

    async def _run_once(self, ctl: ContainerCtl) -> int | None:
        """Start (or adopt) the container, wait for it to exit; the exit code, None if deleted."""
        r = ctl.rec
        adopted = self._adopt(ctl)
        while adopted is None:
            try:
                ctl.running = await self._start(ctl)
                break
            except (PodSpecError, ApiError, OSError) as e:
                # e.g. a missing Secret key: retried, as the kubelet does, until fixed or deleted
                r.state, r.reason = "waiting", getattr(e, "reason", "CreateContainerError")
                r.message = getattr(e, "message", None) or str(e)
                self.mark()
                try:
                    await asyncio.wait_for(self.deleted.wait(), 5)
                    return None
                except asyncio.TimeoutError:
                    continue
        else:
            ctl.running = adopted
        run = ctl.running
        r.state, r.reason, r.message = "running", "", ""
        r.started_at = _iso(run.started_at)
        r.container_id = f"mlops://{self.uid[:8]}-{r.name}-{r.restart_count}"
        r.started = ctl.start_probe is None
        r.ready = (ctl.ready_probe is None and r.started) if not ctl.init else False
        self._save_state()
        self.mark()
        if not ctl.init:
            ctl.probe_tasks = [asyncio.create_task(self._probe_loop(ctl))]
        await wait_pid_exit(run.shim_pid)
        for t in ctl.probe_tasks:
            t.cancel()
        result = self._read_exit(run)
        r.state, r.ready = "terminated", False
        r.exit_code, r.signal = result.get("exitCode", 137), result.get("signal")
        r.finished_at = _iso(result.get("finishedAt", time.time()))
        if result.get("startError"):
            r.reason, r.message = "StartError", result["startError"]
        else:
            r.reason = "Completed" if r.exit_code == 0 else "Error"
            r.message = self._termination_message(ctl, r.exit_code)
        ctl.last_ran = time.time() - run.started_at
        ctl.running = None
        self._save_state()
        self.mark()
        return r.exit_code

    def _read_exit(self, run: Running) -> dict[str, Any]:
        try:
            return json.loads(run.exit_file.read_text())
        except (OSError, ValueError):
            # the shim was killed (e.g. `mlops down` or an OOM kill of the shim): unknown exit
            return {"exitCode": 137, "signal": 9, "finishedAt": time.time()}

    def _termination_message(self, ctl: ContainerCtl, code: int) -> str:
        d = self._container_dir(ctl.rec.name)
        try:
            msg = (d / "termination-log").read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
        except OSError:
            msg = ""
        if not msg and code != 0 and ctl.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lp = self.log_path(ctl.rec.name)
            if lp and lp.exists():
                lines = lp.read_bytes()[-TERMINATION_MESSAGE_LIMIT:].decode(errors="replace").splitlines()[-80:]
                msg = "\n".join(lines)[-2048:]
        return msg

    def _adopt(self, ctl: ContainerCtl) -> Running | None:
        """A container started by an earlier agent whose shim still runs (or just exited)."""
        saved = self.saved.get("containers", {}).get(ctl.rec.name)
        if not saved or saved.get("restartCount") != ctl.rec.restart_count or not saved.get("shimPid"):
            return None
        self.saved["containers"].pop(ctl.rec.name, None)
        d = self._container_dir(ctl.rec.name)
        exit_file = d / "exit.json"
        shim = saved["shimPid"]
        alive = _pid_alive(shim) and b"node.shim" in Path(f"/proc/{shim}/cmdline").read_bytes()
        if not alive and not exit_file.exists():
            return None
        log.info("pod %s/%s: adopted container %s (pid %s)", self.ns, self.name, ctl.rec.name, saved.get("pid"))
        return Running(shim if alive else -1, saved.get("pid", -1), exit_file, saved.get("startedAt", time.time()))

    async def _stop_container(self, ctl: ContainerCtl, grace: float) -> None:
        run = ctl.running
        if run is None or run.pid <= 0:
            return
        try:
            os.killpg(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(wait_pid_exit(run.shim_pid), grace)
        except asyncio.TimeoutError:
            try:
                os.killpg(run.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _stop_all(self) -> None:
        spec_grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds", spec_grace)
        grace = max(float(min(grace, spec_grace) if grace else 0), 0.0) if not self.gone.is_set() else 0.0
        await asyncio.gather(*(self._stop_container(c, max(grace, 0.1)) for c in self.ctls.values()))
        # wait for the container loops to record the exits
        for _ in range(100):
            if all(c.running is None for c in self.ctls.values()):
                break
            await asyncio.sleep(0.05)

    # -- probes ----------------------------------------------------------------------------------
    async def _probe_loop(self, ctl: ContainerCtl) -> None:
        r = ctl.rec
        run = ctl.running
        assert run is not None

        async def drive(spec: probes.ProbeSpec, on_result: Callable[[bool, str], bool]) -> None:
            await asyncio.sleep(spec.initial_delay)
            ok_n = fail_n = 0
            while True:
                ok, msg = await probes.run_probe(spec, self.rec.pod_ip, ctl.spec, run.pid, ctl.env)
                ok_n, fail_n = (ok_n + 1, 0) if ok else (0, fail_n + 1)
                if ok and ok_n >= spec.success_threshold:
                    if on_result(True, msg):
                        return
                elif not ok and fail_n >= spec.failure_threshold:
                    if on_result(False, msg):
                        return
                await asyncio.sleep(spec.period)

        if ctl.start_probe:
            started = asyncio.get_running_loop().create_future()

            def on_start(ok: bool, msg: str) -> bool:
                if ok:
                    r.started = True
                    r.ready = ctl.ready_probe is None
                    self.mark()
                    started.set_result(True)
                    return True
                self._liveness_kill(ctl, f"Startup probe failed: {msg}")
                return True

            await drive(ctl.start_probe, on_start)
            if not started.done():
                return

        def on_ready(ok: bool, _msg: str) -> bool:
            if r.ready != ok:
                r.ready = ok
                self.mark()
            return False

        def on_live(ok: bool, msg: str) -> bool:
            if not ok:
                self._liveness_kill(ctl, f"Liveness probe failed: {msg}")
                return True
            return False

        tasks = []
        if ctl.ready_probe:
            tasks.append(drive(ctl.ready_probe, on_ready))
        if ctl.live_probe:
            tasks.append(drive(ctl.live_probe, on_live))
        if tasks:
            await asyncio.gather(*tasks)

    def _liveness_kill(self, ctl: ContainerCtl, why: str) -> None:
        log.info("pod %s/%s container %s: %s; restarting", self.ns, self.name, ctl.rec.name, why)
        ctl.killed_by_liveness = True
        ctl.rec.ready = False
        self.mark()
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        # kept (a task with no reference may be garbage-collected mid-run) and cancelled with the worker
        self.tasks.append(asyncio.create_task(self._stop_container(ctl, grace)))

    async def _token_refresher(self) -> None:
        """Rewrite projected service-account tokens at 80% of their lifetime, as the kubelet does."""
        if not self.vols or not self.vols.tokens:
            return
        period = min(t.expiration_seconds for t in self.vols.tokens) * 0.8
        while True:
            await asyncio.sleep(period)
            for t in self.vols.tokens:
                try:
                    await volumes.write_token(self.ctx.api, self.pod, t)
                except ApiError as e:
                    log.warning("pod %s/%s: token refresh failed: %s", self.ns, self.name, e)

    # -- status ----------------------------------------------------------------------------------
    async def _status_loop(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            await self._patch_status()
            await asyncio.sleep(0.05)

    async def _patch_status(self) -> None:
        status = podstatus.pod_status(self.rec, self.transitions)
        try:
            await self.ctx.api.patch(f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status",
                                     {"metadata": {"uid": self.uid}, "status": status}, strategic=True)
        except ApiError as e:
            if e.status == 404:
                self.gone.set()
                self.deleted.set()
            else:
                log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)
        except Exception as e:  # connection trouble: try again on the next change
            log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)
            asyncio.get_running_loop().call_later(1.0, self.dirty.set)

    # -- persistence -----------------------------------------------------------------------------
    def _state_file(self) -> Path:
        return self.dir / "state.json"

    def _load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_file().read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        containers = {}
        for ctl in self.ctls.values():
            if ctl.running:
                containers[ctl.rec.name] = {"shimPid": ctl.running.shim_pid, "pid": ctl.running.pid,
                                            "startedAt": ctl.running.started_at,
                                            "restartCount": ctl.rec.restart_count}
        doc = {"startTime": self.rec.start_time, "containers": containers,
               "restartCounts": {c.rec.name: c.rec.restart_count for c in self.ctls.values()},
               "backoff": self.saved.get("backoff", {})}
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self._state_file())

    def restore_counts(self) -> None:
        """After an agent restart, continue restart counts where the last agent left them."""
        for name, n in (self.saved.get("restartCounts") or {}).items():
            for ctl in self.ctls.values():
                if ctl.rec.name == name:
                    ctl.rec.restart_count = n

"""`up`, `down` and `status` of a named local cluster: the API the CLI and the tests share."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from . import addons, binaries, kubeconfig, netns, nodebins, pki, realnode
from .config import (API_PORT, CLUSTER_DNS_IP, CLUSTER_DOMAIN, KUBERNETES_SERVICE_IP, NODE_IP, ClusterConfig,
                     cache_dir)
from .forward import free_port
from .procs import pid_alive as _pid_alive
from .procs import session_processes

Say = Callable[[str], None]


def _say(msg: str) -> None:
    print(f"[mlops] {msg}", file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    """The cluster did not come up or go down; the message says why and where the logs are."""


# --- processes ----------------------------------------------------------------------------------

def supervisor_pid(cfg: ClusterConfig) -> int | None:
    f = cfg.path("run", "supervisor.pid")
    try:
        pid = int(f.read_text())
    except (OSError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"mlops_operator.localcluster.supervisor" in cmd else None


def read_status(cfg: ClusterConfig) -> dict:
    try:
        return json.loads(cfg.path("run", "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# --- up -----------------------------------------------------------------------------------------

def _prepare(cfg: ClusterConfig) -> None:
    for d in ("logs", "run", "kubeconfigs"):
        cfg.path(d).mkdir(parents=True, exist_ok=True)
    pki.ensure_pki(cfg.path("pki"), cfg.node_name, (NODE_IP, KUBERNETES_SERVICE_IP), CLUSTER_DOMAIN)
    pki.ensure_kubelet_serving(cfg.path("pki"), cfg.node_name, NODE_IP)
    p = cfg.path("pki")
    inside = f"https://127.0.0.1:{API_PORT}"
    kubeconfig.write(cfg.kubeconfig_path, cfg.server_url, p, "admin", f"mlops-{cfg.name}", "mlops-admin")
    kubeconfig.write(cfg.path("kubeconfigs", "admin-internal.conf"), inside, p, "admin", f"mlops-{cfg.name}",
                     "mlops-admin")
    # Components run inside the cluster namespace and reach the API server on its loopback.
    for stem, user in (("controller-manager", "system:kube-controller-manager"),
                       ("scheduler", "system:kube-scheduler"),
                       ("kube-proxy", "system:kube-proxy"),
                       ("node", f"system:node:{cfg.node_name}")):
        kubeconfig.write(cfg.path("kubeconfigs", f"{stem}.conf"), inside, p, stem, f"mlops-{cfg.name}", user)


def _cleanup_leftovers(cfg: ClusterConfig, say: Say) -> None:
    """Remove what a crashed supervisor may have left: its session's processes, the netns."""
    st = read_status(cfg)
    sid = st.get("sid")
    if sid:
        left = session_processes(int(sid))
        if left:
            say(f"cleaning up {len(left)} processes left by an earlier run")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    # whatever kinds the cluster has now: a real node of an earlier run may have been left
    for what in realnode.teardown(cfg):
        say(f"real node left by an earlier run: {what}")
    netns.delete_cluster_namespaces(cfg.netns)
    cfg.path("run", "status.json").unlink(missing_ok=True)
    shutil.rmtree(cfg.path("run", "hold"), ignore_errors=True)


def _wait_healthy(cfg: ClusterConfig, timeout: float, say: Say,
                  proc: subprocess.Popen | None = None) -> dict:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        st = read_status(cfg)
        comps = st.get("components", {})
        if comps and all(c["healthy"] for c in comps.values()):
            return st
        alive = proc.poll() is None if proc is not None else supervisor_pid(cfg) is not None
        if not alive:
            raise ClusterError(
                "the cluster supervisor exited during start-up; see "
                f"{cfg.path('logs', 'supervisor.log')}:\n{_tail(cfg.path('logs', 'supervisor.log'))}"
            )
        crashing = [n for n, c in comps.items() if c["restarts"] >= 3]
        if crashing:
            tails = "\n".join(f"--- {n} ---\n{_tail(cfg.path('logs', f'{n}.log'))}" for n in crashing)
            raise ClusterError(f"cluster {cfg.name}: {', '.join(crashing)} keeps exiting during start-up "
                               f"(`mlops down` stops the rest):\n{tails}")
        waiting = ", ".join(n for n, c in comps.items() if not c["healthy"])
        if waiting and waiting != last:
            say(f"waiting for {waiting}")
            last = waiting
        time.sleep(0.25)
    st = read_status(cfg)
    bad = [n for n, c in st.get("components", {}).items() if not c["healthy"]]
    tails = "\n".join(f"--- {n} ---\n{_tail(cfg.path('logs', f'{n}.log'))}" for n in bad)
    raise ClusterError(f"cluster {cfg.name} not healthy after {timeout:.0f}s: {', '.join(bad)}\n{tails}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def up(name: str = "local", port: int | None = None, timeout: float = 180.0, say: Say = _say,
       nodes: list[str] | None = None, s3: bool = False) -> ClusterConfig:
    """Start cluster `name` (or reuse it if it is running) and return its config.

    `nodes` picks the kinds of node ("process", "real" or both; default: what the cluster had,
    else the process node). `s3` also runs SeaweedFS' S3 gateway where pods reach it
    (s3cluster.py); a cluster started with it keeps it on later `up`s."""
    netns.require_root()
    cfg = ClusterConfig.load(name)
    if cfg is not None and supervisor_pid(cfg) is not None:
        if nodes and sorted(nodes) != sorted(cfg.node_kinds):
            raise ClusterError(f"cluster {name} is running with {'+'.join(cfg.node_kinds)} nodes; "
                               f"`mlops down{'' if name == 'local' else ' --name ' + name}` first to change them")
        if s3 and not cfg.s3:
            raise ClusterError(f"cluster {name} is running without its S3 server; "
                               f"`mlops down{'' if name == 'local' else ' --name ' + name}` first, then `up --s3`")
        _wait_healthy(cfg, timeout, say)
        say(f"cluster {name} is already running at {cfg.server_url}; reusing it")
        return cfg
    if cfg is None:
        cfg = ClusterConfig(name=name, api_host_port=port or (16443 if name == "local" else free_port()),
                            node_kinds=list(nodes or ["process"]))
    else:
        if port:
            cfg.api_host_port = port
        if nodes and sorted(nodes) != sorted(cfg.node_kinds):
            # another topology is another cluster: objects bound to the old nodes (pods, a
            # namespace pinned to the real node) would wait forever for nodes that never come
            say(f"cluster {name}: node kinds change from {'+'.join(cfg.node_kinds)} to {'+'.join(nodes)}; "
                "starting with an empty etcd (certificates kept)")
            cfg.set_node_kinds(nodes)
            shutil.rmtree(cfg.path("etcd"), ignore_errors=True)
    if not _port_free(cfg.api_host_port):
        if port:
            raise ClusterError(f"port {port} on 127.0.0.1 is in use; choose another with --port")
        cfg.api_host_port = free_port()
    if s3:
        cfg.s3 = True
    if cfg.s3 and (not cfg.s3_host_port or not _port_free(cfg.s3_host_port)):
        cfg.s3_host_port = free_port()
    cfg.save()
    bins = binaries.ensure_binaries(progress=say)
    if cfg.s3:
        from . import s3cluster, seaweedfs

        seaweedfs.ensure_weed(progress=say)  # built once from its Go module (minutes), then cached
        s3cluster.identity(cfg)  # the admin key pair, before the server reads it
    if cfg.has_real_node:
        bins.update(nodebins.ensure_node_binaries(progress=say))
        from . import images  # building images needs buildah and mmdebstrap: only for a real node

        images.build(say=say)  # up-to-date images are kept; only changed inputs rebuild
    _cleanup_leftovers(cfg, say)
    _prepare(cfg)
    if cfg.has_real_node:
        realnode.prepare(cfg, bins)
    say(f"starting cluster {name}: etcd, kube-apiserver, kube-controller-manager, kube-scheduler "
        f"(Kubernetes v{cfg.kubernetes_version}) in network namespace {cfg.netns}")
    with open(cfg.path("logs", "supervisor.log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_operator.localcluster.supervisor", name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    _wait_healthy(cfg, timeout, say, proc)
    addons.install(cfg, bins["kubectl"], CLUSTER_DNS_IP)
    say(f"cluster {name} is ready at {cfg.server_url} ({' + '.join(cfg.node_kinds)} node)")
    return cfg


# --- down / status ------------------------------------------------------------------------------

def down(name: str = "local", purge: bool = False, timeout: float = 40.0, say: Say = _say) -> None:
    """Stop cluster `name`: every process of its session, its namespace; `purge` also its state."""
    cfg = ClusterConfig.load(name)
    if cfg is None:
        say(f"no cluster named {name}")
        return
    pid = supervisor_pid(cfg)
    sid = read_status(cfg).get("sid") or pid
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    if sid:
        for p in session_processes(int(sid)):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while session_processes(int(sid)) and time.monotonic() < deadline:
            time.sleep(0.1)
    realnode.teardown(cfg)  # nothing to do unless the cluster has (or had) a real node
    netns.delete_cluster_namespaces(cfg.netns)
    cfg.path("run", "supervisor.pid").unlink(missing_ok=True)
    cfg.path("run", "status.json").unlink(missing_ok=True)
    if purge:
        shutil.rmtree(cfg.state_dir, ignore_errors=True)
        say(f"cluster {name} stopped and its state removed")
    else:
        say(f"cluster {name} stopped (state kept in {cfg.state_dir}; `mlops down --purge` removes it)")


def status(name: str = "local") -> dict:
    """What runs: supervisor, components with health and restarts, the kubeconfig to use."""
    cfg = ClusterConfig.load(name)
    if cfg is None:
        return {"name": name, "running": False, "reason": "never created"}
    pid = supervisor_pid(cfg)
    st = read_status(cfg) if pid else {}
    return {
        "name": name,
        "running": pid is not None,
        "server": cfg.server_url,
        "kubeconfig": str(cfg.kubeconfig_path),
        "kubernetesVersion": cfg.kubernetes_version,
        "netns": cfg.netns,
        "stateDir": str(cfg.state_dir),
        "nodeKinds": cfg.node_kinds,
        "components": st.get("components", {}),
        **({"realNode": realnode.describe(cfg)} if cfg.has_real_node else {}),
        **({"s3": s3_info(cfg)} if cfg.s3 else {}),
    }


def s3_info(cfg: ClusterConfig) -> dict:
    """Where the cluster's S3 server is, for pods and for the host; never the key pair itself."""
    from . import s3cluster

    return {"endpoint": s3cluster.endpoint(), "bucket": s3cluster.BUCKET, "storeURI": s3cluster.store_uri(),
            "hostEndpoint": f"http://127.0.0.1:{cfg.s3_host_port}",
            "credentialsFile": str(s3cluster.credentials_file(cfg))}


def load_images(name: str) -> list[str]:
    """Import the built image archives that changed into running cluster `name`'s real node
    (what `kind load image-archive` does); pods started afterwards use them."""
    cfg = ClusterConfig.load(name)
    if cfg is None or supervisor_pid(cfg) is None:
        raise ClusterError(f"cluster {name} is not running")
    if not cfg.has_real_node:
        raise ClusterError(f"cluster {name} has no real node (its process node runs image names as processes)")
    return realnode.import_images(cfg, nodebins.node_binary_paths(), realnode.image_archives(cache_dir()))


def hold_component(name: str, component: str, hold: bool) -> None:
    """Stop a component and keep it stopped (hold=True), or let the supervisor start it again."""
    cfg = ClusterConfig.load(name)
    if cfg is None or supervisor_pid(cfg) is None:
        raise ClusterError(f"cluster {name} is not running")
    known = set(read_status(cfg).get("components", {}))
    if component not in known:
        raise ClusterError(f"unknown component {component!r}; one of {', '.join(sorted(known))}")
    f = cfg.path("run", "hold", component)
    if hold:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    else:
        f.unlink(missing_ok=True)

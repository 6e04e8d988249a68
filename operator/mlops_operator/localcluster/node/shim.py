"""Per-container parent process (like a containerd shim): set up, exec, record the exit.

Run as `python -m mlops_operator.localcluster.node.shim SPEC.json`. It forks the container
process, which joins the pod's network namespace, gets private mount and UTS namespaces
(bind mounts at the volumeMounts, an optional read-only root, the pod name as hostname),
its own process group (the agent signals the whole group), the requested uid/gid and cwd,
and execs the command with stdout/stderr appended to its log file. The shim waits and writes
`exit.json` atomically, so the agent learns the exit code even if it was restarted meanwhile
(it then watches the shim through a pidfd). Only the standard library, to start fast.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src: str | None, dst: str, flags: int) -> None:
    _check(_libc.mount(src.encode() if src else None, dst.encode(), None, flags, None), f"mount {src} {dst}")


def _ensure_target(src: str, dst: str) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    elif not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst) or "/", exist_ok=True)
        open(dst, "a").close()


def _blocker(path: str) -> str | None:
    """The highest ancestor of `path` that other users cannot traverse (e.g. /root, mode 700)."""
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        cur = os.path.join(cur, part)
        try:
            if not os.stat(cur).st_mode & 0o001:
                return cur
        except OSError:
            return None
    return None


def stage_paths(paths: list[str], stage: str) -> list[tuple[str, str]]:
    """Bind each runtime path to a staging directory before anything can cover it."""
    staged = []
    for i, p in enumerate(sorted(set(paths))):
        if not os.path.isdir(p):
            continue
        tmp = os.path.join(stage, str(i))
        os.makedirs(tmp, exist_ok=True)
        _mount(p, tmp, MS_BIND | MS_REC)
        staged.append((tmp, p))
    return staged


def expose(staged: list[tuple[str, str]], targets: list[str], non_root: bool) -> None:
    """Keep the project's environment (interpreter, venv, package) reachable in the container.

    Two things can hide it: a volume mounted over an ancestor (an emptyDir at /tmp hides a
    checkout under /tmp), and, for a non-root user, a closed ancestor such as /root (mode
    700). A closed ancestor is covered by an empty tmpfs; then every hidden path is
    bind-mounted back from its staged copy. Only this container's mount namespace changes;
    the host's permissions never do."""
    blockers = sorted({b for _, p in staged if non_root and (b := _blocker(p)) is not None and b != p})
    for b in blockers:
        _check(_libc.mount(b"tmpfs", b.encode(), b"tmpfs", 0, b"mode=0755"), f"mount tmpfs {b}")

    def covered(p: str) -> bool:
        return any(p == t or p.startswith(t.rstrip("/") + "/") for t in [*blockers, *targets])

    for tmp, p in staged:
        if covered(p):
            os.makedirs(p, mode=0o755, exist_ok=True)
            _mount(tmp, p, MS_BIND | MS_REC)


def _child(spec: dict, errw: int) -> None:
    try:
        os.setpgid(0, 0)
        # opened before any mount can hide the node's state directory
        log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        devnull = os.open("/dev/null", os.O_RDONLY)
        fd = os.open(spec["netns"], os.O_RDONLY)
        _check(_libc.setns(fd, CLONE_NEWNET), "setns")
        os.close(fd)
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
        _mount(None, "/", MS_REC | MS_PRIVATE)
        host = spec.get("hostname", "")[:63].encode()
        _check(_libc.sethostname(host, len(host)), "sethostname")
        staged = stage_paths(spec.get("exposePaths", []), f"/run/mlops-shim/{os.getpid()}")
        # volumes before expose(): their sources (the node's state dir) may sit under a
        # directory that expose() covers
        for m in spec["mounts"]:
            # a target inside an earlier volume (e.g. /tmp/x under an emptyDir at /tmp) exists
            # only in the container's view: create it there, as a container runtime does
            _ensure_target(m["source"], m["target"])
            _mount(m["source"], m["target"], MS_BIND | MS_REC)
            if m.get("readOnly"):
                _mount(None, m["target"], MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)
        expose(staged, [m["target"] for m in spec["mounts"]], bool(spec.get("runAsUser")))
        if spec.get("readOnlyRootFilesystem"):
            _mount(None, "/", MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(spec.get("workingDir") or "/")
        gid, uid = spec.get("runAsGroup"), spec.get("runAsUser")
        if uid is not None or gid is not None:
            groups = [g for g in spec.get("supplementalGroups", []) if g is not None]
            os.setgroups(groups)
            os.setgid(gid if gid is not None else (uid or 0))
            if uid is not None:
                os.setuid(uid)
        argv = spec["argv"]
        os.execvpe(argv[0], argv, spec["env"])
    except BaseException as e:  # report why the container could not start, then die
        try:
            os.write(errw, f"{type(e).__name__}: {e}".encode()[:4000])
        finally:
            os._exit(127)


def prepare_targets(spec: dict) -> None:
    """Create missing mount targets on the host fs (needed before a read-only root)."""
    for m in spec["mounts"]:
        _ensure_target(m["source"], m["target"])


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    prepare_targets(spec)
    errr, errw = os.pipe2(os.O_CLOEXEC)
    started = time.time()
    pid = os.fork()
    if pid == 0:
        os.close(errr)
        _child(spec, errw)
    os.close(errw)
    # The shim outlives an agent restart and must not die of signals meant for others; only
    # the container's own process group is signalled to stop it (SIG_IGN here is not
    # inherited by the container: it was forked before).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    with open(spec["pidFile"] + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(spec["pidFile"] + ".tmp", spec["pidFile"])
    start_error = os.read(errr, 4096).decode(errors="replace")  # EOF at exec (CLOEXEC) or error text
    os.close(errr)
    _, status = os.waitpid(pid, 0)
    try:  # staging mount points of expose(): empty directories on the host's /run
        for d in os.listdir(f"/run/mlops-shim/{pid}"):
            os.rmdir(f"/run/mlops-shim/{pid}/{d}")
        os.rmdir(f"/run/mlops-shim/{pid}")
    except OSError:
        pass
    result = {"startedAt": started, "finishedAt": time.time(), "startError": start_error or None}
    if os.WIFSIGNALED(status):
        result["signal"] = os.WTERMSIG(status)
        result["exitCode"] = 128 + os.WTERMSIG(status)
    else:
        result["exitCode"] = os.WEXITSTATUS(status)
    tmp = spec["exitFile"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, spec["exitFile"])


if __name__ == "__main__":
    main()

"""Pure translations from a Pod object to what the node runs: command, environment, files.

No I/O here: the worker fetches the ConfigMaps, Secrets and Services a pod references and
passes them in, so every rule the kubelet applies (service links, $(VAR) expansion, fieldRef
paths, resource divisors, image entrypoints) is unit-tested without a cluster.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import sys
from decimal import Decimal
from typing import Any, Mapping, Sequence

Obj = Mapping[str, Any]


class PodSpecError(ValueError):
    """The pod cannot be started as written (reason is a kubelet-style waiting reason)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


#: Entrypoints of images the local node knows, by repository basename, used when a container
#: sets no `command` (a process node cannot read an image's ENTRYPOINT). Keep in step with
#: the ENTRYPOINT lines in images/.
IMAGE_ENTRYPOINTS: dict[str, list[str]] = {
    "pause": [sys.executable, "-c", "import signal; signal.pause()"],
    "mlops-operator": ["mlops", "operator", "run"],
    "mlops-runtime": ["mlops"],
    "mlops-server": ["python", "-m", "mlops_operator.serving"],
}


def image_basename(image: str) -> str:
    """`ghcr.io/org/mlops-runtime:0.1@sha256:..` -> `mlops-runtime`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def default_path() -> str:
    """PATH for pod processes: the project's environment first, so `python`/`mlops` are ours."""
    venv_bin = os.path.dirname(sys.executable)
    return f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --- $(VAR) expansion (k8s.io/kubernetes/third_party/forked/golang/expansion) -----------------

def expand(s: str, env: Mapping[str, str]) -> str:
    """Expand $(VAR) from env; `$$` is a literal `$`; unknown references stay as written."""
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if c == "$" and i + 1 < n:
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = s.find(")", i + 2)
                if end != -1:
                    name = s[i + 2:end]
                    out.append(env[name] if name in env else s[i:end + 1])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def resolve_command(container: Obj, env: Mapping[str, str]) -> list[str]:
    """argv of a container: command (or the image's known entrypoint) + args, expanded."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        entry = IMAGE_ENTRYPOINTS.get(image_basename(container.get("image", "")))
        if entry is None:
            raise PodSpecError(
                "CreateContainerError",
                f"container {container['name']!r}: image {container.get('image')!r} has no entrypoint "
                "known to the local node; set `command` (the local node runs processes, not images)",
            )
        command = list(entry)
    return [expand(a, env) for a in command + args]


# --- service links ---------------------------------------------------------------------------

def _env_name(s: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", s.upper())


def service_env(services: Sequence[Obj]) -> dict[str, str]:
    """Docker-link style variables for each Service with a ClusterIP, as the kubelet sets them."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = svc.get("spec", {})
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = _env_name(svc["metadata"]["name"])
        first = ports[0]
        hostport = f"[{ip}]" if ":" in ip else ip  # net.JoinHostPort
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first["port"])
        for p in ports:
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p["port"])
        proto = first.get("protocol", "TCP")
        env[f"{name}_PORT"] = f"{proto.lower()}://{hostport}:{first['port']}"
        for p in ports:
            pr = p.get("protocol", "TCP")
            prefix = f"{name}_PORT_{p['port']}_{pr.upper()}"
            env[prefix] = f"{pr.lower()}://{hostport}:{p['port']}"
            env[f"{prefix}_PROTO"] = pr.lower()
            env[f"{prefix}_PORT"] = str(p["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


# --- downward API ----------------------------------------------------------------------------

_LABEL_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _format_map(m: Mapping[str, str]) -> str:
    """`key="value"` lines with the value quoted as Go's %q does (JSON quoting is the same for text)."""
    return "\n".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(m.items()))


def field_value(pod: Obj, path: str) -> str:
    """Value of a downward-API fieldRef path."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs", [])),
        "status.hostIPs": ",".join(p["ip"] for p in status.get("hostIPs", [])),
    }
    if path in simple:
        return simple[path]
    if path == "metadata.labels":
        return _format_map(meta.get("labels") or {})
    if path == "metadata.annotations":
        return _format_map(meta.get("annotations") or {})
    m = _LABEL_KEY.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise PodSpecError("CreateContainerConfigError", f"unsupported fieldRef path {path!r}")


_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("0.001"),
           "k": Decimal(1000), "M": Decimal(1000) ** 2, "G": Decimal(1000) ** 3, "T": Decimal(1000) ** 4,
           "P": Decimal(1000) ** 5, "E": Decimal(1000) ** 6,
           "Ki": Decimal(1024), "Mi": Decimal(1024) ** 2, "Gi": Decimal(1024) ** 3, "Ti": Decimal(1024) ** 4,
           "Pi": Decimal(1024) ** 5, "Ei": Decimal(1024) ** 6}


def parse_quantity(q: str | int | float) -> Decimal:
    s = str(q)
    for suf in sorted(_SUFFIX, key=len, reverse=True):
        if s.endswith(suf):
            return Decimal(s[: -len(suf)]) * _SUFFIX[suf]
    return Decimal(s)


def resource_value(container: Obj, resource: str, divisor: str | None, node_allocatable: Mapping[str, str]) -> str:
    """Value of a resourceFieldRef: limits default to the node's allocatable, rounded up."""
    kind, _, res = resource.partition(".")
    section = (container.get("resources") or {}).get(kind) or {}
    raw = section.get(res)
    if raw is None:
        if kind == "requests":
            raw = "0"
        else:
            raw = node_allocatable.get(res, "0")
    div = parse_quantity(divisor or "1")
    return str(max(0, math.ceil(parse_quantity(raw) / div)) if div else 0)


# --- environment -----------------------------------------------------------------------------

def _ref_data(objs: Mapping[str, Obj], name: str, kind: str) -> dict[str, str] | None:
    o = objs.get(name)
    if o is None:
        return None
    if kind == "Secret":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (o.get("data") or {}).items()}
    return dict(o.get("data") or {})


def container_env(pod: Obj, container: Obj, services: Sequence[Obj], configmaps: Mapping[str, Obj],
                  secrets: Mapping[str, Obj], node_allocatable: Mapping[str, str]) -> dict[str, str]:
    """The full environment of a container process, in kubelet precedence order."""
    env: dict[str, str] = {"PATH": default_path(), "HOSTNAME": pod["metadata"]["name"], "HOME": "/root"}
    if pod.get("spec", {}).get("enableServiceLinks", True):
        env.update(service_env(services))
    else:
        env.update({k: v for k, v in service_env([s for s in services if s["metadata"]["name"] == "kubernetes"
                                                  and s["metadata"].get("namespace") == "default"]).items()
                    if k.startswith("KUBERNETES_")})
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for key, kind, objs in (("configMapRef", "ConfigMap", configmaps), ("secretRef", "Secret", secrets)):
            ref = src.get(key)
            if not ref:
                continue
            data = _ref_data(objs, ref["name"], kind)
            if data is None:
                if ref.get("optional"):
                    continue
                raise PodSpecError("CreateContainerConfigError", f'{kind.lower()} "{ref["name"]}" not found')
            env.update({prefix + k: v for k, v in data.items()})
    for e in container.get("env") or []:
        name = e["name"]
        if "value" in e:
            env[name] = expand(e["value"], env)
            continue
        vf = e.get("valueFrom")
        if not vf:
            env[name] = ""
            continue
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            r = vf["resourceFieldRef"]
            target = container
            if r.get("containerName"):
                target = next((c for c in pod["spec"]["containers"] if c["name"] == r["containerName"]), container)
            env[name] = resource_value(target, r["resource"], r.get("divisor"), node_allocatable)
        else:
            for key, kind, objs in (("configMapKeyRef", "ConfigMap", configmaps), ("secretKeyRef", "Secret", secrets)):
                ref = vf.get(key)
                if not ref:
                    continue
                data = _ref_data(objs, ref["name"], kind)
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    what = f'{kind.lower()} "{ref["name"]}"' if data is None else \
                        f'couldn\'t find key {ref["key"]} in {kind} {pod["metadata"]["namespace"]}/{ref["name"]}'
                    raise PodSpecError("CreateContainerConfigError",
                                       what + (" not found" if data is None else ""))
                env[name] = data[ref["key"]]
    return env


def referenced_objects(pod: Obj) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a pod's env and volumes reference."""
    cms: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec", {})
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for src in c.get("envFrom") or []:
            if src.get("configMapRef"):
                cms.add(src["configMapRef"]["name"])
            if src.get("secretRef"):
                secrets.add(src["secretRef"]["name"])
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if vf.get("configMapKeyRef"):
                cms.add(vf["configMapKeyRef"]["name"])
            if vf.get("secretKeyRef"):
                secrets.add(vf["secretKeyRef"]["name"])
    for v in spec.get("volumes") or []:
        if v.get("configMap"):
            cms.add(v["configMap"]["name"])
        if v.get("secret"):
            secrets.add(v["secret"]["secretName"])
        for src in (v.get("projected") or {}).get("sources") or []:
            if src.get("configMap"):
                cms.add(src["configMap"]["name"])
            if src.get("secret"):
                secrets.add(src["secret"]["name"])
    return cms, secrets


def resolv_conf(pod: Obj, nameserver: str | None, domain: str) -> str | None:
    """The /etc/resolv.conf a kubelet writes for a pod, or None to keep the host's.

    ClusterFirst (the default) points at the cluster DNS with the namespace's search path, as
    the kubelet does; `Default` and `None` without dnsConfig keep the node's resolver."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if nameserver is None or policy not in ("ClusterFirst", "ClusterFirstWithHostNet"):
        return None
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    search = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
    options = ["ndots:5"]
    extra = spec.get("dnsConfig") or {}
    servers = [nameserver, *extra.get("nameservers", [])]
    search += [s for s in extra.get("searches", []) if s not in search]
    for o in extra.get("options", []):
        options.append(f"{o['name']}:{o['value']}" if o.get("value") is not None else o["name"])
    return "".join(f"nameserver {s}\n" for s in servers) + f"search {' '.join(search)}\noptions {' '.join(options)}\n"

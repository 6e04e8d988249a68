"""A Prometheus scrape configuration generated from the PodMonitors of manifests/monitoring, so a
plain Prometheus (no Prometheus Operator) scrapes exactly what the PodMonitors describe.

Pure functions: PodMonitor dicts in, Prometheus configuration dicts out. The translation follows
the Prometheus Operator's own (job `podMonitor/<ns>/<name>/<i>`; pods in Failed/Succeeded dropped;
the selector as `keep` rules on pod labels; the port as a `keep` on the container port name; the
namespace, container, pod, job and endpoint target labels; then the PodMonitor's relabelings), so
series carry the same labels either way. A field it does not translate is an error, not a silent
difference.

Debian's `prometheus` package (2.42+ds) is built without Kubernetes service discovery (promtool
rejects `kubernetes_sd_configs`). For it, `http_sd` puts an HTTP SD endpoint in place of each
`kubernetes_sd_configs` (the namespaces in its query): one that serves the pods with the same
`__meta_kubernetes_pod_*` labels Kubernetes SD gives (`pod_targets`), so the relabelling is the same.

With `via_proxy`, targets are reached through the API server's pod proxy
(/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy<path>) with the given credentials: the way in
from a machine that cannot route to pod IPs, such as the local cluster's host. `instance` keeps
the pod's <ip>:<port>, as without the proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml

#: PodMonitor podMetricsEndpoints fields this translation handles
ENDPOINT_FIELDS = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                   "honorTimestamps", "params", "relabelings", "metricRelabelings"}
RELABEL_KEYS = {"sourceLabels": "source_labels", "separator": "separator", "targetLabel": "target_label",
                "regex": "regex", "modulus": "modulus", "replacement": "replacement", "action": "action"}
RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


class PodMonitorError(ValueError):
    """A PodMonitor this translation cannot express faithfully."""


@dataclass(frozen=True)
class ApiAccess:
    """How Prometheus reaches the API server: its URL, CA, and a bearer token file or a client certificate."""

    server: str
    ca_file: str
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def tls(self) -> dict[str, str]:
        out = {"ca_file": self.ca_file}
        if self.cert_file and self.key_file:
            out.update(cert_file=self.cert_file, key_file=self.key_file)
        return out

    def sd(self) -> dict[str, Any]:
        """The kubernetes_sd_configs fields that point discovery at this API server."""
        out: dict[str, Any] = {"api_server": self.server, "tls_config": self.tls()}
        if self.token_file:
            out["authorization"] = {"credentials_file": self.token_file}
        return out

    def host_port(self) -> str:
        u = urlsplit(self.server)
        return u.netloc or u.path


def sanitize(label: str) -> str:
    """A Kubernetes label name as Prometheus' SD meta label suffix
    (mlops.dev/model-version -> mlops_dev_model_version)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def quote(value: str) -> str:
    """A literal in an RE2 regex."""
    return RE2_META.sub(r"\\\1", value)


def _selector_rules(selector: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for k, v in sorted((selector.get("matchLabels") or {}).items()):
        s = sanitize(k)
        rules.append({"action": "keep", "source_labels": [f"__meta_kubernetes_pod_label_{s}",
                                                          f"__meta_kubernetes_pod_labelpresent_{s}"],
                      "regex": f"({quote(str(v))});true"})
    for e in selector.get("matchExpressions") or []:
        s, op, values = sanitize(e["key"]), e.get("operator"), [quote(str(v)) for v in e.get("values") or []]
        if op in ("In", "NotIn"):
            rules.append({"action": "keep" if op == "In" else "drop",
                          "source_labels": [f"__meta_kubernetes_pod_label_{s}",
                                            f"__meta_kubernetes_pod_labelpresent_{s}"],
                          "regex": f"({'|'.join(values)});true"})
        elif op in ("Exists", "DoesNotExist"):
            rules.append({"action": "keep" if op == "Exists" else "drop",
                          "source_labels": [f"__meta_kubernetes_pod_labelpresent_{s}"], "regex": "true"})
        else:
            raise PodMonitorError(f"selector operator {op!r} is not a label selector operator")
    return rules


def relabel(rule: dict[str, Any]) -> dict[str, Any]:
    """A PodMonitor RelabelConfig (camelCase) as a Prometheus relabel_config."""
    unknown = set(rule) - set(RELABEL_KEYS)
    if unknown:
        raise PodMonitorError(f"relabeling fields not translated: {sorted(unknown)}")
    out = {RELABEL_KEYS[k]: v for k, v in rule.items()}
    if "action" in out:
        out["action"] = str(out["action"]).lower()
    return out


def scrape_configs(monitor: dict[str, Any], access: ApiAccess | None = None,
                   via_proxy: bool = False, http_sd: str | None = None) -> list[dict[str, Any]]:
    """The scrape configs of one PodMonitor: one job per podMetricsEndpoint."""
    if monitor.get("kind") != "PodMonitor":
        raise PodMonitorError(f"not a PodMonitor: {monitor.get('kind')}")
    if via_proxy and access is None:
        raise PodMonitorError("scraping through the API server proxy needs the API server's address and credentials")
    meta, spec = monitor.get("metadata") or {}, monitor.get("spec") or {}
    name, ns = meta.get("name"), meta.get("namespace")
    if not name or not ns:
        raise PodMonitorError("a PodMonitor needs metadata.name and metadata.namespace (from the kustomization)")
    nsel = spec.get("namespaceSelector") or {}
    sd: dict[str, Any] = {"role": "pod"}
    if not nsel.get("any"):
        sd["namespaces"] = {"names": list(nsel.get("matchNames") or [ns])}
    if access is not None:
        sd.update(access.sd())
    sd_key, sd_config = "kubernetes_sd_configs", sd
    if http_sd:
        names = (sd.get("namespaces") or {}).get("names") or []
        sd_key, sd_config = "http_sd_configs", {"url": http_sd + ("?" + urlencode([("namespace", n) for n in names])
                                                                  if names else ""),
                                                "refresh_interval": "10s"}
    out = []
    for i, ep in enumerate(spec.get("podMetricsEndpoints") or []):
        unknown = set(ep) - ENDPOINT_FIELDS
        if unknown:
            raise PodMonitorError(f"PodMonitor {ns}/{name} endpoint {i}: fields not translated: {sorted(unknown)}")
        port, target_port = ep.get("port"), ep.get("targetPort")
        if not port and target_port is None:
            raise PodMonitorError(f"PodMonitor {ns}/{name} endpoint {i}: needs port (a container port name)")
        path = ep.get("path") or "/metrics"
        job: dict[str, Any] = {"job_name": f"podMonitor/{ns}/{name}/{i}",
                               "honor_labels": bool(ep.get("honorLabels", False)),
                               sd_key: [dict(sd_config)], "metrics_path": path,
                               "scheme": ep.get("scheme") or "http"}
        if "honorTimestamps" in ep:
            job["honor_timestamps"] = bool(ep["honorTimestamps"])
        if ep.get("interval"):
            job["scrape_interval"] = ep["interval"]
        if ep.get("scrapeTimeout"):
            job["scrape_timeout"] = ep["scrapeTimeout"]
        if ep.get("params"):
            job["params"] = ep["params"]
        rules: list[dict[str, Any]] = [
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            *_selector_rules(spec.get("selector") or {}),
        ]
        if port:
            rules.append({"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                          "regex": quote(str(port))})
        else:
            rules.append({"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                          "regex": quote(str(target_port))})
        rules += [
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{ns}/{name}"},
            {"target_label": "endpoint", "replacement": str(port or target_port)},
            *[relabel(r) for r in ep.get("relabelings") or []],
        ]
        if via_proxy:
            assert access is not None
            rules += [
                {"source_labels": ["instance", "__meta_kubernetes_pod_ip",
                                   "__meta_kubernetes_pod_container_port_number"],
                 "regex": ";(.+);(.+)", "replacement": "$1:$2", "target_label": "instance"},
                {"source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_name",
                                   "__meta_kubernetes_pod_container_port_number"],
                 "regex": "(.+);(.+);(.+)", "target_label": "__metrics_path__",
                 "replacement": f"/api/v1/namespaces/$1/pods/{'https:' if job['scheme'] == 'https' else ''}$2:$3"
                                f"/proxy{path}"},
                {"target_label": "__address__", "replacement": access.host_port()},
            ]
            job["scheme"] = urlsplit(access.server).scheme or "https"
            job["tls_config"] = access.tls()
            if access.token_file:
                job["authorization"] = {"credentials_file": access.token_file}
        job["relabel_configs"] = rules
        if ep.get("metricRelabelings"):
            job["metric_relabel_configs"] = [relabel(r) for r in ep["metricRelabelings"]]
        out.append(job)
    return out


def prometheus_config(monitors: Iterable[dict[str, Any]], access: ApiAccess | None = None, via_proxy: bool = False,
                      rule_files: Iterable[str] = (), interval: str = "30s", http_sd: str | None = None,
                      scrape_interval: str | None = None) -> dict[str, Any]:
    """A whole prometheus.yml: global settings, the rule files, and every PodMonitor's jobs.

    `scrape_interval` replaces every PodMonitor's interval (and the evaluation interval): the
    demo's windows last seconds, which a 30 s scrape would miss; the jobs are otherwise the same."""
    jobs = [j for m in monitors for j in scrape_configs(m, access, via_proxy, http_sd)]
    if scrape_interval:
        parse_duration(scrape_interval)  # a bad value fails here, not in Prometheus
        interval = scrape_interval
        for j in jobs:
            j["scrape_interval"] = scrape_interval
            if "scrape_timeout" in j and parse_duration(j["scrape_timeout"]) > parse_duration(scrape_interval):
                j["scrape_timeout"] = scrape_interval
    cfg: dict[str, Any] = {"global": {"scrape_interval": interval, "evaluation_interval": interval}}
    if rule_files:
        cfg["rule_files"] = list(rule_files)
    cfg["scrape_configs"] = jobs
    return cfg


def load_kustomization(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(PodMonitors, PrometheusRules) of a kustomization directory's resources, with its namespace and
    labels applied as `kubectl apply -k` would (only what the translation reads)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    ns = kust.get("namespace")
    labels: dict[str, str] = {}
    for entry in kust.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    monitors, rules = [], []
    for res in kust.get("resources") or []:
        for doc in yaml.safe_load_all((directory / res).read_text()):
            if not isinstance(doc, dict):
                continue
            meta = doc.setdefault("metadata", {})
            if ns:
                meta["namespace"] = ns
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
            if doc.get("kind") == "PodMonitor":
                monitors.append(doc)
            elif doc.get("kind") == "PrometheusRule":
                rules.append(doc)
    return monitors, rules


def rule_groups(rules: Iterable[dict[str, Any]], max_for: str | None = None) -> dict[str, Any]:
    """The PrometheusRules' groups as a plain Prometheus rule file. `max_for` caps every rule's
    `for:` (and `keep_firing_for:`) at that duration and changes nothing else: the shipped alerts
    wait minutes before they fire, longer than the demo's whole season change."""
    groups = [g for r in rules for g in (r.get("spec") or {}).get("groups") or []]
    if max_for is None:
        return {"groups": groups}
    cap = parse_duration(max_for)
    out = []
    for g in groups:
        rules_out = []
        for rule in g.get("rules") or []:
            rule = dict(rule)
            for key in ("for", "keep_firing_for"):
                if key in rule and parse_duration(str(rule[key])) > cap:
                    rule[key] = max_for
            rules_out.append(rule)
        out.append({**g, "rules": rules_out})
    return {"groups": out}


_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus duration (`1h30m`, `90s`, `500ms`), for comparing two of them."""
    m = _DURATION.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise PodMonitorError(f"not a Prometheus duration: {text!r}")
    return sum(int(v) * u for v, u in zip(m.groups(), _UNITS) if v)


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=200)


def pod_targets(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """HTTP SD target groups for pods (as the API server returns them): one target per container
    port, with the labels Prometheus' Kubernetes SD (role pod) sets, so relabel_configs written for
    it apply unchanged. Pods without an IP yet are left out, as Kubernetes SD leaves them."""
    groups = []
    for pod in pods:
        meta, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        ip = st.get("podIP")
        if not ip:
            continue
        base = {"__meta_kubernetes_namespace": meta.get("namespace", ""),
                "__meta_kubernetes_pod_name": meta.get("name", ""), "__meta_kubernetes_pod_ip": ip,
                "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
                "__meta_kubernetes_pod_host_ip": st.get("hostIP", ""), "__meta_kubernetes_pod_uid": meta.get("uid", ""),
                "__meta_kubernetes_pod_phase": st.get("phase", ""),
                "__meta_kubernetes_pod_ready": str(any(c.get("type") == "Ready" and c.get("status") == "True"
                                                       for c in st.get("conditions") or [])).lower()}
        for k, v in (meta.get("labels") or {}).items():
            base[f"__meta_kubernetes_pod_label_{sanitize(k)}"] = v
            base[f"__meta_kubernetes_pod_labelpresent_{sanitize(k)}"] = "true"
        for k, v in (meta.get("annotations") or {}).items():
            base[f"__meta_kubernetes_pod_annotation_{sanitize(k)}"] = v
            base[f"__meta_kubernetes_pod_annotationpresent_{sanitize(k)}"] = "true"
        for c in spec.get("containers") or []:
            for p in c.get("ports") or []:
                port = p.get("containerPort")
                if not port:
                    continue
                host = f"[{ip}]" if ":" in ip else ip
                groups.append({"targets": [f"{host}:{port}"], "labels": {
                    **base, "__meta_kubernetes_pod_container_name": c.get("name", ""),
                    "__meta_kubernetes_pod_container_image": c.get("image", ""),
                    "__meta_kubernetes_pod_container_port_name": p.get("name", ""),
                    "__meta_kubernetes_pod_container_port_number": str(port),
                    "__meta_kubernetes_pod_container_port_protocol": p.get("protocol", "TCP"),
                    "__meta_kubernetes_pod_container_init": "false"}})
    return groups

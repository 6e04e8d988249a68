"""Cluster add-ons a kubeadm cluster has and the real node needs: cluster DNS and kubelet access.

- CoreDNS (built from its Go module into `localhost/mlops-coredns`) as a Deployment with the
  `kube-dns` Service at the address every kubelet's `clusterDNS` names. It serves
  `cluster.local` and the reverse zones only: the cluster namespace has no route to the
  machine's resolver, so other names fail fast instead of timing out. It listens on 1053 in
  its pod (non-root, no capability) and the Service maps port 53 to it.
- The API server's kubelet-client identity bound to `system:kubelet-api-admin`, which a real
  kubelet's webhook authorizer checks before `kubectl logs`, `exec` and `port-forward`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import realnode
from .config import CLUSTER_DOMAIN, POD_CIDR, SERVICE_CIDR, ClusterConfig

COREDNS_IMAGE = "localhost/mlops-coredns:1.15.0"


def _reverse_zones() -> str:
    """in-addr.arpa zones of the pod and service ranges (both /16 here)."""
    zones = []
    for cidr in (POD_CIDR, SERVICE_CIDR):
        a, b = cidr.split("/")[0].split(".")[:2]
        zones.append(f"{b}.{a}.in-addr.arpa")
    return " ".join(zones)


def coredns_manifest(dns_ip: str, node_selector: dict[str, str] | None = None) -> str:
    selector = "".join(f"\n        {k}: {v}" for k, v in (node_selector or {}).items())
    node_sel = f"\n      nodeSelector:{selector}" if selector else ""
    return f"""apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
    .:1053 {{
        errors
        health :8080
        ready :8181
        kubernetes {CLUSTER_DOMAIN} {_reverse_zones()} {{
           pods insecure
           fallthrough in-addr.arpa
           ttl 30
        }}
        prometheus :9153
        cache 30
        loop
        reload
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {{k8s-app: kube-dns, app.kubernetes.io/name: coredns}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata:
      labels: {{k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default{node_sel}
      tolerations:
      - {{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}}
      containers:
      - name: coredns
        image: {COREDNS_IMAGE}
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {{name: dns, containerPort: 1053, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 1053, protocol: TCP}}
        - {{name: metrics, containerPort: 9153, protocol: TCP}}
        resources:
          requests: {{cpu: 50m, memory: 40Mi}}
          limits: {{memory: 128Mi}}
        securityContext:
          runAsNonRoot: true
          runAsUser: 65532
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{drop: [ALL]}}
          seccompProfile: {{type: RuntimeDefault}}
        volumeMounts:
        - {{name: config, mountPath: /etc/coredns, readOnly: true}}
        livenessProbe:
          httpGet: {{path: /health, port: 8080}}
          initialDelaySeconds: 10
          periodSeconds: 10
        readinessProbe:
          httpGet: {{path: /ready, port: 8181}}
          periodSeconds: 2
      volumes:
      - name: config
        configMap: {{name: coredns}}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {{k8s-app: kube-dns, kubernetes.io/name: CoreDNS}}
spec:
  clusterIP: {dns_ip}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, protocol: UDP, targetPort: 1053}}
  - {{name: dns-tcp, port: 53, protocol: TCP, targetPort: 1053}}
  - {{name: metrics, port: 9153, protocol: TCP, targetPort: 9153}}
"""


KUBELET_API_ACCESS = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "mlops:apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
"""


def apply(cfg: ClusterConfig, kubectl: Path, manifest: str) -> None:
    p = subprocess.run([str(kubectl), "--kubeconfig", str(cfg.kubeconfig_path), "apply",
                        "--server-side", "--force-conflicts", "--field-manager", "mlops-localcluster", "-f", "-"],
                       input=manifest, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"applying the cluster add-ons failed: {p.stderr.strip()}")


def install(cfg: ClusterConfig, kubectl: Path, dns_ip: str) -> None:
    """Install the add-ons the cluster's nodes need (idempotent)."""
    apply(cfg, kubectl, KUBELET_API_ACCESS)
    if cfg.has_real_node:
        apply(cfg, kubectl, coredns_manifest(dns_ip, dict([realnode.NODE_KIND_LABEL])))

"""The `mlops` command: the local cluster (up/down/status/kubeconfig), the operator, and an admin's
steps: enable-namespace, disable-namespace, uninstall."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_up(a: argparse.Namespace) -> int:
    from mlops_operator.localcluster import cluster

    nodes = [k.strip() for k in a.nodes.split(",") if k.strip()] if a.nodes else None
    cfg = cluster.up(a.name, port=a.port, timeout=a.timeout, nodes=nodes, s3=a.s3)
    kc = cfg.kubeconfig_path
    print(f"""
Cluster {cfg.name!r} is up: Kubernetes v{cfg.kubernetes_version} at {cfg.server_url}
  kubeconfig:  {kc}
  try:         kubectl --kubeconfig {kc} get --raw /version
               export KUBECONFIG={kc}; kubectl get namespaces
  stop:        mlops down{'' if cfg.name == 'local' else ' --name ' + cfg.name}""")
    if cfg.s3:
        s3 = cluster.s3_info(cfg)
        print(f"""  S3 (SeaweedFS): {s3['endpoint']} (pods), {s3['hostEndpoint']} (this machine), bucket {s3['bucket']}
  s3 store:    kubectl -n NS create secret generic mlops-store-s3 --from-env-file={s3['credentialsFile']}
               and run the operator with MLOPS_STORE='{s3['storeURI']}'""")
    return 0


def _cmd_down(a: argparse.Namespace) -> int:
    from mlops_operator.localcluster import cluster

    cluster.down(a.name, purge=a.purge)
    return 0


def _cmd_status(a: argparse.Namespace) -> int:
    from mlops_operator.localcluster import cluster

    st = cluster.status(a.name)
    if a.json:
        print(json.dumps(st, indent=2))
        return 0 if st["running"] else 1
    if not st["running"]:
        print(f"cluster {a.name}: not running" + (f" ({st['reason']})" if "reason" in st else ""))
        return 1
    print(f"cluster {a.name}: running, Kubernetes v{st['kubernetesVersion']} at {st['server']}")
    print(f"kubeconfig: {st['kubeconfig']}")
    print(f"nodes: {' + '.join(st['nodeKinds'])}")
    if "realNode" in st:
        rn = st["realNode"]
        print(f"real node {rn['name']} at {rn['internalIP']}: containerd {rn['containerdSocket']}, "
              f"pod cgroups under {rn['cgroupRoot']}, cgroups {rn['cgroups']}")
    if "s3" in st:
        s3 = st["s3"]
        print(f"S3: {s3['endpoint']} (pods), {s3['hostEndpoint']} (this machine), store {s3['storeURI']}, "
              f"key pair in {s3['credentialsFile']}")
    for n, c in st["components"].items():
        state = "healthy" if c["healthy"] else c["state"]
        detail = f"  {c['detail']}" if c["detail"] and not c["healthy"] else ""
        print(f"  {n:<24} {state:<10} pid={c['pid']} restarts={c['restarts']}{detail}")
    return 0 if all(c["healthy"] for c in st["components"].values()) else 1


def _cmd_kubeconfig(a: argparse.Namespace) -> int:
    from mlops_operator.localcluster.config import ClusterConfig

    cfg = ClusterConfig.load(a.name)
    if cfg is None:
        print(f"no cluster named {a.name}; run `mlops up` first", file=sys.stderr)
        return 1
    print(cfg.kubeconfig_path)
    return 0


def _cmd_s3_server(a: argparse.Namespace) -> int:
    """SeaweedFS' S3 gateway on loopback in the foreground, for an s3:// store outside a cluster."""
    import signal
    import threading
    from pathlib import Path

    from mlops_operator.localcluster import seaweedfs
    from mlops_operator.localcluster.config import state_root

    data = Path(a.dir) if a.dir else state_root() / "seaweedfs"
    weed = seaweedfs.ensure_weed()
    ident = seaweedfs.local_identity(data)
    srv = seaweedfs.SeaweedServer(data, [ident], binary=weed, s3_port=a.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        srv.create_bucket(a.bucket)
        # the credentials stay in their file (0600): never printed
        print(f"S3 endpoint   {srv.endpoint}\n"
              f"store URI     s3://{a.bucket}/mlops?endpoint={srv.endpoint}\n"
              f"credentials   {data / 'credentials.env'} (set -a; . that file; set +a)\n"
              f"data, log     {data}", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


def _cmd_binaries(a: argparse.Namespace) -> int:
    from mlops_operator.localcluster import binaries

    paths = binaries.ensure_binaries(allow_download=not a.no_download)
    if a.real_node:
        from mlops_operator.localcluster import nodebins

        paths.update(nodebins.ensure_node_binaries())
    if a.seaweedfs:
        from mlops_operator.localcluster import seaweedfs

        paths["weed"] = seaweedfs.ensure_weed()
    for name, path in sorted(paths.items()):
        print(f"{name:<24} {path}")
    return 0


def _cmd_images(a: argparse.Namespace) -> int:
    from mlops_operator.localcluster import images

    state = images.build(only=a.only, force=a.force, say=lambda m: print(m, flush=True))
    print(images.summary(state, a.only or None))
    print(f"state: {images.images_dir() / 'images.json'}")
    if a.load:
        from mlops_operator.localcluster import cluster

        for ref in cluster.load_images(a.load):
            print(f"loaded {ref} into cluster {a.load}")
    return 0


def _cmd_port_forward(a: argparse.Namespace) -> int:
    import asyncio

    from mlops_operator.localcluster import portforward
    from mlops_operator.localcluster.config import ClusterConfig

    cfg = ClusterConfig.load(a.name)
    if cfg is None:
        print(f"no cluster named {a.name}; run `mlops up` first", file=sys.stderr)
        return 1
    local, _, remote = a.ports.partition(":")
    target = portforward.resolve(cfg, a.namespace, a.target, int(remote or local))
    asyncio.run(portforward.serve(cfg, target, int(local), a.address))
    return 0


def _cmd_component(a: argparse.Namespace) -> int:
    from mlops_operator.localcluster import cluster

    cluster.hold_component(a.name, a.component, hold=a.action == "stop")
    print(f"{a.component}: {'stopped and held' if a.action == 'stop' else 'released; the supervisor starts it'}")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from mlops_operator.cli.demo import run_demo

    return run_demo(a.name, nodes=[k.strip() for k in a.nodes.split(",") if k.strip()] if a.nodes else None)


def _cmd_demo_recommender(a: argparse.Namespace) -> int:
    from mlops_operator.cli.demo import run_recommender_demo

    return run_recommender_demo(a.name, nodes=[k.strip() for k in a.nodes.split(",") if k.strip()] if a.nodes else None)


def _cmd_operator_run(a: argparse.Namespace) -> int:
    from mlops_operator.controllers.run import run_operator

    run_operator(namespaces=a.namespace, liveness=a.liveness, peering=a.peering, standalone=a.standalone,
                 metrics_port=a.metrics_port, priority=a.priority, log_format=a.log_format)
    return 0


def _kube(a: argparse.Namespace):
    from mlops_operator.cli.kubeapi import Kube

    return Kube.connect(a.kubeconfig, a.context)


def _cmd_enable_namespace(a: argparse.Namespace) -> int:
    from mlops_operator.cli.access import enable_namespace

    sas = None if a.allow_service_accounts is None else a.allow_service_accounts.split(",")
    return enable_namespace(_kube(a), a.namespace, allow_service_accounts=sas)


def _cmd_disable_namespace(a: argparse.Namespace) -> int:
    from mlops_operator.cli.access import disable_namespace

    return disable_namespace(_kube(a), a.namespace, force=a.force)


def _cmd_uninstall(a: argparse.Namespace) -> int:
    from mlops_operator.cli.access import uninstall

    return uninstall(_kube(a), timeout=a.timeout, strip_finalizers=a.strip_finalizers, keep_crds=a.keep_crds)


def _cmd_ui(a: argparse.Namespace) -> int:
    from mlops_operator.cli.kubeapi import Kube
    from mlops_operator.cli.ui.server import serve

    return serve(Kube.connect(a.kubeconfig, a.context, a.namespace), a.address, a.port)


def _cmd_prometheus_config(a: argparse.Namespace) -> int:
    from pathlib import Path

    from mlops_operator.cli.prometheus import MANIFESTS, write_config

    path = write_config(a.name, Path(a.out) if a.out else None, Path(a.manifests) if a.manifests else MANIFESTS,
                        direct=a.direct, token_seconds=a.token_seconds, http_sd=a.http_sd,
                        scrape_interval=a.scrape_interval, max_for=a.max_for)
    print(f"wrote {path} (and rules.yml, ca.crt, token beside it)\n"
          f"run:   prometheus --config.file={path} --storage.tsdb.path={path.parent / 'data'} "
          f"--web.listen-address=127.0.0.1:9090\ncheck: promtool check config {path}")
    return 0


def _cmd_prometheus(a: argparse.Namespace) -> int:
    from pathlib import Path

    from mlops_operator.cli.prometheus import MANIFESTS, run_prometheus

    return run_prometheus(a.name, a.port, a.sd_port, Path(a.out) if a.out else None,
                          Path(a.manifests) if a.manifests else MANIFESTS, a.scrape_interval, a.max_for)


def _demo_timing(p: argparse.ArgumentParser) -> None:
    """The two options that fit Prometheus to the demo's loop, whose seasons change in minutes."""
    p.add_argument("--scrape-interval", default=None, metavar="DURATION",
                   help="scrape (and evaluate rules) this often instead of the PodMonitors' interval, e.g. 5s")
    p.add_argument("--max-for", default=None, metavar="DURATION",
                   help="cap every alert's `for:` at this duration (a copy of the PrometheusRule's rules where "
                        "only the durations differ), e.g. 10s")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlops", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def named(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--name", default="local", help="cluster name (default: local)")
        return sp

    up = named(sub.add_parser("up", help="start the embedded local cluster (or reuse the running one)"))
    up.add_argument("--port", type=int, default=None, help="loopback port for the API server (default 16443)")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a healthy control plane")
    up.add_argument("--nodes", default=None,
                    help="kinds of node: process (pods as host processes, the fast default), real "
                         "(upstream kubelet + containerd running the built images), or process,real")
    up.add_argument("--s3", action="store_true",
                    help="also run SeaweedFS' S3 gateway in the cluster, where pods reach it, for an s3:// "
                         "store (builds `weed` once, minutes)")
    up.set_defaults(func=_cmd_up)
    down = named(sub.add_parser("down", help="stop the local cluster; no process or namespace is left"))
    down.add_argument("--purge", action="store_true", help="also delete its state (etcd data, certificates)")
    down.set_defaults(func=_cmd_down)
    st = named(sub.add_parser("status", help="show the local cluster's components and health"))
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_status)
    named(sub.add_parser("kubeconfig", help="print the admin kubeconfig path")).set_defaults(func=_cmd_kubeconfig)
    demo = named(sub.add_parser("demo", help="start the local cluster and run the demo (what `make demo` runs)"))
    demo.add_argument("--nodes", default=None, help="process (default), real, or process,real (see `mlops up`)")
    demo.set_defaults(func=_cmd_demo)
    dr = named(sub.add_parser("demo-recommender", help="start the local cluster and run the recommender's loop (what "
                                                       "`make demo-recommender` runs)"))
    dr.add_argument("--nodes", default=None, help="process (default), real, or process,real (see `mlops up`)")
    dr.set_defaults(func=_cmd_demo_recommender)
    pf = named(sub.add_parser("port-forward", help="forward a loopback port to a Service or Pod of the local cluster"))
    pf.add_argument("target", help="svc/NAME or pod/NAME")
    pf.add_argument("ports", help="LOCAL:REMOTE (REMOTE is the Service port, or the pod's container port)")
    pf.add_argument("--namespace", "-n", default="default")
    pf.add_argument("--address", default="127.0.0.1")
    pf.set_defaults(func=_cmd_port_forward)
    comp = named(sub.add_parser("component", help="stop (and hold) or start one local-cluster component"))
    comp.add_argument("action", choices=["stop", "start"])
    comp.add_argument("component", help="e.g. node-agent, kube-proxy, kube-scheduler")
    comp.set_defaults(func=_cmd_component)
    b = sub.add_parser("binaries", help="obtain (download or build) and print the cluster binaries")
    b.add_argument("--no-download", action="store_true", help="skip the release download; build from Go modules")
    b.add_argument("--real-node", action="store_true",
                   help="also the real node's: kubelet, containerd, runc, CNI plugins, crictl, CoreDNS")
    b.add_argument("--seaweedfs", action="store_true",
                   help="also SeaweedFS' `weed` (the local S3 server for s3:// stores; ~5-9 min to build once)")
    b.set_defaults(func=_cmd_binaries)

    s3 = sub.add_parser("s3-server", help="run SeaweedFS' S3 gateway on loopback (foreground) for an s3:// "
                                          "store; builds weed once")
    s3.add_argument("--dir", default=None, help="data directory (default: <state dir>/seaweedfs)")
    s3.add_argument("--port", type=int, default=8333, help="S3 port on 127.0.0.1 (0: any free port)")
    s3.add_argument("--bucket", default="mlops", help="bucket to create (kept when it exists)")
    s3.set_defaults(func=_cmd_s3_server)

    im = sub.add_parser("images", help="build the container images with buildah (no Docker daemon), "
                                       "as OCI archives under ~/.cache/mlops/images")
    im.add_argument("--only", nargs="+", metavar="NAME", default=None,
                    help="build only these (pause, coredns, mlops-server, mlops-operator, mlops-runtime)")
    im.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    im.add_argument("--load", metavar="CLUSTER", default=None,
                    help="then import what changed into that running cluster's real node (like `kind load`)")
    im.set_defaults(func=_cmd_images)

    def kube(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, else ~/.kube/config")
        sp.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
        return sp

    en = kube(sub.add_parser("enable-namespace", help="let the operator manage a namespace (namespace-scoped mode): "
                                                      "the RoleBinding of manifests/namespace"))
    en.add_argument("namespace")
    en.add_argument("--allow-service-accounts", metavar="SA,SA", default=None,
                    help="ServiceAccounts the namespace's mlops workloads may run as besides `default` (the "
                         "annotation mlops.dev/allowed-service-accounts the admission policy reads; '' removes it)")
    en.set_defaults(func=_cmd_enable_namespace)
    dis = kube(sub.add_parser("disable-namespace", help="remove the operator's RoleBinding from a namespace"))
    dis.add_argument("namespace")
    dis.add_argument("--force", action="store_true", help="even while mlops objects are left there")
    dis.set_defaults(func=_cmd_disable_namespace)
    un = kube(sub.add_parser("uninstall", help="delete every mlops object while the operator runs, then the operator, "
                                               "its RBAC and admission policy, then the CRDs"))
    un.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the objects to go")
    un.add_argument("--strip-finalizers", action="store_true",
                    help="remove the operator's finalizer from objects it did not release (the operator is gone)")
    un.add_argument("--keep-crds", action="store_true", help="leave the CustomResourceDefinitions")
    un.set_defaults(func=_cmd_uninstall)

    ui = kube(sub.add_parser("ui", help="a read-only web view of runs, versions, drift and datasets on localhost, "
                                        "read with your kubeconfig (and its RBAC)"))
    ui.add_argument("-n", "--namespace", default=None, help="namespace shown first (default: the context's)")
    ui.add_argument("--address", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=8700, help="port (default 8700; 0: any free port)")
    ui.set_defaults(func=_cmd_ui)

    pc = named(sub.add_parser("prometheus-config",
                              help="write a prometheus.yml scraping the local cluster as manifests/monitoring's "
                                   "PodMonitors describe (Kubernetes SD, the same relabelling), with its rules, CA "
                                   "and a token of a least-privilege ServiceAccount"))
    pc.add_argument("--out", default=None, help="directory (default: the cluster's state directory /prometheus)")
    pc.add_argument("--manifests", default=None, help="the monitoring kustomization (default: manifests/monitoring)")
    pc.add_argument("--direct", action="store_true",
                    help="scrape pod IPs directly (default: through the API server's pod proxy, as the host "
                         "cannot route to pod IPs)")
    pc.add_argument("--token-seconds", type=int, default=86400, help="lifetime of the token (default 24h)")
    pc.add_argument("--http-sd", default=None, metavar="URL",
                    help="discover pods from this HTTP SD endpoint instead of Kubernetes SD (Debian's prometheus "
                         "has none; `mlops prometheus` serves one)")
    _demo_timing(pc)
    pc.set_defaults(func=_cmd_prometheus_config)
    pr = named(sub.add_parser("prometheus", help="run Debian's prometheus on loopback, scraping the local cluster "
                                                 "as manifests/monitoring describes, with its alert rules"))
    pr.add_argument("--port", type=int, default=9090, help="Prometheus' port on 127.0.0.1 (default 9090)")
    pr.add_argument("--sd-port", type=int, default=9091,
                    help="port of the service discovery it reads the pods from (default 9091)")
    pr.add_argument("--out", default=None, help="directory of its configuration and data (default: the cluster's "
                                                "state directory /prometheus)")
    pr.add_argument("--manifests", default=None, help="the monitoring kustomization (default: manifests/monitoring)")
    _demo_timing(pr)
    pr.set_defaults(func=_cmd_prometheus)

    op = sub.add_parser("operator", help="the operator").add_subparsers(dest="op", required=True)
    run = op.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    run.add_argument("--namespace", "-n", action="append", default=[],
                     help="watch only these namespaces (repeatable; default: all)")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    run.add_argument("--metrics-port", type=int, default=8081, help="Prometheus /metrics port (0: off)")
    run.add_argument("--priority", type=int, default=None,
                     help="peering priority (default: random); the highest-priority replica is the active one")
    run.add_argument("--log-format", choices=["plain", "json"], default="plain", help="json: structured logs")
    g = run.add_mutually_exclusive_group()
    g.add_argument("--peering", default=None,
                   help="kopf peering name for leader election across replicas (default: standalone)")
    g.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    run.set_defaults(func=_cmd_operator_run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the model server has its own flags (python -m mlops_operator.serving --help)
        from mlops_operator.serving import main as serve

        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a clear message, not a traceback, for expected failures
        from mlops_operator.localcluster.binaries import BinaryError
        from mlops_operator.localcluster.cluster import ClusterError
        from mlops_operator.localcluster.netns import NetnsError
        from mlops_operator.controllers.run import NoClusterCredentials
        from mlops_operator.localcluster.portforward import PortForwardError
        from mlops_operator.localcluster.images import ImageBuildError
        from mlops_operator.cli.kubeapi import CliError

        if isinstance(e, (BinaryError, ClusterError, NetnsError, NoClusterCredentials, PortForwardError,
                          ImageBuildError, CliError)):
            print(f"mlops: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())

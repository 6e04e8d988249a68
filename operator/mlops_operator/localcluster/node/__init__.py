"""The local node: a small kubelet that runs pods as processes in their own namespaces.

`agent` registers the Node, renews its Lease, watches the pods bound to it and runs one
`worker.PodWorker` per pod; `podnet` gives each pod a network namespace with a routed veth,
`volumes` materialises its volumes, `shim` is the per-container parent process (like a
containerd shim) that enters the pod's namespaces, mounts volumes and execs the command,
`probes` runs readiness/liveness/startup probes, `podspec` and `podstatus` are the pure
translations between the Pod API and what runs, and `kubeletapi` serves `kubectl logs`.
"""

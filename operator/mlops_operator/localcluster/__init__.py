"""The embedded local cluster: real upstream Kubernetes binaries without a container engine.

`binaries` obtains etcd and the Kubernetes components (cache, release download, or a build
from the published Go modules), `pki` and `kubeconfig` make the credentials, `netns` and
`forward` give the cluster its own network namespace with a loopback forward for the API
server, `components` holds the command lines, `supervisor` is the daemon that keeps them
running and `cluster` is the up/down/status API the CLI and the tests use.
"""

"""Pure parts of the local cluster: go.mod generation, version stamping, PKI, kubeconfig, names."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlops_operator.localcluster import binaries, kubeconfig, pki
from mlops_operator.localcluster.config import ClusterConfig

KUBERNETES_GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tgo.etcd.io/etcd/client/v3 v3.6.8
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/sample-cli-plugin => ./staging/src/k8s.io/sample-cli-plugin
\tgithub.com/example/fork => github.com/example/fork v1.2.3
)
"""


def test_generated_gomod_replaces_each_published_staging_module_with_its_tag():
    out = binaries.generate_gomod(KUBERNETES_GOMOD, "1.36.3")
    assert "require k8s.io/kubernetes v1.36.3" in out
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in out
    assert "\tk8s.io/client-go => k8s.io/client-go v0.36.3" in out
    # not published as a tagged module, and no component needs it
    assert "sample-cli-plugin" not in out
    # only ./staging replacements are rewritten
    assert "github.com/example/fork" not in out


def test_gomod_without_staging_modules_is_an_error():
    with pytest.raises(binaries.BinaryError, match="no staging modules"):
        binaries.generate_gomod("module k8s.io/kubernetes\n", "1.36.3")


def test_version_ldflags_stamp_both_version_packages():
    flags = binaries.version_ldflags("1.36.3")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.36.3" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=36" in flags


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_issues_identities_signed_by_the_ca(tmp_path):
    pki.ensure_pki(tmp_path, "node-a", ("10.240.0.1", "10.96.0.1"), "cluster.local")
    ca = _cert(tmp_path / "ca.crt")
    server = _cert(tmp_path / "apiserver.crt")
    ca.public_key().verify(server.signature, server.tbs_certificate_bytes, ECDSA(server.signature_hash_algorithm))
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.96.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc.cluster.local" in san.get_values_for_type(x509.DNSName)
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    node = _cert(tmp_path / "node.crt")
    assert node.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:node-a"
    assert node.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert node.issuer == ca.subject
    assert (tmp_path / "sa.key").stat().st_mode & 0o777 == 0o600


def test_pki_is_idempotent(tmp_path):
    pki.ensure_pki(tmp_path, "n", ("10.240.0.1",), "cluster.local")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    pki.ensure_pki(tmp_path, "n", ("10.240.0.1",), "cluster.local")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert before == after


def test_kubeconfig_embeds_credentials(tmp_path):
    pki.ensure_pki(tmp_path, "n", ("10.240.0.1",), "cluster.local")
    path = kubeconfig.write(tmp_path / "kc", "https://127.0.0.1:1234", tmp_path, "admin", "c", "u")
    doc = yaml.safe_load(path.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1234"
    assert base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]) == (tmp_path / "admin.crt").read_bytes()
    assert doc["current-context"] == doc["contexts"][0]["name"]
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["", "UPPER", "has_underscore", "x" * 16, "-lead"])
def test_cluster_names_must_fit_a_netns_name(name):
    with pytest.raises(ValueError, match="cluster name"):
        ClusterConfig(name=name)


def test_cluster_config_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    cfg = ClusterConfig(name="t1", api_host_port=20001)
    cfg.save()
    again = ClusterConfig.load("t1")
    assert again == cfg
    assert again.netns == "mlops-t1"
    assert ClusterConfig.load("absent") is None


def test_credentials_are_never_readable_by_others_even_for_a_moment(tmp_path, monkeypatch):
    """The admin kubeconfig was written, then chmod-ed: 0644 in between under the usual umask."""
    import os
    import stat

    old = os.umask(0)
    seen = []
    real_chmod = Path.chmod

    def chmod(self, mode, **kw):  # any chmod must find the file private already
        seen.append(stat.S_IMODE(os.stat(self).st_mode))
        return real_chmod(self, mode, **kw)
    monkeypatch.setattr(Path, "chmod", chmod)
    try:
        key = tmp_path / "k.pem"
        pki.write_private(key, b"secret")
        cfg = tmp_path / "kubeconfig"
        (tmp_path / "admin.crt").write_text("c")
        (tmp_path / "admin.key").write_text("k")
        (tmp_path / "ca.crt").write_text("ca")
        kubeconfig.write(cfg, "https://127.0.0.1:6443", tmp_path, "admin", "local", "admin")
        for p in (key, cfg):
            assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, oct(os.stat(p).st_mode)
        assert all(m & 0o077 == 0 for m in seen), [oct(m) for m in seen]
    finally:
        os.umask(old)

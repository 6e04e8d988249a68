"""The cluster's certificates and keys, made with `cryptography` (no openssl, no cfssl).

One CA signs the API server's serving certificate and a client certificate per identity the
control plane uses; the RBAC identities follow the upstream names (system:kube-scheduler, ...)
so the bootstrap ClusterRoleBindings the API server creates apply to them unchanged.
A separate key pair signs service-account tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate: file stem, user name (CN) and groups (O)."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


def control_plane_identities(node_name: str) -> list[ClientIdentity]:
    """The client certificates the control plane and the admin need."""
    return [
        ClientIdentity("admin", "mlops-admin", ("system:masters",)),
        ClientIdentity("controller-manager", "system:kube-controller-manager"),
        ClientIdentity("scheduler", "system:kube-scheduler"),
        ClientIdentity("kube-proxy", "system:kube-proxy"),
        ClientIdentity("node", f"system:node:{node_name}", ("system:nodes",)),
        # The API server's identity towards the node agent (kubectl logs/exec/port-forward).
        ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client"),
        ClientIdentity("local-path-provisioner", "mlops:local-path-provisioner"),
    ]


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, from its first byte: writing then chmod-ing left
    the admin credentials world-readable for a moment (0644 under the usual umask)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, pub) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
    )


def make_ca(directory: Path, cn: str = "mlops-local-ca", stem: str = "ca") -> None:
    key = _key()
    name = _name(cn)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / f"{stem}.key", key)
    _write_cert(directory / f"{stem}.crt", cert)


def _load_ca(directory: Path, stem: str = "ca"):
    key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes())
    return key, cert


def issue(directory: Path, stem: str, cn: str, orgs: tuple[str, ...] = (), *, server: bool = False,
          client: bool = True, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
          ca: str = "ca") -> None:
    """Issue `<stem>.crt`/`<stem>.key` signed by the CA `<ca>.crt` in `directory`."""
    ca_key, ca_cert = _load_ca(directory, ca)
    key = _key()
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    b = (
        _builder(_name(cn, orgs), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(directory / f"{stem}.key", key)
    _write_cert(directory / f"{stem}.crt", b.sign(ca_key, hashes.SHA256()))


def make_service_account_keys(directory: Path) -> None:
    """RSA pair for service-account tokens (RS256 is what every verifier supports)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "sa.key", key)
    (directory / "sa.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def ensure_pki(directory: Path, node_name: str, apiserver_ips: tuple[str, ...], cluster_domain: str) -> None:
    """Create the CA and every certificate that does not exist yet (idempotent)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if not (directory / "ca.crt").exists():
        make_ca(directory)
    if not (directory / "apiserver.crt").exists():
        dns = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               f"kubernetes.default.svc.{cluster_domain}")
        issue(directory, "apiserver", "kube-apiserver", server=True, client=False,
              dns=dns, ips=("127.0.0.1", *apiserver_ips))
    for ident in control_plane_identities(node_name):
        if not (directory / f"{ident.stem}.crt").exists():
            issue(directory, ident.stem, ident.user, ident.groups)
    # The aggregation layer (metrics-server, custom API servers) trusts requests the API server
    # proxies only when they carry a client certificate from this separate CA.
    if not (directory / "front-proxy-ca.crt").exists():
        make_ca(directory, "mlops-front-proxy-ca", stem="front-proxy-ca")
    if not (directory / "front-proxy-client.crt").exists():
        issue(directory, "front-proxy-client", "front-proxy-client", ca="front-proxy-ca")
    if not (directory / "sa.key").exists():
        make_service_account_keys(directory)


def ensure_kubelet_serving(directory: Path, node_name: str, node_ip: str, stem: str = "kubelet") -> None:
    """A node's serving certificate for the kubelet API (kubectl logs via the API server)."""
    if not (directory / f"{stem}.crt").exists():
        issue(directory, stem, f"system:node:{node_name}", ("system:nodes",), server=True, client=False,
              dns=(node_name,), ips=(node_ip,))


def ensure_node_identity(directory: Path, stem: str, node_name: str) -> None:
    """A node's client certificate (`system:node:<name>` in `system:nodes`): the Node authorizer
    and NodeRestriction then limit it to its own Node, Lease and pods."""
    if not (directory / f"{stem}.crt").exists():
        issue(directory, stem, f"system:node:{node_name}", ("system:nodes",))

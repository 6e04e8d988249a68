"""SeaweedFS build and server command line, without building or starting anything
(tests/integration/test_store_s3.py runs the real server)."""

from __future__ import annotations

import json
import stat

from mlops_operator.localcluster import nodebins, seaweedfs
from mlops_operator.localcluster.seaweedfs import S3Identity, SeaweedServer


def test_build_module_requires_the_pseudo_version_and_repeats_its_replace():
    gomod = nodebins.build_gomod(seaweedfs.SPEC)
    assert f"require github.com/seaweedfs/seaweedfs v{seaweedfs.SEAWEEDFS_VERSION}\n" in gomod
    assert "\tgithub.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0\n" in gomod
    # the real node's modules keep their plain go.mod (no replace block)
    assert "replace" not in nodebins.build_gomod(nodebins.BUILDS["containerd"])


def test_weed_is_cached_beside_the_other_binaries_not_among_the_node_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path))
    path = seaweedfs.weed_path()
    assert path == tmp_path / "seaweedfs" / f"seaweedfs-v{seaweedfs.SEAWEEDFS_VERSION}" / "bin" / "weed"
    assert nodebins.BUILDS["runc"].bin_dir.parent.parent == tmp_path / "node"


def test_server_command_is_loopback_only_private_and_strict(tmp_path):
    srv = SeaweedServer(tmp_path, [S3Identity("admin", "AK", "secret-value"),
                                   S3Identity("ro", "AK2", "other-secret", actions=("Read",))])
    cmd = srv.command()
    flags = dict(a.lstrip("-").split("=", 1) for a in cmd[2:] if "=" in a)
    assert cmd[1] == "server" and "-filer" in cmd and "-s3" in cmd
    assert flags["ip"] == "127.0.0.1" and flags["ip.bind"] == "127.0.0.1"
    assert flags["master.telemetry"] == "false"          # no traffic leaves the machine
    assert flags["s3.autoCreateBucket"] == "false"       # a missing bucket is an error, as on S3
    assert flags["s3.port.iceberg"] == "0" and flags["s3.port.lance"] == "0"
    ports = [int(v) for k, v in flags.items() if k.endswith(("port", "port.grpc"))]
    assert len(ports) == 8 and len(set(ports)) == 8      # every port chosen, none defaulted (port+10000)
    assert srv.endpoint == f"http://127.0.0.1:{flags['s3.port']}"
    assert srv.command() == cmd                          # a restart keeps the same ports
    conf = tmp_path / "s3-identities.json"
    assert flags["s3.config"] == str(conf)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    ids = json.loads(conf.read_text())["identities"]
    assert [(i["name"], i["credentials"][0]["accessKey"], i["actions"]) for i in ids] == [
        ("admin", "AK", ["Admin", "Read", "Write", "List", "Tagging"]), ("ro", "AK2", ["Read"])]
    assert "secret-value" not in repr(srv.identities[0])

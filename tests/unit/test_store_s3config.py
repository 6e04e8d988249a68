"""s3:// store configuration: the URI grammar, credentials from the environment, no secret in any
message or repr, and the key layout (no server needed: tests/integration/test_store_s3.py has those)."""

from __future__ import annotations

import pytest

from mlops_operator.store.s3config import Credentials, S3Config, S3ConfigError, parse_s3_uri


def test_minimal_uri_is_aws_with_virtual_hosted_addressing():
    c = parse_s3_uri("s3://my-bucket")
    assert c == S3Config(bucket="my-bucket", prefix="", endpoint=None, region="us-east-1", path_style=False)
    assert c.root_uri == "s3://my-bucket"
    assert c.key("models", "m", "d", "model.onnx") == "models/m/d/model.onnx"


def test_full_uri_for_an_s3_compatible_server():
    c = parse_s3_uri("s3://mlops/team-a/store?endpoint=http://seaweedfs.mlops-system:8333&region=eu-west-1")
    assert c.bucket == "mlops" and c.prefix == "team-a/store"
    assert c.endpoint == "http://seaweedfs.mlops-system:8333"
    assert c.region == "eu-west-1"
    assert c.path_style is True  # an endpoint defaults to path-style
    assert c.key("datasets", "retail", "abc", "data.parquet") == "team-a/store/datasets/retail/abc/data.parquet"
    assert c.location() == "s3://mlops/team-a/store"
    # normalised and parseable again to the same config
    assert parse_s3_uri(c.root_uri) == c


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("false", False), ("no", False)])
def test_path_style_can_be_forced_either_way(value, expected):
    assert parse_s3_uri(f"s3://bkt/p?endpoint=https://s3.example.com&pathStyle={value}").path_style is expected
    assert parse_s3_uri(f"s3://bkt?pathStyle={value}").path_style is expected


def test_trailing_and_double_slashes_in_the_prefix_are_normalised():
    assert parse_s3_uri("s3://bkt//a///b/").prefix == "a/b"


@pytest.mark.parametrize("uri,match", [
    ("file:///store", "not an s3:// URI"),
    ("s3://Upper-Case", "invalid bucket name"),
    ("s3://ab", "invalid bucket name"),
    ("s3://a..b", "invalid bucket name"),
    ("s3://bkt/../etc", "invalid prefix element"),
    ("s3://bkt/.hidden", "invalid prefix element"),
    ("s3://bkt?endpoint=ftp://x", "endpoint must be http"),
    ("s3://bkt?endpoint=http://h:1/path", "without a path"),
    ("s3://bkt?endpoint=http://h:notaport", "invalid endpoint port"),
    ("s3://bkt?region=EU%20WEST", "invalid region"),
    ("s3://bkt?pathStyle=maybe", "pathStyle must be true or false"),
    ("s3://bkt?endpiont=http://h", "unknown s3:// option"),
    ("s3://bkt?region=a&region=b", "given 2 times"),
    ("s3://bkt#frag", "unexpected fragment"),
])
def test_bad_uris_say_what_is_wrong(uri, match):
    with pytest.raises(S3ConfigError, match=match) as e:
        parse_s3_uri(uri)
    assert e.value.reason == "StoreConfigInvalid"


def test_credentials_in_a_uri_are_refused_without_repeating_them():
    for uri in ("s3://AKIAEXAMPLE:wJalrXUtnFEMIsecret@bucket/p",
                "s3://bucket/p?endpoint=http://AKIAEXAMPLE:wJalrXUtnFEMIsecret@host:8333"):
        with pytest.raises(S3ConfigError) as e:
            parse_s3_uri(uri)
        assert "wJalrXUtnFEMIsecret" not in str(e.value) and "AKIAEXAMPLE" not in str(e.value)
        assert "AWS_ACCESS_KEY_ID" in str(e.value) or "credentials" in str(e.value)


def test_credentials_from_the_environment():
    assert Credentials.from_env({}) is None
    c = Credentials.from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
                              "AWS_SESSION_TOKEN": "tok-value"})
    assert c == Credentials("AKID", "s3cr3t-value", "tok-value")
    assert Credentials.from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "x"}).session_token is None
    for partial in ({"AWS_ACCESS_KEY_ID": "AKID"}, {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}):
        with pytest.raises(S3ConfigError, match="incomplete") as e:
            Credentials.from_env(partial)
        assert "s3cr3t-value" not in str(e.value)


def test_repr_of_credentials_hides_the_secret_parts():
    c = Credentials("AKID", "s3cr3t-value", "tok-value")
    assert "s3cr3t-value" not in repr(c) and "tok-value" not in repr(c) and "AKID" in repr(c)
    assert "s3cr3t-value" not in str(c)


def test_store_keys_and_version_uris():
    from mlops_operator.store import StoreError
    from mlops_operator.store.s3 import S3Store

    store = S3Store(parse_s3_uri("s3://bkt/pre/fix?endpoint=http://127.0.0.1:1"),
                    Credentials("AKID", "s3cr3t-value"))
    uri = store.uri("models", "churn", "d" * 64)
    assert uri == f"s3://bkt/pre/fix/models/churn/{'d' * 64}/"
    assert store._key_of(uri, "model.onnx") == f"pre/fix/models/churn/{'d' * 64}/model.onnx"
    assert "s3cr3t-value" not in repr(store) and "AKID" not in repr(store)
    for bad in (f"s3://other/pre/fix/models/churn/{'d' * 64}/", f"s3://bkt/elsewhere/models/churn/{'d' * 64}/",
                "s3://bkt/pre/fix/models/churn/", f"s3://bkt/pre/fix/pickles/x/{'d' * 64}/",
                f"file:///store/models/churn/{'d' * 64}/"):
        with pytest.raises(StoreError):
            store._key_of(bad, "model.onnx")
    for name in ("..", "a/b", ".hidden"):
        with pytest.raises(StoreError):
            store.uri("models", name, "d" * 64)
        with pytest.raises(StoreError):
            store._key_of(uri, name)


def test_open_store_builds_an_s3_store_from_uri_and_environment(monkeypatch):
    from mlops_operator.store import open_store
    from mlops_operator.store.s3 import S3Store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    store = open_store("s3://bkt/p?endpoint=http://127.0.0.1:1")
    assert isinstance(store, S3Store) and store.config.prefix == "p"
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(S3ConfigError, match="incomplete"):
        open_store("s3://bkt/p")


def test_retry_policy_bound_is_finite_and_grows_with_retries():
    from mlops_operator.store.s3 import RetryPolicy

    p = RetryPolicy(retries=3, backoff_s=0.5, backoff_max_s=1.0, connect_timeout_s=1, read_timeout_s=2)
    assert p.backoffs() == [0.0, 1.0, 1.0]  # urllib3: the first retry at once, then factor * 2**(n-1), capped
    assert p.worst_case_s() == 4 * 3 + 2.0
    assert RetryPolicy(retries=0).worst_case_s() < RetryPolicy(retries=4).worst_case_s()


def test_operator_settings_select_the_store(monkeypatch):
    from mlops_operator.resources.store import store_env
    from mlops_operator.settings import Settings

    for k in ("MLOPS_STORE", "MLOPS_STORE_SECRET"):
        monkeypatch.delenv(k, raising=False)
    s = Settings.from_env()
    assert not s.store_is_s3 and s.store_uri("team-a") == "file:///store" and store_env(s) == []

    monkeypatch.setenv("MLOPS_STORE", "s3://mlops/prod?endpoint=http://seaweedfs.mlops-system:8333")
    monkeypatch.setenv("MLOPS_STORE_SECRET", "team-s3")
    s = Settings.from_env()
    # each namespace under its own prefix, the rest of the URI as given
    assert s.store_is_s3 and s.store_uri("team-a") == "s3://mlops/prod/team-a?endpoint=http://seaweedfs.mlops-system:8333"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in store_env(s) if "valueFrom" in e}
    assert env["AWS_ACCESS_KEY_ID"] == {"name": "team-s3", "key": "AWS_ACCESS_KEY_ID", "optional": False}
    assert env["AWS_SECRET_ACCESS_KEY"]["optional"] is False and env["AWS_SESSION_TOKEN"]["optional"] is True
    # credentials by reference only, never a value; the download cache under the pod's /tmp
    assert all("value" not in e for e in store_env(s) if e["name"].startswith("AWS_"))

    monkeypatch.setenv("MLOPS_STORE", "s3://Bad_Bucket")
    with pytest.raises(S3ConfigError, match="invalid bucket name"):
        Settings.from_env()


def _s3_settings(monkeypatch):
    from mlops_operator.settings import Settings

    monkeypatch.setenv("MLOPS_STORE", "s3://mlops/prod?endpoint=http://10.240.0.1:8333")
    monkeypatch.setenv("MLOPS_STORE_SECRET", "team-s3")
    return Settings.from_env()


RUN = {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun",
       "metadata": {"name": "r1", "namespace": "team-a", "uid": "u1"},
       "spec": {"modelName": "churn", "dataset": {"name": "retail"}, "estimator": {"type": "LogisticRegression"}}}
MV = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
      "metadata": {"name": "churn-v1", "namespace": "team-a", "uid": "u2"},
      "spec": {"model": "churn", "version": 1, "artifact": {
          "uri": "s3://mlops/prod/team-a/models/churn/" + "ab" * 32 + "/", "digest": "ab" * 32, "format": "onnx"}}}
ISVC = {"apiVersion": "mlops.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": "churn", "namespace": "team-a", "uid": "u3"},
        "spec": {"model": "churn", "alias": "production"}}
DS = {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "retail", "namespace": "team-a",
                                                                          "uid": "u4", "generation": 1},
      "spec": {"source": {"type": "generator", "generator": {"kind": "retail", "rows": 100}}}}


def _pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"] if obj["kind"] != "Job" else obj["spec"]["template"]["spec"]


def test_s3_mode_workloads_use_no_pvc_and_get_credentials_by_reference(monkeypatch):
    """In s3 mode no workload mounts a PVC: Jobs write and read the bucket with the Secret's
    credentials; serving pods fetch their version in an init container into an emptyDir."""
    from mlops_operator.resources import model_version, serving, snapshot_job, training_job
    from mlops_operator.resources.store import needs_claim

    s = _s3_settings(monkeypatch)
    assert not needs_claim(s)
    root = "s3://mlops/prod/team-a?endpoint=http://10.240.0.1:8333"
    jobs = {"train": training_job.training_job(RUN, s), "verify": model_version.verify_job(MV, "t", s),
            "snapshot": snapshot_job.snapshot_job(DS, "t", None, s)}
    dep = serving.deployment(ISVC, MV, s)
    for what, obj in [*jobs.items(), ("serving", dep)]:
        pod = _pod(obj)
        assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v], what
        for c in pod.get("initContainers", []) + pod["containers"]:
            if what != "serving" or c["name"] == serving.FETCH_CONTAINER:
                refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e
                        and "secretKeyRef" in e["valueFrom"]}
                assert refs.get("AWS_SECRET_ACCESS_KEY") == "team-s3", (what, c["name"])
                assert root in c["command"], (what, c["command"])
    pod = _pod(dep)
    (fetch,) = pod["initContainers"]
    assert fetch["command"][fetch["command"].index("--digest") + 1] == "ab" * 32
    assert {"name": "models", "emptyDir": {}} in pod["volumes"]
    server = pod["containers"][0]["command"]
    assert server[server.index("--store-uri") + 1] == "file:///models"
    assert server[server.index("--model-uri") + 1] == "file:///models/models/churn/" + "ab" * 32 + "/"
    assert server[server.index("--digest") + 1] == "ab" * 32  # the server checks the copy again


def test_s3_fetch_container_takes_the_servers_resources_and_the_name_of_the_verified_uri(monkeypatch):
    """A namespace ResourceQuota refuses a container without requests/limits: the init container
    gets the server's. It fetches the object the verify Job checked (the name in the artifact
    URI), even when the version's spec.model names another model."""
    from mlops_operator.resources import serving

    s = _s3_settings(monkeypatch)
    res = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    isvc = {**ISVC, "spec": {**ISVC["spec"], "pod": {"resources": res}}}
    mv = {**MV, "spec": {**MV["spec"], "model": "churn-copy"}}
    pod = _pod(serving.deployment(isvc, mv, s))
    (fetch,) = pod["initContainers"]
    assert fetch["resources"] == pod["containers"][0]["resources"] == res
    assert fetch["command"][fetch["command"].index("--name") + 1] == "churn"
    server = pod["containers"][0]["command"]
    assert server[server.index("--model-uri") + 1] == "file:///models/models/churn/" + "ab" * 32 + "/"


def test_file_mode_workloads_keep_the_pvc(monkeypatch):
    from mlops_operator.resources import serving, training_job
    from mlops_operator.settings import Settings

    monkeypatch.delenv("MLOPS_STORE", raising=False)
    s = Settings.from_env()
    mv = {**MV, "spec": {**MV["spec"], "artifact": {"uri": "file:///store/models/churn/x/", "digest": "ab" * 32}}}
    dep = serving.deployment(ISVC, mv, s)
    assert "initContainers" not in _pod(dep)
    assert {"name": "store", "persistentVolumeClaim": {"claimName": s.store_claim}} in _pod(dep)["volumes"]
    assert [v for v in _pod(training_job.training_job(RUN, s))["volumes"] if "persistentVolumeClaim" in v]


def test_s3_mode_captures_into_the_bucket_with_the_store_credentials(monkeypatch):
    """Payload capture in s3 mode: the server writes to the namespace's store (no PVC, no
    read-write mount), and a capture Dataset's snapshot reads from the same store."""
    from mlops_operator.resources import serving, snapshot_job

    s = _s3_settings(monkeypatch)
    dep = serving.deployment({**ISVC, "spec": {**ISVC["spec"], "capture": {"sampleRate": 0.5}}}, MV, s)
    server = _pod(dep)["containers"][0]
    cmd = server["command"]
    assert cmd[cmd.index("--capture-store") + 1] == s.store_uri(ISVC["metadata"]["namespace"])
    assert cmd[cmd.index("--capture-service") + 1] == ISVC["metadata"]["name"]
    assert "--capture-dir" not in cmd
    assert not [v for v in _pod(dep)["volumes"] if "persistentVolumeClaim" in v]
    assert {e["name"] for e in server["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    ds = {**DS, "spec": {"source": {"type": "capture", "capture": {"inferenceService": "svc"}}}}
    job = snapshot_job.snapshot_job(ds, "t", None, s)
    snap = _pod(job)["containers"][0]
    assert snap["command"][snap["command"].index("--store") + 1] == s.store_uri(DS["metadata"]["namespace"])
    assert not [v for v in _pod(job)["volumes"] if "persistentVolumeClaim" in v]


def test_s3_mode_refuses_what_needs_the_pvc_with_a_reason(monkeypatch):
    from mlops_operator.resources import snapshot_job
    from mlops_operator.resources.store import StoreModeUnsupported

    s = _s3_settings(monkeypatch)
    ds = {**DS, "spec": {"source": {"type": "file", "file": {"path": "x.csv"}}}}
    with pytest.raises(StoreModeUnsupported, match="claimName"):
        snapshot_job.snapshot_job(ds, "t", None, s)


def test_a_failed_model_fetch_names_the_store_reason():
    from mlops_operator.controllers.pods import fetch_failure

    msg = '{"ok": false, "error": "s3://b/k: sha256 00 does not match", "reason": "DigestMismatch"}'
    pod = {"status": {"initContainerStatuses": [{"name": "fetch-model", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                                  "lastState": {"terminated": {"exitCode": 1, "message": msg}}}]}}
    reason, text = fetch_failure(pod)
    assert reason == "DigestMismatch" and "does not match" in text
    ok = {"status": {"initContainerStatuses": [{"name": "fetch-model", "state": {"terminated": {"exitCode": 0}}}]}}
    assert fetch_failure(ok) is None


def test_a_pvc_store_that_cannot_follow_a_pod_to_another_node_is_named():
    from mlops_operator.controllers.pods import store_not_shared

    msg = ("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
           "1 node(s) had volume node affinity conflict.")
    pod = {"spec": {"volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": "mlops-store"}}]},
           "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                      "message": msg}]}}
    text = store_not_shared(pod, "mlops-store", "ReadWriteOnce")
    assert "mlops-store (ReadWriteOnce)" in text and "s3://" in text and "volume node affinity conflict" in text
    assert store_not_shared(pod, "other-claim", "ReadWriteOnce") is None  # not the store's volume
    # Kubernetes 1.36's wording (the local cluster's scheduler, tests/e2e/test_retail_loop_realnode.py)
    pod["status"]["conditions"][0]["message"] = (
        "0/2 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity, 1 node(s) didn't "
        "match Pod's node affinity/selector. no new claims to deallocate, preemption: 0/2 nodes are available: "
        "2 Preemption is not helpful for scheduling.")
    assert "didn't match PersistentVolume's node affinity" in store_not_shared(pod, "mlops-store", "ReadWriteOnce")
    pod["status"]["conditions"][0]["message"] = "0/2 nodes are available: 2 Insufficient cpu."
    assert store_not_shared(pod, "mlops-store", "ReadWriteOnce") is None  # another reason: not ours to explain


def test_each_cluster_gets_its_own_seaweed_ports_kept_across_restarts(tmp_path, monkeypatch):
    """weed names its Unix sockets after the port (/tmp/seaweedfs-volume-grpc-<port>.sock, shared by
    every netns): two clusters with the same ports would reach each other's servers."""
    from mlops_operator.localcluster import s3cluster
    from mlops_operator.localcluster.config import ClusterConfig

    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    a, b = ClusterConfig(name="one"), ClusterConfig(name="two")
    pa, pb = s3cluster.ports(a), s3cluster.ports(b)
    assert pa["s3"] == pb["s3"] == 8333  # the bridge port: each cluster has its own netns
    grpc = [k for k in pa if k != "s3"]
    assert len({pa[k] for k in grpc}) == len(grpc)
    assert {pa[k] for k in grpc} != {pb[k] for k in grpc}
    assert s3cluster.ports(a) == pa  # kept: a restarted server finds the same ports


def test_degraded_from_a_failing_fetch_is_cleared_only_by_that_pod(fake, monkeypatch):
    """The new version's pod keeps failing its fetch while the old version's pod of the same
    InferenceService goes on serving: the old pod's events leave Degraded as it is (no flapping,
    one Warning Event); the failing pod's start (or deletion) clears it."""
    import asyncio

    import kopf

    from mlops_operator.controllers import pods
    from mlops_operator.settings import Settings

    monkeypatch.setattr(pods, "_marked", {})
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        pods.register(Settings.from_env())
    finally:
        kopf.set_default_registry(previous)
    (handler,) = [h for h in registry._watching._handlers if h.fn.__name__ == "managed_pod_event"]
    fake.add("inferenceservices", {"apiVersion": "mlops.dev/v1alpha1", "kind": "InferenceService",
                                   "metadata": {"name": "churn", "generation": 1}, "spec": {}, "status": {}})
    labels = {"mlops.dev/inference-service": "churn"}
    msg = '{"ok": false, "error": "sha256 00 does not match", "reason": "DigestMismatch"}'
    failing = {"metadata": {"name": "new-pod", "labels": labels}, "status": {"initContainerStatuses": [
        {"name": "fetch-model", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "message": msg}}}]}}
    healthy = {"metadata": {"name": "old-pod", "labels": labels},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}

    def event(pod: dict, type: str = "MODIFIED") -> dict:
        asyncio.run(handler.fn(type=type, body=pod, namespace="ns", name=pod["metadata"]["name"],
                               labels=pod["metadata"]["labels"]))
        conds = fake.get("inferenceservices", "churn").get("status", {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Degraded"), {})

    assert event(failing)["reason"] == "DigestMismatch"
    for _ in range(3):  # the old version's pod keeps reporting; the failing one keeps failing
        assert event(healthy)["status"] == "True"
        assert event(failing)["status"] == "True"
    assert [e for e in fake.events if e[1] == "DigestMismatch"] == [("Warning", "DigestMismatch", fake.events[0][2])]
    started = {"metadata": failing["metadata"], "status": healthy["status"]}
    assert event(started)["status"] == "False"


def test_a_degraded_condition_of_a_stuck_pod_survives_the_owners_own_status_writes():
    """The pod handler marks the owner Degraded; a controller's write computed from an older
    read (without it) must not drop it, while the pod stays stuck; its own Degraded=True stands;
    once released, writes go through as they are."""
    from mlops_operator.controllers import kube

    key = ("datasets", "ns", "d")
    held = {"type": "Degraded", "status": "True", "reason": "StoreNotShared", "message": "pod p: ...",
            "observedGeneration": 1}
    stale = {"activeJob": "j", "conditions": [{"type": "Ready", "status": "False", "observedGeneration": 2}]}
    try:
        kube.hold_degraded(*key, held)
        out = kube._keep_held(*key, stale)
        assert out["activeJob"] == "j"
        assert [c["type"] for c in out["conditions"]] == ["Ready", "Degraded"]
        assert out["conditions"][1] == {**held, "observedGeneration": 2}  # at the generation the writer saw
        cleared = {"conditions": [{"type": "Degraded", "status": "False", "reason": "Serving"}]}
        assert kube._keep_held(*key, cleared)["conditions"] == [held]  # not cleared while the pod is stuck
        own = {"conditions": [{"type": "Degraded", "status": "True", "reason": "RolloutFailed"}]}
        assert kube._keep_held(*key, own) == own
        assert kube._keep_held(*key, {"phase": "x"}) == {"phase": "x"}  # no conditions written: nothing to keep
        assert kube._keep_held("datasets", "ns", "other", stale) == stale
    finally:
        kube.hold_degraded(*key, None)
    assert kube._keep_held(*key, stale) == stale

"""Pure parts of the local node agent: pod spec translation, pod status, IPAM, probe specs."""

from __future__ import annotations

import base64
import sys
from decimal import Decimal

import pytest

from mlops_operator.localcluster.node import podnet, podspec, podstatus, probes
from mlops_operator.localcluster.node.podspec import PodSpecError
from mlops_operator.localcluster.node.podstatus import ContainerRecord, PodRecord

# --- podspec: $(VAR) expansion and commands ----------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("$(A)-$(B)", "x-y"), ("$$(A)", "$(A)"), ("cost: $$5", "cost: $5"),    # `$$` is a literal `$`
    ("$(MISSING) stays", "$(MISSING) stays"), ("$(A", "$(A"), ("$5 and a trailing $", "$5 and a trailing $"),
    ("$(REF)", "$(B)"),  # values are not expanded again
])
def test_expand(text, expected):
    assert podspec.expand(text, {"A": "x", "B": "y", "REF": "$(B)"}) == expected


@pytest.mark.parametrize("image, base", [
    ("registry.k8s.io/pause:3.10", "pause"), ("ghcr.io/org/mlops-runtime:0.1@sha256:abc", "mlops-runtime"),
    ("localhost:5000/team/trainer", "trainer"), ("busybox", "busybox"),
])
def test_image_basename(image, base):
    assert podspec.image_basename(image) == base


def test_command_and_args_are_joined_and_expanded():
    c = {"name": "c", "image": "busybox", "command": ["sh", "-c"], "args": ["echo $(MSG) $$(MSG)"]}
    assert podspec.resolve_command(c, {"MSG": "hi"}) == ["sh", "-c", "echo hi $(MSG)"]


def test_known_image_entrypoint_is_used_without_command():
    c = {"name": "p", "image": "registry.k8s.io/pause:3.10"}
    assert podspec.resolve_command(c, {}) == [sys.executable, "-c", "import signal; signal.pause()"]
    c = {"name": "r", "image": "ghcr.io/x/mlops-runtime:1", "args": ["train", "--epochs=$(N)"]}
    assert podspec.resolve_command(c, {"N": "3"}) == ["mlops", "train", "--epochs=3"]


def test_unknown_image_without_command_is_a_create_container_error():
    with pytest.raises(PodSpecError) as ei:
        podspec.resolve_command({"name": "app", "image": "nginx:1.27", "args": ["-g"]}, {})
    assert ei.value.reason == "CreateContainerError"
    assert "'app'" in ei.value.message and "'nginx:1.27'" in ei.value.message


# --- podspec: service links ----------------------------------------------------------------------

def _svc(name, ip, ports, ns="ns"):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


def test_service_env_matches_kubelet_docker_link_variables():
    svc = _svc("foo-bar", "10.96.0.10", [{"name": "http", "port": 80, "protocol": "TCP"},
                                         {"name": "dns-udp", "port": 53, "protocol": "UDP"}])
    assert podspec.service_env([svc]) == {
        "FOO_BAR_SERVICE_HOST": "10.96.0.10", "FOO_BAR_SERVICE_PORT": "80",
        "FOO_BAR_SERVICE_PORT_HTTP": "80", "FOO_BAR_SERVICE_PORT_DNS_UDP": "53",
        "FOO_BAR_PORT": "tcp://10.96.0.10:80",
        "FOO_BAR_PORT_80_TCP": "tcp://10.96.0.10:80", "FOO_BAR_PORT_80_TCP_PROTO": "tcp",
        "FOO_BAR_PORT_80_TCP_PORT": "80", "FOO_BAR_PORT_80_TCP_ADDR": "10.96.0.10",
        "FOO_BAR_PORT_53_UDP": "udp://10.96.0.10:53", "FOO_BAR_PORT_53_UDP_PROTO": "udp",
        "FOO_BAR_PORT_53_UDP_PORT": "53", "FOO_BAR_PORT_53_UDP_ADDR": "10.96.0.10",
    }


def test_service_env_skips_headless_and_ipless_services_and_defaults_to_tcp():
    env = podspec.service_env([_svc("headless", "None", [{"port": 80}]), _svc("pending", "", [{"port": 80}]),
                               _svc("db", "10.96.0.5", [{"port": 5432}])])
    assert sorted(env) == ["DB_PORT", "DB_PORT_5432_TCP", "DB_PORT_5432_TCP_ADDR", "DB_PORT_5432_TCP_PORT",
                           "DB_PORT_5432_TCP_PROTO", "DB_SERVICE_HOST", "DB_SERVICE_PORT"]
    assert env["DB_PORT"] == "tcp://10.96.0.5:5432"


# --- podspec: downward API and resources ---------------------------------------------------------

POD = {
    "metadata": {"name": "web-0", "namespace": "team", "uid": "1234-abcd",
                 "labels": {"b": "2", "app": "web"}, "annotations": {"note": 'say "hi"'}},
    "spec": {"nodeName": "node-a", "containers": [
        {"name": "main", "image": "busybox", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}},
        {"name": "side", "image": "busybox", "resources": {"limits": {"cpu": "2"}}}]},
    "status": {"podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}], "hostIP": "10.0.0.2"},
}


@pytest.mark.parametrize("path, value", [
    ("metadata.name", "web-0"), ("metadata.namespace", "team"), ("metadata.uid", "1234-abcd"),
    ("metadata.labels['app']", "web"), ("metadata.labels['absent']", ""),
    ("metadata.annotations['note']", 'say "hi"'), ("metadata.labels", 'app="web"\nb="2"'),
    ("spec.nodeName", "node-a"), ("status.podIP", "10.244.0.7"), ("status.podIPs", "10.244.0.7"),
    ("status.hostIP", "10.0.0.2"),
])
def test_field_value(path, value):
    assert podspec.field_value(POD, path) == value


def test_unsupported_field_path_is_a_config_error():
    with pytest.raises(PodSpecError) as ei:
        podspec.field_value(POD, "spec.containers[0].name")
    assert ei.value.reason == "CreateContainerConfigError"
    assert "spec.containers[0].name" in ei.value.message


@pytest.mark.parametrize("q, value", [
    ("250m", Decimal("0.25")), ("1Mi", 1024 ** 2), ("1.5Gi", 3 * 2 ** 29), ("2k", 2000), ("1G", 10 ** 9),
    ("2", 2), (3, 3), ("1e3", 1000),
])
def test_parse_quantity(q, value):
    assert podspec.parse_quantity(q) == value


ALLOCATABLE = {"cpu": "4", "memory": "8Gi"}


@pytest.mark.parametrize("resources, resource, divisor, value", [
    ({"limits": {"cpu": "500m"}}, "limits.cpu", "1m", "500"),
    ({"limits": {"cpu": "250m"}}, "limits.cpu", None, "1"),          # ceil(0.25)
    ({"limits": {"memory": "64Mi"}}, "limits.memory", "1Mi", "64"),
    ({"limits": {"memory": "100M"}}, "limits.memory", "1Mi", "96"),  # ceil(95.37)
    ({}, "limits.cpu", "1m", "4000"), ({}, "limits.memory", "1Mi", "8192"),  # node allocatable
    ({"limits": {"cpu": "1"}}, "requests.cpu", "1m", "0"),            # requests default to 0
    ({"requests": {"memory": "32Mi"}}, "requests.memory", "1Ki", "32768"),
])
def test_resource_value(resources, resource, divisor, value):
    assert podspec.resource_value({"resources": resources}, resource, divisor, ALLOCATABLE) == value


# --- podspec: container environment --------------------------------------------------------------

def _b64(s):
    return base64.b64encode(s.encode()).decode()


CMS = {"cfg": {"data": {"A": "1", "FOO_SERVICE_HOST": "from-cm", "KEY": "cm-value"}}}
SECRETS = {"creds": {"data": {"USER": _b64("alice"), "PASS": _b64("s3cr3t")}}}
SERVICES = [_svc("foo", "10.96.0.9", [{"port": 80}]), _svc("kubernetes", "10.96.0.1", [{"port": 443}], "default"),
            _svc("kubernetes", "10.96.0.77", [{"port": 8443}], "team")]


def _pod(container, **spec):
    return {"metadata": {"name": "p", "namespace": "team"}, "spec": {"containers": [container], **spec},
            "status": {}}


def _env(container, services=(), **spec):
    return podspec.container_env(_pod(container, **spec), container, list(services), CMS, SECRETS, ALLOCATABLE)


def test_env_precedence_and_sources():
    c = {"name": "c", "resources": {"limits": {"memory": "64Mi"}}, "envFrom": [
        {"configMapRef": {"name": "cfg"}}, {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
        {"secretRef": {"name": "creds"}, "prefix": "S_"}], "env": [
        {"name": "A", "value": "env-wins"},
        {"name": "URL", "value": "http://$(S_USER):$(PASS)@$(FOO_SERVICE_HOST)/$(LATER)"},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASS"}}},
        {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "KEY"}}},
        {"name": "LATER", "value": "x"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "EMPTY"}]}
    env = _env(c, SERVICES[:1])
    assert env["HOSTNAME"] == "p" and env["HOME"] == "/root" and env["PATH"] == podspec.default_path()
    assert env["FOO_SERVICE_PORT"] == "80"               # service links ...
    assert env["FOO_SERVICE_HOST"] == "from-cm"          # ... are overridden by envFrom
    assert env["CFG_A"] == "1" and env["CFG_KEY"] == "cm-value"
    assert env["S_USER"] == "alice" and env["S_PASS"] == "s3cr3t"
    assert env["A"] == "env-wins"                        # env overrides envFrom
    # earlier vars expand; PASS and LATER are defined later so stay literal
    assert env["URL"] == "http://alice:$(PASS)@from-cm/$(LATER)"
    assert env["PASS"] == "s3cr3t" and env["K"] == "cm-value" and env["LATER"] == "x"
    assert env["POD"] == "p" and env["MEM"] == "64" and env["EMPTY"] == ""


def test_resource_field_ref_can_name_another_container():
    ref = {"resource": "limits.cpu", "divisor": "1m"}
    main = {**POD["spec"]["containers"][0], "env": [
        {"name": "SIDE_CPU", "valueFrom": {"resourceFieldRef": {**ref, "containerName": "side"}}},
        {"name": "OWN_CPU", "valueFrom": {"resourceFieldRef": ref}}]}
    env = podspec.container_env(POD, main, [], {}, {}, ALLOCATABLE)
    assert (env["SIDE_CPU"], env["OWN_CPU"]) == ("2000", "500")


def test_optional_missing_references_are_skipped():
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "nope", "optional": True}},
                                  {"secretRef": {"name": "nope", "optional": True}}],
         "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOKEY", "optional": True}}},
                 {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
                 {"name": "Z", "value": "z"}]}
    env = _env(c)
    assert "X" not in env and "Y" not in env and env["Z"] == "z"
    assert set(env) == {"PATH", "HOSTNAME", "HOME", "Z"}


@pytest.mark.parametrize("container, message", [
    ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
    ({"envFrom": [{"secretRef": {"name": "hidden"}}]}, 'secret "hidden" not found'),
    ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "hidden", "key": "k"}}}]},
     'secret "hidden" not found'),
    ({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOKEY"}}}]},
     "couldn't find key NOKEY in ConfigMap team/cfg"),
    ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}}]},
     "couldn't find key TOKEN in Secret team/creds"),
])
def test_missing_required_reference_is_a_config_error(container, message):
    with pytest.raises(PodSpecError) as ei:
        _env({"name": "c", **container})
    assert ei.value.reason == "CreateContainerConfigError"
    assert ei.value.message == message


def test_service_links_disabled_keeps_only_the_default_kubernetes_service():
    on = _env({"name": "c"}, SERVICES)
    assert on["FOO_SERVICE_HOST"] == "10.96.0.9"
    off = _env({"name": "c"}, SERVICES, enableServiceLinks=False)
    linked = {k: v for k, v in off.items() if k not in ("PATH", "HOSTNAME", "HOME")}
    assert linked and all(k.startswith("KUBERNETES_") for k in linked)
    assert linked["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"    # default/kubernetes, not team/kubernetes
    assert linked["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"
    assert "FOO_SERVICE_HOST" not in off


def test_referenced_objects():
    pod = {"spec": {
        "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
        "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s-from"}}], "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "k"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-key", "key": "k"}}},
            {"name": "C", "value": "plain"}]}],
        "volumes": [{"name": "v1", "configMap": {"name": "vol-cm"}}, {"name": "v2", "secret": {"secretName": "vol-s"}},
                    {"name": "v3", "projected": {"sources": [
                        {"configMap": {"name": "p-cm"}}, {"secret": {"name": "p-s"}},
                        {"serviceAccountToken": {"path": "t"}}]}},
                    {"name": "v4", "emptyDir": {}}]}}
    assert podspec.referenced_objects(pod) == ({"init-cm", "cm-key", "vol-cm", "p-cm"},
                                               {"s-from", "s-key", "vol-s", "p-s"})


# --- podstatus: phase ----------------------------------------------------------------------------

def running(name="c", ready=False):
    return ContainerRecord(name, "img", state="running", reason="", ready=ready, started=True,
                           started_at="2030-01-01T00:00:00Z")


def exited(code, name="c"):
    return ContainerRecord(name, "img", state="terminated", reason="Completed" if code == 0 else "Error",
                           exit_code=code)


def creating(name="c"):  # waiting, never started
    return ContainerRecord(name, "img")


def backoff(name="c"):  # waiting to be restarted after a failure
    return ContainerRecord(name, "img", reason="CrashLoopBackOff", restart_count=1,
                           last_terminated={"exitCode": 1, "reason": "Error"})


def pod(policy, *containers, init=(), init_done=True, **kw):
    return PodRecord(policy, init=list(init), containers=list(containers), init_done=init_done, **kw)


@pytest.mark.parametrize("policy, containers, expected", [
    ("Never", [running()], "Running"), ("Never", [exited(0)], "Succeeded"),
    ("Never", [exited(1)], "Failed"), ("Never", [creating()], "Pending"),
    ("Never", [exited(0), exited(2, "b")], "Failed"), ("Never", [running(), exited(1, "b")], "Running"),
    ("OnFailure", [running()], "Running"), ("OnFailure", [exited(0)], "Succeeded"),
    ("OnFailure", [exited(1)], "Running"), ("OnFailure", [backoff()], "Running"),  # being restarted
    ("OnFailure", [creating()], "Pending"),
    ("Always", [running()], "Running"), ("Always", [exited(0)], "Running"), ("Always", [exited(1)], "Running"),
    ("Always", [backoff()], "Running"), ("Always", [creating()], "Pending"),
    ("Always", [running(), backoff("b")], "Running"),
])
def test_phase(policy, containers, expected):
    assert podstatus.phase(pod(policy, *containers)) == expected


@pytest.mark.parametrize("policy, init, deleting, expected", [
    ("Always", [running("i")], False, "Pending"), ("Never", [exited(0, "i"), creating("j")], False, "Pending"),
    ("Never", [exited(1, "i")], False, "Failed"), ("OnFailure", [exited(1, "i")], False, "Pending"),  # restarted
    ("Always", [running("i")], True, "Failed"),
])
def test_phase_while_initialising(policy, init, deleting, expected):
    p = pod(policy, creating(), init=init, init_done=False, deleting=deleting)
    assert podstatus.phase(p) == expected


@pytest.mark.parametrize("containers, expected", [
    ([exited(0), exited(0, "b")], "Succeeded"), ([exited(0), exited(137, "b")], "Failed"), ([running()], "Running"),
])
def test_phase_of_deleting_pod_ignores_restart_policy(containers, expected):
    assert podstatus.phase(pod("Always", *containers, deleting=True)) == expected


def test_start_error_keeps_pod_pending_until_deleted():
    assert podstatus.phase(pod("Always", creating(), start_error="boom")) == "Pending"
    assert podstatus.phase(pod("Always", creating(), start_error="boom", deleting=True)) == "Failed"


@pytest.mark.parametrize("policy, code, expected", [("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False),
                                                     ("OnFailure", 3, True), ("Never", 0, False), ("Never", 1, False)])
def test_will_restart(policy, code, expected):
    assert podstatus.will_restart(policy, code) is expected


# --- podstatus: conditions and status ------------------------------------------------------------

def _conds(p, transitions=None):
    return {c["type"]: c for c in podstatus.conditions(p, {} if transitions is None else transitions)}


def test_ready_only_when_every_container_is_ready_and_initialized():
    ready = _conds(pod("Always", running(ready=True), running("b", ready=True), sandbox_ready=True))
    assert {t: c["status"] for t, c in ready.items()} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    assert "reason" not in ready["Ready"]
    half = _conds(pod("Always", running(ready=True), running("b")))
    assert half["PodReadyToStartContainers"]["status"] == "False"
    for t in ("ContainersReady", "Ready"):
        assert (half[t]["status"], half[t]["reason"]) == ("False", "ContainersNotReady")
    uninit = _conds(pod("Always", creating(), init=[running("i")], init_done=False))["Initialized"]
    assert (uninit["status"], uninit["reason"]) == ("False", "ContainersNotInitialized")


def test_terminal_pod_is_not_ready_with_reason_pod_completed():
    c = exited(0)
    c.ready = True  # a stale flag must not make a finished pod Ready
    conds = _conds(pod("Never", c))
    for t in ("ContainersReady", "Ready"):
        assert (conds[t]["status"], conds[t]["reason"]) == ("False", "PodCompleted")


def test_last_transition_time_changes_only_with_status(monkeypatch):
    monkeypatch.setattr(podstatus, "now", lambda: "2030-01-01T00:00:01Z")
    transitions = {"Ready": ("False", "2020-01-01T00:00:00Z"), "ContainersReady": ("True", "2020-01-01T00:00:00Z")}
    c = _conds(pod("Always", running()), transitions)
    assert c["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"          # still False
    assert c["ContainersReady"]["lastTransitionTime"] == "2030-01-01T00:00:01Z"  # True -> False
    assert transitions["ContainersReady"] == ("False", "2030-01-01T00:00:01Z")
    monkeypatch.setattr(podstatus, "now", lambda: "2030-01-01T00:00:09Z")
    c = _conds(pod("Always", running(ready=True)), transitions)
    assert c["Ready"]["lastTransitionTime"] == "2030-01-01T00:00:09Z"
    assert c["Initialized"]["lastTransitionTime"] == "2030-01-01T00:00:01Z"   # unchanged since first call
    assert all(x["lastProbeTime"] is None for x in c.values())


def test_pod_status_fields():
    p = pod("Always", running(ready=True), pod_ip="10.244.0.9", host_ip="10.0.0.2",
            start_time="2030-01-01T00:00:00Z", sandbox_ready=True)
    st = podstatus.pod_status(p, {})
    assert (st["phase"], [c["name"] for c in st["containerStatuses"]]) == ("Running", ["c"])
    assert (st["podIP"], st["podIPs"]) == ("10.244.0.9", [{"ip": "10.244.0.9"}])
    assert (st["hostIP"], st["hostIPs"]) == ("10.0.0.2", [{"ip": "10.0.0.2"}])
    assert st["startTime"] == "2030-01-01T00:00:00Z" and "initContainerStatuses" not in st
    bare = podstatus.pod_status(pod("Always", creating(), init=[exited(0, "i")]), {})
    assert [c["name"] for c in bare["initContainerStatuses"]] == ["i"]
    assert not {"podIP", "podIPs", "hostIP", "hostIPs", "startTime"} & set(bare)


# --- podstatus: container status ---------------------------------------------------------------

def test_waiting_container_status():
    st = creating().to_status()
    assert st["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert (st["lastState"], st["ready"], st["started"], st["restartCount"]) == ({}, False, False, 0)
    assert st["imageID"] == "local://img" and "containerID" not in st
    st = backoff().to_status()
    assert st["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert st["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error"}}
    assert st["restartCount"] == 1


def test_running_container_status():
    r = running(ready=True)
    r.container_id = "mlops://x"
    st = r.to_status()
    assert st["state"] == {"running": {"startedAt": "2030-01-01T00:00:00Z"}}
    assert (st["ready"], st["started"], st["containerID"]) == (True, True, "mlops://x")
    r.started = False  # startup probe not yet passed
    assert r.to_status()["started"] is False


@pytest.mark.parametrize("code, signal, message, expected_reason", [
    (0, None, "", "Completed"), (2, None, "bad input", "Error"), (137, 9, "", "Error"),
])
def test_terminated_container_status(code, signal, message, expected_reason):
    r = ContainerRecord("c", "img", state="terminated", reason="", exit_code=code, signal=signal, message=message,
                        started_at="t0", finished_at="t1", container_id="mlops://c", started=True)
    t = r.to_status()["state"]["terminated"]
    assert t["exitCode"] == code and t["reason"] == expected_reason
    assert (t["startedAt"], t["finishedAt"], t["containerID"]) == ("t0", "t1", "mlops://c")
    assert t.get("signal") == signal and t.get("message") == (message or None)
    assert r.to_status()["started"] is False


# --- podnet ----------------------------------------------------------------------------------

def test_ipam_allocation(tmp_path):
    ipam = podnet.IPAM(tmp_path / "ipam", "10.244.1.0/24")
    assert ipam.gateway == "10.244.1.1"
    a = ipam.allocate("pod-a")
    assert a == "10.244.1.2"                      # .1 is the gateway
    assert ipam.allocate("pod-a") == a            # idempotent per owner
    b = ipam.allocate("pod-b")
    assert b == "10.244.1.3"
    assert (ipam.owner_of(a), ipam.owner_of(b), ipam.owner_of("10.244.1.99")) == ("pod-a", "pod-b", None)
    # state survives an agent restart
    assert podnet.IPAM(tmp_path / "ipam", "10.244.1.0/24").allocate("pod-b") == b
    ipam.release("pod-a")                         # frees the address for reuse, keeps others
    assert (ipam.owner_of(a), ipam.owner_of(b)) == (None, "pod-b")
    assert ipam.allocate("pod-c") == a


def test_ipam_exhaustion(tmp_path):
    ipam = podnet.IPAM(tmp_path, "10.0.0.0/30")   # hosts .1 (gateway) and .2
    assert ipam.allocate("only") == "10.0.0.2"
    with pytest.raises(podnet.PodNetError, match="no free address left in 10.0.0.0/30"):
        ipam.allocate("another")
    ipam.release("only")
    assert ipam.allocate("another") == "10.0.0.2"


def test_netns_and_veth_names():
    uid = "0f8e2c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
    assert podnet.netns_name("dev", uid) == "mlops-dev-p0f8e2c1a5b6d"
    veth = podnet.veth_name(uid)
    assert veth == "mv0f8e2c1a5b6d" and len(veth) <= 15


# --- probes ----------------------------------------------------------------------------------

def test_probe_spec_defaults_and_overrides():
    assert probes.ProbeSpec.from_api(None) is None
    assert probes.ProbeSpec.from_api({"periodSeconds": 5}) is None
    s = probes.ProbeSpec.from_api({"httpGet": {"path": "/healthz", "port": "http"}})
    assert (s.kind, s.action, s.initial_delay, s.period, s.timeout, s.success_threshold, s.failure_threshold) == \
        ("httpGet", {"path": "/healthz", "port": "http"}, 0, 10, 1, 1, 3)
    s = probes.ProbeSpec.from_api({"exec": {"command": ["true"]}, "initialDelaySeconds": 2, "periodSeconds": 5,
                                   "timeoutSeconds": 3, "successThreshold": 2, "failureThreshold": 7})
    assert (s.kind, s.initial_delay, s.period, s.timeout, s.success_threshold, s.failure_threshold) == \
        ("exec", 2, 5, 3, 2, 7)


def test_resolve_port():
    c = {"name": "web", "ports": [{"name": "metrics", "containerPort": 9090}, {"name": "http", "containerPort": 8080}]}
    assert (probes.resolve_port(8000, c), probes.resolve_port("8000", c), probes.resolve_port("http", c)) == \
        (8000, 8000, 8080)
    with pytest.raises(ValueError, match="'grpc' is not a named port of container 'web'"):
        probes.resolve_port("grpc", c)


# --- kubelet details that an earlier version got wrong (regression tests) ---

# kubelet uses net.JoinHostPort: IPv6 cluster IPs are bracketed
def test_service_env_brackets_ipv6_cluster_ips():
    env = podspec.service_env([_svc("kubernetes", "fd00::1", [{"name": "https", "port": 443}])])
    assert env["KUBERNETES_PORT"] == "tcp://[fd00::1]:443"


# kubelet fieldpath.FormatMap quotes values with %q (escapes \" and \\n)
def test_metadata_annotations_values_are_escaped():
    assert podspec.field_value(POD, "metadata.annotations") == 'note="say \\"hi\\""'


# P, E, Pi and Ei are documented Kubernetes quantity suffixes
@pytest.mark.parametrize("q, value", [("1Pi", 2 ** 50), ("1P", 10 ** 15), ("1Ei", 2 ** 60), ("2E", 2 * 10 ** 18)])
def test_parse_quantity_large_suffixes(q, value):
    assert podspec.parse_quantity(q) == value


# kubelet getPhase: any container waiting without a previous termination makes the pod Pending, even if another one runs/exited
@pytest.mark.parametrize("policy, other", [("Always", running("a")), ("Never", exited(1, "a"))])
def test_phase_is_pending_while_any_container_is_not_yet_created(policy, other):
    assert podstatus.phase(pod(policy, other, creating("b"))) == "Pending"


def test_ipam_restores_a_pods_reported_ip(tmp_path):
    ipam = podnet.IPAM(tmp_path, "10.244.0.0/24")
    assert ipam.allocate("a", prefer="10.244.0.9") == "10.244.0.9"
    assert ipam.allocate("a") == "10.244.0.9"  # held: stable
    with pytest.raises(podnet.PodNetError, match="held by another pod"):
        ipam.allocate("b", prefer="10.244.0.9")
    assert ipam.allocate("c", prefer="192.168.1.1") == "10.244.0.2"  # outside the CIDR: ignored

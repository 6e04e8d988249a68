"""Argo CD health of the five mlops.dev kinds: the Lua scripts in
manifests/argocd/resource_customizations/mlops.dev/<Kind>/health.lua run the way Argo CD runs a
health script from argocd-cm: in a Lua 5.1 (lupa; Argo CD's gopher-lua is a Lua 5.1 too) cut down
to Argo CD's sandbox (tests/unit/argocd_lua.py: no `string`, no `math`, no string methods unless
argocd-cm sets useOpenLibs for the kind), the resource as the global `obj`, the returned table
read as Argo CD reads it.

The statuses are the ones the controllers write: the same condition types, reasons, messages
and phases, built with the operator's own `set_condition` (and, for Datasets, the operator's
pure `record_snapshot`), so a renamed reason or phase in a controller shows up here. Each holds
`observedGeneration` = the object's generation (1), as the operator writes it on every reconcile
of every kind; the cases at a later generation are the specs it has not observed yet.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_operator.api.conditions import set_condition
from mlops_operator.api.crd import KINDS as API_KINDS
from mlops_operator.data.versions import record_snapshot
from tests.unit.argocd_lua import STATUSES, execute_health, lupa, sandbox

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "manifests" / "argocd"
GROUP = "mlops.dev"
CUSTOM = ARGOCD / "resource_customizations" / GROUP  # Argo CD's layout: <Kind>/health.lua
KINDS = ["Dataset", "TrainingRun", "ModelVersion", "InferenceService", "DriftMonitor"]
T0, T1, T2, T3 = "2026-03-01T10:00:00Z", "2026-03-01T10:05:00Z", "2026-03-01T10:10:00Z", "2026-03-01T10:15:00Z"


def argocd_cm() -> dict[str, str]:
    return yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())["data"]


def configured(kind: str) -> tuple[str, bool]:
    """The kind's script and useOpenLibs as Argo CD reads them from the argocd-cm patch
    (util/settings/settings.go: resource.customizations.<health|useOpenLibs>.<group>_<kind>)."""
    data = argocd_cm()
    open_libs = data.get(f"resource.customizations.useOpenLibs.{GROUP}_{kind}", "false")
    assert open_libs in ("true", "false"), open_libs  # strconv.ParseBool also takes 1, t, TRUE, ...: keep it plain
    return data[f"resource.customizations.health.{GROUP}_{kind}"], open_libs == "true"


def health(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Run the kind's script from the argocd-cm patch as Argo CD does; return {status, message}."""
    script, open_libs = configured(kind)
    out = execute_health(script, obj, open_libs)
    assert out.get("status") in STATUSES and out["status"] != "Unknown", out
    assert out.get("message"), out  # every branch says why
    return out


#: specs of the kinds whose cases below do not vary theirs (as in examples/retail/loop/)
SPECS = {
    "Dataset": {"source": {"type": "file", "file": {"path": "sessions.parquet", "claimName": "retail-landing"}},
                "labelColumn": "purchased", "validation": {"minRows": 1000}},
    "TrainingRun": {"modelName": "propensity", "dataset": {"name": "retail-sessions"},
                    "estimator": {"type": "LogisticRegression", "params": {"max_iter": 200}}, "metric": "roc_auc",
                    "promotion": {"policy": "ifBetter", "alias": "production", "margin": 0.0}},
}


def resource(kind: str, status: dict[str, Any] | None, spec: dict[str, Any] | None = None,
             generation: int = 1) -> dict[str, Any]:
    name = "retail-sessions" if kind == "Dataset" else "propensity"
    obj = {"apiVersion": f"{GROUP}/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": "retail", "generation": generation},
           "spec": spec if spec is not None else copy.deepcopy(SPECS.get(kind, {}))}
    if status is not None:
        obj["status"] = status
    return obj


def conds(*steps: tuple, base: list | None = None) -> list[dict[str, Any]]:
    """set_condition applied in order, as the controllers do: (type, status, reason, message)."""
    out = base
    for ctype, st, reason, msg in steps:
        out, _ = set_condition(out, ctype, st, reason, msg, 1)
    return out


# ------------------------------------------------------------------------------ the patch

def test_argocd_cm_patch_holds_exactly_the_lua_files():
    doc = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "argocd-cm"
    assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"  # how Argo CD finds it
    want = {f"resource.customizations.health.{GROUP}_{k}": (CUSTOM / k / "health.lua").read_text() for k in KINDS}
    assert doc["data"] == want
    assert sorted(p.relative_to(CUSTOM).as_posix() for p in CUSTOM.rglob("*.lua")) == sorted(
        f"{k}/health.lua" for k in KINDS)


def test_the_renderer_reports_the_patch_up_to_date():
    r = subprocess.run([sys.executable, str(ARGOCD / "render_argocd_cm.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_the_renderer_notices_an_edited_script_and_renders_it(tmp_path):
    argocd = tmp_path / "argocd"
    shutil.copytree(ARGOCD, argocd)
    script = argocd / "resource_customizations" / GROUP / "Dataset" / "health.lua"
    script.write_text(script.read_text() + "-- edited\n")
    render = [sys.executable, str(argocd / "render_argocd_cm.py")]
    r = subprocess.run(render + ["--check"], capture_output=True, text=True)
    assert r.returncode == 1 and "out of date" in r.stderr, r
    assert subprocess.run(render, capture_output=True).returncode == 0
    assert subprocess.run(render + ["--check"], capture_output=True).returncode == 0
    data = yaml.safe_load((argocd / "argocd-cm-patch.yaml").read_text())["data"]
    assert data[f"resource.customizations.health.{GROUP}_Dataset"] == script.read_text()
    assert list(data) == [f"resource.customizations.health.{GROUP}_{k}" for k in KINDS]  # nothing else


def test_every_kind_of_the_crds_has_a_health_script():
    kinds = set()
    for f in (REPO / "crds").glob("*.yaml"):
        for d in yaml.safe_load_all(f.read_text()):
            if d and d.get("kind") == "CustomResourceDefinition" and d["spec"]["group"] == GROUP:
                kinds.add(d["spec"]["names"]["kind"])
    assert kinds == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_scripts_are_plain_lua_51(kind):
    src = (CUSTOM / kind / "health.lua").read_text()
    assert not re.search(r"\bgoto\b|//|\bos\.|\bio\.|\brequire\b", src)  # gopher-lua is Lua 5.1, sandboxed
    code = re.sub(r"--.*", "", src)
    code = re.sub(r'"(\\.|[^"\\])*"' + r"|'(\\.|[^'\\])*'", '""', code)  # string literals emptied
    # a backstop for the cases below: no library Argo CD's sandbox lacks, no string methods
    assert not re.search(r"\b(string|math|os|io|debug|coroutine)\s*\.|[\w)\]\"']\s*:\s*[a-z]+\s*\(", code)


@pytest.mark.parametrize("kind", KINDS)
def test_scripts_run_without_open_libs(kind):
    """Argo CD gives a script from argocd-cm the standard libraries only when useOpenLibs is set
    for its kind: the patch sets it for none, so every case here runs in the bare sandbox."""
    assert configured(kind)[1] is False


# ------------------------------------------------------------------------------ the sandbox
# tests/unit/argocd_lua.py rebuilds Argo CD's sandbox; these keep it from being vacuous

def run_lua(src: str, open_libs: bool = False) -> Any:
    return sandbox(open_libs).execute(src)


def test_sandbox_holds_exactly_argocds_globals():
    names = set(run_lua("local t = {} for k in pairs(_G) do t[#t + 1] = k end return t").values())
    assert names == {"_G", "_VERSION", "_GOPHER_LUA_VERSION", "_printregs", "assert", "collectgarbage", "dofile",
                     "error", "getfenv", "getmetatable", "ipairs", "load", "loadfile", "loadstring", "module",
                     "newproxy", "next", "package", "pairs", "pcall", "print", "rawequal", "rawget", "rawset",
                     "require", "select", "setfenv", "setmetatable", "table", "tonumber", "tostring", "type",
                     "unpack", "xpcall"}
    assert set(run_lua("local t = {} for k in pairs(package.loaded) do t[#t + 1] = k end return t").values()) == {
        "_G", "table"}


@pytest.mark.parametrize("src", [
    'return string.find("abc", "b", 1, true)',
    'return string.sub("abc", 2)',
    'return ("abc"):find("b")',  # gopher-lua sets the string metatable only in OpenString
    'local s = "abc" return s:upper()',
    'return getmetatable("").__index',
    "return math.max(1, 2)",
    "return math.floor(1.5)",
    "return os.time()",
    'return io.write("")',
    "return coroutine.running()",
    "return debug.traceback()",
    "return package.loaded.string.find",
])
def test_sandbox_lacks_the_libraries_argocd_does_not_open(src):
    with pytest.raises(lupa.LuaError, match="attempt to (index|call)"):
        run_lua(src)
    if "package.loaded" not in src:  # even with useOpenLibs, package.loaded holds _G and table only
        run_lua(src, open_libs=True)  # useOpenLibs has them


@pytest.mark.parametrize("src", ["return gcinfo()", "return table.foreach({}, print)", "return python.eval('1')",
                                 'return package.loadlib("x", "y")', "return require('string')"])
def test_sandbox_lacks_what_gopher_lua_never_has(src):
    for open_libs in (False, True):
        with pytest.raises(lupa.LuaError):
            run_lua(src, open_libs)


@pytest.mark.parametrize("src, want", [
    ('return table.concat({"a", "b"}, ", ")', "a, b"),
    ('return #"abc"', 3),
    ('return "generation " .. 2', "generation 2"),
    ('return tostring(2) .. type("")', "2string"),
    ('return "2026-03-01T10:00:00Z" <= "2026-03-01T10:05:00Z"', True),
    ('local n = 0 for _, v in ipairs({1, 2}) do n = n + v end return n', 3),
    ('return select("#", pcall(error, "x"))', 2),
    ('return loadstring("return 7")()', 7),
    ('return type(require("os").time())', "number"),  # argo-cd's safe os, preloaded (oslib_safe.go)
    ('return require("os").execute', None),
    ("return os", None),  # OpenSafeOs registers nothing: there is no os global
])
def test_sandbox_keeps_what_argocd_opens(src, want):
    assert run_lua(src) == want


# argo-cd util/lua/lua_test.go TestGetResourceHealth ("Enable/Disable Lua standard lib"): the same script
STD_LIB_SCRIPT = """
hs = {}
str = "Using lua standard library"
if string.find(str, "standard") then
  hs.message = "Standard lib was used"
else
  hs.message = "Standard lib was not used"
end
hs.status = "Healthy"
return hs"""


def test_a_script_using_the_string_library_fails_without_open_libs_as_in_argocd():
    obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "test", "namespace": "test"}}
    assert execute_health(STD_LIB_SCRIPT, obj, open_libs=True) == {"status": "Healthy",
                                                                    "message": "Standard lib was used"}
    with pytest.raises(lupa.LuaError, match=r":4: attempt to index global 'string' \(a nil value\)"):
        execute_health(STD_LIB_SCRIPT, obj)  # Argo CD: "<string>:4: attempt to index a non-table object(nil)..."


@pytest.mark.parametrize("src, want", [
    ('return {status = "Healthy", message = "ok"}', {"status": "Healthy", "message": "ok"}),
    ('return {status = "Healthy"}', {"status": "Healthy"}),
    ("return {}", {}),
    ("return nil", {}),
    ('return {status = "Fine", message = "ok"}',
     {"status": "Unknown", "message": "Lua returned an invalid health status"}),
    ('return {message = "ok"}', {"status": "Unknown", "message": "Lua returned an invalid health status"}),
    ('return "x", {status = "Degraded", message = "last value"}', {"status": "Degraded", "message": "last value"}),
    ('return {status = 1, message = "ok"}', {}),  # any UnmarshalTypeError: an empty HealthStatus
])
def test_the_result_is_read_as_argocd_reads_it(src, want):
    assert execute_health(src, {}) == want


def test_a_result_that_is_no_table_is_an_error():
    with pytest.raises(TypeError, match="expect table output from Lua script, not string"):
        execute_health('return "Healthy"', {})


def test_application_points_at_the_retail_loop():
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert app["kind"] == "Application" and app["metadata"]["namespace"] == "argocd"
    src = app["spec"]["source"]
    assert src["path"] == "examples/retail/loop" and (REPO / src["path"]).is_dir()
    assert src["repoURL"].endswith(".git")
    kust = yaml.safe_load((ARGOCD / "kustomization.yaml").read_text())
    assert kust["resources"] == ["application.yaml"]


# ------------------------------------------------------------------------------ TrainingRun

def _run_pending():
    return {"phase": "Pending", "message": "Dataset retail-sessions has no valid version yet", "observedGeneration": 1,
            "conditions": conds(("Ready", False, "DatasetNotReady",
                                 "Dataset retail-sessions has no valid version yet"))}


def _run_running():
    return {"phase": "Running", "jobName": "propensity-initial-train", "startTime": T0, "observedGeneration": 1,
            "datasetDigest": "a" * 64,
            "conditions": conds(("Ready", False, "Training",
                                 f"Job propensity-initial-train is training on retail-sessions@{'a' * 12}"),
                                ("Succeeded", "Unknown", "Training", ""))}


def _run_succeeded(decision="promoted", reason="first version of propensity: no champion holds production"):
    st = _run_running()
    c = conds(("Ready", True, "Succeeded", "registered propensity-v1: roc_auc 0.8123"),
              ("Succeeded", True, "Succeeded", "registered propensity-v1"), base=st["conditions"])
    st.update(phase="Succeeded", conditions=c, completionTime=T1, message=None, metric="roc_auc", score=0.8123,
              modelVersion="propensity-v1", artifactDigest="b" * 64,
              promotion={"decision": decision, "alias": "production", "candidateScore": 0.8123, "reason": reason})
    return st


def _run_failed(reason):
    st = _run_running()
    c = conds(("Ready", False, "TrainingFailed", reason), ("Succeeded", False, "TrainingFailed", reason),
              base=st["conditions"])
    st.update(phase="Failed", conditions=c, message=reason, completionTime=T1)
    return st


TRAININGRUN_CASES = [
    (None, "Progressing", ["Waiting for the operator to observe generation 1"]),
    (_run_pending(), "Progressing", ["has no valid version yet"]),
    (_run_running(), "Progressing", ["propensity-initial-train is training on retail-sessions@"]),
    (_run_succeeded(), "Healthy", ["registered propensity-v1: roc_auc 0.8123", "promotion: promoted",
                                   "no champion holds production"]),
    (_run_succeeded("kept", "candidate 0.79 does not beat propensity-v1 0.81 by 0.0"), "Healthy",
     ["promotion: kept (candidate 0.79"]),
    (_run_failed("the training Job exceeded activeDeadlineSeconds=600 and was stopped"), "Degraded",
     ["exceeded activeDeadlineSeconds=600"]),
    (_run_failed("the training Job failed; log tail:\nValueError: Input contains NaN"), "Degraded",
     ["Input contains NaN"]),
]
TRAININGRUN_IDS = [  # also the names of testdata/<id>.yaml
    "progressing_noStatus", "progressing_pending", "progressing_running", "healthy_succeededPromoted",
    "healthy_succeededKept", "degraded_deadlineExceeded", "degraded_jobFailed",
]


@pytest.mark.parametrize("status, want, words", TRAININGRUN_CASES, ids=TRAININGRUN_IDS)
def test_trainingrun_health(status, want, words):
    hs = health("TrainingRun", resource("TrainingRun", status))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


REJECTED_PARAMS = "LogisticRegression has no parameter(s) max_iterz; known: C, max_iter"


def _run_rejected():
    msg = REJECTED_PARAMS
    return {"phase": "Failed", "message": msg, "completionTime": T0, "observedGeneration": 1,
            "conditions": conds(("Ready", False, "InvalidInput", msg), ("Succeeded", False, "InvalidInput", msg))}


def test_trainingrun_rejected_parameters_are_degraded():
    assert health("TrainingRun", resource("TrainingRun", _run_rejected())) == {"status": "Degraded",
                                                                                "message": REJECTED_PARAMS}


# ------------------------------------------------------------------------------ ModelVersion

MV_SPEC = {"model": "propensity", "version": 1, "aliases": ["production"],
           "artifact": {"uri": "file:///store/models/propensity/x/", "digest": "b" * 64}}


def _mv_verifying():
    return {"verifyJob": "propensity-v1-verify-1", "lastVerifyTrigger": "1", "observedGeneration": 1,
            "conditions": conds(("Ready", False, "Verifying", "checking the artifact's sha256"))}


def _mv_verified():
    return {"verifyJob": None, "verifiedAt": T1, "observedGeneration": 1, "stage": "aliased",
            "conditions": conds(("Ready", True, "Verified", f"model.onnx matches sha256 {'b' * 12}"),
                                ("Degraded", False, "Verified", ""), base=_mv_verifying()["conditions"])}


def _mv_invalid():
    err = f"sha256 of model.onnx is {'c' * 64}, expected {'b' * 64}"
    return {"verifyJob": None, "verifiedAt": T2, "observedGeneration": 1, "message": err,
            "conditions": conds(("Ready", False, "ArtifactInvalid", err), ("Degraded", True, "ArtifactInvalid", err),
                                base=_mv_verified()["conditions"])}


MODELVERSION_CASES = [
    (None, [], "Progressing", ["Waiting for the operator to observe generation 1"]),
    (_mv_verifying(), [], "Progressing", ["checking the artifact's sha256"]),
    (_mv_verified(), ["production"], "Healthy", ["model.onnx matches sha256", "holds production"]),
    (_mv_verified(), [], "Healthy", ["model.onnx matches sha256"]),
    (_mv_invalid(), ["production"], "Degraded", ["sha256 of model.onnx is"]),
]
MODELVERSION_IDS = [  # also the names of testdata/<id>.yaml
    "progressing_noStatus", "progressing_verifying", "healthy_verifiedWithAlias", "healthy_verified",
    "degraded_artifactInvalid",
]


@pytest.mark.parametrize("status, aliases, want, words", MODELVERSION_CASES, ids=MODELVERSION_IDS)
def test_modelversion_health(status, aliases, want, words):
    hs = health("ModelVersion", resource("ModelVersion", status, dict(MV_SPEC, aliases=aliases)))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs
    if not aliases:
        assert "holds" not in hs["message"], hs


# ------------------------------------------------------------------------------ InferenceService

ISVC_SPEC = {"model": "propensity", "alias": "production", "replicas": 2}


def _isvc_no_model():
    why = "no ModelVersion of propensity holds the alias production"
    return {"observedGeneration": 1,
            "conditions": conds(("Ready", False, "NoModel", why), ("Progressing", False, "NoModel", why))}


def _isvc_first_rollout():
    c = conds(("Ready", False, "Starting", "0/2 pods on the new version, 0 available"),
              ("Progressing", True, "RollingOut", "propensity-v1: 0/2 pods on the new version, 0 available"),
              base=_isvc_no_model()["conditions"])
    return {"observedGeneration": 1, "replicas": 2, "readyReplicas": 0, "conditions": c,
            "url": "http://propensity.retail.svc/v2/models/propensity"}


def _isvc_serving(version="propensity-v1"):
    c = conds(("Ready", True, "Serving", f"{version} on 2 pod(s)"), ("Progressing", False, "RolloutComplete", ""),
              ("Degraded", False, "Serving", ""), base=_isvc_first_rollout()["conditions"])
    return {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "modelVersion": version,
            "lastRolloutTime": T1, "conditions": c, "url": "http://propensity.retail.svc/v2/models/propensity"}


def _isvc_rolling_v2():
    st = _isvc_serving()
    st["conditions"] = conds(("Ready", True, "Serving", "propensity-v1 serves while propensity-v2 rolls out"),
                             ("Progressing", True, "RollingOut", "propensity-v2: 1/2 pods on the new version, "
                                                                 "2 available"), base=st["conditions"])
    return st


def _isvc_canary():
    st = _isvc_serving()
    st["canary"] = {"version": "propensity-v2", "step": 0, "replicas": 1, "share": 25}
    st["conditions"] = conds(("Progressing", True, "Canary", "propensity-v2: observing step 1/2 (25%)"),
                             base=st["conditions"])
    return st


def _isvc_rollout_failed():
    st = _isvc_rolling_v2()
    text = ("propensity-v2 did not become ready (CrashLoopBackOff: back-off restarting failed container); "
            "propensity-v1 keeps serving")
    st.update(failedModelVersion="propensity-v2", failureMessage="CrashLoopBackOff: back-off")
    st["conditions"] = conds(("Degraded", True, "RolloutFailed", text), ("Progressing", False, "RolloutFailed", text),
                             base=st["conditions"])
    return st


def _isvc_not_rolled_out():
    """Next reconcile after a failed rollout: the alias still names the broken version, v1 serves."""
    st = _isvc_rollout_failed()
    why = "propensity-v2 failed to roll out earlier: CrashLoopBackOff: back-off"
    st["conditions"] = conds(("Ready", True, "Serving", "propensity-v1 on 2 pod(s)"),
                             ("Progressing", False, "RolloutComplete", ""), ("Degraded", True, "NotRolledOut", why),
                             base=st["conditions"])
    return st


def _isvc_canary_rolled_back():
    st = _isvc_canary()
    text = ("canary propensity-v2 rolled back: canary error rate 0.120 > 0.01 on 50 requests; "
            "propensity-v1 keeps serving")
    st.update(canary=None, failedModelVersion="propensity-v2",
              lastCanary={"version": "propensity-v2", "result": "rolledBack"})
    st["conditions"] = conds(("Degraded", True, "CanaryRolledBack", text),
                             ("Progressing", False, "CanaryRolledBack", text), base=st["conditions"])
    return st


def _isvc_v3_after_failure():
    """The alias moved on to v3 after v2 failed: a new rollout, Degraded still set from v2."""
    st = _isvc_rollout_failed()
    st["conditions"] = conds(("Progressing", True, "RollingOut", "propensity-v3: 0/2 pods on the new version, "
                                                                 "2 available"), base=st["conditions"])
    return st


def _isvc_recovered():
    st = _isvc_v3_after_failure()
    st["conditions"] = conds(("Ready", True, "Serving", "propensity-v3 on 2 pod(s)"),
                             ("Progressing", False, "RolloutComplete", ""), ("Degraded", False, "Serving", ""),
                             base=st["conditions"])
    st["modelVersion"] = "propensity-v3"
    return st


INFERENCESERVICE_CASES = [
    (None, "Progressing", ["Waiting for the operator to observe generation 1"]),
    (_isvc_no_model(), "Progressing", ["Waiting for a model to serve", "holds the alias production"]),
    (_isvc_first_rollout(), "Progressing", ["propensity-v1: 0/2 pods"]),
    (_isvc_serving(), "Healthy", ["propensity-v1 on 2 pod(s)"]),
    (_isvc_rolling_v2(), "Progressing", ["propensity-v2: 1/2 pods"]),
    (_isvc_canary(), "Progressing", ["observing step 1/2 (25%)"]),
    (_isvc_rollout_failed(), "Degraded", ["did not become ready", "propensity-v1 keeps serving"]),
    (_isvc_not_rolled_out(), "Degraded", ["propensity-v2 failed to roll out earlier", "; propensity-v1 keeps serving"]),
    (_isvc_canary_rolled_back(), "Degraded", ["rolled back", "propensity-v1 keeps serving"]),
    (_isvc_v3_after_failure(), "Progressing", ["propensity-v3: 0/2 pods"]),
    (_isvc_recovered(), "Healthy", ["propensity-v3 on 2 pod(s)"]),
]
INFERENCESERVICE_IDS = [  # also the names of testdata/<id>.yaml
    "progressing_noStatus", "progressing_noModel", "progressing_firstRollout", "healthy_serving",
    "progressing_rollingOut", "progressing_canary", "degraded_rolloutFailed", "degraded_notRolledOut",
    "degraded_canaryRolledBack", "progressing_rolloutAfterFailure", "healthy_recovered",
]


@pytest.mark.parametrize("status, want, words", INFERENCESERVICE_CASES, ids=INFERENCESERVICE_IDS)
def test_inferenceservice_health(status, want, words):
    hs = health("InferenceService", resource("InferenceService", status, ISVC_SPEC))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


# ------------------------------------------------------------------------------ DriftMonitor

DM_SPEC = {"inferenceService": "propensity", "interval": "3s", "window": {"duration": "15s", "minSamples": 500},
           "accuracy": {"metric": "accuracy", "threshold": 0.76, "minSamples": 300},
           "retrain": {"enabled": True, "cooldown": "2m", "refreshDataset": True,
                       "template": {"modelName": "propensity", "dataset": {"name": "retail-sessions"},
                                    "estimator": {"type": "LogisticRegression"}}}}
DRIFT = "data drift: 4 of 9 features drifted (share 0.44 >= 0.3): age, sessions_30d, basket_size, channel"


def _dm_waiting():
    why = "InferenceService propensity serves no model yet"
    return {"observedGeneration": 1, "lastScrapeTime": T0, "message": why,
            "conditions": conds(("Ready", False, "NoServingModel", why))}


def _dm_monitoring():
    return {"observedGeneration": 1, "lastScrapeTime": T0, "servingModelVersion": "propensity-v1", "windowRows": 120,
            "windowStart": T0, "conditions": conds(("Ready", True, "Monitoring", "2 pod(s) of propensity-v1 scraped"),
                                                   base=_dm_waiting()["conditions"])}


def _dm_no_drift():
    st = _dm_monitoring()
    st.update(lastEvaluationTime=T1, samples=900, driftShare=0.0, datasetDrift=False, accuracy=0.81,
              message="0 of 9 features drifted (share 0.00 < 0.3)")
    st["conditions"] = conds(("Drifted", False, "NoDrift",
                              "0 of 9 features drifted (share 0.00 < 0.3); accuracy 0.810"), base=st["conditions"])
    return st


def _dm_insufficient():
    st = _dm_monitoring()
    st["conditions"] = conds(("Drifted", "Unknown", "InsufficientSamples", "too few rows: 120 < 500"),
                             base=st["conditions"])
    return st


def _dm_drifted(retrain: dict | None = None, message: str | None = None, evaluated: str = T1):
    st = _dm_no_drift()
    st.update(lastEvaluationTime=evaluated, driftShare=0.44, datasetDrift=True, accuracy=0.7,
              message=message or DRIFT[len("data drift: "):])
    text = DRIFT + "; accuracy 0.700 breaches 0.76 on 400 labels"
    st["conditions"] = conds(("Drifted", True, "DataDriftAndAccuracy", text), base=st["conditions"])
    if retrain is not None:
        st.update(retrain=retrain, retrainCount=retrain["number"], lastRetrainTime=retrain["startedAt"])
    return st


RETRAIN = {"number": 1, "reason": DRIFT, "startedAt": T1, "dataset": "retail-sessions"}


DRIFTMONITOR_CASES = [
    (None, DM_SPEC, "Progressing", ["Waiting for the operator to observe generation 1"]),
    (_dm_waiting(), DM_SPEC, "Progressing", ["serves no model yet"]),
    (_dm_monitoring(), DM_SPEC, "Healthy", ["2 pod(s) of propensity-v1 scraped", "no window judged yet"]),
    (_dm_insufficient(), DM_SPEC, "Healthy", ["too few rows"]),
    (_dm_no_drift(), DM_SPEC, "Healthy", ["0 of 9 features drifted", "accuracy 0.810"]),
    (_dm_drifted(dict(RETRAIN, phase="Refreshing", priorTrigger="g1")), DM_SPEC, "Progressing",
     ["4 of 9 features drifted", "retraining in progress (Dataset retail-sessions refresh)"]),
    (_dm_drifted(dict(RETRAIN, phase="Training", trainingRun="propensity-retrain-1")), DM_SPEC, "Progressing",
     ["retraining in progress (propensity-retrain-1)"]),
    (_dm_drifted(dict(RETRAIN, phase="Succeeded", trainingRun="propensity-retrain-1", finishedAt=T2,
                      result="retraining propensity-retrain-1 registered propensity-v2: promoted (better)")),
     DM_SPEC, "Progressing", ["registered propensity-v2: promoted", "waiting for the next window"]),
    (_dm_drifted(dict(RETRAIN, phase="Succeeded", trainingRun="propensity-retrain-1", finishedAt=T2,
                      result="retraining propensity-retrain-1 registered propensity-v2: kept (not better)"),
                 evaluated=T3), DM_SPEC, "Degraded", ["4 of 9 features drifted"]),
    (_dm_drifted(dict(RETRAIN, phase="Failed", trainingRun="propensity-retrain-1", finishedAt=T2,
                      result="retraining propensity-retrain-1 failed: the training Job failed; the serving model "
                             "stays")),
     DM_SPEC, "Degraded", ["4 of 9 features drifted", "propensity-retrain-1 failed"]),
    (_dm_drifted(dict(RETRAIN, phase="Succeeded", trainingRun="propensity-retrain-1", finishedAt=T1),
                 message=DRIFT[len("data drift: "):] + "; retraining not started: in cooldown for another 80s "
                                                       "(last: retraining propensity-retrain-1 registered "
                                                       "propensity-v2: kept (not better))",
                 evaluated=T2), DM_SPEC, "Degraded",
     ["retraining not started: in cooldown for another 80s (last: retraining propensity-retrain-1 registered"]),
    (_dm_drifted(), {k: v for k, v in DM_SPEC.items() if k != "retrain"}, "Degraded",
     ["4 of 9 features drifted", "retraining is not enabled"]),
]
DRIFTMONITOR_IDS = [  # also the names of testdata/<id>.yaml
    "progressing_noStatus", "progressing_noServingModel", "healthy_monitoring", "healthy_insufficientSamples",
    "healthy_noDrift", "progressing_retrainRefreshing", "progressing_retrainTraining",
    "progressing_retrainedWaitingForWindow", "degraded_driftAfterRetraining", "degraded_retrainFailed",
    "degraded_retrainCooldown", "degraded_retrainDisabled",
]


@pytest.mark.parametrize("status, spec, want, words", DRIFTMONITOR_CASES, ids=DRIFTMONITOR_IDS)
def test_driftmonitor_health(status, spec, want, words):
    hs = health("DriftMonitor", resource("DriftMonitor", status, spec))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


def _dm_back_to_no_drift():
    st = _dm_drifted(dict(RETRAIN, phase="Succeeded", trainingRun="propensity-retrain-1", finishedAt=T2))
    st["lastEvaluationTime"] = T3
    st["conditions"] = conds(("Drifted", False, "NoDrift", "1 of 9 features drifted (share 0.11 < 0.3)"),
                             base=st["conditions"])
    return st


def test_driftmonitor_back_to_no_drift_is_healthy_again():
    assert health("DriftMonitor", resource("DriftMonitor", _dm_back_to_no_drift(), DM_SPEC))["status"] == "Healthy"


# ------------------------------------------------------------------------------ Dataset
# statuses from the operator's own record_snapshot (data/versions.py) and the controller's
# "snapshot started" step (controllers/dataset.py)

def ok(digest: str, rows: int = 5000) -> dict:
    return {"digest": digest * 64, "rows": rows, "columns": 12, "validated": True, "failures": [],
            "uri": f"file:///store/datasets/retail-sessions/{digest * 64}/",
            "labelDistribution": {"0": 4000, "1": 1000}}


def bad(digest: str) -> dict:
    return {"digest": digest * 64, "rows": 800, "columns": 12, "validated": False,
            "failures": [{"check": "minRows", "column": None, "count": 800, "examples": [],
                          "message": "800 rows, at least 1000 required"}]}


def started(status: dict, job: str = "retail-sessions-snap-g2") -> dict:
    """What controllers/dataset.py patches when it starts a snapshot Job."""
    st = copy.deepcopy(status)
    c, _ = set_condition(st.get("conditions"), "Progressing", True, "Snapshotting", f"snapshot Job {job} is running", 1)
    if not st.get("latestValid"):
        c, _ = set_condition(c, "Ready", False, "Snapshotting", "no valid version yet", 1)
    st.update(activeJob=job, conditions=c, phase=st.get("phase") if st.get("latestValid") else "Snapshotting",
              observedGeneration=1)
    return st


def snapshot(status: dict, summary: dict, trigger: str) -> dict:
    return record_snapshot(started(status), summary, 1, 10, trigger)[0]


FIRST = snapshot({}, ok("a"), "g1")
REJECTED = snapshot(FIRST, bad("b"), "r1")


DATASET_CASES = [
    (None, "Progressing", ["Waiting for the operator to observe generation 1"]),
    (started({}, "retail-sessions-snap-g1"), "Progressing", ["snapshot Job retail-sessions-snap-g1 is running"]),
    (FIRST, "Healthy", [f"version {'a' * 12} with 5000 rows"]),
    (started(FIRST), "Healthy", [f"version {'a' * 12}", "snapshot Job retail-sessions-snap-g2 is running"]),
    (snapshot(FIRST, ok("c", 6000), "r1"), "Healthy", [f"version {'c' * 12} with 6000 rows"]),
    (REJECTED, "Degraded", [f"latest snapshot {'b' * 12} failed validation", f"version {'a' * 12} stays in use"]),
    (snapshot(FIRST, {"error": "SourceError: sessions.parquet does not exist"}, "r1"), "Degraded",
     ["sessions.parquet does not exist", "stays in use"]),
    (snapshot(REJECTED, ok("d"), "r2"), "Healthy", [f"version {'d' * 12}"]),
    (snapshot({}, bad("b"), "g1"), "Degraded", ["no valid version yet", "800 rows, at least 1000 required"]),
    (snapshot({}, {"error": "SourceError: sessions.parquet does not exist"}, "g1"), "Degraded",
     ["snapshot failed", "sessions.parquet does not exist"]),
    (started(snapshot({}, bad("b"), "g1")), "Progressing", ["snapshot Job retail-sessions-snap-g2 is running"]),
]
DATASET_IDS = [  # also the names of testdata/<id>.yaml
    "progressing_noStatus", "progressing_firstSnapshot", "healthy_firstVersion", "healthy_refreshing",
    "healthy_newVersion", "degraded_rejectedSnapshot", "degraded_snapshotFailedPreviousVersion",
    "healthy_validAfterRejected", "degraded_noValidVersion", "degraded_firstSnapshotFailed",
    "progressing_retryAfterInvalid",
]


@pytest.mark.parametrize("status, want, words", DATASET_CASES, ids=DATASET_IDS)
def test_dataset_health(status, want, words):
    hs = health("Dataset", resource("Dataset", status))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


# ------------------------------------------------------------------------------ every kind: generation, kstatus

#: per kind, a settled status the operator writes at generation 1, and the spec
SETTLED = {
    "Dataset": (lambda: copy.deepcopy(FIRST), None),
    "TrainingRun": (_run_running, None),  # not finished: a finished run is a record (below)
    "ModelVersion": (_mv_verified, MV_SPEC),
    "InferenceService": (_isvc_serving, ISVC_SPEC),
    "DriftMonitor": (_dm_no_drift, DM_SPEC),
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_generation_the_operator_has_not_observed_is_progressing(kind):
    build, spec = SETTLED[kind]
    settled = health(kind, resource(kind, build(), spec))
    assert not settled["message"].startswith("Waiting for the operator to observe"), settled
    assert health(kind, resource(kind, build(), spec, generation=2)) == {
        "status": "Progressing", "message": "Waiting for the operator to observe generation 2 (the status is of "
                                            "generation 1)"}
    assert health(kind, resource(kind, None, spec, generation=3)) == {
        "status": "Progressing", "message": "Waiting for the operator to observe generation 3"}
    st = build()
    del st["observedGeneration"]
    assert health(kind, resource(kind, st, spec)) == {
        "status": "Progressing", "message": "Waiting for the operator to observe generation 1"}
    assert health(kind, resource(kind, dict(build(), observedGeneration=3), spec, generation=2)) == settled


@pytest.mark.parametrize("status", [_run_succeeded(), _run_failed("the training Job failed"), _run_rejected()])
def test_a_finished_trainingrun_does_not_wait_for_a_generation(status):
    """The operator never reconciles a Succeeded or Failed run again (controllers/trainingrun.py:
    TERMINAL): a run it finished before it wrote observedGeneration on every path (a run
    rejected for its parameters had none) would otherwise stay Progressing for good. (Its spec
    is immutable, so its generation stays 1.)"""
    want = health("TrainingRun", resource("TrainingRun", status))
    assert want["status"] in ("Healthy", "Degraded"), want
    assert health("TrainingRun", resource("TrainingRun", status | {"observedGeneration": None})) == want
    assert health("TrainingRun", resource("TrainingRun", status, generation=2)) == want


STALLED = ("Stalled", True, "StoreForbidden", "the artifact store answers 403 Forbidden: fix its credentials")
RECONCILING = ("Reconciling", True, "Progressing", "applying generation 1")


@pytest.mark.parametrize("kind", KINDS)
def test_stalled_is_degraded_with_its_message(kind):
    build, spec = SETTLED[kind]
    st = build()
    st["conditions"] = conds(STALLED, base=st["conditions"])
    assert health(kind, resource(kind, st, spec)) == {"status": "Degraded", "message": STALLED[3]}
    st["conditions"] = conds(STALLED[:3] + ("",), base=st["conditions"])
    assert health(kind, resource(kind, st, spec)) == {"status": "Degraded", "message": "StoreForbidden"}
    st["conditions"] = conds(("Stalled", False, "Reconciled", ""), base=st["conditions"])
    assert health(kind, resource(kind, st, spec)) == health(kind, resource(kind, build(), spec))


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "Dataset"])
def test_reconciling_is_progressing_with_its_message(kind):
    build, spec = SETTLED[kind]
    st = build()
    st["conditions"] = conds(RECONCILING, base=st["conditions"])
    assert health(kind, resource(kind, st, spec)) == {"status": "Progressing", "message": RECONCILING[3]}
    st["conditions"] = conds(STALLED, base=st["conditions"])  # stalled wins
    assert health(kind, resource(kind, st, spec))["status"] == "Degraded"
    st["conditions"] = conds(("Stalled", False, "Reconciled", ""), ("Reconciling", False, "Reconciled", ""),
                             base=st["conditions"])
    assert health(kind, resource(kind, st, spec)) == health(kind, resource(kind, build(), spec))


def _ds_reconciling_refresh():
    st = started(FIRST)
    st["conditions"] = conds(RECONCILING, base=st["conditions"])
    return st


def _ds_reconciling():
    return {"observedGeneration": 1, "conditions": conds(RECONCILING)}


def test_a_reconciling_dataset_with_a_valid_version_stays_healthy():
    """A refresh snapshot must not flap the Dataset to Progressing (see its script): Reconciling
    counts only while no version is Ready, like the Progressing condition."""
    st = _ds_reconciling_refresh()
    assert health("Dataset", resource("Dataset", st)) == health("Dataset", resource("Dataset", started(FIRST)))
    assert health("Dataset", resource("Dataset", st))["status"] == "Healthy"
    assert health("Dataset", resource("Dataset", _ds_reconciling())) == {"status": "Progressing",
                                                                         "message": RECONCILING[3]}
    st = snapshot({}, bad("b"), "g1")  # no valid version: Degraded, unless a new snapshot is under way
    assert health("Dataset", resource("Dataset", st))["status"] == "Degraded"
    st["conditions"] = conds(RECONCILING, base=st["conditions"])
    assert health("Dataset", resource("Dataset", st)) == {"status": "Progressing", "message": RECONCILING[3]}


# ------------------------------------------------------------------------------ Argo CD's own layout
# Each <Kind>/ holds, as argo-cd's resource_customizations/<group>/<Kind>/ do, health.lua, health_test.yaml
# (tests: - healthStatus: {status, message}, inputPath: testdata/<case>.yaml) and testdata/. The testdata
# are the cases above, written by `PYTHONPATH=operator python -m tests.unit.test_argocd_health`; the
# expected statuses and messages in health_test.yaml are written by hand (that command prints a draft
# for a new case, to be checked) and compared exactly, as argo-cd's util/lua/health_test.go does.

#: set by now() when the fixtures are built: one fixed value in testdata (no script reads them)
CLOCK_FIELDS = ("lastTransitionTime", "createdAt", "lastSnapshotTime")


def _testdata_form(v: Any) -> Any:
    """JSON as the API server stores it: null fields absent, clock fields fixed."""
    if isinstance(v, dict):
        return {k: (T0 if k in CLOCK_FIELDS else _testdata_form(x)) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_testdata_form(x) for x in v]
    return v


def argocd_cases() -> dict[str, dict[str, dict[str, Any]]]:
    """kind -> case name -> the resource: every case of this file that a testdata file can hold."""
    cases: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}

    def add(kind: str, name: str, obj: dict[str, Any]) -> None:
        assert name not in cases[kind], (kind, name)
        cases[kind][name] = _testdata_form(obj)

    for name, (status, *_) in zip(TRAININGRUN_IDS, TRAININGRUN_CASES, strict=True):
        add("TrainingRun", name, resource("TrainingRun", status))
    add("TrainingRun", "degraded_invalidInput", resource("TrainingRun", _run_rejected()))
    add("TrainingRun", "degraded_invalidInputUnobserved",
        resource("TrainingRun", _run_rejected() | {"observedGeneration": None}))
    for name, (status, aliases, *_) in zip(MODELVERSION_IDS, MODELVERSION_CASES, strict=True):
        add("ModelVersion", name, resource("ModelVersion", status, dict(MV_SPEC, aliases=aliases)))
    for name, (status, *_) in zip(INFERENCESERVICE_IDS, INFERENCESERVICE_CASES, strict=True):
        add("InferenceService", name, resource("InferenceService", status, ISVC_SPEC))
    for name, (status, spec, *_) in zip(DRIFTMONITOR_IDS, DRIFTMONITOR_CASES, strict=True):
        add("DriftMonitor", name, resource("DriftMonitor", status, spec))
    add("DriftMonitor", "healthy_noDriftAfterRetraining", resource("DriftMonitor", _dm_back_to_no_drift(), DM_SPEC))
    for name, (status, *_) in zip(DATASET_IDS, DATASET_CASES, strict=True):
        add("Dataset", name, resource("Dataset", status))
    add("Dataset", "healthy_reconcilingRefresh", resource("Dataset", _ds_reconciling_refresh()))
    add("Dataset", "progressing_reconciling", resource("Dataset", _ds_reconciling()))
    for kind in KINDS:
        build, spec = SETTLED[kind]
        add(kind, "progressing_unobservedGeneration", resource(kind, build(), spec, generation=2))
        st = build()
        del st["observedGeneration"]
        add(kind, "progressing_noObservedGeneration", resource(kind, st, spec))
        st = build()
        st["conditions"] = conds(STALLED, base=st["conditions"])
        add(kind, "degraded_stalled", resource(kind, st, spec))
        if kind != "Dataset":
            st = build()
            st["conditions"] = conds(RECONCILING, base=st["conditions"])
            add(kind, "progressing_reconciling", resource(kind, st, spec))
    return cases


def load_testdata(path: Path) -> dict[str, Any]:
    """As argo-cd's getObj: YAML to JSON (sigs.k8s.io/yaml), then an unstructured object."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text())))


def health_tests(kind: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load((CUSTOM / kind / "health_test.yaml").read_text())
    assert set(doc) == {"tests"}, doc.keys()
    for t in doc["tests"]:
        assert set(t) == {"healthStatus", "inputPath"} and set(t["healthStatus"]) <= {"status", "message"}, t
    return doc["tests"]


def _argocd_yaml_cases() -> list[Any]:
    return [pytest.param(kind, t, id=f"{kind}/{t['inputPath']}") for kind in KINDS if (CUSTOM / kind).is_dir()
            and (CUSTOM / kind / "health_test.yaml").is_file() for t in health_tests(kind)]


@pytest.mark.parametrize("kind, test", _argocd_yaml_cases())
def test_health_test_yaml(kind, test):
    """argo-cd util/lua/health_test.go TestLuaHealthScript, for a script from argocd-cm: the script
    found by the object's group and kind, run with that kind's useOpenLibs (built-in scripts get
    open libraries there; ours come from argocd-cm and do not), the whole HealthStatus equal."""
    obj = load_testdata(CUSTOM / kind / test["inputPath"])
    assert (obj["apiVersion"].split("/")[0], obj["kind"]) == (GROUP, kind)
    script, open_libs = configured(obj["kind"])
    got = execute_health(script, obj, open_libs)
    want = test["healthStatus"]
    assert (got.get("status", ""), got.get("message", "")) == (want.get("status", ""), want.get("message", ""))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_laid_out_as_in_argocd(kind):
    d = CUSTOM / kind
    assert sorted(p.name for p in d.iterdir()) == ["health.lua", "health_test.yaml", "testdata"]
    listed = [t["inputPath"] for t in health_tests(kind)]
    assert len(listed) == len(set(listed)), "a case listed twice"
    assert sorted(listed) == sorted(f"testdata/{p.name}" for p in (d / "testdata").iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_the_testdata_are_valid_objects_of_their_kind(kind):
    """Spec and status of every testdata file validate against the operator's API models."""
    models = {k.kind: k for k in API_KINDS}[kind]
    for p in sorted((CUSTOM / kind / "testdata").glob("*.yaml")):
        obj = load_testdata(p)
        models.spec.model_validate(obj["spec"])
        if "status" in obj:
            models.status.model_validate(obj["status"])


@pytest.mark.parametrize("kind", KINDS)
def test_the_testdata_are_the_cases_of_this_file(kind):
    """So the testdata follow the operator: they are this file's statuses, built by its own code."""
    want = argocd_cases()[kind]
    have = {p.stem: load_testdata(p) for p in (CUSTOM / kind / "testdata").glob("*.yaml")}
    hint = "run: PYTHONPATH=operator python -m tests.unit.test_argocd_health"
    assert sorted(have) == sorted(want), hint
    for name, obj in want.items():
        assert have[name] == json.loads(json.dumps(obj)), f"testdata/{name}.yaml: {hint}"


def write_testdata() -> None:
    """Write every kind's testdata/ from argocd_cases(); print a draft health_test.yaml entry (the
    script's current answer, to be checked before it goes in) for each case not listed yet."""
    for kind, cases in argocd_cases().items():
        d = CUSTOM / kind / "testdata"
        d.mkdir(exist_ok=True)
        for p in d.glob("*.yaml"):
            if p.stem not in cases:
                p.unlink()
        for name, obj in cases.items():
            (d / f"{name}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False, width=110, allow_unicode=True))
        listed = ({t["inputPath"] for t in health_tests(kind)} if (CUSTOM / kind / "health_test.yaml").is_file()
                  else set())
        script, open_libs = configured(kind)
        draft = [{"healthStatus": execute_health(script, obj, open_libs), "inputPath": f"testdata/{name}.yaml"}
                 for name, obj in cases.items() if f"testdata/{name}.yaml" not in listed]
        if draft:
            print(f"# {kind}/health_test.yaml: not listed yet; CHECK these drafts before adding them")
            print(yaml.safe_dump(draft, sort_keys=False, width=110, allow_unicode=True))


if __name__ == "__main__":
    write_testdata()

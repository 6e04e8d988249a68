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
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_operator.api.conditions import set_condition
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


def resource(kind: str, status: dict[str, Any] | None, spec: dict[str, Any] | None = None,
             generation: int = 1) -> dict[str, Any]:
    obj = {"apiVersion": f"{GROUP}/v1alpha1", "kind": kind,
           "metadata": {"name": "propensity", "namespace": "retail", "generation": generation},
           "spec": spec or {}}
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


# argo-cd util/lua/lua_test.go TestGetResourceHealthWithOpenLibs: the same script, both ways
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
    ('return {status = "Fine", message = "ok"}', {"status": "Unknown", "message": "Lua returned an invalid health status"}),
    ('return {message = "ok"}', {"status": "Unknown", "message": "Lua returned an invalid health status"}),
    ('return "x", {status = "Degraded", message = "last value"}', {"status": "Degraded", "message": "last value"}),
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


@pytest.mark.parametrize("status, want, words", [
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
])
def test_trainingrun_health(status, want, words):
    hs = health("TrainingRun", resource("TrainingRun", status))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


def test_trainingrun_rejected_parameters_are_degraded():
    msg = "LogisticRegression has no parameter(s) max_iterz; known: C, max_iter"
    st = {"phase": "Failed", "message": msg, "completionTime": T0, "observedGeneration": 1,
          "conditions": conds(("Ready", False, "InvalidInput", msg), ("Succeeded", False, "InvalidInput", msg))}
    assert health("TrainingRun", resource("TrainingRun", st)) == {"status": "Degraded", "message": msg}


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


@pytest.mark.parametrize("status, aliases, want, words", [
    (None, [], "Progressing", ["Waiting for the operator to observe generation 1"]),
    (_mv_verifying(), [], "Progressing", ["checking the artifact's sha256"]),
    (_mv_verified(), ["production"], "Healthy", ["model.onnx matches sha256", "holds production"]),
    (_mv_verified(), [], "Healthy", ["model.onnx matches sha256"]),
    (_mv_invalid(), ["production"], "Degraded", ["sha256 of model.onnx is"]),
])
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


@pytest.mark.parametrize("status, want, words", [
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
])
def test_inferenceservice_health(status, want, words):
    hs = health("InferenceService", resource("InferenceService", status, ISVC_SPEC))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


# ------------------------------------------------------------------------------ DriftMonitor

DM_SPEC = {"inferenceService": "propensity", "interval": "3s", "window": {"duration": "15s", "minSamples": 500},
           "accuracy": {"metric": "accuracy", "threshold": 0.76, "minSamples": 300},
           "retrain": {"enabled": True, "cooldown": "2m", "refreshDataset": True,
                       "template": {"modelName": "propensity", "dataset": {"name": "retail-sessions"}}}}
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


@pytest.mark.parametrize("status, spec, want, words", [
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
])
def test_driftmonitor_health(status, spec, want, words):
    hs = health("DriftMonitor", resource("DriftMonitor", status, spec))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


def test_driftmonitor_back_to_no_drift_is_healthy_again():
    st = _dm_drifted(dict(RETRAIN, phase="Succeeded", trainingRun="propensity-retrain-1", finishedAt=T2))
    st["lastEvaluationTime"] = T3
    st["conditions"] = conds(("Drifted", False, "NoDrift", "1 of 9 features drifted (share 0.11 < 0.3)"),
                             base=st["conditions"])
    assert health("DriftMonitor", resource("DriftMonitor", st, DM_SPEC))["status"] == "Healthy"


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


@pytest.mark.parametrize("status, want, words", [
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
])
def test_dataset_health(status, want, words):
    hs = health("Dataset", resource("Dataset", status))
    assert hs["status"] == want, hs
    for w in words:
        assert w in hs["message"], hs


# ------------------------------------------------------------------------------ every kind: generation, kstatus

#: per kind, a settled status the operator writes at generation 1, and the spec
SETTLED = {
    "Dataset": (lambda: copy.deepcopy(FIRST), {}),
    "TrainingRun": (_run_running, {}),  # not finished: a finished run is a record (below)
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


@pytest.mark.parametrize("status", [_run_succeeded(), _run_failed("the training Job failed"),
                                    _run_failed("the training Job failed") | {"observedGeneration": None}])
def test_a_finished_trainingrun_does_not_wait_for_a_generation(status):
    """The operator never reconciles a Succeeded or Failed run again (controllers/trainingrun.py:
    TERMINAL), so an edit of its spec would otherwise leave it Progressing for good."""
    at_1 = health("TrainingRun", resource("TrainingRun", status))
    assert at_1["status"] in ("Healthy", "Degraded"), at_1
    assert health("TrainingRun", resource("TrainingRun", status, generation=2)) == at_1


STALLED = ("Stalled", True, "SourceUnreachable", "the source s3://retail/sessions.parquet answers 403 Forbidden")
RECONCILING = ("Reconciling", True, "Progressing", "applying generation 1")


@pytest.mark.parametrize("kind", KINDS)
def test_stalled_is_degraded_with_its_message(kind):
    build, spec = SETTLED[kind]
    st = build()
    st["conditions"] = conds(STALLED, base=st["conditions"])
    assert health(kind, resource(kind, st, spec)) == {"status": "Degraded", "message": STALLED[3]}
    st["conditions"] = conds(STALLED[:3] + ("",), base=st["conditions"])
    assert health(kind, resource(kind, st, spec)) == {"status": "Degraded", "message": "SourceUnreachable"}
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


def test_a_reconciling_dataset_with_a_valid_version_stays_healthy():
    """A refresh snapshot must not flap the Dataset to Progressing (see its script): Reconciling
    counts only while no version is Ready, like the Progressing condition."""
    st = started(FIRST)
    st["conditions"] = conds(RECONCILING, base=st["conditions"])
    assert health("Dataset", resource("Dataset", st)) == health("Dataset", resource("Dataset", started(FIRST)))
    assert health("Dataset", resource("Dataset", st))["status"] == "Healthy"
    first = {"observedGeneration": 1, "conditions": conds(RECONCILING)}
    assert health("Dataset", resource("Dataset", first)) == {"status": "Progressing", "message": RECONCILING[3]}
    st = snapshot({}, bad("b"), "g1")  # no valid version: Degraded, unless a new snapshot is under way
    assert health("Dataset", resource("Dataset", st))["status"] == "Degraded"
    st["conditions"] = conds(RECONCILING, base=st["conditions"])
    assert health("Dataset", resource("Dataset", st)) == {"status": "Progressing", "message": RECONCILING[3]}

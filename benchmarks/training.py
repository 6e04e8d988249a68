"""Benchmark: what a TrainingRun costs on top of the same fit in a plain Python process, and how
fast ONNX Runtime predicts against scikit-learn.

    .venv/bin/python -m benchmarks.training [--rows 20000] [--repeat 3] [--skip-cluster] [--skip-latency]

Part 1, a TrainingRun on the embedded local cluster against the same fit without it. One
cluster (`bench-training`), the CRDs from crds/, the operator as a local process (as the
`operator` fixture of tests/conftest.py runs it), a namespace and the retail Dataset
(examples/retail/dataset.yaml, generator rows --rows). The time from `kubectl apply` of the
Dataset to its Ready condition is reported on its own. Then, per estimator and repetition,
interleaved so that a drift of the (shared) machine hits every variant alike:

* TrainingRun: `kubectl apply` of a TrainingRun until its ModelVersion is Ready (the operator
  starts the trainer Job, registers the ModelVersion, a second Job verifies the artifact's
  sha256). The TrainingRun's Succeeded time and the trainer's own `seconds` (from the Job's
  termination message) are recorded too, so the overhead can be split.
* plain subprocess: the Job's own command, `python -m mlops_operator.training --spec ...
  --store file://...`, as a plain process on the same spec document (read from the run's
  ConfigMap) and the same dataset version (its bytes copied out of the cluster's store into a
  local store; the sha256 must match).
* in-process: `mlops_operator.training.job.train(doc, store_uri)` called in this process, after
  one untimed warm-up call per estimator (imports and lazy converter registration paid).
* bare scikit-learn: `pipeline.build(...)` of the same estimator, fit on the same train split
  and `predict_proba` on the same test split: no ONNX export, parity check, metrics or store.

Everything runs single-threaded as in the Job (OMP_NUM_THREADS=1, set below before numpy loads).
The cluster is torn down (`cluster.down(..., purge=True)`) at the end, also on failure.

Part 2, ONNX Runtime against scikit-learn predict latency, in this process, after the cluster
is gone: every allowlisted classifier and a few regressors, fit on generated retail rows,
exported with `convert.export` (the trainer's exporter), then for batches of 1, 32 and 1000
rows `sess.run` (ONNX Runtime, the trainer's session options: 1 intra-op thread) and
`predict_proba` / `predict` (scikit-learn, on the prepared DataFrame) alternate call by call,
each input prepared beforehand in its own form (a feed dict of [N, 1] tensors for ONNX, a
DataFrame for scikit-learn). Median and p99 per call. Results go to results/training.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the trainer Job sets it (tuning.parallelism 1)

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import warnings  # noqa: E402

import numpy as np  # noqa: E402

# scikit-learn 1.9 deprecates SVC(probability=True), which estimators.make sets for SVC: said
# once in README.md, not once per fit here
warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "training.json"
NAME = "bench-training"
NS = "bench"
DATASET = "retail"

#: Part 1: estimator -> (short name for object names, params of the TrainingRun)
TRAIN_ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "LogisticRegression": ("lr", {"max_iter": 1000}),
    "RandomForestClassifier": ("rf", {"n_estimators": 50}),
    "HistGradientBoostingClassifier": ("hgb", {}),
}

#: Part 2: params per estimator (default params otherwise); regressors predict cart_value
LATENCY_PARAMS: dict[str, dict[str, Any]] = {
    "LogisticRegression": {"max_iter": 1000}, "RandomForestClassifier": {"n_estimators": 50},
    "ExtraTreesClassifier": {"n_estimators": 50}, "RandomForestRegressor": {"n_estimators": 50},
}
LATENCY_REGRESSORS = ["Ridge", "RandomForestRegressor", "HistGradientBoostingRegressor", "KNeighborsRegressor"]
BATCHES = (1, 32, 1000)


def _quiet(_msg: str) -> None:
    pass


def _median(v: list[float]) -> float | None:
    return statistics.median(v) if v else None


# --------------------------------------------------------------------------------------------
# part 1: the cluster side

class Kube:
    """kubectl for applies (what a user runs), the Python client for polling."""

    def __init__(self, cfg) -> None:
        from kubernetes import client, config

        from mlops_operator.localcluster import binaries

        self.cfg = cfg
        self.kubectl_bin = str(binaries.binary_path("kubectl"))
        api = config.new_client_from_config(config_file=str(cfg.kubeconfig_path))
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        p = subprocess.run([self.kubectl_bin, "--kubeconfig", str(self.cfg.kubeconfig_path), *args],
                           input=input, text=True, capture_output=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object("mlops.dev", "v1alpha1", NS, plural, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise


def cond(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_operator(cfg, log: Path) -> tuple[subprocess.Popen, float]:
    from mlops_operator.localcluster.forward import free_port

    port = free_port()
    env = dict(os.environ, KUBECONFIG=str(cfg.kubeconfig_path), MLOPS_RUNTIME_IMAGE="mlops-runtime:test")
    env.pop("OMP_NUM_THREADS", None)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_operator.cli.main", "operator", "run", "--standalone",
         "--liveness", f"http://127.0.0.1:{port}/healthz", "--metrics-port", "0"],
        env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT, cwd=ROOT)

    def live():
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait(live, 60, "the operator's liveness endpoint", 0.1)
    return proc, time.perf_counter() - t


def stop_operator(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def dataset_manifest(rows: int) -> str:
    import yaml

    ds = yaml.safe_load((ROOT / "examples/retail/dataset.yaml").read_text())
    ds["metadata"]["name"] = DATASET
    ds["spec"]["source"]["generator"]["rows"] = rows
    ds["spec"].pop("refreshInterval", None)
    return yaml.safe_dump(ds)


def run_manifest(name: str, model: str, estimator: str, params: dict[str, Any]) -> str:
    return json.dumps({
        "apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name, "namespace": NS},
        "spec": {"modelName": model, "dataset": {"name": DATASET},
                 "estimator": {"type": estimator, **({"params": params} if params else {})}}})


def store_root(k: Kube) -> Path:
    """The host directory behind the namespace's store PVC (local-path PersistentVolume)."""
    from mlops_operator.settings import Settings

    pvc = k.core.read_namespaced_persistent_volume_claim(Settings.from_env().store_claim, NS)
    pv = k.core.read_persistent_volume(pvc.spec.volume_name)
    return Path(pv.spec.host_path.path)


def copy_dataset_version(k: Kube, ds_status: dict[str, Any], local_store: Path) -> dict[str, Any]:
    """The Dataset's latest valid version put into a local store; its sha256 must not change."""
    from mlops_operator.store.store import FileStore

    entry = ds_status["latestValid"]
    mount = "/store"  # Settings.store_mount, as the URIs in status say
    rel = urllib.request.url2pathname(entry["uri"].split("://", 1)[1]).rstrip("/")
    src = store_root(k) / Path(rel).relative_to(mount)
    extras = {f: src / f for f in ("profile.json",) if (src / f).exists()}
    digest, uri = FileStore(local_store).put_version("datasets", DATASET, src / "data.parquet", extras)
    if digest != entry["digest"]:
        raise RuntimeError(f"copied dataset digest {digest} != the cluster's {entry['digest']}")
    return {"digest": digest, "uri": uri}


def spec_doc(k: Kube, run: str) -> dict[str, Any]:
    """The trainer's spec document exactly as the operator wrote it for the Job."""
    from mlops_operator.resources.names import child_name

    obj = k.custom.get_namespaced_custom_object("mlops.dev", "v1alpha1", NS, "trainingruns", run)
    cm = k.core.read_namespaced_config_map(child_name(obj, "train-spec"), NS)
    return json.loads(cm.data["spec.json"])


def trainer_seconds(k: Kube, run: str) -> float | None:
    """The trainer's own `seconds` (inside the pod), from the Job's termination message."""
    pods = k.core.list_namespaced_pod(NS, label_selector=f"mlops.dev/training-run={run}").items
    for p in pods:
        for cs in p.status.container_statuses or []:
            term = cs.state.terminated if cs.state else None
            if term is not None and term.message:
                try:
                    return json.loads(term.message).get("seconds")
                except ValueError:
                    return None
    return None


def cluster_run(k: Kube, name: str, model: str, estimator: str, params: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    k.kubectl("apply", "-f", "-", input=run_manifest(name, model, estimator, params))
    applied = time.perf_counter() - t0
    marks: dict[str, float] = {}

    def done():
        tr = k.get("trainingruns", name)
        phase = ((tr or {}).get("status") or {}).get("phase")
        if phase == "Running" and "running" not in marks:
            marks["running"] = time.perf_counter() - t0
        if phase == "Failed":
            raise RuntimeError(f"TrainingRun {name} failed: {tr['status'].get('message')}")
        return tr if phase == "Succeeded" else None

    tr = wait(done, 900, f"TrainingRun {name} Succeeded")
    succeeded = time.perf_counter() - t0
    mv = tr["status"]["modelVersion"]
    wait(lambda: cond(k.get("modelversions", mv), "Ready").get("status") == "True", 300, f"ModelVersion {mv} Ready")
    ready = time.perf_counter() - t0
    return {"run": name, "model_version": mv, "apply_s": applied, "running_s": marks.get("running"),
            "succeeded_s": succeeded, "mv_ready_s": ready, "trainer_seconds_in_pod": trainer_seconds(k, name),
            "metrics": tr["status"].get("metrics"), "artifact_digest": tr["status"].get("artifactDigest")}


# --------------------------------------------------------------------------------------------
# part 1: the same fit without the cluster

def subprocess_run(doc: dict[str, Any], store_uri: str, work: Path) -> dict[str, Any]:
    spec = work / "spec.json"
    term = work / "termination-log"
    spec.write_text(json.dumps(doc))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", JOBLIB_TEMP_FOLDER=str(work))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "mlops_operator.training", "--spec", str(spec), "--store", store_uri,
                        "--termination-log", str(term)], env=env, capture_output=True, text=True, cwd=work)
    took = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"trainer subprocess failed ({p.returncode}): {p.stderr.strip()[-1500:]}")
    out = json.loads(term.read_text())
    return {"s": took, "trainer_seconds": out.get("seconds"), "digest": out.get("digest")}


def bare_inputs(doc: dict[str, Any], store_uri: str) -> dict[str, Any]:
    """Train/test frames exactly as the trainer splits them (not timed)."""
    import pyarrow.parquet as pq

    from mlops_operator.store.store import open_store
    from mlops_operator.training import job, pipeline
    from mlops_operator.training.split import split_rows

    spec, ds = doc["spec"], doc["dataset"]
    schema, target = ds["schema"], spec.get("target") or ds["label"]
    df = pq.read_table(open_store(store_uri).local_path(ds["uri"], "data.parquet", ds["digest"])).to_pandas()
    df = df[df[target].notna()].reset_index(drop=True)
    feats = pipeline.feature_columns(schema, target, spec.get("features"), spec.get("excludeFeatures"))
    y = job._labels(df[target], "classification")
    x = pipeline.prepare_frame(df, feats)
    sp_ = spec.get("split") or {}
    time_col = sp_.get("timeColumn") or next((c["name"] for c in schema if c.get("role") == "timestamp"), None)
    sp = split_rows(df, y, float(sp_.get("testFraction", 0.2)), float(sp_.get("validationFraction", 0.0)),
                    int(sp_.get("seed", 0)), time_col, bool(sp_.get("stratify", True)))
    return {"feats": feats, "x_train": x.iloc[sp.train], "y_train": y.iloc[sp.train], "x_test": x.iloc[sp.test],
            "seed": int(sp_.get("seed", 0))}


def bare_fit(inp: dict[str, Any], estimator: str, params: dict[str, Any]) -> float:
    from mlops_operator.training import estimators, pipeline

    t = time.perf_counter()
    model = pipeline.build(inp["feats"], estimators.make(estimator, params, inp["seed"]))
    model.fit(inp["x_train"], inp["y_train"])
    model.predict_proba(inp["x_test"])
    return time.perf_counter() - t


def measure_training(rows: int, repeat: int, work: Path, names: list[str]) -> dict[str, Any]:
    from mlops_operator.localcluster import binaries, cluster
    from mlops_operator.training import job

    unknown = sorted(set(names) - set(TRAIN_ESTIMATORS))
    if unknown:
        raise SystemExit(f"unknown estimator(s) {unknown}; choose from {', '.join(TRAIN_ESTIMATORS)}")
    chosen = {e: v for e, v in TRAIN_ESTIMATORS.items() if e in names}
    res: dict[str, Any] = {"rows": rows, "repeat": repeat, "estimators": {e: p for e, (_, p) in chosen.items()}}
    binaries.ensure_binaries()
    op = None
    try:
        t = time.perf_counter()
        cfg = cluster.up(NAME, timeout=300, say=_quiet)
        res["cluster_up_s"] = time.perf_counter() - t
        k = Kube(cfg)
        k.kubectl("apply", "-k", str(ROOT / "crds"))
        for crd in (ROOT / "crds").glob("*.mlops.dev.yaml"):
            k.kubectl("wait", "--for=condition=Established", f"crd/{crd.stem}", "--timeout=60s")
        op, res["operator_start_s"] = start_operator(cfg, work / "operator.log")
        k.kubectl("create", "namespace", NS)
        print(f"cluster up in {res['cluster_up_s']:.1f} s, operator live in {res['operator_start_s']:.1f} s",
              file=sys.stderr)

        t = time.perf_counter()
        k.kubectl("apply", "-n", NS, "-f", "-", input=dataset_manifest(rows))
        ds = wait(lambda: (lambda d: d if cond(d, "Ready").get("status") == "True" else None)(
            k.get("datasets", DATASET)), 600, f"Dataset {DATASET} Ready")
        res["dataset_ready_s"] = time.perf_counter() - t
        print(f"Dataset Ready in {res['dataset_ready_s']:.2f} s", file=sys.stderr)

        local_store = work / "store"
        store_uri = local_store.as_uri()
        local_version = copy_dataset_version(k, ds["status"], local_store)
        res["dataset_digest"] = local_version["digest"]

        raw: dict[str, dict[str, list]] = {e: {"cluster": [], "subprocess": [], "in_process": [], "bare": []}
                                           for e in chosen}
        docs: dict[str, dict[str, Any]] = {}
        bare: dict[str, dict[str, Any]] = {}
        res["warmup_in_process_s"] = {}
        for i in range(repeat):
            for est, (short, params) in chosen.items():
                name = f"{short}-{i + 1}"
                c = cluster_run(k, name, f"bench-{short}", est, params)
                raw[est]["cluster"].append(c)
                if est not in docs:  # the operator's own document, pointed at the local copy of the version
                    doc = spec_doc(k, name)
                    doc["dataset"].update(local_version)
                    doc["name"], doc["champion"] = f"local-{short}", None
                    docs[est] = doc
                    bare[est] = bare_inputs(doc, store_uri)
                    t = time.perf_counter()
                    job.train(docs[est], store_uri)  # warm-up: imports, converter registration
                    res["warmup_in_process_s"][est] = time.perf_counter() - t
                s = subprocess_run(docs[est], store_uri, work)
                raw[est]["subprocess"].append(s)
                t = time.perf_counter()
                out = job.train(docs[est], store_uri)
                raw[est]["in_process"].append({"s": time.perf_counter() - t, "trainer_seconds": out["seconds"],
                                               "fit_seconds": out["fitSeconds"], "digest": out["digest"]})
                raw[est]["bare"].append({"s": bare_fit(bare[est], est, params)})
                print(f"  {est} run {i + 1}: cluster {c['mv_ready_s']:.2f} s (Succeeded {c['succeeded_s']:.2f}, "
                      f"trainer in pod {c['trainer_seconds_in_pod']}), subprocess {s['s']:.2f} s, in-process "
                      f"{raw[est]['in_process'][-1]['s']:.2f} s, bare fit+predict {raw[est]['bare'][-1]['s']:.2f} s",
                      file=sys.stderr)
        res["raw"] = raw
        res["summary"] = {est: summarise_training(r) for est, r in raw.items()}
    finally:
        stop_operator(op)
        t = time.perf_counter()
        cluster.down(NAME, purge=True, say=_quiet)
        res["cluster_down_s"] = time.perf_counter() - t
    return res


def summarise_training(r: dict[str, list]) -> dict[str, Any]:
    med = {
        "cluster_mv_ready_s": _median([x["mv_ready_s"] for x in r["cluster"]]),
        "cluster_succeeded_s": _median([x["succeeded_s"] for x in r["cluster"]]),
        "cluster_trainer_in_pod_s": _median([x["trainer_seconds_in_pod"] for x in r["cluster"]
                                             if x["trainer_seconds_in_pod"] is not None]),
        "subprocess_s": _median([x["s"] for x in r["subprocess"]]),
        "in_process_s": _median([x["s"] for x in r["in_process"]]),
        "in_process_fit_s": _median([x["fit_seconds"] for x in r["in_process"]]),
        "bare_s": _median([x["s"] for x in r["bare"]]),
    }
    med["runs"] = {"cluster_mv_ready_s": [round(x["mv_ready_s"], 2) for x in r["cluster"]],
                   "subprocess_s": [round(x["s"], 2) for x in r["subprocess"]],
                   "in_process_s": [round(x["s"], 3) for x in r["in_process"]],
                   "bare_s": [round(x["s"], 3) for x in r["bare"]]}
    med["artifact_digests"] = {v: sorted({str(x.get("artifact_digest") or x.get("digest"))[:12] for x in r[v]})
                               for v in ("cluster", "subprocess", "in_process")}
    med["same_artifact_everywhere"] = len({d for ds in med["artifact_digests"].values() for d in ds}) == 1
    return med


# --------------------------------------------------------------------------------------------
# part 2: ONNX Runtime against scikit-learn predict latency

def _percentile(ns: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(ns, dtype=np.float64), q)) / 1e3  # microseconds


def measure_latency(train_rows: int, budget_s: float, min_reps: int, max_reps: int) -> dict[str, Any]:
    from mlops_operator.data import retail
    from mlops_operator.training import convert, estimators, pipeline

    pool_rows = 4000
    df = retail.generate(train_rows + pool_rows, seed=11).to_pandas()
    models = sorted(estimators.CLASSIFIERS) + LATENCY_REGRESSORS
    out: dict[str, Any] = {"train_rows": train_rows, "budget_s_per_cell": budget_s, "min_reps": min_reps,
                           "max_reps": max_reps, "models": {}}
    for name in models:
        classifier = estimators.task_of(name) == "classification"
        feats = pipeline.feature_columns(retail.RETAIL_SCHEMA, retail.LABEL)
        y = df[retail.LABEL].astype(int) if classifier else df["cart_value"].astype(float)
        if not classifier:
            feats = [c for c in feats if c["name"] != "cart_value"]
        x = pipeline.prepare_frame(df, feats)
        params = LATENCY_PARAMS.get(name, {})
        model = pipeline.build(feats, estimators.make(name, params, seed=0))
        t = time.perf_counter()
        model.fit(x.iloc[:train_rows], y.iloc[:train_rows])
        fit_s = time.perf_counter() - t
        onnx_bytes = convert.export(model, feats, classifier)
        pool = x.iloc[train_rows:].reset_index(drop=True)
        parity = convert.check_parity(model, onnx_bytes, pool, feats, classifier, 1e-4)
        sess = convert.session(onnx_bytes)
        sk = model.predict_proba if classifier else model.predict
        entry: dict[str, Any] = {"task": "classification" if classifier else "regression", "params": params,
                                 "fit_s": round(fit_s, 2), "onnx_bytes": len(onnx_bytes),
                                 "parity": {"label_mismatches": parity.label_mismatches,
                                            "max_abs_diff": parity.max_abs_diff}, "batches": {}}
        for b in BATCHES:
            # distinct inputs, prepared up front in each runtime's own form
            starts = [(j * b) % (pool_rows - b + 1) for j in range(16)] if b < pool_rows else [0]
            frames = [pool.iloc[s:s + b] for s in starts]
            feeds = [convert.feeds(f, feats) for f in frames]
            sk(frames[0])
            sess.run(None, feeds[0])  # warm both
            sk_ns: list[int] = []
            ort_ns: list[int] = []
            t_end = time.perf_counter() + budget_s
            j = 0
            while j < max_reps and (j < min_reps or time.perf_counter() < t_end):
                f, fd = frames[j % len(frames)], feeds[j % len(feeds)]
                t = time.perf_counter_ns()
                sk(f)
                sk_ns.append(time.perf_counter_ns() - t)
                t = time.perf_counter_ns()
                sess.run(None, fd)
                ort_ns.append(time.perf_counter_ns() - t)
                j += 1
            entry["batches"][str(b)] = {
                "reps": j,
                "sklearn_us": {"median": _percentile(sk_ns, 50), "p99": _percentile(sk_ns, 99)},
                "onnx_us": {"median": _percentile(ort_ns, 50), "p99": _percentile(ort_ns, 99)},
            }
        out["models"][name] = entry
        print(f"  {name}: " + ", ".join(
            f"b{b} sklearn {v['sklearn_us']['median']:.0f} us / onnx {v['onnx_us']['median']:.0f} us"
            for b, v in entry["batches"].items()), file=sys.stderr)
    # what building the feed dict from a DataFrame costs (model-independent; serving builds it from tensors)
    feats = pipeline.feature_columns(retail.RETAIL_SCHEMA, retail.LABEL)
    xf = pipeline.prepare_frame(df.iloc[train_rows:], feats)
    out["feeds_from_dataframe_us"] = {}
    for b in BATCHES:
        f = xf.iloc[:b]
        ns = []
        for _ in range(200):
            t = time.perf_counter_ns()
            convert.feeds(f, feats)
            ns.append(time.perf_counter_ns() - t)
        out["feeds_from_dataframe_us"][str(b)] = _percentile(ns, 50)
    return out


# --------------------------------------------------------------------------------------------
# report

def _fmt_us(v: float) -> str:
    return f"{v / 1e3:.2f} ms" if v >= 1000 else f"{v:.0f} µs" if v >= 10 else f"{v:.1f} µs"


def table(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"{m['cpus']} CPUs, Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in res["versions"].items())
             + "; OMP_NUM_THREADS=1, onnxruntime 1 intra-op thread"]
    tr = res.get("training")
    if tr:
        lines.append(f"\nTrainingRun on the local cluster vs the same fit without it: retail dataset, {tr['rows']:,} "
                     f"rows (digest {tr['dataset_digest'][:12]}), {tr['repeat']} runs each, median seconds\n")
        lines.append(f"Dataset `kubectl apply` to Ready: {tr['dataset_ready_s']:.2f} s (cluster up "
                     f"{tr['cluster_up_s']:.1f} s and operator start {tr['operator_start_s']:.1f} s not included)\n")
        lines.append("| estimator | TrainingRun: apply to ModelVersion Ready | apply to TrainingRun Succeeded "
                     "| trainer inside the pod | plain subprocess (same command) | in-process `job.train` "
                     "| its fit alone | bare scikit-learn fit + predict | Ready / subprocess | Ready / in-process "
                     "| Ready / bare | runs: Ready (s) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for est, s in tr["summary"].items():
            lines.append(
                f"| {est} {json.dumps(tr['estimators'][est]) if tr['estimators'][est] else ''} "
                f"| {s['cluster_mv_ready_s']:.2f} | {s['cluster_succeeded_s']:.2f} "
                f"| {s['cluster_trainer_in_pod_s']:.2f} | {s['subprocess_s']:.2f} | {s['in_process_s']:.2f} "
                f"| {s['in_process_fit_s']:.2f} "
                f"| {s['bare_s']:.3f} | {s['cluster_mv_ready_s'] / s['subprocess_s']:.1f}x "
                f"| {s['cluster_mv_ready_s'] / s['in_process_s']:.1f}x | {s['cluster_mv_ready_s'] / s['bare_s']:.1f}x "
                f"| {', '.join(f'{x:.2f}' for x in s['runs']['cluster_mv_ready_s'])} |")
        lines.append("\nmodel bytes (ONNX sha256, cluster / subprocess / in-process): " + "; ".join(
            f"{e} " + ("the same" if s["same_artifact_everywhere"] else " / ".join(
                ",".join(d) for d in s["artifact_digests"].values())) for e, s in tr["summary"].items()))
        lines.append("in-process warm-up call (untimed in the table): "
                     + ", ".join(f"{e} {v:.2f} s" for e, v in tr["warmup_in_process_s"].items()))
    lat = res.get("latency")
    if lat:
        lines.append(f"\nONNX Runtime vs scikit-learn, per call, fit on {lat['train_rows']:,} retail rows; "
                     f"classifiers `predict_proba`, regressors `predict` (scikit-learn, DataFrame in) vs "
                     f"`InferenceSession.run` (ONNX, label + probabilities, feed dict in); calls alternate; "
                     f"reps per cell: at least {lat['min_reps']}, up to {lat['max_reps']} or "
                     f"{lat['budget_s_per_cell']} s\n")
        head = "| estimator | " + " | ".join(
            f"{b} row{'s' if b > 1 else ''}: sklearn median / p99 | ONNX median / p99 | sklearn / ONNX"
            for b in BATCHES) + " |"
        lines.append(head)
        lines.append("|---|" + "---|---|---|" * len(BATCHES))
        for name, e in lat["models"].items():
            cells = []
            for b in BATCHES:
                v = e["batches"][str(b)]
                sk, ox = v["sklearn_us"], v["onnx_us"]
                cells.append(f"{_fmt_us(sk['median'])} / {_fmt_us(sk['p99'])} | {_fmt_us(ox['median'])} / "
                             f"{_fmt_us(ox['p99'])} | {sk['median'] / ox['median']:.1f}x")
            p = f" {json.dumps(e['params'])}" if e["params"] else ""
            lines.append(f"| {name}{p} | " + " | ".join(cells) + " |")
        lines.append("\nbuilding the ONNX feed dict from a DataFrame (`convert.feeds`, not in the ONNX column): "
                     + ", ".join(f"{b} rows {_fmt_us(v)}" for b, v in lat["feeds_from_dataframe_us"].items()))
        bad = [n for n, e in lat["models"].items() if e["parity"]["label_mismatches"]]
        lines.append("parity on the 4,000 pool rows: " + ("every model agrees" if not bad else f"mismatches in {bad}")
                     + " (max |diff| " + ", ".join(f"{n} {e['parity']['max_abs_diff']:.1e}"
                                                   for n, e in lat["models"].items()) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20000, help="rows of the retail Dataset (part 1)")
    ap.add_argument("--repeat", type=int, default=3, help="TrainingRuns per estimator (part 1)")
    ap.add_argument("--latency-train-rows", type=int, default=5000)
    ap.add_argument("--latency-budget", type=float, default=2.0, help="seconds per (model, batch) cell")
    ap.add_argument("--latency-min-reps", type=int, default=200)
    ap.add_argument("--latency-max-reps", type=int, default=5000)
    ap.add_argument("--estimators", default=",".join(TRAIN_ESTIMATORS), help="part 1: comma-separated subset")
    ap.add_argument("--skip-cluster", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--no-save", action="store_true", help="do not write results/training.json")
    a = ap.parse_args(argv)
    import importlib.metadata as md

    res: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "command": "python -m benchmarks.training " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "versions": {p: md.version(p) for p in ("scikit-learn", "onnxruntime", "skl2onnx", "numpy", "pandas")},
    }
    started = time.time()
    if not a.skip_cluster:
        work = Path(tempfile.mkdtemp(prefix="bench-training-"))
        try:
            res["training"] = measure_training(a.rows, a.repeat, work, a.estimators.split(","))
        except BaseException:
            print(f"failed; the operator's log and the local store are kept in {work}", file=sys.stderr)
            raise
        shutil.rmtree(work, ignore_errors=True)
    if not a.skip_latency:
        print("ONNX Runtime vs scikit-learn latency ...", file=sys.stderr)
        res["latency"] = measure_latency(a.latency_train_rows, a.latency_budget, a.latency_min_reps,
                                         a.latency_max_reps)
    res["total_s"] = round(time.time() - started, 1)
    if not a.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

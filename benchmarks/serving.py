"""Benchmark: the model server (mlops_operator.serving) side by side with KServe 0.21's own
Python model server (a custom kserve.Model calling ONNX Runtime), MLServer 1.7.1's scikit-learn
runtime, a bare aiohttp + ONNX Runtime server and a bare aiohttp hello-world, on loopback, in
one run.

    .venv/bin/python -m benchmarks.serving [--duration 8] [--rows 20000] [--batches 1,32]
                                           [--concurrency 1,8,32] [--servers ours,bare,kserve,mlserver,hello]
                                           (also: ours-capture, ours-asyncio, hello-asyncio)

The model: a GradientBoostingClassifier (100 trees, depth 3) in the project's preprocessing
pipeline (median imputation; one-hot categories), trained on `retail.generate(rows)` with all
18 features (12 numeric, 2 boolean, 4 categorical). Ours serves its ONNX export with every
feature on: input validation, per-feature drift histograms, prediction histogram,
Prometheus metrics. MLServer serves the same fitted pipeline from a joblib file that exists only
in this benchmark's temporary directory (our code never loads it), in its best configuration on
this machine: httptools, uvloop<0.22, metrics endpoint off, and `parallel_workers` picked by a
short sweep at batch 1 / 8 connections. The hello-world answers every POST with a fixed JSON
body without reading it: the ceiling of aiohttp on this machine. The bare server is the issue's
"aiohttp + orjson + onnxruntime server without validation or metrics" on the same ONNX file:
one model run per request, nothing checked or counted; what it loses to the hello-world is
the cost of the model and of JSON, which no feature of ours can win back. Ours and the hello-world run
on the same event loop (uvloop when installed; `--no-uvloop` for both with --asyncio-loop).
KServe is what a KServe user runs for a model that has no ready-made runtime: `kserve.ModelServer`
(FastAPI on uvicorn, uvloop, one worker) with a `kserve.Model` subclass whose `predict` takes the
V2 `InferRequest`, feeds each input's `as_numpy()` to ONNX Runtime (same ONNX file, same session
options as the bare server) and answers an `InferResponse` (`KSERVE` below); gRPC and the
per-request log lines (uvicorn's access log, kserve's latency trace) off, as for throughput.

Every server gets the same V2 requests (one tensor per feature; batch 1 and 32 rows of the
test split, with their nulls; request parameter `content_type: pd`, which MLServer needs to
decode several input tensors into the DataFrame the pipeline takes), from `wrk` (one thread,
keep-alive connections) for `--duration` seconds per point after a warm-up. Before loading,
each server's answers are checked against scikit-learn (ours: probabilities within 1e-5;
MLServer: the predicted labels). MLServer answers `predict` only (its default output); ours
answers label and probabilities. KServe's answers are checked like ours (probabilities).
Latency: wrk's p50, p99, p99.9 and maximum (its own histogram, printed by the Lua script's `done`).
Memory is the RSS of the server's whole process tree after the runs.

MLServer lives in its own virtualenv (default ~/.cache/mlops/serving-bench-venv, pinned by
benchmarks/requirements-serving.txt), created on first use; KServe in its own (default
~/.cache/mlops/kserve-bench-venv, benchmarks/requirements-kserve.txt: kserve 0.21 as `make
kserve-venv` has it, plus ONNX Runtime, which that venv lacks). Results: benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import ensure_venv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "serving.json"
REQUIREMENTS = HERE / "requirements-serving.txt"
DEFAULT_VENV = Path(os.environ.get("MLOPS_SERVING_BENCH_VENV",
                                   Path.home() / ".cache" / "mlops" / "serving-bench-venv"))
KSERVE_REQUIREMENTS = HERE / "requirements-kserve.txt"
KSERVE_VENV = Path(os.environ.get("MLOPS_KSERVE_BENCH_VENV", Path.home() / ".cache" / "mlops" / "kserve-bench-venv"))
MODEL = "retail"
VERSION = "1"

# The end of both small servers below: a readiness route and aiohttp's Application on the
# event loop named by the last argument.
_APP = r"""
async def ready(request):
    return web.Response(body=b'{"ready":true}', content_type="application/json")
app = web.Application()
app.router.add_post("/v2/models/retail/infer", infer)
app.router.add_get("/v2/health/ready", ready)
kw = {}
if loop == "uvloop":
    import uvloop
    kw["loop"] = uvloop.new_event_loop()
web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, **kw)
"""

HELLO = r"""
import sys
from aiohttp import web
port, loop = int(sys.argv[1]), sys.argv[2]
BODY = b'{"model_name":"retail","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[0]}]}'
async def infer(request):
    return web.Response(body=BODY, content_type="application/json")
""" + _APP

# The "46-line aiohttp + orjson + onnxruntime server without validation or metrics": one
# ONNX Runtime run per request, no checks beyond what a KeyError gives, no counting. The floor of
# any Python server on this stack with this model, to tell the cost of our features from the
# cost of the model and of HTTP.
BARE = r"""
import sys
import numpy as np, orjson, onnxruntime as ort
from aiohttp import web
port, path, loop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
strings = {i.name for i in sess.get_inputs() if i.type == "tensor(string)"}
names = [i.name for i in sess.get_inputs()]
outs = [o.name for o in sess.get_outputs()]
async def infer(request):
    doc = orjson.loads(await request.read())
    feeds = {}
    if len(doc["inputs"]) == 1 and doc["inputs"][0]["name"] not in names:  # one [N, F] tensor: a column per input
        x = np.array([[np.nan if v is None else v for v in r] for r in doc["inputs"][0]["data"]], np.float32)
        feeds = {n: x[:, j:j + 1] for j, n in enumerate(names)}
    for t in ([] if feeds else doc["inputs"]):
        if t["name"] in strings:
            feeds[t["name"]] = np.array(t["data"], dtype=object).reshape(-1, 1)
        else:
            feeds[t["name"]] = np.array([np.nan if v is None else v for v in t["data"]], np.float32).reshape(-1, 1)
    res = sess.run(outs, feeds)
    body = orjson.dumps({"model_name": "retail", "outputs": [
        {"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel()} for n, r in zip(outs, res)]},
        option=orjson.OPT_SERIALIZE_NUMPY)
    return web.Response(body=body, content_type="application/json")
""" + _APP

# KServe's own model server with a custom model on the same ONNX file, as a KServe user writes
# one (kserve 0.21: kserve.Model.predict gets the V2 InferRequest, answers an InferResponse).
KSERVE = r"""
import logging, sys
import numpy as np, onnxruntime as ort
import kserve
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid

port, path = int(sys.argv[1]), sys.argv[2]


class OnnxModel(kserve.Model):
    def load(self):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.strings = {i.name for i in self.sess.get_inputs() if i.type == "tensor(string)"}
        self.outs = [o.name for o in self.sess.get_outputs()]
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {}
        for inp in payload.inputs:
            a = inp.as_numpy()  # FP32 with JSON nulls: NaN; BYTES: an object array of str
            feeds[inp.name] = (a.astype(object) if inp.name in self.strings else a.astype(np.float32)).reshape(-1, 1)
        res = self.sess.run(self.outs, feeds)
        outputs = []
        for name, r in zip(self.outs, res):
            o = InferOutput(name=name, shape=list(r.shape), datatype="INT64" if r.dtype == np.int64 else "FP32")
            o.set_data_from_numpy(r, binary_data=False)
            outputs.append(o)
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=outputs)


model = OnnxModel("retail")
model.load()
server = kserve.ModelServer(http_port=port, enable_grpc=False, enable_latency_logging=False)
for name in ("uvicorn.access", "kserve.trace"):  # no log line per request
    logging.getLogger(name).setLevel(logging.WARNING)
server.start([model])
"""

LUA = """
local f = io.open(os.getenv("MLOPS_BENCH_BODY"), "rb")
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("TAIL p999_us=%d max_us=%d\\n", latency:percentile(99.9), latency.max))
end
"""


# ------------------------------------------------------------------------------------------------
# the model and the requests

#: --estimator choices: name -> (allowlisted estimator, params)
ESTIMATORS = {"gb100": ("GradientBoostingClassifier", {"n_estimators": 100}),
              "logreg": ("LogisticRegression", {"max_iter": 500}),
              # the numeric and boolean features only, sent as one [N, 14] FP32 tensor: the kind of
              # small model and request the baseline numbers were measured with
              "logreg-numeric": ("LogisticRegression", {"max_iter": 500})}


def build(work: Path, rows: int, seed: int, estimator: str = "gb100") -> dict[str, Any]:
    import joblib
    import numpy as np
    import orjson

    from mlops_operator.data import retail
    from mlops_operator.store.model_manifest import (Feature, ModelManifest, Output, Reference,
                                                     ReferenceColumn)
    from mlops_operator.store.store import FileStore
    from mlops_operator.training import convert, estimators, pipeline

    df = retail.generate(rows, seed=seed).to_pandas()
    feats = pipeline.feature_columns(retail.RETAIL_SCHEMA, retail.LABEL)
    single = estimator.endswith("-numeric")
    if single:
        feats = [c for c in feats if c["type"] != "categorical"]
    x = pipeline.prepare_frame(df, feats)
    y = df[retail.LABEL].astype(int)
    cut = rows * 4 // 5
    est_name, est_params = ESTIMATORS[estimator]
    model = pipeline.build(feats, estimators.make(est_name, est_params, seed=0))
    model.fit(x.iloc[:cut], y.iloc[:cut])
    onnx_bytes = convert.export(model, feats, True)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    train = x.iloc[:cut]
    cols = {}
    for c in feats:
        v = train[c["name"]]
        if c["type"] == "numeric":
            a = v.to_numpy(dtype=np.float64)
            a = a[~np.isnan(a)]
            edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
            counts = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1)
            cols[c["name"]] = ReferenceColumn(type="numeric", bin_edges=edges.tolist(), bin_counts=counts.tolist(),
                                              nulls=int(v.isna().sum()))
        elif c["type"] == "boolean":
            cols[c["name"]] = ReferenceColumn(type="boolean", categories={"false": int((v == 0).sum()),
                                                                          "true": int((v == 1).sum())})
        else:
            cols[c["name"]] = ReferenceColumn(type="categorical",
                                              categories={str(k): int(n) for k, n in v.value_counts().items()})
    manifest = ModelManifest(
        model=MODEL, task="classification", estimator=est_name, target=retail.LABEL,
        inputs=[Feature(name=c["name"], type=c["type"], datatype="BYTES" if c["type"] == "categorical" else "FP32",
                        nullable=bool(c.get("nullable", True))) for c in feats],
        outputs=[Output(name="label", datatype="INT64", shape=[-1]),
                 Output(name="probabilities", datatype="FP32", shape=[-1, 2])],
        classes=[str(c) for c in model.classes_], onnx_sha256=digest,
        reference=Reference(rows=len(train), columns=cols))
    stage = work / "stage"
    stage.mkdir(parents=True)
    (stage / "model.onnx").write_bytes(onnx_bytes)
    (stage / "model.json").write_bytes(orjson.dumps(manifest.dump()))
    store = FileStore(work / "store")
    _, uri = store.put_version("models", MODEL, stage / "model.onnx", {"model.json": stage / "model.json"})
    mls = work / "mlserver"
    (mls / MODEL).mkdir(parents=True)
    joblib.dump(model, mls / MODEL / "model.joblib")

    test = x.iloc[cut:].reset_index(drop=True)
    bodies, expected = {}, {}
    for n in (1, 32):
        frame = test.iloc[:n]
        inputs = []
        if single:  # one [N, F] tensor in model.json order, nulls as null
            rows = [[None if d != d else float(d) for d in r] for r in frame[[c["name"] for c in feats]].to_numpy(
                dtype=np.float64)]
            inputs.append({"name": "input", "datatype": "FP32", "shape": [n, len(feats)], "data": rows})
        for c in ([] if single else feats):
            v = frame[c["name"]]
            if c["type"] == "categorical":
                inputs.append({"name": c["name"], "datatype": "BYTES", "shape": [n, 1], "data": [str(s) for s in v]})
            else:
                data = [None if d != d else float(d) for d in v.to_numpy(dtype=np.float64)]
                inputs.append({"name": c["name"], "datatype": "FP32", "shape": [n, 1], "data": data})
        path = work / f"request-{n}.json"
        # MLServer decodes multiple input tensors into a DataFrame only when told so ("pd");
        # ours ignores the parameter (and echoes it back, as V2 asks)
        path.write_bytes(orjson.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}))
        bodies[n] = path
        expected[n] = {"proba": model.predict_proba(frame).tolist(), "label": model.predict(frame).tolist()}
    return {"store": (work / "store").resolve().as_uri(), "uri": uri, "digest": digest, "mlserver_dir": mls,
            "onnx_path": str((stage / "model.onnx").resolve()),
            "bodies": bodies, "expected": expected, "onnx_bytes": len(onnx_bytes),
            "nulls_in_batch32": sum(1 for t in orjson.loads(bodies[32].read_bytes())["inputs"]
                                    for d in t["data"] if d is None)}


# ------------------------------------------------------------------------------------------------
# servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def _post(url: str, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Server:
    def __init__(self, label: str, cmd: list[str], port: int, ready_path: str, cwd: Path | None = None,
                 env: dict[str, str] | None = None):
        self.label, self.cmd, self.port, self.ready_path = label, cmd, port, ready_path
        self.cwd, self.env = cwd, env
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="bench-serving-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {self.tail()}")
            if _get(self.url + self.ready_path)[0] == 200:
                return
            time.sleep(0.25)
        raise RuntimeError(f"{self.label} did not become ready in {timeout}s: {self.tail()}")

    def tail(self) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def rss_mb(self) -> float:
        if self.proc is None:
            return 0.0
        return sum(_rss_kb(p) for p in _tree(self.proc.pid)) / 1024

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.log.close()


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process tree has used: per request, the cost of serving
    that a loaded, shared machine does not blur the way it blurs req/s."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ours(model: dict[str, Any], uvloop: bool, grpc_port: int = 0, capture_dir: Path | None = None,
         capture_rate: float = 0.1) -> Server:
    """Our server; gRPC on `grpc_port` too when not 0 (benchmarks/serving_grpc.py); with
    `capture_dir`, payload capture of `capture_rate` of the requests into it (`ours-capture`)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlops_operator.serving", "--store-uri", model["store"], "--model-uri", model["uri"],
           "--digest", model["digest"], "--name", MODEL, "--version", VERSION, "--host", "127.0.0.1",
           "--port", str(port), "--threads", "1", "--max-batch-size", "1024", "--max-body-bytes", "4194304",
           "--grpc-port", str(grpc_port), "--log-level", "WARNING"]
    if not uvloop:
        cmd.append("--no-uvloop")
    if capture_dir is not None:
        cmd += ["--capture-rate", str(capture_rate), "--capture-dir", str(capture_dir)]
    label = "ours" + ("" if uvloop else " (asyncio loop)") + (f" + capture {capture_rate:g}" if capture_dir else "")
    return Server(label, cmd, port, "/v2/health/ready",
                  env={**os.environ, "PYTHONPATH": str(ROOT / "operator")})


def hello(loop: str) -> Server:
    port = free_port()
    return Server(f"aiohttp hello-world ({loop})", [sys.executable, "-c", HELLO, str(port), loop], port,
                  "/v2/health/ready")


def bare(model: dict[str, Any], loop: str) -> Server:
    port = free_port()
    return Server(f"bare aiohttp + ONNX Runtime ({loop})", [sys.executable, "-c", BARE, str(port), model["onnx_path"],
                                                            loop], port, "/v2/health/ready")


def kserve(py: Path, model: dict[str, Any]) -> Server:
    port = free_port()
    return Server("KServe 0.21 ModelServer + ONNX Runtime (custom kserve.Model)",
                  [str(py), "-c", KSERVE, str(port), model["onnx_path"]], port, f"/v2/models/{MODEL}/ready")


def mlserver(py: Path, model: dict[str, Any], workers: int, root: Path) -> Server:
    port = free_port()
    d = root / f"mlserver-w{workers}"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(model["mlserver_dir"], d)
    (d / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1",
        "parallel_workers": workers, "metrics_endpoint": None, "debug": False,
    }))
    (d / MODEL / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": VERSION},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")}
    return Server(f"MLServer 1.7.1 sklearn (parallel_workers={workers})",
                  [str(py.parent / "mlserver"), "start", str(d)], port, f"/v2/models/{MODEL}/ready", cwd=d, env=env)


def check_answers(srv: Server, model: dict[str, Any], kind: str) -> str | None:
    import numpy as np

    for n, path in model["bodies"].items():
        code, doc = _post(srv.url + f"/v2/models/{MODEL}/infer", path.read_bytes())
        if code != 200:
            return f"{srv.label}: batch {n}: HTTP {code}: {str(doc)[:300]}"
        if kind == "hello":
            continue
        outs = {o["name"]: o for o in doc["outputs"]}
        want = model["expected"][n]
        if kind in ("ours", "bare", "kserve"):
            got = np.array(outs["probabilities"]["data"]).reshape(n, 2)
            if np.max(np.abs(got - np.array(want["proba"]))) > 1e-5:
                return f"{srv.label}: batch {n}: probabilities differ from scikit-learn"
        else:
            got = [int(v) for v in next(iter(outs.values()))["data"]]
            if got != want["label"]:
                return f"{srv.label}: batch {n}: labels differ from scikit-learn: {got[:5]} vs {want['label'][:5]}"
    return None


# ------------------------------------------------------------------------------------------------
# load

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url: str, body: Path, connections: int, seconds: float, lua: Path) -> dict[str, Any]:
    env = {**os.environ, "MLOPS_BENCH_BODY": str(body)}
    p = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(lua),
                        url],
                       capture_output=True, text=True, env=env, timeout=seconds + 60)
    out = p.stdout
    res: dict[str, Any] = {"raw": out[-1500:]}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        res[f"p{q}_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"TAIL p999_us=(\d+) max_us=(\d+)", out)
    res["p999_ms"], res["max_ms"] = (int(m.group(1)) / 1e3, int(m.group(2)) / 1e3) if m else (float("nan"),) * 2
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1).strip() if m else ""
    return res


def run_server(srv: Server, model: dict[str, Any], kind: str, batches: list[int], concurrency: list[int],
               seconds: float, lua: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"label": srv.label, "points": []}
    t0 = time.monotonic()
    srv.start()
    out["startup_s"] = round(time.monotonic() - t0, 2)
    try:
        err = check_answers(srv, model, kind)
        if err:
            out["error"] = err
            return out
        url = srv.url + f"/v2/models/{MODEL}/infer"
        wrk(url, model["bodies"][1], 8, min(3.0, seconds), lua)  # warm-up
        for b in batches:
            for c in concurrency:
                cpu0 = _cpu_s(srv.proc.pid)
                r = wrk(url, model["bodies"][b], c, seconds, lua)
                cpu = _cpu_s(srv.proc.pid) - cpu0
                r.update(batch=b, connections=c, rows_per_s=r["rps"] * b,
                         cpu_us_per_req=cpu / r["requests"] * 1e6 if r["requests"] else float("nan"))
                out["points"].append(r)
                print(f"  {srv.label:<45} batch {b:>2} c{c:<3} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:.2f} ms"
                      f"  p99 {r['p99_ms']:.2f} ms  p99.9 {r['p999_ms']:.2f} ms  max {r['max_ms']:.1f} ms"
                      f"  cpu {r['cpu_us_per_req']:.0f} us/req"
                      + (f"  non-2xx {r['non2xx']}" if r["non2xx"] else ""), flush=True)
        out["rss_mb"] = round(srv.rss_mb(), 1)
        out["processes"] = len(_tree(srv.proc.pid))
    finally:
        srv.stop()
    return out


# ------------------------------------------------------------------------------------------------
# report

def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's rounds as one: per (batch, connections), the round with the median req/s
    (all rounds' req/s kept in `rounds_rps`); the first error wins."""
    for r in runs:
        if r.get("error"):
            return r
    out = dict(runs[-1])
    out["points"] = []
    for p in runs[0]["points"]:
        same = sorted((q for r in runs for q in r["points"]
                       if q["batch"] == p["batch"] and q["connections"] == p["connections"]), key=lambda q: q["rps"])
        mid = dict(same[(len(same) - 1) // 2])
        mid["rounds_rps"] = [q["rps"] for q in same]
        mid["rounds_cpu_us_per_req"] = [round(q.get("cpu_us_per_req", float("nan")), 1) for q in same]
        out["points"].append(mid)
    out["rss_mb"] = max(r.get("rss_mb", 0.0) for r in runs)
    return out


def _point(res: dict[str, Any], b: int, c: int) -> dict[str, Any] | None:
    return next((p for p in res.get("points", []) if p["batch"] == b and p["connections"] == c), None)


KEYS = ("ours", "ours-capture", "ours-asyncio", "bare", "kserve", "mlserver", "hello", "hello-asyncio")


def _ratio(a: float, b: float, fmt: str = "{:.2f}x") -> str:
    return fmt.format(a / b) if b and a == a and b == b else ""


def table(res: dict[str, Any]) -> str:
    """The results as a markdown table: each server's points, and ours' req/s and p99 as ratios to
    the bare server, KServe, MLServer and the hello-world at the same point (the bare server's,
    KServe's and MLServer's against the bare server too)."""
    servers = res["servers"]
    ours_r = servers.get("ours")
    ml = servers.get("mlserver")
    hw = servers.get("hello")
    br = servers.get("bare")
    ks = servers.get("kserve")
    lines = ["| server | batch | conns | req/s | rows/s | p50 ms | p99 ms | p99.9 ms | max ms | req/s vs bare "
             "| p99 vs bare | req/s vs KServe | req/s vs MLServer | p99 vs MLServer | req/s vs hello-world |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in KEYS:
        r = servers.get(key)
        if not r or "points" not in r:
            continue
        ours = key.startswith("ours")
        for p in r["points"]:
            b, c = p["batch"], p["connections"]
            bp = _point(br, b, c) if br and key != "bare" and key.startswith(("ours", "kserve", "mlserver")) else None
            kp = _point(ks, b, c) if ks and ours else None
            mp = _point(ml, b, c) if ml and ours else None
            hp = _point(hw, b, c) if hw and key in ("ours", "ours-asyncio", "bare", "kserve") else None
            cells = [
                _ratio(p["rps"], bp["rps"]) if bp else "",
                _ratio(p["p99_ms"], bp["p99_ms"]) if bp and ours else "",
                _ratio(p["rps"], kp["rps"], "{:.1f}x") if kp else "",
                _ratio(p["rps"], mp["rps"], "{:.1f}x") if mp else "",
                _ratio(p["p99_ms"], mp["p99_ms"]) if mp else "",
                _ratio(p["rps"], hp["rps"], "{:.0%}") if hp else ""]
            nan = float("nan")
            lines.append(f"| {r['label']} | {b} | {c} | {p['rps']:,.0f} | {p['rows_per_s']:,.0f} | {p['p50_ms']:.2f} | "
                         f"{p['p99_ms']:.2f} | {p.get('p999_ms', nan):.2f} | {p.get('max_ms', nan):.1f} | "
                         + " | ".join(cells) + " |")
    lines += ["", "| server | processes | RSS after the runs (MB) | start-up to ready (s) |", "|---|---|---|---|"]
    for key in KEYS:
        r = servers.get(key)
        if r and "rss_mb" in r:
            lines.append(f"| {r['label']} | {r['processes']} | {r['rss_mb']:.0f} | {r['startup_s']:.1f} |")
    if ml and ml.get("sweep"):
        lines += ["", "MLServer sweep (batch 1, 8 connections): " + ", ".join(
            f"parallel_workers={w}: {v:,.0f} req/s" for w, v in ml["sweep"].items())]
    if ours_r and br:
        lines += ["", "Issue 19's goals (ours, all features on, against the bare server at the same point):"]
        for b in res["batches"]:
            for c in res["concurrency"]:
                p, bp = _point(ours_r, b, c), _point(br, b, c)
                if p and bp and bp["rps"] and bp["p99_ms"]:
                    lines.append(f"- batch {b}, {c} connection(s): req/s {p['rps'] / bp['rps']:.2f}x the bare server's"
                                 + (" (goal >= 1 at one connection)" if c == 1 else "")
                                 + f", p99 {p['p99_ms'] / bp['p99_ms']:.2f}x its p99 (goal <= 2)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of load per point")
    ap.add_argument("--rows", type=int, default=20000, help="rows of retail data to train on")
    ap.add_argument("--estimator", choices=sorted(ESTIMATORS), default="gb100",
                    help="the served model: gb100 (100-tree gradient boosting) or logreg")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds over all servers; each point reports the round with the median req/s")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--capture-rate", type=float, default=0.1, help="share of requests ours-capture captures")
    ap.add_argument("--servers", default="ours,bare,kserve,mlserver,hello",
                    help="any of ours, ours-asyncio, ours-capture, bare, kserve, mlserver, hello, hello-asyncio")
    ap.add_argument("--mlserver-workers", default="0,1,2", help="parallel_workers values to sweep")
    ap.add_argument("--bench-venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    batches = [int(x) for x in a.batches.split(",")]
    conns = [int(x) for x in a.concurrency.split(",")]
    wanted = a.servers.split(",")
    res: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": os.getloadavg()},
        "command": "python -m benchmarks.serving " + " ".join(argv if argv is not None else sys.argv[1:]),
        "duration_s": a.duration, "batches": batches, "concurrency": conns, "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        lua = work / "post.lua"
        lua.write_text(LUA)
        print(f"training the model on {a.rows} rows ...", flush=True)
        model = build(work, a.rows, a.seed, a.estimator)
        res["model"] = {"estimator": f"{ESTIMATORS[a.estimator][0]}({ESTIMATORS[a.estimator][1]})",
                        "features": 14 if a.estimator.endswith("-numeric") else 18,
                        "onnx_bytes": model["onnx_bytes"], "nulls_in_batch32_request": model["nulls_in_batch32"],
                        "request_bytes": {str(n): p.stat().st_size for n, p in model["bodies"].items()}}
        try:
            import uvloop  # noqa: F401
            have_uvloop = True
        except ImportError:
            have_uvloop = False
        res["ours_loop"] = "uvloop" if have_uvloop else "asyncio"
        loop_name = "uvloop" if have_uvloop else "asyncio"
        makers = {"ours": lambda: ours(model, True), "ours-asyncio": lambda: ours(model, False),
                  "ours-capture": lambda: ours(model, True, capture_dir=work / "captures", capture_rate=a.capture_rate),
                  "bare": lambda: bare(model, loop_name), "hello": lambda: hello(loop_name),
                  "hello-asyncio": lambda: hello("asyncio")}
        kinds = {"ours": "ours", "ours-asyncio": "ours", "ours-capture": "ours", "bare": "bare", "hello": "hello",
                 "hello-asyncio": "hello", "mlserver": "mlserver", "kserve": "kserve"}
        runs: dict[str, list[dict[str, Any]]] = {}
        best = None
        for rnd in range(a.repeat):  # rounds interleave the servers, so a noisy minute hits all of them
            for key in wanted:
                print(f"{key} (round {rnd + 1} of {a.repeat}) ...", flush=True)
                if key == "kserve":
                    kpy, err = ensure_venv(KSERVE_VENV, KSERVE_REQUIREMENTS)
                    if kpy is None:
                        res["servers"][key] = {"label": "KServe", "error": err}
                        print(err, file=sys.stderr)
                        continue
                    srv = kserve(kpy, model)
                elif key == "mlserver":
                    if best is None:
                        py, err = ensure_venv(a.bench_venv, REQUIREMENTS)
                        if py is None:
                            res["servers"][key] = {"label": "MLServer", "error": err}
                            print(err, file=sys.stderr)
                            continue
                        sweep = {}
                        for w in [int(x) for x in a.mlserver_workers.split(",")]:
                            r = run_server(mlserver(py, model, w, work), model, "mlserver", [1], [8],
                                           min(a.duration, 5.0), lua)
                            sweep[w] = r["points"][0]["rps"] if r.get("points") else 0.0
                            if r.get("error"):
                                print(f"  parallel_workers={w}: {r['error']}", file=sys.stderr)
                        best = max(sweep, key=sweep.get)
                    srv = mlserver(py, model, best, work)
                elif key in makers:
                    srv = makers[key]()
                else:
                    print(f"unknown server {key!r}", file=sys.stderr)
                    return 2
                runs.setdefault(key, []).append(run_server(srv, model, kinds[key], batches, conns, a.duration, lua))
        for key, rs in runs.items():
            r = median_run(rs)
            if key == "mlserver":
                r["sweep"] = {str(k): v for k, v in sweep.items()}
                r["parallel_workers"] = best
            res["servers"][key] = r
    res["machine"]["loadavg_after"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2, default=str))
    print()
    print(table(res))
    print(f"\nresults: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: our model server's gRPC Open Inference Protocol against its REST one: the same
process, model and rows, in one run.

    .venv/bin/python -m benchmarks.serving_grpc [--duration 4] [--rows 8000] [--batches 1,32]
                                                [--concurrency 1,8]

One server (`python -m mlops_operator.serving`, uvloop, every feature on: validation, drift
histograms, metrics) listens for REST and gRPC. The model is benchmarks/serving.py's: a
GradientBoostingClassifier (100 trees) in the project's preprocessing pipeline, 18 features
(12 numeric, 2 boolean, 4 categorical); the requests are the same 1 and 32 rows of its test
split (nulls included), three ways:

    REST        V2 JSON, one tensor per feature (what benchmarks/serving.py sends), by wrk
    gRPC raw    ModelInfer with raw_input_contents (what tritonclient.grpc sends), by ghz
    gRPC typed  ModelInfer with typed contents (fp32_contents, bytes_contents: what kserve's
                client sends), by ghz

wrk and ghz are both native load generators (C, Go): the client's cost is small next to the
server's on a 2-core machine where client and server share the cores. `N connections` is N
keep-alive connections for wrk and N connections with one worker each for ghz (so at most one
request in flight per connection for both). Before loading, the gRPC answers are checked
against scikit-learn's probabilities (within 1e-5). Results: benchmarks/results/serving_grpc.json.

ghz: `GOBIN=~/.cache/mlops/bench-tools go install github.com/bojand/ghz/cmd/ghz@v0.93.0` (what
`@latest` resolves to; built from the Go module in about a minute; PATH is looked in first);
wrk: `apt-get install wrk`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.serving import LUA, MODEL, ROOT, build, free_port, ours, wrk

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "serving_grpc.json"
PROTO = ROOT / "operator" / "mlops_operator" / "serving" / "proto" / "grpc_predict_v2.proto"
TOOLS = Path.home() / ".cache" / "mlops" / "bench-tools"
KINDS = ("rest", "grpc-raw", "grpc-typed")


def ghz_path() -> str | None:
    return shutil.which("ghz") or (str(TOOLS / "ghz") if (TOOLS / "ghz").exists() else None)


def grpc_requests(json_body: bytes) -> dict[str, bytes]:
    """The REST request's tensors as ModelInferRequest messages: raw and typed contents."""
    import struct

    import numpy as np
    import orjson

    from mlops_operator.serving.proto import grpc_predict_v2_pb2 as pb

    doc = orjson.loads(json_body)
    raw = pb.ModelInferRequest(model_name=MODEL)
    typed = pb.ModelInferRequest(model_name=MODEL)
    for t in doc["inputs"]:
        for req in (raw, typed):
            req.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        if t["datatype"] == "BYTES":
            data = [s.encode() for s in t["data"]]
            raw.raw_input_contents.append(b"".join(struct.pack("<I", len(b)) + b for b in data))
            typed.inputs[-1].contents.bytes_contents.extend(data)
        else:
            vals = np.array([np.nan if v is None else v for v in t["data"]], dtype="<f4")
            raw.raw_input_contents.append(vals.tobytes())
            typed.inputs[-1].contents.fp32_contents.extend(vals.tolist())
    return {"grpc-raw": raw.SerializeToString(), "grpc-typed": typed.SerializeToString()}


def check_grpc(port: int, body: bytes, want: list[list[float]]) -> str | None:
    import grpc
    import numpy as np

    from mlops_operator.serving.proto import grpc_predict_v2_pb2 as pb

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=None,
                              response_deserializer=pb.ModelInferResponse.FromString)
        resp = call(body, timeout=30)
    i = [o.name for o in resp.outputs].index("probabilities")
    out = resp.outputs[i]
    got = (np.frombuffer(resp.raw_output_contents[i], "<f4") if resp.raw_output_contents
           else np.array(out.contents.fp32_contents)).reshape(list(out.shape))
    if np.max(np.abs(got - np.array(want))) > 1e-5:
        return "gRPC probabilities differ from scikit-learn"
    return None


def ghz(port: int, body: Path, connections: int, seconds: float) -> dict[str, Any]:
    exe = ghz_path()
    assert exe is not None
    p = subprocess.run([exe, "--insecure", "--proto", str(PROTO), "--call", "inference.GRPCInferenceService/ModelInfer",
                        "--binary-file", str(body), "-c", str(connections), "--connections",
                        str(connections), "-z", f"{max(1, round(seconds))}s", "--format", "json",
                        "--timeout", "10s", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, errors="replace", timeout=seconds + 60)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        return {"rps": 0.0, "error": (p.stderr or p.stdout)[-1500:]}
    lat = {d["percentage"]: d["latency"] / 1e6 for d in doc.get("latencyDistribution") or []}
    codes = doc.get("statusCodeDistribution") or {}
    return {"rps": doc.get("rps", 0.0), "p50_ms": lat.get(50, float("nan")), "p99_ms": lat.get(99, float("nan")),
            "count": doc.get("count"), "non_ok": sum(n for c, n in codes.items() if c != "OK"),
            "errors": doc.get("errorDistribution") or {}}


def _ratio(x: dict[str, Any] | None, base: dict[str, Any]) -> str:
    return f"{x['rps'] / base['rps']:.2f}x" if x and base["rps"] else ""


def _lat(x: dict[str, Any] | None) -> str:
    return f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f}" if x and "p50_ms" in x else ""


def table(res: dict[str, Any]) -> str:
    pts = {(p["kind"], p["batch"], p["connections"]): p for p in res["points"]}
    lines = ["| batch | conns | REST req/s | gRPC raw req/s | gRPC typed req/s | raw / REST | typed / REST "
             "| REST p50 / p99 ms | raw p50 / p99 ms | typed p50 / p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for b in res["batches"]:
        for c in res["concurrency"]:
            r, g, t = (pts.get((k, b, c)) for k in KINDS)
            if not r:
                continue
            lines.append(f"| {b} | {c} | {r['rps']:,.0f} | {g['rps'] if g else 0:,.0f} | {t['rps'] if t else 0:,.0f} "
                         f"| {_ratio(g, r)} | {_ratio(t, r)} | {_lat(r)} | {_lat(g)} | {_lat(t)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of load per point")
    ap.add_argument("--rows", type=int, default=8000, help="rows of retail data to train on")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    missing = [t for t, ok in (("wrk", shutil.which("wrk")), ("ghz", ghz_path())) if not ok]
    if missing:
        print(f"missing: {', '.join(missing)} (see the module docstring)", file=sys.stderr)
        return 2
    batches = [int(x) for x in a.batches.split(",")]
    conns = [int(x) for x in a.concurrency.split(",")]
    res: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": os.getloadavg()},
        "command": "python -m benchmarks.serving_grpc " + " ".join(argv if argv is not None else sys.argv[1:]),
        "duration_s": a.duration, "batches": batches, "concurrency": conns, "points": [],
        "load_generators": {"rest": "wrk -t1", "grpc": subprocess.run([ghz_path() or "ghz", "--version"],
                                                                       capture_output=True, text=True).stdout.strip()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        work = Path(tmp)
        lua = work / "post.lua"
        lua.write_text(LUA)
        print(f"training the model on {a.rows} rows ...", flush=True)
        model = build(work, a.rows, a.seed, "gb100")
        bodies: dict[tuple[str, int], Path] = {}
        for n in batches:
            bodies["rest", n] = model["bodies"][n]
            for kind, data in grpc_requests(model["bodies"][n].read_bytes()).items():
                bodies[kind, n] = work / f"{kind}-{n}.bin"
                bodies[kind, n].write_bytes(data)
        res["request_bytes"] = {f"{k}-{n}": p.stat().st_size for (k, n), p in bodies.items()}
        gport = free_port()
        srv = ours(model, True, grpc_port=gport)
        srv.start()
        try:
            for n in batches:
                for kind in ("grpc-raw", "grpc-typed"):
                    err = check_grpc(gport, bodies[kind, n].read_bytes(), model["expected"][n]["proba"])
                    if err:
                        raise SystemExit(f"{kind} batch {n}: {err}")
            url = srv.url + f"/v2/models/{MODEL}/infer"
            wrk(url, bodies["rest", 1], 8, 2.0, lua)  # warm-up, both protocols
            ghz(gport, bodies["grpc-raw", 1], 8, 2.0)
            for b in batches:
                for c in conns:
                    for kind in KINDS:  # interleaved, so a noisy second hits all three
                        if kind == "rest":
                            r = wrk(url, bodies[kind, b], c, a.duration, lua)
                            r.pop("raw", None)
                        else:
                            r = ghz(gport, bodies[kind, b], c, a.duration)
                        r.update(kind=kind, batch=b, connections=c, rows_per_s=r["rps"] * b)
                        res["points"].append(r)
                        print(f"  {kind:<11} batch {b:>2} c{c:<2} {r['rps']:>8.0f} req/s  p50 {r.get('p50_ms', 0):.2f} "
                              f"ms  p99 {r.get('p99_ms', 0):.2f} ms", flush=True)
            res["server_rss_mb"] = round(srv.rss_mb(), 1)
        finally:
            srv.stop()
    res["machine"]["loadavg_after"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2, default=str))
    print()
    print(table(res))
    print(f"\nresults: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
